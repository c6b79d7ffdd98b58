"""The relayer's SQLite journal: what it is about to send, sent, and saw mined.

The relayer writes a signed transaction to the journal *before* it broadcasts it, and reads the
journal back at start, so a relayer killed at any moment and restarted:

* re-broadcasts the very same signed bytes (same nonce, same hash) of a transaction it may or may
  not have sent, instead of building a second one: no proof is ever submitted twice;
* learns the outcome of a transaction that was sent but whose receipt it never saw;
* knows, for every signed version of a submission (the original and its fee-bumped replacements,
  all with one nonce), the block at which it was signed, so it replaces only a version that stayed
  unmined for the configured number of blocks;
* keeps every CVM's status (attested until, last transaction, last error) across restarts.

A submission is ``pending`` while in flight, ``stuck`` while in flight at the operator's fee cap
(``relay.fee_cap_reached``: its versions are still watched and re-broadcast, no replacement is
signed), and ends ``mined``, ``reverted`` or ``dropped``. At most one per CVM is in flight.

Each write is one SQLite transaction (``with self._db``), so a crash never leaves half a record.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from offchain.errors import Reason, RequestError

SCHEMA_VERSION = 2

#: The columns of the submission table as schema 2 has them (created fresh, or rebuilt from schema 1).
_SUBMISSION_TABLE = """(
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_url      TEXT NOT NULL,
    cvm_address    TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('register', 'refresh')),
    block_number   INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'stuck', 'mined', 'reverted', 'dropped')),
    error          TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (cvm_address, kind, block_number)
)"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cvm (
    agent_url      TEXT PRIMARY KEY,
    cvm_address    TEXT,
    attested_until INTEGER,
    last_block     INTEGER,
    last_tx        TEXT,
    last_error     TEXT,
    updated_at     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS submission """ + _SUBMISSION_TABLE + """;
