"""registerCvmSvsm on a real anvil: the SVSM's VMPL0 report (signed by a development AMD chain) carries the
vTPM's EK, an activator the owner named vouches that the AK lives in that vTPM, the AK's quote is fresh.

Each negative is the positive path with one thing changed, and asserts the custom error's reason (and its
arguments where they say which value was refused)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.abi.binding import svsm_activation_digest, tpm_name_digest
from offchain.errors import ChainError, Reason
from offchain.policy.golden import Binding
from onchain.calldata import golden_struct
from onchain.client import AttestationStatus, RegistryClient
from tests.support.evm import TX_GAS_CAP
from tests.support.registry import (
    SoftAk,
    SvsmCvm,
    activation_signature,
    consent,
    ek_public,
    fresh_nonce,
    new_cvm,
    publish_once,
    register_cvm,
    register_cvm_svsm,
    sim_cvm,
    svsm_cvm,
)

pytestmark = pytest.mark.integration

REGISTER_CVM_GAS_TARGET = 2_500_000
REFRESH_GAS_TARGET = 80_000


@pytest.fixture(scope="module")
def activator(registry: RegistryClient) -> LocalAccount:
    """The key the owner names as its activator (the relayer that ran the credential activation)."""
    account: LocalAccount = Account.create()
    registry.set_activator(account.address, True)
    return account


@pytest.fixture(scope="module")
def svsm(dev_chain: Any, rsa_ak: SoftAk) -> SvsmCvm:
    return svsm_cvm(dev_chain, rsa_ak, ek_public("rsa"))


@pytest.fixture(scope="module")
def golden_svsm(registry: RegistryClient, svsm: SvsmCvm) -> bytes:
    return publish_once(registry, svsm.golden())


def _expiry(w3: Web3, seconds: int = 600) -> int:
    return int(w3.eth.get_block("latest")["timestamp"]) + seconds


def _register(
    w3: Web3, registry: RegistryClient, cvm: SvsmCvm, golden_id: bytes, activator: LocalAccount, address: str,
    activated_ek: bytes | None = None, **evidence_args: Any,
) -> Any:
    number, extra = fresh_nonce(w3, registry, address)
    evidence = cvm.evidence(cvm.quote(extra, ak=evidence_args.get("ak")), **evidence_args)
    return register_cvm_svsm(
        registry, golden_id, address, number, evidence, activator, _expiry(w3), activated_ek=activated_ek
    )


def rejected(action: Callable[[], object]) -> ChainError:
    with pytest.raises(ChainError) as info:
        action()
    return info.value


def _signer(error: ChainError) -> str:
    """The address a RegistryActivatorUnknown names, checksummed."""
    (signer,) = error.context["args"]
    return str(Web3.to_checksum_address(signer))


# --- the positive path ------------------------------------------------------------------------------


def test_svsm_registration_attests_and_refreshes(
    w3: Web3, registry: RegistryClient, as_relayer: RegistryClient, svsm: SvsmCvm, golden_svsm: bytes,
    activator: LocalAccount,
) -> None:
    assert registry.is_activator(activator.address)
    assert registry.golden_of(golden_svsm).binding == 2
    address = new_cvm()
    result = _register(w3, as_relayer, svsm, golden_svsm, activator, address)  # anyone relays
    assert result.gas_used <= REGISTER_CVM_GAS_TARGET < TX_GAS_CAP
    assert registry.is_attested_for(address, golden_svsm)
    record = registry.attestation_of(address)
    assert record.golden_id == golden_svsm and record.ak_hash == svsm.ak.key_hash
    assert record.report_hash == Web3.keccak(svsm.report.to_bytes()) and record.leaf == svsm.leaf_id
    events = registry.contract.events.CvmRegistered().process_receipt(w3.eth.get_transaction_receipt(result.tx_hash))
    assert [(e["args"]["cvm"], e["args"]["goldenId"]) for e in events] == [(address, golden_svsm)]

    # The record is registerCvm's: refreshCvm takes the bound AK's next quote, and replaying it is refused.
    number, extra = fresh_nonce(w3, registry, address)
    quote = svsm.quote(extra)
    refreshed = as_relayer.refresh_cvm(address, number, svsm.ak.public, quote.attest, quote.signature)
    assert refreshed.gas_used <= REFRESH_GAS_TARGET
    assert registry.attestation_of(address).last_block == number
    error = rejected(lambda: as_relayer.refresh_cvm(address, number, svsm.ak.public, quote.attest, quote.signature))
    assert error.reason is Reason.REGISTRY_NONCE_REPLAYED

    # Revoking the svsm golden measurement ends the attestation, as for any other.
    registry.revoke_golden(golden_svsm)
    assert registry.attestation_status(address) is AttestationStatus.GOLDEN_REVOKED


def test_p256_ak_under_an_ecc_ek(
    w3: Web3, registry: RegistryClient, dev_chain: Any, p256_ak: SoftAk, activator: LocalAccount
) -> None:
    cvm = svsm_cvm(dev_chain, p256_ak, ek_public("p256"))
    golden_id = publish_once(registry, cvm.golden(pinned=(23,)))
    address = new_cvm()
    _register(w3, registry, cvm, golden_id, activator, address)
    assert registry.is_attested_for(address, golden_id)


# --- the SVSM report -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_golden(registry: RegistryClient, dev_chain: Any, rsa_ak: SoftAk) -> tuple[SvsmCvm, bytes]:
    """An svsm golden measurement nothing revokes (the positive test revokes its own)."""
    cvm = svsm_cvm(dev_chain, rsa_ak, ek_public("rsa"))
    return cvm, publish_once(registry, cvm.golden(pinned=(0, 4, 23)))


def test_report_from_another_vmpl_is_refused(
    w3: Web3, registry: RegistryClient, live_golden: tuple[SvsmCvm, bytes], activator: LocalAccount
) -> None:
    cvm, golden_id = live_golden
    guest = svsm_cvm(cvm.chain, cvm.ak, cvm.ek, vmpl=2)  # the guest OS asked, not the SVSM
    error = rejected(lambda: _register(w3, registry, guest, golden_id, activator, new_cvm(), report=guest.report))
    assert error.reason is Reason.POLICY_VMPL_MISMATCH and error.context["args"] == [2]


@pytest.mark.parametrize("what", ["other-nonce", "short-nonce", "other-manifest"])
def test_report_data_not_sha512_of_nonce_and_manifest_is_refused(
    w3: Web3, registry: RegistryClient, live_golden: tuple[SvsmCvm, bytes], activator: LocalAccount, what: str
) -> None:
    cvm, golden_id = live_golden
    changed: dict[str, Any] = {
        "other-nonce": {"svsm_nonce": bytes(64)},
        # The same 128 bytes split another way: the nonce must be exactly 64 bytes.
        "short-nonce": {"svsm_nonce": cvm.svsm_nonce[:63], "manifest": cvm.svsm_nonce[63:] + cvm.manifest},
        # Another EK the activator did activate, but not the one the SVSM reported.
        "other-manifest": {"manifest": ek_public("rsa").to_bytes()},
    }[what]
    # The activator vouches for the EK it activated, the vTPM's own: only the report binding is wrong.
    error = rejected(lambda: _register(
        w3, registry, cvm, golden_id, activator, new_cvm(), activated_ek=cvm.manifest, **changed
    ))
    assert error.reason is Reason.BINDING_REPORT_DATA_MISMATCH


# --- the activation statement ------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["ek", "ak"])
def test_statement_over_other_names_is_refused(
    w3: Web3, registry: RegistryClient, live_golden: tuple[SvsmCvm, bytes], activator: LocalAccount, what: str
) -> None:
    """The activator activated another EK (the manifest is not the activated EK) or another AK's name: the
    registry checks the statement over the evidence's own names, which recovers to another key."""
    cvm, golden_id = live_golden
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    evidence = cvm.evidence(cvm.quote(extra))
    expiry = _expiry(w3)
    ek, ak = evidence.manifest, evidence.ak_public
    if what == "ek":
        ek = ek_public("rsa").to_bytes()
    else:
        ak = SoftAk("rsa").public_bytes
    signature = activation_signature(registry, activator, ek, ak, expiry)
    error = rejected(lambda: registry.register_cvm_svsm(
        golden_id, address, number, evidence, expiry, signature, consent(registry, address, golden_id)
    ))
    assert error.reason is Reason.REGISTRY_ACTIVATOR_UNKNOWN
    # The registry named the signer of that signature over the evidence's names: not the activator.
    digest = svsm_activation_digest(
        int(w3.eth.chain_id), registry.address, tpm_name_digest(evidence.manifest), tpm_name_digest(evidence.ak_public),
        expiry,
    )
    recovered = Account._recover_hash(digest, signature=signature)
    assert _signer(error) == recovered != activator.address
    assert not registry.is_attested(address)
    # The twin: the same evidence with the activator's statement over its own names is accepted.
    register_cvm_svsm(registry, golden_id, address, number, evidence, activator, expiry)
    assert registry.is_attested_for(address, golden_id)


