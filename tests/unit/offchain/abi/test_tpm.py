"""TPM 2.0 Part 2 structures: TPMS_ATTEST (quote), TPMT_PUBLIC / TPM2B_PUBLIC, TPMT_SIGNATURE."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.abi.tpm import (
    TPM_ALG_ECC,
    TPM_ALG_ECDAA,
    TPM_ALG_ECDSA,
    TPM_ALG_KDF2,
    TPM_ALG_NULL,
    TPM_ALG_RSA,
    TPM_ALG_RSAES,
    TPM_ALG_RSAPSS,
    TPM_ALG_RSASSA,
    TPM_ALG_SHA1,
    TPM_ALG_SHA256,
    TPM_ALG_SHA384,
    TPM_ECC_NIST_P256,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    PcrSelection,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
    digest,
)
from offchain.errors import ParseError, Reason
from tests.unit.offchain.abi.cases import AZURE_QUOTE_DIRS, GCE, GCE_BANKS, TRUSTEE_TPM, expected
from tests.unit.offchain.abi.swtpm_process import Swtpm

ALL_24 = tuple(range(24))


def sample_attest(**fields: object) -> TpmsAttest:
    base: dict[str, object] = dict(
        magic=TPM_GENERATED_VALUE,
        type=TPM_ST_ATTEST_QUOTE,
        qualified_signer=b"\x00\x0b" + bytes(range(32)),
        extra_data=b"\x90\x09",
        clock=123456789,
        reset_count=10,
        restart_count=0,
        safe=True,
        firmware_version=0x2016051100162800,
        pcr_selections=(PcrSelection(TPM_ALG_SHA256, ALL_24),),
        pcr_digest=bytes(range(32)),
    )
    base.update(fields)
    return TpmsAttest(**base)  # type: ignore[arg-type]


def pcr_digest(pcrs: dict[str, str]) -> bytes:
    return hashlib.sha256(b"".join(bytes.fromhex(pcrs[str(i)]) for i in range(24))).digest()


# --- GCE vTPM: AK public area, three quotes --------------------------------------------------


@pytest.mark.vectors
def test_gce_ak_public_area(vectors: Path) -> None:
    raw = (vectors / GCE / "ak_pub.tpmt").read_bytes()
    want = expected(vectors)[GCE]
    ak = TpmtPublic.from_marshalled(raw)
    assert (ak.type, ak.name_alg, ak.object_attributes) == (want["ak"]["type"], want["ak"]["name_alg"], 0x50072)
    assert (ak.scheme, ak.scheme_hash, ak.key_bits) == (TPM_ALG_RSASSA, TPM_ALG_SHA256, want["ak"]["bits"])
    assert ak.to_bytes() == raw
    assert ak.name().hex() == want["quotes"]["sha256"]["ak_name"]
    cert = x509.load_der_x509_certificate((vectors / GCE / "ak_cert.der").read_bytes())
    assert ak.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    # the same public area inside a TPM2B_PUBLIC
    assert TpmtPublic.from_marshalled(ak.to_tpm2b()) == ak
    assert TpmtPublic.from_tpm2b(ak.to_tpm2b()) == ak


@pytest.mark.vectors
@pytest.mark.parametrize("bank", GCE_BANKS)
def test_gce_quote_decodes_and_verifies(vectors: Path, bank: str) -> None:
    attest_raw = (vectors / GCE / f"quote_{bank}_attest.bin").read_bytes()
    sig_raw = (vectors / GCE / f"quote_{bank}_sig.tpmt").read_bytes()
    want = expected(vectors)[GCE]["quotes"][bank]
    attest = TpmsAttest.from_bytes(attest_raw)
    sig = TpmtSignature.from_bytes(sig_raw)
    assert attest.to_json() == want["attest"]
    assert attest.extra_data == (vectors / GCE / "nonce.bin").read_bytes()
    assert (attest.to_bytes(), sig.to_bytes()) == (attest_raw, sig_raw)
    assert (sig.sig_alg, sig.hash_alg) == (TPM_ALG_RSASSA, TPM_ALG_SHA256)
    pcrs = json.loads((vectors / GCE / f"pcrs_{bank}.json").read_text())
    assert attest.pcr_digest == pcr_digest(pcrs)
    ak = TpmtPublic.from_bytes((vectors / GCE / "ak_pub.tpmt").read_bytes()).public_key()
    assert isinstance(ak, rsa.RSAPublicKey)
    ak.verify(sig.signature, attest_raw, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.vectors
def test_trustee_quote_decodes_and_verifies(vectors: Path) -> None:
    attest_raw = (vectors / TRUSTEE_TPM / "quote_attest.bin").read_bytes()
    attest = TpmsAttest.from_bytes(attest_raw)
    assert attest.to_json() == expected(vectors)[TRUSTEE_TPM]["attest"]
    sig = TpmtSignature.from_bytes((vectors / TRUSTEE_TPM / "quote_sig.tpmt").read_bytes())
    ak = serialization.load_der_public_key((vectors / TRUSTEE_TPM / "ak_pub.der").read_bytes())
    assert isinstance(ak, rsa.RSAPublicKey)
    ak.verify(sig.signature, attest_raw, padding.PKCS1v15(), hashes.SHA256())
    assert attest.pcr_digest == pcr_digest(json.loads((vectors / TRUSTEE_TPM / "pcrs_sha256.json").read_text()))


@pytest.mark.vectors
@pytest.mark.parametrize("case", AZURE_QUOTE_DIRS)
def test_azure_quote_decodes(vectors: Path, case: str) -> None:
    raw = (vectors / case / "tpm_quote_attest.bin").read_bytes()
    attest = TpmsAttest.from_bytes(raw)
    assert attest.to_json() == expected(vectors)[case]["tpm_quote"]["attest"]
    assert attest.extra_data == (vectors / case / "tpm_nonce.bin").read_bytes()
    assert attest.to_bytes() == raw
    # Azure ships the raw RSASSA signature; wrapped as a TPMT_SIGNATURE it round-trips.
    wrapped = TpmtSignature.rsassa(TPM_ALG_SHA256, (vectors / case / "tpm_quote_sig.bin").read_bytes())
    assert TpmtSignature.from_bytes(wrapped.to_bytes()) == wrapped


@pytest.mark.vectors
def test_gce_quote_with_a_trailing_byte_is_rejected(vectors: Path) -> None:
    raw = (vectors / GCE / "quote_sha256_attest.bin").read_bytes()
    with pytest.raises(ParseError) as exc:
        TpmsAttest.from_bytes(raw + b"\x00")
    assert exc.value.reason is Reason.TPM_ATTEST_MALFORMED


# --- a real TPM: swtpm quotes parsed by the same code ----------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    ("alg", "scheme"),
    [("ecc256:ecdsa-sha256:null", TPM_ALG_ECDSA), ("rsa2048:rsassa-sha256:null", TPM_ALG_RSASSA)],
    ids=["ecc-p256", "rsa-2048"],
)
def test_swtpm_quote_parses_and_verifies(swtpm: Swtpm, alg: str, scheme: int) -> None:
    attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"
    swtpm.run("tpm2_createprimary", "-C", "e", "-G", alg, "-a", attrs, "-c", "ak.ctx", "-Q")
    try:
        swtpm.run("tpm2_readpublic", "-c", "ak.ctx", "-o", "ak.pub", "-n", "ak.name", "-Q")
        swtpm.run(
            "tpm2_quote", "-c", "ak.ctx", "-l", "sha256:0,7,23", "-q", "c0ffee",
            "-m", "quote.msg", "-s", "quote.sig", "-o", "quote.pcrs", "-g", "sha256", "-Q",
        )  # fmt: skip
    finally:
        swtpm.flush_transient()
    ak = TpmtPublic.from_marshalled((swtpm.workdir / "ak.pub").read_bytes())
    assert ak.to_tpm2b() == (swtpm.workdir / "ak.pub").read_bytes()
    assert ak.name() == (swtpm.workdir / "ak.name").read_bytes()
    assert ak.scheme == scheme and ak.object_attributes == 0x00050072
    message = (swtpm.workdir / "quote.msg").read_bytes()
    attest = TpmsAttest.from_bytes(message)
    assert (attest.magic, attest.type, attest.extra_data) == (TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE, b"\xc0\xff\xee")
    assert attest.pcr_selections == (PcrSelection(TPM_ALG_SHA256, (0, 7, 23)),)
    assert attest.to_bytes() == message
    sig = TpmtSignature.from_bytes((swtpm.workdir / "quote.sig").read_bytes())
    assert sig.to_bytes() == (swtpm.workdir / "quote.sig").read_bytes()
    key = ak.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(sig.signature, message, padding.PKCS1v15(), hashes.SHA256())
    else:
        key.verify(encode_dss_signature(sig.r, sig.s), message, ec.ECDSA(hashes.SHA256()))
    # the twin: one flipped bit of the message and the AK's signature no longer verifies
    tampered = bytearray(message)
    tampered[-1] ^= 1
    with pytest.raises(InvalidSignature):
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig.signature, bytes(tampered), padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(encode_dss_signature(sig.r, sig.s), bytes(tampered), ec.ECDSA(hashes.SHA256()))


# --- TPMS_ATTEST structure -------------------------------------------------------------------


def test_attest_layout() -> None:
    raw = sample_attest().to_bytes()
    assert raw[:4] == b"\xffTCG" and raw[4:6] == b"\x80\x18"
    assert raw[6:8] == b"\x00\x22"  # qualifiedSigner size 34
    assert raw.endswith(b"\x00\x00\x00\x01" + b"\x00\x0b\x03\xff\xff\xff" + b"\x00\x20" + bytes(range(32)))


def test_magic_and_type_are_returned_not_judged() -> None:
    odd = sample_attest(magic=0x12345678)
    assert TpmsAttest.from_bytes(odd.to_bytes()).magic == 0x12345678
    certify = sample_attest(type=0x8017, pcr_selections=(), pcr_digest=b"", attested=b"\x00\x02ab\x00\x00")
    parsed = TpmsAttest.from_bytes(certify.to_bytes())
    assert not parsed.is_quote and parsed.attested == b"\x00\x02ab\x00\x00" and parsed.pcr_selections == ()


def attest_bytes_with(**overrides: bytes) -> bytes:
    """A quote's TPMS_ATTEST assembled field by field, some fields replaced by raw bytes."""
    parts = {
        "magic": b"\xffTCG",
        "type": b"\x80\x18",
        "signer": b"\x00\x02\x00\x0b",
        "extra": b"\x00\x01\x01",
        "clock": bytes(8) + bytes(4) + bytes(4) + b"\x01",
        "firmware": bytes(8),
        "selection": b"\x00\x00\x00\x01\x00\x0b\x03\xff\xff\xff",
        "digest": b"\x00\x20" + bytes(32),
    }
    parts.update(overrides)
    return b"".join(parts.values())


