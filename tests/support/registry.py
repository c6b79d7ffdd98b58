"""What the registry tests share: a software AK that signs TPM quotes like a TPM does, a simulated
CVM (development AMD chain + report + AK), and a registry deployed to trust it.

:class:`SoftAk` is an attestation key made with ``cryptography`` (RSA-2048 or P-256) whose
TPMT_PUBLIC and TPMS_ATTEST are marshalled by ``offchain.abi.tpm`` exactly as a TPM marshals them,
and whose quote signatures are RSASSA-PKCS1-v1_5/SHA-256 or ECDSA/SHA-256 over the TPMS_ATTEST
bytes, as TPM2_Quote produces them. The real vTPM path (swtpm) is exercised by the agent's tests;
here the point is to give the contract inputs whose every byte the test controls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.abi.binding import (
    direct_report_data,
    golden_consent_digest,
    onchain_extra_data,
    sealing_key_digest,
    svsm_activation_digest,
    svsm_report_data,
    tpm_name_digest,
)
from offchain.abi.keccak import keccak256
from offchain.abi.snp_report import SnpReport
from offchain.abi.tpm import (
    TPM_ALG_AES,
    TPM_ALG_CFB,
    TPM_ALG_ECC,
    TPM_ALG_NULL,
    TPM_ALG_RSA,
    TPM_ALG_SHA256,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    PcrSelection,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
)
from offchain.devamd import DevAmdChain
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.trust.roots import spki_fingerprint
from onchain.calldata import (
    EvidenceCalldata,
    SvsmEvidenceCalldata,
    certificate_der,
    certificate_id,
    evidence_struct,
    svsm_evidence_struct,
)
from onchain.client import RegistryClient, TxResult
from tests.support.evm import compile_contracts


@dataclass(frozen=True)
class Quote:
    """A TPM quote as the registry takes it: TPMS_ATTEST, TPMT_SIGNATURE and the selected PCR values."""

    attest: bytes
    signature: bytes
    pcrs: tuple[bytes, ...]

    @property
    def parsed(self) -> TpmsAttest:
        return TpmsAttest.from_bytes(self.attest)


class SoftAk:
    """An RSA-2048 (``kind="rsa"``) or NIST P-256 (``kind="p256"``) attestation key in software."""

    def __init__(self, kind: str = "rsa") -> None:
        self.kind = kind
        if kind == "rsa":
            self._key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(65537, 2048)
        elif kind == "p256":
            self._key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(kind)
        self.public = TpmtPublic.from_public_key(self._key.public_key())

    @property
    def public_bytes(self) -> bytes:
        return self.public.to_bytes()

    @property
    def key_hash(self) -> bytes:
        """The registry's AK hash: keccak256 of the RSA modulus or of the P-256 x || y."""
        public = self.public
        return keccak256(public.modulus if self.kind == "rsa" else public.x + public.y)

    def sign(self, data: bytes) -> bytes:
        """TPMT_SIGNATURE over ``data`` with SHA-256 (RSASSA or ECDSA)."""
        if isinstance(self._key, rsa.RSAPrivateKey):
            raw = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
            return TpmtSignature.rsassa(TPM_ALG_SHA256, raw).to_bytes()
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return TpmtSignature.ecdsa(TPM_ALG_SHA256, r, s, 32).to_bytes()

    def quote(
        self,
        extra_data: bytes,
        pcrs: Mapping[int, bytes],
        *,
        magic: int = TPM_GENERATED_VALUE,
        attest_type: int = TPM_ST_ATTEST_QUOTE,
        clock: int = 1_000_000,
        reset_count: int = 3,
    ) -> Quote:
        """TPM2_Quote over the SHA-256 PCRs ``pcrs`` (index -> value) with qualifyingData ``extra_data``."""
        indices = tuple(sorted(pcrs))
        values = tuple(pcrs[i] for i in indices)
        attest = TpmsAttest(
            magic=magic,
            type=attest_type,
            qualified_signer=self.public.name(),
            extra_data=extra_data,
            clock=clock,
            reset_count=reset_count,
            restart_count=0,
            safe=True,
            firmware_version=0x2023_0612_0016_0000,
            pcr_selections=(PcrSelection(TPM_ALG_SHA256, indices),),
            pcr_digest=hashlib.sha256(b"".join(values)).digest(),
        ).to_bytes()
        return Quote(attest=attest, signature=self.sign(attest), pcrs=values)


#: When development certificates start: a day ago. Anvil's blocks carry the wall-clock time, and a chain issued
#: "now" could be not yet valid in a block mined within the same second.
ISSUED = datetime.now(timezone.utc) - timedelta(days=1)


def pcr_bank(seed: bytes = b"cvm-attest", count: int = 24) -> dict[int, bytes]:
    """Deterministic, distinct PCR values 0..count-1 for tests."""
    return {i: hashlib.sha256(seed + bytes([i])).digest() for i in range(count)}


