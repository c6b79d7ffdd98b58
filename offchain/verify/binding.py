"""The AK binding: the SNP report vouches for the vTPM's attestation key (PROTOCOL.md, "Evidence binding").

* Direct (bare SNP guest, SVSM vTPM, the simulated platform): ``REPORT_DATA`` equals
  ``offchain.abi.binding.direct_report_data(AK TPMT_PUBLIC)``.
* Azure (the paravisor owns REPORT_DATA): the HCL report embeds the SNP report at 0x20 and the
  runtime-data JSON after it; ``REPORT_DATA[0:32] = SHA-256(runtime data, exactly as found)``,
  ``REPORT_DATA[32:64]`` is zero, and the JSON's ``HCLAkPub`` RSA JWK is the AK.
* SVSM (the vTPM runs in the SVSM at VMPL0): the report is the SVSM's own, at VMPL 0, with
  ``REPORT_DATA = SHA-512(nonce || manifest)``, the manifest being the vTPM's EK and the nonce derived
  from the quote's extraData; the AK is bound to that EK by a credential activation the verifier ran
  (offchain.credential), which it passes in as :class:`SvsmActivation`.
"""

from __future__ import annotations

import hashlib
import hmac

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from offchain.abi.binding import direct_report_data, svsm_nonce, svsm_report_data
from offchain.abi.hcl import HclReport
from offchain.abi.snp_report import SnpReport
from offchain.abi.tpm import TpmtPublic
from offchain.credential import check_endorsement_key
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


@dataclass(frozen=True, slots=True)
class SvsmActivation:
    """What a credential activation proved: the TPM holding the EK named ``ek_name`` also holds the
    object named ``ak_name`` (both ``nameAlg || digest``)."""

    ek_name: bytes
    ak_name: bytes


def verify_svsm_binding(report: SnpReport, nonce: bytes, manifest: TpmtPublic, manifest_bytes: bytes,
                        ak: TpmtPublic, *, expected_extra_data: bytes, activation: SvsmActivation | None) -> None:
    """The SVSM binding (module docstring), in this order: VMPL 0, the nonce derived from the
    expected extraData, REPORT_DATA, the manifest an endorsement key, the activation of this AK
    under this EK."""
    if report.vmpl != 0:
        raise VerificationError(Reason.SVSM_VMPL_NOT_ZERO, f"the report was requested at VMPL {report.vmpl}, not by the "
                                "SVSM at VMPL 0: the guest chose its REPORT_DATA", vmpl=report.vmpl)
    if not hmac.compare_digest(nonce, svsm_nonce(expected_extra_data)):
        raise VerificationError(Reason.SVSM_NONCE_MISMATCH, "the SVSM report's nonce is not derived from this "
                                "challenge's extraData: an older or another report")
    if not hmac.compare_digest(report.report_data, svsm_report_data(nonce, manifest_bytes)):
        raise VerificationError(Reason.BINDING_REPORT_DATA_MISMATCH, "REPORT_DATA is not SHA-512(nonce || manifest): "
                                "the report does not vouch for this manifest", report_data=report.report_data.hex())
    check_endorsement_key(manifest)
    if activation is None:
        raise VerificationError(Reason.SVSM_NOT_ACTIVATED, "the AK is bound to the SVSM's vTPM only by a credential "
                                "activation under its EK: verify online (cvm-cli verify svsm AGENT-URL)")
    if not hmac.compare_digest(activation.ek_name, manifest.name()):
        raise VerificationError(Reason.SVSM_ACTIVATION_MISMATCH, "the activation was run under another EK than the "
                                "one the SVSM's report carries", expected=manifest.name().hex(),
                                actual=activation.ek_name.hex())
    if not hmac.compare_digest(activation.ak_name, ak.name()):
        raise VerificationError(Reason.SVSM_ACTIVATION_MISMATCH, "the activation was run for another AK than the one "
                                "that signed the quote", expected=ak.name().hex(), actual=activation.ak_name.hex())