def test_assembled_attest_parses() -> None:
    attest = TpmsAttest.from_bytes(attest_bytes_with())
    assert attest.pcr_selections[0].pcrs == ALL_24 and attest.safe


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"digest": b"\x00\x20" + bytes(31)}, id="digest-truncated"),
        pytest.param({"digest": b"\x00\x41" + bytes(65)}, id="digest-over-64"),
        pytest.param({"signer": b"\x00\x43" + bytes(67)}, id="signer-over-66"),
        pytest.param({"extra": b"\x00\x43" + bytes(67)}, id="extra-over-66"),
        pytest.param({"clock": bytes(16) + b"\x02"}, id="safe-not-yes-no"),
        pytest.param({"selection": b"\x00\x00\x00\x11" + b"\x00\x0b\x03\xff\xff\xff" * 17}, id="count-over-16"),
        pytest.param({"selection": b"\x00\x00\x00\x01\x00\x0b\x00"}, id="size-of-select-0"),
        pytest.param({"selection": b"\x00\x00\x00\x01\x00\x0b\x21" + bytes(33)}, id="size-of-select-33"),
        pytest.param({"selection": b"\x00\x00\x00\x02\x00\x0b\x03\xff\xff\xff"}, id="count-more-than-present"),
        pytest.param({"digest": b"\x00\x20" + bytes(32) + b"\x00"}, id="trailing-byte"),
    ],
)
def test_malformed_attest_is_rejected(overrides: dict[str, bytes]) -> None:
    data = attest_bytes_with(**overrides)
    with pytest.raises(ParseError) as exc:
        TpmsAttest.from_bytes(data)
    assert exc.value.reason is Reason.TPM_ATTEST_MALFORMED


