"""Policy validation: does verified evidence match a golden measurement? Reports *every* violation.

Runs only on evidence whose signatures already verified (offchain.verify); it compares values and
decides nothing cryptographic. The rules, one :class:`~offchain.errors.Violation` each
(docs/formats.md, "Golden measurement"; AMD SEV-SNP ABI specification, "Guest Policy" and
"TCB_VERSION"):

* ``measurement``: the report's MEASUREMENT equals the golden value;
* ``policy.debug_allowed`` / ``policy.migrate_ma_allowed`` / ``policy.smt_allowed``: a POLICY bit
  the golden measurement does not allow (DEBUG bit 19, MIGRATE_MA bit 18, SMT bit 16);
* ``policy.debug_allowed`` of the golden measurement itself: a golden that allows debugging is
  refused (``policy.golden_allows_debug``) whatever the report says, because the host can read a
  debug guest's memory; only a caller that passes ``allow_debug_golden=True`` (development) may
  use one, and the registry never publishes one;
* ``policy.min_abi``: the POLICY's (ABI_MAJOR, ABI_MINOR) compared as a version, at least the minimum;
* ``vmpl``: equal to the golden VMPL;
* ``min_tcb.<field>``: each REPORTED_TCB component at least the minimum (``fmc`` on Turin only);
* ``products`` / ``signers`` / ``binding``: the verified product line, signing-key kind and AK
  binding mode are among those allowed;
* ``pcrs.<i>``: every pinned PCR was quoted and has the pinned value (a pinned PCR missing from the
  quote is a violation: fail closed);
* ``pcr23_events``: with an event log and golden events, each workload item that differs, by name;
* ``checks.<key>``: a version-2 golden's report checks (offchain.policy.checks: REPORT_DATA,
  HOST_DATA, ID and author key digests, FAMILY_ID, IMAGE_ID, minimum GUEST_SVN, the chip allow-list,
  PLATFORM_INFO bits, the minimum firmware version and build).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from offchain.abi.snp_report import Product, SignerKind, SnpReport, TcbVersion
from offchain.abi.workload import WorkloadEvent, diff_events
from offchain.errors import PolicyError, Reason, Violation
from offchain.policy.checks import report_check_violations
from offchain.policy.golden import Binding, GoldenMeasurement

_TCB_FIELDS = ("bootloader", "tee", "snp", "microcode")


def policy_violations(
    golden: GoldenMeasurement,
    report: SnpReport,
    *,
    product: Product,
    signer: SignerKind,
    binding: Binding | None,
    pcrs: Mapping[int, bytes] | None,
    pcr23_events: Sequence[WorkloadEvent] | None = None,
    allow_debug_golden: bool = False,
) -> list[Violation]:
    """Every rule of ``golden`` the evidence breaks, in document order (empty when it complies).

    ``binding=None`` means no AK was verified (a bare SNP report): the binding rule does not apply.
    ``pcrs=None`` means no quote was verified: every pinned PCR is then missing, and a golden that
    requires a quote (``require_quote``) is broken, since a bare report may be of any age.
    ``allow_debug_golden`` accepts a golden measurement that allows debug guests (development only).
    """
    out: list[Violation] = []
    if golden.require_quote and pcrs is None:
        out.append(Violation(Reason.POLICY_QUOTE_REQUIRED, "require_quote", True, False))
    if not hmac.compare_digest(report.measurement, golden.measurement):
        out.append(
            Violation(Reason.POLICY_MEASUREMENT_MISMATCH, "measurement", golden.measurement.hex(), report.measurement.hex())
        )
    guest = report.guest_policy
    rules = golden.policy
    if rules.debug_allowed and not allow_debug_golden:
        out.append(Violation(Reason.POLICY_GOLDEN_ALLOWS_DEBUG, "policy.debug_allowed", False, True))
    if guest.debug and not rules.debug_allowed:
        out.append(Violation(Reason.POLICY_DEBUG_ALLOWED, "policy.debug_allowed", False, True))
    if guest.migrate_ma and not rules.migrate_ma_allowed:
        out.append(Violation(Reason.POLICY_MIGRATE_MA_ALLOWED, "policy.migrate_ma_allowed", False, True))
    if guest.smt and not rules.smt_allowed:
        out.append(Violation(Reason.POLICY_SMT_NOT_ALLOWED, "policy.smt_allowed", False, True))
    if (guest.abi_major, guest.abi_minor) < (rules.min_abi_major, rules.min_abi_minor):
        out.append(
            Violation(
                Reason.POLICY_ABI_TOO_OLD,
                "policy.min_abi",
                f">= {rules.min_abi_major}.{rules.min_abi_minor}",
                f"{guest.abi_major}.{guest.abi_minor}",
            )
        )
    if report.vmpl != golden.vmpl:
        out.append(Violation(Reason.POLICY_VMPL_MISMATCH, "vmpl", golden.vmpl, report.vmpl))
    out.extend(_tcb_violations(golden.min_tcb, TcbVersion.from_raw(report.reported_tcb, product), product))
    if product not in golden.products:
        out.append(
            Violation(Reason.POLICY_PRODUCT_NOT_ALLOWED, "products", [p.value for p in golden.products], product.value)
        )
    if signer not in golden.signers:
        out.append(
            Violation(Reason.POLICY_SIGNER_NOT_ALLOWED, "signers", [s.value for s in golden.signers], signer.value)
        )
    if binding is not None and binding is not golden.binding:
        out.append(Violation(Reason.POLICY_BINDING_NOT_ALLOWED, "binding", golden.binding.value, binding.value))
    for index, value in golden.pcrs:
        quoted = None if pcrs is None else pcrs.get(index)
        if quoted is None:
            out.append(Violation(Reason.POLICY_PCR_MISSING, f"pcrs.{index}", value.hex(), None))
        elif not hmac.compare_digest(quoted, value):
            out.append(Violation(Reason.POLICY_PCR_MISMATCH, f"pcrs.{index}", value.hex(), quoted.hex()))
    if golden.pcr23_events is not None and pcr23_events is not None:
        for difference in diff_events(list(golden.pcr23_events), list(pcr23_events)):
            out.append(Violation(Reason.POLICY_WORKLOAD_MISMATCH, "pcr23_events", "the golden workload", difference))
    out.extend(report_check_violations(golden.checks, report))
    return out


def _tcb_violations(minimum: TcbVersion, reported: TcbVersion, product: Product) -> list[Violation]:
    fields = _TCB_FIELDS + (("fmc",) if product is Product.TURIN else ())
    return [
        Violation(Reason.POLICY_TCB_TOO_LOW, f"min_tcb.{name}", f">= {getattr(minimum, name)}", getattr(reported, name))
        for name in fields
        if getattr(reported, name) < getattr(minimum, name)
    ]


def check_policy(
    golden: GoldenMeasurement,
    report: SnpReport,
    *,
    product: Product,
    signer: SignerKind,
    binding: Binding | None,
    pcrs: Mapping[int, bytes] | None,
    pcr23_events: Sequence[WorkloadEvent] | None = None,
    allow_debug_golden: bool = False,
) -> None:
    """Raise :class:`~offchain.errors.PolicyError` carrying every violation, if there is any."""
    violations = policy_violations(
        golden,
        report,
        product=product,
        signer=signer,
        binding=binding,
        pcrs=pcrs,
        pcr23_events=pcr23_events,
        allow_debug_golden=allow_debug_golden,
    )
    if violations:
        raise PolicyError(violations)
