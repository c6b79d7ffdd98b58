"""The PCR events of the image's boot path, and their replay into PCR values.

Event types are the TCG PC Client Platform Firmware Profile Specification's (10.4.1 "Event
Types"). Every event is an extend of the SHA-256 bank, ``pcr = SHA-256(pcr || digest)``, from 32
zero bytes: the one extend function of :mod:`offchain.abi.workload`, which PCR23 uses too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from offchain.abi.workload import PCR_SIZE, extend
from offchain.errors import ParseError, Reason

EV_SEPARATOR = 0x00000004
EV_EVENT_TAG = 0x00000006
EV_IPL = 0x0000000D
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
EV_EFI_ACTION = 0x80000007


@dataclass(frozen=True, slots=True)
class BootEvent:
    """One extend of one PCR: the digest extended, and what it stands for (for people and diffs)."""

    pcr: int
    event_type: int | None  # None: extended from userspace (systemd-pcrphase), not in the firmware's log
    digest: bytes
    description: str

    def __post_init__(self) -> None:
        if len(self.digest) != PCR_SIZE:
            raise ParseError(Reason.INPUT_INVALID, f"a SHA-256 event digest is 32 bytes, got {len(self.digest)}")


def replay_pcr(events: Iterable[BootEvent], pcr: int) -> bytes:
    """The value PCR ``pcr`` holds after every event of ``events`` that extends it, in order."""
    value = bytes(PCR_SIZE)
    for event in events:
        if event.pcr == pcr:
            value = extend(value, event.digest)
    return value