def test_every_truncation_of_a_quote_is_rejected() -> None:
    raw = sample_attest().to_bytes()
    for length in range(len(raw)):
        with pytest.raises(ParseError) as exc:
            TpmsAttest.from_bytes(raw[:length])
        assert exc.value.reason is Reason.TPM_ATTEST_MALFORMED


def test_attest_constructor_rejects_inconsistent_fields() -> None:
    for bad in (
        {"extra_data": bytes(67)},
        {"reset_count": -1},
        {"safe": 1},
        {"attested": b"x"},
        {"type": 0x8017},
        {"pcr_selections": ("not a selection",)},
    ):
        with pytest.raises(ParseError) as exc:
            sample_attest(**bad)
        assert exc.value.reason is Reason.TPM_ATTEST_MALFORMED


@pytest.mark.parametrize(
    ("pcrs", "size", "wire"),
    [
        (ALL_24, 3, "000b03ffffff"),
        ((0, 7, 23), 3, "000b03810080"),
        ((), 3, "000b03000000"),
        ((31,), 4, "000b0400000080"),
    ],
)
def test_pcr_selection_bitmap(pcrs: tuple[int, ...], size: int, wire: str) -> None:
    selection = PcrSelection(TPM_ALG_SHA256, pcrs, size)
    assert selection.to_bytes().hex() == wire
    assert selection.hash_name == "sha256"


