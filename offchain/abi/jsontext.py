"""Parsing untrusted JSON without letting its nesting reach the C stack.

``json.loads``'s C scanner recurses once per ``[``/``{`` level and is bounded only by the
interpreter's recursion limit, which py_ecc and py-evm (imported with eth-account and web3) raise to
100,000: deeply nested input can then overflow the C stack and kill the process. Every parser of
untrusted JSON in cvm-attest goes through :func:`loads_bounded`, which measures the nesting first.
"""

from __future__ import annotations

import json
import re
from typing import Any

from offchain.errors import ParseError, Reason

#: Deep enough for every document cvm-attest exchanges (the deepest nests 4 levels).
MAX_JSON_DEPTH = 32


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)


def nesting_depth(text: str | bytes) -> int:
    """The deepest ``[``/``{`` nesting outside JSON strings.

    Escape pairs (``\\x``) are cut first (they occur only inside strings), then every byte but
    quotes and brackets, both in C; only that skeleton is walked in Python, so a bundle of hex
    strings costs a few microseconds.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    skeleton = _ESCAPE.sub(b"", data).translate(None, _NOT_STRUCTURE)
    depth = deepest = 0
    in_string = False
    for byte in skeleton:
        if byte == 0x22:  # quote
            in_string = not in_string
        elif in_string:
            continue
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_bounded(text: str | bytes, reason: Reason, *, max_depth: int = MAX_JSON_DEPTH,
                  object_pairs_hook: Any = None) -> Any:
    """``json.loads`` for untrusted input: ParseError(``reason``) for bad JSON or excessive nesting."""
    if nesting_depth(text) > max_depth:
        raise ParseError(reason, f"JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ParseError(reason, "not valid JSON") from None
