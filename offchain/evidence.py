"""The evidence bundle and its verification (docs/formats.md, "Evidence bundle"; PROTOCOL.md).

An :class:`EvidenceBundle` is what the agent serves at ``GET /collaterals/{nonce}`` and
``GET /onchain/collaterals`` and what ``cvm-cli verify evidence`` reads. :func:`verify_evidence`
checks all of it and returns a :class:`VerifiedEvidence` only when every step passed:

1. the AMD chain to a pinned root (certificates: the caller's, else the bundle's, else KDS when a
   fetcher is given), not revoked when the caller supplies the ARK's CRL, and the report
   (signature, TCB, hwID, signer kind): offchain.verify;
2. the AK: a restricted signing key, bound by the report (direct or Azure binding);
3. the quote: signed by the AK, over the expected extraData, with exactly the PCR values given;
4. the workload event log, when present, replays to the quoted PCR23;
5. the golden measurement, when given: every violation is reported (offchain.policy).

The caller supplies the expected extraData, and says which nonce form it expects: for cvm-attest
evidence :func:`offchain_expected_extra_data` computes the off-chain form from the verifier's nonce,
:func:`onchain_expected_extra_data` the on-chain form from the verifier's chain id, registry and block
hash and the bundle's CVM address. Neither takes a value from the bundle's ``nonce`` object, and each
refuses a bundle that declares the other form (``evidence.nonce_form_mismatch``).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from offchain.abi.binding import (
    SEALING_KEY_BYTES,
    SVSM_NONCE_BYTES,
    check_nonce,
    offchain_extra_data,
    onchain_extra_data,
    sealing_extra_data,
)
from offchain.abi.hcl import HclReport
from offchain.abi.jsontext import loads_bounded
from offchain.abi.snp_report import Product, SignerKind, SnpReport, TcbVersion
from offchain.abi.tpm import TpmtPublic, TpmtSignature
from offchain.abi.workload import WORKLOAD_PCR, WorkloadEvent, check_replay
from offchain.errors import CvmAttestError, ParseError, Reason, VerificationError
from offchain.inputs import read_input
from offchain.policy.check import check_policy
from offchain.policy.golden import Binding, GoldenMeasurement
from offchain.trust.certs import CertificateSet, CertRole, parse_certificate
from offchain.trust.kds import Fetcher, KdsClient
from offchain.trust.resolve import resolve_chain
from offchain.trust.roots import TrustRoots
from offchain.verify.binding import SvsmActivation, verify_azure_binding, verify_direct_binding, verify_svsm_binding
from offchain.verify.chain import ChainCache, VerifiedChain, verify_chain
from offchain.verify.revocation import CrlSource, check_revocation
from offchain.verify.quote import QuotedAttest, VerifiedQuote, check_ak_attributes, verify_quote
from offchain.verify.report import SignedReport, verify_report

EVIDENCE_VERSION = 1
MAX_EVIDENCE_BYTES = 1 << 20
_TOP_KEYS = {
    "version", "platform", "binding", "snp_report", "hcl_report", "svsm", "certificates", "ak_public", "quote",
    "pcrs", "event_log", "cvm_address", "nonce",
}
_REQUIRED_KEYS = {"version", "platform", "binding", "snp_report", "ak_public", "quote", "pcrs"}
_CERT_ROLES = {role.value for role in CertRole}
_PCR_COUNT = 24


class Platform(str, enum.Enum):
    """Where the evidence comes from: the simulated platform, a bare SNP guest, an Azure CVM, an
    SVSM vTPM (real, or the sim's SVSM mode)."""

    SIM = "sim"
    SNP = "snp"
    AZURE = "azure"
    SVSM = "svsm"

    @property
    def binding(self) -> Binding:
        return {Platform.AZURE: Binding.AZURE, Platform.SVSM: Binding.SVSM}.get(self, Binding.DIRECT)


@dataclass(frozen=True, slots=True)
class SvsmEvidence:
    """``{"nonce": hex (64 bytes), "manifest": hex}``: the nonce the agent gave the SVSM (derived from
    the quote's extraData, offchain.abi.binding.svsm_nonce) and the manifest of the VMPL0 report, the
    vTPM's endorsement key as a TPMT_PUBLIC."""

    nonce: bytes
    manifest: bytes
    ek: TpmtPublic

    def to_json(self) -> dict[str, Any]:
        return {"nonce": self.nonce.hex(), "manifest": self.manifest.hex()}


class NonceForm(str, enum.Enum):
    OFFCHAIN = "offchain"
    ONCHAIN = "onchain"
    SEALING = "sealing"


@dataclass(frozen=True, slots=True)
class OffchainNonce:
    """``{"form": "offchain", "value": hex}``: the nonce the verifier sent to ``GET /collaterals/{nonce}``.

    Informational: the verifier recomputes the expected extraData from its own nonce.
    """

    value: bytes

    def to_json(self) -> dict[str, Any]:
        return {"form": NonceForm.OFFCHAIN.value, "value": self.value.hex()}


@dataclass(frozen=True, slots=True)
class OnchainNonce:
    """``{"form": "onchain", chain_id, registry, block_number, block_hash, golden_id, consent}``: the
    challenge of an on-chain attestation; the quote binds the first four with the bundle's
    ``cvm_address``. ``consent`` is the CVM key's 65-byte signature (``r || s || v``) over
    :func:`offchain.abi.binding.golden_consent_digest` for ``golden_id``: the agent gives it only
    for golden measurements it was configured to consent to, and ``registerCvm`` requires it."""

    chain_id: int
    registry: bytes
    block_number: int
    block_hash: bytes
    golden_id: bytes
    consent: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "form": NonceForm.ONCHAIN.value,
            "chain_id": self.chain_id,
            "registry": "0x" + self.registry.hex(),
            "block_number": self.block_number,
            "block_hash": "0x" + self.block_hash.hex(),
            "golden_id": "0x" + self.golden_id.hex(),
            "consent": "0x" + self.consent.hex(),
        }


