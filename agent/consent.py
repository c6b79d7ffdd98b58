"""The golden measurements this CVM consents to be attested against.

``registerCvm`` accepts a golden id only with the CVM key's signature over
:func:`offchain.abi.binding.golden_consent_digest` for it, and the agent signs that digest only for
the ids held here, so nobody but the CVM's operator chooses the golden a CVM is registered under
(anyone may still fetch a fresh quote, but not move the CVM to another golden it also satisfies).

Two sources, listed apart by ``GET /golden-consents``:

* **configured**: ``--consent-golden 0xID`` (repeatable) and ``--consent-file FILE``, fixed for the run;
* **runtime**: added with ``POST /golden-consents`` (behind the update token), kept in
  ``STATE_DIR/golden-consents.json`` (``{"version": 1, "golden_ids": ["0x..."]}``, written atomically,
  mode 0600) so they survive a restart.

Neither lives in the workload: a golden id covers PCR23, which measures ``config/``, so a consent
written there would change the very id it names (and an update replaces the workload).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from offchain.errors import ParseError, PlatformError, Reason, RequestError

from agent.config import MAX_CONSENTS, parse_golden_id

CONSENTS_VERSION = 1
_MAX_FILE_BYTES = 64 << 10


def _hex(golden_id: bytes) -> str:
    return "0x" + golden_id.hex()


class GoldenConsents:
    """The consented golden ids (module docstring); safe to use from several threads."""

    def __init__(self, configured: Iterable[bytes], path: Path) -> None:
        self.path = path
        self._configured = tuple(dict.fromkeys(configured))
        self._runtime: list[bytes] = [g for g in _load(path) if g not in self._configured]
        self._lock = threading.Lock()
        if len(self._configured) + len(self._runtime) > MAX_CONSENTS:
            raise ParseError(Reason.INPUT_INVALID, f"at most {MAX_CONSENTS} golden ids may be consented to")

    def allows(self, golden_id: bytes) -> bool:
        with self._lock:
            return golden_id in self._configured or golden_id in self._runtime

    def add(self, golden_id: bytes) -> bool:
        """Consent to ``golden_id`` from now on, persistently; False when it was already consented."""
        with self._lock:
            if golden_id in self._configured or golden_id in self._runtime:
                return False
            if len(self._configured) + len(self._runtime) >= MAX_CONSENTS:
                raise RequestError(Reason.INPUT_INVALID, f"at most {MAX_CONSENTS} golden ids may be consented to")
            try:
                _store(self.path, [*self._runtime, golden_id])
            except OSError as exc:
                raise PlatformError(
                    Reason.PLATFORM_UNAVAILABLE, f"cannot write {self.path}: {exc.strerror or exc}"
                ) from None
            self._runtime.append(golden_id)
            return True

    def entries(self) -> list[dict[str, str]]:
        """Every consented id with its source, configured ones first, each in the order given."""
        with self._lock:
            return [{"golden_id": _hex(g), "source": "configured"} for g in self._configured] + [
                {"golden_id": _hex(g), "source": "runtime"} for g in self._runtime
            ]


def _malformed(path: Path, detail: str) -> ParseError:
    return ParseError(Reason.INPUT_INVALID, f"{path}: {detail}", path=str(path))


def _load(path: Path) -> list[bytes]:
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _malformed(path, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise _malformed(path, f"larger than {_MAX_FILE_BYTES} bytes")
    try:
        document: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _malformed(path, "not JSON") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"version", "golden_ids"}
        or document["version"] != CONSENTS_VERSION
        or not isinstance(document["golden_ids"], list)
        or not all(isinstance(g, str) for g in document["golden_ids"])
    ):
        raise _malformed(path, f'expected {{"version": {CONSENTS_VERSION}, "golden_ids": ["0x..."]}}')
    try:
        return list(dict.fromkeys(parse_golden_id(g) for g in document["golden_ids"]))
    except ParseError as exc:
        raise _malformed(path, exc.detail) from None


def _store(path: Path, golden_ids: list[bytes]) -> None:
    """Replace the file atomically: a crash leaves the old list or the new one, never half of one."""
    data = json.dumps({"version": CONSENTS_VERSION, "golden_ids": [_hex(g) for g in golden_ids]}, indent=1) + "\n"
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
