"""Revocation: the ARK's CRL, genuine and current, lists neither the intermediate nor the leaf; fails closed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from offchain.abi.snp_report import Product, SignerKind
from offchain.devamd import DevAmdChain
from offchain.errors import ParseError, Reason, VerificationError
from offchain.evidence import EvidenceBundle, offchain_expected_extra_data, verify_evidence
from offchain.trust.certs import MAX_CRL_BYTES, load_crl
from offchain.trust.roots import TrustRoots
from offchain.verify.chain import VerifiedChain, verify_chain
from offchain.verify.revocation import check_revocation, crl_from_file
from tests.support.evidence import DEV_NOT_BEFORE, DEV_NOW, NONCE, dev_chain, make_parts

WEEK = dt.timedelta(days=7)


def _verified(chain: DevAmdChain) -> VerifiedChain:
    return verify_chain(chain.leaf, chain.ask, chain.ark, roots=TrustRoots().with_dev_root(chain.ark), now=DEV_NOW)


def _crl(chain: DevAmdChain, *revoked: int, start: dt.datetime = DEV_NOW - WEEK) -> x509.CertificateRevocationList:
    return chain.issue_crl(revoked=revoked, this_update=start, next_update=start + 2 * WEEK)


def _reason(chain: VerifiedChain, crl: x509.CertificateRevocationList, now: dt.datetime = DEV_NOW) -> Reason:
    with pytest.raises(VerificationError) as exc:
        check_revocation(chain, crl, now)
    return exc.value.reason


@pytest.mark.parametrize(
    ("product", "signer"),
    [(Product.GENOA, SignerKind.VCEK), (Product.MILAN, SignerKind.VLEK)],
    ids=["genoa-vcek", "milan-vlek"],
)
def test_a_current_crl_without_the_intermediate_passes_and_listing_it_revokes(
    product: Product, signer: SignerKind
) -> None:
    dev = dev_chain(product, signer)
    chain = _verified(dev)
    unrelated = dev.ask.serial_number + 1
    check_revocation(chain, _crl(dev), DEV_NOW)
    check_revocation(chain, _crl(dev, unrelated), DEV_NOW)
    with pytest.raises(VerificationError) as exc:
        check_revocation(chain, _crl(dev, unrelated, dev.ask.serial_number), DEV_NOW)
    assert exc.value.reason is Reason.CHAIN_REVOKED
    assert exc.value.context["role"] == ("ask" if signer is SignerKind.VCEK else "asvk")
    assert exc.value.context["serial"] == f"{dev.ask.serial_number:#x}"


def test_a_crl_of_another_ark_is_invalid() -> None:
    genoa, milan = _verified(dev_chain(Product.GENOA)), dev_chain(Product.MILAN)
    assert _reason(genoa, _crl(milan)) is Reason.CRL_INVALID


def test_a_crl_under_the_arks_name_but_another_key_is_invalid() -> None:
    dev = dev_chain(Product.GENOA)
    impostor = DevAmdChain.generate(product=Product.GENOA, not_before=DEV_NOT_BEFORE)
    assert impostor.ark.subject == dev.ark.subject  # same name, different key
    assert _reason(_verified(dev), _crl(impostor)) is Reason.CRL_INVALID


def test_a_crl_with_a_tampered_signature_or_pkcs1_padding_is_invalid() -> None:
    dev = dev_chain(Product.GENOA)
    chain = _verified(dev)
    der = bytearray(_crl(dev).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1  # the last byte of the signature value
    assert _reason(chain, load_crl(bytes(der))) is Reason.CRL_INVALID
    assert dev.ark_key is not None
    pkcs1 = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(dev.ark.subject)
        .last_update(DEV_NOW - WEEK)
        .next_update(DEV_NOW + WEEK)
        .sign(dev.ark_key, hashes.SHA384(), rsa_padding=padding.PKCS1v15())
    )
    assert _reason(chain, pkcs1) is Reason.CRL_INVALID


def test_a_crl_outside_its_window_is_stale() -> None:
    dev = dev_chain(Product.GENOA)
    chain = _verified(dev)
    crl = _crl(dev)  # DEV_NOW - 1 week .. DEV_NOW + 1 week
    check_revocation(chain, crl, DEV_NOW + WEEK)  # the last moment it covers
    assert _reason(chain, crl, DEV_NOW + WEEK + dt.timedelta(seconds=1)) is Reason.CRL_STALE
    assert _reason(chain, crl, DEV_NOW - WEEK - dt.timedelta(seconds=1)) is Reason.CRL_STALE
    with pytest.raises(ParseError) as exc:
        check_revocation(chain, crl, dt.datetime(2025, 6, 1))  # noqa: DTZ001 - a naive time is refused
    assert exc.value.reason is Reason.INPUT_INVALID


def test_load_crl_reads_der_and_pem_and_refuses_anything_else(tmp_path: Path) -> None:
    crl = _crl(dev_chain(Product.GENOA))
    der = crl.public_bytes(serialization.Encoding.DER)
    pem = crl.public_bytes(serialization.Encoding.PEM)
    assert load_crl(der) == load_crl(pem) == crl
    for garbage in (b"", b"not a crl", der[:-10], b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
                    bytes(MAX_CRL_BYTES + 1)):
        with pytest.raises(ParseError) as exc:
            load_crl(garbage)
        assert exc.value.reason is Reason.CRL_MALFORMED
    (tmp_path / "crl.pem").write_bytes(pem)
    assert crl_from_file(tmp_path / "crl.pem")(_verified(dev_chain(Product.GENOA)), DEV_NOW) == crl
    with pytest.raises(ParseError) as missing:
        crl_from_file(tmp_path / "missing.crl")
    assert missing.value.reason is Reason.INPUT_UNREADABLE


def test_verify_evidence_checks_the_crl_it_is_given() -> None:
    parts = make_parts()
    dev = parts.chain
    bundle = EvidenceBundle.from_json(json.dumps(parts.to_json()))

    def verify(crl: x509.CertificateRevocationList) -> None:
        verify_evidence(bundle, expected_extra_data=offchain_expected_extra_data(bundle, NONCE), golden=None,
                        roots=TrustRoots().with_dev_root(dev.ark), now=DEV_NOW, revocation=lambda _chain, _now: crl)

    verify(_crl(dev))
    with pytest.raises(VerificationError) as exc:
        verify(_crl(dev, dev.ask.serial_number))
    assert exc.value.reason is Reason.CHAIN_REVOKED
    assert (exc.value.context["product"], exc.value.context["signer"]) == ("genoa", "vcek")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_crls_give_only_typed_errors(data: st.DataObject) -> None:
    dev = dev_chain(Product.GENOA)
    chain = _verified(dev)
    der = bytearray(_crl(dev, 7, 9).public_bytes(serialization.Encoding.DER))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(der) - 1))
        der[i] ^= data.draw(st.integers(1, 255))
    try:
        check_revocation(chain, load_crl(bytes(der)), DEV_NOW)
    except ParseError as exc:
        assert exc.reason is Reason.CRL_MALFORMED
    except VerificationError as exc:
        assert exc.reason in (Reason.CRL_INVALID, Reason.CRL_STALE)