@dataclass(frozen=True, slots=True)
class SealingNonce:
    """``{"form": "sealing", "value": hex, "sealing_key": hex}``: the answer to
    ``GET /sealing/collaterals/{nonce}``. The quote binds ``sealing_key`` (the agent's X25519 key for
    secrets, offchain.seal), the bundle's ``cvm_address`` and the verifier's nonce
    (:func:`offchain.abi.binding.sealing_extra_data`): a verifier that accepts the evidence knows the
    key is this CVM's, now."""

    value: bytes
    sealing_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {"form": NonceForm.SEALING.value, "value": self.value.hex(), "sealing_key": self.sealing_key.hex()}


NonceSpec = OffchainNonce | OnchainNonce | SealingNonce


def _malformed(path: str, message: str) -> ParseError:
    return ParseError(Reason.EVIDENCE_MALFORMED, f"{path}: {message}", field=path)


_HEX = frozenset("0123456789abcdefABCDEF")


def _hex(value: Any, path: str, size: int | None = None, *, max_size: int = MAX_EVIDENCE_BYTES) -> bytes:
    if not isinstance(value, str):
        raise _malformed(path, "must be a hex string")
    text = value[2:] if value[:2] in ("0x", "0X") else value
    if len(text) % 2 or not _HEX.issuperset(text) or len(text) > 2 * max_size:
        raise _malformed(path, "must be an even number of hex digits")
    raw = bytes.fromhex(text)
    if size is not None and len(raw) != size:
        raise _malformed(path, f"must be {size} bytes, got {len(raw)}")
    return raw


