"""Fixtures for the registry's integration tests: a real anvil (EIP-7825 cap enforced), the compiled
registry, a development AMD chain it trusts, and simulated CVMs with RSA-2048 and P-256 AKs."""

from __future__ import annotations


import pytest
from web3 import Web3

from offchain.abi.snp_report import Product, SignerKind
from offchain.devamd import DevAmdChain
from onchain.client import RegistryClient
from tests.support.chain_fixtures import anvil, w3  # noqa: F401 (pytest fixtures)
from tests.support.registry import ISSUED, SimCvm, SoftAk, deploy_registry, sim_cvm, trust_dev_chain

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def owner(w3: Web3) -> str:
    return str(w3.eth.accounts[0])


@pytest.fixture(scope="session")
def relayer(w3: Web3) -> str:
    """Anyone: submits evidence and certificates, owns nothing."""
    return str(w3.eth.accounts[1])


@pytest.fixture(scope="session")
def dev_chain() -> DevAmdChain:
    """A development Genoa ARK -> ASK -> VCEK (two RSA-4096 keys: generated once per session)."""
    return DevAmdChain.generate(product=Product.GENOA, signer=SignerKind.VCEK, not_before=ISSUED)


@pytest.fixture(scope="session")
def rsa_ak() -> SoftAk:
    return SoftAk("rsa")


@pytest.fixture(scope="session")
def p256_ak() -> SoftAk:
    return SoftAk("p256")


@pytest.fixture(scope="session")
def cvm_rsa(dev_chain: DevAmdChain, rsa_ak: SoftAk) -> SimCvm:
    return sim_cvm(dev_chain, rsa_ak)


@pytest.fixture(scope="session")
def cvm_p256(dev_chain: DevAmdChain, p256_ak: SoftAk) -> SimCvm:
    return sim_cvm(dev_chain, p256_ak)


@pytest.fixture(scope="module")
def registry(w3: Web3, owner: str, dev_chain: DevAmdChain) -> RegistryClient:
    """A registry per test module, owned by ``owner``, trusting the development chain (registered)."""
    client = deploy_registry(w3, owner)
    trust_dev_chain(client, dev_chain)
    return client


@pytest.fixture(scope="module")
def as_relayer(w3: Web3, registry: RegistryClient, relayer: str) -> RegistryClient:
    """The same registry, seen by an account that owns nothing."""
    return RegistryClient(w3, registry.address, sender=relayer, abi=registry.abi)
