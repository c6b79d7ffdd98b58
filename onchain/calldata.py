"""Calldata for the registry, built from ``offchain.abi`` objects: the one encoder both binding modes use.

* :func:`golden_struct` is ``ICvmRegistry.Golden`` for a :class:`GoldenMeasurement`, in the field
  order of its canonical id (docs/formats.md), so the id the contract computes is the id
  ``GoldenMeasurement.canonical_id()`` computes (a test checks both ways).
* :func:`report_checks_calldata` is the ``checks`` argument of ``publishGoldenWithChecks`` and
  ``goldenIdWithChecks``: the golden's report checks as an ABI-encoded ``ISnpVerifier.ReportChecks``,
  empty when they check nothing (then the golden is published with ``publishGolden``).
* :func:`evidence_struct` is ``ICvmRegistry.Evidence``: the report, the cached leaf's id, the AK's
  TPMT_PUBLIC, the quote and the PCR values of its selection, and for the Azure binding the
  runtime-data JSON with the offsets of the AK's JWK (:func:`jwk_offsets`), which the contract
  checks instead of searching (contracts/libraries/AzureBinding.sol).
* :func:`svsm_evidence_struct` is ``ICvmRegistry.SvsmEvidence`` for ``registerCvmSvsm``: the SVSM's
  VMPL0 report, the leaf's id, the 64-byte SVSM nonce, the manifest (the EK's TPMT_PUBLIC), the AK's
  TPMT_PUBLIC, the quote and the PCR values of its selection.
* :func:`certificate_id` is the registry's id of a certificate: ``keccak256(DER)``.

Nothing here decides whether evidence is good; it lays out bytes. It fails with typed errors when
the inputs cannot be laid out at all (a PCR of the selection missing, no HCLAkPub JWK).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from eth_abi.abi import encode as abi_encode
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from offchain.abi.hcl import HclReport
from offchain.abi.keccak import keccak256
from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.abi.tpm import TPM_ALG_RSA, TPM_ALG_SHA256, TpmsAttest, TpmtPublic, TpmtSignature
from offchain.errors import ParseError, Reason
from offchain.policy.golden import PRODUCT_BITS, SIGNER_BITS, Binding, GoldenMeasurement

#: contracts/libraries/AzureBinding.sol: the bytes that must start the AK's JWK and precede its modulus.
JWK_KID = b'{"kid":"HCLAkPub",'
JWK_E_N = b'"e":"AQAB","n":"'

BINDING_CODES = {Binding.DIRECT: 0, Binding.AZURE: 1, Binding.SVSM: 2}
PRODUCT_CODES = dict(PRODUCT_BITS)
SIGNER_CODES = dict(SIGNER_BITS)


def certificate_id(der: bytes) -> bytes:
    """The registry's id of a certificate: keccak256 of its DER bytes."""
    return keccak256(der)


def certificate_der(cert: x509.Certificate | bytes) -> bytes:
    """DER bytes of ``cert`` (a ``cryptography`` certificate, or DER already)."""
    if isinstance(cert, x509.Certificate):
        return cert.public_bytes(serialization.Encoding.DER)
    return bytes(cert)


def golden_struct(golden: GoldenMeasurement) -> tuple[Any, ...]:
    """``ICvmRegistry.Golden`` for ``golden`` (the order of docs/formats.md's canonical id)."""
    pcrs = golden.pinned_pcrs()
    return (
        golden.measurement,
        BINDING_CODES[golden.binding],
        golden.vmpl,
        sum(PRODUCT_CODES[p] for p in golden.products),
        sum(SIGNER_CODES[s] for s in golden.signers),
        golden.policy.debug_allowed,
        golden.policy.migrate_ma_allowed,
        golden.policy.smt_allowed,
        golden.policy.min_abi_major,
        golden.policy.min_abi_minor,
        golden.min_tcb.bootloader,
        golden.min_tcb.tee,
        golden.min_tcb.snp,
        golden.min_tcb.microcode,
        golden.min_tcb.fmc,
        sum(1 << i for i in pcrs),
        [pcrs[i] for i in sorted(pcrs)],
        golden.lifetime_seconds,
    )


#: ``ISnpVerifier.ReportChecks`` as an ABI type.
REPORT_CHECKS_ABI = "(bytes,bytes,bytes,bytes,bytes,bytes,uint32,bytes[],uint64,uint64,uint8,uint8,uint8)"


def report_checks_calldata(golden: GoldenMeasurement) -> bytes:
    """``abi.encode(ReportChecks)`` of ``golden``'s checks; empty when they check nothing."""
    if not golden.checks.checks_something():
        return b""
    return abi_encode([REPORT_CHECKS_ABI], [golden.checks.onchain_fields()])