@pytest.mark.parametrize(
    ("pcrs", "size"),
    [((1, 0), 3), ((1, 1), 3), ((24,), 3), ((-1,), 3), ((0,), 0), ((0,), 33)],
    ids=["descending", "duplicate", "beyond-bitmap", "negative", "size-0", "size-33"],
)
def test_pcr_selection_rejects_bad_values(pcrs: tuple[int, ...], size: int) -> None:
    with pytest.raises(ParseError) as exc:
        PcrSelection(TPM_ALG_SHA256, pcrs, size)
    assert exc.value.reason is Reason.TPM_ATTEST_MALFORMED


# --- TPMT_PUBLIC -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_public_area_from_rsa_key(rsa_key: rsa.RSAPrivateKey) -> None:
    public = TpmtPublic.from_public_key(rsa_key.public_key())
    raw = public.to_bytes()
    assert raw[:10] == bytes.fromhex("0001000b00050072") + b"\x00\x00"
    again = TpmtPublic.from_bytes(raw)
    assert again == public and again.exponent == 0
    assert again.public_key().public_numbers() == rsa_key.public_key().public_numbers()  # type: ignore[union-attr]
    assert public.name() == b"\x00\x0b" + hashlib.sha256(raw).digest()


def test_public_area_from_ec_key(ec_key: ec.EllipticCurvePrivateKey) -> None:
    public = TpmtPublic.from_public_key(ec_key.public_key(), name_alg=TPM_ALG_SHA384)
    again = TpmtPublic.from_bytes(public.to_bytes())
    assert again == public and again.curve_id == TPM_ECC_NIST_P256 and len(again.x) == 32
    assert again.public_key().public_numbers() == ec_key.public_key().public_numbers()  # type: ignore[union-attr]
    assert public.name()[:2] == b"\x00\x0c" and len(public.name()) == 50


