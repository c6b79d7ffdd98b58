"""The chain fixtures of the contract, client and registry tests: anvil, web3, an unlocked deployer.

Each conftest that imports them gets its own session-wide anvil (pytest keys fixtures by the
conftest that declares them), so one directory's clock changes never reach another's chain.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3

from onchain.anvil import AnvilProcess


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
