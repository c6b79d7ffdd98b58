"""registerCvm / refreshCvm / isAttested on a real anvil with a simulated CVM (development AMD chain,
software AK): the positive path, its negative twins, freshness, revocation, expiry and gas."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from web3 import Web3

from offchain.abi.binding import onchain_extra_data
from offchain.abi.snp_report import SnpReport
from offchain.errors import ChainError, Reason
from offchain.policy.golden import GoldenMeasurement
from onchain.client import RegistryClient, TxResult
from tests.support.evm import TX_GAS_CAP
from tests.support.registry import (
    SimCvm,
    SoftAk,
    advance_time,
    fresh_nonce,
    mine,
    new_cvm,
    publish_once,
    register_cvm,
    sim_cvm,
)

pytestmark = pytest.mark.integration

REGISTER_CVM_GAS_TARGET = 2_500_000
REFRESH_GAS_TARGET = 80_000


@pytest.fixture(scope="module")
def golden_rsa(registry: RegistryClient, cvm_rsa: SimCvm) -> bytes:
    return publish_once(registry, cvm_rsa.golden())


def register(
    w3: Web3, registry: RegistryClient, cvm: SimCvm, golden_id: bytes, address: str, **quote_args: Any
) -> TxResult:
    number, extra = fresh_nonce(w3, registry, address)
    quote = cvm.quote(extra, **quote_args)
    return register_cvm(registry, golden_id, address, number, cvm.evidence(quote))


def rejected(action: Callable[[], object]) -> ChainError:
    with pytest.raises(ChainError) as info:
        action()
    return info.value


# --- the positive path ----------------------------------------------------------------------------


def test_register_cvm_attests_the_address(
    w3: Web3, registry: RegistryClient, as_relayer: RegistryClient, cvm_rsa: SimCvm, golden_rsa: bytes
) -> None:
    address = new_cvm()
    assert not registry.is_attested(address)
    result = register(w3, as_relayer, cvm_rsa, golden_rsa, address)  # anyone relays
    assert result.gas_used <= REGISTER_CVM_GAS_TARGET < TX_GAS_CAP
    assert registry.is_attested(address) and registry.is_attested_for(address, golden_rsa)
    assert not registry.is_attested_for(address, b"\x01" * 32)
    record = registry.attestation_of(address)
    assert record.golden_id == golden_rsa
    assert record.ak_key_keccak == record.ak_hash == cvm_rsa.ak.key_hash
    assert record.report_hash == Web3.keccak(cvm_rsa.report.to_bytes())
    block = w3.eth.get_block(result.block_number)
    assert record.expiry == block["timestamp"] + 3600 and record.lifetime == 3600
    assert record.last_block == result.block_number - 1
    event = registry.contract.events.CvmRegistered().process_receipt(w3.eth.get_transaction_receipt(result.tx_hash))
    assert event[0]["args"]["cvm"] == address and event[0]["args"]["goldenId"] == golden_rsa


def test_register_with_p256_ak(w3: Web3, registry: RegistryClient, cvm_p256: SimCvm) -> None:
    golden_id = registry.publish_golden(cvm_p256.golden(pinned=(23,)))
    address = new_cvm()
    register(w3, registry, cvm_p256, golden_id, address)
    assert registry.is_attested_for(address, golden_id)


def test_verify_evidence_view_agrees(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, golden_rsa: bytes) -> None:
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    evidence = cvm_rsa.evidence(cvm_rsa.quote(extra))
    verdict = registry.verify_evidence(golden_rsa, extra, evidence)
    assert verdict.golden_id == golden_rsa and verdict.ak_key_keccak == cvm_rsa.ak.key_hash
    assert verdict.product == 2 and verdict.signer == 1
    assert not registry.is_attested(address)  # a view stores nothing
    assert registry.quote_extra_data(address, number) == extra
    error = rejected(lambda: registry.verify_evidence(golden_rsa, extra[:-1] + bytes([extra[-1] ^ 1]), evidence))
    assert error.reason is Reason.TPM_QUOTE_NONCE_MISMATCH


# --- freshness: the nonce binds chain, registry, address and a recent block -------------------------


def test_replayed_quote_is_refused(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, golden_rsa: bytes) -> None:
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    evidence = cvm_rsa.evidence(cvm_rsa.quote(extra))
    register_cvm(registry, golden_rsa, address, number, evidence)
    error = rejected(lambda: register_cvm(registry, golden_rsa, address, number, evidence))
    assert error.reason is Reason.REGISTRY_NONCE_REPLAYED


@pytest.mark.parametrize("what", ["chain", "registry", "address", "block"])
def test_quote_for_another_context_is_refused(
    w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, golden_rsa: bytes, what: str
) -> None:
    address = new_cvm()
    block = w3.eth.get_block("latest")
    number, block_hash = int(block["number"]), bytes(block["hash"])
    chain_id = int(w3.eth.chain_id)
    context = {"chain": chain_id, "registry": registry.address, "address": address, "block": block_hash}
    context[what] = {
        "chain": chain_id + 1,
        "registry": new_cvm(),
        "address": new_cvm(),
        "block": bytes(w3.eth.get_block(number - 1)["hash"]),
    }[what]
    extra = onchain_extra_data(context["chain"], context["registry"], context["address"], context["block"])
    evidence = cvm_rsa.evidence(cvm_rsa.quote(extra))
    error = rejected(lambda: register_cvm(registry, golden_rsa, address, number, evidence))
    assert error.reason is Reason.TPM_QUOTE_NONCE_MISMATCH
    good = onchain_extra_data(chain_id, registry.address, address, block_hash)
    register_cvm(registry, golden_rsa, address, number, cvm_rsa.evidence(cvm_rsa.quote(good)))
    assert registry.is_attested(address)


def test_stale_block_is_refused(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, golden_rsa: bytes) -> None:
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    evidence = cvm_rsa.evidence(cvm_rsa.quote(extra))
    mine(w3, 257)
    error = rejected(lambda: register_cvm(registry, golden_rsa, address, number, evidence))
    assert error.reason is Reason.REGISTRY_NONCE_STALE
    future = int(w3.eth.block_number) + 5
    error = rejected(lambda: register_cvm(registry, golden_rsa, address, future, evidence))
    assert error.reason is Reason.REGISTRY_NONCE_STALE


def test_zero_address_is_refused(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, golden_rsa: bytes) -> None:
    zero = "0x" + "00" * 20
    number, extra = fresh_nonce(w3, registry, zero)
    error = rejected(lambda: register_cvm(registry, golden_rsa, zero, number, cvm_rsa.evidence(cvm_rsa.quote(extra))))
    assert error.reason is Reason.INPUT_INVALID


# --- tampered evidence ------------------------------------------------------------------------------


def _flip(data: bytes, offset: int, mask: int = 1) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("report-measurement-bit", Reason.SNP_SIGNATURE_INVALID),
        ("report-signature-r", Reason.SNP_SIGNATURE_INVALID),
        ("report-truncated", Reason.SNP_REPORT_LENGTH),
        ("report-reserved-byte", Reason.SNP_REPORT_RESERVED),
        ("report-chip-id", Reason.SNP_HWID_MISMATCH),
        ("report-signing-key-vlek", Reason.SNP_SIGNER_MISMATCH),
        ("quote-signature", Reason.TPM_QUOTE_SIGNATURE_INVALID),
        ("quote-attest-clock", Reason.TPM_QUOTE_SIGNATURE_INVALID),
        ("pcr-value", Reason.TPM_QUOTE_PCR_DIGEST_MISMATCH),
        ("pcr-missing", Reason.TPM_QUOTE_PCR_SELECTION),
        ("ak-other-key", Reason.BINDING_REPORT_DATA_MISMATCH),
        ("leaf-unknown", Reason.REGISTRY_CERTIFICATE_UNKNOWN),
        ("binding-azure", Reason.BINDING_RUNTIME_DATA_MISMATCH),
    ],
)
def test_tampered_evidence_is_refused(
    w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, golden_rsa: bytes, tamper: str, reason: Reason
) -> None:
    address = new_cvm()
    number, extra = fresh_nonce(w3, registry, address)
    quote = cvm_rsa.quote(extra)
    evidence = cvm_rsa.evidence(quote)
    if tamper == "report-measurement-bit":
        evidence = dataclasses.replace(evidence, report=_flip(evidence.report, 0x90))
    elif tamper == "report-signature-r":
        evidence = dataclasses.replace(evidence, report=_flip(evidence.report, 0x2A0))
    elif tamper == "report-truncated":
        evidence = dataclasses.replace(evidence, report=evidence.report[:-1])
    elif tamper == "report-reserved-byte":
        evidence = dataclasses.replace(evidence, report=_flip(evidence.report, 0x4C))
    elif tamper == "report-chip-id":
        evidence = dataclasses.replace(evidence, report=_flip(evidence.report, 0x1A0))
    elif tamper == "report-signing-key-vlek":
        evidence = dataclasses.replace(evidence, report=_flip(evidence.report, 0x48, 1 << 2))
    elif tamper == "quote-signature":
        evidence = dataclasses.replace(evidence, signature=_flip(evidence.signature, len(evidence.signature) - 1))
    elif tamper == "quote-attest-clock":
        evidence = dataclasses.replace(evidence, attest=_flip(evidence.attest, 6 + 2 + 34 + 2 + 32 + 3))
    elif tamper == "pcr-value":
        evidence = dataclasses.replace(evidence, pcrs=(_flip(evidence.pcrs[0], 0),) + evidence.pcrs[1:])
    elif tamper == "pcr-missing":
        evidence = dataclasses.replace(evidence, pcrs=evidence.pcrs[:-1])
    elif tamper == "ak-other-key":
        other = SoftAk("rsa")
        evidence = cvm_rsa.evidence(other.quote(extra, cvm_rsa.pcrs))
        evidence = dataclasses.replace(evidence, ak_public=other.public_bytes)
    elif tamper == "leaf-unknown":
        evidence = dataclasses.replace(evidence, leaf=b"\x07" * 32)
    elif tamper == "binding-azure":
        evidence = dataclasses.replace(evidence, binding=type(evidence.binding)("azure"), runtime_data=b"{}")
    # The untampered evidence is accepted (the twin's positive half).
    registry.verify_evidence(golden_rsa, extra, cvm_rsa.evidence(quote))
    error = rejected(lambda: register_cvm(registry, golden_rsa, address, number, evidence))
    assert error.reason is reason
    assert not registry.is_attested(address)


# --- the golden policy --------------------------------------------------------------------------------


def _policy_case(
    w3: Web3, registry: RegistryClient, cvm: SimCvm, golden: GoldenMeasurement
) -> ChainError:
    golden_id = registry.publish_golden(golden)
    address = new_cvm()
    return rejected(lambda: register(w3, registry, cvm, golden_id, address))


def test_debug_policy_is_refused(w3: Web3, registry: RegistryClient, dev_chain: Any, rsa_ak: SoftAk) -> None:
    debug_cvm = sim_cvm(dev_chain, rsa_ak, policy=0x30000 | 1 << 19)
    described = debug_cvm.golden(pinned=(0, 12, 23), allow_debug=True)
    assert described.policy.debug_allowed  # what the CVM is; the registry refuses to publish that
    golden = dataclasses.replace(described, policy=dataclasses.replace(described.policy, debug_allowed=False))
    assert _policy_case(w3, registry, debug_cvm, golden).reason is Reason.POLICY_DEBUG_ALLOWED


def test_wrong_vmpl_is_refused(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden = dataclasses.replace(cvm_rsa.golden(), vmpl=1)
    assert _policy_case(w3, registry, cvm_rsa, golden).reason is Reason.POLICY_VMPL_MISMATCH


def test_tcb_below_minimum_is_refused(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden = cvm_rsa.golden()
    higher = dataclasses.replace(golden.min_tcb, snp=golden.min_tcb.snp + 1)
    error = _policy_case(w3, registry, cvm_rsa, dataclasses.replace(golden, min_tcb=higher))
    assert error.reason is Reason.POLICY_TCB_TOO_LOW


def test_other_measurement_is_refused(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden = dataclasses.replace(cvm_rsa.golden(), measurement=hashlib.sha384(b"another image").digest())
    assert _policy_case(w3, registry, cvm_rsa, golden).reason is Reason.POLICY_MEASUREMENT_MISMATCH


def test_pinned_pcr_mismatch_is_refused(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden = dataclasses.replace(cvm_rsa.golden(), pcrs=((23, b"\x00" * 32),))
    assert _policy_case(w3, registry, cvm_rsa, golden).reason is Reason.POLICY_PCR_MISMATCH


def test_pinned_pcr_not_quoted_is_refused(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden_id = registry.publish_golden(cvm_rsa.golden(pinned=(0, 11, 23)))
    address = new_cvm()
    only_23 = {23: cvm_rsa.pcrs[23]}
    error = rejected(lambda: register(w3, registry, cvm_rsa, golden_id, address, pcrs=only_23))
    assert error.reason is Reason.POLICY_PCR_MISSING


def test_unknown_and_revoked_golden(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    address = new_cvm()
    assert rejected(lambda: register(w3, registry, cvm_rsa, b"\x05" * 32, address)).reason is (
        Reason.REGISTRY_GOLDEN_NOT_FOUND
    )
    golden_id = registry.publish_golden(cvm_rsa.golden(pinned=(0, 1, 23)))
    registry.revoke_golden(golden_id)
    assert rejected(lambda: register(w3, registry, cvm_rsa, golden_id, address)).reason is (
        Reason.REGISTRY_GOLDEN_REVOKED
    )


# --- lifetime, revocation, refresh --------------------------------------------------------------------


def test_is_attested_turns_false_on_revocation(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden_id = registry.publish_golden(cvm_rsa.golden(pinned=(0, 2, 23)))
    address = new_cvm()
    register(w3, registry, cvm_rsa, golden_id, address)
    assert registry.is_attested(address)
    registry.revoke_golden(golden_id)
    assert not registry.is_attested(address) and not registry.is_attested_for(address, golden_id)


def test_is_attested_turns_false_on_expiry(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden_id = registry.publish_golden(cvm_rsa.golden(pinned=(0, 3, 23), lifetime=600))
    address = new_cvm()
    register(w3, registry, cvm_rsa, golden_id, address)
    assert registry.is_attested(address)
    advance_time(w3, 601)
    assert not registry.is_attested(address)


def _refresh(w3: Web3, registry: RegistryClient, cvm: SimCvm, address: str, **quote_args: Any) -> TxResult:
    number, extra = fresh_nonce(w3, registry, address)
    quote = cvm.quote(extra, **quote_args)
    ak = quote_args.get("ak") or cvm.ak
    return registry.refresh_cvm(address, number, ak.public, quote.attest, quote.signature)


@pytest.mark.parametrize("kind", ["rsa", "p256"])
def test_refresh_extends_and_is_cheap(
    w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm, cvm_p256: SimCvm, kind: str
) -> None:
    cvm = cvm_rsa if kind == "rsa" else cvm_p256
    golden_id = registry.publish_golden(cvm.golden(pinned=(0, 4 if kind == "rsa" else 13, 23), lifetime=900))
    address = new_cvm()
    register(w3, registry, cvm, golden_id, address)
    first = registry.attestation_of(address)
    advance_time(w3, 600)
    result = _refresh(w3, registry, cvm, address)
    assert result.gas_used <= REFRESH_GAS_TARGET, result.gas_used
    second = registry.attestation_of(address)
    assert second.expiry > first.expiry and second.last_block > first.last_block
    advance_time(w3, 600)  # past the first expiry, within the refreshed one
    assert registry.is_attested(address)


def test_refresh_negative_twins(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden_id = registry.publish_golden(cvm_rsa.golden(pinned=(0, 5, 23), lifetime=900))
    address = new_cvm()
    never = new_cvm()

    def refresh(**kwargs: Any) -> ChainError:
        return rejected(lambda: _refresh(w3, registry, cvm_rsa, address, **kwargs))

    assert rejected(lambda: _refresh(w3, registry, cvm_rsa, never)).reason is Reason.REGISTRY_CVM_NOT_REGISTERED
    register(w3, registry, cvm_rsa, golden_id, address)
    # Another AK, even with the same PCRs.
    assert refresh(ak=SoftAk("rsa")).reason is Reason.BINDING_AK_MISMATCH
    # The PCRs moved since registration.
    moved = dict(cvm_rsa.pcrs) | {10: hashlib.sha256(b"extended").digest()}
    assert refresh(pcrs=moved).reason is Reason.REGISTRY_PCRS_CHANGED

    def send(number: int, attest: bytes, signature: bytes) -> object:
        return registry.refresh_cvm(address, number, cvm_rsa.ak.public, attest, signature)

    # A quote for another address.
    number, _ = fresh_nonce(w3, registry, address)
    _, other_extra = fresh_nonce(w3, registry, never)
    quote = cvm_rsa.quote(other_extra)
    assert rejected(lambda: send(number, quote.attest, quote.signature)).reason is Reason.TPM_QUOTE_NONCE_MISMATCH
    # A good refresh, then its replay.
    number, extra = fresh_nonce(w3, registry, address)
    quote = cvm_rsa.quote(extra)
    send(number, quote.attest, quote.signature)
    assert rejected(lambda: send(number, quote.attest, quote.signature)).reason is Reason.REGISTRY_NONCE_REPLAYED
    # A bad signature.
    number, extra = fresh_nonce(w3, registry, address)
    quote = cvm_rsa.quote(extra)
    bad = _flip(quote.signature, 10)
    assert rejected(lambda: send(number, quote.attest, bad)).reason is Reason.TPM_QUOTE_SIGNATURE_INVALID
    # A stale block.
    number, extra = fresh_nonce(w3, registry, address)
    quote = cvm_rsa.quote(extra)
    mine(w3, 257)
    assert rejected(lambda: send(number, quote.attest, quote.signature)).reason is Reason.REGISTRY_NONCE_STALE


def test_refresh_after_revocation_does_not_attest(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden_id = registry.publish_golden(cvm_rsa.golden(pinned=(0, 15, 23), lifetime=900))
    address = new_cvm()
    register(w3, registry, cvm_rsa, golden_id, address)
    registry.revoke_golden(golden_id)
    assert not registry.is_attested(address)
    _refresh(w3, registry, cvm_rsa, address)  # refresh does not read the golden record (gas) ...
    assert not registry.is_attested(address)  # ... and cannot bring a revoked measurement back


def test_refresh_after_expiry_needs_full_registration(w3: Web3, registry: RegistryClient, cvm_rsa: SimCvm) -> None:
    golden_id = registry.publish_golden(cvm_rsa.golden(pinned=(0, 6, 23), lifetime=300))
    address = new_cvm()
    register(w3, registry, cvm_rsa, golden_id, address)
    _refresh(w3, registry, cvm_rsa, address)
    advance_time(w3, 301)
    assert rejected(lambda: _refresh(w3, registry, cvm_rsa, address)).reason is Reason.REGISTRY_ATTESTATION_EXPIRED
    register(w3, registry, cvm_rsa, golden_id, address)
    assert registry.is_attested(address)


def test_report_of_another_snp_report_version_parses(
    w3: Web3, registry: RegistryClient, dev_chain: Any, rsa_ak: SoftAk
) -> None:
    v3 = sim_cvm(dev_chain, rsa_ak, version=3, launch_mit_vector=0, current_mit_vector=0)
    assert SnpReport.from_bytes(v3.report.to_bytes()).version == 3
    golden_id = registry.publish_golden(v3.golden(pinned=(0, 7, 23)))
    address = new_cvm()
    register(w3, registry, v3, golden_id, address)
    assert registry.is_attested(address)