def test_public_area_with_non_default_exponent() -> None:
    key = rsa.generate_private_key(public_exponent=3, key_size=1024).public_key()
    public = TpmtPublic.from_public_key(key)
    assert public.exponent == 3
    assert public.public_key().public_numbers().e == 3  # type: ignore[union-attr]


def test_from_public_key_rejects_other_key_types() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    with pytest.raises(ParseError) as exc:
        TpmtPublic.from_public_key(ed25519.Ed25519PrivateKey.generate().public_key())  # type: ignore[arg-type]
    assert exc.value.reason is Reason.TPM_PUBLIC_MALFORMED
    with pytest.raises(ParseError) as exc:
        TpmtPublic.from_public_key(ec.generate_private_key(ec.SECP256K1()).public_key())
    assert exc.value.reason is Reason.TPM_PUBLIC_MALFORMED


def test_symmetric_and_kdf_fields_round_trip(ec_key: ec.EllipticCurvePrivateKey) -> None:
    base = TpmtPublic.from_public_key(ec_key.public_key())
    storage = TpmtPublic(
        type=TPM_ALG_ECC,
        name_alg=TPM_ALG_SHA256,
        object_attributes=0x00030072,
        symmetric=0x0006,
        symmetric_key_bits=128,
        symmetric_mode=0x0043,
        scheme=TPM_ALG_ECDAA,
        scheme_hash=TPM_ALG_SHA256,
        scheme_count=3,
        curve_id=TPM_ECC_NIST_P256,
        kdf=TPM_ALG_KDF2,
        kdf_hash=TPM_ALG_SHA256,
        x=base.x,
        y=base.y,
    )
    assert TpmtPublic.from_bytes(storage.to_bytes()) == storage
    decrypt = TpmtPublic(TPM_ALG_RSA, TPM_ALG_SHA256, 0x00060072, scheme=TPM_ALG_RSAES, key_bits=2048, modulus=bytes(256))
    assert TpmtPublic.from_bytes(decrypt.to_bytes()) == decrypt


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b"\x00\x08" + b[2:], id="keyedhash-type"),
        pytest.param(lambda b: b + b"\x00", id="trailing-byte"),
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b[:10] + b"\x00\x99" + b[12:], id="unknown-scheme"),
        pytest.param(lambda b: b[:8] + b"\x00\x41" + bytes(65) + b[10:], id="auth-policy-over-64"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
def test_malformed_public_area_is_rejected(rsa_key: rsa.RSAPrivateKey, mutate) -> None:  # type: ignore[no-untyped-def]
    raw = TpmtPublic.from_public_key(rsa_key.public_key()).to_bytes()
    assert TpmtPublic.from_bytes(raw).key_bits == 2048
    with pytest.raises(ParseError) as exc:
        TpmtPublic.from_bytes(mutate(raw))
    assert exc.value.reason is Reason.TPM_PUBLIC_MALFORMED


def test_tpm2b_public_size_must_match(rsa_key: rsa.RSAPrivateKey) -> None:
    wrapped = TpmtPublic.from_public_key(rsa_key.public_key()).to_tpm2b()
    for bad in (wrapped + b"\x00", wrapped[:-1], b"\x00"):
        with pytest.raises(ParseError) as exc:
            TpmtPublic.from_tpm2b(bad)
        assert exc.value.reason is Reason.TPM_PUBLIC_MALFORMED


def test_public_key_needs_a_full_valid_key(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> None:
    good_rsa = TpmtPublic.from_public_key(rsa_key.public_key())
    good_ec = TpmtPublic.from_public_key(ec_key.public_key())
    for bad in (
        dataclasses.replace(good_rsa, modulus=good_rsa.modulus[1:]),
        dataclasses.replace(good_rsa, modulus=b""),
        dataclasses.replace(good_ec, y=bytes(32)),
        dataclasses.replace(good_ec, curve_id=0x0010),
        dataclasses.replace(good_ec, x=good_ec.x[1:]),
    ):
        with pytest.raises(ParseError) as exc:
            bad.public_key()
        assert exc.value.reason is Reason.TPM_PUBLIC_MALFORMED
    with pytest.raises(ParseError) as exc:
        dataclasses.replace(good_rsa, name_alg=0x0099).name()
    assert exc.value.reason is Reason.TPM_PUBLIC_MALFORMED


# --- TPMT_SIGNATURE --------------------------------------------------------------------------


def test_signature_layouts(ec_key: ec.EllipticCurvePrivateKey) -> None:
    rsassa = TpmtSignature.rsassa(TPM_ALG_SHA256, bytes(range(256)))
    assert rsassa.to_bytes()[:6] == bytes.fromhex("0014000b0100")
    pss = TpmtSignature(TPM_ALG_RSAPSS, TPM_ALG_SHA384, signature=b"\x01" * 256)
    assert TpmtSignature.from_bytes(pss.to_bytes()) == pss
    r, s = decode_dss_signature(ec_key.sign(b"m", ec.ECDSA(hashes.SHA256())))
    ecdsa = TpmtSignature.ecdsa(TPM_ALG_SHA256, r, s, 32)
    raw = ecdsa.to_bytes()
    assert raw[:6] == bytes.fromhex("0018000b0020") and len(raw) == 4 + 2 * 34
    again = TpmtSignature.from_bytes(raw)
    assert (again.r, again.s) == (r, s) and not again.is_rsa


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(bytes.fromhex("0005000b0020") + bytes(32), id="hmac-unsupported"),
        pytest.param(bytes.fromhex("0010"), id="null"),
        pytest.param(bytes.fromhex("0014000b0000"), id="empty-rsa-signature"),
        pytest.param(bytes.fromhex("0014000b0100") + bytes(255), id="rsa-truncated"),
        pytest.param(bytes.fromhex("0014000b0201") + bytes(513), id="rsa-over-512"),
        pytest.param(bytes.fromhex("0014000b0001") + b"\x01\x00", id="trailing-byte"),
        pytest.param(bytes.fromhex("0018000b0043") + bytes(67) + b"\x00\x00", id="ecc-over-66"),
        pytest.param(bytes.fromhex("0018000b000101"), id="ecc-missing-s"),
    ],
)
def test_malformed_signature_is_rejected(data: bytes) -> None:
    with pytest.raises(ParseError) as exc:
        TpmtSignature.from_bytes(data)
    assert exc.value.reason is Reason.TPM_SIGNATURE_MALFORMED


