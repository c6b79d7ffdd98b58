"""A fleet of three ``cvm-cli relay`` processes sharing a PostgreSQL journal over 16 CVMs, against faults.

Everything is real: PostgreSQL from Debian (a throwaway cluster on a free port), anvil, 16 sim
agents each on its own swtpm (one shared development AMD chain, so one golden measurement serves
them), and the relayers as separate processes, each with its own sender key. Blocks are mined every
second (interval mining), so a send really waits for its receipt and a fault can land between them.

After each fault sequence: every CVM is attested, no proof was submitted twice (the registry's
``CvmRegistered`` events, one per CVM), and the journal says which relayer began each submission,
who signed it, and who took which lease from whom.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from localstack.swtpm import Swtpm, start_swtpm, swtpm_available
from offchain.devamd import DevAmdChain
from offchain.errors import Reason, RequestError
from offchain.policy.golden import GoldenMeasurement
from offchain.trust.certs import load_certificates
from onchain.anvil import AnvilProcess
from onchain.client import RegistryClient
from onchain.demo import AgentProcess, http_json
from onchain.deploy import deploy_registry
from onchain.relayer.cli import relay
from onchain.relayer.journal import PostgresJournal, SqlJournal
from onchain.relayer.pgcluster import PostgresCluster, postgres_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not swtpm_available(), reason="swtpm is not installed (scripts/setup installs it)"),
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not installed (scripts/setup installs it)"),
]

CVMS = 16
RELAYERS = 3
LEASE_S = 5.0
TOKEN = "t" * 32


@dataclass
class Fleet:
    pg: PostgresCluster
    anvil: AnvilProcess
    w3: Web3
    agents: list[AgentProcess]
    cvms: list[str]
    golden: GoldenMeasurement
    golden_file: Path
    ark_file: Path
    owner: LocalAccount


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    shared = root / "shared-sim"
    DevAmdChain.generate().save(shared)
    tpms: list[Swtpm] = []
    agents: list[AgentProcess] = []
    try:
        with PostgresCluster() as pg, AnvilProcess() as anvil:
            for i in range(CVMS):
                state = root / f"agent-{i}"
                shutil.copytree(shared, state / "sim")
                tpms.append(start_swtpm(root / f"swtpm-{i}"))
                agents.append(AgentProcess(tpms[-1].tcti, state, token=TOKEN))
            for agent in agents:
                agent.wait_ready()
            golden = GoldenMeasurement.from_json(http_json("GET", agents[0].external + "/golden-measurement"))
            for agent in agents:  # each CVM's operator consents to the golden it is registered under
                http_json("POST", agent.external + "/golden-consents",
                          json.dumps({"golden_id": "0x" + golden.canonical_id().hex()}).encode(),
                          {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
            golden_file = root / "golden.json"
            golden_file.write_text(json.dumps(golden.to_json()))
            w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 120}))
            cvms = [Web3.to_checksum_address(http_json("GET", a.external + "/identity")["cvm_address"]) for a in agents]
            yield Fleet(pg, anvil, w3, agents, cvms, golden, golden_file, shared / "ark.pem", _funded(w3))
    finally:
        for agent in agents:
            agent.stop()
        for tpm in tpms:
            tpm.stop()


def _funded(w3: Web3) -> LocalAccount:
    account: LocalAccount = Account.create()
    w3.provider.make_request("anvil_setBalance", [account.address, hex(10**22)])  # type: ignore[arg-type]
    return account


class RelayerProcess:
    """One ``cvm-cli relay`` of the fleet, with its own key; its output kept in a log file."""

    def __init__(self, fleet: Fleet, registry: str, journal_url: str, index: int, workdir: Path,
                 key: LocalAccount) -> None:
        self.id = f"relayer-{index}"
        self.key = key
        self.log_path = workdir / f"{self.id}.log"
        env = dict(os.environ, RELAYER_KEY=key.key.hex(), PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own console script)
                [str(Path(sys.executable).parent / "cvm-cli"), "relay", "--rpc", fleet.anvil.url,
                 "--registry", registry, "--golden", str(fleet.golden_file), "--dev-root", str(fleet.ark_file),
                 "--journal", journal_url, "--relayer-id", self.id, "--key", "env:RELAYER_KEY",
                 "--lease-seconds", str(LEASE_S), "--interval", "0.3", "--receipt-timeout", "30",
                 "--log-format", "json"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Run:
    registry: RegistryClient
    journal_url: str
    watcher: SqlJournal
    relayers: list[RelayerProcess]


@pytest.fixture()
def run(fleet: Fleet, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Run]:
    """A fresh registry (every CVM unregistered), a fresh database, three relayers and the 16 agents."""
    registry = deploy_registry(fleet.w3, account=fleet.owner, amd_roots=False,
                               dev_root=load_certificates(fleet.ark_file)[0])
    registry.publish_golden(fleet.golden)
    journal_url = fleet.pg.create_database(request.node.name.replace("test_", "")[:50])
    watcher = PostgresJournal(journal_url)
    _mine_every_second(fleet.w3)
    relayers = [RelayerProcess(fleet, registry.address, journal_url, i, tmp_path, _funded(fleet.w3))
                for i in range(RELAYERS)]
    try:
        # All three join (heartbeat) before the agents exist, so the first to start does not take them all.
        _wait(lambda: len(watcher.relayers()) == RELAYERS, 60, "the relayers never joined", relayers)
        added = CliRunner().invoke(relay, ["agents", "add", *(a.external for a in fleet.agents),
                                           "--journal", journal_url, "--json"])
        assert added.exit_code == 0, added.output
        assert len(json.loads(added.output)["added"]) == CVMS
        yield Run(registry, journal_url, watcher, relayers)
    finally:
        for relayer in relayers:
            relayer.stop()
        watcher.close()
        fleet.w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


def _mine_every_second(w3: Web3) -> None:
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]


def _pause_mining(w3: Web3) -> None:
    w3.provider.make_request("evm_setIntervalMining", [0])  # type: ignore[arg-type]


def _wait(condition: Callable[[], bool], timeout_s: float, what: str, relayers: list[RelayerProcess]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except RequestError as exc:  # the watcher's own connection dropped with a PostgreSQL restart
            if exc.reason is not Reason.RELAY_JOURNAL_UNAVAILABLE:
                raise
        time.sleep(0.02)
    logs = "\n".join(f"--- {r.id}\n" + r.log_path.read_text()[-3000:] for r in relayers if r.log_path.exists())
    pytest.fail(f"{what}\n{logs}")


def _in_flight_of(watcher: SqlJournal, relayer: RelayerProcess, *, signed: bool) -> int | None:
    """A submission ``relayer`` began that is in flight (and, if ``signed``, has a journaled version)."""
    for submission in watcher.pending():
        if submission.relayer == relayer.id and (not signed or watcher.txs(submission.id)):
            return submission.id
    return None


def _in_pool(w3: Web3, tx_hash: str) -> bool:
    """Broadcast and not mined: the node holds it in its pool."""
    tx = w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    return tx is not None and tx["blockNumber"] is None


def _assert_every_cvm_attested_once(fleet: Fleet, run: Run) -> None:
    _wait(lambda: all(run.registry.is_attested(cvm) for cvm in fleet.cvms), 150, "not every CVM was attested",
          run.relayers)
    _wait(lambda: not run.watcher.pending(), 60, "submissions still in flight", run.relayers)
    events = run.registry.contract.events.CvmRegistered.get_logs(from_block=0)
    per_cvm = Counter(Web3.to_checksum_address(e["args"]["cvm"]) for e in events)
    assert per_cvm == Counter(fleet.cvms), "a CVM was registered twice, or not at all"
    mined = [s for s in run.watcher.submissions("mined") if s.kind == "register"]
    assert Counter(s.cvm_address for s in mined) == Counter(fleet.cvms)
    for submission in mined:  # who did what: the relayer that began it, the key that signed what was mined
        assert submission.relayer in {r.id for r in run.relayers}
        assert all(tx.sender in {r.key.address for r in run.relayers} for tx in run.watcher.txs(submission.id))


def test_kill9_mid_send_and_between_send_and_receipt(fleet: Fleet, run: Run) -> None:
    r0, r1, r2 = run.relayers
    # kill -9 in the middle of a send: as soon as relayer-0 has begun a submission.
    _wait(lambda: _in_flight_of(run.watcher, r0, signed=False) is not None, 90, "relayer-0 never sent", run.relayers)
    r0.signal(signal.SIGKILL)
    r0.process.wait()
    killed_mid_send = _in_flight_of(run.watcher, r0, signed=False)

    # kill -9 between send and receipt: mining paused, relayer-1's transaction is in the node's pool.
    _wait(lambda: _in_flight_of(run.watcher, r1, signed=True) is not None, 90, "relayer-1 never sent", run.relayers)
    _pause_mining(fleet.w3)
    submission_id = _in_flight_of(run.watcher, r1, signed=True)
    if submission_id is None:  # it was mined just before the pause: take its next one
        _wait(lambda: _in_flight_of(run.watcher, r1, signed=True) is not None, 60, "relayer-1 never sent again",
              run.relayers)
        submission_id = _in_flight_of(run.watcher, r1, signed=True)
    assert submission_id is not None
    (version,) = run.watcher.txs(submission_id)
    _wait(lambda: _in_pool(fleet.w3, version.hash), 30, "relayer-1's transaction never reached the pool",
          run.relayers)
    r1.signal(signal.SIGKILL)
    r1.process.wait()
    _mine_every_second(fleet.w3)

    # relayer-2 takes the dead relayers' leases once they expire, settles what they left in flight (by
    # hash and by their senders' nonces) and registers the rest.
    _assert_every_cvm_attested_once(fleet, run)
    settled = run.watcher.submission(submission_id)
    assert settled is not None and settled.state == "mined"  # found by its hash, never resent
    assert [tx.hash for tx in run.watcher.txs(submission_id)] == [version.hash]
    if killed_mid_send is not None:
        first = run.watcher.submission(killed_mid_send)
        assert first is not None and first.state in ("mined", "dropped")
    taken_from_dead = [e for e in run.watcher.lease_events()
                       if e.event == "taken" and e.previous_owner in (r0.id, r1.id) and e.relayer == r2.id]
    assert taken_from_dead, "relayer-2 never took a dead relayer's lease"


def test_postgres_restart_and_a_relayer_paused_past_its_lease(fleet: Fleet, run: Run) -> None:
    r0, r1, r2 = run.relayers
    _wait(lambda: len(list(run.watcher.submissions("mined"))) >= 3, 90, "nothing mined", run.relayers)
    fleet.pg.restart()  # every relayer's connection drops; each reconnects on its next journal call

    # relayer-2 stopped (SIGSTOP) with a transaction in flight, for longer than its leases last.
    _wait(lambda: _in_flight_of(run.watcher, r2, signed=True) is not None, 90, "relayer-2 never sent", run.relayers)
    r2.signal(signal.SIGSTOP)
    paused = _in_flight_of(run.watcher, r2, signed=True)
    _wait(lambda: any(e.event == "taken" and e.previous_owner == r2.id for e in run.watcher.lease_events()),
          LEASE_S * 6, "nobody took the paused relayer's leases", run.relayers)
    _assert_every_cvm_attested_once(fleet, run)

    r2.signal(signal.SIGCONT)
    _wait(lambda: any(e.event == "lost" and e.relayer == r2.id for e in run.watcher.lease_events()), 30,
          "the resumed relayer never noticed it lost its leases", run.relayers)
    time.sleep(1.0)  # it goes on with whatever it holds now: still nothing twice
    _assert_every_cvm_attested_once(fleet, run)
    assert r2.process.poll() is None, "the resumed relayer crashed"
    if paused is not None:
        settled = run.watcher.submission(paused)
        assert settled is not None and settled.state == "mined"
    messages = [line for relayer in run.relayers for line in relayer.log()]
    assert any(line.get("reason") == "relay.journal_unavailable" for line in messages), \
        "no relayer noticed the PostgreSQL restart"
    assert all(isinstance(line, dict) for line in messages)  # --log-format json: every line parsed as JSON
