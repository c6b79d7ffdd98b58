"""Session fixtures for the on-chain client and registry unit tests: one anvil, web3, deployer."""

from tests.support.chain_fixtures import anvil, deployer, w3  # noqa: F401 (pytest fixtures)