# --- a simulated CVM and a registry that trusts its development root ---------------------------


@dataclass(frozen=True)
class SimCvm:
    """A CVM on the simulated platform: a development AMD chain, a report it signed binding ``ak``
    directly (REPORT_DATA = SHA-256(AK TPMT_PUBLIC) || 0^32), and the PCR bank its quotes cover."""

    chain: DevAmdChain
    ak: SoftAk
    report: SnpReport
    pcrs: Mapping[int, bytes]

    @property
    def ark_der(self) -> bytes:
        return certificate_der(self.chain.ark)

    @property
    def ask_der(self) -> bytes:
        return certificate_der(self.chain.ask)

    @property
    def leaf_der(self) -> bytes:
        return certificate_der(self.chain.leaf)

    @property
    def leaf_id(self) -> bytes:
        return certificate_id(self.leaf_der)

    def golden(
        self, *, pinned: tuple[int, ...] = (0, 23), lifetime: int = 3600, allow_debug: bool = False
    ) -> GoldenMeasurement:
        """The golden measurement that describes exactly this CVM, pinning ``pinned`` PCRs
        (``allow_debug``: describe a debug guest too, as ``GoldenMeasurement.from_report`` allows)."""
        return GoldenMeasurement.from_report(
            self.report,
            self.chain.product,
            self.chain.signer,
            Binding.DIRECT,
            pcrs={i: self.pcrs[i] for i in pinned},
            lifetime=lifetime,
            allow_debug=allow_debug,
        )

    def quote(self, extra_data: bytes, *, ak: SoftAk | None = None, pcrs: Mapping[int, bytes] | None = None) -> Quote:
        return (ak or self.ak).quote(extra_data, pcrs if pcrs is not None else self.pcrs)

    def evidence(self, quote: Quote, *, report: SnpReport | bytes | None = None) -> EvidenceCalldata:
        return evidence_struct(
            report=report if report is not None else self.report,
            leaf=self.leaf_id,
            attest=quote.attest,
            signature=quote.signature,
            pcrs=dict(zip(TpmsAttest.from_bytes(quote.attest).pcr_selections[0].pcrs, quote.pcrs, strict=True)),
            ak_public=self.ak.public_bytes,
        )


def sim_cvm(chain: DevAmdChain, ak: SoftAk, *, pcrs: Mapping[int, bytes] | None = None, **fields: Any) -> SimCvm:
    """A report from ``chain``'s simulated firmware for a guest whose AK is ``ak`` (fields override)."""
    base: dict[str, Any] = {
        "measurement": hashlib.sha384(b"cvm-attest test image").digest(),
        "policy": 0x30000,
        "report_data": direct_report_data(ak.public_bytes),
    }
    base.update(fields)
    report = chain.sign(chain.report_template(**base))
    return SimCvm(chain=chain, ak=ak, report=report, pcrs=dict(pcrs if pcrs is not None else pcr_bank()))


def registry_artifacts() -> dict[str, dict[str, Any]]:
    """CvmRegistry, its verifiers and the example dApp, compiled once per session (cached on disk)."""
    return compile_contracts(
        [
            "contracts/CvmRegistry.sol",
            "contracts/SnpVerifier.sol",
            "contracts/EcdsaVerifier.sol",
            "contracts/CertificateVerifier.sol",
            "contracts/examples/AttestedPriceFeed.sol",
        ]
    )


def deploy_registry(w3: Web3, owner: str) -> RegistryClient:
    """A fresh SnpVerifier and registry owned by ``owner``, which also sends the registry's transactions."""
    return RegistryClient.deploy(w3, owner=owner, sender=owner, artifacts=registry_artifacts())


def publish_once(registry: RegistryClient, golden: GoldenMeasurement) -> bytes:
    """Publish ``golden`` unless it already is (module fixtures may be set up again by ape's pytest plugin,
    which re-runs them when it reorders fixtures); returns its id."""
    golden_id = golden.canonical_id()
    if not registry.golden_of(golden_id).published:
        registry.publish_golden(golden)
    return golden_id


def trust_dev_chain(registry: RegistryClient, chain: DevAmdChain) -> bytes:
    """Pin ``chain``'s ARK key and register the whole chain; returns the leaf's id."""
    registry.pin_root(chain.product, spki_fingerprint(chain.ark))
    return registry.register_chain(
        certificate_der(chain.ark), certificate_der(chain.ask), certificate_der(chain.leaf)
    )


def fresh_nonce(w3: Web3, registry: RegistryClient, cvm: str) -> tuple[int, bytes]:
    """A block the registry can still read and the on-chain extraData an agent at ``cvm`` would quote."""
    block = w3.eth.get_block("latest")
    number = int(block["number"])
    return number, onchain_extra_data(int(w3.eth.chain_id), registry.address, cvm, bytes(block["hash"]))


