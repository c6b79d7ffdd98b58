"""Azure HCL report (HCLA header, SNP report at 0x20, IGVM_REQUEST_DATA, runtime-data JSON)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.abi.hcl import IGVM_OFFSET, RUNTIME_DATA_OFFSET, HclReport
from offchain.abi.snp_report import SnpReport
from offchain.errors import ParseError, Reason
from tests.unit.offchain.abi.cases import HCL_DIRS, expected


def b64url(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def ak() -> rsa.RSAPublicKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


def runtime_json(key: rsa.RSAPublicKey, **extra: object) -> bytes:
    n, e = key.public_numbers().n, key.public_numbers().e
    doc = {
        "keys": [
            {"kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA", "e": b64url(e), "n": b64url(n)},
            {"kid": "HCLEkPub", "key_ops": ["encrypt"], "kty": "RSA", "e": "AQAB", "n": "AQAB"},
        ],
        "vm-configuration": {"secure-boot": True, "tpm-enabled": True},
        **extra,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def sample(ak_key: rsa.RSAPublicKey, **fields: object) -> HclReport:
    data = runtime_json(ak_key)
    report = SnpReport.build(version=3, policy=0x3001F, report_data=hashlib.sha256(data).digest() + bytes(32))
    base: dict[str, object] = dict(snp_report=report, runtime_data=data, padding=2600 - RUNTIME_DATA_OFFSET - len(data))
    base.update(fields)
    return HclReport(**base)  # type: ignore[arg-type]


def put_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + value.to_bytes(4, "little") + data[offset + 4 :]


# --- real HCL reports ------------------------------------------------------------------------


@pytest.mark.vectors
@pytest.mark.parametrize("case", HCL_DIRS)
def test_real_hcl_report_decodes_to_expected(vectors: Path, case: str) -> None:
    raw = (vectors / case / "hcl_report.bin").read_bytes()
    want = expected(vectors)[case]
    hcl = HclReport.from_bytes(raw)
    assert {
        "signature": "HCLA",
        "version": hcl.version,
        "report_size": hcl.report_size,
        "request_type": hcl.request_type,
        "status": hcl.status,
    } == want["hcl_header"]
    assert {
        "data_size": hcl.data_size,
        "version": hcl.igvm_version,
        "report_type": hcl.report_type,
        "report_data_hash_type": hcl.report_data_hash_type,
        "variable_data_size": hcl.variable_data_size,
    } == want["igvm_request_data"]
    assert hashlib.sha256(hcl.runtime_data).hexdigest() == want["runtime_data_sha256"]
    assert hcl.runtime_data == (vectors / case / "runtime_data.json").read_bytes()
    assert hcl.snp_report.to_bytes() == (vectors / case / "report.bin").read_bytes()
    assert hcl.snp_report.report_data[:32] == hashlib.sha256(hcl.runtime_data).digest()
    assert sorted(k["kid"] for k in hcl.runtime_json()["keys"]) == want["runtime_keys"]
    assert hcl.report_data_hash == "sha256"
    assert hcl.to_bytes() == raw


@pytest.mark.vectors
@pytest.mark.parametrize("case", HCL_DIRS)
def test_real_hcl_ak_jwk_equals_the_published_ak(vectors: Path, case: str) -> None:
    hcl = HclReport.from_bytes((vectors / case / "hcl_report.bin").read_bytes())
    published = serialization.load_pem_public_key((vectors / case / "ak_pub.pem").read_bytes())
    assert isinstance(published, rsa.RSAPublicKey)
    numbers = published.public_numbers()
    assert hcl.ak_jwk() == (numbers.n, numbers.e)
    assert hcl.ak_public_key().public_numbers() == numbers


@pytest.mark.vectors
@pytest.mark.parametrize("case", HCL_DIRS)
def test_real_hcl_report_with_a_changed_runtime_byte_no_longer_matches(vectors: Path, case: str) -> None:
    raw = bytearray((vectors / case / "hcl_report.bin").read_bytes())
    raw[RUNTIME_DATA_OFFSET + 10] ^= 0x01
    hcl = HclReport.from_bytes(bytes(raw))
    assert hashlib.sha256(hcl.runtime_data).hexdigest() != expected(vectors)[case]["runtime_data_sha256"]


@pytest.mark.vectors
def test_igvm_header_as_shipped_after_a_bare_report(vectors: Path) -> None:
    case = vectors / "azure/milan-v2-constellation"
    hcl = HclReport(
        snp_report=SnpReport.from_bytes((case / "report.bin").read_bytes()),
        runtime_data=(case / "runtime_data.json").read_bytes(),
    )
    assert hcl.igvm_request_header() == (case / "report_with_igvm_hdr.bin").read_bytes()[1184:]
    assert hashlib.sha256(hcl.runtime_data).digest() == hcl.snp_report.report_data[:32]


@pytest.mark.vectors
@pytest.mark.parametrize("case", HCL_DIRS)
def test_real_hcl_without_its_padding_still_parses(vectors: Path, case: str) -> None:
    raw = (vectors / case / "hcl_report.bin").read_bytes()
    hcl = HclReport.from_bytes(raw)
    trimmed = HclReport.from_bytes(raw[: hcl.report_size])
    assert trimmed.padding == 0 and trimmed.runtime_data == hcl.runtime_data


# --- structure -------------------------------------------------------------------------------


def test_layout_offsets(ak: rsa.RSAPublicKey) -> None:
    hcl = sample(ak)
    raw = hcl.to_bytes()
    assert raw[0:4] == b"HCLA"
    assert int.from_bytes(raw[8:12], "little") == hcl.report_size == IGVM_OFFSET + 20 + len(hcl.runtime_data)
    assert raw[0x20:0x4C0] == hcl.snp_report.to_bytes()
    assert int.from_bytes(raw[0x4C0:0x4C4], "little") == 20 + len(hcl.runtime_data)
    assert int.from_bytes(raw[0x4D0:0x4D4], "little") == len(hcl.runtime_data)
    assert raw[0x4D4 : 0x4D4 + len(hcl.runtime_data)] == hcl.runtime_data
    assert len(raw) == 2600 and not any(raw[hcl.report_size :])


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b"HCLB" + b[4:], id="signature"),
        pytest.param(lambda b: put_u32(b, 4, 3), id="header-version-3"),
        pytest.param(lambda b: put_u32(b, 4, 0), id="header-version-0"),
        pytest.param(lambda b: b[:0x1F] + b"\x01" + b[0x20:], id="reserved-header-byte"),
        pytest.param(lambda b: put_u32(b, 8, int.from_bytes(b[8:12], "little") + 1), id="report-size"),
        pytest.param(lambda b: put_u32(b, 0x4C0, int.from_bytes(b[0x4C0:0x4C4], "little") - 1), id="data-size"),
        pytest.param(lambda b: put_u32(b, 0x4D0, int.from_bytes(b[0x4D0:0x4D4], "little") + 1), id="variable-size"),
        pytest.param(lambda b: put_u32(b, 0x4C8, 4), id="report-type-tdx"),
        pytest.param(lambda b: b[:-1] + b"\x01", id="non-zero-padding"),
        pytest.param(lambda b: b[:0x4D0], id="truncated-igvm-header"),
        pytest.param(lambda b: b[:0x300], id="truncated-report"),
        pytest.param(lambda b: b[: 0x4D4 + 5], id="truncated-runtime-data"),
        pytest.param(lambda b: b[:0x20] + b"\x04" + b[0x21:], id="embedded-report-version-4"),
        pytest.param(lambda b: b + bytes(0x10000), id="larger-than-an-nv-index"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
def test_malformed_hcl_report_is_rejected(ak: rsa.RSAPublicKey, mutate) -> None:  # type: ignore[no-untyped-def]
    raw = sample(ak).to_bytes()
    assert HclReport.from_bytes(raw).runtime_data == sample(ak).runtime_data
    with pytest.raises(ParseError) as exc:
        HclReport.from_bytes(mutate(raw))
    assert exc.value.reason is Reason.HCL_REPORT_MALFORMED


def test_embedded_report_error_keeps_the_snp_reason(ak: rsa.RSAPublicKey) -> None:
    raw = bytearray(sample(ak).to_bytes())
    raw[0x20 + 0x4C] = 1  # reserved byte of the SNP report
    with pytest.raises(ParseError) as exc:
        HclReport.from_bytes(bytes(raw))
    assert exc.value.reason is Reason.HCL_REPORT_MALFORMED
    assert exc.value.context["snp_reason"] == Reason.SNP_REPORT_RESERVED.value


def test_constructor_rejects_what_the_parser_rejects(ak: rsa.RSAPublicKey) -> None:
    for bad in ({"version": 3}, {"report_type": 4}, {"padding": -1}, {"status": 1 << 32}):
        with pytest.raises(ParseError) as exc:
            sample(ak, **bad)
        assert exc.value.reason is Reason.HCL_REPORT_MALFORMED


# --- runtime data ----------------------------------------------------------------------------


def test_runtime_data_keeps_trailing_nuls_but_json_ignores_them(ak: rsa.RSAPublicKey) -> None:
    data = runtime_json(ak) + b"\x00\x00\x00"
    hcl = HclReport.from_bytes(sample(ak, runtime_data=data, padding=0).to_bytes())
    assert hcl.runtime_data == data  # hashed exactly as found
    assert hcl.ak_jwk() == (ak.public_numbers().n, ak.public_numbers().e)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'{"keys": [], "keys": []}', id="duplicate-key"),
        pytest.param(b'{"vm-configuration": {}}', id="no-keys"),
        pytest.param(b'{"keys": {"kid": "HCLAkPub"}}', id="keys-not-a-list"),
        pytest.param(b'{"keys": [{"kid": "HCLEkPub", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]}', id="no-ak"),
        pytest.param(
            b'{"keys": [{"kid": "HCLAkPub", "kty": "RSA", "n": "AQAB", "e": "AQAB"},'
            b' {"kid": "HCLAkPub", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]}',
            id="two-aks",
        ),
        pytest.param(b'{"keys": [{"kid": "HCLAkPub", "kty": "EC", "x": "AQAB", "y": "AQAB"}]}', id="ak-not-rsa"),
        pytest.param(b'{"keys": [{"kid": "HCLAkPub", "kty": "RSA", "n": "!!!", "e": "AQAB"}]}', id="bad-base64"),
        pytest.param(b'{"keys": [{"kid": "HCLAkPub", "kty": "RSA", "n": "AQ+B", "e": "AQAB"}]}', id="base64-not-url"),
        pytest.param(b'{"keys": [{"kid": "HCLAkPub", "kty": "RSA", "n": "AQAB=", "e": "AQAB"}]}', id="base64-padded"),
        pytest.param(b'{"keys": [{"kid": "HCLAkPub", "kty": "RSA", "n": "A", "e": "AQAB"}]}', id="base64-bad-length"),
        pytest.param(b'{"keys": [{"kid": "HCLAkPub", "kty": "RSA", "n": 5, "e": "AQAB"}]}', id="n-not-string"),
        pytest.param(b'{"keys": [{"kid": "HCLAkPub", "kty": "RSA", "e": "AQAB"}]}', id="n-missing"),
        pytest.param(b"[" * 30000 + b"]" * 30000, id="deeply-nested"),
        pytest.param(b'{"keys": ' + b"[" * 33 + b"]" * 33 + b"}", id="nested-33-levels"),
    ],
)
def test_malformed_runtime_data_is_rejected(ak: rsa.RSAPublicKey, data: bytes) -> None:
    hcl = sample(ak, runtime_data=data, padding=0)
    with pytest.raises(ParseError) as exc:
        hcl.ak_jwk()
    assert exc.value.reason is Reason.HCL_RUNTIME_DATA_MALFORMED


def test_nesting_inside_strings_does_not_count(ak: rsa.RSAPublicKey) -> None:
    data = runtime_json(ak, **{"user-data": "[" * 100 + '\\"{' * 50})
    assert HclReport(SnpReport.build(), data).ak_jwk()[1] == 65537


def test_ak_that_is_not_a_usable_rsa_key_is_rejected(ak: rsa.RSAPublicKey) -> None:
    data = b'{"keys": [{"kid": "HCLAkPub", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]}'
    hcl = sample(ak, runtime_data=data, padding=0)
    assert hcl.ak_jwk() == (65537, 65537)
    with pytest.raises(ParseError) as exc:
        hcl.ak_public_key()
    assert exc.value.reason is Reason.HCL_RUNTIME_DATA_MALFORMED


# --- hypothesis ------------------------------------------------------------------------------


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(runtime=st.binary(max_size=3000), padding=st.integers(0, 600), version=st.sampled_from([1, 2]))
def test_round_trip(runtime: bytes, padding: int, version: int) -> None:
    hcl = HclReport(SnpReport.build(version=3), runtime, version=version, padding=padding)
    again = HclReport.from_bytes(hcl.to_bytes())
    assert again == hcl
    assert again.to_bytes() == hcl.to_bytes()


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.binary(max_size=3000))
def test_random_bytes_give_only_typed_errors(data: bytes) -> None:
    raw = b"HCLA" + data
    try:
        hcl = HclReport.from_bytes(raw)
    except ParseError as exc:
        assert exc.reason is Reason.HCL_REPORT_MALFORMED
    else:
        assert hcl.to_bytes() == raw


@settings(deadline=None)  # no timing in tests: the machine may be loaded
@given(st.binary(max_size=2000))
def test_random_runtime_data_gives_a_key_or_a_typed_error(data: bytes) -> None:
    hcl = HclReport(SnpReport.build(), data)
    try:
        hcl.ak_jwk()
    except ParseError as exc:
        assert exc.reason is Reason.HCL_RUNTIME_DATA_MALFORMED
