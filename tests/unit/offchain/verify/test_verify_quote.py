"""The vTPM quote: real GCE, trustee and Azure quotes verify; each broken field has its reason."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from offchain.abi.tpm import (
    TPM_ALG_ECDSA,
    TPM_ALG_ECSCHNORR,
    TPM_ALG_RSAPSS,
    TPM_ALG_SHA1,
    TPM_ALG_SHA256,
    TPM_ALG_SHA384,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
)
from offchain.errors import ParseError, Reason, VerificationError
from offchain.verify.quote import check_ak_attributes, verify_quote
from tests.support.evidence import ecc_ak_key, marshal_attest, rsa_ak_key, sign_attest
from tests.support.snp_vectors import AZURE_HCL_VECTORS

GCE = "tpm/gce-vtpm-cos85-nonce9009"
TRUSTEE = "tpm/trustee-tpm-evidence"
BANKS = {"sha1": TPM_ALG_SHA1, "sha256": TPM_ALG_SHA256, "sha384": TPM_ALG_SHA384}
NONCE = b"fresh nonce"


def _pcrs(path: Path) -> dict[int, bytes]:
    return {int(k): bytes.fromhex(v) for k, v in json.loads(path.read_text()).items()}


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1
    return bytes(out)


@pytest.mark.parametrize("bank", list(BANKS))
def test_gce_quotes_verify_in_every_bank(vectors: Path, bank: str) -> None:
    d = vectors / GCE
    ak = TpmtPublic.from_marshalled((d / "ak_pub.tpmt").read_bytes())
    check_ak_attributes(ak)
    quote = verify_quote(
        (d / f"quote_{bank}_attest.bin").read_bytes(),
        TpmtSignature.from_bytes((d / f"quote_{bank}_sig.tpmt").read_bytes()),
        ak,
        expected_extra_data=(d / "nonce.bin").read_bytes(),
        pcrs=_pcrs(d / f"pcrs_{bank}.json"),
        bank=BANKS[bank],
    )
    expected = json.loads((vectors / "expected.json").read_text())[GCE]["quotes"][bank]["attest"]
    assert quote.attest.pcr_digest.hex() == expected["pcr_digest"]
    assert sorted(quote.pcrs) == list(range(24))


def test_trustee_quote_verifies(vectors: Path) -> None:
    d = vectors / TRUSTEE
    ak = serialization.load_der_public_key((d / "ak_pub.der").read_bytes())
    attest = (d / "quote_attest.bin").read_bytes()
    expected = json.loads((vectors / "expected.json").read_text())[TRUSTEE]["attest"]["extra_data"]
    quote = verify_quote(
        attest,
        TpmtSignature.from_bytes((d / "quote_sig.tpmt").read_bytes()),
        ak,  # type: ignore[arg-type]
        expected_extra_data=bytes.fromhex(expected),
        pcrs=_pcrs(d / "pcrs_sha256.json"),
    )
    assert quote.attest.reset_count == 2


@pytest.mark.parametrize("name", AZURE_HCL_VECTORS)
def test_azure_quotes_with_raw_signatures_verify(vectors: Path, name: str) -> None:
    d = vectors / name
    ak = serialization.load_pem_public_key((d / "ak_pub.pem").read_bytes())
    args = dict(
        expected_extra_data=(d / "tpm_nonce.bin").read_bytes(), pcrs=_pcrs(d / "tpm_pcrs_sha256.json")
    )
    attest, sig = (d / "tpm_quote_attest.bin").read_bytes(), (d / "tpm_quote_sig.bin").read_bytes()
    verify_quote(attest, sig, ak, **args)  # type: ignore[arg-type]
    # The same signature wrapped as the TPMT_SIGNATURE a TPM would return verifies too.
    verify_quote(attest, TpmtSignature.rsassa(TPM_ALG_SHA256, sig), ak, **args)  # type: ignore[arg-type]


# --- negative twins on a real quote ----------------------------------------------------------


@pytest.fixture
def gce(vectors: Path) -> dict:
    d = vectors / GCE
    return dict(
        attest=(d / "quote_sha256_attest.bin").read_bytes(),
        signature=TpmtSignature.from_bytes((d / "quote_sha256_sig.tpmt").read_bytes()),
        ak=TpmtPublic.from_marshalled((d / "ak_pub.tpmt").read_bytes()),
        nonce=(d / "nonce.bin").read_bytes(),
        pcrs=_pcrs(d / "pcrs_sha256.json"),
    )


def _verify(q: dict) -> None:
    verify_quote(q["attest"], q["signature"], q["ak"], expected_extra_data=q["nonce"], pcrs=q["pcrs"])


def test_real_quote_baseline(gce: dict) -> None:
    _verify(gce)


def test_wrong_nonce(gce: dict) -> None:
    with pytest.raises(VerificationError) as exc:
        _verify({**gce, "nonce": b"\x90\x0a"})
    assert exc.value.reason is Reason.TPM_QUOTE_NONCE_MISMATCH


def test_a_pcr_off_by_one_bit(gce: dict) -> None:
    pcrs = dict(gce["pcrs"])
    pcrs[7] = _flip(pcrs[7], 31)
    with pytest.raises(VerificationError) as exc:
        _verify({**gce, "pcrs": pcrs})
    assert exc.value.reason is Reason.TPM_QUOTE_PCR_DIGEST_MISMATCH


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_pcr_values_must_be_exactly_the_selection(gce: dict, change: str) -> None:
    pcrs = dict(gce["pcrs"])
    if change == "missing":
        del pcrs[23]
    else:
        pcrs[24] = bytes(32)
    with pytest.raises(VerificationError) as exc:
        _verify({**gce, "pcrs": pcrs})
    assert exc.value.reason is Reason.TPM_QUOTE_PCR_SELECTION


def test_pcr_values_of_the_wrong_size(gce: dict) -> None:
    pcrs = dict(gce["pcrs"])
    pcrs[0] = bytes(20)
    with pytest.raises(ParseError) as exc:
        _verify({**gce, "pcrs": pcrs})
    assert exc.value.reason is Reason.INPUT_INVALID


def test_another_bank_than_expected(vectors: Path, gce: dict) -> None:
    d = vectors / GCE
    q = {
        **gce,
        "attest": (d / "quote_sha1_attest.bin").read_bytes(),
        "signature": TpmtSignature.from_bytes((d / "quote_sha1_sig.tpmt").read_bytes()),
    }
    with pytest.raises(VerificationError) as exc:
        _verify(q)  # SHA-1 bank quote, SHA-256 values expected
    assert exc.value.reason is Reason.TPM_QUOTE_PCR_SELECTION


@pytest.mark.parametrize("offset", [10, 100, 255], ids=str)
def test_a_flipped_signature_bit(gce: dict, offset: int) -> None:
    sig = gce["signature"]
    bad = TpmtSignature(sig.sig_alg, sig.hash_alg, signature=_flip(sig.signature, offset))
    with pytest.raises(VerificationError) as exc:
        _verify({**gce, "signature": bad})
    assert exc.value.reason is Reason.TPM_QUOTE_SIGNATURE_INVALID


def test_a_flipped_attest_bit(gce: dict) -> None:
    with pytest.raises(VerificationError) as exc:
        _verify({**gce, "attest": _flip(gce["attest"], 40)})  # inside clockInfo
    assert exc.value.reason is Reason.TPM_QUOTE_SIGNATURE_INVALID


def test_another_ak(gce: dict) -> None:
    other = TpmtPublic.from_public_key(rsa_ak_key().public_key())
    with pytest.raises(VerificationError) as exc:
        _verify({**gce, "ak": other})
    assert exc.value.reason is Reason.TPM_QUOTE_SIGNATURE_INVALID


def test_sha1_signatures_are_refused(gce: dict) -> None:
    sig = gce["signature"]
    with pytest.raises(VerificationError) as exc:
        _verify({**gce, "signature": TpmtSignature(sig.sig_alg, TPM_ALG_SHA1, signature=sig.signature)})
    assert exc.value.reason is Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED


# --- quotes made here: both AK kinds, magic/type, schemes ---------------------------------------


PCRS = {0: bytes(32), 23: bytes(range(32))}


@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_our_own_quotes_verify_with_rsa_and_p256_aks(kind: str) -> None:
    key = rsa_ak_key() if kind == "rsa" else ecc_ak_key()
    attest = marshal_attest(NONCE, PCRS)
    public = TpmtPublic.from_public_key(key.public_key())
    check_ak_attributes(public)
    quote = verify_quote(attest, sign_attest(key, attest), public, expected_extra_data=NONCE, pcrs=PCRS)
    assert quote.attest.extra_data == NONCE
    with pytest.raises(VerificationError) as exc:
        verify_quote(attest, sign_attest(key, attest), public, expected_extra_data=NONCE[:-1], pcrs=PCRS)
    assert exc.value.reason is Reason.TPM_QUOTE_NONCE_MISMATCH


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("magic", 0xFF544348, Reason.TPM_QUOTE_MAGIC),
        ("type_", 0x8017, Reason.TPM_QUOTE_TYPE),
        ("pcr_digest", bytes(32), Reason.TPM_QUOTE_PCR_DIGEST_MISMATCH),
        ("selection", (0,), Reason.TPM_QUOTE_PCR_SELECTION),
    ],
    ids=["magic", "type-certify", "digest", "selection"],
)
def test_signed_quotes_with_a_wrong_field(field: str, value: object, reason: Reason) -> None:
    key = rsa_ak_key()
    attest = marshal_attest(NONCE, PCRS, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(VerificationError) as exc:
        verify_quote(attest, sign_attest(key, attest), key.public_key(), expected_extra_data=NONCE, pcrs=PCRS)
    assert exc.value.reason is reason


def test_rsapss_quotes_verify() -> None:
    key = rsa_ak_key()
    attest = marshal_attest(NONCE, PCRS)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    sig = TpmtSignature(TPM_ALG_RSAPSS, TPM_ALG_SHA256, signature=key.sign(attest, pss, hashes.SHA256()))
    verify_quote(attest, sig, key.public_key(), expected_extra_data=NONCE, pcrs=PCRS)
    with pytest.raises(VerificationError) as exc:
        verify_quote(_flip(attest, 30), sig, key.public_key(), expected_extra_data=NONCE, pcrs=PCRS)
    assert exc.value.reason is Reason.TPM_QUOTE_SIGNATURE_INVALID


def test_a_signature_kind_that_does_not_fit_the_key() -> None:
    attest = marshal_attest(NONCE, PCRS)
    rsa_sig = sign_attest(rsa_ak_key(), attest)
    ecc_sig = sign_attest(ecc_ak_key(), attest)
    for sig, key in ((rsa_sig, ecc_ak_key().public_key()), (ecc_sig, rsa_ak_key().public_key())):
        with pytest.raises(VerificationError) as exc:
            verify_quote(attest, sig, key, expected_extra_data=NONCE, pcrs=PCRS)
        assert exc.value.reason is Reason.TPM_QUOTE_SIGNATURE_INVALID
    with pytest.raises(VerificationError) as exc:  # a raw signature is RSA only
        verify_quote(attest, rsa_sig.signature, ecc_ak_key().public_key(), expected_extra_data=NONCE, pcrs=PCRS)
    assert exc.value.reason is Reason.TPM_QUOTE_SIGNATURE_INVALID


def test_ecdsa_sha384_quotes_hash_the_pcrs_with_sha384_and_schnorr_is_refused() -> None:
    key = ecc_ak_key()
    # pcrDigest uses the signing scheme's hash (TPM 2.0 Part 3, 18.4 TPM2_Quote): SHA-384 here.
    attest = marshal_attest(NONCE, PCRS, pcr_digest=hashlib.sha384(PCRS[0] + PCRS[23]).digest())
    r, s = decode_dss_signature(key.sign(attest, ec.ECDSA(hashes.SHA384())))
    sig = TpmtSignature.ecdsa(TPM_ALG_SHA384, r, s, 32)
    assert sig.sig_alg == TPM_ALG_ECDSA
    verify_quote(attest, sig, key.public_key(), expected_extra_data=NONCE, pcrs=PCRS)
    schnorr = TpmtSignature(TPM_ALG_ECSCHNORR, TPM_ALG_SHA256, ecc_r=sig.ecc_r, ecc_s=sig.ecc_s)
    with pytest.raises(VerificationError) as exc:
        verify_quote(attest, schnorr, key.public_key(), expected_extra_data=NONCE, pcrs=PCRS)
    assert exc.value.reason is Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED


def test_ak_attributes_must_be_a_restricted_signing_key() -> None:
    public = TpmtPublic.from_public_key(rsa_ak_key().public_key())
    for attributes in (0x00040072, 0x00050070, 0x00010072):  # no restricted, no fixedTPM, no sign
        with pytest.raises(VerificationError) as exc:
            check_ak_attributes(TpmtPublic.from_public_key(rsa_ak_key().public_key(), object_attributes=attributes))
        assert exc.value.reason is Reason.TPM_AK_ATTRIBUTES
    check_ak_attributes(public)


def test_malformed_attest_is_a_parse_error() -> None:
    key = rsa_ak_key()
    attest = marshal_attest(NONCE, PCRS)[:-3]
    with pytest.raises(ParseError) as exc:
        verify_quote(attest, sign_attest(key, attest), key.public_key(), expected_extra_data=NONCE, pcrs=PCRS)
    assert exc.value.reason is Reason.TPM_ATTEST_MALFORMED
    assert TpmsAttest.from_bytes(marshal_attest(NONCE, PCRS)).extra_data == NONCE
