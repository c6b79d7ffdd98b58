"""A typed web3 client of a deployed ``CvmRegistry`` (contracts/CvmRegistry.sol).

:class:`RegistryClient` wraps every function of ``ICvmRegistry``: Python values in (``bytes``,
``offchain`` objects, :class:`~onchain.calldata.EvidenceCalldata`), frozen dataclasses out, and
every failure a :class:`~offchain.errors.ChainError` whose reason comes from
:data:`onchain.errors.ERROR_REASONS` (a revert names its custom error; an RPC failure is
``chain.rpc_unavailable``).

Transactions are sent from an unlocked node account (``sender=``, e.g. anvil's dev accounts) or
signed locally (``account=``, an eth-account ``LocalAccount``). Gas is estimated first, which is
also how a revert reason reaches the caller before anything is broadcast; the limit sent is the
estimate plus a margin, never more than the EIP-7825 cap. The relayer builds its own transactions
from :meth:`RegistryClient.calldata` and sends them through its journal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources
from typing import Any, Self

from eth_abi.abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from web3 import Web3
from web3.contract import Contract

from offchain.abi.snp_report import Product
from offchain.abi.tpm import TpmtPublic, TpmtSignature
from offchain.errors import ChainError, ParseError, Reason
from offchain.policy.checks import ReportChecks
from offchain.policy.golden import GoldenMeasurement
from onchain.calldata import (
    REPORT_CHECKS_ABI,
    EvidenceCalldata,
    SvsmEvidenceCalldata,
    golden_struct,
    product_code,
    refresh_args,
    report_checks_calldata,
)
from onchain.errors import chain_error, decode_revert

#: The contracts behind the registry whose custom errors its reverts may carry.
VERIFIERS = ("SnpVerifier", "EcdsaVerifier", "CertificateVerifier")

#: EIP-7825: the most gas one transaction may use.
TX_GAS_CAP = 16_777_216
GAS_MARGIN = 1.2
ZERO32 = bytes(32)


def load_artifact(name: str) -> dict[str, Any]:
    """The shipped ABI + bytecode of contract ``name`` (onchain/artifacts/<name>.json)."""
    try:
        text = resources.files("onchain").joinpath("artifacts", f"{name}.json").read_text()
    except (FileNotFoundError, OSError) as exc:
        raise ChainError(Reason.CHAIN_TX_FAILED, f"no shipped artifact for {name}: {exc}") from None
    artifact: dict[str, Any] = json.loads(text)
    return artifact


class CertKind(IntEnum):
    """``ICvmRegistry.CertKind``."""

    NONE = 0
    ARK = 1
    ASK = 2
    ASVK = 3
    VCEK = 4
    VLEK = 5


@dataclass(frozen=True, slots=True)
class TxResult:
    """A mined, successful transaction."""

    tx_hash: str
    block_number: int
    gas_used: int
    logs: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """``ICvmRegistry.Verdict``: what a successful verification established."""

    golden_id: bytes
    product: int
    signer: int
    report_hash: bytes
    #: ``akHash`` on chain: keccak256 of the AK's public key as the contract takes it (the RSA
    #: modulus, or x || y of a P-256 key); not the SHA-256 of TPMT_PUBLIC that REPORT_DATA binds and
    #: the agent's ``/identity`` names ``ak_public_sha256``.
    ak_key_keccak: bytes

    @property
    def ak_hash(self) -> bytes:
        """Deprecated name of :attr:`ak_key_keccak` (docs/registry.md), kept for existing callers."""
        return self.ak_key_keccak


@dataclass(frozen=True, slots=True)
class Attestation:
    """``ICvmRegistry.Attestation`` of one CVM address (all zero when it never registered) and its
    :class:`AttestationStatus` for any golden measurement, read in the same call."""

    golden_id: bytes
    #: keccak256 of the AK's public key as the contract takes it (see :attr:`Verdict.ak_key_keccak`).
    ak_key_keccak: bytes
    report_hash: bytes
    quote_key: bytes
    expiry: int
    last_block: int
    lifetime: int
    #: The leaf's notAfter in units of 65,536 s (rounded down): the latest expiry the registry sets.
    leaf_end: int
    #: Certificate id of the VCEK/VLEK the CVM was accepted under.
    leaf: bytes
    status: AttestationStatus

    @property
    def attested(self) -> bool:
        return self.status is AttestationStatus.ATTESTED

    @property
    def ak_hash(self) -> bytes:
        """Deprecated name of :attr:`ak_key_keccak` (docs/registry.md), kept for existing callers."""
        return self.ak_key_keccak


def checked_address(text: str, what: str = "--registry") -> ChecksumAddress:
    """``text`` as a checksummed address; ParseError(input.invalid) naming ``what`` when it is none
    (not 20 bytes of hex, or mixed case that fails the EIP-55 checksum)."""
    try:
        return Web3.to_checksum_address(text)
    except (ValueError, TypeError):
        raise ParseError(Reason.INPUT_INVALID, f"{what} {text!r} is not an address") from None


def require_contract(w3: Web3, address: str) -> None:
    """ChainError(chain.no_contract) when nothing is deployed at ``address`` on ``w3``'s chain (a
    registry address from another chain, or a typo that happens to be an address)."""
    if not w3.eth.get_code(Web3.to_checksum_address(address)):
        raise ChainError(Reason.REGISTRY_NO_CONTRACT, f"no contract at {address} on chain {w3.eth.chain_id}",
                         address=address)


class AttestationStatus(IntEnum):
    """``ICvmRegistry.AttestationStatus``: why a CVM address is or is not attested."""

    ATTESTED = 0
    NOT_REGISTERED = 1
    EXPIRED = 2
    LEAF_EXPIRED = 3
    GOLDEN_REVOKED = 4
    CHAIN_REVOKED = 5
    OTHER_GOLDEN = 6


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """``ICvmRegistry.CertificateInfo``."""

    kind: CertKind
    revoked: bool
    product: int
    not_before: int
    not_after: int
    issuer: bytes


@dataclass(frozen=True, slots=True)
class GoldenInfo:
    """``ICvmRegistry.GoldenInfo``."""

    published: bool
    revoked: bool
    lifetime: int
    binding: int
    pcr_mask: int


class RegistryClient:
    """One deployed registry, reached through ``w3``."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        sender: str | None = None,
        account: LocalAccount | None = None,
        abi: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        self.w3 = w3
        self.abi = list(abi) if abi is not None else registry_abi()
        self.contract: Contract = w3.eth.contract(address=checked_address(address, "registry"), abi=self.abi)
        self.account = account
        self.sender = account.address if account is not None else sender
        #: The last transaction this client sent (gas figures for benchmarks and logs).
        self.last_tx: TxResult | None = None

    @property
    def address(self) -> str:
        return str(self.contract.address)

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        *,
        owner: str | None = None,
        verifier: str | None = None,
        sender: str | None = None,
        account: LocalAccount | None = None,
        artifacts: Mapping[str, dict[str, Any]] | None = None,
    ) -> Self:
        """Deploy a registry owned by ``owner`` (default: the deploying account) that uses the SnpVerifier at
        ``verifier``, or a new one deployed first with its EcdsaVerifier and CertificateVerifier. ``artifacts`` (by
        contract name) default to the shipped ones."""
        found = dict(artifacts or {})

        def artifact(name: str) -> Mapping[str, Any]:
            return found.get(name) or load_artifact(name)

        from_ = account.address if account is not None else sender or w3.eth.accounts[0]
        if verifier is None:
            ecdsa = _deploy(w3, artifact("EcdsaVerifier"), (), from_, account, "deploy EcdsaVerifier")
            certs = _deploy(w3, artifact("CertificateVerifier"), (), from_, account, "deploy CertificateVerifier")
            verifier = _deploy(
                w3,
                artifact("SnpVerifier"),
                (Web3.to_checksum_address(ecdsa), Web3.to_checksum_address(certs)),
                from_,
                account,
                "deploy SnpVerifier",
            )
        registry_artifact = artifact("CvmRegistry")
        address = _deploy(
            w3,
            registry_artifact,
            (Web3.to_checksum_address(owner or from_), Web3.to_checksum_address(verifier)),
            from_,
            account,
            "deploy CvmRegistry",
        )
        return cls(w3, address, sender=from_, account=account, abi=registry_abi(registry_artifact, found))

    # ----- plumbing ---------------------------------------------------------------------------------

    def _call(self, fn: str, *args: Any, as_sender: bool = False, block: str = "latest") -> Any:
        try:
            tx = {"from": self.sender} if as_sender and self.sender else {}
            return getattr(self.contract.functions, fn)(*args).call(tx, block_identifier=block)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed ChainError
            raise chain_error(exc, self.abi, action=fn) from None

    def _transact(self, fn: str, *args: Any) -> TxResult:
        if self.sender is None:
            raise ChainError(Reason.INPUT_INVALID, f"{fn} is a transaction: give the client a sender or an account")
        call = getattr(self.contract.functions, fn)(*args)
        self.last_tx = _send(self.w3, call, self.sender, self.account, self.abi, fn)
        return self.last_tx

    def estimate_gas(self, fn: str, *args: Any) -> int:
        """Gas of calling ``fn`` as a transaction from the client's sender (reverts become ChainError)."""
        try:
            call = getattr(self.contract.functions, fn)(*args)
            return int(call.estimate_gas({"from": self.sender} if self.sender else {}, block_identifier="pending"))
        except Exception as exc:  # noqa: BLE001
            raise chain_error(exc, self.abi, action=fn) from None

    def calldata(self, fn: str, *args: Any) -> bytes:
        """ABI-encoded call data of ``fn(*args)``, for senders that sign and journal themselves."""
        encoded = self.contract.encode_abi(fn, args=list(args))
        return bytes.fromhex(encoded[2:])

    def refresh_calldata(
        self,
        cvm: str,
        block_number: int,
        ak_public: TpmtPublic | bytes,
        attest: bytes,
        signature: TpmtSignature | bytes,
    ) -> bytes:
        """Call data of :meth:`refresh_cvm` (TPM structures in, the bare key and signature out)."""
        ak_key, raw_signature = refresh_args(ak_public, signature)
        return self.calldata("refreshCvm", Web3.to_checksum_address(cvm), block_number, ak_key, attest, raw_signature)

    def decode_revert(self, data: bytes) -> ChainError:
        """The typed error for revert data of this registry."""
        return decode_revert(data, self.abi)

    # ----- owner ------------------------------------------------------------------------------------

    def pin_root(self, product: Product, key_hash: bytes) -> TxResult:
        return self._transact("pinRoot", product_code(product), key_hash)

    def unpin_root(self, key_hash: bytes) -> TxResult:
        return self._transact("unpinRoot", key_hash)

    def revoke_certificate(self, cert_id: bytes) -> TxResult:
        return self._transact("revokeCertificate", cert_id)

    def publish_golden(self, golden: GoldenMeasurement) -> bytes:
        """Publish ``golden``; returns the id the registry computed (equal to ``golden.canonical_id()``)."""
        args: tuple[Any, ...] = (golden_struct(golden),)
        checks = report_checks_calldata(golden)
        fn = "publishGoldenWithChecks" if checks else "publishGolden"
        if checks:
            args += (checks,)
        golden_id = bytes(self._call(fn, *args, as_sender=True))
        self._transact(fn, *args)
        return golden_id

    def revoke_golden(self, golden_id: bytes) -> TxResult:
        return self._transact("revokeGolden", golden_id)

    def set_activator(self, activator: str, allowed: bool) -> TxResult:
        """``setActivator``: name (``allowed``) or unname a signer of SVSM activation statements."""
        return self._transact("setActivator", Web3.to_checksum_address(activator), allowed)

    def transfer_ownership(self, new_owner: str) -> TxResult:
        return self._transact("transferOwnership", Web3.to_checksum_address(new_owner))

    def accept_ownership(self) -> TxResult:
        return self._transact("acceptOwnership")

    def owner(self) -> str:
        return str(self._call("owner"))

    def pending_owner(self) -> str:
        """The address offered ownership by :meth:`transfer_ownership` (zero when none)."""
        return str(self._call("pendingOwner"))

    # ----- anyone -----------------------------------------------------------------------------------

    def register_certificate(self, der: bytes, issuer: bytes = ZERO32) -> bytes:
        """Register ``der`` under cached ``issuer`` (zero: a pinned ARK); returns its id."""
        cert_id: bytes = self._call("registerCertificate", der, issuer, as_sender=True)
        if self.certificate_of(cert_id).kind is CertKind.NONE:
            self._transact("registerCertificate", der, issuer)
        return cert_id

    def register_chain(self, ark: bytes, intermediate: bytes, leaf: bytes) -> bytes:
        """Register ARK, ASK/ASVK and VCEK/VLEK (DER) in order; returns the leaf's id."""
        ark_id = self.register_certificate(ark)
        intermediate_id = self.register_certificate(intermediate, ark_id)
        return self.register_certificate(leaf, intermediate_id)

    def register_cvm(
        self, golden_id: bytes, cvm: str, block_number: int, evidence: EvidenceCalldata, consent: bytes
    ) -> TxResult:
        """registerCvm; ``consent`` is the CVM key's signature over its consent to ``golden_id``
        (the on-chain evidence's ``nonce.consent``, :func:`offchain.abi.binding.golden_consent_digest`)."""
        return self._transact(
            "registerCvm", golden_id, Web3.to_checksum_address(cvm), block_number, evidence.as_tuple(), consent
        )

    def register_cvm_svsm(
        self,
        golden_id: bytes,
        cvm: str,
        block_number: int,
        evidence: SvsmEvidenceCalldata,
        activation_expiry: int,
        activation_signature: bytes,
        consent: bytes,
    ) -> TxResult:
        """registerCvmSvsm: ``activation_signature`` is an activator's signature over
        :func:`offchain.abi.binding.svsm_activation_digest` for the evidence's EK and AK names and
        ``activation_expiry``; ``consent`` as for :meth:`register_cvm`."""
        return self._transact(
            "registerCvmSvsm",
            golden_id,
            Web3.to_checksum_address(cvm),
            block_number,
            evidence.as_tuple(),
            activation_expiry,
            activation_signature,
            consent,
        )

    def refresh_cvm(
        self,
        cvm: str,
        block_number: int,
        ak_public: TpmtPublic | bytes,
        attest: bytes,
        signature: TpmtSignature | bytes,
    ) -> TxResult:
        """refreshCvm with the AK's TPMT_PUBLIC and the quote's TPMT_SIGNATURE (converted by
        :func:`onchain.calldata.refresh_args` to the bare key and signature the contract takes)."""
        ak_key, raw_signature = refresh_args(ak_public, signature)
        return self._transact(
            "refreshCvm", Web3.to_checksum_address(cvm), block_number, ak_key, attest, raw_signature
        )

    # ----- views ------------------------------------------------------------------------------------

    def verify_evidence(self, golden_id: bytes, expected_extra_data: bytes, evidence: EvidenceCalldata) -> Verdict:
        return Verdict(*self._call("verifyEvidence", golden_id, expected_extra_data, evidence.as_tuple()))

    def verify_report(
        self, report: bytes, leaf_id: bytes, golden_id: bytes = ZERO32, runtime_data: bytes = b""
    ) -> Verdict:
        return Verdict(*self._call("verifyReport", report, leaf_id, golden_id, runtime_data))

    def is_activator(self, activator: str) -> bool:
        """Whether the owner named ``activator`` (``isActivator``)."""
        return bool(self._call("isActivator", Web3.to_checksum_address(activator)))

    def is_attested(self, cvm: str) -> bool:
        return bool(self._call("isAttested", Web3.to_checksum_address(cvm)))

    def is_attested_for(self, cvm: str, golden_id: bytes) -> bool:
        return bool(self._call("isAttestedFor", Web3.to_checksum_address(cvm), golden_id))

    def attestation_status(self, cvm: str, golden_id: bytes = ZERO32) -> AttestationStatus:
        """Why ``cvm`` is or is not attested (against ``golden_id``, or any when zero)."""
        return AttestationStatus(self._call("attestationStatus", Web3.to_checksum_address(cvm), golden_id))

    def publish_sealing_key(self, cvm: str, sealing_key: bytes, signature: bytes) -> TxResult:
        """``publishSealingKey``: record the attested ``cvm``'s own signed sealing key (X25519)."""
        return self._transact("publishSealingKey", Web3.to_checksum_address(cvm), sealing_key, signature)

    def sealing_key_of(self, cvm: str) -> tuple[bytes, AttestationStatus]:
        """The sealing key ``cvm`` published (32 zero bytes when none) and its attestation status."""
        key, status = self._call("sealingKeyOf", Web3.to_checksum_address(cvm))
        return bytes(key), AttestationStatus(status)

    def attestation_of(self, cvm: str) -> Attestation:
        record, status = self._call("attestationOf", Web3.to_checksum_address(cvm))
        golden_id, ak_key, report_hash, quote_key, expiry, last_block, lifetime, leaf_end, leaf = record
        return Attestation(golden_id, ak_key, report_hash, quote_key, expiry, last_block, lifetime, leaf_end, leaf,
                           AttestationStatus(status))

    def golden_id(self, golden: GoldenMeasurement) -> bytes:
        """The id the contract computes for ``golden`` (with its report checks, when they check anything)."""
        checks = report_checks_calldata(golden)
        if checks:
            return bytes(self._call("goldenIdWithChecks", golden_struct(golden), checks))
        return bytes(self._call("goldenId", golden_struct(golden)))

    def report_checks_of(self, golden_id: bytes) -> ReportChecks:
        """The report checks golden measurement ``golden_id`` was published with (empty when none)."""
        encoded = bytes(self._call("reportChecksOf", golden_id))
        if not encoded:
            return ReportChecks()
        (fields,) = abi_decode([REPORT_CHECKS_ABI], encoded)
        return ReportChecks.from_onchain_fields(fields)

    def golden_of(self, golden_id: bytes) -> GoldenInfo:
        return GoldenInfo(*self._call("goldenOf", golden_id))

    def certificate_of(self, cert_id: bytes) -> CertificateInfo:
        kind, *rest = self._call("certificateOf", cert_id)
        return CertificateInfo(CertKind(kind), *rest)

    def root_product(self, key_hash: bytes) -> int:
        return int(self._call("rootProduct", key_hash))

    def quote_extra_data(self, cvm: str, block_number: int) -> bytes:
        """The extraData a transaction in the next block expects for a nonce from ``block_number``."""
        return bytes(self._call("quoteExtraData", Web3.to_checksum_address(cvm), block_number, block="pending"))


