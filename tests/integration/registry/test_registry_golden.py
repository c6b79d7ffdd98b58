"""Golden measurements on chain: one canonical id both ways, owner-only publish/revoke/pin, field validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3 import Web3

from offchain.abi.snp_report import Product, SignerKind, TcbVersion
from offchain.errors import ChainError, Reason
from offchain.policy.golden import Binding, GoldenMeasurement, PolicyRules
from onchain.calldata import golden_struct
from onchain.client import RegistryClient
from tests.support.registry import SimCvm

pytestmark = pytest.mark.integration


def a_golden(**overrides: Any) -> GoldenMeasurement:
    fields: dict[str, Any] = dict(
        measurement=bytes(range(48)),
        policy=PolicyRules(
            debug_allowed=False, migrate_ma_allowed=False, smt_allowed=True, min_abi_major=0, min_abi_minor=0
        ),
        min_tcb=TcbVersion(bootloader=1, tee=0, snp=2, microcode=3),
        vmpl=0,
        products=(Product.GENOA,),
        signers=(SignerKind.VCEK,),
        binding=Binding.DIRECT,
        lifetime_seconds=3600,
        pcrs={0: b"\x01" * 32, 23: b"\x17" * 32},
    )
    fields.update(overrides)
    return GoldenMeasurement(**fields)


def _a_valid_golden(**fields: Any) -> GoldenMeasurement:
    """a_golden, with VMPL 0 where the binding is svsm (the only VMPL an svsm golden may have)."""
    if fields["binding"] is Binding.SVSM:
        fields["vmpl"] = 0
    return a_golden(**fields)


goldens = st.builds(
    _a_valid_golden,
    measurement=st.binary(min_size=48, max_size=48),
    policy=st.builds(
        PolicyRules,
        debug_allowed=st.just(False),
        migrate_ma_allowed=st.booleans(),
        smt_allowed=st.booleans(),
        min_abi_major=st.integers(0, 255),
        min_abi_minor=st.integers(0, 255),
    ),
    min_tcb=st.builds(
        TcbVersion,
        bootloader=st.integers(0, 255),
        tee=st.integers(0, 255),
        snp=st.integers(0, 255),
        microcode=st.integers(0, 255),
        fmc=st.integers(0, 255),
    ),
    vmpl=st.integers(0, 3),
    products=st.lists(st.sampled_from(list(Product)), min_size=1, max_size=3, unique=True),
    signers=st.lists(st.sampled_from(list(SignerKind)), min_size=1, max_size=2, unique=True),
    binding=st.sampled_from(list(Binding)),
    lifetime_seconds=st.integers(1, 2**63),
    pcrs=st.dictionaries(st.integers(0, 23), st.binary(min_size=32, max_size=32), max_size=24),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(golden=goldens)
def test_contract_id_equals_offchain_canonical_id(registry: RegistryClient, golden: GoldenMeasurement) -> None:
    assert registry.golden_id(golden) == golden.canonical_id()


def test_id_changes_with_every_field(registry: RegistryClient) -> None:
    base = a_golden()
    variants = {
        "measurement": a_golden(measurement=bytes(47) + b"\x01"),
        "binding": a_golden(binding=Binding.AZURE),
        "vmpl": a_golden(vmpl=1),
        "products": a_golden(products=(Product.GENOA, Product.MILAN)),
        "signers": a_golden(signers=(SignerKind.VLEK,)),
        "policy": a_golden(policy=dataclasses.replace(base.policy, smt_allowed=False)),
        "min_tcb": a_golden(min_tcb=dataclasses.replace(base.min_tcb, snp=9)),
        "pcr value": a_golden(pcrs={0: b"\x01" * 32, 23: b"\x18" * 32}),
        "pcr index": a_golden(pcrs={1: b"\x01" * 32, 23: b"\x17" * 32}),
        "lifetime": a_golden(lifetime_seconds=3601),
    }
    ids = {name: registry.golden_id(g) for name, g in variants.items()}
    assert registry.golden_id(base) == base.canonical_id()
    assert len(set(ids.values()) | {base.canonical_id()}) == len(variants) + 1
    assert all(ids[name] == g.canonical_id() for name, g in variants.items())


def test_publish_returns_canonical_id_and_records_it(registry: RegistryClient) -> None:
    golden = a_golden(measurement=b"\x42" * 48)
    assert not registry.golden_of(golden.canonical_id()).published
    golden_id = registry.publish_golden(golden)
    assert golden_id == golden.canonical_id()
    info = registry.golden_of(golden_id)
    assert info.published and not info.revoked and info.lifetime == 3600 and info.pcr_mask == 1 | 1 << 23


def test_publish_twice_is_refused(registry: RegistryClient) -> None:
    golden = a_golden(measurement=b"\x43" * 48)
    registry.publish_golden(golden)
    with pytest.raises(ChainError) as info:
        registry.publish_golden(golden)
    assert info.value.reason is Reason.REGISTRY_GOLDEN_EXISTS


def test_revoke_then_republish_is_refused(registry: RegistryClient) -> None:
    golden = a_golden(measurement=b"\x44" * 48)
    golden_id = registry.publish_golden(golden)
    registry.revoke_golden(golden_id)
    assert registry.golden_of(golden_id).revoked
    for action in (lambda: registry.revoke_golden(golden_id), lambda: registry.publish_golden(golden)):
        with pytest.raises(ChainError) as info:
            action()
        assert info.value.reason in (Reason.REGISTRY_GOLDEN_REVOKED, Reason.REGISTRY_GOLDEN_EXISTS)


def test_revoke_unknown_golden(registry: RegistryClient) -> None:
    with pytest.raises(ChainError) as info:
        registry.revoke_golden(b"\x99" * 32)
    assert info.value.reason is Reason.REGISTRY_GOLDEN_NOT_FOUND


def test_only_owner_publishes_revokes_and_pins(registry: RegistryClient, as_relayer: RegistryClient) -> None:
    golden = a_golden(measurement=b"\x45" * 48)
    actions = {
        "publish": lambda r: r.publish_golden(golden),
        "pin": lambda r: r.pin_root(Product.MILAN, b"\x01" * 32),
        "unpin": lambda r: r.unpin_root(b"\x01" * 32),
        "revoke certificate": lambda r: r.revoke_certificate(b"\x02" * 32),
    }
    for name, action in actions.items():
        with pytest.raises(ChainError) as info:
            action(as_relayer)
        assert info.value.reason is Reason.REGISTRY_NOT_OWNER, name
    golden_id = registry.publish_golden(golden)
    with pytest.raises(ChainError) as info:
        as_relayer.revoke_golden(golden_id)
    assert info.value.reason is Reason.REGISTRY_NOT_OWNER
    registry.pin_root(Product.MILAN, b"\x01" * 32)
    assert registry.root_product(b"\x01" * 32) == 1
    registry.unpin_root(b"\x01" * 32)
    assert registry.root_product(b"\x01" * 32) == 0


def test_pin_twice_and_bad_product(registry: RegistryClient) -> None:
    registry.pin_root(Product.TURIN, b"\x03" * 32)
    with pytest.raises(ChainError) as info:
        registry.pin_root(Product.TURIN, b"\x03" * 32)
    assert info.value.reason is Reason.REGISTRY_ROOT_ALREADY_PINNED
    with pytest.raises(ChainError) as info:
        registry._transact("pinRoot", 3, b"\x04" * 32)
    assert info.value.reason is Reason.INPUT_INVALID
    with pytest.raises(ChainError) as info:
        registry.unpin_root(b"\x05" * 32)
    assert info.value.reason is Reason.CHAIN_ROOT_NOT_PINNED


def _struct(golden: GoldenMeasurement, index: int, value: Any) -> tuple[Any, ...]:
    fields = list(golden_struct(golden))
    fields[index] = value
    return tuple(fields)


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (0, bytes(47), 1),
        (1, 3, 2),
        (2, 4, 3),
        (3, 0, 4),
        (3, 8, 4),
        (4, 0, 5),
        (4, 4, 5),
        (5, True, 6),
        (15, 1 | 1 << 23 | 1 << 24, 7),
        (15, 1, 8),
        (17, 0, 9),
        (17, 1 << 32, 9),
    ],
    ids=[
        "measurement-47-bytes",
        "binding-3",
        "vmpl-4",
        "no-products",
        "unknown-product",
        "no-signers",
        "unknown-signer",
        "debug-allowed",
        "pcr-24",
        "pcr-count",
        "lifetime-0",
        "lifetime-2^32",
    ],
)
def test_invalid_golden_fields(registry: RegistryClient, index: int, value: Any, field: int) -> None:
    golden = a_golden(measurement=b"\x46" * 48)
    with pytest.raises(ChainError) as info:
        registry._transact("publishGolden", _struct(golden, index, value))
    assert info.value.reason is Reason.GOLDEN_MALFORMED
    assert info.value.context["args"] == [field]
    assert registry.golden_id(golden) == golden.canonical_id()


def test_two_step_ownership(w3: Web3, registry: RegistryClient, as_relayer: RegistryClient, relayer: str) -> None:
    owner = registry.owner()
    registry.transfer_ownership(relayer)
    assert registry.owner() == owner  # pending until accepted
    with pytest.raises(ChainError) as info:
        as_relayer.publish_golden(a_golden(measurement=b"\x47" * 48))
    assert info.value.reason is Reason.REGISTRY_NOT_OWNER
    as_relayer.accept_ownership()
    assert registry.owner() == relayer
    as_relayer.publish_golden(a_golden(measurement=b"\x47" * 48))
    as_relayer.transfer_ownership(owner)
    registry.accept_ownership()
    assert registry.owner() == owner


def test_golden_from_a_sim_report_publishes(registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden = cvm_rsa.golden()
    assert registry.publish_golden(golden) == golden.canonical_id() == registry.golden_id(golden)
