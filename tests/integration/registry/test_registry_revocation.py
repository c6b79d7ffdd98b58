"""Revocation reaches attested CVMs, the leaf's validity bounds an attestation, and only the CVM chooses
its golden measurement (issue 11, items 1 and 5), on a real anvil with development AMD chains.

Each test that revokes or unpins gets a chain of its own: revocation is final, so sharing the module's
chain would change every other test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from offchain.abi.binding import golden_consent_digest
from offchain.abi.snp_report import Product, SignerKind
from offchain.devamd import DevAmdChain
from offchain.errors import ChainError, Reason
from offchain.trust.roots import spki_fingerprint
from onchain.calldata import certificate_der, certificate_id
from onchain.client import AttestationStatus, RegistryClient, TxResult
from tests.support.registry import (
    ISSUED,
    SimCvm,
    SoftAk,
    advance_time,
    consent,
    deploy_registry,
    fresh_nonce,
    new_cvm,
    register_cvm,
    sim_cvm,
    trust_dev_chain,
)

pytestmark = pytest.mark.integration

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def rejected(action: Callable[[], object]) -> ChainError:
    with pytest.raises(ChainError) as info:
        action()
    return info.value


def register(w3: Web3, registry: RegistryClient, cvm: SimCvm, golden_id: bytes, address: str,
             **kwargs: Any) -> TxResult:
    number, extra = fresh_nonce(w3, registry, address)
    return register_cvm(registry, golden_id, address, number, cvm.evidence(cvm.quote(extra)), **kwargs)


def refresh(w3: Web3, registry: RegistryClient, cvm: SimCvm, address: str) -> TxResult:
    number, extra = fresh_nonce(w3, registry, address)
    quote = cvm.quote(extra)
    return registry.refresh_cvm(address, number, cvm.ak.public, quote.attest, quote.signature)


@pytest.fixture(scope="module")
def own_chain(rsa_ak: SoftAk) -> Callable[..., SimCvm]:
    """A fresh development chain (its own ARK) and a CVM under it: for tests that revoke."""
    def make(**chain_args: Any) -> SimCvm:
        chain = DevAmdChain.generate(product=Product.GENOA, signer=SignerKind.VCEK,
                                     not_before=chain_args.pop("not_before", ISSUED), **chain_args)
        return sim_cvm(chain, rsa_ak)
    return make


def _ids(cvm: SimCvm) -> tuple[bytes, bytes, bytes]:
    chain = cvm.chain
    return tuple(certificate_id(certificate_der(c)) for c in (chain.ark, chain.ask, chain.leaf))  # type: ignore[return-value]


# --- item 1: revocation and the leaf's validity --------------------------------------------------


@pytest.mark.parametrize("revoke", ["leaf", "intermediate", "unpin-root"])
def test_revocation_reaches_attested_cvms(
    w3: Web3, registry: RegistryClient, own_chain: Callable[..., SimCvm], revoke: str
) -> None:
    cvm = own_chain()
    trust_dev_chain(registry, cvm.chain)
    pcr = {"leaf": 16, "intermediate": 17, "unpin-root": 18}[revoke]
    golden_id = registry.publish_golden(cvm.golden(pinned=(0, pcr, 23), lifetime=900))
    address = new_cvm()
    register(w3, registry, cvm, golden_id, address)
    refresh(w3, registry, cvm, address)
    assert registry.attestation_status(address) is AttestationStatus.ATTESTED
    ark_id, ask_id, leaf_id = _ids(cvm)
    assert registry.attestation_of(address).leaf == leaf_id
    if revoke == "leaf":
        registry.revoke_certificate(leaf_id)
    elif revoke == "intermediate":
        registry.revoke_certificate(ask_id)
    else:
        registry.unpin_root(spki_fingerprint(cvm.chain.ark))
    assert not registry.is_attested(address) and not registry.is_attested_for(address, golden_id)
    record = registry.attestation_of(address)
    assert record.status is AttestationStatus.CHAIN_REVOKED and not record.attested
    assert registry.attestation_status(address, golden_id) is AttestationStatus.CHAIN_REVOKED
    # refreshCvm walks the chain after a revocation and reverts with the chain's own error.
    error = rejected(lambda: refresh(w3, registry, cvm, address))
    assert error.reason is Reason.REGISTRY_CERTIFICATE_REVOKED
    assert error.context.get("error") == "RegistryCertificateRevoked"
    if revoke == "unpin-root":
        # Unpinning suspends: pinning the same key again brings the chain, and the CVM, back.
        registry.pin_root(cvm.chain.product, spki_fingerprint(cvm.chain.ark))
        assert registry.is_attested(address)
        refresh(w3, registry, cvm, address)
        assert registry.is_attested(address)


def test_a_revocation_elsewhere_leaves_other_chains_attested(
    w3: Web3, registry: RegistryClient, own_chain: Callable[..., SimCvm]
) -> None:
    kept, revoked = own_chain(), own_chain()
    for cvm in (kept, revoked):
        trust_dev_chain(registry, cvm.chain)
    golden_id = registry.publish_golden(kept.golden(pinned=(0, 19, 23), lifetime=900))
    address = new_cvm()
    register(w3, registry, kept, golden_id, address)
    registry.revoke_certificate(_ids(revoked)[2])
    # The slow path runs (a revocation came after this CVM's last nonce) and finds its own chain intact.
    assert registry.is_attested(address)
    refresh(w3, registry, kept, address)
    assert registry.is_attested(address)


def test_attestation_ends_with_the_leaf(w3: Web3, registry: RegistryClient,
                                        own_chain: Callable[..., SimCvm]) -> None:
    now = dt.datetime.fromtimestamp(int(w3.eth.get_block("latest")["timestamp"]), dt.timezone.utc)
    leaf_end = now + dt.timedelta(days=3)
    cvm = own_chain(not_before=now - dt.timedelta(days=1), not_after=leaf_end)
    trust_dev_chain(registry, cvm.chain)
    golden_id = registry.publish_golden(cvm.golden(pinned=(0, 20, 23), lifetime=30 * 86400))
    address = new_cvm()
    register(w3, registry, cvm, golden_id, address)
    record = registry.attestation_of(address)
    # The 30-day lifetime is cut at the leaf's notAfter, rounded down to 65,536 s.
    assert record.expiry == (int(leaf_end.timestamp()) >> 16) << 16 == record.leaf_end << 16
    assert record.expiry <= int(leaf_end.timestamp())
    refresh(w3, registry, cvm, address)
    assert registry.attestation_of(address).expiry == record.expiry  # a refresh cannot pass the leaf either
    advance_time(w3, record.expiry - int(w3.eth.get_block("latest")["timestamp"]))
    assert not registry.is_attested(address)
    assert registry.attestation_status(address) is AttestationStatus.LEAF_EXPIRED
    assert rejected(lambda: refresh(w3, registry, cvm, address)).reason is Reason.CHAIN_EXPIRED


# --- item 5: only the CVM chooses its golden -----------------------------------------------------


@pytest.fixture(scope="module")
def two_goldens(registry: RegistryClient, cvm_rsa: SimCvm) -> tuple[bytes, bytes]:
    """Two active goldens the same CVM satisfies (one pins an extra PCR)."""
    return (registry.publish_golden(cvm_rsa.golden(pinned=(0, 21, 23), lifetime=900)),
            registry.publish_golden(cvm_rsa.golden(pinned=(0, 22, 23), lifetime=900)))


def test_nobody_moves_a_cvm_to_another_golden(
    w3: Web3, registry: RegistryClient, as_relayer: RegistryClient, cvm_rsa: SimCvm, two_goldens: tuple[bytes, bytes]
) -> None:
    chosen, other = two_goldens
    address = new_cvm()
    register(w3, as_relayer, cvm_rsa, chosen, address)
    # A fresh quote is all anyone can get from /onchain/collaterals; the consent they hold is for `chosen`.
    error = rejected(lambda: register(w3, as_relayer, cvm_rsa, other, address, consent_to=chosen))
    assert error.reason is Reason.REGISTRY_CONSENT_INVALID
    assert registry.attestation_of(address).golden_id == chosen and registry.is_attested_for(address, chosen)
    assert registry.attestation_status(address, other) is AttestationStatus.OTHER_GOLDEN
    # With the CVM's consent to `other` the move is the CVM's own choice, and it goes through.
    register(w3, as_relayer, cvm_rsa, other, address)
    assert registry.is_attested_for(address, other) and not registry.is_attested_for(address, chosen)


def test_consent_negative_twins(
    w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, two_goldens: tuple[bytes, bytes]
) -> None:
    golden_id = two_goldens[0]
    address, stranger = new_cvm(), new_cvm()
    good = consent(registry, address, golden_id)
    r, s, v = good[:32], int.from_bytes(good[32:64], "big"), good[64]
    cases = {
        "missing": b"",
        "zero": bytes(65),
        "another-key": consent(registry, stranger, golden_id),
        "high-s": r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v]),  # same point, malleated
        "truncated": good[:64],
        "v-out-of-range": good[:64] + b"\x01",
    }
    for name, signature in cases.items():
        number, extra = fresh_nonce(w3, registry, address)
        evidence = cvm_rsa.evidence(cvm_rsa.quote(extra))
        error = rejected(lambda: registry.register_cvm(golden_id, address, number, evidence, signature))
        assert error.reason is Reason.REGISTRY_CONSENT_INVALID, name
    # Over another chain id or registry the digest differs, so the signature names someone else.
    assert golden_consent_digest(1, registry.address, address, golden_id) != golden_consent_digest(
        int(w3.eth.chain_id), registry.address, address, golden_id)
    number, extra = fresh_nonce(w3, registry, address)
    registry.register_cvm(golden_id, address, number, cvm_rsa.evidence(cvm_rsa.quote(extra)), good)
    assert registry.is_attested_for(address, golden_id)


# --- the property: isAttested equals a model of the registry -------------------------------------


@dataclass
class _Model:
    """What the registry should answer, kept from the operations alone."""

    revoked_leaf: list[bool] = field(default_factory=lambda: [False, False])
    revoked_ask: list[bool] = field(default_factory=lambda: [False, False])
    pinned: list[bool] = field(default_factory=lambda: [True, True])
    golden_revoked: list[bool] = field(default_factory=lambda: [False, False])
    #: per CVM: (golden index, expiry) once registered
    attested: dict[int, tuple[int, int]] = field(default_factory=dict)

    def chain_ok(self, chain: int) -> bool:
        return not self.revoked_leaf[chain] and not self.revoked_ask[chain] and self.pinned[chain]

    def is_attested(self, cvm: int, now: int) -> bool:
        if cvm not in self.attested:
            return False
        golden, expiry = self.attested[cvm]
        return now < expiry and not self.golden_revoked[golden] and self.chain_ok(cvm)


LIFETIME = 600
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["register"]), st.integers(0, 1), st.integers(0, 1)),
        st.tuples(st.sampled_from(["refresh", "revoke-leaf", "revoke-ask", "unpin", "repin", "revoke-golden"]),
                  st.integers(0, 1)),
        st.tuples(st.just("wait"), st.integers(1, 400)),
    ),
    min_size=1,
    max_size=10,
)


@pytest.fixture(scope="module")
def model_chains(own_chain: Callable[..., SimCvm]) -> list[SimCvm]:
    return [own_chain(), own_chain()]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_is_attested_follows_the_model(
    w3: Web3, owner: str, model_chains: list[SimCvm], operations: list[tuple[Any, ...]]
) -> None:
    """Random register / refresh / revoke / unpin / re-pin / golden revoke / wait sequences on a fresh
    registry: after every step isAttested (and the status's verdict) equals the model's answer.
    CVM i runs under chain i; both satisfy both goldens."""
    registry = deploy_registry(w3, owner)
    for cvm in model_chains:
        trust_dev_chain(registry, cvm.chain)
    goldens = [registry.publish_golden(model_chains[0].golden(pinned=(0, 23), lifetime=LIFETIME)),
               registry.publish_golden(model_chains[0].golden(pinned=(0, 8, 23), lifetime=LIFETIME))]
    addresses = [new_cvm(), new_cvm()]
    model = _Model()

    def now() -> int:
        return int(w3.eth.get_block("latest")["timestamp"])

    for operation in operations:
        kind, index = operation[0], operation[1]
        if kind == "register":
            golden = operation[2]
            may = not model.golden_revoked[golden] and model.chain_ok(index)
            try:
                result = register(w3, registry, model_chains[index], goldens[golden], addresses[index])
            except ChainError:
                assert not may, operation
            else:
                assert may, operation
                model.attested[index] = (golden, int(w3.eth.get_block(result.block_number)["timestamp"]) + LIFETIME)
        elif kind == "refresh":
            # A refresh needs a registered, unexpired CVM on an intact chain (the golden's state is not read).
            # The block time is known only after the fact, so a refresh within two seconds of the expiry
            # may go either way.
            registered = index in model.attested and model.chain_ok(index)
            try:
                result = refresh(w3, registry, model_chains[index], addresses[index])
            except ChainError:
                assert not (registered and now() + 2 < model.attested[index][1]), operation
            else:
                block_time = int(w3.eth.get_block(result.block_number)["timestamp"])
                assert registered and block_time < model.attested[index][1], operation
                model.attested[index] = (model.attested[index][0], block_time + LIFETIME)
        elif kind in ("revoke-leaf", "revoke-ask"):
            flags = model.revoked_leaf if kind == "revoke-leaf" else model.revoked_ask
            if not flags[index]:
                registry.revoke_certificate(_ids(model_chains[index])[2 if kind == "revoke-leaf" else 1])
                flags[index] = True
        elif kind == "unpin" and model.pinned[index]:
            registry.unpin_root(spki_fingerprint(model_chains[index].chain.ark))
            model.pinned[index] = False
        elif kind == "repin" and not model.pinned[index]:
            registry.pin_root(model_chains[index].chain.product, spki_fingerprint(model_chains[index].chain.ark))
            model.pinned[index] = True
        elif kind == "revoke-golden" and not model.golden_revoked[index]:
            registry.revoke_golden(goldens[index])
            model.golden_revoked[index] = True
        elif kind == "wait":
            advance_time(w3, index)
        moment = now()
        for cvm in (0, 1):
            expected = model.is_attested(cvm, moment)
            assert registry.is_attested(addresses[cvm]) is expected, (operation, cvm)
            assert (registry.attestation_status(addresses[cvm]) is AttestationStatus.ATTESTED) is expected
