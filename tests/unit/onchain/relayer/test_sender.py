"""The relayer's sender on a real anvil: journal before broadcast, recovery, reverts.

Replacing stuck transactions: tests/integration/relayer/test_relayer_replacement.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from offchain.errors import ChainError, Reason, RequestError
from onchain.anvil import AnvilProcess
from onchain.relayer.journal import Journal
from onchain.relayer.sender import SendPolicy, TxSender

# The relayer's key for these tests; the fixture funds it with anvil_setBalance.
DEV_KEY = "0x" + "11" * 32
TARGET = Web3.to_checksum_address("0x000000000000000000000000000000000000c0de")
REVERTER = Web3.to_checksum_address("0x000000000000000000000000000000000000dead")
# PUSH4 0xcafebabe, PUSH1 0xe0, SHL, PUSH1 0, MSTORE, PUSH1 4, PUSH1 0, REVERT: reverts with selector cafebabe.
REVERTING_CODE = "0x63cafebabe60e01b60005260046000fd"


@pytest.fixture(scope="module")
def anvil() -> Iterator[AnvilProcess]:
    with AnvilProcess() as chain:
        yield chain


@pytest.fixture()
def w3(anvil: AnvilProcess) -> Iterator[Web3]:
    web3 = Web3(Web3.HTTPProvider(anvil.url))
    web3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    web3.provider.make_request("anvil_setCode", [REVERTER, REVERTING_CODE])  # type: ignore[arg-type]
    web3.provider.make_request(  # type: ignore[arg-type]
        "anvil_setBalance", [Account.from_key(DEV_KEY).address, hex(10**21)])
    yield web3
    web3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


@pytest.fixture()
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "relayer.db")
    yield j
    j.close()


def _sender(w3: Web3, journal: Journal, **policy: float) -> TxSender:
    return TxSender(w3, Account.from_key(DEV_KEY), journal, policy=SendPolicy(**policy),  # type: ignore[arg-type]
                    decode_revert=lambda data: "decoded:" + data.hex())


def _mined_count(w3: Web3, sender: str, nonce: int) -> int:
    """How many mined transactions from ``sender`` used ``nonce`` (scans the short anvil chain)."""
    count = 0
    for n in range(w3.eth.block_number + 1):
        for tx in w3.eth.get_block(n, full_transactions=True)["transactions"]:
            if tx["from"] == sender and tx["nonce"] == nonce:  # type: ignore[index]
                count += 1
    return count


def test_send_journals_and_mines(w3: Web3, journal: Journal) -> None:
    sender = _sender(w3, journal)
    sub = journal.begin_submission("http://agent", TARGET, "register", 1)
    outcome = sender.send(sub, TARGET, b"\x01\x02")
    assert outcome.state == "mined"
    assert outcome.gas_used and outcome.gas_used > 21_000
    assert [tx.hash for tx in journal.txs(sub.id)] == [outcome.tx_hash]
    assert journal.pending() == []


def test_killed_before_broadcast_rebroadcasts_the_same_bytes(w3: Web3, journal: Journal) -> None:
    account = Account.from_key(DEV_KEY)
    sub = journal.begin_submission("http://agent", TARGET, "register", 2)
    nonce = w3.eth.get_transaction_count(account.address, "pending")
    tx = {"type": 2, "chainId": w3.eth.chain_id, "nonce": nonce, "to": TARGET, "data": b"\x03", "gas": 50_000,
          "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9, "value": 0}
    signed = account.sign_transaction(tx)
    journal.record_tx(sub.id, "0x" + bytes(signed.hash).hex(), nonce, bytes(signed.raw_transaction), 10**10, 10**9,
                      sent_block=w3.eth.block_number)
    # The process "dies" here: nothing was broadcast. A new sender recovers from the journal.
    outcomes = _sender(w3, journal).recover()
    assert [o.state for o in outcomes] == ["mined"]
    assert outcomes[0].tx_hash == "0x" + bytes(signed.hash).hex()
    assert _mined_count(w3, account.address, nonce) == 1
    assert journal.pending() == []


def test_killed_after_broadcast_finds_the_receipt_without_resending(w3: Web3, journal: Journal) -> None:
    account = Account.from_key(DEV_KEY)
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    sub = journal.begin_submission("http://agent", TARGET, "refresh", 3)
    first = _sender(w3, journal, receipt_timeout_s=0.3)
    with pytest.raises(ChainError) as excinfo:
        first.send(sub, TARGET, b"\x04")  # broadcast, never mined: gives up without a receipt
    assert excinfo.value.reason is Reason.CHAIN_TX_FAILED
    (journaled,) = journal.txs(sub.id)  # no block went by: time alone never replaces a transaction
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    outcomes = _sender(w3, journal).recover()
    assert [(o.state, o.tx_hash) for o in outcomes] == [("mined", journaled.hash)]
    assert _mined_count(w3, account.address, journaled.nonce) == 1


def test_a_call_that_would_revert_is_never_sent_and_its_reason_is_decoded(w3: Web3, journal: Journal) -> None:
    sub = journal.begin_submission("http://agent", REVERTER, "register", 5)
    outcome = _sender(w3, journal).send(sub, REVERTER, b"\x06")
    assert outcome.state == "reverted"
    assert outcome.error == "decoded:cafebabe"
    assert journal.txs(sub.id) == []
    assert journal.pending() == []


def test_a_second_submission_for_the_same_block_is_refused(journal: Journal) -> None:
    journal.begin_submission("http://agent", TARGET, "register", 6)
    with pytest.raises(RequestError) as excinfo:
        journal.begin_submission("http://agent", TARGET, "register", 6)
    assert excinfo.value.reason is Reason.RELAY_EVIDENCE_REJECTED


def test_a_mined_revert_is_decoded_from_a_replay(w3: Web3, journal: Journal, tmp_path: Path) -> None:
    # Estimation passes (no code yet); the code that reverts arrives before the block is mined.
    target = Web3.to_checksum_address("0x000000000000000000000000000000000000beef")
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    sub = journal.begin_submission("http://agent", target, "register", 7)
    sender = _sender(w3, journal, receipt_timeout_s=20)
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.setdefault("outcome", sender.send(sub, target, b"\x07")))
    thread.start()
    watcher = Journal(tmp_path / "relayer.db")
    deadline = time.monotonic() + 20
    while not watcher.txs(sub.id) and time.monotonic() < deadline:
        thread.join(0.05)
    watcher.close()
    w3.provider.make_request("anvil_setCode", [target, REVERTING_CODE])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    thread.join(20)
    outcome = result["outcome"]
    assert outcome.state == "reverted"  # type: ignore[attr-defined]
    assert outcome.tx_hash == journal.txs(sub.id)[0].hash  # type: ignore[attr-defined]
    assert outcome.error == "decoded:cafebabe"  # type: ignore[attr-defined]
