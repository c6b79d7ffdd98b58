"""``scripts/bench offchain`` keeps working: it runs and prints exactly its three keys (no timing asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks import offchain


def test_benchmark_prints_its_three_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert offchain.main(["--json", "--seconds", "0.01"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(out) == ["crypto_per_s", "verify_per_s_cached", "verify_per_s_cold"]
    assert all(isinstance(v, float) and v > 0 for v in out.values())
