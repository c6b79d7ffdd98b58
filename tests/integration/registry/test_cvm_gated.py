"""CvmGated through the example dApp: only the attested address gets through, and only while it is attested."""

from __future__ import annotations

from typing import Any

import pytest
from web3 import Web3
from web3.exceptions import ContractCustomError

from offchain.errors import Reason
from onchain.client import AttestationStatus, RegistryClient
from onchain.errors import chain_error
from tests.support.evm import deploy
from tests.support.registry import SimCvm, advance_time, fresh_nonce, publish_once, register_cvm, registry_artifacts

pytestmark = pytest.mark.integration


def attest(w3: Web3, registry: RegistryClient, cvm: SimCvm, golden_id: bytes, address: str) -> None:
    number, extra = fresh_nonce(w3, registry, address)
    register_cvm(registry, golden_id, address, number, cvm.evidence(cvm.quote(extra)))


def refused(feed: Any, fn: str, sender: str, status: AttestationStatus | None = None) -> Reason:
    """The gate's refusal; with ``status``, also the registry's reason the error carries."""
    with pytest.raises(ContractCustomError) as info:
        getattr(feed.functions, fn)(1).transact({"from": sender})
    error = chain_error(info.value, feed.abi)
    if status is not None:
        assert error.context["args"][2] == status.value, error.detail
    return error.reason


@pytest.fixture(scope="module")
def golden_id(registry: RegistryClient, cvm_rsa: SimCvm) -> bytes:
    return publish_once(registry, cvm_rsa.golden(pinned=(0, 8, 23), lifetime=1200))


@pytest.fixture(scope="module")
def feed(w3: Web3, owner: str, registry: RegistryClient, golden_id: bytes) -> Any:
    return deploy(w3, registry_artifacts()["AttestedPriceFeed"], registry.address, golden_id, sender=owner)


def test_only_the_attested_cvm_reports(
    w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, golden_id: bytes, feed: Any
) -> None:
    cvm, outsider = str(w3.eth.accounts[5]), str(w3.eth.accounts[6])
    assert refused(feed, "report", cvm, AttestationStatus.NOT_REGISTERED) is Reason.REGISTRY_NOT_ATTESTED
    attest(w3, registry, cvm_rsa, golden_id, cvm)  # relayed by the owner's account: the CVM pays nothing
    feed.functions.report(42).transact({"from": cvm})
    assert feed.functions.latestValue().call() == 42 and feed.functions.reporter().call() == cvm
    assert refused(feed, "report", outsider) is Reason.REGISTRY_NOT_ATTESTED
    assert refused(feed, "reportAny", outsider) is Reason.REGISTRY_NOT_ATTESTED
    feed.functions.reportAny(43).transact({"from": cvm})
    assert feed.functions.latestValue().call() == 43


def test_other_golden_passes_any_but_not_per_golden(
    w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, feed: Any
) -> None:
    other_golden = registry.publish_golden(cvm_rsa.golden(pinned=(0, 9, 23)))
    cvm = str(w3.eth.accounts[7])
    attest(w3, registry, cvm_rsa, other_golden, cvm)
    feed.functions.reportAny(7).transact({"from": cvm})
    assert refused(feed, "report", cvm, AttestationStatus.OTHER_GOLDEN) is Reason.REGISTRY_NOT_ATTESTED


def test_gate_closes_on_revocation_and_expiry(
    w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, golden_id: bytes, feed: Any
) -> None:
    cvm = str(w3.eth.accounts[8])
    attest(w3, registry, cvm_rsa, golden_id, cvm)
    feed.functions.report(1).transact({"from": cvm})
    advance_time(w3, 1201)
    assert refused(feed, "report", cvm, AttestationStatus.EXPIRED) is Reason.REGISTRY_NOT_ATTESTED
    revocable = registry.publish_golden(cvm_rsa.golden(pinned=(0, 10, 23)))
    cvm2 = str(w3.eth.accounts[9])
    attest(w3, registry, cvm_rsa, revocable, cvm2)
    feed.functions.reportAny(2).transact({"from": cvm2})
    registry.revoke_golden(revocable)
    assert refused(feed, "reportAny", cvm2, AttestationStatus.GOLDEN_REVOKED) is Reason.REGISTRY_NOT_ATTESTED


def test_zero_registry_is_refused(w3: Web3, owner: str) -> None:
    with pytest.raises(ContractCustomError) as info:
        deploy(w3, registry_artifacts()["AttestedPriceFeed"], "0x" + "00" * 20, b"\x00" * 32, sender=owner)
    artifact_abi = registry_artifacts()["AttestedPriceFeed"]["abi"]
    assert chain_error(info.value, artifact_abi).reason is Reason.INPUT_INVALID