def mine(w3: Web3, blocks: int = 1) -> None:
    for _ in range(blocks):
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def advance_time(w3: Web3, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    mine(w3)


# --- CVM keys and their consent -------------------------------------------------------------------

#: The keys of the CVM addresses :func:`new_cvm` made, so :func:`consent` can sign for them as the agent does.
_CVM_KEYS: dict[str, LocalAccount] = {}


def new_cvm() -> str:
    """A fresh address standing for a CVM's Ethereum key; its key is kept to sign consents."""
    account: LocalAccount = Account.create()
    _CVM_KEYS[account.address] = account
    return str(account.address)


#: anvil's default accounts come from this mnemonic (m/44'/60'/0'/0/i), so a test may use one as a CVM.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


_ANVIL_KEYS: dict[str, LocalAccount] = {}


def _key_of(cvm: str) -> LocalAccount | None:
    address = Web3.to_checksum_address(cvm)
    if address in _CVM_KEYS:
        return _CVM_KEYS[address]
    if not _ANVIL_KEYS:
        Account.enable_unaudited_hdwallet_features()
        for index in range(10):
            account = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
            _ANVIL_KEYS[account.address] = account
    return _ANVIL_KEYS.get(address)


def consent(registry: RegistryClient, cvm: str, golden_id: bytes) -> bytes:
    """The CVM key's consent to ``golden_id`` on ``registry`` (r || s || v over golden_consent_digest, as
    agent.ethkey signs it); 65 zero bytes for an address whose key is unknown (neither :func:`new_cvm`'s nor
    one of anvil's default accounts)."""
    key = _key_of(cvm)
    if key is None:
        return bytes(65)
    digest = golden_consent_digest(int(registry.w3.eth.chain_id), registry.address, cvm, golden_id)
    signed = key.unsafe_sign_hash(digest)
    return signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])


def sealing_key_signature(registry: RegistryClient, cvm: str, sealing_key: bytes) -> bytes:
    """The CVM key's signature over its sealing key on ``registry`` (as agent.service signs it for
    ``GET /onchain/sealing-key``), for an address made by :func:`new_cvm`."""
    key = _key_of(cvm)
    if key is None:
        raise ValueError(f"{cvm} is not a test CVM")
    digest = sealing_key_digest(int(registry.w3.eth.chain_id), registry.address, cvm, sealing_key)
    signed = key.unsafe_sign_hash(digest)
    return signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])


def register_cvm(
    registry: RegistryClient, golden_id: bytes, cvm: str, block_number: int, evidence: EvidenceCalldata,
    *, consent_to: bytes | None = None,
) -> TxResult:
    """registerCvm with the CVM's consent to ``consent_to`` (default: ``golden_id`` itself)."""
    signed = consent(registry, cvm, golden_id if consent_to is None else consent_to)
    return registry.register_cvm(golden_id, cvm, block_number, evidence, signed)


# --- the SVSM vTPM: an EK in the VMPL0 report, an AK an activator vouches for ------------------------

#: TCG EK Credential Profile 2.0, templates L-1 (RSA-2048) and L-2 (ECC NIST P-256): fixedTPM, fixedParent,
#: sensitiveDataOrigin, adminWithPolicy, restricted, decrypt.
EK_OBJECT_ATTRIBUTES = 0x000300B2
#: The templates' authPolicy: PolicySecret(TPM_RH_ENDORSEMENT).
EK_AUTH_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
TPM_ECC_NIST_P256 = 0x0003


def ek_public(kind: str = "rsa") -> TpmtPublic:
    """A fresh endorsement key's TPMT_PUBLIC as a TPM marshals one made from the TCG default template
    (``rsa``: L-1, RSA-2048 with AES-128-CFB; ``p256``: L-2, ECC P-256), the SVSM's vTPM manifest."""
    common: dict[str, Any] = {
        "name_alg": TPM_ALG_SHA256,
        "object_attributes": EK_OBJECT_ATTRIBUTES,
        "auth_policy": EK_AUTH_POLICY,
        "symmetric": TPM_ALG_AES,
        "symmetric_key_bits": 128,
        "symmetric_mode": TPM_ALG_CFB,
        "scheme": TPM_ALG_NULL,
    }
    if kind == "rsa":
        numbers = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
        return TpmtPublic(type=TPM_ALG_RSA, key_bits=2048, exponent=0, modulus=numbers.n.to_bytes(256, "big"),
                          **common)
    if kind == "p256":
        point = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        return TpmtPublic(type=TPM_ALG_ECC, curve_id=TPM_ECC_NIST_P256, kdf=TPM_ALG_NULL,
                          x=point.x.to_bytes(32, "big"), y=point.y.to_bytes(32, "big"), **common)
    raise ValueError(kind)


