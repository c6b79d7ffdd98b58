"""Click parameter types and values every ``cvm-cli`` command shares.

:data:`INPUT_FILE` is a file to read, or ``-`` for standard input (offchain/inputs.py). Standard
input can be read once, so a second option given ``-`` in the same command is a usage error.
:func:`parse_time` reads ``--at``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from offchain.errors import ParseError, Reason
from offchain.inputs import STDIN

_STDIN_TAKEN = "cvm_attest.stdin_taken_by"


class InputPath(click.Path):
    """A file to read (not a directory), or ``-``: standard input, for at most one parameter."""

    name = "file"

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path, allow_dash=True)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if str(value) == STDIN and ctx is not None:
            who = param.get_error_hint(ctx) if param is not None else "an option"
            taken = ctx.meta.get(_STDIN_TAKEN)
            if taken is not None and taken != who:
                self.fail(f"standard input ('-') is already read by {taken}; give one of them a file", param, ctx)
            ctx.meta[_STDIN_TAKEN] = who
        return super().convert(value, param, ctx)


INPUT_FILE = InputPath()


def parse_time(text: str | None) -> datetime:
    """``--at``: an ISO 8601 time (naive means UTC), or now."""
    if text is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ParseError(Reason.INPUT_INVALID, f"--at {text!r} is not an ISO 8601 time") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
