"""The firmware's TCG event log (crypto-agile format), parsed and replayed.

Layout: TCG PC Client Platform Firmware Profile Specification (PFP) 1.05, section 10. The log
starts with one ``TCG_PCClientPCREvent`` in the SHA-1 format (PCR 0, ``EV_NO_ACTION``, a SHA-1
digest of zeros) whose event is the ``TCG_EfiSpecIDEvent`` (signature ``"Spec ID Event03"``) that
lists the digest algorithms and their sizes; every later entry is a ``TCG_PCR_EVENT2``::

    u32 pcrIndex, u32 eventType, u32 count, count x (u16 algorithmId, digest), u32 eventSize, event

all little-endian. Linux exposes it at ``/sys/kernel/security/tpm0/binary_bios_measurements``;
there, the entries the kernel's EFI stub logs (PCR9: load options, initrd) follow the firmware's.

:func:`replay` gives the SHA-256 bank: ``EV_NO_ACTION`` entries are not extended (PFP 10.4.5),
except that a ``StartupLocality`` event (PFP 10.4.5.3) sets PCR0's start value to its locality.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from offchain.abi.reader import Reader
from offchain.errors import ParseError, Reason

TPM_ALG_SHA1, TPM_ALG_SHA256, TPM_ALG_SHA384, TPM_ALG_SHA512 = 0x0004, 0x000B, 0x000C, 0x000D
SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\0"
EV_NO_ACTION = 0x00000003
#: A log larger than this is refused (OVMF's is a few KiB; a real server's, tens of KiB).
MAX_LOG_BYTES = 1 << 20
MAX_EVENT_BYTES = 1 << 18
PCR_COUNT = 24

#: PFP 10.4.1: the event types a replay report names.
EVENT_TYPES = {
    0x00000001: "EV_POST_CODE", 0x00000003: "EV_NO_ACTION", 0x00000004: "EV_SEPARATOR",
    0x00000005: "EV_ACTION", 0x00000006: "EV_EVENT_TAG", 0x00000007: "EV_S_CRTM_CONTENTS",
    0x00000008: "EV_S_CRTM_VERSION", 0x0000000A: "EV_NONHOST_CODE", 0x0000000D: "EV_IPL",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG", 0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION", 0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER", 0x80000006: "EV_EFI_GPT_EVENT", 0x80000007: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB", 0x80000009: "EV_EFI_HANDOFF_TABLES",
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2", 0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
}


@dataclass(frozen=True, slots=True)
class TcgEvent:
    """One ``TCG_PCR_EVENT2``: PCR, type, the digest per algorithm, and the event data."""

    pcr: int
    event_type: int
    digests: Mapping[int, bytes]
    data: bytes

    @property
    def type_name(self) -> str:
        return EVENT_TYPES.get(self.event_type, f"0x{self.event_type:08x}")

    def to_json(self) -> dict[str, Any]:
        sha256 = self.digests.get(TPM_ALG_SHA256)
        return {"pcr": self.pcr, "type": self.type_name, "sha256": None if sha256 is None else sha256.hex(),
                "data": self.data.hex()}


@dataclass(frozen=True, slots=True)
class TcgLog:
    """The parsed log: the digest sizes the Spec ID event declares, then the events."""

    digest_sizes: Mapping[int, int]
    events: tuple[TcgEvent, ...]


def _fail(detail: str, **context: object) -> ParseError:
    return ParseError(Reason.TCG_LOG_MALFORMED, f"firmware event log: {detail}", **context)


def _spec_id(data: bytes) -> dict[int, int]:
    """The TCG_EfiSpecIDEvent's algorithm list (PFP 10.4.5.1)."""
    r = Reader(data, Reason.TCG_LOG_MALFORMED, "Spec ID event")
    if r.take(16, "signature") != SPEC_ID_SIGNATURE:
        raise _fail("the first event is not the crypto-agile Spec ID event (a SHA-1-only log is not supported)")
    r.take(4 + 1 + 1 + 1 + 1, "platformClass and versions")
    count = r.u32le("numberOfAlgorithms")
    if not 1 <= count <= 16:
        raise _fail(f"the Spec ID event lists {count} algorithms")
    sizes: dict[int, int] = {}
    for _ in range(count):
        algorithm = int.from_bytes(r.take(2, "algorithmId"), "little")
        sizes[algorithm] = int.from_bytes(r.take(2, "digestSize"), "little")
    if sizes.get(TPM_ALG_SHA256) != 32:
        raise _fail("the log has no SHA-256 bank")
    return sizes


def parse_tcg_log(data: bytes) -> TcgLog:
    """Parse a crypto-agile TCG event log; anything else is ``tcg_log.malformed``."""
    if len(data) > MAX_LOG_BYTES:
        raise _fail(f"{len(data)} bytes, at most {MAX_LOG_BYTES}")
    r = Reader(data, Reason.TCG_LOG_MALFORMED, "firmware event log")
    pcr, event_type = r.u32le("pcrIndex"), r.u32le("eventType")
    r.take(20, "SHA-1 digest")
    size = r.u32le("eventSize")
    if (pcr, event_type) != (0, EV_NO_ACTION) or size > MAX_EVENT_BYTES:
        raise _fail("the first event is not the EV_NO_ACTION Spec ID event")
    sizes = _spec_id(r.take(size, "Spec ID event"))
    events: list[TcgEvent] = []
    while r.remaining:
        index = len(events) + 1
        pcr, event_type, count = r.u32le("pcrIndex"), r.u32le("eventType"), r.u32le("digest count")
        if pcr >= PCR_COUNT:
            raise _fail(f"event {index} is for PCR {pcr}", event=index)
        if count > len(sizes):
            raise _fail(f"event {index} carries {count} digests, the log declares {len(sizes)} banks", event=index)
        digests: dict[int, bytes] = {}
        for _ in range(count):
            algorithm = int.from_bytes(r.take(2, "algorithmId"), "little")
            if algorithm not in sizes:
                raise _fail(f"event {index} has a digest of algorithm 0x{algorithm:04x} the log does not declare",
                            event=index)
            digests[algorithm] = r.take(sizes[algorithm], "digest")
        size = r.u32le("eventSize")
        if size > MAX_EVENT_BYTES:
            raise _fail(f"event {index} is {size} bytes", event=index)
        events.append(TcgEvent(pcr, event_type, digests, r.take(size, "event")))
    return TcgLog(digest_sizes=sizes, events=tuple(events))


def replay(log: TcgLog, pcrs: Iterable[int] | None = None) -> dict[int, bytes]:
    """The SHA-256 bank's value of each PCR the log extends (or of ``pcrs``), from the reset values."""
    values: dict[int, bytes] = {}
    for event in log.events:
        if event.event_type == EV_NO_ACTION:
            if event.pcr == 0 and event.data.startswith(STARTUP_LOCALITY_SIGNATURE) and len(event.data) == 17:
                values[0] = bytes(31) + event.data[16:17]
            continue
        digest = event.digests.get(TPM_ALG_SHA256)
        if digest is None:
            raise _fail(f"an {event.type_name} event of PCR {event.pcr} has no SHA-256 digest", pcr=event.pcr)
        values[event.pcr] = hashlib.sha256(values.get(event.pcr, bytes(32)) + digest).digest()
    wanted = sorted(values) if pcrs is None else sorted(pcrs)
    return {i: values.get(i, bytes(32)) for i in wanted}