def jwk_offsets(runtime_data: bytes) -> tuple[int, int]:
    """Offsets of the HCLAkPub JWK in an Azure runtime-data JSON: (start of ``{"kid":"HCLAkPub",``,
    first character of its ``n`` value). ``binding.jwk_offsets_invalid`` when the JWK does not have
    the shape the registry checks."""
    kid = runtime_data.find(JWK_KID)
    if kid < 0:
        raise ParseError(Reason.REGISTRY_JWK_OFFSETS_INVALID, "the runtime data has no HCLAkPub JWK")
    e_n = runtime_data.find(JWK_E_N, kid)
    if e_n < 0:
        raise ParseError(
            Reason.REGISTRY_JWK_OFFSETS_INVALID, 'the HCLAkPub JWK does not end with "e":"AQAB","n":"..."'
        )
    return kid, e_n + len(JWK_E_N)


@dataclass(frozen=True, slots=True)
class EvidenceCalldata:
    """``ICvmRegistry.Evidence`` (see the interface for each field)."""

    report: bytes
    leaf: bytes
    binding: Binding
    runtime_data: bytes
    ak_kid_offset: int
    ak_modulus_offset: int
    ak_public: bytes
    attest: bytes
    signature: bytes
    pcrs: tuple[bytes, ...]

    def as_tuple(self) -> tuple[Any, ...]:
        """The struct as web3 encodes it."""
        return (
            self.report,
            self.leaf,
            BINDING_CODES[self.binding],
            self.runtime_data,
            self.ak_kid_offset,
            self.ak_modulus_offset,
            self.ak_public,
            self.attest,
            self.signature,
            list(self.pcrs),
        )


def azure_ak_public(hcl: HclReport) -> TpmtPublic:
    """The AK's TPMT_PUBLIC for an Azure CVM whose tooling hands out only the HCLAkPub JWK: the RSA key
    as a restricted RSASSA-SHA256 signing key (the attributes of Azure's AK). The registry checks
    its modulus against the JWK; the AK hash it records is SHA-256 of these bytes."""
    n, e = hcl.ak_jwk()
    return TpmtPublic.from_public_key(rsa.RSAPublicNumbers(e, n).public_key())


def quote_signature(signature: TpmtSignature | bytes) -> bytes:
    """A TPMT_SIGNATURE; a bare RSASSA-PKCS1-v1_5 SHA-256 signature (Azure's tooling) is wrapped in one."""
    if isinstance(signature, TpmtSignature):
        return signature.to_bytes()
    raw = bytes(signature)
    try:
        return TpmtSignature.from_bytes(raw).to_bytes()
    except ParseError:
        return TpmtSignature.rsassa(TPM_ALG_SHA256, raw).to_bytes()


def selected_pcrs(attest: TpmsAttest, pcrs: Mapping[int, bytes]) -> tuple[bytes, ...]:
    """The values of the quote's selection, in selection order (PCRs ascending), from ``pcrs``."""
    if len(attest.pcr_selections) != 1 or attest.pcr_selections[0].hash_alg != TPM_ALG_SHA256:
        raise ParseError(Reason.TPM_QUOTE_PCR_SELECTION, "the registry takes one SHA-256 PCR selection")
    missing = [i for i in attest.pcr_selections[0].pcrs if i not in pcrs]
    if missing:
        raise ParseError(
            Reason.TPM_QUOTE_PCR_SELECTION, f"no value given for quoted PCRs {missing}", missing=missing
        )
    return tuple(bytes(pcrs[i]) for i in attest.pcr_selections[0].pcrs)


def evidence_struct(
    *,
    report: SnpReport | bytes,
    leaf: x509.Certificate | bytes,
    attest: bytes,
    signature: TpmtSignature | bytes,
    pcrs: Mapping[int, bytes],
    ak_public: TpmtPublic | bytes | None = None,
    hcl: HclReport | None = None,
) -> EvidenceCalldata:
    """``ICvmRegistry.Evidence`` for either binding.

    Direct binding: ``ak_public`` is the AK's TPMT_PUBLIC (the bytes hashed into REPORT_DATA).
    Azure binding: give ``hcl``; the report and the runtime data come from it, and ``ak_public``
    defaults to :func:`azure_ak_public`. ``leaf`` is the VCEK/VLEK certificate or its 32-byte id.
    """
    if hcl is not None:
        report_bytes = hcl.snp_report.to_bytes()
        given = report.to_bytes() if isinstance(report, SnpReport) else bytes(report)
        if given != report_bytes:
            raise ParseError(
                Reason.BINDING_HCL_REPORT_MISMATCH, "the HCL report embeds another SNP report than the one given"
            )
        runtime = hcl.runtime_data
        kid, modulus = jwk_offsets(runtime)
        binding = Binding.AZURE
        public = ak_public if ak_public is not None else azure_ak_public(hcl)
    else:
        if ak_public is None:
            raise ParseError(Reason.INPUT_INVALID, "the direct binding needs the AK's TPMT_PUBLIC")
        report_bytes = report.to_bytes() if isinstance(report, SnpReport) else bytes(report)
        runtime, kid, modulus, binding, public = b"", 0, 0, Binding.DIRECT, ak_public
    public_bytes = public.to_bytes() if isinstance(public, TpmtPublic) else bytes(public)
    return EvidenceCalldata(
        report=report_bytes,
        leaf=_leaf_id(leaf),
        binding=binding,
        runtime_data=runtime,
        ak_kid_offset=kid,
        ak_modulus_offset=modulus,
        ak_public=public_bytes,
        attest=bytes(attest),
        signature=quote_signature(signature),
        pcrs=selected_pcrs(TpmsAttest.from_bytes(attest), pcrs),
    )


