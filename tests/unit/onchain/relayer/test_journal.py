"""The relayer's journal: schema 1 journals are migrated, one proof per CVM is in flight, stuck states."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from offchain.errors import Reason, RequestError
from onchain.relayer.journal import SCHEMA_VERSION, Journal, open_journal

CVM = "0x00000000000000000000000000000000000c0001"
OTHER_CVM = "0x00000000000000000000000000000000000c0002"

# The schema of journals written before stuck transactions had a state (schema 1), verbatim.
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cvm (
    agent_url      TEXT PRIMARY KEY,
    cvm_address    TEXT,
    attested_until INTEGER,
    last_block     INTEGER,
    last_tx        TEXT,
    last_error     TEXT,
    updated_at     INTEGER NOT NULL
);
CREATE TABLE submission (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_url      TEXT NOT NULL,
    cvm_address    TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('register', 'refresh')),
    block_number   INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'mined', 'reverted', 'dropped')),
    error          TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (cvm_address, kind, block_number)
);
CREATE TABLE tx (
    hash           TEXT PRIMARY KEY,
    submission_id  INTEGER NOT NULL REFERENCES submission(id),
    nonce          INTEGER NOT NULL,
    raw            BLOB NOT NULL,
    max_fee        INTEGER NOT NULL,
    priority_fee   INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    gas_used       INTEGER
);
INSERT INTO meta VALUES ('schema', '1');
INSERT INTO submission VALUES (1, 'http://agent', '0x00000000000000000000000000000000000c0001', 'register', 10,
                               'mined', NULL, 100, 100);
INSERT INTO submission VALUES (2, 'http://agent', '0x00000000000000000000000000000000000c0001', 'refresh', 20,
                               'pending', NULL, 200, 200);
INSERT INTO tx VALUES ('0xaa', 1, 0, x'02', 3000000000, 1000000000, 100, 21000);
INSERT INTO tx VALUES ('0xbb', 2, 1, x'02', 3000000000, 1000000000, 200, NULL);
"""


@pytest.fixture()
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.db")


def test_a_schema_1_journal_is_migrated_keeping_every_record(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
    journal = Journal(path)
    try:
        assert [(s.id, s.state) for s in journal.submissions()] == [(1, "mined"), (2, "pending")]
        (pending,) = journal.pending()
        (tx,) = journal.txs(pending.id)
        assert (tx.hash, tx.nonce, tx.sent_block) == ("0xbb", 1, 0)  # signed before the upgrade: long unmined
        journal.mark_stuck(pending.id, "[relay.fee_cap_reached] test")  # the new state passes the CHECK
        assert [s.state for s in journal.pending()] == ["stuck"]
        assert journal.begin_submission("http://agent", OTHER_CVM, "register", 30).id == 3  # ids go on
    finally:
        journal.close()
    reopened = Journal(path)  # and a migrated journal opens as schema 2
    try:
        assert [s.state for s in reopened.submissions()] == ["mined", "stuck", "pending"]
    finally:
        reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(SCHEMA_VERSION),)


@pytest.mark.parametrize(("version", "reason"), [
    pytest.param(str(SCHEMA_VERSION + 1), Reason.RELAY_JOURNAL_TOO_NEW, id="newer-than-the-code"),
    pytest.param("0", Reason.RELAY_JOURNAL_CORRUPT, id="zero"),
    pytest.param("two", Reason.RELAY_JOURNAL_CORRUPT, id="not-a-number"),
])
def test_a_journal_of_an_unknown_schema_is_refused(tmp_path: Path, version: str, reason: Reason) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1.replace("('schema', '1')", f"('schema', '{version}')"))
    with pytest.raises(RequestError) as excinfo:
        Journal(path)
    assert excinfo.value.reason is reason


