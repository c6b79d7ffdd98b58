"""``cvm-cli demo``: the whole nonce-bound flow on this machine, from a CVM to a gated dApp.

Everything runs locally and is stopped at the end (also on Ctrl-C or a failure): anvil (Osaka,
EIP-7825 cap enforced), swtpm, and ``cvm-agent`` on the simulated SEV-SNP platform (a development
AMD chain that signs reports as the firmware does; trusted here only because the registry is
deployed pinned to it).

Steps: start the stack; deploy the registry pinned to the sim root; publish the golden measurement
the agent reports; relay one attestation (the relayer checks the evidence off chain first); call
the example ``AttestedPriceFeed`` from the CVM's key (accepted) and from another key (refused with
the custom error); refresh the attestation; update the workload and show the old golden
measurement refusing the new evidence (naming PCR23 and the item); revoke the golden measurement
(the CVM is no longer attested); print the transactions and their gas.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from eth_account import Account
from web3 import Web3

from localstack.swtpm import start_swtpm
from offchain.errors import ChainError, PlatformError, Reason
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import load_certificates
from offchain.trust.roots import TrustRoots
from onchain.anvil import AnvilProcess, free_port
from onchain.client import RegistryClient, load_artifact
from onchain.deploy import deploy_registry
from onchain.errors import decode_revert
from onchain.relayer.journal import Journal
from onchain.relayer.relayer import RelayPolicy, Relayer, TickResult
from onchain.relayer.sender import TxSender

AGENT_START_TIMEOUT_S = 120.0
FEED_ARTIFACT = "AttestedPriceFeed"

COMPOSE_V1 = b"services:\n  feed:\n    image: registry.example/price-feed@sha256:" + b"ab" * 32 + b"\n"
CONFIG_V1 = b'sources = ["exchange-a", "exchange-b"]\ninterval_s = 30\n'
CONFIG_V2 = b'sources = ["exchange-a", "exchange-b", "exchange-c"]\ninterval_s = 30\n'


@dataclass
class DemoResult:
    """What the demo did, for the summary and for the end-to-end test's assertions."""

    registry: str = ""
    cvm_address: str = ""
    golden_id: bytes = b""
    transactions: list[tuple[str, str, int]] = field(default_factory=list)  # (what, tx hash, gas)
    relay_results: list[TickResult] = field(default_factory=list)
    gated_accepted_value: int | None = None
    gated_refusal: ChainError | None = None
    stale_refusal: str | None = None
    attested_after_register: bool = False
    attested_after_revoke: bool = True
    gated_refusal_after_revoke: ChainError | None = None
    endpoints: list[str] = field(default_factory=list)  # every URL the demo served, all closed at the end


class Progress:
    """Numbered step lines with timings on stdout."""

    def __init__(self, total: int, echo: Callable[[str], None] = click.echo) -> None:
        self.total = total
        self.n = 0
        self.echo = echo

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.n += 1
        start = time.monotonic()
        self.echo(f"[{self.n}/{self.total}] {title}")
        yield
        self.echo(f"      done in {time.monotonic() - start:.1f}s")

    def note(self, text: str) -> None:
        self.echo(f"      {text}")


def http_json(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
              timeout: float = 30.0) -> Any:
    """One request to a local agent, its JSON answer back (HTTP errors raise urllib's HTTPError)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (our own local agent)
        return json.loads(response.read())


def _workload_zip(config: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("docker-compose.yml", COMPOSE_V1)
        archive.writestr("config/feed.toml", config)
    return buffer.getvalue()


class AgentProcess:
    """``cvm-agent --platform sim`` on two free loopback ports, with a throwaway workload."""

    def __init__(self, tcti: str, state_dir: Path, token: str, *, ports: tuple[int, int] | None = None) -> None:
        self.state_dir = state_dir
        workload = state_dir / "workload"
        if not workload.exists():
            (workload / "config").mkdir(parents=True)
            (workload / "docker-compose.yml").write_bytes(COMPOSE_V1)
            (workload / "config" / "feed.toml").write_bytes(CONFIG_V1)
        token_file = state_dir / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        internal, external = ports or (free_port(), free_port())
        self.ports = (internal, external)
        self.internal = f"http://127.0.0.1:{internal}"
        self.external = f"http://127.0.0.1:{external}"
        executable = Path(sys.executable).parent / "cvm-agent"
        self.log = (state_dir / "agent.log").open("ab")
        self.process = subprocess.Popen(  # noqa: S603 (our own console script)
            [str(executable if executable.exists() else shutil.which("cvm-agent") or "cvm-agent"),
             "--platform", "sim", "--tpm", tcti, "--state-dir", str(state_dir), "--workload-dir", str(workload),
             "--internal", self.internal.removeprefix("http://"), "--external", self.external.removeprefix("http://"),
             "--token-file", str(token_file), "--runner", "true", "--image-loader", "true"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + AGENT_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PlatformError(Reason.PLATFORM_UNAVAILABLE,
                                    f"cvm-agent exited ({self.process.returncode}); see {self.state_dir}/agent.log")
            try:
                http_json("GET", self.internal + "/healthz", timeout=2)
                http_json("GET", self.external + "/healthz", timeout=2)
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise PlatformError(Reason.PLATFORM_UNAVAILABLE, "cvm-agent did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def fund(w3: Web3, address: str, wei: int = 10**20) -> None:
    """Development chain only: give an account ether (anvil_setBalance)."""
    w3.provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]


def _cvm_transaction(w3: Web3, agent: AgentProcess, cvm: str, to: str, data: bytes) -> tuple[str, int]:
    """Have the CVM's key (inside the agent) sign a transaction; broadcast it; return (hash, gas used)."""
    sender = Web3.to_checksum_address(cvm)
    gas = w3.eth.estimate_gas({"from": sender, "to": Web3.to_checksum_address(to), "data": data})
    base = int(w3.eth.get_block("latest").get("baseFeePerGas") or 0)
    tx = {"chainId": w3.eth.chain_id, "nonce": w3.eth.get_transaction_count(sender), "to": to, "data": "0x" + data.hex(),
          "gas": gas + gas // 5, "maxFeePerGas": 2 * base + 10**9, "maxPriorityFeePerGas": 10**9, "value": 0,
          "type": 2}
    signed = http_json("POST", agent.internal + "/sign-transaction", json.dumps({"transaction": tx}).encode(),
                   {"Content-Type": "application/json"})
    tx_hash = w3.eth.send_raw_transaction(bytes.fromhex(signed["raw_transaction"][2:]))
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1:
        raise ChainError(Reason.CHAIN_REVERTED, "the CVM's transaction reverted")
    return "0x" + bytes(tx_hash).hex(), int(receipt["gasUsed"])


