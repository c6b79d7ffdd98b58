"""X509Lite.sol against `cryptography` and offchain.abi.certext: real AMD certificates, the project's dev
chain, one twin per DER rule, and random input that must only ever produce X509Lite's own errors.

Certificates built here are parsed, never trusted: times are pinned (fixed dates), so the tests never
depend on the clock.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3
from web3.exceptions import ContractCustomError

from offchain.abi.certext import AmdCertExtensions
from offchain.abi.snp_report import Product, SignerKind
from offchain.devamd import DevAmdChain
from offchain.errors import ParseError, Reason
from tests.support.evm import compile_contracts, custom_error, deploy, reverts_with

PSS48 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
#: X509Lite's errors and the Reason the off-chain side gives for the same kind of problem.
ERROR_REASONS = {
    "X509Malformed": Reason.CERT_MALFORMED,
    "X509UnsupportedAlgorithm": Reason.CERT_MALFORMED,
    "X509UnsupportedKey": Reason.CERT_MALFORMED,
    "X509InvalidTime": Reason.CERT_MALFORMED,
    "X509AmdExtensionMissing": Reason.CERT_EXTENSION_MALFORMED,
    "X509AmdExtensionMalformed": Reason.CERT_EXTENSION_MALFORMED,
}
AMD = "1.3.6.1.4.1.3704.1"
# Pinned validity for certificates built here (no clock involved).
NOT_BEFORE = dt.datetime(2024, 5, 1, 12, 30, 15, tzinfo=dt.timezone.utc)
NOT_AFTER = dt.datetime(2031, 5, 1, 12, 30, 15, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def x509h(w3: Web3) -> Any:
    return deploy(w3, compile_contracts(["X509LiteHarness"])["X509LiteHarness"])


@pytest.fixture(scope="module")
def issuer_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 4096)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _serial_content(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 8) // 8, "big")


def expected_certificate(cert: x509.Certificate) -> tuple[Any, ...]:
    """X509Lite.Certificate field by field, from `cryptography` (extension offsets are checked apart)."""
    key = cert.public_key()
    rsa_n = rsa_e = ec_x = ec_y = b""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        rsa_n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        rsa_e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        ec_x = key.public_numbers().x.to_bytes(48, "big")
        ec_y = key.public_numbers().y.to_bytes(48, "big")
    return (
        cert.tbs_certificate_bytes,
        cert.signature,
        _serial_content(cert.serial_number),
        cert.issuer.public_bytes(),
        cert.subject.public_bytes(),
        key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        int(cert.not_valid_before_utc.timestamp()),
        int(cert.not_valid_after_utc.timestamp()),
        isinstance(key, rsa.RSAPublicKey),
        rsa_n,
        rsa_e,
        ec_x,
        ec_y,
    )


def expected_amd(ext: AmdCertExtensions) -> tuple[Any, ...]:
    return (
        ext.struct_version,
        ext.product_name.encode(),
        ext.bootloader,
        ext.tee,
        ext.snp,
        ext.microcode,
        ext.fmc or 0,
        ext.fmc is not None,
        ext.hwid or b"",
        (ext.csp_id or "").encode(),
    )


def _outcome(call: Any, abi: list[dict[str, Any]]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except ContractCustomError as exc:
        return "error", custom_error(abi, str(exc.data))[0]


# --- real AMD certificates --------------------------------------------------------------------------


def test_real_certificate_parses_like_cryptography(x509h: Any, vectors: Path, amd_signed_cert: Any) -> None:
    cert, _ = amd_signed_cert.load()
    parsed = x509h.functions.parse(_der(cert)).call()
    assert tuple(parsed[:13]) == expected_certificate(cert)
    start, end = parsed[13], parsed[14]
    assert _count_tlvs(_der(cert)[start:end]) == len(cert.extensions)


def _count_tlvs(data: bytes) -> int:
    """How many DER elements follow each other in `data` (lengths up to two bytes)."""
    count = pos = 0
    while pos < len(data):
        first = data[pos + 1]
        header, length = (2, first) if first < 0x80 else (2 + (first & 0x7F), int.from_bytes(data[pos + 2 : pos + 2 + (first & 0x7F)], "big"))
        pos += header + length
        count += 1
    assert pos == len(data)
    return count


def test_real_chain_verifies_up_to_its_ark(x509h: Any, vectors: Path, amd_signed_cert: Any) -> None:
    cert, issuer = amd_signed_cert.load()
    assert x509h.functions.issuedBy(_der(cert), _der(issuer)).call()
    # Twin: the same certificate against the issuer of the same kind of another product line.
    product = next(p for p in ("milan", "genoa", "turin") if p in amd_signed_cert.id)
    other = vectors / "amd-roots" / ("genoa" if product != "genoa" else "turin")
    if issuer.subject == issuer.issuer:
        wrong = other / "ark.pem"
    else:
        wrong = other / ("asvk.pem" if "vlek" in amd_signed_cert.id.rsplit("/", 1)[-1] else "ask.pem")
    wrong_issuer = x509.load_pem_x509_certificate(wrong.read_bytes())
    assert not x509h.functions.issuedBy(_der(cert), _der(wrong_issuer)).call()


def test_real_leaf_amd_extensions(x509h: Any, vectors: Path, amd_signed_cert: Any) -> None:
    cert, _ = amd_signed_cert.load()
    der = _der(cert)
    if amd_signed_cert.id.count("/") == 1:  # "<product>/ark|ask|asvk"
        # ARK, ASK and ASVK carry no AMD extensions: the twin of a leaf.
        assert reverts_with(x509h, lambda: x509h.functions.amdExtensions(der).call()) == ("X509AmdExtensionMissing", (1,))
        return
    got = tuple(x509h.functions.amdExtensions(der).call())
    assert got == expected_amd(AmdCertExtensions.from_certificate(cert))
    vector_id = amd_signed_cert.id.rsplit("/", 1)[0]
    leaf_ext = json.loads((vectors / "expected.json").read_text())[vector_id]["leaf_ext"]
    assert (got[1].decode(), got[2], got[3], got[4], got[5]) == (
        leaf_ext["productName"],
        leaf_ext["bootloader"],
        leaf_ext["tee"],
        leaf_ext["snp"],
        leaf_ext["microcode"],
    )
    assert got[8].hex() == leaf_ext.get("hwID", "") and got[9].decode() == leaf_ext.get("cspID", "")


def test_names(x509h: Any, vectors: Path, amd_signed_cert: Any) -> None:
    cert, _ = amd_signed_cert.load()
    issuer_cn, subject_cn, vlek_issuer = x509h.functions.names(_der(cert)).call()
    assert issuer_cn.decode() == cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert subject_cn.decode() == cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert vlek_issuer == subject_cn.decode().startswith("SEV-VLEK-")


# --- the project's development chain (offchain.devamd) ------------------------------------------------


@pytest.fixture(scope="module")
def dev_chains() -> list[DevAmdChain]:
    return [
        DevAmdChain.generate(Product.GENOA, SignerKind.VCEK, not_before=NOT_BEFORE),
        DevAmdChain.generate(Product.TURIN, SignerKind.VLEK, not_before=NOT_BEFORE),
    ]


def test_dev_chain_parses_and_verifies(x509h: Any, dev_chains: list[DevAmdChain]) -> None:
    for chain in dev_chains:
        for cert, issuer in ((chain.ark, chain.ark), (chain.ask, chain.ark), (chain.leaf, chain.ask)):
            assert tuple(x509h.functions.parse(_der(cert)).call()[:13]) == expected_certificate(cert)
            assert x509h.functions.issuedBy(_der(cert), _der(issuer)).call()
        assert not x509h.functions.issuedBy(_der(chain.leaf), _der(chain.ark)).call()
        got = tuple(x509h.functions.amdExtensions(_der(chain.leaf)).call())
        assert got == expected_amd(AmdCertExtensions.from_certificate(chain.leaf))


# --- certificates built with chosen extensions and keys ----------------------------------------------


def _spl(value: int) -> bytes:
    return b"\x02" + bytes([len(value.to_bytes((value.bit_length() + 8) // 8, "big"))]) + value.to_bytes(
        (value.bit_length() + 8) // 8, "big"
    )


def _ia5(text: bytes) -> bytes:
    return b"\x16" + bytes([len(text)]) + text


def amd_extensions(**overrides: bytes | None) -> dict[str, bytes]:
    """A Milan VCEK's AMD extension values by OID suffix; None removes one."""
    values: dict[str, bytes | None] = {
        "1": _spl(0),
        "2": _ia5(b"Milan-B0"),
        "3.1": _spl(3),
        "3.2": _spl(0),
        "3.3": _spl(8),
        "3.4": _spl(0),
        "3.8": _spl(115),
        "4": bytes(range(64)),
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def build_leaf(
    issuer_key: rsa.RSAPrivateKey,
    extensions: dict[str, bytes] | None = None,
    *,
    key: Any = None,
    extra: tuple[tuple[str, bytes], ...] = (),
    not_before: dt.datetime = NOT_BEFORE,
    not_after: dt.datetime = NOT_AFTER,
    sign_padding: Any = PSS48,
    sign_hash: Any = None,
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SEV-VCEK")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SEV-Milan")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key((key or ec.generate_private_key(ec.SECP384R1())).public_key())
        .serial_number(7)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for suffix, value in (extensions if extensions is not None else amd_extensions()).items():
        oid = x509.ObjectIdentifier(f"{AMD}.{suffix}")
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
    for dotted, value in extra:
        builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(dotted), value), critical=False)
    cert = builder.sign(issuer_key, sign_hash or hashes.SHA384(), rsa_padding=sign_padding)
    return _der(cert)


