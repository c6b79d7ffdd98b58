"""The AK binding: direct (REPORT_DATA = H(AK TPMT_PUBLIC) || 0) and Azure (runtime data + HCLAkPub)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from offchain.abi.binding import direct_report_data, svsm_nonce, svsm_report_data
from offchain.abi.hcl import HclReport
from offchain.abi.tpm import TPM_ALG_AES, TPM_ALG_CFB, TPM_ALG_NULL, TpmtPublic
from offchain.credential import EK_AUTH_POLICY, EK_OBJECT_ATTRIBUTES
from offchain.errors import Reason, VerificationError
from offchain.verify.binding import SvsmActivation, verify_azure_binding, verify_direct_binding, verify_svsm_binding
from tests.support.evidence import dev_chain, ecc_ak_key, rsa_ak_key
from tests.support.snp_vectors import AZURE_HCL_VECTORS


def _hcl(vectors: Path, name: str) -> HclReport:
    return HclReport.from_bytes((vectors / name / "hcl_report.bin").read_bytes())


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_direct_binding(kind: str) -> None:
    key = rsa_ak_key() if kind == "rsa" else ecc_ak_key()
    public = TpmtPublic.from_public_key(key.public_key()).to_bytes()
    chain = dev_chain()
    report = chain.sign(chain.report_template(report_data=direct_report_data(public)))
    verify_direct_binding(report, public)
    other = TpmtPublic.from_public_key((ecc_ak_key() if kind == "rsa" else rsa_ak_key()).public_key()).to_bytes()
    with pytest.raises(VerificationError) as exc:
        verify_direct_binding(report, other)
    assert exc.value.reason is Reason.BINDING_REPORT_DATA_MISMATCH
    tail = report.replace(report_data=report.report_data[:32] + b"\x01" + bytes(31))
    with pytest.raises(VerificationError) as exc:
        verify_direct_binding(tail, public)
    assert exc.value.reason is Reason.BINDING_REPORT_DATA_MISMATCH


@pytest.mark.parametrize("name", AZURE_HCL_VECTORS)
def test_azure_binding_of_real_hcl_reports(vectors: Path, name: str) -> None:
    hcl = _hcl(vectors, name)
    ak = serialization.load_pem_public_key((vectors / name / "ak_pub.pem").read_bytes())
    verify_azure_binding(hcl.snp_report, hcl, ak)  # type: ignore[arg-type]
    expected = json.loads((vectors / "expected.json").read_text())[name]["runtime_data_sha256"]
    assert hashlib.sha256(hcl.runtime_data).hexdigest() == expected


def test_azure_runtime_data_changed(vectors: Path) -> None:
    hcl = _hcl(vectors, AZURE_HCL_VECTORS[1])
    ak = hcl.ak_public_key()
    changed = HclReport(snp_report=hcl.snp_report, runtime_data=hcl.runtime_data.replace(b'"tpm-enabled":true', b'"tpm-enabled":false'))
    assert changed.runtime_data != hcl.runtime_data
    with pytest.raises(VerificationError) as exc:
        verify_azure_binding(hcl.snp_report, changed, ak)
    assert exc.value.reason is Reason.BINDING_RUNTIME_DATA_MISMATCH


def test_azure_hcl_embeds_another_report(vectors: Path) -> None:
    a, b = _hcl(vectors, AZURE_HCL_VECTORS[1]), _hcl(vectors, AZURE_HCL_VECTORS[2])
    with pytest.raises(VerificationError) as exc:
        verify_azure_binding(a.snp_report, b, b.ak_public_key())
    assert exc.value.reason is Reason.BINDING_HCL_REPORT_MISMATCH


def test_azure_ak_is_not_hclakpub(vectors: Path) -> None:
    hcl = _hcl(vectors, AZURE_HCL_VECTORS[0])
    for key in (rsa_ak_key().public_key(), ecc_ak_key().public_key()):
        with pytest.raises(VerificationError) as exc:
            verify_azure_binding(hcl.snp_report, hcl, key)
        assert exc.value.reason is Reason.BINDING_AK_MISMATCH


def test_azure_report_data_tail_must_be_zero(vectors: Path) -> None:
    hcl = _hcl(vectors, AZURE_HCL_VECTORS[0])
    report = hcl.snp_report.replace(report_data=hcl.snp_report.report_data[:32] + b"\x01" * 32)
    tampered = HclReport(snp_report=report, runtime_data=hcl.runtime_data, version=hcl.version)
    with pytest.raises(VerificationError) as exc:
        verify_azure_binding(report, tampered, hcl.ak_public_key())
    assert exc.value.reason is Reason.BINDING_REPORT_DATA_MISMATCH


# --- the svsm binding ------------------------------------------------------------------------------


def _svsm_case() -> tuple[Any, bytes, TpmtPublic, bytes, TpmtPublic, bytes]:
    """A VMPL0 report over SHA-512(nonce || EK) for the extraData ``extra``, the EK, and an AK."""
    ek = TpmtPublic.from_public_key(rsa_ak_key().public_key(), object_attributes=EK_OBJECT_ATTRIBUTES,
                                    scheme=TPM_ALG_NULL, scheme_hash=0, auth_policy=EK_AUTH_POLICY)
    ek = dataclasses.replace(ek, symmetric=TPM_ALG_AES, symmetric_key_bits=128, symmetric_mode=TPM_ALG_CFB)
    ak = TpmtPublic.from_public_key(ecc_ak_key().public_key())
    extra = hashlib.sha256(b"challenge").digest()
    nonce = svsm_nonce(extra)
    chain = dev_chain()
    report = chain.report_template(report_data=svsm_report_data(nonce, ek.to_bytes()), vmpl=0)
    return report, nonce, ek, extra, ak, ek.to_bytes()


def test_svsm_binding() -> None:
    report, nonce, ek, extra, ak, manifest = _svsm_case()
    activation = SvsmActivation(ek_name=ek.name(), ak_name=ak.name())
    verify_svsm_binding(report, nonce, ek, manifest, ak, expected_extra_data=extra, activation=activation)
    other = TpmtPublic.from_public_key(rsa_ak_key().public_key())
    cases = [
        (dict(report=report.replace(vmpl=1)), Reason.SVSM_VMPL_NOT_ZERO),
        (dict(expected_extra_data=bytes(32)), Reason.SVSM_NONCE_MISMATCH),
        (dict(report=report.replace(report_data=bytes(64))), Reason.BINDING_REPORT_DATA_MISMATCH),
        (dict(activation=None), Reason.SVSM_NOT_ACTIVATED),
        (dict(activation=SvsmActivation(ek_name=other.name(), ak_name=ak.name())), Reason.SVSM_ACTIVATION_MISMATCH),
        (dict(activation=SvsmActivation(ek_name=ek.name(), ak_name=other.name())), Reason.SVSM_ACTIVATION_MISMATCH),
    ]
    for change, reason in cases:
        args: dict[str, Any] = dict(report=report, expected_extra_data=extra, activation=activation)
        args.update(change)
        with pytest.raises(VerificationError) as caught:
            verify_svsm_binding(args["report"], nonce, ek, manifest, ak, expected_extra_data=args["expected_extra_data"],
                                activation=args["activation"])
        assert caught.value.reason is reason, change
