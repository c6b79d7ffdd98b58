"""The AMD chain: every real chain verifies to its pinned ARK; every broken one fails with its reason."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from offchain.abi.snp_report import Product, SignerKind
from offchain.errors import ParseError, Reason, VerificationError
from offchain.trust.certs import CertificateSet, load_certificates
from offchain.trust.roots import TrustRoots
from offchain.verify.chain import ChainCache, verify_chain
from tests.support.evidence import DEV_NOT_BEFORE, DEV_NOW, dev_chain
from tests.support.snp_vectors import (
    AZURE_HCL_VECTORS,
    AZURE_REPORT_ONLY_VECTOR,
    CERT_ONLY_VECTOR,
    NEGATIVE_VECTOR,
    SNP_REPORT_VECTORS,
    load_vector,
)

CHAIN_VECTORS = SNP_REPORT_VECTORS + (NEGATIVE_VECTOR, CERT_ONLY_VECTOR) + AZURE_HCL_VECTORS + (AZURE_REPORT_ONLY_VECTOR,)


def _parts(certs: CertificateSet):
    leaf = certs.leaf
    assert leaf is not None
    inter = certs.ask if certs.vcek is not None else certs.asvk
    return leaf, inter, certs.ark


@pytest.mark.parametrize("name", CHAIN_VECTORS)
def test_every_real_chain_verifies_to_its_pin(vectors: Path, name: str) -> None:
    v = load_vector(vectors, name)
    leaf, inter, ark = _parts(v.certificates)
    chain = verify_chain(leaf, inter, ark, roots=TrustRoots(), now=v.now)
    assert chain.product is Product.from_name(v.expected["ark_cn"])
    assert chain.signer.value.upper() in v.expected["leaf_cn"]
    assert not chain.root.development
    assert chain.extensions.product_name == v.expected["leaf_ext"]["productName"]


def test_an_expired_leaf_is_rejected(vectors: Path) -> None:
    v = load_vector(vectors, "snp/milan-vlek-v2-aws-constellation-2023")
    leaf, inter, ark = _parts(v.certificates)
    with pytest.raises(VerificationError) as exc:
        verify_chain(leaf, inter, ark, roots=TrustRoots(), now=v.not_after + dt.timedelta(seconds=1))
    assert exc.value.reason is Reason.CHAIN_EXPIRED and exc.value.context["role"] == "vlek"
    verify_chain(leaf, inter, ark, roots=TrustRoots(), now=v.not_after)  # the last valid second


def test_a_leaf_before_its_validity_is_rejected(vectors: Path) -> None:
    v = load_vector(vectors, "snp/turin-vcek-v5-oak")
    leaf, inter, ark = _parts(v.certificates)
    with pytest.raises(VerificationError) as exc:
        verify_chain(leaf, inter, ark, roots=TrustRoots(), now=v.now - dt.timedelta(days=2))
    assert exc.value.reason is Reason.CHAIN_NOT_YET_VALID


def test_another_products_chain_is_rejected(vectors: Path) -> None:
    v = load_vector(vectors, "snp/milan-vcek-v2-gosevguest")
    genoa = CertificateSet.from_directory(vectors / "amd-roots/genoa")
    with pytest.raises(VerificationError) as exc:
        verify_chain(v.certificates.vcek, genoa.ask, genoa.ark, roots=TrustRoots(), now=v.now)
    assert exc.value.reason is Reason.CHAIN_PRODUCT_MISMATCH
    # A Milan ASK under the Genoa ARK: the ARK never signed it.
    with pytest.raises(VerificationError) as exc:
        verify_chain(v.certificates.vcek, v.certificates.ask, genoa.ark, roots=TrustRoots(), now=v.now)
    assert exc.value.reason is Reason.CHAIN_PRODUCT_MISMATCH


def test_the_asvk_cannot_issue_a_vcek(vectors: Path) -> None:
    v = load_vector(vectors, "snp/milan-vcek-v2-gosevguest")
    milan = CertificateSet.from_directory(vectors / "amd-roots/milan")
    with pytest.raises(VerificationError) as exc:
        verify_chain(v.certificates.vcek, milan.asvk, milan.ark, roots=TrustRoots(), now=v.now)
    assert exc.value.reason is Reason.CHAIN_WRONG_INTERMEDIATE
    vlek = load_vector(vectors, "snp/milan-vlek-v3-vmpl1-trustee")
    with pytest.raises(VerificationError) as exc:
        verify_chain(vlek.certificates.vlek, milan.ask, milan.ark, roots=TrustRoots(), now=vlek.now)
    assert exc.value.reason is Reason.CHAIN_WRONG_INTERMEDIATE


def test_roles_in_the_wrong_places(vectors: Path) -> None:
    milan = CertificateSet.from_directory(vectors / "amd-roots/milan")
    v = load_vector(vectors, "snp/milan-vcek-v2-gosevguest")
    cases = [
        ((v.certificates.vcek, milan.ask, milan.ask), Reason.CHAIN_INCOMPLETE),  # no ARK as root
        ((milan.ask, milan.ask, milan.ark), Reason.CHAIN_INCOMPLETE),  # no leaf
        ((v.certificates.vcek, v.certificates.vcek, milan.ark), Reason.CHAIN_WRONG_INTERMEDIATE),
    ]
    for (leaf, inter, ark), reason in cases:
        with pytest.raises(VerificationError) as exc:
            verify_chain(leaf, inter, ark, roots=TrustRoots(), now=v.now)
        assert exc.value.reason is reason


def test_a_self_made_chain_that_signs_perfectly_is_not_pinned() -> None:
    chain = dev_chain(Product.MILAN, SignerKind.VCEK)
    with pytest.raises(VerificationError) as exc:
        verify_chain(chain.leaf, chain.ask, chain.ark, roots=TrustRoots(), now=DEV_NOW)
    assert exc.value.reason is Reason.CHAIN_ROOT_NOT_PINNED
    # ... and verifies once a caller pins it as a development root.
    verified = verify_chain(chain.leaf, chain.ask, chain.ark, roots=TrustRoots().with_dev_root(chain.ark), now=DEV_NOW)
    assert verified.root.development and verified.product is Product.MILAN


def _tampered_signature(cert: x509.Certificate) -> x509.Certificate:
    der = bytearray(cert.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte is inside the signature BIT STRING
    return x509.load_der_x509_certificate(bytes(der))


def test_broken_signatures_at_each_level() -> None:
    a = dev_chain(Product.GENOA, SignerKind.VCEK)
    b = dev_chain(Product.GENOA, SignerKind.VLEK)  # another ARK of the same product line
    roots = TrustRoots().with_dev_root(a.ark).with_dev_root(b.ark)
    bad_ark = _tampered_signature(a.ark)  # same key, so still pinned
    with pytest.raises(VerificationError) as exc:
        verify_chain(a.leaf, a.ask, bad_ark, roots=roots, now=DEV_NOW)
    assert exc.value.reason is Reason.CHAIN_ARK_SIGNATURE
    other_ask = a.issue_leaf(not_before=DEV_NOT_BEFORE)  # same ASK, new leaf: fine
    verify_chain(other_ask.leaf, a.ask, a.ark, roots=roots, now=DEV_NOW)
    with pytest.raises(VerificationError) as exc:  # a's ASK under b's ARK
        verify_chain(a.leaf, a.ask, b.ark, roots=roots, now=DEV_NOW)
    assert exc.value.reason is Reason.CHAIN_ASK_SIGNATURE
    with pytest.raises(VerificationError) as exc:
        verify_chain(_tampered_signature(a.leaf), a.ask, a.ark, roots=roots, now=DEV_NOW)
    assert exc.value.reason is Reason.CHAIN_LEAF_SIGNATURE


def test_a_leaf_from_another_hierarchy_is_not_signed_by_this_ask(vectors: Path) -> None:
    real = load_vector(vectors, "snp/genoa-vcek-v5-oak")
    dev = dev_chain(Product.GENOA, SignerKind.VCEK)
    with pytest.raises(VerificationError) as exc:
        verify_chain(dev.leaf, real.certificates.ask, real.certificates.ark, roots=TrustRoots(), now=DEV_NOW)
    assert exc.value.reason is Reason.CHAIN_LEAF_SIGNATURE


def test_verification_time_must_carry_a_zone(vectors: Path) -> None:
    v = load_vector(vectors, "snp/milan-vcek-v2-gosevguest")
    leaf, inter, ark = _parts(v.certificates)
    with pytest.raises(ParseError) as exc:
        verify_chain(leaf, inter, ark, roots=TrustRoots(), now=v.now.replace(tzinfo=None))
    assert exc.value.reason is Reason.INPUT_INVALID


def test_the_cache_returns_verified_chains_and_rechecks_time(vectors: Path) -> None:
    v = load_vector(vectors, "snp/milan-vlek-v2-aws-constellation-2023")
    leaf, inter, ark = _parts(v.certificates)
    cache = ChainCache()
    first = verify_chain(leaf, inter, ark, roots=TrustRoots(), now=v.now, cache=cache)
    assert verify_chain(leaf, inter, ark, roots=TrustRoots(), now=v.now, cache=cache) is first
    assert len(cache) == 1
    with pytest.raises(VerificationError) as exc:  # a cached chain still expires
        verify_chain(leaf, inter, ark, roots=TrustRoots(), now=v.not_after + dt.timedelta(days=1), cache=cache)
    assert exc.value.reason is Reason.CHAIN_EXPIRED


def test_the_cache_is_keyed_by_the_pinned_roots() -> None:
    chain = dev_chain(Product.TURIN, SignerKind.VCEK)
    cache = ChainCache()
    verify_chain(chain.leaf, chain.ask, chain.ark, roots=TrustRoots().with_dev_root(chain.ark), now=DEV_NOW, cache=cache)
    with pytest.raises(VerificationError) as exc:  # not trusted under AMD's roots, cache or not
        verify_chain(chain.leaf, chain.ask, chain.ark, roots=TrustRoots(), now=DEV_NOW, cache=cache)
    assert exc.value.reason is Reason.CHAIN_ROOT_NOT_PINNED
    assert len(cache) == 1  # failures are never cached


def test_the_cache_is_bounded(vectors: Path) -> None:
    cache = ChainCache(maxsize=1)
    a = load_vector(vectors, "snp/milan-vcek-v2-gosevguest")
    b = load_vector(vectors, "snp/milan-vcek-v2-virtee")
    first = verify_chain(*_parts(a.certificates), roots=TrustRoots(), now=a.now, cache=cache)
    verify_chain(*_parts(b.certificates), roots=TrustRoots(), now=b.now, cache=cache)
    assert len(cache) == 1
    assert verify_chain(*_parts(a.certificates), roots=TrustRoots(), now=a.now, cache=cache) is not first
    with pytest.raises(ValueError):
        ChainCache(maxsize=0)


def test_kds_style_bundle_files_work_as_intermediates(vectors: Path) -> None:
    v = load_vector(vectors, "snp/genoa-vcek-v5-oak")
    ask, ark = load_certificates(vectors / "amd-roots/genoa/cert_chain_vcek.pem")
    assert verify_chain(v.certificates.vcek, ask, ark, roots=TrustRoots(), now=v.now).product is Product.GENOA
