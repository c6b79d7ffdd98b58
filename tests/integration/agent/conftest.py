"""Fixtures for the agent's integration tests: swtpm and a running ``cvm-agent``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.agent_process import AgentProcess, start_agent
from tests.support.swtpm import Swtpm, running_swtpm, swtpm_or_skip


@pytest.fixture
def swtpm() -> Iterator[Swtpm]:
    swtpm_or_skip("tpm2_pcrextend", "tpm2_pcrread")
    with running_swtpm() as tpm:
        yield tpm


@pytest.fixture(scope="module")
def module_swtpm() -> Iterator[Swtpm]:
    swtpm_or_skip("tpm2_pcrextend", "tpm2_pcrread")
    with running_swtpm() as tpm:
        yield tpm


@pytest.fixture(scope="module")
def agent(module_swtpm: Swtpm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """One agent for the read-only tests of a module."""
    process = start_agent(module_swtpm, tmp_path_factory.mktemp("agent"))
    yield process
    process.stop()