CREATE TABLE IF NOT EXISTS tx (
    hash           TEXT PRIMARY KEY,
    submission_id  INTEGER NOT NULL REFERENCES submission(id),
    nonce          INTEGER NOT NULL,
    raw            BLOB NOT NULL,
    max_fee        INTEGER NOT NULL,
    priority_fee   INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    gas_used       INTEGER,
    sent_block     INTEGER NOT NULL
);
"""

#: Schema 1 to 2: a submission may be 'stuck' (SQLite changes a CHECK only by rebuilding the table, as
#: its documentation prescribes: new table, copy, drop, rename), and every version records the block
#: at which it was signed; one journaled before the upgrade counts as signed at block 0, so it is
#: replaced at once if still unmined.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE tx ADD COLUMN sent_block INTEGER NOT NULL DEFAULT 0",
    "CREATE TABLE submission_v2 " + _SUBMISSION_TABLE,
    "INSERT INTO submission_v2 SELECT id, agent_url, cvm_address, kind, block_number, state, error, created_at,"
    " updated_at FROM submission",
    "DROP TABLE submission",
    "ALTER TABLE submission_v2 RENAME TO submission",
    "UPDATE meta SET value = '2' WHERE key = 'schema'",
)
_IN_FLIGHT = "('pending', 'stuck')"
_SUBMISSION_COLUMNS = "s.id, s.agent_url, s.cvm_address, s.kind, s.block_number, s.state, s.error"


@dataclass(frozen=True, slots=True)
class CvmStatus:
    """What the relayer knows of one CVM, as ``cvm-cli relay status`` shows it."""

    agent_url: str
    cvm_address: str | None
    attested_until: int | None
    last_block: int | None
    last_tx: str | None
    last_error: str | None
    updated_at: int


@dataclass(frozen=True, slots=True)
class Submission:
    id: int
    agent_url: str
    cvm_address: str
    kind: str
    block_number: int
    #: "pending", "stuck", "mined", "reverted" or "dropped"
    state: str
    #: Why it did not end mined, or, while stuck, "[relay.fee_cap_reached] ..."
    error: str | None = None


@dataclass(frozen=True, slots=True)
class JournalTx:
    hash: str
    submission_id: int
    nonce: int
    raw: bytes
    max_fee: int
    priority_fee: int
    created_at: int
    #: The chain's latest block when this version was signed: replacement counts blocks from it.
    sent_block: int


class Journal:
    """A relayer's durable record. One file per relayer account and registry."""

    def __init__(self, path: Path, *, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)  # idempotent: CREATE ... IF NOT EXISTS
            with self._tx():
                row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif row[0] == "1":
                    for statement in _MIGRATE_1_TO_2:
                        self._db.execute(statement)
                elif row[0] != str(SCHEMA_VERSION):
                    raise RequestError(Reason.RELAY_JOURNAL_CORRUPT, f"journal schema {row[0]} is not {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise RequestError(Reason.RELAY_JOURNAL_CORRUPT, f"{path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def _now(self) -> int:
        return int(self._clock())

    def _tx(self) -> "_Transaction":
        return _Transaction(self._db)

    # --- CVMs --------------------------------------------------------------------------------
    def upsert_cvm(self, agent_url: str, **fields: object) -> None:
        """Record facts about one agent's CVM; fields are columns of ``cvm``."""
        allowed = {"cvm_address", "attested_until", "last_block", "last_tx", "last_error"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown CVM fields: {sorted(unknown)}")
        with self._tx():
            self._db.execute(
                "INSERT INTO cvm (agent_url, updated_at) VALUES (?, ?) ON CONFLICT(agent_url) DO NOTHING",
                (agent_url, self._now()),
            )
            for column, value in fields.items():
                self._db.execute(f"UPDATE cvm SET {column} = ?, updated_at = ? WHERE agent_url = ?",
                                 (value, self._now(), agent_url))

    def cvm(self, agent_url: str) -> CvmStatus | None:
        row = self._db.execute(
            "SELECT agent_url, cvm_address, attested_until, last_block, last_tx, last_error, updated_at"
            " FROM cvm WHERE agent_url = ?", (agent_url,)).fetchone()
        return CvmStatus(*row) if row else None

    def cvms(self) -> list[CvmStatus]:
        rows = self._db.execute(
            "SELECT agent_url, cvm_address, attested_until, last_block, last_tx, last_error, updated_at"
            " FROM cvm ORDER BY agent_url").fetchall()
        return [CvmStatus(*row) for row in rows]

    # --- submissions and their transactions ------------------------------------------------------
    def begin_submission(self, agent_url: str, cvm_address: str, kind: str, block_number: int) -> Submission:
        """A new proof to send; refuses one for a CVM that has one in flight, and a second one for the
        same CVM, kind and block."""
        now = self._now()
        try:
            with self._tx():
                row = self._db.execute(
                    f"SELECT {_SUBMISSION_COLUMNS} FROM submission s WHERE s.cvm_address = ?"
                    f" AND s.state IN {_IN_FLIGHT} ORDER BY s.id LIMIT 1", (cvm_address,)).fetchone()
                if row is not None:
                    _refuse_second_in_flight(Submission(*row))
                cur = self._db.execute(
                    "INSERT INTO submission (agent_url, cvm_address, kind, block_number, state, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    (agent_url, cvm_address, kind, block_number, now, now),
                )
        except sqlite3.IntegrityError:
            raise RequestError(
                Reason.RELAY_EVIDENCE_REJECTED,
                f"a {kind} of {cvm_address} at block {block_number} is already journaled",
            ) from None
        return Submission(int(cur.lastrowid or 0), agent_url, cvm_address, kind, block_number, "pending")

    def record_tx(self, submission_id: int, tx_hash: str, nonce: int, raw: bytes, max_fee: int,
                  priority_fee: int, *, sent_block: int) -> None:
        """Journal a signed version of a submission. Call before broadcasting it. A new version of a
        stuck submission (the operator raised the cap) makes it pending again."""
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO tx (hash, submission_id, nonce, raw, max_fee, priority_fee, created_at,"
                " sent_block) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (tx_hash, submission_id, nonce, raw, max_fee, priority_fee, self._now(), sent_block),
            )
            self._db.execute("UPDATE submission SET state = 'pending', error = NULL, updated_at = ?"
                             " WHERE id = ? AND state = 'stuck'", (self._now(), submission_id))

    def mark_stuck(self, submission_id: int, error: str) -> None:
        """The submission is still in flight but its fees are at the cap: no replacement can be signed."""
        with self._tx():
            self._db.execute(f"UPDATE submission SET state = 'stuck', error = ?, updated_at = ?"
                             f" WHERE id = ? AND state IN {_IN_FLIGHT}", (error, self._now(), submission_id))

    def finish_submission(self, submission_id: int, state: str, *, tx_hash: str | None = None,
                          gas_used: int | None = None, error: str | None = None) -> None:
        with self._tx():
            self._db.execute("UPDATE submission SET state = ?, error = ?, updated_at = ? WHERE id = ?",
                             (state, error, self._now(), submission_id))
            if tx_hash is not None:
                self._db.execute("UPDATE tx SET gas_used = ? WHERE hash = ?", (gas_used, tx_hash))

    def pending(self, agent_url: str | None = None) -> list[Submission]:
        """Submissions still in flight ('pending' or 'stuck'), oldest first; only ``agent_url``'s if given."""
        query = f"SELECT {_SUBMISSION_COLUMNS} FROM submission s WHERE s.state IN {_IN_FLIGHT}"
        args: tuple[object, ...] = ()
        if agent_url is not None:
            query += " AND s.agent_url = ?"
            args = (agent_url,)
        return [Submission(*row) for row in self._db.execute(query + " ORDER BY s.id", args).fetchall()]

    def highest_pending_nonce(self) -> int | None:
        """The highest nonce of any version of a submission in flight: a new transaction takes a later one,
        even when the node has dropped these from its pool."""
        row = self._db.execute(
            f"SELECT MAX(t.nonce) FROM tx t JOIN submission s ON s.id = t.submission_id"
            f" WHERE s.state IN {_IN_FLIGHT}").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def stuck_below(self, nonce: int) -> Submission | None:
        """A stuck submission whose nonce is lower than ``nonce``: one that a transaction of ``nonce`` waits behind."""
        row = self._db.execute(
            f"SELECT {_SUBMISSION_COLUMNS} FROM submission s JOIN tx t ON t.submission_id = s.id"
            f" WHERE s.state = 'stuck' AND t.nonce < ? ORDER BY t.nonce LIMIT 1", (nonce,)).fetchone()
        return Submission(*row) if row else None

    def submission(self, submission_id: int) -> Submission | None:
        row = self._db.execute(f"SELECT {_SUBMISSION_COLUMNS} FROM submission s WHERE s.id = ?",
                               (submission_id,)).fetchone()
        return Submission(*row) if row else None

    def txs(self, submission_id: int) -> list[JournalTx]:
        """Every signed version (original and fee-bumped replacements) of a submission, oldest first."""
        rows = self._db.execute(
            "SELECT hash, submission_id, nonce, raw, max_fee, priority_fee, created_at, sent_block FROM tx"
            " WHERE submission_id = ? ORDER BY created_at, rowid", (submission_id,)).fetchall()
        return [JournalTx(row[0], row[1], row[2], bytes(row[3]), row[4], row[5], row[6], row[7]) for row in rows]

    def submissions(self, state: str | None = None) -> Iterator[Submission]:
        query = f"SELECT {_SUBMISSION_COLUMNS} FROM submission s"
        args: tuple[object, ...] = ()
        if state is not None:
            query += " WHERE s.state = ?"
            args = (state,)
        for row in self._db.execute(query + " ORDER BY s.id", args):
            yield Submission(*row)


def _refuse_second_in_flight(current: Submission) -> None:
    """One proof per CVM in flight: a second would wait behind the first, or replace it."""
    if current.state == "stuck":
        raise RequestError(
            Reason.RELAY_FEE_CAP_REACHED,
            f"the {current.kind} of {current.cvm_address} (submission {current.id}) is still in flight, stuck at"
            " the fee cap",
            submission=current.id,
        )
    raise RequestError(
        Reason.RELAY_EVIDENCE_REJECTED,
        f"the {current.kind} of {current.cvm_address} (submission {current.id}) is still in flight",
        submission=current.id,
    )


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
