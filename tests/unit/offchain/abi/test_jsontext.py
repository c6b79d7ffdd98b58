"""Untrusted JSON is measured before json.loads ever recurses into it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offchain.abi.jsontext import MAX_JSON_DEPTH, loads_bounded, nesting_depth
from offchain.abi.workload import parse_event_log
from offchain.errors import ParseError, Reason


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('"[[[[{{{{"', 0),  # brackets inside a string do not nest
        ('["\\"[["]', 1),  # an escaped quote does not end the string
        ("1", 0),
    ],
    ids=["object", "mixed", "in-string", "escaped-quote", "scalar"],
)
def test_nesting_depth(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_accepts_up_to_the_limit_and_refuses_one_more() -> None:
    assert loads_bounded("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, Reason.EVIDENCE_MALFORMED)
    with pytest.raises(ParseError) as exc:
        loads_bounded("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), Reason.EVIDENCE_MALFORMED)
    assert exc.value.reason is Reason.EVIDENCE_MALFORMED


def test_a_deeply_nested_event_log_line_is_refused_without_recursing() -> None:
    # 200,000 levels would overflow the C stack once web3 has raised the recursion limit.
    with pytest.raises(ParseError) as exc:
        parse_event_log("[" * 200_000)
    assert exc.value.reason is Reason.EVENT_LOG_MALFORMED


@given(st.text(max_size=200))
def test_random_text_gives_a_value_or_a_typed_error(text: str) -> None:
    try:
        loads_bounded(text, Reason.GOLDEN_MALFORMED)
    except ParseError as exc:
        assert exc.reason is Reason.GOLDEN_MALFORMED
