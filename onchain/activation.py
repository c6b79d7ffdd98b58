"""The activator's statement for ``registerCvmSvsm`` (docs/registry.md, "SVSM vTPM"): what an activator
signs once it ran a credential activation for an agent's AK under the SVSM's EK (offchain.svsm).
Shared by ``cvm-cli svsm register`` and the relayer, which is the activator when its key is one."""

from __future__ import annotations

import time

from eth_account.signers.local import LocalAccount
from eth_typing import Hash32

from offchain.abi.binding import svsm_activation_digest, tpm_name_digest
from offchain.errors import ParseError, Reason
from offchain.evidence import EvidenceBundle
from onchain.calldata import SvsmEvidenceCalldata, svsm_evidence_struct

#: How long a statement stays valid: long enough for the transaction to be mined.
DEFAULT_LIFETIME_S = 600


def activation_statement(account: LocalAccount, chain_id: int, registry: str, bundle: EvidenceBundle, *,
                         lifetime_s: int = DEFAULT_LIFETIME_S, now: float | None = None) -> tuple[int, bytes]:
    """``(expiry, r || s || v)``: ``account``'s statement that the AK of ``bundle`` lives in the vTPM of
    the EK its SVSM manifest carries, valid for ``lifetime_s`` seconds. Sign only after the activation
    succeeded."""
    if bundle.svsm is None:
        raise ParseError(Reason.INPUT_INVALID, "only svsm evidence has an EK to vouch for")
    expiry = int(time.time() if now is None else now) + lifetime_s
    digest = svsm_activation_digest(chain_id, registry, tpm_name_digest(bundle.svsm.manifest),
                                    tpm_name_digest(bundle.ak_public), expiry)
    signed = account.unsafe_sign_hash(Hash32(digest))
    return expiry, signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])


def svsm_evidence(bundle: EvidenceBundle, leaf_id: bytes) -> SvsmEvidenceCalldata:
    """``ICvmRegistry.SvsmEvidence`` of an svsm bundle whose leaf is registered as ``leaf_id``."""
    if bundle.svsm is None:
        raise ParseError(Reason.INPUT_INVALID, "not svsm evidence")
    return svsm_evidence_struct(report=bundle.snp_report, leaf=leaf_id, svsm_nonce=bundle.svsm.nonce,
                                manifest=bundle.svsm.manifest, ak_public=bundle.ak_public,
                                attest=bundle.quote_attest, signature=bundle.quote_signature, pcrs=bundle.pcrs)