def _refusal(call: Any, sender: str, abi: Any) -> ChainError | None:
    """The custom error a call from ``sender`` reverts with, or None if it would succeed."""
    try:
        call.estimate_gas({"from": sender})
    except Exception as exc:  # noqa: BLE001 - web3 raises several types; the revert data is what matters
        data = getattr(exc, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            return decode_revert(bytes.fromhex(data[2:]), abi)
        return ChainError(Reason.CHAIN_REVERTED, str(exc))
    return None


def run_demo(workdir: Path, echo: Callable[[str], None] = click.echo) -> DemoResult:
    """Run every step in ``workdir``; everything started is stopped before returning or raising."""
    result = DemoResult()
    progress = Progress(9, echo)
    with ExitStack() as stack:
        with progress.step("Starting anvil, swtpm and cvm-agent (sim platform)"):
            anvil = stack.enter_context(AnvilProcess())
            w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
            tpm = start_swtpm(workdir / "swtpm")
            stack.callback(tpm.stop)
            agent = AgentProcess(tpm.tcti, workdir / "agent", token=Account.create().key.hex())
            stack.callback(agent.stop)
            agent.wait_ready()
            token = (workdir / "agent" / "token").read_text()
            identity = http_json("GET", agent.external + "/identity")
            result.cvm_address = Web3.to_checksum_address(identity["cvm_address"])
            result.endpoints = [anvil.url, agent.internal, agent.external]
            progress.note(f"anvil {anvil.url}, swtpm {tpm.tcti}, agent {agent.external}")
            progress.note(f"CVM address {result.cvm_address} (key created in the agent, never leaves it)")

        owner, relayer_key, outsider = Account.create(), Account.create(), Account.create()
        for account in (owner, relayer_key, outsider):
            fund(w3, account.address)
        sim_ark = load_certificates(workdir / "agent" / "sim" / "ark.pem")[0]

        with progress.step("Deploying CvmRegistry pinned to AMD's roots and the sim platform's dev ARK"):
            registry = deploy_registry(w3, account=owner, amd_roots=True, dev_root=sim_ark)
            result.registry = registry.address
            progress.note(f"registry {registry.address}")

        with progress.step("Publishing the golden measurement read from the agent"):
            golden = GoldenMeasurement.from_json(http_json("GET", agent.external + "/golden-measurement"))
            result.golden_id = registry.publish_golden(golden)
            assert registry.last_tx is not None
            result.transactions.append(("publishGolden", registry.last_tx.tx_hash, registry.last_tx.gas_used))
            # The CVM's operator consents to this golden: only then does the agent sign the consent
            # registerCvm requires, so nobody else can move the CVM to another golden it satisfies.
            http_json("POST", agent.external + "/golden-consents",
                      json.dumps({"golden_id": "0x" + result.golden_id.hex()}).encode(),
                      {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            progress.note(f"golden id 0x{result.golden_id.hex()}, consented to by the CVM's operator")

        journal = Journal(workdir / "relayer.db")
        stack.callback(journal.close)
        relay_client = RegistryClient(w3, registry.address, account=relayer_key)
        relayer = Relayer(
            client=relay_client,
            sender=TxSender(w3, relayer_key, journal, decode_revert=lambda d: str(relay_client.decode_revert(d))),
            journal=journal, golden=golden, agents=[agent.external],
            roots=TrustRoots.amd().with_dev_root(sim_ark),
            # Refresh on every pass, so the demo shows a refresh without waiting for expiry.
            policy=RelayPolicy(refresh_margin_s=golden.lifetime_seconds + 1),
        )

        with progress.step("Relaying one attestation (off-chain check first, then registerCvm)"):
            (tick,) = relayer.tick()
            result.relay_results.append(tick)
            if tick.action != "register":
                raise ChainError(Reason.CHAIN_TX_FAILED, f"registration did not happen: {tick.action} {tick.error}")
            result.transactions.append(("registerCvm", tick.tx_hash or "", tick.gas_used or 0))
            result.attested_after_register = registry.is_attested(result.cvm_address)
            progress.note(f"registerCvm {tick.tx_hash}, gas {tick.gas_used}; "
                          f"isAttested = {result.attested_after_register}")

        with progress.step("Calling the example AttestedPriceFeed dApp from the CVM and from another address"):
            artifact = load_artifact(FEED_ARTIFACT)
            factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
            feed_address = _deploy(w3, owner, factory, registry.address, result.golden_id, result)
            feed = w3.eth.contract(address=Web3.to_checksum_address(feed_address), abi=artifact["abi"])
            fund(w3, result.cvm_address)
            data = bytes.fromhex(feed.encode_abi("report", args=[4242])[2:])
            tx_hash, gas = _cvm_transaction(w3, agent, result.cvm_address, feed_address, data)
            result.transactions.append(("feed.report (from the CVM)", tx_hash, gas))
            result.gated_accepted_value = int(feed.functions.latestValue().call())
            result.gated_refusal = _refusal(feed.functions.report(1), outsider.address, artifact["abi"])
            progress.note(f"from the CVM: accepted, latestValue = {result.gated_accepted_value}")
            progress.note(f"from {outsider.address}: refused with "
                          f"{_error_name(result.gated_refusal)} [{_reason(result.gated_refusal)}]")

        with progress.step("Refreshing the attestation (quote only, bound AK)"):
            (tick,) = relayer.tick()
            result.relay_results.append(tick)
            if tick.action != "refresh":
                raise ChainError(Reason.CHAIN_TX_FAILED, f"refresh did not happen: {tick.action} {tick.error}")
            result.transactions.append(("refreshCvm", tick.tx_hash or "", tick.gas_used or 0))
            progress.note(f"refreshCvm {tick.tx_hash}, gas {tick.gas_used}")

        with progress.step("Updating the workload (config/feed.toml changes) and relaying again"):
            http_json("POST", agent.external + "/update-workload", _workload_zip(CONFIG_V2),
                  {"Content-Type": "application/zip", "Authorization": f"Bearer {token}"}, timeout=60)
            (tick,) = relayer.tick()
            result.relay_results.append(tick)
            result.stale_refusal = tick.error
            progress.note(f"relayer: {tick.action}, not submitted: {tick.error}")

        with progress.step("Revoking the golden measurement"):
            tx = registry.revoke_golden(result.golden_id)
            result.transactions.append(("revokeGolden", tx.tx_hash, tx.gas_used))
            result.attested_after_revoke = registry.is_attested(result.cvm_address)
            result.gated_refusal_after_revoke = _refusal(feed.functions.report(2), result.cvm_address,
                                                         artifact["abi"])
            progress.note(f"isAttested = {result.attested_after_revoke}; the CVM's own call is now refused with "
                          f"{_error_name(result.gated_refusal_after_revoke)}")

        with progress.step("Stopping everything"):
            stack.close()

    echo("")
    echo("Summary")
    echo(f"  registry  {result.registry}")
    echo(f"  CVM       {result.cvm_address}")
    echo(f"  golden    0x{result.golden_id.hex()}")
    print_transactions(result.transactions, echo)
    return result


def print_transactions(transactions: list[tuple[str, str, int]], echo: Callable[[str], None]) -> None:
    """The summary's transaction lines: what, gas used, hash."""
    for what, tx_hash, gas in transactions:
        echo(f"  {what:<28} gas {gas:>10,}  {tx_hash}")


def _deploy(w3: Web3, owner: Any, factory: Any, registry: str, golden_id: bytes, result: DemoResult) -> str:
    tx = factory.constructor(registry, golden_id).build_transaction({
        "from": owner.address, "nonce": w3.eth.get_transaction_count(owner.address), "chainId": w3.eth.chain_id})
    signed = owner.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    result.transactions.append(("deploy AttestedPriceFeed", "0x" + bytes(tx_hash).hex(), int(receipt["gasUsed"])))
    return str(receipt["contractAddress"])


def _error_name(error: ChainError | None) -> str:
    return "nothing" if error is None else str(error.context.get("error", error.reason.value))


def _reason(error: ChainError | None) -> str:
    return "-" if error is None else error.reason.value
