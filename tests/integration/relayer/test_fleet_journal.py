"""The shared PostgreSQL journal on a real throwaway cluster: leases, fencing, migrations, restarts; the
fleet's command line (relay agents, relay fund, status and errors as JSON) and the metrics endpoint."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from eth_account import Account
from web3 import Web3

from offchain.errors import Reason, RequestError
from onchain.anvil import AnvilProcess
from onchain.relayer.cli import relay
from onchain.relayer.journal import PG_SCHEMA_VERSION, PostgresJournal
from onchain.relayer.metrics import RelayMetrics
from onchain.relayer.pgcluster import PostgresCluster, postgres_available
from onchain.relayer.relayer import TickResult

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not installed (scripts/setup installs it)"),
]

AGENTS = ["http://agent-a", "http://agent-b", "http://agent-c"]
CVM = "0x00000000000000000000000000000000000c0001"
_names = count()


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture()
def url(pg: PostgresCluster) -> str:
    return pg.create_database(f"journal_{next(_names)}")


def _member(url: str, name: str) -> PostgresJournal:
    journal = PostgresJournal(url)
    journal.join_fleet(name, "0x" + name.encode().hex().ljust(40, "0"))
    return journal


def test_a_fresh_database_is_migrated_and_a_newer_one_refused(url: str) -> None:
    PostgresJournal(url).close()
    PostgresJournal(url).close()  # a second start applies nothing
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(PG_SCHEMA_VERSION),)
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema'", (str(PG_SCHEMA_VERSION + 1),))
    with pytest.raises(RequestError) as excinfo:
        PostgresJournal(url)
    assert excinfo.value.reason is Reason.RELAY_JOURNAL_TOO_NEW


def test_leases_are_shared_fairly_and_released_on_exit(url: str) -> None:
    one, two = _member(url, "one"), _member(url, "two")
    try:
        for agent in AGENTS:
            assert one.add_agent(agent)
        assert not one.add_agent(AGENTS[0])  # already stored
        assert [lease.agent_url for lease in one.acquire_leases(30)] == AGENTS  # alone: all of them
        assert two.acquire_leases(30) == []  # all leased; its heartbeat now counts
        assert len(one.acquire_leases(30)) == 2  # two relayers: ceil(3 / 2), the extra released
        assert [lease.agent_url for lease in two.acquire_leases(30)] == [AGENTS[2]]
        one.release_leases()
        assert len(two.acquire_leases(30)) == 2  # its fair share, at once
        assert {e.event for e in two.lease_events()} == {"taken", "released"}
    finally:
        one.close()
        two.close()


def test_a_relayer_paused_past_its_lease_records_nothing(url: str) -> None:
    slow, other = _member(url, "slow"), _member(url, "other")
    try:
        slow.add_agent(AGENTS[0])
        (lease,) = slow.acquire_leases(0.3)
        submission = slow.begin_submission(AGENTS[0], CVM, "register", 1)
        time.sleep(0.5)  # the lease expires (the database's clock)
        (taken,) = other.acquire_leases(30)
        assert taken.token == lease.token + 1
        for write in (lambda: slow.begin_submission(AGENTS[0], CVM, "refresh", 2),
                      lambda: slow.record_tx(submission.id, "0x01", 0, b"\x02", 10, 1, sent_block=1),
                      lambda: slow.finish_submission(submission.id, "mined"),
                      lambda: slow.upsert_cvm(AGENTS[0], last_error="late")):
            with pytest.raises(RequestError) as excinfo:
                write()
            assert excinfo.value.reason is Reason.RELAY_LEASE_LOST
        assert other.txs(submission.id) == []  # nothing of the late writes landed
        other.finish_submission(submission.id, "dropped", error="never signed")  # the new owner's write is fine
        with pytest.raises(RequestError) as renew:
            slow.renew_lease(AGENTS[0], 30)
        assert renew.value.reason is Reason.RELAY_LEASE_LOST
        assert [(e.relayer, e.event, e.previous_owner) for e in other.lease_events()][-2:] == [
            ("other", "taken", "slow"), ("slow", "lost", "other")]
    finally:
        slow.close()
        other.close()


def test_a_postgres_restart_is_a_typed_error_then_the_journal_reconnects(pg: PostgresCluster, url: str) -> None:
    journal = _member(url, "r")
    try:
        journal.add_agent(AGENTS[0])
        journal.acquire_leases(60)
        pg.restart()
        with pytest.raises(RequestError) as excinfo:
            journal.upsert_cvm(AGENTS[0], last_error="x")
        assert excinfo.value.reason is Reason.RELAY_JOURNAL_UNAVAILABLE
        journal.upsert_cvm(AGENTS[0], last_error="after the restart")  # reconnected, lease still held
        status = journal.cvm(AGENTS[0])
        assert status is not None and status.last_error == "after the restart"
    finally:
        journal.close()


def test_relay_agents_add_list_remove(url: str) -> None:
    runner = CliRunner()
    added = runner.invoke(relay, ["agents", "add", *AGENTS[:2], "--journal", url, "--json"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.output) == {"ok": True, "added": AGENTS[:2], "already": []}
    listed = runner.invoke(relay, ["agents", "list", "--journal", url, "--json"])
    assert [a["url"] for a in json.loads(listed.output)["agents"]] == AGENTS[:2]
    removed = runner.invoke(relay, ["agents", "remove", AGENTS[0], "--journal", url])
    assert removed.exit_code == 0 and f"removed {AGENTS[0]}" in removed.output
    unknown = runner.invoke(relay, ["agents", "remove", AGENTS[0], "--journal", url, "--json"])
    assert unknown.exit_code == 2 and json.loads(unknown.output)["reason"] == Reason.INPUT_INVALID.value
    bad = runner.invoke(relay, ["agents", "add", "ftp://x", "--journal", url])
    assert bad.exit_code == 2 and bad.output.startswith("[input.invalid]")


def test_relay_status_json_errors_have_their_own_schema(tmp_path: Path) -> None:
    result = CliRunner().invoke(relay, ["status", "--journal", str(tmp_path / "none.db"), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.output) == {"ok": False, "reason": Reason.INPUT_UNREADABLE.value,
                                         "detail": f"no journal at {tmp_path / 'none.db'}"}


def test_relay_with_log_format_json_prints_only_json(tmp_path: Path) -> None:
    golden = tmp_path / "golden.json"
    golden.write_text("{}")
    result = CliRunner().invoke(relay, [
        "--rpc", "http://127.0.0.1:9", "--registry", "0x" + "11" * 20, "--golden", str(golden),
        "--key", "env:CVM_ATTEST_TEST_UNSET_KEY", "--log-format", "json"])
    assert result.exit_code != 0
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines and lines[-1]["reason"] == Reason.CHAIN_RPC_UNAVAILABLE.value and lines[-1]["ok"] is False


def test_relay_fund_tops_each_relayer_up_once(url: str) -> None:
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        funder = Account.create()
        w3.provider.make_request("anvil_setBalance", [funder.address, hex(10**21)])  # type: ignore[arg-type]
        member = _member(url, "to-fund")
        member.add_agent(AGENTS[0])
        member.acquire_leases(30)  # joins the fleet: its sender is in the journal
        member.close()
        target = Account.create().address
        env = {"FUNDER_KEY": funder.key.hex()}
        args = ["fund", "--rpc", anvil.url, "--key", "env:FUNDER_KEY", "--to", target, "--journal", url,
                "--target-eth", "2", "--json"]
        first = CliRunner(env=env).invoke(relay, args)
        assert first.exit_code == 0, first.output
        transfers = json.loads(first.output)["transfers"]
        assert [t["sent_wei"] for t in transfers] == [2 * 10**18, 2 * 10**18]
        assert w3.eth.get_balance(Web3.to_checksum_address(target)) == 2 * 10**18
        again = json.loads(CliRunner(env=env).invoke(relay, args).output)["transfers"]
        assert [t["sent_wei"] for t in again] == [0, 0]  # already at the target: nothing sent


def test_metrics_endpoint_counts_what_the_relayer_did() -> None:
    metrics = RelayMetrics("relayer-x")
    host, port = metrics.serve("127.0.0.1", 0)
    try:
        metrics.observe(TickResult("http://a", "register", CVM, "0x01", 1_500_000))
        metrics.observe(TickResult("http://b", "unreachable", error=Reason.RELAY_AGENT_UNREACHABLE.value))
        metrics.observe(TickResult("http://c", "rejected", error="[policy.measurement_mismatch] x"))
        metrics.observe(TickResult("http://d", "lease_lost", error="[relay.lease_lost] y"))
        metrics.balance_low.set(1)
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
    finally:
        metrics.close()
    assert 'cvm_relayer_attestations_total{action="register"} 1.0' in text
    assert 'cvm_relayer_failures_total{reason="relay.agent_unreachable"} 1.0' in text
    assert 'cvm_relayer_failures_total{reason="policy.measurement_mismatch"} 1.0' in text
    assert "relay.lease_lost" not in text  # another relayer has it: not a failure
    assert "cvm_relayer_gas_used_total 1.5e+06" in text
    assert "cvm_relayer_balance_low 1.0" in text