@dataclass(frozen=True, slots=True)
class SvsmEvidenceCalldata:
    """``ICvmRegistry.SvsmEvidence`` (see the interface for each field)."""

    report: bytes
    leaf: bytes
    svsm_nonce: bytes
    manifest: bytes
    ak_public: bytes
    attest: bytes
    signature: bytes
    pcrs: tuple[bytes, ...]

    def as_tuple(self) -> tuple[Any, ...]:
        """The struct as web3 encodes it."""
        return (
            self.report,
            self.leaf,
            self.svsm_nonce,
            self.manifest,
            self.ak_public,
            self.attest,
            self.signature,
            list(self.pcrs),
        )


def svsm_evidence_struct(
    *,
    report: SnpReport | bytes,
    leaf: x509.Certificate | bytes,
    svsm_nonce: bytes,
    manifest: TpmtPublic | bytes,
    ak_public: TpmtPublic | bytes,
    attest: bytes,
    signature: TpmtSignature | bytes,
    pcrs: Mapping[int, bytes],
) -> SvsmEvidenceCalldata:
    """``ICvmRegistry.SvsmEvidence``: ``report`` is the SVSM's VMPL0 report whose REPORT_DATA is
    ``offchain.abi.binding.svsm_report_data(svsm_nonce, manifest)``, ``manifest`` the vTPM's EK
    TPMT_PUBLIC exactly as the SVSM hashed it, ``ak_public`` the AK's, ``leaf`` the VCEK/VLEK certificate
    or its 32-byte id; ``pcrs`` must hold every PCR of the quote's selection."""
    return SvsmEvidenceCalldata(
        report=report.to_bytes() if isinstance(report, SnpReport) else bytes(report),
        leaf=_leaf_id(leaf),
        svsm_nonce=bytes(svsm_nonce),
        manifest=manifest.to_bytes() if isinstance(manifest, TpmtPublic) else bytes(manifest),
        ak_public=ak_public.to_bytes() if isinstance(ak_public, TpmtPublic) else bytes(ak_public),
        attest=bytes(attest),
        signature=quote_signature(signature),
        pcrs=selected_pcrs(TpmsAttest.from_bytes(attest), pcrs),
    )


def _leaf_id(leaf: x509.Certificate | bytes) -> bytes:
    """A leaf's registry id: given as 32 bytes, or computed from the certificate (DER or object)."""
    return bytes(leaf) if isinstance(leaf, bytes) and len(leaf) == 32 else certificate_id(certificate_der(leaf))


def refresh_args(ak_public: TpmtPublic | bytes, signature: TpmtSignature | bytes) -> tuple[bytes, bytes]:
    """``(akKey, signature)`` of ``refreshCvm``: the AK's RSA modulus or P-256 ``x || y``, and the bare
    signature (RSASSA bytes, or ECDSA ``r || s`` with 32 bytes each)."""
    public = ak_public if isinstance(ak_public, TpmtPublic) else TpmtPublic.from_bytes(ak_public)
    sig = signature if isinstance(signature, TpmtSignature) else TpmtSignature.from_bytes(quote_signature(signature))
    if public.type == TPM_ALG_RSA:
        if not sig.is_rsa:
            raise ParseError(Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED, "an RSA AK signs with RSASSA")
        return public.modulus, sig.signature
    if sig.is_rsa or len(public.x) > 32 or len(public.y) > 32 or len(sig.ecc_r) > 32 or len(sig.ecc_s) > 32:
        raise ParseError(Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED, "the registry refreshes P-256 ECDSA AKs only")
    return (
        public.x.rjust(32, b"\x00") + public.y.rjust(32, b"\x00"),
        sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big"),
    )


def product_code(product: Product) -> int:
    """The registry's code of a product line (1 Milan, 2 Genoa, 4 Turin)."""
    return PRODUCT_CODES[product]


def signer_code(signer: SignerKind) -> int:
    """The registry's code of a signing key kind (1 VCEK, 2 VLEK)."""
    return SIGNER_CODES[signer]
