"""The SEV-SNP attestation report against a verified VCEK/VLEK.

AMD SEV-SNP ABI specification, section "ATTESTATION_REPORT Structure" (Table 23 in revision 1.55)
and section "Signature format": the firmware signs bytes 0x000..0x29F of the report with ECDSA
P-384 over SHA-384; R and S are little-endian integers at 0x2A0 and 0x2E8. The VCEK is derived
from the chip's secrets and the REPORTED_TCB, so its certificate's SPL extensions must equal
REPORTED_TCB and (for a VCEK) its hwID extension must equal CHIP_ID (Turin: the first 8 bytes).
The report's SIGNING_KEY field (bits 4:2 of byte 0x48) says whether a VCEK or a VLEK signed.

:func:`verify_report` checks, in this order: the signing-key kind, the hwID, the TCB, the product
hinted by CPUID (reports of version 3 and later), and finally the signature.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from offchain.abi.snp_report import Product, SignerKind, SnpReport, TcbVersion
from offchain.errors import Reason, VerificationError
from offchain.trust.kds import hwid_for
from offchain.verify.chain import VerifiedChain

_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())


@dataclass(frozen=True, slots=True)
class SignedReport:
    """A report with its signed bytes serialised once, from the report itself (so the two agree).

    Lets a holder of evidence verify the same report many times without re-serialising it.
    """

    report: SnpReport
    signed: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signed", self.report.signed_bytes())


@dataclass(frozen=True, slots=True)
class VerifiedReport:
    """A report whose signature verified with a leaf that chains to a pinned root."""

    report: SnpReport
    chain: VerifiedChain
    reported_tcb: TcbVersion

    @property
    def product(self) -> Product:
        return self.chain.product

    @property
    def signer(self) -> SignerKind:
        return self.chain.signer


def report_signature_valid(report: SnpReport | SignedReport, key: ec.EllipticCurvePublicKey) -> bool:
    """Whether ``key`` signed the report (ECDSA P-384 / SHA-384 over ``signed_bytes()``)."""
    signed = report if isinstance(report, SignedReport) else SignedReport(report)
    try:
        signature = encode_dss_signature(signed.report.signature_r, signed.report.signature_s)
        key.verify(signature, signed.signed, _ECDSA_SHA384)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_report(report: SnpReport | SignedReport, chain: VerifiedChain) -> VerifiedReport:
    """Bind the report to its verified leaf and check its signature (see module docstring)."""
    signed = report if isinstance(report, SignedReport) else SignedReport(report)
    report = signed.report
    product = chain.product
    if report.signing_key is not chain.signer:
        raise VerificationError(
            Reason.SNP_SIGNER_MISMATCH,
            f"the report says a {report.signing_key.value.upper()} signed it, the leaf is a "
            f"{chain.signer.value.upper()}",
            report=report.signing_key.value,
            leaf=chain.signer.value,
        )
    if chain.signer is SignerKind.VCEK:
        hwid = chain.extensions.hwid
        expected = hwid_for(product, report.chip_id)
        if hwid is None or not hmac.compare_digest(hwid, expected):
            raise VerificationError(
                Reason.SNP_HWID_MISMATCH,
                "the VCEK belongs to another chip: its hwID differs from the report's CHIP_ID",
                hwid=hwid.hex() if hwid is not None else None,
                chip_id=report.chip_id.hex(),
            )
    reported = TcbVersion.from_raw(report.reported_tcb, product)
    leaf_tcb = chain.extensions.tcb(product)
    if reported != leaf_tcb:
        raise VerificationError(
            Reason.SNP_TCB_MISMATCH,
            "the leaf certificate's SPLs differ from the report's REPORTED_TCB",
            reported_tcb=reported.to_json(),
            leaf_tcb=leaf_tcb.to_json(),
        )
    hint = report.product_hint()
    if hint is not None and hint is not product:
        raise VerificationError(
            Reason.CHAIN_PRODUCT_MISMATCH,
            f"the report's CPUID says {hint.value}, the certificate chain is {product.value}",
            report=hint.value,
            chain=product.value,
        )
    if not report_signature_valid(signed, chain.leaf_key):
        raise VerificationError(
            Reason.SNP_SIGNATURE_INVALID,
            f"the report signature does not verify with the {chain.signer.value.upper()}",
        )
    return VerifiedReport(report=report, chain=chain, reported_tcb=reported)