def registry_abi(
    registry_artifact: Mapping[str, Any] | None = None, artifacts: Mapping[str, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The registry's ABI plus the custom errors of the verifiers it calls, whose reverts it passes on."""
    registry = registry_artifact or load_artifact("CvmRegistry")
    abi = list(registry["abi"])
    names = {e.get("name") for e in abi if e.get("type") == "error"}
    for name in VERIFIERS:
        verifier = (artifacts or {}).get(name) or load_artifact(name)
        for entry in verifier["abi"]:
            if entry.get("type") == "error" and entry.get("name") not in names:
                abi.append(entry)
                names.add(entry["name"])
    return abi


def _deploy(
    w3: Web3, artifact: Mapping[str, Any], args: tuple[Any, ...], sender: str, account: LocalAccount | None,
    action: str,
) -> str:
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    result = _send(w3, factory.constructor(*args), sender, account, artifact["abi"], action)
    address = w3.eth.get_transaction_receipt(HexStr(result.tx_hash))["contractAddress"]
    if address is None:
        raise ChainError(Reason.CHAIN_TX_FAILED, f"{action} produced no contract")
    return str(address)


def _send(w3: Web3, call: Any, sender: str, account: LocalAccount | None, abi: Any, action: str) -> TxResult:
    """Estimate (surfacing any revert as a typed error), send with a margin, wait, check the receipt."""
    try:
        # Estimated against the pending block, the one the transaction will be mined in (a nonce from the
        # latest block is readable there with blockhash, not in the latest block itself).
        estimate = int(call.estimate_gas({"from": sender}, block_identifier="pending"))
    except Exception as exc:  # noqa: BLE001
        raise chain_error(exc, abi, action=action) from None
    gas = min(int(estimate * GAS_MARGIN) + 10_000, TX_GAS_CAP)
    try:
        if account is None:
            tx_hash = call.transact({"from": sender, "gas": gas})
        else:
            nonce = w3.eth.get_transaction_count(Web3.to_checksum_address(sender), "pending")
            tx = call.build_transaction({"from": sender, "gas": gas, "nonce": nonce})
            tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    except Exception as exc:  # noqa: BLE001
        raise chain_error(exc, abi, action=action) from None
    if receipt["status"] != 1:
        raise ChainError(Reason.CHAIN_TX_FAILED, f"{action} reverted in block {receipt['blockNumber']}",
                         tx_hash=Web3.to_hex(receipt["transactionHash"]))
    return TxResult(
        tx_hash=Web3.to_hex(receipt["transactionHash"]),
        block_number=int(receipt["blockNumber"]),
        gas_used=int(receipt["gasUsed"]),
        logs=tuple(receipt["logs"]),
    )
