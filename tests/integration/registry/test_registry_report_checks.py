"""The report checks of a version-2 golden measurement on a real anvil: ``publishGoldenWithChecks`` records them
under an id that covers them, and ``registerCvm``, ``registerCvmSvsm``, ``verifyEvidence`` and ``verifyReport`` refuse
a report that breaks one, with the reason the off-chain verifier gives for the same report."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.abi.snp_report import SnpReport
from offchain.devamd import DevAmdChain
from offchain.errors import ChainError, Reason
from offchain.policy.check import policy_violations
from offchain.policy.checks import FirmwareMinimum, ReportChecks
from offchain.policy.golden import Binding, GoldenMeasurement
from onchain.calldata import REPORT_CHECKS_ABI, golden_struct, report_checks_calldata
from onchain.client import RegistryClient
from tests.support.registry import (
    SimCvm,
    SoftAk,
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

HOST_DATA = hashlib.sha256(b"host data").digest()
ID_KEY = hashlib.sha384(b"id key").digest()
AUTHOR_KEY = hashlib.sha384(b"author key").digest()
FAMILY_ID = b"family-id-0001\x00\x00"
IMAGE_ID = b"image-id-000001\x00"
GUEST_SVN = 5


@pytest.fixture(scope="module")
def cvm(dev_chain: DevAmdChain, rsa_ak: SoftAk) -> SimCvm:
    """A CVM whose report sets every field a check reads (PLATFORM_INFO 0x25: SMT, ECC, alias check)."""
    return sim_cvm(
        dev_chain, rsa_ak, host_data=HOST_DATA, id_key_digest=ID_KEY, author_key_digest=AUTHOR_KEY,
        family_id=FAMILY_ID, image_id=IMAGE_ID, guest_svn=GUEST_SVN,
    )


def passing_checks(report: SnpReport) -> ReportChecks:
    """Every check, each met by ``report``."""
    return ReportChecks(
        report_data=report.report_data,
        host_data=HOST_DATA,
        id_key_digest=ID_KEY,
        author_key_digest=AUTHOR_KEY,
        family_id=FAMILY_ID,
        image_id=IMAGE_ID,
        min_guest_svn=GUEST_SVN,
        chip_ids=(b"\x11" * 64, report.chip_id),
        platform_info=(("smt_enabled", True), ("tsme_enabled", False), ("alias_check_complete", True)),
        min_firmware=FirmwareMinimum(report.current_major, report.current_minor, report.current_build),
    )


def with_checks(cvm: SimCvm, checks: ReportChecks, **golden_args: Any) -> GoldenMeasurement:
    return dataclasses.replace(cvm.golden(**golden_args), checks=checks)


def rejected(action: Any) -> ChainError:
    with pytest.raises(ChainError) as info:
        action()
    return info.value


def register(w3: Web3, registry: RegistryClient, cvm: SimCvm, golden_id: bytes, address: str) -> Any:
    number, extra = fresh_nonce(w3, registry, address)
    return register_cvm(registry, golden_id, address, number, cvm.evidence(cvm.quote(extra)))


# --- publishing and the id -------------------------------------------------------------------------------


def test_the_id_covers_the_checks_and_the_registry_keeps_them(registry: RegistryClient, cvm: SimCvm) -> None:
    checks = passing_checks(cvm.report)
    golden = with_checks(cvm, checks)
    plain = cvm.golden()
    assert golden.version == 2
    assert golden.canonical_id() != plain.canonical_id() == golden.rules_hash()
    assert registry.golden_id(golden) == golden.canonical_id()
    other = with_checks(cvm, dataclasses.replace(checks, min_guest_svn=GUEST_SVN - 1))
    assert registry.golden_id(other) == other.canonical_id() != golden.canonical_id()

    golden_id = publish_once(registry, golden)
    assert registry.golden_of(golden_id).published
    assert registry.report_checks_of(golden_id) == checks
    assert registry.report_checks_of(publish_once(registry, plain)) == ReportChecks()


def test_checks_that_accept_every_report_are_a_golden_without_checks(registry: RegistryClient, cvm: SimCvm) -> None:
    """GUEST_SVN >= 0 and firmware >= 0.0 build 0 cannot fail: such checks have the id of none, and the client
    publishes them with publishGolden."""
    golden = with_checks(cvm, ReportChecks(min_guest_svn=0, min_firmware=FirmwareMinimum(0, 0, 0)), lifetime=3601)
    assert golden.version == 2
    assert report_checks_calldata(golden) == b""
    golden_id = registry.publish_golden(golden)
    assert golden_id == golden.canonical_id() == golden.rules_hash()
    assert registry.report_checks_of(golden_id) == ReportChecks()


def _encoded(**override: Any) -> bytes:
    fields = dict(zip(
        ["report_data", "host_data", "id_key_digest", "author_key_digest", "family_id", "image_id", "min_guest_svn",
         "chip_ids", "platform_info_mask", "platform_info", "major", "minor", "build"],
        ReportChecks(min_guest_svn=1).onchain_fields(), strict=True,
    ))
    fields.update(override)
    return abi_encode([REPORT_CHECKS_ABI], [tuple(fields.values())])


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"min_guest_svn": 0}, 10),
        ({"report_data": b"\x01" * 63}, 11),
        ({"host_data": b"\x01" * 33}, 12),
        ({"id_key_digest": b"\x01" * 32}, 13),
        ({"author_key_digest": b"\x01" * 47}, 14),
        ({"family_id": b"\x01" * 32}, 15),
        ({"image_id": b"\x01"}, 16),
        ({"chip_ids": [b"\x01" * 64, b"\x02" * 8]}, 18),
        ({"platform_info_mask": 1, "platform_info": 3}, 19),
    ],
    ids=["checks-nothing", "report-data", "host-data", "id-key", "author-key", "family-id", "image-id", "chip-id",
         "platform-info-outside-mask"],
)
def test_malformed_checks_are_refused(registry: RegistryClient, cvm: SimCvm, override: dict[str, Any],
                                      field: int) -> None:
    golden = cvm.golden(lifetime=3602)
    checks = _encoded(**override)
    for action in (lambda: registry._call("goldenIdWithChecks", golden_struct(golden), checks),
                   lambda: registry._transact("publishGoldenWithChecks", golden_struct(golden), checks)):
        error = rejected(action)
        assert (error.reason, error.context["args"]) == (Reason.GOLDEN_MALFORMED, [field])
    assert not registry.golden_of(registry.golden_id(golden)).published


def test_only_the_owner_publishes_checks(as_relayer: RegistryClient, cvm: SimCvm) -> None:
    golden = with_checks(cvm, ReportChecks(min_guest_svn=1), lifetime=3603)
    assert rejected(lambda: as_relayer.publish_golden(golden)).reason is Reason.REGISTRY_NOT_OWNER


# --- registration ------------------------------------------------------------------------------------------


def test_a_report_that_passes_every_check_registers(
    w3: Web3, registry: RegistryClient, as_relayer: RegistryClient, cvm: SimCvm
) -> None:
    golden = with_checks(cvm, passing_checks(cvm.report))
    assert policy_violations(golden, cvm.report, product=cvm.chain.product, signer=cvm.chain.signer,
                             binding=Binding.DIRECT, pcrs=cvm.pcrs) == []
    golden_id = publish_once(registry, golden)
    address = new_cvm()
    register(w3, as_relayer, cvm, golden_id, address)
    assert registry.is_attested_for(address, golden_id)


#: One check broken at a time: the key, a value the report does not meet, and RegistryReportCheckFailed's number.
BROKEN = [
    ("report_data", b"\x07" * 64, 1),
    ("host_data", b"\x07" * 32, 2),
    ("id_key_digest", b"\x07" * 48, 3),
    ("author_key_digest", b"\x07" * 48, 4),
    ("family_id", b"\x07" * 16, 5),
    ("image_id", b"\x07" * 16, 6),
    ("min_guest_svn", GUEST_SVN + 1, 7),
    ("chip_ids", (b"\x07" * 64,), 8),
    ("platform_info", (("tsme_enabled", True),), 9),
    ("min_firmware", None, 10),
]


def _broken(report: SnpReport, key: str, value: Any) -> ReportChecks:
    if key == "min_firmware":
        value = FirmwareMinimum(report.current_major, report.current_minor, report.current_build + 1)
    return dataclasses.replace(passing_checks(report), **{key: value})


@pytest.mark.parametrize(("key", "value", "number"), BROKEN, ids=[key for key, _, _ in BROKEN])
def test_a_broken_check_is_refused_with_the_offchain_reason(
    w3: Web3, registry: RegistryClient, as_relayer: RegistryClient, cvm: SimCvm, key: str, value: Any, number: int
) -> None:
    golden = with_checks(cvm, _broken(cvm.report, key, value))
    (violation,) = policy_violations(golden, cvm.report, product=cvm.chain.product, signer=cvm.chain.signer,
                                     binding=Binding.DIRECT, pcrs=cvm.pcrs)
    assert violation.field.split(".")[:2] == ["checks", key]
    golden_id = publish_once(registry, golden)
    address = new_cvm()
    error = rejected(lambda: register(w3, as_relayer, cvm, golden_id, address))
    assert (error.reason, error.context["error"], error.context["args"]) == (
        violation.reason, "RegistryReportCheckFailed", [number]
    )
    assert not registry.is_attested(address)
    _, extra = fresh_nonce(w3, registry, address)
    evidence = cvm.evidence(cvm.quote(extra))
    view = rejected(lambda: registry.verify_evidence(golden_id, extra, evidence))
    assert view.reason is violation.reason


def test_the_bare_report_view_runs_the_checks(registry: RegistryClient, cvm: SimCvm) -> None:
    """verifyReport (no quote, no PCRs pinned): a nonce in REPORT_DATA checked, the way a bare report proves one."""
    raw = cvm.report.to_bytes()
    golden = with_checks(cvm, ReportChecks(report_data=cvm.report.report_data), pinned=())
    golden_id = publish_once(registry, golden)
    assert registry.verify_report(raw, cvm.leaf_id, golden_id).golden_id == golden_id
    other = with_checks(cvm, ReportChecks(report_data=bytes(64)), pinned=())
    error = rejected(lambda: registry.verify_report(raw, cvm.leaf_id, publish_once(registry, other)))
    assert error.reason is Reason.POLICY_REPORT_DATA_MISMATCH


def test_the_svsm_registration_runs_the_checks(
    w3: Web3, registry: RegistryClient, dev_chain: DevAmdChain, rsa_ak: SoftAk
) -> None:
    activator: LocalAccount = Account.create()
    registry.set_activator(activator.address, True)
    svsm = svsm_cvm(dev_chain, rsa_ak, ek_public("rsa"), guest_svn=GUEST_SVN)
    for svn, reason in ((GUEST_SVN, None), (GUEST_SVN + 1, Reason.POLICY_GUEST_SVN_TOO_LOW)):
        golden_id = publish_once(registry, dataclasses.replace(svsm.golden(), checks=ReportChecks(min_guest_svn=svn)))
        address = new_cvm()
        number, extra = fresh_nonce(w3, registry, address)
        evidence = svsm.evidence(svsm.quote(extra))
        expiry = int(w3.eth.get_block("latest")["timestamp"]) + 600

        def send(golden_id: bytes = golden_id, address: str = address, number: int = number,
                 evidence: Any = evidence, expiry: int = expiry) -> Any:
            return register_cvm_svsm(registry, golden_id, address, number, evidence, activator, expiry)

        if reason is None:
            send()
            assert registry.is_attested_for(address, golden_id)
        else:
            assert rejected(send).reason is reason