def _uint(value: Any, path: str, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise _malformed(path, f"must be a {bits}-bit unsigned integer")
    return value


def _parse(path: str, parse: Any, data: bytes) -> Any:
    try:
        return parse(data)
    except ParseError as exc:
        # Keep the specific parser reason (snp.report.*, tpm.*): it says more than "malformed".
        raise ParseError(exc.reason, f"{path}: {exc.detail}", **{**exc.context, "field": path}) from None


@dataclass(frozen=True, slots=True)
class EvidenceBundle:
    """A parsed evidence bundle. Binary fields are parsed at load time (typed parse errors early);
    certificates stay PEM text until verification so a chain cache can skip parsing them."""

    platform: Platform
    binding: Binding
    snp_report: SnpReport
    ak_public: bytes
    ak: TpmtPublic
    quote_attest: bytes
    quote_signature: TpmtSignature
    pcrs: Mapping[int, bytes]
    certificates: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    hcl_report: HclReport | None = None
    event_log: tuple[WorkloadEvent, ...] | None = None
    cvm_address: bytes | None = None
    nonce: NonceSpec | None = None
    svsm: SvsmEvidence | None = None
    version: int = EVIDENCE_VERSION
    #: Derived once in __post_init__: the parsed quote, the report's signed bytes, and a digest of
    #: the certificate texts (the chain-cache key).
    quote: QuotedAttest = field(init=False, repr=False, compare=False)
    signed_report: SignedReport = field(init=False, repr=False, compare=False)
    certificates_digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "quote", _parse("quote.attest", QuotedAttest, self.quote_attest))
        object.__setattr__(self, "signed_report", SignedReport(self.snp_report))
        digest = hashlib.sha256()
        for role, text in sorted(self.certificates.items()):
            digest.update(f"{role}\0{len(text)}\0{text}".encode())
        object.__setattr__(self, "certificates_digest", digest.digest())
        if self.binding is not self.platform.binding:
            raise _malformed("binding", f"platform {self.platform.value} uses the {self.platform.binding.value} binding")
        if (self.hcl_report is not None) != (self.binding is Binding.AZURE):
            raise _malformed("hcl_report", "present exactly for the azure binding")
        if (self.svsm is not None) != (self.binding is Binding.SVSM):
            raise _malformed("svsm", "present exactly for the svsm binding")
        if isinstance(self.nonce, OnchainNonce) and self.cvm_address is None:
            raise _malformed("cvm_address", "on-chain evidence names the CVM address its quote binds")

    # --- JSON ------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any]) -> EvidenceBundle:
        """Parse a bundle; ``evidence.malformed`` for bad JSON or shape, parser reasons for bad binaries."""
        if isinstance(data, (str, bytes)):
            if len(data) > MAX_EVIDENCE_BYTES:
                raise _malformed("$", f"larger than {MAX_EVIDENCE_BYTES} bytes")
            data = loads_bounded(data, Reason.EVIDENCE_MALFORMED)
        if not isinstance(data, dict):
            raise _malformed("$", "must be a JSON object")
        unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
        if unknown:
            raise _malformed("$", f"unknown keys {unknown}")
        missing = sorted(_REQUIRED_KEYS - set(data))
        if missing:
            raise _malformed("$", f"missing keys {missing}")
        if data["version"] != EVIDENCE_VERSION or isinstance(data["version"], bool):
            raise _malformed("version", f"unsupported version {data['version']!r}")
        try:
            platform = Platform(data["platform"])
        except ValueError:
            raise _malformed("platform", f"must be one of {[p.value for p in Platform]}") from None
        try:
            binding = Binding(data["binding"])
        except ValueError:
            raise _malformed("binding", f"must be one of {[b.value for b in Binding]}") from None
        if binding is not platform.binding:
            raise _malformed("binding", f"platform {platform.value} uses the {platform.binding.value} binding")
        report = _parse("snp_report", SnpReport.from_bytes, _hex(data["snp_report"], "snp_report"))
        hcl = None
        if binding is Binding.AZURE:
            if "hcl_report" not in data:
                raise _malformed("hcl_report", "required for the azure binding")
            hcl = _parse("hcl_report", HclReport.from_bytes, _hex(data["hcl_report"], "hcl_report"))
        elif "hcl_report" in data:
            raise _malformed("hcl_report", "only the azure binding carries an HCL report")
        svsm = None
        if binding is Binding.SVSM:
            svsm = _svsm(data.get("svsm"))
        elif "svsm" in data:
            raise _malformed("svsm", "only the svsm binding carries an SVSM manifest")
        certificates = data.get("certificates", {})
        if not isinstance(certificates, dict):
            raise _malformed("certificates", "must be an object of role to PEM")
        for role, pem in certificates.items():
            if role not in _CERT_ROLES:
                raise _malformed("certificates", f"unknown role {role!r}; one of {sorted(_CERT_ROLES)}")
            if not isinstance(pem, str) or not pem.isascii():
                raise _malformed(f"certificates.{role}", "must be PEM text")
        ak_public = _hex(data["ak_public"], "ak_public")
        ak = _parse("ak_public", TpmtPublic.from_bytes, ak_public)
        quote = data["quote"]
        if not isinstance(quote, dict) or set(quote) != {"attest", "signature"}:
            raise _malformed("quote", "must be an object with exactly 'attest' and 'signature'")
        attest = _hex(quote["attest"], "quote.attest")
        signature = _parse("quote.signature", TpmtSignature.from_bytes, _hex(quote["signature"], "quote.signature"))
        pcrs_obj = data["pcrs"]
        if not isinstance(pcrs_obj, dict) or set(pcrs_obj) != {"sha256"} or not isinstance(pcrs_obj["sha256"], dict):
            raise _malformed("pcrs", "must be {\"sha256\": {index: hex}}")
        pcrs: dict[int, bytes] = {}
        for key, value in pcrs_obj["sha256"].items():
            if not (isinstance(key, str) and key.isascii() and key.isdigit() and str(int(key)) == key):
                raise _malformed("pcrs.sha256", f"PCR key {key!r} is not a decimal index")
            if int(key) >= _PCR_COUNT:
                raise _malformed("pcrs.sha256", f"PCR {key} is outside 0..{_PCR_COUNT - 1}")
            pcrs[int(key)] = _hex(value, f"pcrs.sha256.{key}", 32)
        events = None
        if "event_log" in data:
            if not isinstance(data["event_log"], list):
                raise _malformed("event_log", "must be a list of events")
            try:
                events = tuple(WorkloadEvent.from_json(e) for e in data["event_log"])
            except ParseError as exc:
                raise _malformed("event_log", exc.detail) from None
        address = None
        if "cvm_address" in data:
            address = _hex(data["cvm_address"], "cvm_address", 20)
        nonce = _nonce(data["nonce"]) if "nonce" in data else None
        if isinstance(nonce, OnchainNonce) and address is None:
            raise _malformed("cvm_address", "on-chain evidence names the CVM address its quote binds")
        return cls(
            platform=platform,
            binding=binding,
            snp_report=report,
            ak_public=ak_public,
            ak=ak,
            quote_attest=attest,
            quote_signature=signature,
            pcrs=MappingProxyType(dict(sorted(pcrs.items()))),
            certificates=MappingProxyType(dict(certificates)),
            hcl_report=hcl,
            event_log=events,
            cvm_address=address,
            nonce=nonce,
            svsm=svsm,
        )

    @classmethod
    def from_file(cls, path: Path) -> EvidenceBundle:
        """The document in ``path`` (``-``: standard input); one byte over the limit is the parser's to refuse."""
        return cls.from_json(read_input(path, MAX_EVIDENCE_BYTES, refuse_larger=False))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": self.version,
            "platform": self.platform.value,
            "binding": self.binding.value,
            "snp_report": self.snp_report.to_bytes().hex(),
        }
        if self.hcl_report is not None:
            doc["hcl_report"] = self.hcl_report.to_bytes().hex()
        if self.svsm is not None:
            doc["svsm"] = self.svsm.to_json()
        doc["certificates"] = dict(self.certificates)
        doc["ak_public"] = self.ak_public.hex()
        doc["quote"] = {"attest": self.quote_attest.hex(), "signature": self.quote_signature.to_bytes().hex()}
        doc["pcrs"] = {"sha256": {str(i): v.hex() for i, v in self.pcrs.items()}}
        if self.event_log is not None:
            doc["event_log"] = [e.to_json() for e in self.event_log]
        if self.cvm_address is not None:
            doc["cvm_address"] = "0x" + self.cvm_address.hex()
        if self.nonce is not None:
            doc["nonce"] = self.nonce.to_json()
        return doc

    def certificate_set(self) -> CertificateSet:
        """The bundle's certificates, parsed and sorted into roles."""
        found = {}
        for role, pem in self.certificates.items():
            cert = _parse(f"certificates.{role}", parse_certificate, pem.encode("ascii"))
            found[role] = cert
        parsed = CertificateSet.of(found.values())
        for role, cert in found.items():
            if parsed.get(CertRole(role)) is not cert:
                raise _malformed(f"certificates.{role}", "holds a certificate of another role")
        return parsed


