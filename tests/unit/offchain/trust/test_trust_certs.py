"""Loading AMD certificates: DER, PEM, bundles, directories; every role recognised; junk refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.errors import ParseError, Reason
from offchain.trust.certs import (
    CertificateSet,
    CertRole,
    classify,
    load_certificates,
    parse_certificate,
    parse_certificates,
    read_file,
    to_der,
    to_pem,
)
from tests.support.evidence import dev_chain


def test_real_files_load_in_every_encoding(vectors: Path) -> None:
    (der,) = load_certificates(vectors / "snp/milan-vcek-v2-gosevguest/vcek.der")
    (pem,) = load_certificates(vectors / "snp/milan-vcek-v5-gcp-teekit/vcek.pem")
    assert classify(der) is CertRole.VCEK and classify(pem) is CertRole.VCEK
    ask, ark = load_certificates(vectors / "amd-roots/milan/cert_chain_vcek.pem")
    assert (classify(ask), classify(ark)) == (CertRole.ASK, CertRole.ARK)
    asvk, ark2 = load_certificates(vectors / "amd-roots/milan/cert_chain_vlek.pem")
    assert (classify(asvk), classify(ark2)) == (CertRole.ASVK, CertRole.ARK)
    (vlek,) = load_certificates(vectors / "snp/milan-vlek-v3-vmpl1-trustee/vlek.der")
    assert classify(vlek) is CertRole.VLEK and CertRole.VLEK.signer is not None


def test_a_directory_sorts_into_roles(vectors: Path) -> None:
    found = CertificateSet.from_directory(vectors / "amd-roots" / "genoa")
    assert found.roles() == [CertRole.ARK, CertRole.ASK, CertRole.ASVK]
    assert found.leaf is None


def test_pem_text_around_blocks_is_ignored_and_der_round_trips() -> None:
    chain = dev_chain()
    text = b"# comment\n" + to_pem(chain.ask).encode() + b"\nmore text\n" + to_pem(chain.ark).encode()
    assert [to_der(c) for c in parse_certificates(text)] == [to_der(chain.ask), to_der(chain.ark)]
    assert to_der(parse_certificate(to_der(chain.leaf))) == to_der(chain.leaf)


def test_over_prefers_its_own_roles() -> None:
    chain = dev_chain()
    mine = CertificateSet(ark=chain.ark)
    theirs = CertificateSet(ark=chain.ask, ask=chain.ask)  # nonsense roles: only precedence matters
    merged = mine.over(theirs)
    assert merged.ark is chain.ark and merged.ask is chain.ask


def _self_made(common_name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Reason.CERT_MALFORMED),
        (b"not a certificate", Reason.CERT_MALFORMED),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n", Reason.CERT_MALFORMED),
        (b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", Reason.CERT_MALFORMED),
        (b"\x30\x82\x01\x00" + bytes(16), Reason.CERT_MALFORMED),
        (b"x" * ((1 << 20) + 1), Reason.CERT_MALFORMED),
    ],
    ids=["empty", "text", "pem-without-end", "pem-bad-base64", "truncated-der", "too-large"],
)
def test_junk_is_a_typed_error(data: bytes, reason: Reason) -> None:
    with pytest.raises(ParseError) as exc:
        parse_certificates(data)
    assert exc.value.reason is reason


def test_a_certificate_that_is_not_amds_is_refused() -> None:
    with pytest.raises(ParseError) as exc:
        classify(_self_made("example.com"))
    assert exc.value.reason is Reason.CERT_MALFORMED


def test_two_different_certificates_for_one_role_are_ambiguous() -> None:
    chain = dev_chain()
    other = dev_chain().issue_leaf()
    assert CertificateSet.of([chain.leaf, chain.leaf]).vcek is chain.leaf  # the same twice is fine
    with pytest.raises(ParseError) as exc:
        CertificateSet.of([chain.leaf, other.leaf])
    assert exc.value.reason is Reason.INPUT_INVALID


def test_one_certificate_expected() -> None:
    chain = dev_chain()
    with pytest.raises(ParseError) as exc:
        parse_certificate((to_pem(chain.ask) + to_pem(chain.ark)).encode())
    assert exc.value.reason is Reason.CERT_MALFORMED


def test_unreadable_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(ParseError) as exc:
        read_file(tmp_path / "missing.pem")
    assert exc.value.reason is Reason.INPUT_UNREADABLE
    with pytest.raises(ParseError) as exc:
        CertificateSet.from_directory(tmp_path / "missing")
    assert exc.value.reason is Reason.INPUT_UNREADABLE
    big = tmp_path / "big.der"
    big.write_bytes(bytes(100))
    with pytest.raises(ParseError) as exc:
        read_file(big, limit=10)
    assert exc.value.reason is Reason.INPUT_UNREADABLE


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_give_only_typed_errors(data: bytes) -> None:
    try:
        certs = parse_certificates(data)
    except ParseError as exc:
        assert exc.reason is Reason.CERT_MALFORMED
    else:
        assert certs  # random bytes that parse are at least certificates


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_certificates_give_only_typed_errors(data: st.DataObject) -> None:
    der = bytearray(to_der(dev_chain().leaf))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(der) - 1))
        der[i] ^= data.draw(st.integers(1, 255))
    try:
        cert = parse_certificate(bytes(der))
        classify(cert)
    except ParseError as exc:
        assert exc.reason is Reason.CERT_MALFORMED


def test_an_unknown_x509_version_is_a_typed_error() -> None:
    # Found by the mutation test above: version 3 (X.509 "v4") made cryptography raise InvalidVersion.
    der = to_der(dev_chain().leaf)
    v3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2: X.509 v3
    assert der.count(v3) == 1
    with pytest.raises(ParseError) as exc:
        parse_certificate(der.replace(v3, bytes.fromhex("a003020103")))
    assert exc.value.reason is Reason.CERT_MALFORMED
