"""The relayer's journal: what it is about to send, sent, and saw mined; which relayer holds which CVM.

Two backends behind one interface (:class:`SqlJournal`): SQLite (:class:`Journal`, one file, the
embedded default for one relayer on one machine) and PostgreSQL (:class:`PostgresJournal`, shared by
a fleet of relayers on many machines). :func:`open_journal` takes ``sqlite:///path.db``, a bare path,
or ``postgresql://...``.

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

**Leases (a fleet).** The agents to relay for are rows of the journal (``cvm-cli relay agents``).
A relayer that joins the fleet (:meth:`SqlJournal.join_fleet`) relays only for the agents it holds a
lease on: :meth:`SqlJournal.acquire_leases` takes its fair share (agents / live relayers) of the
agents whose lease is free or expired (PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``, so two
relayers never take the same one), renews its own and releases the extra. Each taking of a lease
increments the agent's *fencing token*; every write this journal handle makes for an agent (its CVM
record, its submissions and their transactions) first checks, in the same database transaction,
that the agent's lease is still this relayer's with the token it took, and otherwise raises
``relay.lease_lost``: a relayer that comes back after its lease was taken records nothing for it.
Lease times are the database's clock (PostgreSQL), so relayers on machines whose clocks differ agree.

Each write is one database transaction, so a crash never leaves half a record.
"""

from __future__ import annotations

import abc

import math
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offchain.errors import Reason, RequestError

#: The SQLite journal's schema version (migrated from 1 and 2 on open).
SCHEMA_VERSION = 3
#: The PostgreSQL journal's schema version (its own numbering: migrations from 0, an empty database).
PG_SCHEMA_VERSION = 1