@pytest.mark.parametrize(("state", "reason"), [
    pytest.param("pending", Reason.RELAY_EVIDENCE_REJECTED, id="pending"),
    pytest.param("stuck", Reason.RELAY_FEE_CAP_REACHED, id="stuck"),
])
def test_one_proof_per_cvm_in_flight(journal: Journal, state: str, reason: Reason) -> None:
    first = journal.begin_submission("http://agent", CVM, "register", 1)
    if state == "stuck":
        journal.mark_stuck(first.id, "[relay.fee_cap_reached] test")
    with pytest.raises(RequestError) as excinfo:
        journal.begin_submission("http://agent", CVM, "refresh", 2)
    assert excinfo.value.reason is reason
    assert journal.begin_submission("http://other", OTHER_CVM, "register", 2).state == "pending"  # others go on
    journal.finish_submission(first.id, "mined")
    assert journal.begin_submission("http://agent", CVM, "refresh", 2).state == "pending"  # settled: next proof


def test_a_new_version_makes_a_stuck_submission_pending_again(journal: Journal) -> None:
    sub = journal.begin_submission("http://agent", CVM, "register", 1)
    journal.record_tx(sub.id, "0x01", 7, b"\x02", 100, 10, sent_block=5)
    journal.mark_stuck(sub.id, "[relay.fee_cap_reached] test")
    stuck = journal.submission(sub.id)
    assert stuck is not None and (stuck.state, stuck.error) == ("stuck", "[relay.fee_cap_reached] test")
    assert journal.highest_pending_nonce() == 7
    stuck_below = journal.stuck_below(8)
    assert stuck_below is not None and stuck_below.id == sub.id
    assert journal.stuck_below(7) is None  # not behind itself
    journal.record_tx(sub.id, "0x02", 7, b"\x02", 113, 12, sent_block=9)
    again = journal.submission(sub.id)
    assert again is not None and (again.state, again.error) == ("pending", None)
    assert [(tx.hash, tx.sent_block) for tx in journal.txs(sub.id)] == [("0x01", 5), ("0x02", 9)]
    journal.mark_stuck(sub.id, "[relay.fee_cap_reached] test")
    journal.finish_submission(sub.id, "mined")
    journal.mark_stuck(sub.id, "[relay.fee_cap_reached] late")  # a settled submission stays settled
    settled = journal.submission(sub.id)
    assert settled is not None and settled.state == "mined"
    assert journal.highest_pending_nonce() is None and journal.pending() == []


@pytest.mark.parametrize(("spec", "reason"), [
    pytest.param("sqlite:", Reason.INPUT_INVALID, id="sqlite-without-path"),
    pytest.param("sqlite:///", Reason.INPUT_INVALID, id="sqlite-empty-path"),
    pytest.param("mysql://h/db", Reason.INPUT_INVALID, id="unknown-scheme"),
])
def test_open_journal_refuses_what_is_not_a_journal(spec: str, reason: Reason) -> None:
    with pytest.raises(RequestError) as excinfo:
        open_journal(spec)
    assert excinfo.value.reason is reason


def test_open_journal_takes_a_sqlite_url_or_a_path(tmp_path: Path) -> None:
    for spec in (f"sqlite:///{tmp_path}/a.db", str(tmp_path / "b.db")):
        journal = open_journal(spec)
        try:
            assert isinstance(journal, Journal) and journal.describe().endswith(".db")
        finally:
            journal.close()
    assert (tmp_path / "a.db").is_file() and (tmp_path / "b.db").is_file()


def test_the_sqlite_journal_fences_a_relayer_whose_lease_was_taken(tmp_path: Path) -> None:
    # The same lease code as PostgreSQL's (tests/integration/relayer/test_fleet_journal.py), on SQLite
    # with the journal's clock, held here so the expiry needs no sleep.
    now = [1000.0]
    first, second = Journal(tmp_path / "j.db", clock=lambda: now[0]), Journal(tmp_path / "j.db", clock=lambda: now[0])
    try:
        first.join_fleet("first", "0x01")
        second.join_fleet("second", "0x02")
        first.add_agent("http://agent")
        (lease,) = first.acquire_leases(10)
        now[0] += 11
        (taken,) = second.acquire_leases(10)
        assert taken.token == lease.token + 1
        with pytest.raises(RequestError) as excinfo:
            first.begin_submission("http://agent", CVM, "register", 1)
        assert excinfo.value.reason is Reason.RELAY_LEASE_LOST
        assert second.begin_submission("http://agent", CVM, "register", 1).relayer == "second"
    finally:
        first.close()
        second.close()
