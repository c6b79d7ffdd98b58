"""The SVSM vTPM platform: the vTPM runs in a Secure VM Service Module (e.g. COCONUT-SVSM) at VMPL0,
out of reach of the guest kernel (VMPL > 0) and of the host.

The agent asks the SVSM, through Linux configfs-tsm (Linux 6.11+, ``Documentation/ABI/testing/
configfs-tsm``: ``service_provider`` = ``svsm``, ``service_guid`` = the vTPM service's GUID), for its
attestation of the vTPM service (SVSM specification, AMD 58019, SVSM_ATTEST_SINGLE_SERVICE): an SNP
report requested by the SVSM at VMPL 0 whose REPORT_DATA is ``SHA-512(nonce || manifest)``, the
manifest (``manifestblob``) being the vTPM's endorsement key as a TPMT_PUBLIC. The nonce is derived
from the extraData the agent's quote binds for the same challenge (offchain.abi.binding.svsm_nonce).

The REPORT_DATA does not name the AK: a verifier binds the AK to the EK by credential activation
(offchain.credential; ``POST /svsm/activate``), which the vTPM answers only if it holds both. The
agent recreates the EK from the TCG default template of the manifest's key type (the same template
gives the same key on the same TPM) and refuses to start if it differs from the manifest's.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Protocol

from offchain.abi.binding import SVSM_NONCE_BYTES, svsm_nonce, svsm_report_data
from offchain.abi.snp_report import SnpReport
from offchain.abi.tpm import TPM_ALG_RSA, TpmtPublic
from offchain.errors import CvmAttestError, PlatformError, Reason
from offchain.evidence import Platform, SvsmEvidence

from agent.config import AkKind
from agent.platforms import AttestationPlatform, PlatformEvidence
from agent.platforms.snp import MAX_TABLE, CertTable, read_attr, read_generation
from agent.tpm import AgentTpm

#: The vTPM service of the SVSM specification (and COCONUT-SVSM's protocols/attest.rs).
VTPM_SERVICE_GUID = uuid.UUID("c476f1eb-0123-45a5-9641-b4e7dde5bfe3")
ENTRY_NAME = "cvm-agent-svsm"
MAX_MANIFEST = 1 << 16
_ATTEMPTS = 3


class SvsmTsm:
    """SVSM attestations through one configfs-tsm entry (``<root>/cvm-agent-svsm``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def get_report(self, nonce: bytes) -> tuple[bytes, bytes, bytes]:
        """``(outblob, auxblob, manifestblob)`` of the vTPM service for the 64-byte ``nonce``."""
        if len(nonce) != SVSM_NONCE_BYTES:
            raise ValueError("an SVSM nonce is 64 bytes")
        entry = self.root / ENTRY_NAME
        try:
            entry.mkdir(exist_ok=True)
            provider = read_attr(entry, "provider", 64).decode("ascii", "replace").strip()
            if provider != "sev_guest":
                raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"configfs-tsm provider is {provider!r}, not sev_guest")
            if not (entry / "service_provider").exists():
                raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "configfs-tsm has no service_provider: this guest "
                                    "runs under no SVSM (or the kernel is older than 6.11)")
            for name, value in (("service_provider", "svsm"), ("service_guid", str(VTPM_SERVICE_GUID))):
                if read_attr(entry, name, 64).decode("ascii", "replace").strip() != value:
                    (entry / name).write_text(value)
            for _ in range(_ATTEMPTS):
                before = read_generation(entry)
                with open(entry / "inblob", "wb") as f:
                    f.write(nonce)
                report = read_attr(entry, "outblob", 1 << 16)
                aux = read_attr(entry, "auxblob", MAX_TABLE)
                manifest = read_attr(entry, "manifestblob", MAX_MANIFEST)
                if read_generation(entry) == before + 1:
                    return report, aux, manifest
        except OSError as exc:
            raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"configfs-tsm SVSM attestation failed: "
                                f"{exc.strerror or exc}", path=str(entry)) from None
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "another process kept writing the configfs-tsm entry")


class SvsmSimulator(Protocol):
    """What serves :class:`SvsmTsm`'s entry in place of the kernel and an SVSM (the sim's SVSM mode)."""

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class SvsmPlatform(AttestationPlatform):
    """Reports of the SVSM at VMPL0 over the vTPM's EK; see the module docstring."""

    platform = Platform.SVSM

    def __init__(self, tsm: SvsmTsm, tpm: AgentTpm, *, simulator: SvsmSimulator | None = None) -> None:
        self.tsm = tsm
        self._simulator = simulator
        first = self._attestation(svsm_nonce(bytes(32)))
        kind = AkKind.RSA if first.ek.type == TPM_ALG_RSA else AkKind.ECC
        if tpm.create_ek(kind) != first.manifest:
            raise PlatformError(Reason.SVSM_MANIFEST_MALFORMED, "the SVSM's manifest is not this vTPM's endorsement key "
                                "(TCG default template): the agent's TPM is not the SVSM's vTPM")

    def _attestation(self, nonce: bytes) -> SvsmEvidence:
        evidence = self._evidence(nonce)
        if evidence.svsm is None:
            raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "the SVSM answered no manifest")
        return evidence.svsm

    def _evidence(self, nonce: bytes) -> PlatformEvidence:
        report_bytes, aux, manifest = self.tsm.get_report(nonce)
        try:
            report = SnpReport.from_bytes(report_bytes)
            ek = TpmtPublic.from_bytes(manifest)
            certificates = CertTable.from_bytes(aux).certificates()
        except CvmAttestError as exc:
            raise PlatformError(Reason.PLATFORM_UNAVAILABLE, f"the SVSM answered malformed data: {exc.detail}") from None
        if report.vmpl != 0 or report.report_data != svsm_report_data(nonce, manifest):
            raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "the SVSM's report is not its VMPL0 attestation of this "
                                f"nonce and manifest (VMPL {report.vmpl})")
        return PlatformEvidence(snp_report=report, certificates=certificates,
                                svsm=SvsmEvidence(nonce=nonce, manifest=manifest, ek=ek))

    def attest(self, ak_public: bytes) -> PlatformEvidence:
        return self.attest_for(ak_public, bytes(32))

    def attest_for(self, ak_public: bytes, extra_data: bytes) -> PlatformEvidence:
        return self._evidence(svsm_nonce(extra_data))

    def describe(self) -> dict[str, Any]:
        return {"platform": "svsm", "interface": "configfs-tsm", "root": str(self.tsm.root),
                "service_guid": str(VTPM_SERVICE_GUID),
                **({"sim": self._simulator.describe()} if self._simulator is not None else {})}

    def close(self) -> None:
        if self._simulator is not None:
            self._simulator.close()