#: The columns of the submission table as schema 2 has them (created fresh, or rebuilt from schema 1).
_SUBMISSION_TABLE_2 = """(
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

#: The fleet's tables (schema 3): the agents, the relayers' heartbeats, the history of leases.
_FLEET_TABLES_SQLITE = (
    "CREATE TABLE agent (url TEXT PRIMARY KEY, added_at INTEGER NOT NULL, lease_owner TEXT,"
    " lease_token INTEGER NOT NULL DEFAULT 0, lease_expires REAL NOT NULL DEFAULT 0)",
    "CREATE TABLE relayer (id TEXT PRIMARY KEY, sender TEXT NOT NULL, last_seen REAL NOT NULL)",
    "CREATE TABLE lease_event (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, agent_url TEXT NOT NULL,"
    " relayer TEXT NOT NULL, token INTEGER NOT NULL, event TEXT NOT NULL, previous_owner TEXT)",
)

_SQLITE_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE cvm (agent_url TEXT PRIMARY KEY, cvm_address TEXT, attested_until INTEGER, last_block INTEGER,"
    " last_tx TEXT, last_error TEXT, updated_at INTEGER NOT NULL)",
    "CREATE TABLE submission " + _SUBMISSION_TABLE_2,
    "ALTER TABLE submission ADD COLUMN relayer TEXT",
    "CREATE TABLE tx (hash TEXT PRIMARY KEY, submission_id INTEGER NOT NULL REFERENCES submission(id),"
    " nonce INTEGER NOT NULL, raw BLOB NOT NULL, max_fee INTEGER NOT NULL, priority_fee INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL, gas_used INTEGER, sent_block INTEGER NOT NULL, sender TEXT)",
    *_FLEET_TABLES_SQLITE,
    f"INSERT INTO meta VALUES ('schema', '{SCHEMA_VERSION}')",
)

#: SQLite migrations: index i takes schema i + 1 to i + 2.
_SQLITE_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1 to 2: a submission may be 'stuck' (SQLite changes a CHECK only by rebuilding the table, as its
    # documentation prescribes: new table, copy, drop, rename), and every version records the block at
    # which it was signed; one journaled before the upgrade counts as signed at block 0, so it is
    # replaced at once if still unmined.
    (
        "ALTER TABLE tx ADD COLUMN sent_block INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE submission_v2 " + _SUBMISSION_TABLE_2,
        "INSERT INTO submission_v2 SELECT id, agent_url, cvm_address, kind, block_number, state, error, created_at,"
        " updated_at FROM submission",
        "DROP TABLE submission",
        "ALTER TABLE submission_v2 RENAME TO submission",
    ),
    # 2 to 3: the fleet: agents stored in the journal, leases, who began a submission and signed a version
    # (NULL in older rows: the journal's one relayer and key).
    (
        "ALTER TABLE submission ADD COLUMN relayer TEXT",
        "ALTER TABLE tx ADD COLUMN sender TEXT",
        *_FLEET_TABLES_SQLITE,
    ),
)

#: PostgreSQL migrations: index i takes schema i to i + 1 (0: an empty database).
_PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE cvm (agent_url TEXT PRIMARY KEY, cvm_address TEXT, attested_until BIGINT, last_block BIGINT,"
        " last_tx TEXT, last_error TEXT, updated_at BIGINT NOT NULL)",
        "CREATE TABLE submission (id BIGSERIAL PRIMARY KEY, agent_url TEXT NOT NULL, cvm_address TEXT NOT NULL,"
        " kind TEXT NOT NULL CHECK (kind IN ('register', 'refresh')), block_number BIGINT NOT NULL,"
        " state TEXT NOT NULL CHECK (state IN ('pending', 'stuck', 'mined', 'reverted', 'dropped')), error TEXT,"
        " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, relayer TEXT,"
        " UNIQUE (cvm_address, kind, block_number))",
        "CREATE INDEX submission_in_flight ON submission (agent_url) WHERE state IN ('pending', 'stuck')",
        "CREATE TABLE tx (hash TEXT PRIMARY KEY, submission_id BIGINT NOT NULL REFERENCES submission(id),"
        " nonce BIGINT NOT NULL, raw BYTEA NOT NULL, max_fee NUMERIC(78) NOT NULL, priority_fee NUMERIC(78) NOT NULL,"
        " created_at BIGINT NOT NULL, gas_used BIGINT, sent_block BIGINT NOT NULL, sender TEXT, seq BIGSERIAL)",
        "CREATE INDEX tx_submission ON tx (submission_id)",
        "CREATE TABLE agent (url TEXT PRIMARY KEY, added_at BIGINT NOT NULL, lease_owner TEXT,"
        " lease_token BIGINT NOT NULL DEFAULT 0, lease_expires DOUBLE PRECISION NOT NULL DEFAULT 0)",
        "CREATE TABLE relayer (id TEXT PRIMARY KEY, sender TEXT NOT NULL, last_seen DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE lease_event (id BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, agent_url TEXT NOT NULL,"
        " relayer TEXT NOT NULL, token BIGINT NOT NULL, event TEXT NOT NULL, previous_owner TEXT)",
    ),
)

_IN_FLIGHT = "('pending', 'stuck')"
_SUBMISSION_COLUMNS = "s.id, s.agent_url, s.cvm_address, s.kind, s.block_number, s.state, s.error, s.relayer"
_CVM_COLUMNS = "agent_url, cvm_address, attested_until, last_block, last_tx, last_error, updated_at"
_TX_COLUMNS = "hash, submission_id, nonce, raw, max_fee, priority_fee, created_at, sent_block, sender"


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
    #: The relayer (its fleet id) that began it; None in a journal of one relayer.
    relayer: str | None = None


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
    #: The address that signed it; None in rows journaled before schema 3 (the journal's one key).
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """An agent this relayer may relay for, until ``expires_at`` (database clock), under ``token``."""

    agent_url: str
    token: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """A stored agent and who holds its lease (``cvm-cli relay agents list``, ``relay status``)."""

    url: str
    added_at: int
    lease_owner: str | None
    lease_token: int
    lease_expires: float


@dataclass(frozen=True, slots=True)
class RelayerRecord:
    """A fleet member's heartbeat: its id, its sender address, when it last took or renewed leases."""

    id: str
    sender: str
    last_seen: float


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    """One line of the lease history: who took (or released, or lost) which agent, with which token."""

    at: float
    agent_url: str
    relayer: str
    token: int
    #: "taken", "released" or "lost"
    event: str
    previous_owner: str | None


