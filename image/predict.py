"""The golden measurement's PCRs recomputed from a built disk, without booting it.

:func:`predict_disk` reads the disk back (:func:`image.disk.inspect_disk`: GPT, the UKI on the ESP,
the root verified against its dm-verity tree, the workload partition) and predicts what the boot
and the agent extend: PCR4, PCR9, PCR11 and PCR12 from the UKI (``image.uki``, systemd-stub 252 on
OVMF), PCR23 from the workload (``offchain.abi.workload``). :func:`compare` names every pinned PCR
of a golden measurement that differs from the prediction, and the workload items behind PCR23.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from offchain.abi.workload import WORKLOAD_PCR, diff_events
from offchain.errors import ParseError, Reason
from offchain.policy.golden import GoldenMeasurement

from image.disk import ESP_NAME, PARTITION_TYPES, DiskReport, inspect_disk
from image.esp import read_boot_loader
from image.golden import BUILD_PCRS
from image.uki import PLAIN_LAUNCH, FirmwareLaunch, predict_pcrs



@dataclass(frozen=True, slots=True)
class Prediction:
    """What booting the disk extends into :data:`BUILD_PCRS`, and the disk it was read from."""

    disk: DiskReport
    pcrs: dict[int, bytes]


@dataclass(frozen=True, slots=True)
class Difference:
    """One pinned PCR the prediction does not reproduce, with the workload items behind PCR23."""

    pcr: int
    golden: bytes
    predicted: bytes
    items: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"PCR{self.pcr}: golden.json pins {self.golden.hex()}, the disk gives {self.predicted.hex()}"
        return text + "".join(f"\n    {item}" for item in self.items)


def disk_of(path: Path) -> Path:
    """``path`` itself, or ``DIR/disk.raw`` for a build directory."""
    disk = path / "disk.raw" if path.is_dir() else path
    if not disk.is_file():
        raise ParseError(Reason.INPUT_UNREADABLE, f"{disk} is not a disk image (a build directory holds disk.raw)",
                         path=str(disk))
    return disk


def predict_disk(path: Path, launch: FirmwareLaunch = PLAIN_LAUNCH, phases: Sequence[str] = ()) -> Prediction:
    """The PCRs booting ``path`` (a ``disk.raw``) extends, read from the disk alone."""
    report = inspect_disk(path)
    ((_, esp),) = report.table.by_type(PARTITION_TYPES[ESP_NAME])  # inspect_disk found exactly one
    pcrs = predict_pcrs(read_boot_loader(path, esp.offset), launch, phases)
    pcrs[WORKLOAD_PCR] = report.workload_pcr23
    return Prediction(disk=report, pcrs={index: pcrs[index] for index in BUILD_PCRS})


def compare(golden: GoldenMeasurement, prediction: Prediction) -> list[Difference]:
    """Every PCR of :data:`BUILD_PCRS` that ``golden`` pins and the prediction does not reproduce."""
    pinned = golden.pinned_pcrs()
    out: list[Difference] = []
    for index in BUILD_PCRS:
        if index in pinned and pinned[index] != prediction.pcrs[index]:
            items: tuple[str, ...] = ()
            if index == WORKLOAD_PCR and golden.pcr23_events is not None:
                items = tuple(diff_events(list(golden.pcr23_events), list(prediction.disk.workload_events)))
            out.append(Difference(index, pinned[index], prediction.pcrs[index], items))
    return out
