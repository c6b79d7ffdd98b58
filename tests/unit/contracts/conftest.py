"""Session fixtures for contract tests: one anvil (default hardfork, EIP-7825 cap enforced), web3, deployer.

Contract tests compile their harness once per session with ``tests.support.evm.compile_contracts``
(cached on disk too) and deploy it into this one chain.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from tests.support.evm import AnvilProcess


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess() as process:
        yield process


@pytest.fixture(scope="session")
def w3(anvil: AnvilProcess) -> Web3:
    web3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
    assert web3.is_connected()
    return web3


@pytest.fixture(scope="session")
def deployer(w3: Web3) -> str:
    """The first of anvil's unlocked dev accounts."""
    return str(w3.eth.accounts[0])