def test_built_leaf_parses(x509h: Any, issuer_key: rsa.RSAPrivateKey) -> None:
    der = build_leaf(issuer_key)
    cert = x509.load_der_x509_certificate(der)
    assert tuple(x509h.functions.parse(der).call()[:13]) == expected_certificate(cert)
    assert tuple(x509h.functions.amdExtensions(der).call()) == expected_amd(AmdCertExtensions.from_certificate(cert))


AMD_TWINS = {
    "missing-structVersion": (amd_extensions(**{"1": None}), ("X509AmdExtensionMissing", (1,))),
    "missing-productName": (amd_extensions(**{"2": None}), ("X509AmdExtensionMissing", (2,))),
    "missing-blSPL": (amd_extensions(**{"3.1": None}), ("X509AmdExtensionMissing", (301,))),
    "missing-teeSPL": (amd_extensions(**{"3.2": None}), ("X509AmdExtensionMissing", (302,))),
    "missing-snpSPL": (amd_extensions(**{"3.3": None}), ("X509AmdExtensionMissing", (303,))),
    "missing-ucodeSPL": (amd_extensions(**{"3.8": None}), ("X509AmdExtensionMissing", (308,))),
    "spl-256": (amd_extensions(**{"3.1": _spl(256)}), "X509AmdExtensionMalformed"),
    "spl-negative": (amd_extensions(**{"3.3": b"\x02\x01\x80"}), "X509AmdExtensionMalformed"),
    "spl-not-minimal": (amd_extensions(**{"3.2": b"\x02\x02\x00\x05"}), "X509AmdExtensionMalformed"),
    "spl-empty": (amd_extensions(**{"3.8": b"\x02\x00"}), "X509AmdExtensionMalformed"),
    "spl-octet-string": (amd_extensions(**{"3.1": b"\x04\x01\x03"}), "X509AmdExtensionMalformed"),
    "spl-trailing-byte": (amd_extensions(**{"3.1": _spl(3) + b"\x00"}), "X509AmdExtensionMalformed"),
    "reserved-spl-256": (amd_extensions(**{"3.4": _spl(300)}), "X509AmdExtensionMalformed"),
    "fmc-256": (amd_extensions(**{"3.9": _spl(256)}), "X509AmdExtensionMalformed"),
    "hwid-7-bytes": (amd_extensions(**{"4": bytes(7)}), "X509AmdExtensionMalformed"),
    "product-not-ascii": (amd_extensions(**{"2": _ia5(b"Mil\xe1n")}), "X509AmdExtensionMalformed"),
    "product-utf8string": (amd_extensions(**{"2": b"\x0c\x05Milan"}), "X509AmdExtensionMalformed"),
    "csp-not-ascii": (amd_extensions(**{"5": _ia5(b"CN=\xff")}), "X509AmdExtensionMalformed"),
}


