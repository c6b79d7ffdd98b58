"""Policy validation, one row per rule of the golden measurement, on devamd-signed reports.

Each row changes one thing (the report or the golden document) and names the one violation it
must cause; rows marked ``None`` are the positive twins (a value at the limit, a rule that does not
apply). A last test breaks every rule at once: all violations are reported, none is lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from offchain.abi.snp_report import GuestPolicy, Product, SignerKind, SnpReport, TcbVersion
from offchain.abi.workload import WorkloadEvent, replay
from offchain.errors import PolicyError, Reason
from offchain.policy.check import check_policy, policy_violations
from offchain.policy.golden import Binding, GoldenMeasurement
from tests.support.evidence import EVENTS, MEASUREMENT, default_pcrs, dev_chain

BASE_POLICY = GuestPolicy(abi_major=1, abi_minor=55, smt=True).to_raw()


@dataclass
class Case:
    product: Product = Product.GENOA
    signer: SignerKind = SignerKind.VCEK
    report: dict[str, Any] = field(default_factory=dict)
    golden: dict[str, Any] = field(default_factory=dict)
    binding: Binding | None = Binding.DIRECT
    pcrs: dict[int, bytes] | None = field(default_factory=default_pcrs)
    events: tuple[WorkloadEvent, ...] | None = EVENTS
    allow_debug_golden: bool = False


def _report(case: Case) -> SnpReport:
    chain = dev_chain(case.product, case.signer)
    fields = {"measurement": MEASUREMENT, "policy": BASE_POLICY, **case.report}
    return chain.sign(chain.report_template(**fields))


def _golden(case: Case, report: SnpReport) -> GoldenMeasurement:
    pcrs = default_pcrs()
    # allow_debug: a row may sign a debug report; the rows set what the golden says about debug.
    base = GoldenMeasurement.from_report(
        report, case.product, case.signer, Binding.DIRECT, {0: pcrs[0], 23: pcrs[23]}, EVENTS, 86400, allow_debug=True
    )
    policy_changes = {k[len("policy.") :]: v for k, v in case.golden.items() if k.startswith("policy.")}
    tcb_changes = {k[len("min_tcb.") :]: v for k, v in case.golden.items() if k.startswith("min_tcb.")}
    other = {k: v for k, v in case.golden.items() if "." not in k}
    min_tcb = base.min_tcb
    if tcb_changes:
        min_tcb = TcbVersion(**{**{k: getattr(min_tcb, k) for k in ("bootloader", "tee", "snp", "microcode", "fmc")}, **tcb_changes})
    return dataclasses.replace(
        base, policy=dataclasses.replace(base.policy, **policy_changes), min_tcb=min_tcb, **other
    )


def _violations(case: Case) -> list[Reason]:
    report = _report(case)
    violations = policy_violations(
        _golden(case, report),
        report,
        product=case.product,
        signer=case.signer,
        binding=case.binding,
        pcrs=case.pcrs,
        pcr23_events=case.events,
        allow_debug_golden=case.allow_debug_golden,
    )
    return [v.reason for v in violations]


CHANGED_EVENTS = EVENTS[:2] + (WorkloadEvent("config", "config/app.toml", hashlib.sha256(b"port = 9090").digest()),)

ROWS: list[tuple[str, Callable[[], Case], Reason | None]] = [
    ("baseline", lambda: Case(), None),
    ("measurement", lambda: Case(golden={"measurement": b"\x01" * 48}), Reason.POLICY_MEASUREMENT_MISMATCH),
    ("debug", lambda: Case(golden={"policy.debug_allowed": False}, report={"policy": BASE_POLICY | 1 << 19}), Reason.POLICY_DEBUG_ALLOWED),
    ("golden-allows-debug", lambda: Case(golden={"policy.debug_allowed": True}), Reason.POLICY_GOLDEN_ALLOWS_DEBUG),
    ("golden-allows-debug-debug-guest", lambda: Case(golden={"policy.debug_allowed": True}, report={"policy": BASE_POLICY | 1 << 19}), Reason.POLICY_GOLDEN_ALLOWS_DEBUG),
    ("debug-golden-allowed-by-the-caller", lambda: Case(golden={"policy.debug_allowed": True}, report={"policy": BASE_POLICY | 1 << 19}, allow_debug_golden=True), None),
    ("debug-guest-despite-the-caller", lambda: Case(golden={"policy.debug_allowed": False}, report={"policy": BASE_POLICY | 1 << 19}, allow_debug_golden=True), Reason.POLICY_DEBUG_ALLOWED),
    ("migrate-ma", lambda: Case(report={"policy": BASE_POLICY | 1 << 18}, golden={"policy.migrate_ma_allowed": False}), Reason.POLICY_MIGRATE_MA_ALLOWED),
    ("smt", lambda: Case(golden={"policy.smt_allowed": False}), Reason.POLICY_SMT_NOT_ALLOWED),
    ("smt-off-in-report", lambda: Case(golden={"policy.smt_allowed": False}, report={"policy": BASE_POLICY & ~(1 << 16)}), None),
    ("min-abi-minor", lambda: Case(golden={"policy.min_abi_minor": 56}), Reason.POLICY_ABI_TOO_OLD),
    ("min-abi-major", lambda: Case(golden={"policy.min_abi_major": 2, "policy.min_abi_minor": 0}), Reason.POLICY_ABI_TOO_OLD),
    ("min-abi-is-a-version", lambda: Case(golden={"policy.min_abi_major": 0, "policy.min_abi_minor": 99}), None),
    ("vmpl", lambda: Case(report={"vmpl": 1}, golden={"vmpl": 0}), Reason.POLICY_VMPL_MISMATCH),
    ("min-tcb-bootloader", lambda: Case(golden={"min_tcb.bootloader": dev_chain().tcb.bootloader + 1}), Reason.POLICY_TCB_TOO_LOW),
    ("min-tcb-tee", lambda: Case(golden={"min_tcb.tee": dev_chain().tcb.tee + 1}), Reason.POLICY_TCB_TOO_LOW),
    ("min-tcb-snp", lambda: Case(golden={"min_tcb.snp": dev_chain().tcb.snp + 1}), Reason.POLICY_TCB_TOO_LOW),
    ("min-tcb-microcode", lambda: Case(golden={"min_tcb.microcode": dev_chain().tcb.microcode + 1}), Reason.POLICY_TCB_TOO_LOW),
    ("min-tcb-at-the-limit", lambda: Case(golden={"min_tcb.microcode": dev_chain().tcb.microcode}), None),
    ("min-tcb-fmc-turin", lambda: Case(product=Product.TURIN, golden={"min_tcb.fmc": 1}), Reason.POLICY_TCB_TOO_LOW),
    ("min-tcb-fmc-ignored-on-genoa", lambda: Case(golden={"min_tcb.fmc": 1}), None),
    ("products", lambda: Case(golden={"products": (Product.MILAN, Product.TURIN)}), Reason.POLICY_PRODUCT_NOT_ALLOWED),
    ("signers", lambda: Case(golden={"signers": (SignerKind.VLEK,)}), Reason.POLICY_SIGNER_NOT_ALLOWED),
    ("vlek-allowed", lambda: Case(signer=SignerKind.VLEK, golden={"signers": (SignerKind.VLEK,)}), None),
    ("binding", lambda: Case(binding=Binding.AZURE), Reason.POLICY_BINDING_NOT_ALLOWED),
    ("binding-not-evaluated", lambda: Case(binding=None), None),
    ("pcr-mismatch", lambda: Case(pcrs={**default_pcrs(), 0: b"\x01" * 32}), Reason.POLICY_PCR_MISMATCH),
    ("pcr-missing-from-quote", lambda: Case(pcrs={i: v for i, v in default_pcrs().items() if i != 0}), Reason.POLICY_PCR_MISSING),
    ("pcr-unpinned-may-differ", lambda: Case(pcrs={**default_pcrs(), 5: b"\x05" * 32}), None),
]


@pytest.mark.parametrize(("row", "make", "reason"), ROWS, ids=[r[0] for r in ROWS])
def test_policy_row(row: str, make: Callable[[], Case], reason: Reason | None) -> None:
    case = make()
    assert _violations(case) == ([] if reason is None else [reason])
    report = _report(case)
    kwargs = dict(product=case.product, signer=case.signer, binding=case.binding, pcrs=case.pcrs, pcr23_events=case.events,
                  allow_debug_golden=case.allow_debug_golden)
    if reason is None:
        check_policy(_golden(case, report), report, **kwargs)  # type: ignore[arg-type]
    else:
        with pytest.raises(PolicyError) as exc:
            check_policy(_golden(case, report), report, **kwargs)  # type: ignore[arg-type]
        assert exc.value.reason is reason and exc.value.reasons == [reason]


def test_a_changed_workload_item_is_named() -> None:
    case = Case(events=CHANGED_EVENTS, pcrs={**default_pcrs(), 23: replay(CHANGED_EVENTS)})
    report = _report(case)
    with pytest.raises(PolicyError) as exc:
        check_policy(_golden(case, report), report, product=case.product, signer=case.signer,
                     binding=case.binding, pcrs=case.pcrs, pcr23_events=case.events)
    assert exc.value.reasons == [Reason.POLICY_PCR_MISMATCH, Reason.POLICY_WORKLOAD_MISMATCH]
    workload = exc.value.violations[1]
    assert workload.field == "pcr23_events" and "config/app.toml" in str(workload.actual)


def test_no_quote_means_every_pinned_pcr_is_missing() -> None:
    # A golden made from a report requires a quote: a bare report proves no freshness.
    assert _violations(Case(pcrs=None, events=None)) == [
        Reason.POLICY_QUOTE_REQUIRED, Reason.POLICY_PCR_MISSING, Reason.POLICY_PCR_MISSING
    ]


def test_a_golden_that_does_not_require_a_quote_still_misses_its_pcrs() -> None:
    case = Case(pcrs=None, events=None)
    report = _report(case)
    golden = dataclasses.replace(_golden(case, report), require_quote=False)
    with pytest.raises(PolicyError) as exc:
        check_policy(golden, report, product=case.product, signer=case.signer, binding=None, pcrs=None)
    assert exc.value.reasons == [Reason.POLICY_PCR_MISSING, Reason.POLICY_PCR_MISSING]


def test_every_violation_is_reported_at_once() -> None:
    case = Case(
        product=Product.TURIN,
        report={"policy": GuestPolicy(abi_major=1, abi_minor=0, smt=True, debug=True, migrate_ma=True).to_raw(), "vmpl": 3},
        golden={
            "measurement": b"\x02" * 48,
            "policy.debug_allowed": False,
            "policy.migrate_ma_allowed": False,
            "policy.smt_allowed": False,
            "policy.min_abi_minor": 1,
            "min_tcb.bootloader": 200,
            "min_tcb.tee": 200,
            "min_tcb.snp": 200,
            "min_tcb.microcode": 200,
            "min_tcb.fmc": 200,
            "vmpl": 0,
            "products": (Product.MILAN,),
            "signers": (SignerKind.VLEK,),
        },
        binding=Binding.AZURE,
        pcrs={i: b"\xee" * 32 for i in (1, 23)},
        events=CHANGED_EVENTS,
    )
    report = _report(case)
    with pytest.raises(PolicyError) as exc:
        check_policy(_golden(case, report), report, product=case.product, signer=case.signer,
                     binding=case.binding, pcrs=case.pcrs, pcr23_events=case.events)
    assert exc.value.reason is Reason.POLICY_VIOLATIONS
    assert exc.value.reasons == [
        Reason.POLICY_MEASUREMENT_MISMATCH,
        Reason.POLICY_DEBUG_ALLOWED,
        Reason.POLICY_MIGRATE_MA_ALLOWED,
        Reason.POLICY_SMT_NOT_ALLOWED,
        Reason.POLICY_ABI_TOO_OLD,
        Reason.POLICY_VMPL_MISMATCH,
        *[Reason.POLICY_TCB_TOO_LOW] * 5,
        Reason.POLICY_PRODUCT_NOT_ALLOWED,
        Reason.POLICY_SIGNER_NOT_ALLOWED,
        Reason.POLICY_BINDING_NOT_ALLOWED,
        Reason.POLICY_PCR_MISSING,
        Reason.POLICY_PCR_MISMATCH,
        Reason.POLICY_WORKLOAD_MISMATCH,
    ]
    fields = [v.field for v in exc.value.violations]
    assert fields[6:11] == ["min_tcb.bootloader", "min_tcb.tee", "min_tcb.snp", "min_tcb.microcode", "min_tcb.fmc"]
    assert exc.value.to_dict()["context"]["violations"][0]["field"] == "measurement"
