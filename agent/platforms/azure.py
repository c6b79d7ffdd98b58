"""An Azure confidential VM: the paravisor's HCL report binds the vTPM's own AK.

On Azure the paravisor (HCL) owns REPORT_DATA: at boot it asks the AMD firmware for a report with
``REPORT_DATA[0:32] = SHA-256(runtime data)``, where the runtime data JSON carries the vTPM's
attestation key as the RSA JWK ``HCLAkPub``, and stores the whole HCL report in vTPM NV index
0x01400001 (layout: offchain.abi.hcl). The key itself is persistent at 0x81000003. The agent
therefore quotes with that AK (it cannot bind a key of its own) and checks at start that the JWK
in the HCL report is exactly the AK it will quote with.

Certificates: Azure does not put the VCEK in the guest's reach through the TPM; the verifier takes
it from AMD KDS (``cvm-cli verify evidence --kds``) or from its own files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from offchain.abi.hcl import HclReport
from offchain.abi.tpm import TpmtPublic
from offchain.errors import CvmAttestError, PlatformError, Reason, VerificationError
from offchain.evidence import Platform

from agent.platforms import AttestationPlatform, PlatformEvidence

HCL_REPORT_NV_INDEX = 0x01400001
AZURE_AK_HANDLE = 0x81000003

NvReader = Callable[[int], bytes]


class AzurePlatform(AttestationPlatform):
    """The HCL report from vTPM NV, read through ``nv_read`` (the agent's TPM)."""

    platform = Platform.AZURE
    persistent_ak = AZURE_AK_HANDLE

    def __init__(self, nv_read: NvReader) -> None:
        self._nv_read = nv_read
        self._cache: tuple[bytes, PlatformEvidence] | None = None

    def read_hcl_report(self) -> HclReport:
        try:
            raw = self._nv_read(HCL_REPORT_NV_INDEX)
        except PlatformError as exc:
            raise PlatformError(
                Reason.PLATFORM_UNAVAILABLE,
                f"no HCL report in vTPM NV index {HCL_REPORT_NV_INDEX:#x} (is this an Azure CVM?): {exc.detail}",
            ) from None
        try:
            return HclReport.from_bytes(raw)
        except CvmAttestError as exc:
            raise PlatformError(
                Reason.PLATFORM_UNAVAILABLE,
                f"NV index {HCL_REPORT_NV_INDEX:#x} does not hold an HCL report: {exc.detail}",
                cause=exc.reason.value,
            ) from None

    def attest(self, ak_public: bytes) -> PlatformEvidence:
        """The HCL report, after checking that its ``HCLAkPub`` is the AK we quote with.

        Read once per AK: the paravisor writes it at boot (and again only when a guest writes new
        user data to NV index 0x01400002, which the agent never does).
        """
        if self._cache is not None and self._cache[0] == ak_public:
            return self._cache[1]
        hcl = self.read_hcl_report()
        key = TpmtPublic.from_bytes(ak_public).public_key()
        n, e = hcl.ak_jwk()
        if not isinstance(key, rsa.RSAPublicKey) or key.public_numbers() != rsa.RSAPublicNumbers(e, n):
            raise VerificationError(
                Reason.BINDING_AK_MISMATCH,
                f"the HCL report's HCLAkPub is not the AK at {AZURE_AK_HANDLE:#x}: the vTPM and its report disagree",
            )
        evidence = PlatformEvidence(snp_report=hcl.snp_report, hcl_report=hcl)
        self._cache = (ak_public, evidence)
        return evidence

    def describe(self) -> dict[str, Any]:
        return {
            "platform": self.platform.value,
            "binding": self.binding.value,
            "development_root": False,
            "hcl_nv_index": f"{HCL_REPORT_NV_INDEX:#x}",
            "ak_handle": f"{AZURE_AK_HANDLE:#x}",
        }