def _svsm(value: Any) -> SvsmEvidence:
    if not isinstance(value, dict) or set(value) != {"nonce", "manifest"}:
        raise _malformed("svsm", "the svsm binding carries {\"nonce\", \"manifest\"}")
    nonce = _hex(value["nonce"], "svsm.nonce", SVSM_NONCE_BYTES)
    manifest = _hex(value["manifest"], "svsm.manifest")
    try:
        ek = TpmtPublic.from_bytes(manifest)
    except ParseError as exc:
        raise ParseError(Reason.SVSM_MANIFEST_MALFORMED, f"svsm.manifest is not a TPMT_PUBLIC: {exc.detail}",
                         field="svsm.manifest") from None
    return SvsmEvidence(nonce, manifest, ek)


def _nonce(value: Any) -> NonceSpec:
    if not isinstance(value, dict) or "form" not in value:
        raise _malformed("nonce", "must be an object with a 'form'")
    try:
        form = NonceForm(value["form"])
    except ValueError:
        raise _malformed("nonce.form", "must be 'offchain', 'onchain' or 'sealing'") from None
    if form in (NonceForm.OFFCHAIN, NonceForm.SEALING):
        keys = {"form", "value"} | ({"sealing_key"} if form is NonceForm.SEALING else set())
        if set(value) != keys:
            raise _malformed("nonce", f"the {form.value} form has exactly {', '.join(sorted(keys))}")
        raw = _hex(value["value"], "nonce.value", max_size=64)
        try:
            check_nonce(raw)
        except ParseError as exc:
            raise _malformed("nonce.value", exc.detail) from None
        if form is NonceForm.OFFCHAIN:
            return OffchainNonce(raw)
        return SealingNonce(raw, _hex(value["sealing_key"], "nonce.sealing_key", SEALING_KEY_BYTES))
    if set(value) != {"form", "chain_id", "registry", "block_number", "block_hash", "golden_id", "consent"}:
        raise _malformed(
            "nonce", "the onchain form has form, chain_id, registry, block_number, block_hash, golden_id and consent"
        )
    return OnchainNonce(
        chain_id=_uint(value["chain_id"], "nonce.chain_id", 256),
        registry=_hex(value["registry"], "nonce.registry", 20),
        block_number=_uint(value["block_number"], "nonce.block_number", 64),
        block_hash=_hex(value["block_hash"], "nonce.block_hash", 32),
        golden_id=_hex(value["golden_id"], "nonce.golden_id", 32),
        consent=_hex(value["consent"], "nonce.consent", 65),
    )


