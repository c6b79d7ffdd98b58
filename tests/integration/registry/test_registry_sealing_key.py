"""publishSealingKey / sealingKeyOf: only an attested CVM's own signature over its key, for this
chain and registry, puts a sealing key in the registry; its status follows the attestation."""

from __future__ import annotations

import pytest
from web3 import Web3

from offchain.errors import ChainError, Reason
from onchain.client import AttestationStatus, RegistryClient
from tests.support.registry import (
    SimCvm,
    fresh_nonce,
    new_cvm,
    publish_once,
    register_cvm,
    sealing_key_signature,
)

KEY = bytes(range(1, 33))


@pytest.fixture(scope="module")
def attested(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> tuple[str, bytes]:
    golden_id = publish_once(registry, cvm_rsa.golden())
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    register_cvm(registry, golden_id, address, number, cvm_rsa.evidence(cvm_rsa.quote(extra)))
    return address, golden_id


def _refused(action: object) -> ChainError:
    with pytest.raises(ChainError) as caught:
        action()  # type: ignore[operator]
    return caught.value


def test_an_attested_cvm_publishes_its_key(w3: Web3, as_relayer: RegistryClient, registry: RegistryClient,
                                           attested: tuple[str, bytes]) -> None:
    address, _ = attested
    assert registry.sealing_key_of(address) == (bytes(32), AttestationStatus.ATTESTED)
    result = as_relayer.publish_sealing_key(address, KEY, sealing_key_signature(registry, address, KEY))  # anyone sends
    assert registry.sealing_key_of(address) == (KEY, AttestationStatus.ATTESTED)
    (event,) = registry.contract.events.CvmSealingKeyPublished().process_receipt(
        w3.eth.get_transaction_receipt(result.tx_hash))
    assert event["args"]["cvm"] == address and event["args"]["sealingKey"] == KEY
    rotated = bytes(range(2, 34))
    as_relayer.publish_sealing_key(address, rotated, sealing_key_signature(registry, address, rotated))
    assert registry.sealing_key_of(address)[0] == rotated


def test_only_the_cvms_signature_over_this_key_counts(registry: RegistryClient, attested: tuple[str, bytes]) -> None:
    address, _ = attested
    before = registry.sealing_key_of(address)
    other = new_cvm()
    for key, signature in (
        (bytes(range(3, 35)), sealing_key_signature(registry, address, KEY)),  # signed another key
        (KEY, sealing_key_signature(registry, other, KEY)),                   # signed by another CVM key
        (bytes(32), sealing_key_signature(registry, address, bytes(32))),     # the zero key
        (KEY, bytes(65)),
    ):
        error = _refused(lambda: registry.publish_sealing_key(address, key, signature))
        assert error.reason is Reason.SEAL_KEY_NOT_BOUND and error.context["error"] == "RegistrySealingKeyInvalid"
    assert registry.sealing_key_of(address) == before


def test_a_cvm_that_is_not_attested_publishes_nothing(registry: RegistryClient, attested: tuple[str, bytes],
                                                      cvm_rsa: SimCvm) -> None:
    stranger = new_cvm()
    error = _refused(lambda: registry.publish_sealing_key(stranger, KEY, sealing_key_signature(registry, stranger, KEY)))
    assert error.reason is Reason.REGISTRY_NOT_ATTESTED and error.context["error"] == "RegistryCvmNotAttested"
    assert registry.sealing_key_of(stranger) == (bytes(32), AttestationStatus.NOT_REGISTERED)
    address, golden_id = attested
    registry.revoke_golden(golden_id)
    assert registry.sealing_key_of(address)[1] is AttestationStatus.GOLDEN_REVOKED
    error = _refused(lambda: registry.publish_sealing_key(address, KEY, sealing_key_signature(registry, address, KEY)))
    assert error.reason is Reason.REGISTRY_NOT_ATTESTED
