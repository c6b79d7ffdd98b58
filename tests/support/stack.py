"""A real swtpm + cvm-agent (sim platform) and a chain with a registry, for relayer and SDK tests."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from localstack.swtpm import Swtpm
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import load_certificates
from offchain.trust.roots import TrustRoots
from onchain.anvil import AnvilProcess
from onchain.client import RegistryClient
from onchain.demo import AgentProcess, http_json
from onchain.deploy import deploy_registry
from onchain.relayer.journal import Journal
from onchain.relayer.relayer import RelayPolicy, Relayer
from onchain.relayer.sender import TxSender


@dataclasses.dataclass
class Stack:
    tpm: Swtpm
    agent: AgentProcess
    state_dir: Path

    @property
    def sim_ark(self):  # type: ignore[no-untyped-def]
        return load_certificates(self.state_dir / "sim" / "ark.pem")[0]

    def golden(self) -> GoldenMeasurement:
        return GoldenMeasurement.from_json(http_json("GET", self.agent.external + "/golden-measurement"))

    def cvm(self) -> str:
        return Web3.to_checksum_address(http_json("GET", self.agent.external + "/identity")["cvm_address"])

    def consent(self, golden: GoldenMeasurement | bytes) -> None:
        """The CVM's operator consents to ``golden`` (or that id) through the agent's token-guarded
        ``POST /golden-consents``; it lasts across agent restarts on the same state directory."""
        golden_id = golden if isinstance(golden, bytes) else golden.canonical_id()
        token = (self.state_dir / "token").read_text().strip()
        http_json("POST", self.agent.external + "/golden-consents",
                  json.dumps({"golden_id": "0x" + golden_id.hex()}).encode(),
                  {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})

    def consented_golden(self) -> GoldenMeasurement:
        """The agent's golden measurement, consented to (what a relayer registers it under)."""
        golden = self.golden()
        self.consent(golden)
        return golden


def funded(w3: Web3) -> LocalAccount:
    account: LocalAccount = Account.create()
    w3.provider.make_request("anvil_setBalance", [account.address, hex(10**21)])  # type: ignore[arg-type]
    return account


@dataclasses.dataclass
class Chain:
    anvil: AnvilProcess
    w3: Web3
    owner: LocalAccount
    relayer_key: LocalAccount
    registry: RegistryClient


def make_chain(stack: Stack, anvil: AnvilProcess) -> Chain:
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
    owner, relayer_key = funded(w3), funded(w3)
    registry = deploy_registry(w3, account=owner, amd_roots=False, dev_root=stack.sim_ark)
    return Chain(anvil, w3, owner, relayer_key, registry)


def make_relayer(chain: Chain, stack: Stack, journal: Journal, golden: GoldenMeasurement, *,
             agents: list[str] | None = None, clock=time.monotonic) -> Relayer:  # type: ignore[no-untyped-def]
    client = RegistryClient(chain.w3, chain.registry.address, account=chain.relayer_key)
    sender = TxSender(chain.w3, chain.relayer_key, journal, decode_revert=lambda d: str(client.decode_revert(d)))
    return Relayer(client=client, sender=sender, journal=journal, golden=golden,
                   agents=agents or [stack.agent.external], roots=TrustRoots.empty().with_dev_root(stack.sim_ark),
                   policy=RelayPolicy(backoff_initial_s=5.0), clock=clock)