@dataclass(frozen=True)
class SvsmCvm:
    """A CVM on an SVSM vTPM, simulated: the SVSM's VMPL0 report (REPORT_DATA = SHA-512(nonce || EK
    TPMT_PUBLIC)) signed by a development AMD chain, the AK that vTPM holds and the PCRs it quotes."""

    chain: DevAmdChain
    ak: SoftAk
    ek: TpmtPublic
    svsm_nonce: bytes
    report: SnpReport
    pcrs: Mapping[int, bytes]

    @property
    def manifest(self) -> bytes:
        return self.ek.to_bytes()

    @property
    def leaf_id(self) -> bytes:
        return certificate_id(certificate_der(self.chain.leaf))

    def golden(self, *, pinned: tuple[int, ...] = (0, 23), lifetime: int = 3600) -> GoldenMeasurement:
        """The svsm golden measurement of exactly this CVM (the SVSM's MEASUREMENT, VMPL 0)."""
        return GoldenMeasurement.from_report(
            self.report, self.chain.product, self.chain.signer, Binding.SVSM,
            pcrs={i: self.pcrs[i] for i in pinned}, lifetime=lifetime,
        )

    def quote(self, extra_data: bytes, *, ak: SoftAk | None = None) -> Quote:
        return (ak or self.ak).quote(extra_data, self.pcrs)

    def evidence(
        self,
        quote: Quote,
        *,
        report: SnpReport | None = None,
        svsm_nonce: bytes | None = None,
        manifest: bytes | None = None,
        ak: SoftAk | None = None,
    ) -> SvsmEvidenceCalldata:
        return svsm_evidence_struct(
            report=report if report is not None else self.report,
            leaf=self.leaf_id,
            svsm_nonce=svsm_nonce if svsm_nonce is not None else self.svsm_nonce,
            manifest=manifest if manifest is not None else self.manifest,
            ak_public=(ak or self.ak).public_bytes,
            attest=quote.attest,
            signature=quote.signature,
            pcrs=dict(zip(TpmsAttest.from_bytes(quote.attest).pcr_selections[0].pcrs, quote.pcrs, strict=True)),
        )


def svsm_cvm(chain: DevAmdChain, ak: SoftAk, ek: TpmtPublic, **fields: Any) -> SvsmCvm:
    """The SVSM's report from ``chain``'s simulated firmware over a fresh 64-byte nonce and ``ek``'s
    TPMT_PUBLIC, at VMPL 0 (``fields`` override, e.g. ``vmpl`` or ``report_data``)."""
    nonce = hashlib.sha512(b"svsm nonce" + ek.to_bytes()).digest()
    base: dict[str, Any] = {
        "measurement": hashlib.sha384(b"cvm-attest test SVSM + OVMF").digest(),
        "policy": 0x30000,
        "vmpl": 0,
        "report_data": svsm_report_data(nonce, ek.to_bytes()),
    }
    base.update(fields)
    report = chain.sign(chain.report_template(**base))
    return SvsmCvm(chain=chain, ak=ak, ek=ek, svsm_nonce=nonce, report=report, pcrs=pcr_bank())


def activation_signature(
    registry: RegistryClient, activator: LocalAccount, ek: bytes, ak: bytes, expiry: int
) -> bytes:
    """``activator``'s statement that the AK with TPMT_PUBLIC ``ak`` lives in the vTPM of the EK with
    TPMT_PUBLIC ``ek``, for ``registry``, until ``expiry`` (r || s || v over svsm_activation_digest)."""
    digest = svsm_activation_digest(
        int(registry.w3.eth.chain_id), registry.address, tpm_name_digest(ek), tpm_name_digest(ak), expiry
    )
    signed = activator.unsafe_sign_hash(digest)
    return signed.r.to_bytes(32, "big") + signed.s.to_bytes(32, "big") + bytes([signed.v])


def register_cvm_svsm(
    registry: RegistryClient,
    golden_id: bytes,
    cvm: str,
    block_number: int,
    evidence: SvsmEvidenceCalldata,
    activator: LocalAccount,
    expiry: int,
    *,
    activated_ek: bytes | None = None,
    activated_ak: bytes | None = None,
) -> TxResult:
    """registerCvmSvsm with ``activator``'s statement over the evidence's EK and AK (or the ones given:
    ``activated_ek``/``activated_ak``, TPMT_PUBLIC bytes) and the CVM's consent to ``golden_id``."""
    signature = activation_signature(
        registry, activator, activated_ek if activated_ek is not None else evidence.manifest,
        activated_ak if activated_ak is not None else evidence.ak_public, expiry,
    )
    return registry.register_cvm_svsm(
        golden_id, cvm, block_number, evidence, expiry, signature, consent(registry, cvm, golden_id)
    )
