"""Untrusted JSON is measured before json.loads ever recurses into it."""

from __future__ import annotations

import json

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


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab/\n', max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4),
                                                                      children, max_size=3),
    max_leaves=20,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(_JSON, st.booleans())
def test_depth_equals_the_parsed_documents_depth(value: object, ascii_only: bool) -> None:
    # Strings full of brackets, quotes and backslashes must not change the count.
    assert nesting_depth(json.dumps(value, ensure_ascii=ascii_only)) == _depth(value)