# --- expected extraData --------------------------------------------------------------------
#
# The verifier, not the evidence, chooses the form: a bundle's ``nonce`` object only declares what
# the agent was asked for. A bundle without one declares nothing and is checked against the form the
# caller chose (the quote decides); a bundle that declares the other form is refused before any
# cryptography, so an on-chain quote can never pass for an answer to an off-chain challenge, nor
# the reverse.


def _require_form(bundle: EvidenceBundle, expected: NonceForm) -> None:
    declared = bundle.nonce
    if declared is None:
        return
    form = (NonceForm.ONCHAIN if isinstance(declared, OnchainNonce)
            else NonceForm.SEALING if isinstance(declared, SealingNonce) else NonceForm.OFFCHAIN)
    if form is not expected:
        raise VerificationError(
            Reason.EVIDENCE_NONCE_FORM_MISMATCH,
            f"the verifier expects {expected.value} evidence, the bundle is in the {form.value} form",
            expected=expected.value,
            actual=form.value,
        )


def offchain_expected_extra_data(bundle: EvidenceBundle, nonce: bytes) -> bytes:
    """The extraData of off-chain cvm-attest evidence for the verifier's ``nonce`` (1..64 bytes):
    ``SHA-256("cvm-attest/offchain/v1" || nonce)``. A bundle in the on-chain form is refused."""
    _require_form(bundle, NonceForm.OFFCHAIN)
    return offchain_extra_data(nonce)