class SqlJournal(abc.ABC):
    """The journal's interface and its SQL, shared by the SQLite and PostgreSQL backends.

    Queries are written with ``?`` placeholders; a backend translates them. Subclasses provide the
    connection, transactions, the lease clock and the row-locking clauses.
    """

    #: Appended to a SELECT of rows this transaction will update (PostgreSQL: "FOR UPDATE").
    _lock = ""
    #: Appended to the SELECT of leases to take (PostgreSQL: "FOR UPDATE SKIP LOCKED").
    _lock_skip = ""
    #: How a submission's versions are ordered after ``created_at`` (insertion order).
    _tx_order = "rowid"
    #: The database error a violated UNIQUE constraint raises.
    _integrity_error: type[Exception] = sqlite3.IntegrityError

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._holder: str | None = None
        self._sender: str | None = None
        #: The leases this handle took: agent URL -> fencing token.
        self._held: dict[str, int] = {}

    # --- what a backend provides ---------------------------------------------------------------
    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the journal is, for messages (never a password)."""

    @abc.abstractmethod
    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (empty for a statement without a result)."""

    @abc.abstractmethod
    def _execute(self, sql: str, args: Sequence[object] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abc.abstractmethod
    def _tx(self) -> Any:
        """A context manager: one database transaction (rolled back when the block raises)."""

    def _lease_now(self) -> float:
        """The clock leases are measured by (PostgreSQL: the database's, shared by the fleet)."""
        return float(self._clock())

    def _now(self) -> int:
        return int(self._clock())

    # --- the fleet: agents and leases --------------------------------------------------------------
    @property
    def holder(self) -> str | None:
        """The fleet id this handle relays as (None: not a fleet member, no lease checks)."""
        return self._holder

    def join_fleet(self, relayer_id: str, sender: str) -> None:
        """Relay as ``relayer_id`` (signing with ``sender``): from now on every write for an agent checks
        this handle's lease on it."""
        self._holder, self._sender = relayer_id, sender

    def add_agent(self, url: str) -> bool:
        """Store an agent to relay for; False if it was already stored."""
        with self._tx():
            return self._execute("INSERT INTO agent (url, added_at) VALUES (?, ?) ON CONFLICT (url) DO NOTHING",
                                 (url, self._now())) == 1

    def remove_agent(self, url: str) -> bool:
        """Forget an agent: whoever holds its lease stops relaying for it; False if it was not stored."""
        with self._tx():
            return self._execute("DELETE FROM agent WHERE url = ?", (url,)) == 1

    def agents(self) -> list[AgentRecord]:
        rows = self._query("SELECT url, added_at, lease_owner, lease_token, lease_expires FROM agent ORDER BY url")
        return [AgentRecord(r[0], int(r[1]), r[2], int(r[3]), float(r[4])) for r in rows]

    def relayers(self) -> list[RelayerRecord]:
        rows = self._query("SELECT id, sender, last_seen FROM relayer ORDER BY id")
        return [RelayerRecord(r[0], r[1], float(r[2])) for r in rows]

    def lease_events(self, agent_url: str | None = None) -> list[LeaseEvent]:
        query = "SELECT at, agent_url, relayer, token, event, previous_owner FROM lease_event"
        args: tuple[object, ...] = ()
        if agent_url is not None:
            query, args = query + " WHERE agent_url = ?", (agent_url,)
        return [LeaseEvent(float(r[0]), r[1], r[2], int(r[3]), r[4], r[5])
                for r in self._query(query + " ORDER BY id", args)]

    def held(self) -> list[str]:
        """The agents this handle holds leases on (as of its last acquire or renew)."""
        return sorted(self._held)

    def acquire_leases(self, ttl_s: float) -> list[Lease]:
        """Renew this relayer's leases, release what exceeds its fair share, take free or expired ones up
        to it; the leases held afterwards. The share is ceil(agents / relayers seen within ``ttl_s``)."""
        me, sender = self._fleet_member()
        with self._tx():
            now = self._lease_now()
            self._execute("INSERT INTO relayer (id, sender, last_seen) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE"
                          " SET sender = excluded.sender, last_seen = excluded.last_seen", (me, sender, now))
            ((live,),) = self._query("SELECT COUNT(*) FROM relayer WHERE last_seen >= ?", (now - ttl_s,))
            ((total,),) = self._query("SELECT COUNT(*) FROM agent")
            share = math.ceil(int(total) / max(int(live), 1))
            held = dict(self._held)
            lost = []
            for url, token in sorted(held.items()):
                if not self._execute("UPDATE agent SET lease_expires = ? WHERE url = ? AND lease_owner = ?"
                                     " AND lease_token = ?", (now + ttl_s, url, me, token)):
                    del held[url]  # taken over, or the agent was removed
                    lost.append(url)
            for url in sorted(held)[share:]:
                self._execute("UPDATE agent SET lease_expires = 0 WHERE url = ? AND lease_token = ?", (url, held[url]))
                self._lease_event(now, url, me, held.pop(url), "released", me)
            if len(held) < share:
                candidates = self._query(
                    "SELECT url, lease_owner, lease_token FROM agent WHERE lease_owner IS NULL OR lease_expires < ?"
                    " OR lease_owner = ? ORDER BY lease_expires, url LIMIT ?" + self._lock_skip,
                    (now, me, share + len(held)))
                for url, owner, token in candidates:
                    if len(held) >= share:
                        break
                    if url in held:
                        continue
                    self._execute("UPDATE agent SET lease_owner = ?, lease_token = ?, lease_expires = ? WHERE url = ?",
                                  (me, int(token) + 1, now + ttl_s, url))
                    held[url] = int(token) + 1
                    self._lease_event(now, url, me, int(token) + 1, "taken", owner)
        self._held = held
        for url in lost:
            self._note_lost(url)
        return [Lease(url, token, now + ttl_s) for url, token in sorted(held.items())]

    def renew_lease(self, agent_url: str, ttl_s: float) -> Lease:
        """Extend this relayer's lease on one agent; ``relay.lease_lost`` if it is no longer its."""
        me, _ = self._fleet_member()
        token = self._held.get(agent_url)
        with self._tx():
            now = self._lease_now()
            renewed = token is not None and self._execute(
                "UPDATE agent SET lease_expires = ? WHERE url = ? AND lease_owner = ? AND lease_token = ?",
                (now + ttl_s, agent_url, me, token)) == 1
        if not renewed or token is None:
            self._held.pop(agent_url, None)
            self._note_lost(agent_url)
            raise self._lost(agent_url)
        return Lease(agent_url, token, now + ttl_s)

    def release_leases(self) -> None:
        """Give up every lease this handle holds (a clean exit), so others take them at once."""
        if self._holder is None or not self._held:
            return
        with self._tx():
            now = self._lease_now()
            for url, token in sorted(self._held.items()):
                if self._execute("UPDATE agent SET lease_expires = 0 WHERE url = ? AND lease_owner = ?"
                                 " AND lease_token = ?", (url, self._holder, token)):
                    self._lease_event(now, url, self._holder, token, "released", self._holder)
        self._held = {}

    def _fleet_member(self) -> tuple[str, str]:
        if self._holder is None or self._sender is None:
            raise RuntimeError("join_fleet() first: leases belong to a fleet member")
        return self._holder, self._sender

    def _lease_event(self, at: float, url: str, relayer: str, token: int, event: str, previous: str | None) -> None:
        self._execute("INSERT INTO lease_event (at, agent_url, relayer, token, event, previous_owner)"
                      " VALUES (?, ?, ?, ?, ?, ?)", (at, url, relayer, token, event, previous))

    def _note_lost(self, url: str) -> None:
        """Record in the history that this relayer found its lease on ``url`` gone (best effort)."""
        assert self._holder is not None
        rows = self._query("SELECT lease_owner, lease_token FROM agent WHERE url = ?", (url,))
        with self._tx():
            self._lease_event(self._lease_now(), url, self._holder, int(rows[0][1]) if rows else 0, "lost",
                              rows[0][0] if rows else None)

    def _lost(self, agent_url: str) -> RequestError:
        rows = self._query("SELECT lease_owner, lease_token FROM agent WHERE url = ?", (agent_url,))
        now_held = f"held by {rows[0][0]} (token {rows[0][1]})" if rows else "no longer stored"
        return RequestError(Reason.RELAY_LEASE_LOST,
                            f"the lease of {agent_url} is {now_held}: relayer {self._holder} records nothing for it",
                            agent=agent_url, relayer=self._holder)

    def _fence(self, agent_url: str) -> None:
        """Inside a write transaction: refuse it unless this handle still holds ``agent_url``'s lease."""
        if self._holder is None:
            return
        token = self._held.get(agent_url)
        rows = self._query("SELECT lease_owner, lease_token FROM agent WHERE url = ?" + self._lock, (agent_url,))
        if token is None or not rows or rows[0][0] != self._holder or int(rows[0][1]) != token:
            self._held.pop(agent_url, None)
            raise self._lost(agent_url)

    def _fence_submission(self, submission_id: int) -> None:
        if self._holder is None:
            return
        rows = self._query("SELECT agent_url FROM submission WHERE id = ?", (submission_id,))
        if rows:
            self._fence(rows[0][0])

    # --- CVMs --------------------------------------------------------------------------------
    def upsert_cvm(self, agent_url: str, **fields: object) -> None:
        """Record facts about one agent's CVM; fields are columns of ``cvm``."""
        allowed = {"cvm_address", "attested_until", "last_block", "last_tx", "last_error"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown CVM fields: {sorted(unknown)}")
        with self._tx():
            self._fence(agent_url)
            self._execute("INSERT INTO cvm (agent_url, updated_at) VALUES (?, ?) ON CONFLICT (agent_url) DO NOTHING",
                          (agent_url, self._now()))
            for column, value in fields.items():
                self._execute(f"UPDATE cvm SET {column} = ?, updated_at = ? WHERE agent_url = ?",
                              (value, self._now(), agent_url))

    def cvm(self, agent_url: str) -> CvmStatus | None:
        rows = self._query(f"SELECT {_CVM_COLUMNS} FROM cvm WHERE agent_url = ?", (agent_url,))
        return CvmStatus(*rows[0]) if rows else None

    def cvms(self) -> list[CvmStatus]:
        return [CvmStatus(*row) for row in self._query(f"SELECT {_CVM_COLUMNS} FROM cvm ORDER BY agent_url")]

    # --- submissions and their transactions ------------------------------------------------------
    def begin_submission(self, agent_url: str, cvm_address: str, kind: str, block_number: int) -> Submission:
        """A new proof to send; refuses one for a CVM that has one in flight, and a second one for the
        same CVM, kind and block."""
        now = self._now()
        try:
            with self._tx():
                self._fence(agent_url)
                rows = self._query(
                    f"SELECT {_SUBMISSION_COLUMNS} FROM submission s WHERE s.cvm_address = ?"
                    f" AND s.state IN {_IN_FLIGHT} ORDER BY s.id LIMIT 1", (cvm_address,))
                if rows:
                    _refuse_second_in_flight(Submission(*rows[0]))
                ((submission_id,),) = self._query(
                    "INSERT INTO submission (agent_url, cvm_address, kind, block_number, state, created_at,"
                    " updated_at, relayer) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) RETURNING id",
                    (agent_url, cvm_address, kind, block_number, now, now, self._holder))
        except self._integrity_error:
            raise RequestError(
                Reason.RELAY_EVIDENCE_REJECTED,
                f"a {kind} of {cvm_address} at block {block_number} is already journaled",
            ) from None
        return Submission(int(submission_id), agent_url, cvm_address, kind, block_number, "pending",
                          relayer=self._holder)

    def record_tx(self, submission_id: int, tx_hash: str, nonce: int, raw: bytes, max_fee: int,
                  priority_fee: int, *, sent_block: int, sender: str | None = None) -> None:
        """Journal a signed version of a submission. Call before broadcasting it. A new version of a
        stuck submission (the operator raised the cap) makes it pending again."""
        with self._tx():
            self._fence_submission(submission_id)
            self._execute(
                "INSERT INTO tx (hash, submission_id, nonce, raw, max_fee, priority_fee, created_at, sent_block,"
                " sender) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING",
                (tx_hash, submission_id, nonce, raw, max_fee, priority_fee, self._now(), sent_block, sender),
            )
            self._execute("UPDATE submission SET state = 'pending', error = NULL, updated_at = ?"
                          " WHERE id = ? AND state = 'stuck'", (self._now(), submission_id))

    def mark_stuck(self, submission_id: int, error: str) -> None:
        """The submission is still in flight but its fees are at the cap: no replacement can be signed."""
        with self._tx():
            self._fence_submission(submission_id)
            self._execute(f"UPDATE submission SET state = 'stuck', error = ?, updated_at = ?"
                          f" WHERE id = ? AND state IN {_IN_FLIGHT}", (error, self._now(), submission_id))

    def finish_submission(self, submission_id: int, state: str, *, tx_hash: str | None = None,
                          gas_used: int | None = None, error: str | None = None) -> None:
        with self._tx():
            self._fence_submission(submission_id)
            self._execute("UPDATE submission SET state = ?, error = ?, updated_at = ? WHERE id = ?",
                          (state, error, self._now(), submission_id))
            if tx_hash is not None:
                self._execute("UPDATE tx SET gas_used = ? WHERE hash = ?", (gas_used, tx_hash))

    def pending(self, agent_url: str | None = None, *, agents: Collection[str] | None = None) -> list[Submission]:
        """Submissions still in flight ('pending' or 'stuck'), oldest first; only ``agent_url``'s, or only
        those of ``agents``, if given."""
        query = f"SELECT {_SUBMISSION_COLUMNS} FROM submission s WHERE s.state IN {_IN_FLIGHT}"
        args: tuple[object, ...] = ()
        if agent_url is not None:
            query += " AND s.agent_url = ?"
            args = (agent_url,)
        rows = [Submission(*row) for row in self._query(query + " ORDER BY s.id", args)]
        return rows if agents is None else [s for s in rows if s.agent_url in agents]

    def highest_pending_nonce(self, sender: str | None = None) -> int | None:
        """The highest nonce of any version of a submission in flight (signed by ``sender``, if given, or
        in a row that predates senders): a new transaction takes a later one, even when the node has
        dropped these from its pool."""
        query = (f"SELECT MAX(t.nonce) FROM tx t JOIN submission s ON s.id = t.submission_id"
                 f" WHERE s.state IN {_IN_FLIGHT}")
        args: tuple[object, ...] = ()
        if sender is not None:
            query, args = query + " AND (t.sender = ? OR t.sender IS NULL)", (sender,)
        rows = self._query(query, args)
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def stuck_below(self, nonce: int, sender: str | None = None) -> Submission | None:
        """A stuck submission whose nonce (from ``sender``, if given) is lower than ``nonce``: one that a
        transaction of ``nonce`` waits behind."""
        query = (f"SELECT {_SUBMISSION_COLUMNS} FROM submission s JOIN tx t ON t.submission_id = s.id"
                 f" WHERE s.state = 'stuck' AND t.nonce < ?")
        args: tuple[object, ...] = (nonce,)
        if sender is not None:
            query, args = query + " AND (t.sender = ? OR t.sender IS NULL)", (nonce, sender)
        rows = self._query(query + " ORDER BY t.nonce LIMIT 1", args)
        return Submission(*rows[0]) if rows else None

    def submission(self, submission_id: int) -> Submission | None:
        rows = self._query(f"SELECT {_SUBMISSION_COLUMNS} FROM submission s WHERE s.id = ?", (submission_id,))
        return Submission(*rows[0]) if rows else None

    def txs(self, submission_id: int) -> list[JournalTx]:
        """Every signed version (original and fee-bumped replacements) of a submission, oldest first."""
        rows = self._query(f"SELECT {_TX_COLUMNS} FROM tx WHERE submission_id = ? ORDER BY created_at, "
                           f"{self._tx_order}", (submission_id,))
        return [JournalTx(r[0], int(r[1]), int(r[2]), bytes(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]), r[8])
                for r in rows]

    def submissions(self, state: str | None = None) -> Iterator[Submission]:
        query = f"SELECT {_SUBMISSION_COLUMNS} FROM submission s"
        args: tuple[object, ...] = ()
        if state is not None:
            query += " WHERE s.state = ?"
            args = (state,)
        yield from (Submission(*row) for row in self._query(query + " ORDER BY s.id", args))


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


def _too_new(where: str, version: str, supported: int) -> RequestError:
    return RequestError(Reason.RELAY_JOURNAL_TOO_NEW,
                        f"{where}: journal schema {version} is newer than this cvm-attest understands ({supported});"
                        " upgrade cvm-attest (every relayer of a fleet) before using this journal",
                        schema=version, supported=supported)


class Journal(SqlJournal):
    """The SQLite journal: one file per relayer account and registry (WAL, ``synchronous=FULL``)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self._tx():
                self._migrate()
        except sqlite3.DatabaseError as exc:
            raise RequestError(Reason.RELAY_JOURNAL_CORRUPT, f"{path}: {exc}") from None

    def _migrate(self) -> None:
        tables = {row[0] for row in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            for statement in _SQLITE_SCHEMA:
                self._execute(statement)
            return
        rows = self._query("SELECT value FROM meta WHERE key = 'schema'")
        if not rows or not str(rows[0][0]).isdigit() or int(rows[0][0]) < 1:
            raise RequestError(Reason.RELAY_JOURNAL_CORRUPT, f"{self._path}: no valid journal schema version")
        version = int(rows[0][0])
        if version > SCHEMA_VERSION:
            raise _too_new(str(self._path), str(version), SCHEMA_VERSION)
        for step in _SQLITE_MIGRATIONS[version - 1:]:
            for statement in step:
                self._execute(statement)
        self._execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self._db.close()

    def describe(self) -> str:
        return f"sqlite:///{self._path}"

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return list(self._db.execute(sql, tuple(args)).fetchall())

    def _execute(self, sql: str, args: Sequence[object] = ()) -> int:
        return int(self._db.execute(sql, tuple(args)).rowcount)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection; a
        nested use joins the outer transaction."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


#: Key of the advisory lock under which relayers starting together apply migrations one at a time.
_PG_MIGRATION_LOCK = 0x63766D2D61747473  # "cvm-atts"


class PostgresJournal(SqlJournal):
    """The PostgreSQL journal a fleet of relayers shares (psycopg 3).

    A lost connection (the server restarted, the network failed) raises ``relay.journal_unavailable``
    and is reopened on the next call: the relayer backs off and goes on, and as every write is one
    transaction nothing is half recorded.
    """

    _lock = " FOR UPDATE"
    _lock_skip = " FOR UPDATE SKIP LOCKED"
    _tx_order = "seq"

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time, connect_timeout_s: int = 10) -> None:
        super().__init__(clock=clock)
        import psycopg  # the [onchain] extra; imported here so a SQLite-only relayer never needs it

        self._psycopg = psycopg
        self._integrity_error = psycopg.IntegrityError
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._db: Any = None
        self._in_tx = False
        with self._tx():
            self._query("SELECT pg_advisory_xact_lock(?)", (_PG_MIGRATION_LOCK,))
            self._migrate()

    def _migrate(self) -> None:
        self._execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        rows = self._query("SELECT value FROM meta WHERE key = 'schema'")
        version = 0
        if rows:
            if not str(rows[0][0]).isdigit():
                raise RequestError(Reason.RELAY_JOURNAL_CORRUPT, f"{self.describe()}: schema {rows[0][0]!r}")
            version = int(rows[0][0])
        if version > PG_SCHEMA_VERSION:
            raise _too_new(self.describe(), str(version), PG_SCHEMA_VERSION)
        for step in _PG_MIGRATIONS[version:]:
            for statement in step:
                self._execute(statement)
        self._execute("INSERT INTO meta (key, value) VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE"
                      " SET value = excluded.value", (str(PG_SCHEMA_VERSION),))

    def describe(self) -> str:
        info = self._psycopg.conninfo.conninfo_to_dict(self._url)
        return f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '')}/" \
               f"{info.get('dbname', '')}"

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connection(self) -> Any:
        if self._db is None or self._db.closed or self._db.broken:
            try:
                self._db = self._psycopg.connect(self._url, autocommit=True, connect_timeout=self._connect_timeout_s)
            except self._psycopg.OperationalError as exc:
                self._db = None
                raise self._unavailable(exc) from None
        return self._db

    def _unavailable(self, exc: Exception) -> RequestError:
        return RequestError(Reason.RELAY_JOURNAL_UNAVAILABLE, f"{self.describe()}: {str(exc).strip()}")

    def _run(self, sql: str, args: Sequence[object]) -> Any:
        try:
            return self._connection().execute(sql.replace("?", "%s"), tuple(args))
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
            self.close()
            raise self._unavailable(exc) from None

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        cursor = self._run(sql, args)
        return list(cursor.fetchall()) if cursor.description is not None else []

    def _execute(self, sql: str, args: Sequence[object] = ()) -> int:
        return int(self._run(sql, args).rowcount)

    def _lease_now(self) -> float:
        ((now,),) = self._query("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8")
        return float(now)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        if self._in_tx:
            yield
            return
        try:
            transaction = self._connection().transaction()
            self._in_tx = True
            with transaction:
                yield
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
            self.close()
            raise self._unavailable(exc) from None
        finally:
            self._in_tx = False


def open_journal(spec: str | Path, *, clock: Callable[[], float] = time.time) -> SqlJournal:
    """The journal ``spec`` names: ``postgresql://...`` (or ``postgres://``), ``sqlite:///PATH`` (the
    path after the third slash, so ``sqlite:////abs/j.db`` is absolute, as in SQLAlchemy), or a path."""
    text = str(spec)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresJournal(text, clock=clock)
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///") or len(text) == len("sqlite:///"):
            raise RequestError(Reason.INPUT_INVALID, f"{text}: a SQLite journal is sqlite:///PATH")
        return Journal(Path(text[len("sqlite:///"):]), clock=clock)
    if "://" in text:
        raise RequestError(Reason.INPUT_INVALID, f"{text}: a journal is sqlite:///PATH, postgresql://... or a path")
    return Journal(Path(text), clock=clock)
