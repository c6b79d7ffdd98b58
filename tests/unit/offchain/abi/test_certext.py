"""AMD VCEK/VLEK certificate extensions (VCEK specification, Table 8) and the tiny DER codec."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.abi.certext import (
    OID_BL_SPL,
    OID_CSP_ID,
    OID_FMC_SPL,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_SNP_SPL,
    OID_STRUCT_VERSION,
    OID_TEE_SPL,
    OID_UCODE_SPL,
    AmdCertExtensions,
    decode_der_ia5,
    decode_der_uint,
    encode_der_ia5,
    encode_der_uint,
)
from offchain.abi.snp_report import Product, SnpReport, TcbVersion
from offchain.errors import ParseError, Reason
from tests.unit.offchain.abi.cases import LEAF_CERTS, expected, product_of

# Fixed validity window: these throwaway certificates are only parsed, never checked for time.
NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
NOT_AFTER = dt.datetime(2032, 1, 1, tzinfo=dt.timezone.utc)


def load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if path.suffix == ".pem":
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


@pytest.fixture(scope="module")
def throwaway_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate_with(key: ec.EllipticCurvePrivateKey, values: dict[x509.ObjectIdentifier, bytes]) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SEV-VCEK")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
    )
    for oid, value in values.items():
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    return builder.sign(key, hashes.SHA256())


GOOD = {
    OID_STRUCT_VERSION: b"\x02\x01\x00",
    OID_PRODUCT_NAME: b"\x16\x08Milan-B0",
    OID_BL_SPL: b"\x02\x01\x03",
    OID_TEE_SPL: b"\x02\x01\x00",
    OID_SNP_SPL: b"\x02\x01\x08",
    OID_UCODE_SPL: b"\x02\x02\x00\xd9",
    OID_HWID: bytes(range(64)),
}


# --- real certificates -----------------------------------------------------------------------


@pytest.mark.vectors
@pytest.mark.parametrize("case", LEAF_CERTS)
def test_real_leaf_extensions_match_expected(vectors: Path, case: str) -> None:
    directory = case.rsplit("/", 1)[0]
    cert = load_certificate(vectors / case)
    ext = AmdCertExtensions.from_certificate(cert)
    assert ext.to_json() == expected(vectors)[directory]["leaf_ext"]
    assert ext.product is product_of(vectors, directory)


@pytest.mark.vectors
@pytest.mark.parametrize("case", LEAF_CERTS)
def test_real_leaf_extensions_re_encode_byte_for_byte(vectors: Path, case: str) -> None:
    cert = load_certificate(vectors / case)
    original = [(e.oid, e.critical, e.value.value) for e in cert.extensions]  # type: ignore[attr-defined]
    encoded = [(e.oid, e.critical, e.value.value) for e in AmdCertExtensions.from_certificate(cert).to_extensions()]
    assert encoded == original


@pytest.mark.vectors
@pytest.mark.parametrize("case", LEAF_CERTS)
def test_real_leaf_tcb_equals_the_reports_reported_tcb(vectors: Path, case: str) -> None:
    directory = case.rsplit("/", 1)[0]
    report_path = vectors / directory / "report.bin"
    if not report_path.is_file():
        pytest.skip("certificate-only vector")
    product = product_of(vectors, directory)
    ext = AmdCertExtensions.from_certificate(load_certificate(vectors / case))
    report = SnpReport.from_bytes(report_path.read_bytes())
    assert ext.tcb(product) == report.tcb("reported", product)
    if ext.hwid is not None:
        assert report.chip_id[: len(ext.hwid)] == ext.hwid
    # the twin: the same certificate does not certify a TCB one SVN higher
    assert ext.tcb(product) != TcbVersion(ext.bootloader, ext.tee, ext.snp, (ext.microcode + 1) % 256, ext.fmc or 0)


@pytest.mark.vectors
def test_turin_certificate_carries_fmc_and_8_byte_hwid(vectors: Path) -> None:
    ext = AmdCertExtensions.from_certificate(load_certificate(vectors / "snp/turin-vcek-v5-oak/vcek.der"))
    assert ext.struct_version == 1 and ext.fmc == 0 and ext.hwid is not None and len(ext.hwid) == 8
    assert ext.tcb(Product.TURIN).to_raw() == 0x4700000002000100
    with pytest.raises(ParseError) as exc:
        AmdCertExtensions.from_certificate(
            load_certificate(vectors / "snp/milan-vcek-v2-virtee/vcek.der")
        ).tcb(Product.TURIN)
    assert exc.value.reason is Reason.CERT_EXTENSION_MALFORMED


@pytest.mark.vectors
def test_vlek_carries_csp_id_and_no_hwid(vectors: Path) -> None:
    ext = AmdCertExtensions.from_certificate(load_certificate(vectors / "snp/milan-vlek-v3-vmpl1-trustee/vlek.der"))
    assert ext.csp_id == "CN=cc-us-east-2.amazonaws.com" and ext.hwid is None
    assert ext.product_name == "Milan" and ext.product is Product.MILAN


# --- negative twins, one per way an extension can be wrong -----------------------------------


def test_well_formed_extensions_parse(throwaway_key: ec.EllipticCurvePrivateKey) -> None:
    ext = AmdCertExtensions.from_certificate(certificate_with(throwaway_key, GOOD))
    assert (ext.bootloader, ext.tee, ext.snp, ext.microcode) == (3, 0, 8, 217)
    assert ext.fmc is None and ext.csp_id is None and ext.hwid == bytes(range(64))


@pytest.mark.parametrize(
    ("oid", "value"),
    [
        pytest.param(OID_BL_SPL, None, id="bl-missing"),
        pytest.param(OID_UCODE_SPL, None, id="ucode-missing"),
        pytest.param(OID_PRODUCT_NAME, None, id="productName-missing"),
        pytest.param(OID_STRUCT_VERSION, None, id="structVersion-missing"),
        pytest.param(OID_BL_SPL, b"\x02\x02\x00\x05", id="integer-not-minimal"),
        pytest.param(OID_BL_SPL, b"\x02\x01\xff", id="integer-negative"),
        pytest.param(OID_BL_SPL, b"\x02\x00", id="integer-empty"),
        pytest.param(OID_BL_SPL, b"\x04\x01\x05", id="octet-string-not-integer"),
        pytest.param(OID_BL_SPL, b"\x02\x01\x05\x00", id="trailing-byte"),
        pytest.param(OID_BL_SPL, b"\x02\x02\x01\x00", id="spl-256"),
        pytest.param(OID_BL_SPL, b"\x02\x81\x01\x05", id="long-form-length-not-minimal"),
        pytest.param(OID_BL_SPL, b"\x02", id="truncated-header"),
        pytest.param(OID_PRODUCT_NAME, b"\x0c\x05Milan", id="utf8string-not-ia5"),
        pytest.param(OID_PRODUCT_NAME, b"\x16\x05Mil\xe1n", id="ia5-non-ascii"),
        pytest.param(OID_HWID, bytes(63), id="hwid-63-bytes"),
        pytest.param(OID_HWID, bytes(9), id="hwid-9-bytes"),
        pytest.param(OID_CSP_ID, b"\x02\x01\x00", id="cspid-integer"),
        pytest.param(OID_FMC_SPL, b"\x16\x01x", id="fmc-string"),
    ],
)
def test_malformed_extension_is_rejected(
    throwaway_key: ec.EllipticCurvePrivateKey, oid: x509.ObjectIdentifier, value: bytes | None
) -> None:
    values = dict(GOOD)
    if value is None:
        del values[oid]
    else:
        values[oid] = value
    with pytest.raises(ParseError) as exc:
        AmdCertExtensions.from_certificate(certificate_with(throwaway_key, values))
    assert exc.value.reason is Reason.CERT_EXTENSION_MALFORMED


def test_fmc_on_a_non_turin_tcb_is_rejected() -> None:
    ext = AmdCertExtensions(0, "Genoa", 1, 0, 2, 3, fmc=4)
    with pytest.raises(ParseError) as exc:
        ext.tcb(Product.GENOA)
    assert exc.value.reason is Reason.CERT_EXTENSION_MALFORMED
    assert ext.tcb(Product.TURIN).fmc == 4


def test_dataclass_rejects_out_of_range_values() -> None:
    with pytest.raises(ParseError) as exc:
        AmdCertExtensions(0, "Milan", 256, 0, 0, 0)
    assert exc.value.reason is Reason.CERT_EXTENSION_MALFORMED
    with pytest.raises(ParseError) as exc:
        AmdCertExtensions(0, "Milan", 1, 0, 0, 0, hwid=bytes(10))
    assert exc.value.reason is Reason.CERT_EXTENSION_MALFORMED
    with pytest.raises(ParseError) as exc:
        AmdCertExtensions(0, "Milan", 1, 0, 0, 0, reserved_spls=((9, 0),))
    assert exc.value.reason is Reason.CERT_EXTENSION_MALFORMED


@pytest.mark.parametrize(
    "ext",
    [
        AmdCertExtensions(0, "Milan-B0", 3, 0, 8, 115, hwid=bytes(range(64)), reserved_spls=((4, 0), (5, 0), (6, 0), (7, 0))),
        AmdCertExtensions(1, "Turin", 1, 0, 2, 71, fmc=0, hwid=b"\x3b" * 8, reserved_spls=((5, 0), (6, 0), (7, 0))),
        AmdCertExtensions(0, "Milan", 4, 0, 24, 217, csp_id="CN=cc-eu-west-1.amazonaws.com"),
    ],
    ids=["milan-vcek", "turin-vcek", "milan-vlek"],
)
def test_extensions_round_trip_through_a_certificate(
    throwaway_key: ec.EllipticCurvePrivateKey, ext: AmdCertExtensions
) -> None:
    values = {e.oid: e.value.value for e in ext.to_extensions()}
    assert AmdCertExtensions.from_certificate(certificate_with(throwaway_key, values)) == ext


# --- DER codec -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "der"),
    [(0, "020100"), (1, "020101"), (127, "02017f"), (128, "02020080"), (217, "020200d9"), (256, "02020100")],
)
def test_der_integer_encoding(value: int, der: str) -> None:
    assert encode_der_uint(value).hex() == der
    assert decode_der_uint(bytes.fromhex(der), "x") == value


def test_der_long_form_length() -> None:
    text = "x" * 200
    encoded = encode_der_ia5(text)
    assert encoded[:3] == b"\x16\x81\xc8"
    assert decode_der_ia5(encoded, "x") == text


def test_encoders_reject_what_they_cannot_encode() -> None:
    with pytest.raises(ParseError) as exc:
        encode_der_uint(-1)
    assert exc.value.reason is Reason.INPUT_INVALID
    with pytest.raises(ParseError) as exc:
        encode_der_ia5("Mílan")
    assert exc.value.reason is Reason.INPUT_INVALID


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.integers(0, 1 << 200))
def test_der_integer_round_trip(value: int) -> None:
    assert decode_der_uint(encode_der_uint(value), "x") == value


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=300))
def test_der_ia5_round_trip(text: str) -> None:
    assert decode_der_ia5(encode_der_ia5(text), "x") == text


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.binary(max_size=40))
def test_der_random_bytes_give_only_typed_errors(data: bytes) -> None:
    for decode in (decode_der_uint, decode_der_ia5):
        try:
            decode(data, "x")
        except ParseError as exc:
            assert exc.reason is Reason.CERT_EXTENSION_MALFORMED
