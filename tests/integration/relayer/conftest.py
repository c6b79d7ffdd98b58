"""Fixtures for the relayer and SDK integration tests: one swtpm + cvm-agent (sim) per module, a fresh
anvil and registry per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localstack.swtpm import start_swtpm
from onchain.anvil import AnvilProcess
from onchain.demo import AgentProcess
from tests.support.stack import Chain, Stack, make_chain


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("relayer-stack")
    tpm = start_swtpm(root / "swtpm")
    stack = Stack(tpm, AgentProcess(tpm.tcti, root / "agent", token="t" * 32), root / "agent")
    try:
        stack.agent.wait_ready()
        yield stack
    finally:
        stack.agent.stop()  # a test may have restarted it: stop the one running now
        tpm.stop()


@pytest.fixture()
def chain(stack: Stack) -> Iterator[Chain]:
    with AnvilProcess() as anvil:
        yield make_chain(stack, anvil)


