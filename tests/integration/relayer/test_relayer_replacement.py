"""Stuck transactions on a real anvil: the base fee rises past the max fee the relayer offered.

anvil drops a transaction from its pool once a block's base fee passes its max fee, and refuses the
same bytes again until its fees are raised: a busy network pricing a transaction out. Mining is
manual (automine off) and every block gets the base fee the test holds, so the test plays the
network and nothing else; the sender (and its recovery after a restart) gets its transactions mined
without help, or, at the operator's fee cap, reports them stuck while other CVMs are still served.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner
from eth_account import Account
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3RPCError

from offchain.errors import Reason, RequestError
from onchain.anvil import AnvilProcess
from onchain.relayer.cli import relay
from onchain.relayer.journal import Journal, JournalTx
from onchain.relayer.sender import GWEI, Outcome, SendPolicy, TxSender

pytestmark = pytest.mark.integration

T = TypeVar("T")

RELAYER_KEY = "0x" + "22" * 32
TARGET = Web3.to_checksum_address("0x000000000000000000000000000000000000c0de")
CVM_1 = Web3.to_checksum_address("0x00000000000000000000000000000000000c0001")
CVM_2 = Web3.to_checksum_address("0x00000000000000000000000000000000000c0002")
AGENT_1, AGENT_2 = "http://agent-1", "http://agent-2"
REPLACE_AFTER = 3


class Network:
    """Mines anvil's blocks by hand, each with the base fee the test holds."""

    def __init__(self, w3: Web3, base_fee: int) -> None:
        self.w3 = w3
        self.base_fee = base_fee

    def mine(self) -> None:
        self.w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(self.base_fee)])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def mine_until(self, future: Future[T], timeout_s: float = 60.0) -> T:
        """A block every 50 ms until the relayer's call returns; its result."""
        deadline = time.monotonic() + timeout_s
        while not future.done():
            assert time.monotonic() < deadline, "the relayer never returned"
            self.mine()
            time.sleep(0.05)
        return future.result()


@pytest.fixture()
def w3() -> Iterator[Web3]:
    # A chain per test: each holds its own base fee.
    with AnvilProcess() as anvil:
        web3 = Web3(Web3.HTTPProvider(anvil.url))
        funded = [Account.from_key(RELAYER_KEY).address, hex(10**21)]
        web3.provider.make_request("anvil_setBalance", funded)  # type: ignore[arg-type]
        web3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
        yield web3


@pytest.fixture()
def network(w3: Web3) -> Network:
    chain = Network(w3, base_fee=GWEI)
    chain.mine()  # the latest block's base fee is 1 gwei: a first version offers 2 x 1 + 1 = 3 gwei
    return chain


@pytest.fixture()
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "relayer.db"


@pytest.fixture()
def journal(journal_path: Path) -> Iterator[Journal]:
    j = Journal(journal_path)
    yield j
    j.close()


@pytest.fixture()
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def _sender(w3: Web3, journal: Journal, max_fee_wei: int) -> TxSender:
    policy = SendPolicy(replace_after_blocks=REPLACE_AFTER, max_fee_wei=max_fee_wei, receipt_timeout_s=30,
                        poll_interval_s=0.02)
    return TxSender(w3, Account.from_key(RELAYER_KEY), journal, policy=policy)


def _first_version_in_pool(w3: Web3, journal_path: Path, submission_id: int) -> JournalTx:
    """Wait until the relayer has journaled and broadcast its first version (SQLite: one connection per thread)."""
    watcher = Journal(journal_path)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            txs = watcher.txs(submission_id)
            if txs and _in_pool(w3, txs[0].hash):  # journaled first, broadcast right after
                return txs[0]
            time.sleep(0.02)
    finally:
        watcher.close()
    pytest.fail("the relayer never broadcast its transaction")


def _in_pool(w3: Web3, tx_hash: str) -> bool:
    try:
        w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
    except TransactionNotFound:
        return False
    return True


