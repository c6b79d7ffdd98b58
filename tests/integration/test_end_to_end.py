"""The demo's flow end to end, with assertions at each step: real anvil, swtpm, cvm-agent (sim)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from localstack.swtpm import swtpm_available
from offchain.errors import Reason
from onchain.demo import run_demo

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not swtpm_available(), reason="swtpm is not installed (scripts/setup installs it)")
def test_the_whole_flow(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(tmp_path, echo=lines.append)

    # The relayer registered, then refreshed, then refused to submit stale evidence.
    actions = [r.action for r in result.relay_results]
    assert actions == ["register", "refresh", "rejected"]
    assert result.attested_after_register is True

    # The gated dApp took the CVM's value and refused another address with the custom error.
    assert result.gated_accepted_value == 4242
    assert result.gated_refusal is not None
    assert result.gated_refusal.reason is Reason.REGISTRY_NOT_ATTESTED
    assert result.gated_refusal.context["error"] == "CvmGatedNotAttested"

    # After the workload update the old golden measurement names PCR23 and the changed item.
    assert result.stale_refusal is not None
    assert "23" in result.stale_refusal and "config/feed.toml" in result.stale_refusal

    # Revoking the golden measurement ends the attestation, for the dApp too.
    assert result.attested_after_revoke is False
    assert result.gated_refusal_after_revoke is not None
    assert result.gated_refusal_after_revoke.reason is Reason.REGISTRY_NOT_ATTESTED

    # Every transaction fits the EIP-7825 cap, and the summary lists them with their gas.
    names = [what for what, _, _ in result.transactions]
    assert names[:2] == ["publishGolden", "registerCvm"] and "refreshCvm" in names and names[-1] == "revokeGolden"
    assert all(0 < gas < 16_777_216 for _, _, gas in result.transactions)
    assert any(line.startswith("Summary") for line in lines)
    # Everything the demo started is stopped: none of its endpoints answers any more.
    assert len(result.endpoints) == 3
    for url in result.endpoints:
        host, port = url.removeprefix("http://").split(":")
        with socket.socket() as probe:
            assert probe.connect_ex((host, int(port))) != 0, f"{url} still answers"
