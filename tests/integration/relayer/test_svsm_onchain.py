"""The svsm platform on chain, end to end: a real agent on the sim's SVSM mode (VMPL0 reports over
swtpm's EK), a registry on anvil that pins the sim's development root and names an activator, and
``cvm-cli svsm register`` as the activator runs it (activation, off-chain check, statement,
registerCvmSvsm), or the relayer, when the owner named its key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from web3 import Web3

from localstack.swtpm import swtpm_available
from offchain.errors import Reason
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.roots import TrustRoots
from onchain.anvil import AnvilProcess
from onchain.client import RegistryClient
from onchain.deploy import deploy_registry
from onchain.relayer.journal import Journal
from onchain.relayer.relayer import Relayer
from onchain.relayer.sender import TxSender
from onchain.svsm_cli import svsm
from tests.support.agent_process import TOKEN, AgentProcess, start_agent
from tests.support.stack import Chain, funded
from tests.support.swtpm import running_swtpm

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not swtpm_available(), reason="swtpm is not installed (scripts/setup installs it)"),
]


@pytest.fixture(scope="module")
def svsm_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with running_swtpm() as tpm:
        process = start_agent(tpm, tmp_path_factory.mktemp("svsm-onchain"), "--sim-svsm")
        try:
            yield process
        finally:
            process.stop()


def _golden(agent: AgentProcess, tmp_path: Path) -> tuple[GoldenMeasurement, Path]:
    status, body, _ = agent.request("GET", "/golden-measurement")
    assert status == 200 and body["binding"] == "svsm"
    golden = GoldenMeasurement.from_json(body)
    status, _, _ = agent.request("POST", "/golden-consents",
                                 json.dumps({"golden_id": "0x" + golden.canonical_id().hex()}).encode(),
                                 {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(body))
    return golden, path


def test_an_activator_registers_an_svsm_cvm(svsm_agent: AgentProcess, svsm_chain: Chain, tmp_path: Path) -> None:
    golden, path = _golden(svsm_agent, tmp_path)
    golden_id = svsm_chain.registry.publish_golden(golden)
    activator = funded(svsm_chain.w3)
    env = {"ACTIVATOR_KEY": activator.key.hex()}
    args = ["register", f"http://{svsm_agent.external}", "--rpc", svsm_chain.anvil.url, "--registry",
            svsm_chain.registry.address, "--golden", str(path), "--dev-root",
            str(svsm_agent.state_dir / "sim" / "ark.pem"), "--key", "env:ACTIVATOR_KEY", "--json"]

    refused = CliRunner().invoke(svsm, args, env=env, catch_exceptions=False)
    assert refused.exit_code == 1 and json.loads(refused.output)["reason"] == Reason.REGISTRY_ACTIVATOR_UNKNOWN.value

    svsm_chain.registry.set_activator(activator.address, True)
    done = CliRunner().invoke(svsm, args, env=env, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    cvm = Web3.to_checksum_address(result["cvm_address"])
    assert result["golden_id"] == "0x" + golden_id.hex()
    assert svsm_chain.registry.is_attested_for(cvm, golden_id)
    status, identity, _ = svsm_agent.request("GET", "/identity")
    assert Web3.to_checksum_address(identity["cvm_address"]) == cvm


@pytest.fixture
def svsm_chain(svsm_agent: AgentProcess) -> Iterator[Chain]:
    ark = x509.load_pem_x509_certificate((svsm_agent.state_dir / "sim" / "ark.pem").read_bytes())
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        owner, relayer = funded(w3), funded(w3)
        registry = deploy_registry(w3, account=owner, amd_roots=False, dev_root=ark)
        yield Chain(anvil, w3, owner, relayer, registry)


def test_a_golden_of_another_binding_is_refused_before_anything_is_sent(svsm_agent: AgentProcess,
                                                                        svsm_chain: Chain, tmp_path: Path) -> None:
    _, path = _golden(svsm_agent, tmp_path)
    document = json.loads(path.read_text())
    document["binding"] = "direct"
    path.write_text(json.dumps(document))
    activator = funded(svsm_chain.w3)
    svsm_chain.registry.set_activator(activator.address, True)
    done = CliRunner().invoke(svsm, ["register", f"http://{svsm_agent.external}", "--rpc", svsm_chain.anvil.url,
                                     "--registry", svsm_chain.registry.address, "--golden", str(path),
                                     "--key", "env:K", "--json"], env={"K": activator.key.hex()},
                              catch_exceptions=False)
    assert done.exit_code == 2 and json.loads(done.output)["reason"] == Reason.INPUT_INVALID.value



def test_the_relayer_is_the_activator_when_its_key_is_named(svsm_agent: AgentProcess, svsm_chain: Chain,
                                                            tmp_path: Path) -> None:
    golden, _ = _golden(svsm_agent, tmp_path)
    golden_id = svsm_chain.registry.publish_golden(golden)
    ark = x509.load_pem_x509_certificate((svsm_agent.state_dir / "sim" / "ark.pem").read_bytes())
    journal = Journal(tmp_path / "relayer.db")
    try:
        key = svsm_chain.relayer_key
        client = RegistryClient(svsm_chain.w3, svsm_chain.registry.address, account=key)
        relayer = Relayer(client=client, sender=TxSender(svsm_chain.w3, key, journal), journal=journal, golden=golden,
                          agents=[f"http://{svsm_agent.external}"], roots=TrustRoots.empty().with_dev_root(ark))
        (refused,) = relayer.tick()
        assert refused.action == "rejected" and Reason.REGISTRY_ACTIVATOR_UNKNOWN.value in (refused.error or "")
        svsm_chain.registry.set_activator(key.address, True)
        (registered,) = relayer.tick()
        assert (registered.action, registered.error) == ("register", None)
        assert svsm_chain.registry.is_attested_for(registered.cvm_address, golden_id)
        (again,) = relayer.tick()
        assert again.action == "none"
    finally:
        journal.close()