def onchain_expected_extra_data(bundle: EvidenceBundle, *, chain_id: int, registry: bytes | str, block_hash: bytes) -> bytes:
    """The extraData of on-chain evidence for the verifier's chain id, registry and the 32-byte hash of
    a block it trusts, and the bundle's CVM address (the quote must bind exactly them). A bundle in
    the off-chain form is refused."""
    _require_form(bundle, NonceForm.ONCHAIN)
    if bundle.cvm_address is None:
        raise _malformed("cvm_address", "on-chain evidence names the CVM address its quote binds")
    if len(block_hash) != 32:
        raise ParseError(Reason.INPUT_INVALID, f"a block hash is 32 bytes, got {len(block_hash)}", field="block_hash")
    return onchain_extra_data(chain_id, registry, bundle.cvm_address, block_hash)


def sealing_expected_extra_data(bundle: EvidenceBundle, nonce: bytes) -> bytes:
    """The extraData of sealing evidence for the verifier's ``nonce``: it binds the bundle's sealing
    key and CVM address (:func:`offchain.abi.binding.sealing_extra_data`), so a verifier that accepts
    the evidence may seal to :func:`sealing_key_of` the bundle. Any other form is refused."""
    _require_form(bundle, NonceForm.SEALING)
    if not isinstance(bundle.nonce, SealingNonce):
        raise _malformed("nonce", "sealing evidence declares the sealing form with the key its quote binds")
    if bundle.cvm_address is None:
        raise _malformed("cvm_address", "sealing evidence names the CVM address its quote binds")
    return sealing_extra_data(bundle.nonce.sealing_key, bundle.cvm_address, nonce)


def sealing_key_of(bundle: EvidenceBundle) -> bytes:
    """The sealing key a bundle in the sealing form declares (trust it only once the bundle verified
    against :func:`sealing_expected_extra_data`)."""
    if not isinstance(bundle.nonce, SealingNonce):
        raise _malformed("nonce", "not sealing evidence: it carries no sealing key")
    return bundle.nonce.sealing_key


# --- verification --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedEvidence:
    """Evidence that passed every check of :func:`verify_evidence`."""

    bundle: EvidenceBundle
    chain: VerifiedChain
    reported_tcb: TcbVersion
    quote: VerifiedQuote
    golden: GoldenMeasurement | None

    @property
    def report(self) -> SnpReport:
        return self.bundle.snp_report

    @property
    def product(self) -> Product:
        return self.chain.product

    @property
    def signer(self) -> SignerKind:
        return self.chain.signer

    @property
    def binding(self) -> Binding:
        return self.bundle.binding

    @property
    def pcrs(self) -> Mapping[int, bytes]:
        return self.quote.pcrs

    @property
    def golden_id(self) -> bytes | None:
        return None if self.golden is None else self.golden.canonical_id()


def _fast_chain_key(bundle: EvidenceBundle, roots: TrustRoots) -> bytes | None:
    """A cache key from the bundle's certificate texts, when they alone complete the chain.

    Which leaf is used depends on the report's SIGNING_KEY, so that is part of the key; when
    a certificate is missing (KDS would be asked) there is no key: the result would depend on
    the report's chip id and TCB too.
    """
    signer = bundle.snp_report.signing_key
    roles = (signer.value, CertRole.intermediate_for(signer).value, CertRole.ARK.value)
    if any(role not in bundle.certificates for role in roles):
        return None
    return ChainCache.key([bundle.certificates_digest, signer.value.encode()], roots)