def _mined_versions(w3: Web3, txs: list[JournalTx]) -> list[str]:
    """The journaled versions that have a receipt."""
    mined = []
    for tx in txs:
        try:
            w3.eth.get_transaction_receipt(tx.hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            continue
        mined.append(tx.hash)
    return mined


def _assert_node_replaceable(txs: list[JournalTx], cap: int) -> None:
    """One nonce; each version offers at least +10 % on both fee fields over the one before; none above the cap."""
    assert len({tx.nonce for tx in txs}) == 1
    for before, after in zip(txs, txs[1:]):
        assert after.max_fee * 10 >= before.max_fee * 11 and after.priority_fee * 10 >= before.priority_fee * 11
        assert after.sent_block >= before.sent_block + REPLACE_AFTER  # replaced only after N blocks unmined
    assert all(tx.max_fee <= cap and tx.priority_fee <= tx.max_fee for tx in txs)


def test_a_transaction_priced_out_by_the_base_fee_is_replaced_and_mined(
        w3: Web3, network: Network, journal: Journal, journal_path: Path, pool: ThreadPoolExecutor) -> None:
    cap = 1000 * GWEI
    sender = _sender(w3, journal, cap)
    start_nonce = w3.eth.get_transaction_count(sender.account.address)
    sub = journal.begin_submission(AGENT_1, CVM_1, "register", 1)
    future = pool.submit(sender.send, sub, TARGET, b"\x01")
    first = _first_version_in_pool(w3, journal_path, sub.id)
    network.base_fee = 4 * first.max_fee  # past the journaled max fee: the node drops it
    outcome = network.mine_until(future)

    txs = journal.txs(sub.id)
    assert outcome.state == "mined", outcome.error
    assert len(txs) >= 2 and outcome.tx_hash == txs[-1].hash
    assert txs[-1].max_fee >= network.base_fee > first.max_fee
    _assert_node_replaceable(txs, cap)
    assert _mined_versions(w3, txs) == [outcome.tx_hash]
    assert w3.eth.get_transaction_count(sender.account.address) == start_nonce + 1  # one proof, sent once
    settled = journal.submission(sub.id)
    assert settled is not None and settled.state == "mined" and journal.pending() == []


def test_recovery_after_a_restart_replaces_what_the_node_now_refuses(
        w3: Web3, network: Network, journal: Journal, pool: ThreadPoolExecutor) -> None:
    # A relayer journaled and broadcast a version, then was killed; while it was down the base fee
    # rose past that version's max fee and the node dropped it.
    account = Account.from_key(RELAYER_KEY)
    sub = journal.begin_submission(AGENT_1, CVM_1, "refresh", 2)
    nonce = w3.eth.get_transaction_count(account.address, "pending")
    tx = {"type": 2, "chainId": w3.eth.chain_id, "nonce": nonce, "to": TARGET, "data": b"\x02", "gas": 50_000,
          "maxFeePerGas": 3 * GWEI, "maxPriorityFeePerGas": GWEI, "value": 0}
    signed = account.sign_transaction(tx)
    raw, first_hash = bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex()
    journal.record_tx(sub.id, first_hash, nonce, raw, 3 * GWEI, GWEI, sent_block=w3.eth.block_number)
    w3.eth.send_raw_transaction(raw)
    network.base_fee = 10 * GWEI
    for _ in range(REPLACE_AFTER):
        network.mine()
    with pytest.raises(Web3RPCError):
        w3.eth.send_raw_transaction(raw)  # the same bytes again, as recovery used to send, are refused

    outcomes = network.mine_until(pool.submit(_sender(w3, journal, 1000 * GWEI).recover))

    txs = journal.txs(sub.id)
    assert [o.state for o in outcomes] == ["mined"]
    assert outcomes[0].tx_hash != first_hash and outcomes[0].tx_hash == txs[-1].hash
    assert txs[-1].max_fee >= network.base_fee
    _assert_node_replaceable(txs, 1000 * GWEI)
    assert _mined_versions(w3, txs) == [outcomes[0].tx_hash]
    assert w3.eth.get_transaction_count(account.address) == nonce + 1


def _relay_status(journal_path: Path, *json_flag: str) -> str:
    result = CliRunner().invoke(relay, ["status", "--journal", str(journal_path), *json_flag])
    assert result.exit_code == 0, result.output
    return result.output


def _passes_until_settled(sender: TxSender, network: Network, passes: int = 10) -> list[Outcome]:
    """What the relayer does before each pass: recover; the network mines a block in between."""
    for _ in range(passes):
        outcomes = sender.recover()
        if all(o.state == "mined" for o in outcomes):
            return outcomes
        network.mine()
    pytest.fail(f"still unsettled after {passes} passes: {outcomes}")


def test_at_the_fee_cap_a_submission_is_stuck_with_a_typed_reason_and_other_cvms_are_served(
        w3: Web3, network: Network, journal: Journal, journal_path: Path, pool: ThreadPoolExecutor,
        caplog: pytest.LogCaptureFixture) -> None:
    cap = 5 * GWEI
    sender = _sender(w3, journal, cap)
    start_nonce = w3.eth.get_transaction_count(sender.account.address)
    journal.upsert_cvm(AGENT_1, cvm_address=CVM_1)  # as the relayer records each agent's CVM before sending
    journal.upsert_cvm(AGENT_2, cvm_address=CVM_2)
    first = journal.begin_submission(AGENT_1, CVM_1, "register", 3)
    future = pool.submit(sender.send, first, TARGET, b"\x03")
    _first_version_in_pool(w3, journal_path, first.id)
    network.base_fee = 20 * GWEI  # above the cap: no version the operator allows can be mined
    with caplog.at_level(logging.WARNING, logger="cvm_attest.relayer"):
        outcome = network.mine_until(future)

    txs = journal.txs(first.id)
    assert outcome.state == "stuck" and outcome.tx_hash == txs[-1].hash
    assert outcome.error is not None and outcome.error.startswith(f"[{Reason.RELAY_FEE_CAP_REACHED.value}]")
    assert txs[-1].max_fee == cap
    _assert_node_replaceable(txs, cap)
    stuck = journal.submission(first.id)
    assert stuck is not None and stuck.state == "stuck" and stuck.error == outcome.error
    assert [r.levelno for r in caplog.records if Reason.RELAY_FEE_CAP_REACHED.value in r.getMessage()] == [
        logging.WARNING]

    # relay status shows it, as text and as JSON.
    text = _relay_status(journal_path)
    assert f"in flight: register (submission {first.id}) stuck, nonce {txs[0].nonce}" in text
    assert Reason.RELAY_FEE_CAP_REACHED.value in text
    (line_1, line_2) = [json.loads(line) for line in _relay_status(journal_path, "--json").splitlines()]
    assert [(f["state"], f["tx"], f["max_fee_wei"], f["versions"]) for f in line_1["in_flight"]] == [
        ("stuck", txs[-1].hash, cap, len(txs))]
    assert line_2["in_flight"] == []

    # One proof per CVM in flight: the stuck CVM gets no second one ...
    with pytest.raises(RequestError) as excinfo:
        journal.begin_submission(AGENT_1, CVM_1, "register", 4)
    assert excinfo.value.reason is Reason.RELAY_FEE_CAP_REACHED
    # ... while another CVM is still served: its proof takes the next nonce (the node dropped the
    # stuck one, whose nonce stays reserved) and returns promptly, waiting behind the stuck one.
    second = journal.begin_submission(AGENT_2, CVM_2, "register", 4)
    queued = network.mine_until(pool.submit(sender.send, second, TARGET, b"\x04"))
    (queued_tx,) = journal.txs(second.id)
    assert queued.state == "stuck" and queued_tx.nonce == txs[0].nonce + 1
    assert queued.error is not None and queued.error.startswith(f"[{Reason.RELAY_FEE_CAP_REACHED.value}]")

    # The base fee falls below the cap: the next passes get both mined, without help, in nonce order.
    network.base_fee = GWEI
    outcomes = _passes_until_settled(sender, network)
    assert [(o.submission_id, o.state) for o in outcomes] == [(first.id, "mined"), (second.id, "mined")]
    assert _mined_versions(w3, journal.txs(first.id)) == [outcomes[0].tx_hash]
    assert _mined_versions(w3, journal.txs(second.id)) == [queued_tx.hash]
    assert w3.eth.get_transaction_count(sender.account.address) == start_nonce + 2
    assert journal.pending() == []
    assert all(not json.loads(line)["in_flight"] for line in _relay_status(journal_path, "--json").splitlines())


def test_a_cap_raised_by_the_operator_after_a_restart_unsticks_the_submission(
        w3: Web3, network: Network, journal: Journal, journal_path: Path, pool: ThreadPoolExecutor) -> None:
    sub = journal.begin_submission(AGENT_1, CVM_1, "refresh", 5)
    low = _sender(w3, journal, 4 * GWEI)
    future = pool.submit(low.send, sub, TARGET, b"\x05")
    _first_version_in_pool(w3, journal_path, sub.id)
    network.base_fee = 20 * GWEI
    assert network.mine_until(future).state == "stuck"
    stuck_versions = len(journal.txs(sub.id))

    # Restarted with --max-fee-gwei 100: the next recovery replaces the stuck version and gets it mined.
    outcomes = network.mine_until(pool.submit(_sender(w3, journal, 100 * GWEI).recover))

    txs = journal.txs(sub.id)
    assert [o.state for o in outcomes] == ["mined"]
    assert len(txs) > stuck_versions and txs[-1].max_fee > 4 * GWEI
    assert _mined_versions(w3, txs) == [outcomes[0].tx_hash]
    _assert_node_replaceable(txs, 100 * GWEI)
