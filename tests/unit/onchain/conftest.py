"""Session fixtures for the on-chain client and registry unit tests: one anvil, web3, deployer."""

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
    return str(w3.eth.accounts[0])