def _chain(
    bundle: EvidenceBundle,
    *,
    certificates: CertificateSet | None,
    roots: TrustRoots,
    now: datetime,
    kds: KdsClient | None,
    cache: ChainCache | None,
) -> VerifiedChain:
    fast_key = _fast_chain_key(bundle, roots) if cache is not None and certificates is None else None
    if cache is not None and fast_key is not None:
        hit = cache.get(fast_key)
        if hit is not None:
            hit.check_validity(now)
            return hit
    available = bundle.certificate_set()
    if certificates is not None:
        available = certificates.over(available)
    found = resolve_chain(available, bundle.snp_report, kds=kds)
    chain = verify_chain(found.leaf, found.intermediate, found.ark, roots=roots, now=now, cache=cache)
    if cache is not None and fast_key is not None:
        cache.put(fast_key, chain)
    return chain


def verify_evidence(
    bundle: EvidenceBundle,
    *,
    expected_extra_data: bytes,
    golden: GoldenMeasurement | None,
    roots: TrustRoots,
    now: datetime,
    certificates: CertificateSet | None = None,
    fetcher: Fetcher | KdsClient | None = None,
    chain_cache: ChainCache | None = None,
    revocation: CrlSource | None = None,
    allow_debug_golden: bool = False,
    svsm_activation: SvsmActivation | None = None,
) -> VerifiedEvidence:
    """Verify a whole evidence bundle (see the module docstring); raise on the first failure.

    ``certificates`` override the bundle's; ``fetcher`` (a URL fetcher or a configured
    :class:`KdsClient`) lets missing certificates come from AMD KDS; ``chain_cache`` remembers
    verified chains between calls; ``revocation`` supplies the ARK's CRL, against which the chain
    is then checked (:mod:`offchain.verify.revocation`); ``allow_debug_golden`` accepts a golden
    measurement that allows debug guests (development only: :func:`offchain.policy.check_policy`);
    ``svsm_activation`` is what the caller's credential activation proved, for the svsm binding
    (offchain.svsm runs it against an agent). Errors after the chain verified carry ``product`` and
    ``signer`` in their context.
    """
    kds = fetcher if isinstance(fetcher, KdsClient) or fetcher is None else KdsClient(fetcher)
    chain = _chain(bundle, certificates=certificates, roots=roots, now=now, kds=kds, cache=chain_cache)
    try:
        if revocation is not None:
            check_revocation(chain, revocation(chain, now), now)
        verified_report = verify_report(bundle.signed_report, chain)
        check_ak_attributes(bundle.ak)
        ak_key = bundle.ak.public_key()
        if bundle.svsm is not None:  # __post_init__ pairs each binding with its fields
            verify_svsm_binding(bundle.snp_report, bundle.svsm.nonce, bundle.svsm.ek, bundle.svsm.manifest, bundle.ak,
                                expected_extra_data=expected_extra_data, activation=svsm_activation)
        elif bundle.hcl_report is None:
            verify_direct_binding(bundle.snp_report, bundle.ak_public)
        else:
            verify_azure_binding(bundle.snp_report, bundle.hcl_report, ak_key)
        quote = verify_quote(
            bundle.quote,
            bundle.quote_signature,
            ak_key,
            expected_extra_data=expected_extra_data,
            pcrs=bundle.pcrs,
        )
        if bundle.event_log is not None:
            pcr23 = quote.pcrs.get(WORKLOAD_PCR)
            if pcr23 is None:
                raise VerificationError(
                    Reason.EVENT_LOG_REPLAY_MISMATCH, "the evidence has a workload event log but PCR23 is not quoted"
                )
            check_replay(list(bundle.event_log), pcr23)
        if golden is not None:
            check_policy(
                golden,
                bundle.snp_report,
                product=chain.product,
                signer=chain.signer,
                binding=bundle.binding,
                pcrs=quote.pcrs,
                pcr23_events=bundle.event_log,
                allow_debug_golden=allow_debug_golden,
            )
    except CvmAttestError as exc:
        exc.context.setdefault("product", chain.product.value)
        exc.context.setdefault("signer", chain.signer.value)
        raise
    return VerifiedEvidence(
        bundle=bundle, chain=chain, reported_tcb=verified_report.reported_tcb, quote=quote, golden=golden
    )
