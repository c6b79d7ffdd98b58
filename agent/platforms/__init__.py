"""Where the SEV-SNP report that binds the AK comes from: one interface, three platforms.

* ``snp`` (:mod:`agent.platforms.snp`): a bare SEV-SNP guest asks the AMD firmware through Linux
  configfs-tsm (``/sys/kernel/config/tsm/report``) or ``/dev/sev-guest`` for a report with
  ``REPORT_DATA = SHA-256(AK TPMT_PUBLIC) || 0^32``; the host's certificate table supplies the
  VCEK/VLEK when it has one.
* ``azure`` (:mod:`agent.platforms.azure`): the Azure paravisor owns REPORT_DATA; the HCL report in
  vTPM NV index 0x01400001 binds the runtime data that carries the vTPM's own AK (0x81000003).
* ``svsm`` (:mod:`agent.platforms.svsm`): the vTPM runs in an SVSM at VMPL0; the SVSM's own report
  (configfs-tsm's ``svsm`` service provider) carries the vTPM's EK, to which a verifier binds the AK
  by credential activation.
* ``sim`` (:mod:`agent.platforms.sim`): a software SEV-SNP firmware with a development AMD chain,
  for development and tests (also playing an SVSM: ``--sim-svsm``). Nothing trusts its root unless
  told to.

Each platform returns :class:`PlatformEvidence`; the agent puts it in the evidence bundle as is.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from offchain.abi.hcl import HclReport
from offchain.abi.snp_report import Product, SignerKind, SnpReport
from offchain.errors import CvmAttestError, PlatformError, Reason
from offchain.evidence import Platform, SvsmEvidence
from offchain.policy.golden import Binding
from offchain.trust.certs import CertRole, classify, common_name, parse_certificate


@dataclass(frozen=True, slots=True)
class PlatformEvidence:
    """The platform's half of the evidence: the report (and HCL report) and the certificates it has.

    ``certificates`` maps an evidence-bundle role (``vcek``/``vlek``, ``ask``/``asvk``, ``ark``) to PEM.
    """

    snp_report: SnpReport
    certificates: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    hcl_report: HclReport | None = None
    svsm: SvsmEvidence | None = None

    @property
    def signer(self) -> SignerKind:
        return self.snp_report.signing_key

    def product(self, fallback: Product | None = None) -> Product:
        """The product line: from the report's CPUID (version 3+), else from a certificate's names,
        else ``fallback`` (the operator's ``--product``)."""
        hint = self.snp_report.product_hint()
        if hint is not None:
            return hint
        for role in (CertRole.VCEK, CertRole.VLEK, CertRole.ASK, CertRole.ASVK, CertRole.ARK):
            pem = self.certificates.get(role.value)
            if pem is None:
                continue
            cert = parse_certificate(pem.encode())
            names = [common_name(cert)] + [
                str(a.value) for a in cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            ]
            for name in names:
                try:
                    return Product.from_name(name.removeprefix("ARK-").removeprefix("SEV-VLEK-").removeprefix("SEV-"))
                except CvmAttestError:
                    continue
        if fallback is not None:
            return fallback
        raise PlatformError(
            Reason.PLATFORM_UNAVAILABLE,
            "the product line is unknown: a version 2 report and no certificate that names it (give --product)",
        )


def certificates_by_role(ders: list[bytes]) -> dict[str, str]:
    """PEM of each AMD certificate keyed by its role (a certificate that is not AMD's is skipped)."""
    out: dict[str, str] = {}
    for der in ders:
        try:
            cert = parse_certificate(der)
            role = classify(cert)
        except CvmAttestError:
            continue
        out[role.value] = cert.public_bytes(Encoding.PEM).decode()
    return out


class AttestationPlatform(abc.ABC):
    """One source of SEV-SNP reports."""

    #: The evidence bundle's ``platform`` value.
    platform: Platform
    #: A persistent AK the platform provisioned (Azure), else None: the agent creates its own.
    persistent_ak: int | None = None

    @property
    def binding(self) -> Binding:
        return self.platform.binding

    @abc.abstractmethod
    def attest(self, ak_public: bytes) -> PlatformEvidence:
        """A report that binds ``ak_public`` (the AK's TPMT_PUBLIC), with the certificates known."""

    def attest_for(self, ak_public: bytes, extra_data: bytes) -> PlatformEvidence:
        """The report for evidence whose quote binds ``extra_data``: :meth:`attest` where the report
        binds the AK once; a fresh report per challenge where it cannot (svsm)."""
        return self.attest(ak_public)

    def close(self) -> None:
        """Release what the platform holds (the sim's SVSM thread); nothing by default."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Facts for ``GET /platform`` (paths, product, whether the root is a development one)."""
