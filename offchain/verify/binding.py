"""The AK binding: the SNP report vouches for the vTPM's attestation key (PROTOCOL.md, "Evidence binding").

* Direct (bare SNP guest, SVSM vTPM, the simulated platform): ``REPORT_DATA`` equals
  ``offchain.abi.binding.direct_report_data(AK TPMT_PUBLIC)``.
* Azure (the paravisor owns REPORT_DATA): the HCL report embeds the SNP report at 0x20 and the
  runtime-data JSON after it; ``REPORT_DATA[0:32] = SHA-256(runtime data, exactly as found)``,
  ``REPORT_DATA[32:64]`` is zero, and the JSON's ``HCLAkPub`` RSA JWK is the AK.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric import rsa

from offchain.abi.binding import direct_report_data
from offchain.abi.hcl import HclReport
from offchain.abi.snp_report import SnpReport
from offchain.errors import Reason, VerificationError
from offchain.verify.quote import AkKey


def verify_direct_binding(report: SnpReport, ak_public_area: bytes) -> None:
    """REPORT_DATA must be SHA-256 of the AK's marshalled TPMT_PUBLIC, then 32 zero bytes."""
    if not hmac.compare_digest(report.report_data, direct_report_data(ak_public_area)):
        raise VerificationError(
            Reason.BINDING_REPORT_DATA_MISMATCH,
            "REPORT_DATA is not SHA-256(AK TPMT_PUBLIC) || 0^32: the report does not vouch for this AK",
            report_data=report.report_data.hex(),
        )


def verify_azure_binding(report: SnpReport, hcl: HclReport, ak: AkKey) -> None:
    """The HCL report embeds ``report``, its runtime data hashes into REPORT_DATA, and names ``ak``."""
    if hcl.snp_report != report:
        raise VerificationError(
            Reason.BINDING_HCL_REPORT_MISMATCH, "the HCL report embeds another SNP report than the one verified"
        )
    runtime_hash = hashlib.sha256(hcl.runtime_data).digest()
    if not hmac.compare_digest(report.report_data[:32], runtime_hash):
        raise VerificationError(
            Reason.BINDING_RUNTIME_DATA_MISMATCH,
            "REPORT_DATA[0:32] is not SHA-256 of the HCL runtime data",
            report_data=report.report_data[:32].hex(),
            runtime_data_sha256=runtime_hash.hex(),
        )
    if any(report.report_data[32:]):
        raise VerificationError(
            Reason.BINDING_REPORT_DATA_MISMATCH, "REPORT_DATA[32:64] must be zero in the Azure binding"
        )
    n, e = hcl.ak_jwk()
    if not isinstance(ak, rsa.RSAPublicKey) or ak.public_numbers() != rsa.RSAPublicNumbers(e, n):
        raise VerificationError(Reason.BINDING_AK_MISMATCH, "the quote's AK is not the HCLAkPub key of the runtime data")
