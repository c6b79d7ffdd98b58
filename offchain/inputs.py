"""What a user hands a command: a file or standard input, and binary given as raw bytes, hex or base64.

``-`` as a path reads standard input (to its end), wherever a command reads a file. A binary input
(an SNP report, an HCL report, a TPMS_ATTEST, a signature) may be the raw bytes, their hex (with or
without ``0x``, whitespace and newlines ignored) or their base64: snpguest writes raw files, go-sev-guest's
tools print hex, cloud consoles and JSON APIs hand out base64. Raw binary is recognised by holding a
byte that is not printable ASCII; an SNP report always does (its reserved fields are zero), so text
that is neither hex nor base64 is refused rather than parsed as a report.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from pathlib import Path

from offchain.errors import ParseError, Reason

#: The path that means standard input.
STDIN = "-"

#: The most any input file may hold unless the caller says otherwise.
DEFAULT_LIMIT = 1 << 20

_HEX = re.compile(rb"[0-9a-fA-F]*")
_TEXT = frozenset(range(0x20, 0x7F)) | frozenset(b"\t\n\r")


def is_stdin(path: Path | str) -> bool:
    return str(path) == STDIN


def describe(path: Path | str) -> str:
    """How a message names the input: its path, or ``standard input``."""
    return "standard input" if is_stdin(path) else str(path)


def read_input(path: Path | str, limit: int = DEFAULT_LIMIT, *, refuse_larger: bool = True) -> bytes:
    """The bytes of ``path`` (``-``: standard input); INPUT_UNREADABLE when it cannot be read or
    holds more than ``limit`` bytes. With ``refuse_larger=False`` at most ``limit + 1`` bytes are
    returned instead, for a parser that names an oversized document in its own terms."""
    try:
        if is_stdin(path):
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
    except OSError as exc:
        raise ParseError(Reason.INPUT_UNREADABLE, f"cannot read {describe(path)}: {exc.strerror or exc}",
                         path=str(path)) from None
    if len(data) > limit and refuse_larger:
        raise ParseError(Reason.INPUT_UNREADABLE, f"{describe(path)} is larger than {limit} bytes", path=str(path))
    return data


def decode_binary(data: bytes, what: str) -> bytes:
    """``data`` as raw bytes: unchanged when it is binary, decoded when it is hex or base64 text.

    Text that is neither is INPUT_INVALID naming ``what``.
    """
    if not data or not set(data) <= _TEXT:
        return data
    compact = b"".join(data.split())
    body = compact[2:] if compact[:2] in (b"0x", b"0X") else compact
    if len(body) % 2 == 0 and _HEX.fullmatch(body):
        return bytes.fromhex(body.decode("ascii"))
    for altchars, text in ((None, compact), (b"-_", compact + b"=" * (-len(compact) % 4))):
        try:
            return base64.b64decode(text, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise ParseError(Reason.INPUT_INVALID, f"{what} is text but neither hex nor base64")


def read_binary(path: Path | str, what: str, limit: int = DEFAULT_LIMIT) -> bytes:
    """:func:`read_input`, then :func:`decode_binary`."""
    return decode_binary(read_input(path, limit), f"{what} ({describe(path)})")
