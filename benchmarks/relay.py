"""``scripts/bench relay [--json]``: attestations the relayer carries per minute, with 1 and 8 CVMs, and a fleet's.

Each CVM is a real ``cvm-agent`` (sim platform) on its own swtpm; all eight share one development AMD
chain (copied into their state directories) so one pinned root and one golden measurement serve them.
The registry runs on anvil (automine, ``--enable-tx-gas-limit``).

* ``relayed_per_min_1`` / ``relayed_per_min_8``: after every CVM is registered, timed passes of the
  real relayer (``Relayer.tick``: ``/identity``, ``/onchain/collaterals``, off-chain verification,
  gas estimation, signing, the journal, broadcast, receipt) with a refresh margin that makes every
  pass refresh every CVM; attestations mined per minute of wall time.
* ``relayed_per_min_fleet_32``: three ``cvm-cli relay`` processes, each with its own key, sharing a
  PostgreSQL journal (a throwaway cluster) over 32 CVMs: once every CVM is registered (untimed), the
  ``CvmRefreshed`` events the registry emits in a fixed window, per minute (every pass refreshes every
  CVM the relayer leases).
* ``chain_limit_per_min``: measured in the same run, bare ``refreshCvm`` transactions per minute: the
  evidence for a round is fetched first (untimed), then only sending and mining are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from contextlib import ExitStack
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from localstack.swtpm import start_swtpm
from offchain.devamd import DevAmdChain
from offchain.evidence import EvidenceBundle
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import load_certificates
from offchain.trust.roots import TrustRoots
from onchain.anvil import AnvilProcess
from onchain.client import RegistryClient
from onchain.demo import AgentProcess, http_json
from onchain.deploy import deploy_registry
from onchain.relayer.journal import Journal, PostgresJournal
from onchain.relayer.pgcluster import PostgresCluster
from onchain.relayer.relayer import RelayPolicy, Relayer
from onchain.relayer.sender import SendPolicy, TxSender

PASSES = {1: 20, 8: 4}
CHAIN_ROUNDS = 4
FLEET_CVMS = 32
FLEET_RELAYERS = 3
FLEET_WINDOW_S = 30.0


def _relayer(w3: Web3, registry: RegistryClient, agents: list[str], golden: GoldenMeasurement,
             roots: TrustRoots, journal: Journal) -> Relayer:
    key = Account.create()
    w3.provider.make_request("anvil_setBalance", [key.address, hex(10**22)])  # type: ignore[arg-type]
    client = RegistryClient(w3, registry.address, account=key)
    sender = TxSender(w3, key, journal, policy=SendPolicy(poll_interval_s=0.02),
                      decode_revert=lambda d: str(client.decode_revert(d)))
    return Relayer(client=client, sender=sender, journal=journal, golden=golden, agents=agents, roots=roots,
                   policy=RelayPolicy(refresh_margin_s=golden.lifetime_seconds + 1))


def _rate(relayer: Relayer, passes: int) -> float:
    relayed = 0
    start = time.perf_counter()
    for _ in range(passes):
        relayed += sum(1 for r in relayer.tick() if r.action in ("register", "refresh"))
    return relayed / ((time.perf_counter() - start) / 60)


def _chain_limit(w3: Web3, registry: RegistryClient, agents: list[str], golden_id: bytes) -> float:
    """refreshCvm transactions per minute, counting only the time to send and mine them."""
    key = Account.create()
    w3.provider.make_request("anvil_setBalance", [key.address, hex(10**22)])  # type: ignore[arg-type]
    client = RegistryClient(w3, registry.address, account=key)
    sent, elapsed = 0, 0.0
    for _ in range(CHAIN_ROUNDS):
        block = w3.eth.get_block("latest")
        query = urllib.parse.urlencode({"chain_id": w3.eth.chain_id, "registry": registry.address,
                                        "block_number": block["number"], "block_hash": "0x" + bytes(block["hash"]).hex(),
                                        "golden_id": "0x" + golden_id.hex()})
        calls = []
        for agent in agents:
            bundle = EvidenceBundle.from_json(http_json("GET", f"{agent}/onchain/collaterals?{query}"))
            cvm = Web3.to_checksum_address("0x" + (bundle.cvm_address or b"").hex())
            calls.append(client.refresh_calldata(cvm, block["number"], bundle.ak_public, bundle.quote_attest,
                                                 bundle.quote_signature))
        nonce = w3.eth.get_transaction_count(key.address)
        start = time.perf_counter()
        hashes = []
        for i, data in enumerate(calls):
            tx = {"type": 2, "chainId": w3.eth.chain_id, "nonce": nonce + i, "to": registry.address, "data": data,
                  "gas": 200_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9, "value": 0}
            hashes.append(w3.eth.send_raw_transaction(key.sign_transaction(tx).raw_transaction))
        for tx_hash in hashes:
            if w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.01)["status"] != 1:
                raise RuntimeError("a bare refreshCvm reverted")
        elapsed += time.perf_counter() - start
        sent += len(calls)
    return sent / (elapsed / 60)


def _fleet_rate(stack: ExitStack, w3: Web3, owner: LocalAccount, ark: x509.Certificate, golden: GoldenMeasurement,
                agents: list[AgentProcess], workdir: Path) -> float:
    """Refreshes per minute by three relayer processes sharing a PostgreSQL journal over every agent."""
    registry = deploy_registry(w3, account=owner, amd_roots=False, dev_root=ark)  # every CVM unregistered here
    registry.publish_golden(golden)
    golden_file = workdir / "golden.json"
    golden_file.write_text(json.dumps(golden.to_json()))
    (workdir / "ark.pem").write_bytes(ark.public_bytes(serialization.Encoding.PEM))
    pg = stack.enter_context(PostgresCluster())
    url = pg.create_database("fleet")
    journal = PostgresJournal(url)
    stack.callback(journal.close)
    processes = []
    for i in range(FLEET_RELAYERS):
        key = Account.create()
        w3.provider.make_request("anvil_setBalance", [key.address, hex(10**22)])  # type: ignore[arg-type]
        log = (workdir / f"relayer-{i}.log").open("ab")
        stack.callback(log.close)
        process = subprocess.Popen(  # noqa: S603 (our own console script)
            [str(Path(sys.executable).parent / "cvm-cli"), "relay", "--rpc", w3.provider.endpoint_uri,  # type: ignore[attr-defined]
             "--registry", registry.address, "--golden", str(golden_file), "--dev-root", str(workdir / "ark.pem"),
             "--journal", url, "--relayer-id", f"relayer-{i}", "--key", "env:RELAYER_KEY", "--interval", "0",
             "--refresh-margin", str(golden.lifetime_seconds + 1), "--lease-seconds", "30"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, RELAYER_KEY=key.key.hex()))
        stack.callback(_stop, process)
        processes.append(process)
    deadline = time.monotonic() + 120
    while len(journal.relayers()) < FLEET_RELAYERS:  # all join before the agents exist: a fair split
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise RuntimeError(f"the fleet's relayers did not start; see {workdir}/relayer-*.log")
        time.sleep(0.1)
    for agent in agents:
        journal.add_agent(agent.external)
    cvms = [Web3.to_checksum_address(http_json("GET", a.external + "/identity")["cvm_address"]) for a in agents]
    deadline = time.monotonic() + 300
    while not all(registry.is_attested(cvm) for cvm in cvms):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fleet did not register every CVM; see {workdir}/relayer-*.log")
        time.sleep(0.5)
    start_block = w3.eth.block_number
    start = time.perf_counter()
    time.sleep(FLEET_WINDOW_S)
    end_block = w3.eth.block_number
    elapsed = time.perf_counter() - start
    refreshed = registry.contract.events.CvmRefreshed.get_logs(from_block=start_block + 1, to_block=end_block)
    return len(refreshed) / (elapsed / 60)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(workdir: Path) -> dict[str, float]:
    results: dict[str, float] = {}
    with ExitStack() as stack:
        anvil = stack.enter_context(AnvilProcess())
        w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
        owner = Account.create()
        w3.provider.make_request("anvil_setBalance", [owner.address, hex(10**22)])  # type: ignore[arg-type]
        shared = workdir / "shared-sim"
        DevAmdChain.generate().save(shared)
        agents: list[AgentProcess] = []
        for i in range(FLEET_CVMS):
            state = workdir / f"agent-{i}"
            shutil.copytree(shared, state / "sim")
            tpm = start_swtpm(workdir / f"swtpm-{i}")
            stack.callback(tpm.stop)
            agent = AgentProcess(tpm.tcti, state, token="t" * 32)
            stack.callback(agent.stop)
            agents.append(agent)
        for agent in agents:
            agent.wait_ready()
        ark = load_certificates(shared / "ark.pem")[0]
        registry = deploy_registry(w3, account=owner, amd_roots=False, dev_root=ark)
        golden = GoldenMeasurement.from_json(http_json("GET", agents[0].external + "/golden-measurement"))
        registry.publish_golden(golden)
        token = (agents[0].state_dir / "token").read_text().strip()
        for agent in agents:  # each CVM's operator consents to the golden (the agent quotes only for it)
            http_json("POST", agent.external + "/golden-consents",
                      json.dumps({"golden_id": "0x" + golden.canonical_id().hex()}).encode(),
                      {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        roots = TrustRoots.empty().with_dev_root(ark)
        for count in sorted(PASSES):
            urls = [a.external for a in agents[:count]]
            journal = Journal(workdir / f"journal-{count}.db")
            stack.callback(journal.close)
            relayer = _relayer(w3, registry, urls, golden, roots, journal)
            relayer.tick()  # registers (or refreshes) every CVM once, untimed
            results[f"relayed_per_min_{count}"] = round(_rate(relayer, PASSES[count]), 1)
        results["chain_limit_per_min"] = round(_chain_limit(w3, registry, [a.external for a in agents[:max(PASSES)]],
                                                        golden.canonical_id()), 1)
        results["relayed_per_min_fleet_32"] = round(_fleet_rate(stack, w3, owner, ark, golden, agents, workdir), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench relay", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cvm-attest-bench-relay-") as tmp:
        figures = measure(Path(tmp))
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in figures.items():
            print(f"{key:<24} {value:>10,.1f}")


if __name__ == "__main__":
    main()