@pytest.mark.parametrize("twin", sorted(AMD_TWINS))
def test_amd_extension_twins(x509h: Any, issuer_key: rsa.RSAPrivateKey, twin: str) -> None:
    extensions, expected = AMD_TWINS[twin]
    der = build_leaf(issuer_key, extensions)
    x509h.functions.parse(der).call()  # the certificate itself is well formed
    name, args = reverts_with(x509h, lambda: x509h.functions.amdExtensions(der).call())
    assert (name, args) == expected if isinstance(expected, tuple) else name == expected, (name, args)
    with pytest.raises(ParseError) as exc:
        AmdCertExtensions.from_certificate(x509.load_der_x509_certificate(der))
    assert exc.value.reason is ERROR_REASONS[name]


def test_duplicate_amd_extension(x509h: Any, issuer_key: rsa.RSAPrivateKey) -> None:
    # cryptography's builder refuses duplicates: build with spl_5 (3.5), then rename it blSPL (3.1), same length.
    der = build_leaf(issuer_key, amd_extensions(**{"3.5": _spl(3)}))
    der = _replace(der, bytes.fromhex("2b060104019c78010305"), bytes.fromhex("2b060104019c78010301"))
    assert x509h.functions.parse(der).call()
    assert reverts_with(x509h, lambda: x509h.functions.amdExtensions(der).call())[0] == "X509AmdExtensionMalformed"
    with pytest.raises(ParseError) as exc:
        AmdCertExtensions.from_certificate(x509.load_der_x509_certificate(der))
    assert exc.value.reason is Reason.CERT_EXTENSION_MALFORMED


