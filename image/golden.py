"""The golden measurement a build predicts, and merging in what only a reference VM can tell.

A build determines PCRs 4, 9, 11, 12 (the UKI, ``image.uki``) and 23 (the workload); it cannot
determine the launch MEASUREMENT on a cloud (on Azure it is the paravisor's, which Microsoft
builds; on GCP and AWS the firmware's, which the provider builds), the TCB the platform reports,
or PCRs 0-3 and 5-7 (firmware code and configuration, option ROMs, the boot manager's variables,
Secure Boot state). So:

* ``--platform sim``: the simulated platform's firmware is ours, and what it reports is known
  (``offchain.devamd``'s sim constants): :func:`sim_golden` is a complete golden measurement;
* with a ``base`` golden measurement (read from a reference CVM of the same size and platform, e.g.
  the agent's ``GET /golden-measurement``), :func:`with_build_pcrs` keeps the base's measurement,
  rules and firmware PCRs and puts in the build's PCRs and PCR23 events;
* otherwise the build writes no ``golden.json`` (there is no honest value for the measurement) and
  ``cvm-cli image pin DIR --from REFERENCE.json`` merges one in later, after checking that the
  reference booted this very image (its PCRs 4, 9, 11, 12 and 23, where pinned, equal the prediction).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from offchain.abi.snp_report import SignerKind
from offchain.abi.workload import WORKLOAD_PCR, WorkloadEvent, replay
from offchain.devamd import DEFAULT_SIM_MEASUREMENT, DEFAULT_TCB, SIM_POLICY, SIM_PRODUCT, SIM_VMPL
from offchain.errors import Reason, VerificationError
from offchain.policy.golden import Binding, GoldenMeasurement, PolicyRules

#: The PCRs a build determines (docs/image.md, "What the boot measures").
BUILD_PCRS = (4, 9, 11, 12, WORKLOAD_PCR)
#: The PCRs only a reference VM can tell: firmware, its configuration, the boot manager, Secure Boot.
FIRMWARE_PCRS = (0, 1, 2, 3, 5, 6, 7)
DEFAULT_LIFETIME_S = 86400
_SMT_BIT = 1 << 16


def _check_build_pcrs(pcrs: Mapping[int, bytes], events: Sequence[WorkloadEvent]) -> None:
    if sorted(pcrs) != sorted(BUILD_PCRS):
        raise ValueError(f"a build predicts PCRs {BUILD_PCRS}, got {sorted(pcrs)}")
    if replay(events) != pcrs[WORKLOAD_PCR]:
        raise ValueError("the PCR23 events do not replay to the predicted PCR23")


def sim_golden(pcrs: Mapping[int, bytes], events: Sequence[WorkloadEvent], *, name: str | None) -> GoldenMeasurement:
    """What the agent of a ``--platform sim`` image will report, and the build's PCRs: the sim's
    measurement, guest policy (debug and migration forbidden, SMT allowed), VMPL, Genoa TCB,
    VCEK, direct binding, a quote required."""
    _check_build_pcrs(pcrs, events)
    return GoldenMeasurement(
        measurement=DEFAULT_SIM_MEASUREMENT,
        policy=PolicyRules(debug_allowed=False, migrate_ma_allowed=False, smt_allowed=bool(SIM_POLICY & _SMT_BIT),
                           min_abi_major=0, min_abi_minor=0),
        min_tcb=DEFAULT_TCB[SIM_PRODUCT],
        vmpl=SIM_VMPL,
        products=(SIM_PRODUCT,),
        signers=(SignerKind.VCEK,),
        binding=Binding.DIRECT,
        lifetime_seconds=DEFAULT_LIFETIME_S,
        pcrs=tuple(sorted(pcrs.items())),
        pcr23_events=tuple(events),
        name=name,
        require_quote=True,
    )


def with_build_pcrs(
    base: GoldenMeasurement, pcrs: Mapping[int, bytes], events: Sequence[WorkloadEvent], *, name: str | None
) -> GoldenMeasurement:
    """``base`` with the build's PCRs (4, 9, 11, 12, 23) and PCR23 events in place of its own; its
    measurement, rules, TCB and the PCRs a build cannot determine stay as they are."""
    _check_build_pcrs(pcrs, events)
    merged = {**base.pinned_pcrs(), **pcrs}
    return replace(base, pcrs=tuple(sorted(merged.items())), pcr23_events=tuple(events),
                   name=base.name if name is None else name)


def pin_from_reference(predicted_pcrs: Mapping[int, bytes], events: Sequence[WorkloadEvent],
                       reference: GoldenMeasurement, *, name: str | None) -> GoldenMeasurement:
    """The golden measurement of a build whose launch measurement and firmware PCRs come from
    ``reference`` (read from a VM that booted this image). Every build PCR the reference pins must
    equal the prediction (``image.prediction_mismatch`` naming them): a reference that booted another
    image, or another command line, must not lend its firmware PCRs to this one."""
    pinned = reference.pinned_pcrs()
    differing = [i for i in BUILD_PCRS if i in pinned and pinned[i] != predicted_pcrs[i]]
    if differing:
        lines = [f"PCR{i}: the reference pins {pinned[i].hex()}, the build predicts {predicted_pcrs[i].hex()}"
                 for i in differing]
        raise VerificationError(Reason.IMAGE_PREDICTION_MISMATCH,
                                "the reference did not boot this image:\n  " + "\n  ".join(lines), pcrs=differing)
    return with_build_pcrs(reference, predicted_pcrs, events, name=name)
