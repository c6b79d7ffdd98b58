"""Choosing the certificates that should verify a report: given ones first, then AMD KDS if allowed.

The order of sources is fixed (PROTOCOL.md, "Trust roots"): certificates the caller names
explicitly, then those the evidence carries, then AMD's ASK/ASVK and ARK shipped with the package
(offchain.trust.amd_certs: for a leaf they issued), then AMD KDS, which is asked only when the
caller passed a :class:`~offchain.trust.kds.KdsClient`. Whatever is missing after that is
``snp.chain.incomplete``. Resolution trusts nothing: :func:`offchain.verify.chain.verify_chain`
decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from offchain.abi.certext import AmdCertExtensions
from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.errors import CvmAttestError, Reason, VerificationError
from offchain.trust.amd_certs import shipped_chain
from offchain.trust.certs import CertificateSet, CertRole, common_name
from offchain.trust.kds import KdsClient
from offchain.trust.roots import spki_fingerprint


@dataclass(frozen=True, slots=True)
class ChainCertificates:
    """The three certificates of one AMD chain, not yet verified."""

    leaf: x509.Certificate
    intermediate: x509.Certificate
    ark: x509.Certificate


def _leaf_role(available: CertificateSet, report: SnpReport) -> CertRole:
    claimed = CertRole.VCEK if report.signing_key is SignerKind.VCEK else CertRole.VLEK
    if available.get(claimed) is not None:
        return claimed
    other = CertRole.VLEK if claimed is CertRole.VCEK else CertRole.VCEK
    # The report's own claim decides, except when only the other kind was given: then that leaf
    # is verified and the report is rejected for naming the wrong signer.
    return other if available.get(other) is not None else claimed


def _product_candidates(available: CertificateSet, report: SnpReport) -> list[Product]:
    """Which product line's KDS to ask for a VCEK: the report's CPUID hint (version 3 and later),
    else the line named by a given certificate, else Milan then Genoa (the only lines whose
    firmware wrote version-2 reports, which carry no CPUID)."""
    hint = report.product_hint()
    if hint is not None:
        return [hint]
    for role in (CertRole.ASK, CertRole.ASVK, CertRole.ARK):
        cert = available.get(role)
        if cert is not None:
            try:
                return [Product.from_name(common_name(cert))]
            except CvmAttestError:
                continue
    return [Product.MILAN, Product.GENOA]


def _fetch_vcek(kds: KdsClient, products: list[Product], report: SnpReport) -> x509.Certificate:
    """The first candidate line whose KDS has this chip's VCEK. When none has, the last one's error,
    its message naming every product line tried and why each failed."""
    failures: list[tuple[Product, CvmAttestError]] = []
    for product in products:
        try:
            return kds.fetch_vcek(product, report.chip_id, report.tcb("reported", product))
        except CvmAttestError as exc:
            failures.append((product, exc))
    last = failures[-1][1]
    if len(failures) > 1:
        last.detail = "no product line's KDS gave this chip's VCEK: " + "; ".join(
            f"{product.value}: {exc.detail}" for product, exc in failures)
        last.context["products_tried"] = [product.value for product, _ in failures]
    raise last


def complete_from_shipped(
    leaf: x509.Certificate, signer: SignerKind, intermediate: x509.Certificate | None, ark: x509.Certificate | None
) -> tuple[x509.Certificate, x509.Certificate] | None:
    """The shipped AMD intermediate and ARK (offchain.trust.amd_certs) that complete this chain: only
    for a leaf the shipped intermediate issued, and only where they agree with what was given."""
    try:
        product = AmdCertExtensions.from_certificate(leaf).product
        shipped_intermediate, shipped_ark = shipped_chain(product, signer)
        leaf.verify_directly_issued_by(shipped_intermediate)
    except (CvmAttestError, ValueError, TypeError, InvalidSignature):
        return None
    if intermediate is not None and intermediate != shipped_intermediate:
        return None
    if ark is not None and spki_fingerprint(ark) != spki_fingerprint(shipped_ark):
        return None
    return intermediate or shipped_intermediate, ark or shipped_ark


def resolve_chain(available: CertificateSet, report: SnpReport, *, kds: KdsClient | None = None) -> ChainCertificates:
    """The leaf, intermediate and ARK for ``report`` from ``available``, completed from KDS if given."""
    leaf_role = _leaf_role(available, report)
    leaf = available.get(leaf_role)
    if leaf is None:
        if leaf_role is CertRole.VLEK or kds is None:
            raise VerificationError(
                Reason.CHAIN_INCOMPLETE,
                f"no {leaf_role.value.upper()} certificate"
                + ("" if leaf_role is CertRole.VLEK else " (AMD KDS may be asked with --kds)"),
                missing=[leaf_role.value],
            )
        leaf = _fetch_vcek(kds, _product_candidates(available, report), report)
    signer = SignerKind.VCEK if leaf_role is CertRole.VCEK else SignerKind.VLEK
    inter_role = CertRole.intermediate_for(signer)
    intermediate, ark = available.get(inter_role), available.get(CertRole.ARK)
    if intermediate is None or ark is None:
        shipped = complete_from_shipped(leaf, signer, intermediate, ark)
        if shipped is not None:
            return ChainCertificates(leaf=leaf, intermediate=shipped[0], ark=shipped[1])
        if kds is None:
            missing = [r.value for r, c in ((inter_role, intermediate), (CertRole.ARK, ark)) if c is None]
            raise VerificationError(
                Reason.CHAIN_INCOMPLETE,
                f"missing {' and '.join(m.upper() for m in missing)} (AMD KDS may be asked with --kds)",
                missing=missing,
            )
        product = AmdCertExtensions.from_certificate(leaf).product
        fetched_intermediate, fetched_ark = kds.fetch_cert_chain(product, signer)
        intermediate = intermediate if intermediate is not None else fetched_intermediate
        ark = ark if ark is not None else fetched_ark
    return ChainCertificates(leaf=leaf, intermediate=intermediate, ark=ark)