# --- DER structure twins -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_vcek(vectors: Path) -> bytes:
    return (vectors / "snp" / "milan-vcek-v2-gosevguest" / "vcek.der").read_bytes()


def _replace(der: bytes, old: bytes, new: bytes, occurrence: int = 0) -> bytes:
    at = -1
    for _ in range(occurrence + 1):
        at = der.index(old, at + 1)
    return der[:at] + new + der[at + len(old) :]


STRUCTURE_TWINS = {
    "truncated": (lambda d: d[:-1], "X509Malformed"),
    "trailing-byte": (lambda d: d + b"\x00", "X509Malformed"),
    "empty": (lambda d: b"", "X509Malformed"),
    "indefinite-length": (lambda d: b"\x30\x80" + d[4:] + b"\x00\x00", "X509Malformed"),
    "long-form-not-minimal": (lambda d: b"\x30\x83\x00" + d[2:], "X509Malformed"),
    "high-tag-number": (lambda d: b"\x3f" + d[1:], "X509Malformed"),
    "not-a-sequence": (lambda d: b"\x31" + d[1:], "X509Malformed"),
    "sha256-in-pss-params": (
        lambda d: _replace(d, bytes.fromhex("608648016503040202"), bytes.fromhex("608648016503040201")),
        "X509UnsupportedAlgorithm",
    ),
    "salt-32": (lambda d: _replace(d, b"\xa2\x03\x02\x01\x30", b"\xa2\x03\x02\x01\x20"), "X509UnsupportedAlgorithm"),
    "pkcs1-sha384-oid": (
        lambda d: _replace(d, bytes.fromhex("2a864886f70d01010a"), bytes.fromhex("2a864886f70d01010c")),
        "X509UnsupportedAlgorithm",
    ),
    "outer-algorithm-differs": (
        lambda d: _replace(d, b"\xa2\x03\x02\x01\x30", b"\xa2\x03\x02\x01\x31", occurrence=1),
        "X509UnsupportedAlgorithm",
    ),
    "signature-unused-bits": (lambda d: _replace(d, b"\x03\x82\x02\x01\x00", b"\x03\x82\x02\x01\x01"), "X509Malformed"),
    "other-curve": (
        lambda d: _replace(d, bytes.fromhex("06052b81040022"), bytes.fromhex("06052b8104000a")),
        "X509UnsupportedKey",
    ),
    "compressed-point": (lambda d: _replace(d, b"\x03\x62\x00\x04", b"\x03\x62\x00\x02"), "X509UnsupportedKey"),
}