def test_quote_by_another_ak_than_the_activated_one_is_refused(
    w3: Web3, registry: RegistryClient, live_golden: tuple[SvsmCvm, bytes], activator: LocalAccount
) -> None:
    """A software AK (the guest's own) quoting, with the statement the activator made for the vTPM's AK."""
    cvm, golden_id = live_golden
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    software = SoftAk("rsa")
    evidence = cvm.evidence(software.quote(extra, cvm.pcrs), ak=software)
    error = rejected(lambda: register_cvm_svsm(
        registry, golden_id, address, number, evidence, activator, _expiry(w3), activated_ak=cvm.ak.public_bytes
    ))
    assert error.reason is Reason.REGISTRY_ACTIVATOR_UNKNOWN


@pytest.mark.parametrize("age", [0, 1, 3600], ids=["expires-now", "a-second-ago", "an-hour-ago"])
def test_expired_statement_is_refused(
    w3: Web3, registry: RegistryClient, live_golden: tuple[SvsmCvm, bytes], activator: LocalAccount, age: int
) -> None:
    cvm, golden_id = live_golden
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    evidence = cvm.evidence(cvm.quote(extra))
    # The next block's timestamp is at least the latest one's: an expiry at or before it has passed.
    expiry = int(w3.eth.get_block("latest")["timestamp"]) - age
    error = rejected(lambda: register_cvm_svsm(registry, golden_id, address, number, evidence, activator, expiry))
    assert error.reason is Reason.REGISTRY_ACTIVATION_EXPIRED and error.context["args"] == [expiry]


