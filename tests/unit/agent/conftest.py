"""Fixtures for the agent's unit tests: a real swtpm per test (cheap) or per session, and the
development AMD chain generated once per session (two RSA-4096 keys)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AkKind
from agent.service import Agent
from offchain.devamd import DevAmdChain
from tests.support.agent import CONSENTED_GOLDEN, WORKLOAD, agent_config, generate_sim_chain, write_tree
from tests.support.swtpm import Swtpm, running_swtpm, swtpm_or_skip


@pytest.fixture(scope="session")
def sim_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_sim_chain(tmp_path_factory.mktemp("sim-chain"))


@pytest.fixture(scope="session")
def chain(sim_chain: Path) -> DevAmdChain:
    """The development chain itself (the simulated firmware's signer)."""
    return DevAmdChain.load(sim_chain)


@pytest.fixture
def swtpm() -> Iterator[Swtpm]:
    """A fresh swtpm for one test (its own PCRs and NV), stopped afterwards."""
    swtpm_or_skip()
    with running_swtpm() as tpm:
        yield tpm


@pytest.fixture(scope="session")
def session_swtpm() -> Iterator[Swtpm]:
    swtpm_or_skip()
    with running_swtpm() as tpm:
        yield tpm


@pytest.fixture(scope="session")
def sim_agent(session_swtpm: Swtpm, sim_chain: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One running sim agent (RSA AK) on the session swtpm, with the WORKLOAD measured, consenting
    to CONSENTED_GOLDEN.
    Tests that change the workload or PCR23 build their own agent on their own swtpm."""
    root = tmp_path_factory.mktemp("sim-agent")
    write_tree(root / "workload", WORKLOAD)
    agent = Agent.start(agent_config(session_swtpm, root, sim_chain, ak=AkKind.RSA,
                                     consented_goldens=(CONSENTED_GOLDEN,)))
    yield agent
    agent.close()