@pytest.mark.parametrize("twin", sorted(STRUCTURE_TWINS))
def test_der_twins(x509h: Any, real_vcek: bytes, twin: str) -> None:
    mutate, expected = STRUCTURE_TWINS[twin]
    der = mutate(real_vcek)
    assert der != real_vcek
    assert reverts_with(x509h, lambda: x509h.functions.parse(der).call())[0] == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [("month", b"13"), ("day", b"32"), ("hour", b"24"), ("minute", b"60"), ("second", b"60"), ("digit", b"2a")],
)
def test_invalid_times(x509h: Any, real_vcek: bytes, field: str, value: bytes) -> None:
    # The VCEK's notBefore is UTCTime "220924005528Z": YY MM DD hh mm ss Z.
    at = real_vcek.index(b"\x17\x0d") + 2
    offsets = {"month": 2, "day": 4, "hour": 6, "minute": 8, "second": 10, "digit": 0}
    o = at + offsets[field]
    der = real_vcek[:o] + value + real_vcek[o + 2 :]
    name, args = reverts_with(x509h, lambda: x509h.functions.parse(der).call())
    assert (name, args) == ("X509InvalidTime", (at - 2,))


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=dt.timezone.utc), dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)),
        (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2050, 1, 1, tzinfo=dt.timezone.utc)),
        (dt.datetime(2000, 3, 1, tzinfo=dt.timezone.utc), dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)),
    ],
    ids=["leap-day-utctime", "epoch-and-generalizedtime", "year-9999"],
)
def test_times_match_cryptography(
    x509h: Any, issuer_key: rsa.RSAPrivateKey, not_before: dt.datetime, not_after: dt.datetime
) -> None:
    der = build_leaf(issuer_key, not_before=not_before, not_after=not_after)
    parsed = x509h.functions.parse(der).call()
    assert (parsed[6], parsed[7]) == (int(not_before.timestamp()), int(not_after.timestamp()))


def test_times_before_1970_are_refused(x509h: Any, issuer_key: rsa.RSAPrivateKey) -> None:
    der = build_leaf(issuer_key, not_before=dt.datetime(1969, 12, 31, tzinfo=dt.timezone.utc))
    assert reverts_with(x509h, lambda: x509h.functions.parse(der).call())[0] == "X509InvalidTime"


@pytest.mark.parametrize("kind", ["rsa-2048", "p256", "pss-sha256"])
def test_subject_keys(x509h: Any, issuer_key: rsa.RSAPrivateKey, kind: str) -> None:
    if kind == "rsa-2048":
        key = rsa.generate_private_key(65537, 2048)
        parsed = x509h.functions.parse(build_leaf(issuer_key, key=key)).call()
        assert parsed[8] and int.from_bytes(parsed[9], "big") == key.public_key().public_numbers().n
    elif kind == "p256":
        der = build_leaf(issuer_key, key=ec.generate_private_key(ec.SECP256R1()))
        assert reverts_with(x509h, lambda: x509h.functions.parse(der).call())[0] == "X509UnsupportedKey"
    else:
        der = build_leaf(issuer_key, sign_padding=padding.PSS(padding.MGF1(hashes.SHA256()), 32), sign_hash=hashes.SHA256())
        assert reverts_with(x509h, lambda: x509h.functions.parse(der).call())[0] == "X509UnsupportedAlgorithm"


# --- random input: only X509Lite's own errors -----------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_certificates_fail_only_with_x509_errors(x509h: Any, real_vcek: bytes, data: st.DataObject) -> None:
    der = bytearray(real_vcek)
    for _ in range(data.draw(st.integers(1, 4))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        der = der[: data.draw(st.integers(0, len(der)))]
    kind, value = _outcome(lambda: x509h.functions.amdExtensions(bytes(der)).call(), x509h.abi)
    assert kind == "ok" or value in ERROR_REASONS


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_random_bytes_fail_only_with_x509_errors(x509h: Any, raw: bytes) -> None:
    kind, value = _outcome(lambda: x509h.functions.parse(raw).call(), x509h.abi)
    assert kind == "error" and value in ERROR_REASONS
