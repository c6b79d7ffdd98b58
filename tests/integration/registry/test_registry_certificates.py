"""The registry's certificate cache: only chains that verify up to a pinned root get in, revocation reaches down the
chain, and malformed input gets typed errors. Development chains (offchain.devamd) stand in for AMD's here; the real
AMD chains are registered in test_registry_vectors.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from offchain.abi.snp_report import Product, SignerKind
from offchain.devamd import DevAmdChain
from offchain.errors import ChainError, Reason
from offchain.trust.roots import spki_fingerprint
from onchain.calldata import certificate_der, certificate_id
from onchain.client import CertKind, RegistryClient
from tests.support.registry import ISSUED, SimCvm, deploy_registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def vlek_chain() -> DevAmdChain:
    """A development Milan ARK -> ASVK -> VLEK."""
    return DevAmdChain.generate(product=Product.MILAN, signer=SignerKind.VLEK, not_before=ISSUED)


@pytest.fixture(scope="module")
def fresh(w3: Web3, owner: str) -> RegistryClient:
    """A registry with nothing pinned and nothing cached."""
    return deploy_registry(w3, owner)


def rejected(action: Callable[[], object]) -> ChainError:
    with pytest.raises(ChainError) as info:
        action()
    return info.value


def der(cert: x509.Certificate) -> bytes:
    return certificate_der(cert)


def test_a_chain_under_a_pinned_root_is_cached(fresh: RegistryClient, vlek_chain: DevAmdChain) -> None:
    ark, asvk, vlek = (der(c) for c in (vlek_chain.ark, vlek_chain.ask, vlek_chain.leaf))
    # Before its key is pinned the ARK is refused, however well it signs itself.
    assert rejected(lambda: fresh.register_certificate(ark)).reason is Reason.CHAIN_ROOT_NOT_PINNED
    fresh.pin_root(Product.MILAN, spki_fingerprint(vlek_chain.ark))
    leaf_id = fresh.register_chain(ark, asvk, vlek)
    assert leaf_id == certificate_id(vlek)
    infos = [fresh.certificate_of(certificate_id(d)) for d in (ark, asvk, vlek)]
    assert [i.kind for i in infos] == [CertKind.ARK, CertKind.ASVK, CertKind.VLEK]
    assert all(i.product == 1 and not i.revoked for i in infos)
    assert infos[2].issuer == certificate_id(asvk) and infos[1].issuer == certificate_id(ark)
    # Validity is intersected down the chain.
    assert infos[2].not_after <= infos[1].not_after and infos[2].not_before >= infos[1].not_before
    # Registering again is free and returns the same id.
    assert fresh.register_certificate(vlek, certificate_id(asvk)) == leaf_id


def test_wrong_issuers_are_refused(w3: Web3, owner: str, dev_chain: DevAmdChain, vlek_chain: DevAmdChain) -> None:
    registry = deploy_registry(w3, owner)
    registry.pin_root(dev_chain.product, spki_fingerprint(dev_chain.ark))
    registry.pin_root(vlek_chain.product, spki_fingerprint(vlek_chain.ark))
    ark_id = registry.register_certificate(der(dev_chain.ark))
    ask_id = registry.register_certificate(der(dev_chain.ask), ark_id)
    cases = {
        # the other chain's ASVK under this ARK: issuer name and signature are another ARK's
        "asvk under another ark": (der(vlek_chain.ask), ark_id, Reason.CHAIN_WRONG_INTERMEDIATE),
        # a VCEK straight under the ARK
        "vcek under the ark": (der(dev_chain.leaf), ark_id, Reason.CHAIN_WRONG_INTERMEDIATE),
        # a root under an intermediate
        "ark under an ask": (der(vlek_chain.ark), ask_id, Reason.CHAIN_WRONG_INTERMEDIATE),
        # a VLEK under an ASK
        "vlek under an ask": (der(vlek_chain.leaf), ask_id, Reason.CHAIN_WRONG_INTERMEDIATE),
        # an issuer the registry never saw
        "unknown issuer": (der(dev_chain.leaf), b"\x05" * 32, Reason.REGISTRY_CERTIFICATE_UNKNOWN),
    }
    for name, (cert, issuer, reason) in cases.items():
        assert rejected(lambda c=cert, i=issuer: registry.register_certificate(c, i)).reason is reason, name
    # A cached certificate is returned as it is, whatever issuer is named: nothing about it changes.
    assert registry.register_certificate(der(dev_chain.ask), ask_id) == ask_id
    assert registry.certificate_of(ask_id).issuer == ark_id
    # The positive twins: each under its real issuer.
    assert registry.certificate_of(registry.register_certificate(der(dev_chain.leaf), ask_id)).kind is CertKind.VCEK
    other_ark = registry.register_certificate(der(vlek_chain.ark))
    asvk_id = registry.register_certificate(der(vlek_chain.ask), other_ark)
    assert registry.certificate_of(registry.register_certificate(der(vlek_chain.leaf), asvk_id)).kind is CertKind.VLEK


def test_a_signature_that_does_not_verify_is_refused(w3: Web3, owner: str, dev_chain: DevAmdChain) -> None:
    registry = deploy_registry(w3, owner)
    registry.pin_root(dev_chain.product, spki_fingerprint(dev_chain.ark))
    ark = der(dev_chain.ark)
    ark_id = registry.register_certificate(ark)
    ask_id = registry.register_certificate(der(dev_chain.ask), ark_id)
    leaf = bytearray(der(dev_chain.leaf))
    leaf[-3] ^= 0x01  # inside the signature value, the last element of the certificate
    assert rejected(lambda: registry.register_certificate(bytes(leaf), ask_id)).reason is Reason.CHAIN_LEAF_SIGNATURE
    ask = bytearray(der(dev_chain.ask))
    ask[-3] ^= 0x01
    error = rejected(lambda: registry.register_certificate(bytes(ask), ark_id))
    assert error.reason is Reason.CHAIN_ASK_SIGNATURE
    other = DevAmdChain.generate(product=dev_chain.product, signer=SignerKind.VCEK, not_before=ISSUED)
    # Another root whose key is pinned, but whose self-signature was tampered with.
    registry.pin_root(other.product, spki_fingerprint(other.ark))
    bad_root = bytearray(der(other.ark))
    bad_root[-3] ^= 0x01
    assert rejected(lambda: registry.register_certificate(bytes(bad_root))).reason is Reason.CHAIN_ARK_SIGNATURE
    assert registry.certificate_of(registry.register_certificate(der(other.ark))).kind is CertKind.ARK


def test_revocation_and_unpinning_reach_down_the_chain(w3: Web3, owner: str, relayer: str, cvm_rsa: SimCvm) -> None:
    chain = cvm_rsa.chain
    registry = deploy_registry(w3, owner)
    registry.pin_root(chain.product, spki_fingerprint(chain.ark))
    leaf_id = registry.register_chain(der(chain.ark), der(chain.ask), der(chain.leaf))
    report = cvm_rsa.report.to_bytes()
    assert registry.verify_report(report, leaf_id).signer == 1
    # Revoking the ASK stops the VCEK under it; it cannot be registered again either.
    ask_id = certificate_id(der(chain.ask))
    outsider = RegistryClient(w3, registry.address, sender=relayer, abi=registry.abi)
    assert rejected(lambda: outsider.revoke_certificate(ask_id)).reason is Reason.REGISTRY_NOT_OWNER
    registry.revoke_certificate(ask_id)
    assert rejected(lambda: registry.verify_report(report, leaf_id)).reason is Reason.REGISTRY_CERTIFICATE_REVOKED
    error = rejected(lambda: registry.register_certificate(der(chain.ask), certificate_id(der(chain.ark))))
    assert error.reason is Reason.REGISTRY_CERTIFICATE_REVOKED
    assert rejected(lambda: registry.revoke_certificate(ask_id)).reason is Reason.REGISTRY_CERTIFICATE_REVOKED
    # Unpinning the root does the same for a whole fresh chain.
    second = deploy_registry(w3, owner)
    second.pin_root(chain.product, spki_fingerprint(chain.ark))
    leaf_id = second.register_chain(der(chain.ark), der(chain.ask), der(chain.leaf))
    second.unpin_root(spki_fingerprint(chain.ark))
    assert rejected(lambda: second.verify_report(report, leaf_id)).reason is Reason.REGISTRY_CERTIFICATE_REVOKED
    assert rejected(lambda: second.verify_report(report, certificate_id(der(chain.ask)))).reason is (
        Reason.REGISTRY_NOT_A_LEAF
    )


def test_a_leaf_outside_its_validity_is_refused(w3: Web3, owner: str, cvm_rsa: SimCvm) -> None:
    chain = cvm_rsa.chain
    registry = deploy_registry(w3, owner)
    registry.pin_root(chain.product, spki_fingerprint(chain.ark))
    leaf_id = registry.register_chain(der(chain.ark), der(chain.ask), der(chain.leaf))
    info = registry.certificate_of(leaf_id)
    report = cvm_rsa.report.to_bytes()
    assert registry.verify_report(report, leaf_id).product == 2
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        # The chain's clock moves past the leaf's notAfter (the test pins it from the certificate itself).
        w3.provider.make_request("evm_setTime", [info.not_after + 1])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert rejected(lambda: registry.verify_report(report, leaf_id)).reason is Reason.CHAIN_EXPIRED
        w3.provider.make_request("evm_setTime", [info.not_before - 1])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert rejected(lambda: registry.verify_report(report, leaf_id)).reason is Reason.CHAIN_NOT_YET_VALID
    finally:
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_certificate_bytes_give_typed_errors(fresh: RegistryClient, data: bytes) -> None:
    try:
        fresh.register_certificate(data)
    except ChainError as exc:
        assert exc.reason not in (Reason.CHAIN_REVERTED, Reason.CHAIN_RPC_UNAVAILABLE, Reason.CHAIN_TX_FAILED)
    else:
        pytest.fail("random bytes were cached as a certificate")


@pytest.fixture(scope="module")
def sim_registry(w3: Web3, owner: str, cvm_rsa: SimCvm) -> RegistryClient:
    """A registry that trusts the simulated chain, shared by the hypothesis examples."""
    registry = deploy_registry(w3, owner)
    registry.pin_root(cvm_rsa.chain.product, spki_fingerprint(cvm_rsa.chain.ark))
    registry.register_chain(der(cvm_rsa.chain.ark), der(cvm_rsa.chain.ask), der(cvm_rsa.chain.leaf))
    return registry


@settings(max_examples=25, deadline=None)
@given(position=st.integers(0, 1183), value=st.integers(0, 255))
def test_mutated_reports_give_typed_errors(
    sim_registry: RegistryClient, cvm_rsa: SimCvm, position: int, value: int
) -> None:
    report = bytearray(cvm_rsa.report.to_bytes())
    changed = report[position] != value
    report[position] = value
    try:
        sim_registry.verify_report(bytes(report), cvm_rsa.leaf_id)
    except ChainError as exc:
        assert exc.reason not in (Reason.CHAIN_REVERTED, Reason.CHAIN_RPC_UNAVAILABLE, Reason.CHAIN_TX_FAILED)
    else:
        # Every byte is signed, part of the signature, or reserved: no change gets through.
        assert not changed
