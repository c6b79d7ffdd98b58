"""Workload measurement into PCR23 and its event log (PROTOCOL.md, "Workload measured into PCR23").

One function, :func:`event_digest`, defines what is extended for each item; the agent, the
image's boot step and the golden predictor all call it, and the verifier replays the log with
:func:`replay`.

Order of measurement (:func:`measure_directory` yields it): every container image by its digest
(sorted by name), then ``docker-compose.yml``, then every regular file under ``config/`` sorted by
its path relative to the workload root. ``secrets/`` is never measured.

Event digest (all integers big-endian)::

    SHA-256( "cvm-attest/workload/v1" || u8(len(kind)) || kind
             || u16(len(name)) || name(UTF-8) || content_digest(32) )

``content_digest`` is the image's ``sha256:`` digest for an image and SHA-256 of the file's bytes
otherwise. PCR23 starts at 32 zero bytes and each event extends it: ``pcr = SHA-256(pcr || digest)``,
exactly as TPM2_PCR_Extend does for the SHA-256 bank.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from offchain.abi.jsontext import loads_bounded
from offchain.errors import ParseError, Reason, VerificationError

WORKLOAD_PCR = 23
EVENT_DOMAIN = b"cvm-attest/workload/v1"
KINDS = ("image", "compose", "config")
COMPOSE_FILE = "docker-compose.yml"
CONFIG_DIR = "config"
SECRETS_DIR = "secrets"
IMAGES_FILE = "images.txt"
#: Image tarballs an update archive may carry (``images/NAME.tar``); never measured as files.
IMAGES_DIR = "images"
PCR_SIZE = 32


def event_digest(kind: str, name: str, content_digest: bytes) -> bytes:
    """The 32 bytes extended into PCR23 for one workload item."""
    if kind not in KINDS:
        raise ParseError(Reason.EVENT_LOG_MALFORMED, f"unknown event kind {kind!r}")
    try:
        name_bytes = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError(Reason.EVENT_LOG_MALFORMED, "event name is not valid Unicode text") from None
    if len(name_bytes) > 0xFFFF:
        raise ParseError(Reason.EVENT_LOG_MALFORMED, "event name longer than 65535 bytes")
    if len(content_digest) != 32:
        raise ParseError(Reason.EVENT_LOG_MALFORMED, "content digest must be 32 bytes")
    kind_bytes = kind.encode("ascii")
    return hashlib.sha256(
        EVENT_DOMAIN
        + len(kind_bytes).to_bytes(1, "big")
        + kind_bytes
        + len(name_bytes).to_bytes(2, "big")
        + name_bytes
        + content_digest
    ).digest()


def extend(pcr: bytes, digest: bytes) -> bytes:
    """TPM2_PCR_Extend on the SHA-256 bank."""
    return hashlib.sha256(pcr + digest).digest()


@dataclass(frozen=True, slots=True)
class WorkloadEvent:
    """One extend of PCR23: what was measured and the digest that was extended."""

    kind: str
    name: str
    content_digest: bytes

    def __post_init__(self) -> None:
        event_digest(self.kind, self.name, self.content_digest)  # every event is well formed from birth

    @property
    def digest(self) -> bytes:
        return event_digest(self.kind, self.name, self.content_digest)

    def to_json(self) -> dict[str, Any]:
        return {
            "pcr": WORKLOAD_PCR,
            "kind": self.kind,
            "name": self.name,
            "content_digest": self.content_digest.hex(),
            "event_digest": self.digest.hex(),
        }

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        """Parse one event-log entry; ``event_digest``, when present, must match the recomputed one."""
        if not isinstance(obj, dict):
            raise ParseError(Reason.EVENT_LOG_MALFORMED, "an event is a JSON object")
        try:
            kind, name, content_hex = obj["kind"], obj["name"], obj["content_digest"]
            if not (isinstance(kind, str) and isinstance(name, str) and isinstance(content_hex, str)):
                raise TypeError
            content = bytes.fromhex(content_hex)
        except (KeyError, TypeError, ValueError):
            raise ParseError(Reason.EVENT_LOG_MALFORMED, "event needs kind, name and hex content_digest") from None
        if obj.get("pcr", WORKLOAD_PCR) != WORKLOAD_PCR:
            raise ParseError(Reason.EVENT_LOG_MALFORMED, "workload events extend PCR23 only")
        event = cls(kind, name, content)
        claimed = obj.get("event_digest")
        if claimed is not None and (
            not isinstance(claimed, str) or claimed.lower() != event.digest.hex()
        ):
            raise ParseError(Reason.EVENT_LOG_MALFORMED, f"event_digest of {name!r} does not match its content")
        return event


def replay(events: Iterable[WorkloadEvent], start: bytes = bytes(PCR_SIZE)) -> bytes:
    """PCR23 after extending every event in order, from ``start`` (all zero after reset)."""
    pcr = start
    for event in events:
        pcr = extend(pcr, event.digest)
    return pcr


def parse_event_log(text: str) -> list[WorkloadEvent]:
    """Parse a JSON-lines event log (blank lines ignored)."""
    events = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = loads_bounded(line, Reason.EVENT_LOG_MALFORMED)
        except ParseError:
            raise ParseError(Reason.EVENT_LOG_MALFORMED, f"line {lineno} is not JSON (or nests too deeply)") from None
        events.append(WorkloadEvent.from_json(obj))
    return events


def dump_event_log(events: Iterable[WorkloadEvent]) -> str:
    return "".join(json.dumps(e.to_json(), sort_keys=True) + "\n" for e in events)


def check_replay(events: list[WorkloadEvent], pcr23: bytes, expected: list[WorkloadEvent] | None = None) -> None:
    """The log must replay to the quoted PCR23; with ``expected``, name the first item that differs."""
    if not hmac.compare_digest(replay(events), pcr23):
        raise VerificationError(
            Reason.EVENT_LOG_REPLAY_MISMATCH,
            "the workload event log does not replay to the quoted PCR23",
            pcr23=pcr23.hex(),
            replayed=replay(events).hex(),
        )
    if expected is not None:
        differences = diff_events(expected, events)
        if differences:
            raise VerificationError(
                Reason.EVENT_LOG_REPLAY_MISMATCH, "; ".join(differences), differences=differences
            )


def diff_events(expected: list[WorkloadEvent], actual: list[WorkloadEvent]) -> list[str]:
    """Human-readable list of the items that differ between two workload measurements."""
    exp = {(e.kind, e.name): e for e in expected}
    act = {(e.kind, e.name): e for e in actual}
    out = []
    for key, event in exp.items():
        if key not in act:
            out.append(f"{key[0]} {key[1]!r} missing")
        elif act[key].content_digest != event.content_digest:
            out.append(
                f"{key[0]} {key[1]!r} changed: expected {event.content_digest.hex()[:16]}…, "
                f"got {act[key].content_digest.hex()[:16]}…"
            )
    out.extend(f"{key[0]} {key[1]!r} added" for key in act if key not in exp)
    if not out and [(e.kind, e.name) for e in expected] != [(e.kind, e.name) for e in actual]:
        out.append("same items measured in a different order")
    return out


def _parse_image_digest(line: str, lineno: int) -> tuple[str, bytes]:
    # "<name> sha256:<64 hex>" or "<name>@sha256:<64 hex>"
    ref = line.replace("@sha256:", " sha256:", 1)
    parts = ref.split()
    if len(parts) != 2 or not parts[1].startswith("sha256:"):
        raise ParseError(Reason.EVENT_LOG_MALFORMED, f"{IMAGES_FILE} line {lineno}: expected 'NAME sha256:HEX'")
    try:
        digest = bytes.fromhex(parts[1][len("sha256:"):])
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise ParseError(Reason.EVENT_LOG_MALFORMED, f"{IMAGES_FILE} line {lineno}: bad sha256 digest")
    return parts[0], digest


def image_events(images: Iterable[tuple[str, bytes]]) -> list[WorkloadEvent]:
    """Events for container images given as ``(name, sha256 digest)``, sorted by name."""
    return [WorkloadEvent("image", name, digest) for name, digest in sorted(images)]


def measure_directory(root: Path) -> list[WorkloadEvent]:
    """The workload events of a workload directory, in measurement order.

    Images are listed in ``images.txt`` (one ``NAME sha256:HEX`` or ``NAME@sha256:HEX`` per line),
    which the agent writes from the container runtime or an uploaded image tarball's manifest.
    Symbolic links are refused anywhere under ``config/``: a link could point outside the workload.
    """
    events: list[WorkloadEvent] = []
    images_file = root / IMAGES_FILE
    if images_file.is_file():
        images = []
        for lineno, line in enumerate(images_file.read_text().splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                images.append(_parse_image_digest(line.strip(), lineno))
        events.extend(image_events(images))
    compose = root / COMPOSE_FILE
    if compose.is_file():
        events.append(WorkloadEvent("compose", COMPOSE_FILE, hashlib.sha256(compose.read_bytes()).digest()))
    events.extend(_config_events(root))
    return events


def _config_events(root: Path) -> Iterator[WorkloadEvent]:
    config = root / CONFIG_DIR
    if not config.is_dir():
        return
    files = []
    for path in config.rglob("*"):
        if path.is_symlink():
            raise ParseError(Reason.WORKLOAD_ARCHIVE_UNSAFE_PATH, f"symbolic link in config/: {path.relative_to(root)}")
        if path.is_file():
            files.append(path.relative_to(root).as_posix())
    for rel in sorted(files):
        yield WorkloadEvent("config", rel, hashlib.sha256((root / rel).read_bytes()).digest())