def test_ecdsa_component_too_large_is_rejected() -> None:
    with pytest.raises(ParseError) as exc:
        TpmtSignature.ecdsa(TPM_ALG_SHA256, 1 << 256, 1, 32)
    assert exc.value.reason is Reason.TPM_SIGNATURE_MALFORMED


def test_digest_helper() -> None:
    assert digest(TPM_ALG_SHA1, b"abc") == hashlib.sha1(b"abc").digest()
    with pytest.raises(ParseError) as exc:
        digest(TPM_ALG_NULL, b"abc")
    assert exc.value.reason is Reason.TPM_QUOTE_ALGORITHM_UNSUPPORTED


# --- hypothesis ------------------------------------------------------------------------------

selections = st.builds(
    lambda alg, size, bits: PcrSelection(alg, tuple(i for i in range(8 * size) if bits >> i & 1), size),
    st.sampled_from([TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384, 0x1234]),
    st.integers(1, 4),
    st.integers(0, (1 << 32) - 1),
)
quotes = st.builds(
    TpmsAttest,
    magic=st.integers(0, (1 << 32) - 1),
    type=st.just(TPM_ST_ATTEST_QUOTE),
    qualified_signer=st.binary(max_size=66),
    extra_data=st.binary(max_size=66),
    clock=st.integers(0, (1 << 64) - 1),
    reset_count=st.integers(0, (1 << 32) - 1),
    restart_count=st.integers(0, (1 << 32) - 1),
    safe=st.booleans(),
    firmware_version=st.integers(0, (1 << 64) - 1),
    pcr_selections=st.lists(selections, max_size=4).map(tuple),
    pcr_digest=st.binary(max_size=64),
)


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(quotes)
def test_attest_round_trip(attest: TpmsAttest) -> None:
    assert TpmsAttest.from_bytes(attest.to_bytes()) == attest


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.binary(max_size=300))
def test_attest_random_bytes_give_only_typed_errors(data: bytes) -> None:
    try:
        attest = TpmsAttest.from_bytes(data)
    except ParseError as exc:
        assert exc.reason is Reason.TPM_ATTEST_MALFORMED
    else:
        assert attest.to_bytes() == data


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(quotes, st.integers(0, 400), st.integers(1, 255))
def test_attest_mutations_give_only_typed_errors(attest: TpmsAttest, where: int, mask: int) -> None:
    data = bytearray(attest.to_bytes())
    data[where % len(data)] ^= mask
    try:
        TpmsAttest.from_bytes(bytes(data))
    except ParseError as exc:
        assert exc.reason is Reason.TPM_ATTEST_MALFORMED


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(
    st.sampled_from([TPM_ALG_RSASSA, TPM_ALG_RSAPSS, TPM_ALG_ECDSA]),
    st.sampled_from([TPM_ALG_SHA256, TPM_ALG_SHA384]),
    st.binary(min_size=1, max_size=512),
    st.binary(max_size=66),
    st.binary(max_size=66),
)
def test_signature_round_trip(alg: int, hash_alg: int, blob: bytes, r: bytes, s: bytes) -> None:
    sig = TpmtSignature(alg, hash_alg, signature=blob) if alg != TPM_ALG_ECDSA else TpmtSignature(alg, hash_alg, ecc_r=r, ecc_s=s)
    assert TpmtSignature.from_bytes(sig.to_bytes()) == sig


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.binary(max_size=600))
def test_signature_random_bytes_give_only_typed_errors(data: bytes) -> None:
    try:
        sig = TpmtSignature.from_bytes(data)
    except ParseError as exc:
        assert exc.reason is Reason.TPM_SIGNATURE_MALFORMED
    else:
        assert sig.to_bytes() == data


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.binary(max_size=600))
def test_public_random_bytes_give_only_typed_errors(data: bytes) -> None:
    for parse in (TpmtPublic.from_bytes, TpmtPublic.from_tpm2b, TpmtPublic.from_marshalled):
        try:
            public = parse(data)
        except ParseError as exc:
            assert exc.reason is Reason.TPM_PUBLIC_MALFORMED
        else:
            assert data in (public.to_bytes(), public.to_tpm2b())


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(
    st.sampled_from([TPM_ALG_RSA, TPM_ALG_ECC]),
    st.sampled_from([TPM_ALG_RSASSA, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_RSAES, TPM_ALG_ECDAA]),
    st.binary(max_size=64),
    st.binary(max_size=66),
    st.integers(0, (1 << 32) - 1),
)
def test_public_round_trip(kind: int, scheme: int, policy: bytes, unique: bytes, attrs: int) -> None:
    if kind == TPM_ALG_RSA:
        public = TpmtPublic(kind, TPM_ALG_SHA256, attrs, policy, scheme=scheme, scheme_hash=0 if scheme in (TPM_ALG_NULL, TPM_ALG_RSAES) else TPM_ALG_SHA256, key_bits=8 * len(unique), modulus=unique)
    else:
        public = TpmtPublic(kind, TPM_ALG_SHA256, attrs, policy, scheme=scheme, scheme_hash=0 if scheme in (TPM_ALG_NULL, TPM_ALG_RSAES) else TPM_ALG_SHA256, curve_id=TPM_ECC_NIST_P256, x=unique, y=unique[::-1])
    assert TpmtPublic.from_bytes(public.to_bytes()) == public
    assert TpmtPublic.from_marshalled(public.to_tpm2b()) == public
