"""Pinned AMD roots: the pins are the real ARKs' public keys, and only a caller adds a dev root."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from offchain.abi.snp_report import Product
from offchain.errors import ParseError, Reason
from offchain.trust.certs import load_certificates
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, TrustRoots, spki_fingerprint
from tests.support.evidence import dev_chain

# vectors/README.md lists each ARK's "SHA-256 fingerprint": the hash of the whole certificate (DER).
README_CERT_FINGERPRINTS = {
    Product.MILAN: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    Product.GENOA: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    Product.TURIN: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}


def _ark(vectors: Path, product: Product):
    (ark,) = load_certificates(vectors / "amd-roots" / product.value / "ark.pem")
    return ark


@pytest.mark.parametrize("product", list(Product), ids=lambda p: p.value)
def test_pins_are_the_public_keys_of_the_real_arks(vectors: Path, product: Product) -> None:
    ark = _ark(vectors, product)
    spki = ark.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert AMD_ARK_SPKI_SHA256[product] == hashlib.sha256(spki).digest() == spki_fingerprint(ark)
    # The README's fingerprint is of the certificate, a different value: the pin is the key's.
    cert_hash = hashlib.sha256(ark.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert cert_hash == README_CERT_FINGERPRINTS[product]
    assert cert_hash != AMD_ARK_SPKI_SHA256[product].hex()
    root = TrustRoots().lookup(ark)
    assert root is not None and root.product is product and not root.development


@pytest.mark.parametrize("product", list(Product), ids=lambda p: p.value)
def test_the_vlek_chain_files_carry_the_same_pinned_ark(vectors: Path, product: Product) -> None:
    certs = load_certificates(vectors / "amd-roots" / product.value / "cert_chain_vlek.pem")
    assert TrustRoots().lookup(certs[-1]) is not None
    assert TrustRoots().lookup(certs[0]) is None  # the ASVK is no root


def test_default_roots_are_exactly_amds_three() -> None:
    roots = TrustRoots()
    assert len(roots) == 3
    assert {r.product for r in roots} == set(Product)
    assert TrustRoots.amd() == roots


def test_a_dev_root_is_trusted_only_when_asked() -> None:
    chain = dev_chain()
    assert TrustRoots().lookup(chain.ark) is None
    roots = TrustRoots().with_dev_root(chain.ark)
    root = roots.lookup(chain.ark)
    assert root is not None and root.development and root.product is chain.product
    assert len(roots) == 4 and len(TrustRoots()) == 3  # the default set is untouched
    assert roots.with_dev_root(chain.ark) is roots  # adding it twice changes nothing
    assert TrustRoots.empty().lookup(chain.ark) is None


def test_only_an_ark_can_become_a_dev_root() -> None:
    with pytest.raises(ParseError) as exc:
        TrustRoots().with_dev_root(dev_chain().ask)
    assert exc.value.reason is Reason.CERT_MALFORMED


def test_trust_roots_are_immutable() -> None:
    roots = TrustRoots()
    with pytest.raises(dataclasses.FrozenInstanceError):
        roots.roots = ()  # type: ignore[misc]


def test_cache_key_changes_with_the_pinned_set() -> None:
    dev = TrustRoots().with_dev_root(dev_chain().ark)
    assert TrustRoots().cache_key == TrustRoots.amd().cache_key
    assert dev.cache_key != TrustRoots().cache_key