def test_activator_not_named_by_the_owner_is_refused(
    w3: Web3, registry: RegistryClient, as_relayer: RegistryClient, live_golden: tuple[SvsmCvm, bytes]
) -> None:
    cvm, golden_id = live_golden
    stranger: LocalAccount = Account.create()
    error = rejected(lambda: _register(w3, registry, cvm, golden_id, stranger, new_cvm()))
    assert error.reason is Reason.REGISTRY_ACTIVATOR_UNKNOWN and _signer(error) == stranger.address

    # Only the owner names activators, and unnaming one stops its statements from registering.
    error = rejected(lambda: as_relayer.set_activator(stranger.address, True))
    assert error.reason is Reason.REGISTRY_NOT_OWNER
    named = registry.set_activator(stranger.address, True)
    events = registry.contract.events.ActivatorSet().process_receipt(w3.eth.get_transaction_receipt(named.tx_hash))
    assert [(e["args"]["activator"], e["args"]["allowed"]) for e in events] == [(stranger.address, True)]
    attested = new_cvm()
    _register(w3, registry, cvm, golden_id, stranger, attested)
    registry.set_activator(stranger.address, False)
    assert not registry.is_activator(stranger.address)
    error = rejected(lambda: _register(w3, registry, cvm, golden_id, stranger, new_cvm()))
    assert error.reason is Reason.REGISTRY_ACTIVATOR_UNKNOWN
    # An attestation it vouched for earlier stands (docs/registry.md: revoke the golden measurement to end it).
    assert registry.is_attested(attested)
    error = rejected(lambda: registry.set_activator("0x" + "00" * 20, True))
    assert error.reason is Reason.INPUT_INVALID


# --- bindings: the svsm golden measurement takes only registerCvmSvsm, and registerCvmSvsm only it --------


def test_golden_with_another_binding_is_refused(
    w3: Web3, registry: RegistryClient, live_golden: tuple[SvsmCvm, bytes], activator: LocalAccount
) -> None:
    cvm, _ = live_golden
    direct = dataclasses.replace(cvm.golden(pinned=(0, 4, 23)), binding=Binding.DIRECT)
    golden_id = publish_once(registry, direct)
    error = rejected(lambda: _register(w3, registry, cvm, golden_id, activator, new_cvm()))
    assert error.reason is Reason.POLICY_BINDING_NOT_ALLOWED and error.context["args"] == [2]


@pytest.mark.parametrize("vmpl", [2, 0], ids=["guest-at-vmpl2", "direct-at-vmpl0"])
def test_direct_binding_is_refused_for_the_svsm_golden(
    w3: Web3, registry: RegistryClient, live_golden: tuple[SvsmCvm, bytes], vmpl: int
) -> None:
    """Today's `snp` platform on an SVSM guest: the guest OS binds an AK of its own choosing (here a software
    key) directly into a report with the SVSM's measurement. The svsm golden measurement refuses it: the
    guest's report is not from VMPL0, and even a VMPL0 report binding an AK directly is not the svsm binding."""
    cvm, golden_id = live_golden
    software = SoftAk("rsa")
    guest = sim_cvm(cvm.chain, software, measurement=cvm.report.measurement, vmpl=vmpl)
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    evidence = guest.evidence(guest.quote(extra))
    error = rejected(lambda: register_cvm(registry, golden_id, address, number, evidence))
    expected = (Reason.POLICY_VMPL_MISMATCH, [2]) if vmpl else (Reason.POLICY_BINDING_NOT_ALLOWED, [0])
    assert (error.reason, error.context["args"]) == expected
    # Nor does registerCvm take the svsm binding code itself.
    as_svsm = dataclasses.replace(evidence, binding=Binding.SVSM)
    error = rejected(lambda: register_cvm(registry, golden_id, address, number, as_svsm))
    assert error.reason is Reason.POLICY_BINDING_NOT_ALLOWED and error.context["args"] == [2]


def test_svsm_golden_needs_vmpl_0(registry: RegistryClient, live_golden: tuple[SvsmCvm, bytes]) -> None:
    cvm, _ = live_golden
    struct = list(golden_struct(cvm.golden()))
    struct[2] = 1  # vmpl
    error = rejected(lambda: registry.estimate_gas("publishGolden", tuple(struct)))
    assert error.reason is Reason.GOLDEN_MALFORMED and error.context["args"] == [3]
    struct[1] = 3  # a binding code past svsm
    error = rejected(lambda: registry.estimate_gas("publishGolden", tuple(struct)))
    assert error.reason is Reason.GOLDEN_MALFORMED and error.context["args"] == [2]
