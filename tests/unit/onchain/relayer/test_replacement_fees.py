"""Fee arithmetic of replacing a stuck transaction, and the relayer's command-line options for it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from onchain.relayer.cli import relay, send_policy
from onchain.relayer.sender import GWEI, bumped, initial_fees, least_replacement, replacement_fees


@pytest.mark.parametrize(("last", "market", "cap", "expected"), [
    pytest.param((100, 10), (0, 0), 1000, (113, 12), id="bumped-12.5pct-rounded-up"),
    pytest.param((100, 10), (300, 20), 1000, (300, 20), id="market-higher-wins"),
    pytest.param((100, 10), (300, 20), 200, (200, 20), id="market-capped"),
    pytest.param((100, 10), (0, 0), 110, (110, 12), id="cap-leaves-exactly-10pct"),
    pytest.param((100, 10), (0, 0), 109, None, id="cap-leaves-less-than-10pct-stuck"),
    pytest.param((100, 10), (0, 0), 100, None, id="already-at-cap-stuck"),
    pytest.param((100, 100), (0, 0), 1000, (113, 113), id="tip-equal-to-max-fee"),
    pytest.param((100, 100), (0, 500), 1000, (113, 113), id="tip-never-above-max-fee"),
    pytest.param((0, 0), (0, 0), 1000, (1, 1), id="zero-fees-rise-by-a-wei"),
])
def test_replacement_fees(last: tuple[int, int], market: tuple[int, int], cap: int,
                          expected: tuple[int, int] | None) -> None:
    fees = replacement_fees(*last, *market, cap)
    assert fees == expected
    if fees is not None:  # what a node requires to replace the pooled version, and what the operator allows
        assert fees[0] >= least_replacement(last[0]) and fees[1] >= least_replacement(last[1])
        assert fees[1] <= fees[0] <= cap


@pytest.mark.parametrize(("fee", "bump", "least"), [
    pytest.param(0, 1, 1, id="zero"),
    pytest.param(8, 9, 9, id="small"),
    pytest.param(10**9, 1_125_000_000, 1_100_000_000, id="one-gwei"),
    pytest.param(10**9 + 1, 1_125_000_002, 1_100_000_002, id="rounded-up"),
])
def test_bump_is_above_what_nodes_require(fee: int, bump: int, least: int) -> None:
    assert (bumped(fee), least_replacement(fee)) == (bump, least)
    assert bumped(fee) >= least_replacement(fee) > fee


@pytest.mark.parametrize(("market", "cap", "expected"), [
    pytest.param((300, 20), 1000, (300, 20), id="market"),
    pytest.param((300, 20), 200, (200, 20), id="max-fee-capped"),
    pytest.param((300, 20), 10, (10, 10), id="tip-capped-by-max-fee"),
])
def test_initial_fees(market: tuple[int, int], cap: int, expected: tuple[int, int]) -> None:
    assert initial_fees(*market, cap) == expected


def test_send_policy_defaults_and_the_cap_in_gwei() -> None:
    policy = send_policy(180.0, 3, 100.0)
    assert (policy.replace_after_blocks, policy.max_fee_wei, policy.receipt_timeout_s) == (3, 100 * GWEI, 180.0)
    assert send_policy(60.0, 5, 0.1).max_fee_wei == 100_000_000  # exact, not 99_999_999 from float arithmetic


@pytest.mark.parametrize("args", [
    pytest.param(["--replace-after-blocks", "0"], id="zero-blocks"),
    pytest.param(["--replace-after-blocks", "-1"], id="negative-blocks"),
    pytest.param(["--max-fee-gwei", "0"], id="zero-cap"),
    pytest.param(["--max-fee-gwei", "-5"], id="negative-cap"),
])
def test_relay_refuses_replacement_options_out_of_range(args: list[str]) -> None:
    result = CliRunner().invoke(relay, args)
    assert result.exit_code == 2, result.output  # a usage error, before anything connects
    assert args[0] in result.output


def test_relay_options_and_their_defaults() -> None:
    defaults = {param.name: param.default for param in relay.params}
    assert [defaults[name] for name in ("replace_after_blocks", "max_fee_gwei", "receipt_timeout")] == [3, 100.0, 180.0]
    text = " ".join(CliRunner().invoke(relay, ["--help"]).output.split())
    assert "[default: 3; x>=1]" in text and "[default: 100.0; x>0]" in text  # shown to the operator
