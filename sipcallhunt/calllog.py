"""The call log: every hotline call and agent attempt, stored as it happens.

Theory of operation
-------------------
The hotline call flow reports a fresh snapshot of a call's :class:`~sipcallhunt.records.CallRecord`
(and of an attempt's :class:`~sipcallhunt.records.AttemptRecord`) whenever something in it changes.
A :class:`CallLog` store *upserts* them: one row per ``call_id`` and one per ``(call_id, seq)``, each
overwritten by the newer snapshot.  Every upsert is its own committed transaction, so a crash of the
daemon (even ``kill -9``) loses nothing that had already been written.

Every upsert also takes the next value of one store-wide revision counter and keeps it on the row.
``changes_since(cursor)`` returns the rows whose revision is above ``cursor`` (in revision order) and
the new cursor: that is how ``sipcallhunt calls --follow`` shows calls live, and it works the same for
several daemons writing to one shared store.

:class:`SqliteCallLog` is the default store: one SQLite file in WAL mode with ``synchronous=NORMAL``
(a committed upsert survives a crash of the process; after a power failure the last few may be lost),
and readers (``sipcallhunt calls``) never block the writer.  The SQL is kept portable (``INSERT ... ON
CONFLICT ... DO UPDATE``, a counter row updated in the writing transaction, standard types), so that a
PostgreSQL store for daemons sharing one log needs only its own connection handling and placeholders.
The schema is versioned (table ``schema_version``) and upgraded by :data:`MIGRATIONS` on open.

The asyncio daemon never touches the disk itself: :class:`AsyncCallLog` wraps a store with one writer
thread and a queue.  ``write_call``/``write_attempt`` only enqueue (writes happen in order); ``await
flush()`` waits for what was queued before it; ``await close()`` drains the queue and closes the store.
A failed write is logged (with the call's id) and counted, never raised into the call flow.

Durability: the writer commits as soon as it gets to a record, with no timer: whatever queued up
while it was busy goes into the same transaction (a store with ``atomic_batches``), so under load
one commit serves many records and an idle writer commits each at once.  A call's final record is
committed within milliseconds of the call's end (measured: well under 2 ms while the queue is
empty); a ``kill -9`` after that loses nothing.  What a killed daemon cannot write
is the end of the calls it was handling: :meth:`CallLog.close_unfinished`, run when the daemon
starts, closes its node's calls that have no outcome as failed.
"""

from __future__ import annotations

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AsyncCallLog",
    "CallLog",
    "LogRecord",
    "SqliteCallLog",
    "open_call_log",
]

import abc
import asyncio
import contextlib
import enum
import logging
import queue
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Self, TypeVar

import attrs

from sipcallhunt.errors import CallLogError
from sipcallhunt.records import (
    AttemptEnd,
    AttemptRecord,
    CallRecord,
    ConfirmResult,
    DtmfMethod,
    Outcome,
    PinResult,
)

_log = logging.getLogger("sipcallhunt.calllog")

LogRecord = CallRecord | AttemptRecord
"""What a call log stores and what ``changes_since`` returns."""

T = TypeVar("T")

# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # Version 1.  Times are seconds since the epoch (UTC); enums are stored as their string values.
    (
        """CREATE TABLE calls (
            call_id TEXT NOT NULL PRIMARY KEY,
            hotline TEXT NOT NULL,
            caller TEXT NOT NULL,
            caller_uri TEXT NOT NULL,
            sip_call_id TEXT NOT NULL,
            started DOUBLE PRECISION NOT NULL,
            answered DOUBLE PRECISION,
            ended DOUBLE PRECISION,
            pin_result TEXT NOT NULL,
            outcome TEXT,
            agent TEXT,
            agent_number TEXT,
            bridged DOUBLE PRECISION,
            wait_time DOUBLE PRECISION,
            talk_time DOUBLE PRECISION,
            end_reason TEXT,
            node TEXT NOT NULL,
            rev BIGINT NOT NULL
        )""",
        "CREATE INDEX calls_started ON calls (started, call_id)",
        "CREATE INDEX calls_hotline_started ON calls (hotline, started, call_id)",
        "CREATE INDEX calls_rev ON calls (rev)",
        """CREATE TABLE attempts (
            call_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            hunt_round INTEGER NOT NULL,
            agent TEXT NOT NULL,
            agent_number TEXT NOT NULL,
            started DOUBLE PRECISION NOT NULL,
            ringing DOUBLE PRECISION,
            answered DOUBLE PRECISION,
            ended DOUBLE PRECISION,
            confirm TEXT,
            dtmf_method TEXT,
            attempt_end TEXT,
            sip_status INTEGER,
            end_reason TEXT,
            rev BIGINT NOT NULL,
            PRIMARY KEY (call_id, seq)
        )""",
        "CREATE INDEX attempts_rev ON attempts (rev)",
        "CREATE TABLE log_revision (id INTEGER NOT NULL PRIMARY KEY, rev BIGINT NOT NULL)",
        "INSERT INTO log_revision (id, rev) VALUES (1, 0)",
    ),
)
"""Schema migrations: entry ``i`` upgrades a store from version ``i`` to ``i + 1``."""

SCHEMA_VERSION: Final = len(MIGRATIONS)
"""The schema version this sipcallhunt writes and reads."""

# Record field → column, where the name differs (``round``/``end`` are SQL words; ``number`` is vague).
_COLUMN_NAMES: Final = {"round": "hunt_round", "end": "attempt_end", "number": "agent_number"}
_ENUMS: Final[dict[str, type[enum.Enum]]] = {
    "pin_result": PinResult,
    "outcome": Outcome,
    "confirm": ConfirmResult,
    "dtmf_method": DtmfMethod,
    "end": AttemptEnd,
}


@attrs.frozen
class _Table:
    name: str
    record: type[CallRecord] | type[AttemptRecord]
    key: tuple[str, ...]  # column names of the primary key
    fields: tuple[str, ...]  # record field names, in column order

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(_COLUMN_NAMES.get(f, f) for f in self.fields)

    def upsert_sql(self) -> str:
        columns = self.columns
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*columns, "rev") if c not in self.key)
        return (
            f"INSERT INTO {self.name} ({', '.join(columns)}, rev) VALUES ({', '.join('?' * (len(columns) + 1))}) "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates}"
        )

    def select_sql(self) -> str:
        return f"SELECT {', '.join(self.columns)}, rev FROM {self.name}"

    def encode(self, record: LogRecord) -> list[object]:
        values: list[object] = []
        for field in self.fields:
            value = getattr(record, field)
            values.append(value.value if isinstance(value, enum.Enum) else value)
        return values

    def decode(self, row: Sequence[Any], source: str) -> LogRecord:
        kwargs: dict[str, Any] = {}
        for field, value in zip(self.fields, row, strict=True):
            if value is not None and field in _ENUMS:
                try:
                    value = _ENUMS[field](value)
                except ValueError:
                    raise CallLogError(
                        f"{source}: {self.name}.{_COLUMN_NAMES.get(field, field)} holds {value!r}, which this "
                        "version of sipcallhunt does not know"
                    ) from None
            kwargs[field] = value
        return self.record(**kwargs)


_CALLS: Final = _Table("calls", CallRecord, ("call_id",), tuple(f.name for f in attrs.fields(CallRecord)))
_ATTEMPTS: Final = _Table(
    "attempts", AttemptRecord, ("call_id", "seq"), tuple(f.name for f in attrs.fields(AttemptRecord))
)


# --------------------------------------------------------------------------------------------------
# The store interface
# --------------------------------------------------------------------------------------------------


class CallLog(abc.ABC):
    """Where calls and attempts are stored.  Methods raise :class:`~sipcallhunt.errors.CallLogError`."""

    @abc.abstractmethod
    def write_call(self, record: CallRecord) -> None:
        """Insert or replace the call ``record.call_id``; committed before returning."""

    @abc.abstractmethod
    def write_attempt(self, record: AttemptRecord) -> None:
        """Insert or replace the attempt ``(record.call_id, record.seq)``; committed before returning."""

    atomic_batches: ClassVar[bool] = False
    """True when :meth:`write_many` commits all of its records or none."""

    def write_many(self, records: Sequence[LogRecord]) -> None:
        """Store several records, in order; all or none when :attr:`atomic_batches` says so."""
        for record in records:
            if isinstance(record, CallRecord):
                self.write_call(record)
            else:
                self.write_attempt(record)

    @abc.abstractmethod
    def recent_calls(
        self, limit: int = 50, *, hotline: str | None = None, since: float | None = None
    ) -> list[CallRecord]:
        """The latest ``limit`` calls, newest first; only ``hotline``'s, only those started at or after ``since``."""

    @abc.abstractmethod
    def get_call(self, call_id: str) -> CallRecord | None:
        """The call ``call_id``, or None."""

    @abc.abstractmethod
    def attempts(self, call_id: str) -> list[AttemptRecord]:
        """The agent attempts of call ``call_id``, by ``seq``."""

    @abc.abstractmethod
    def changes_since(self, cursor: int, limit: int = 1000) -> tuple[list[LogRecord], int]:
        """Records written after ``cursor`` (oldest change first, at most ``limit``) and the cursor after them.

        Start with 0 for everything, or with :meth:`latest_cursor` for what changes from now on.  A record
        changed several times since ``cursor`` appears once, in its latest state.
        """

    @abc.abstractmethod
    def latest_cursor(self) -> int:
        """The cursor after the latest change."""

    @abc.abstractmethod
    def integrity_check(self) -> str:
        """The store's own consistency check: ``"ok"`` or a description of the damage."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store (idempotent)."""

    def unfinished_calls(self, node: str) -> list[CallRecord]:
        """``node``'s calls without an outcome (in progress, or left so by a daemon that died)."""
        return [c for c in self.recent_calls(1_000_000) if c.outcome is None and c.node == node]

    def close_unfinished(self, node: str, reason: str) -> list[CallRecord]:
        """Close ``node``'s calls (and their attempts) that have no end: a daemon that was killed
        (``kill -9``, a crash, a power cut) never wrote one.  Call it when the daemon starts, before
        it takes calls.  Each becomes ``failed`` with ``reason``; its end time is the last moment
        the log knows of (the real end lies between that and now); attempts end ``shutdown``.
        Returns the closed calls."""
        closed = []
        for record in self.unfinished_calls(node):
            attempts = self.attempts(record.call_id)
            known = [record.started, record.answered, record.bridged]
            for a in attempts:
                known += [a.started, a.ringing, a.answered, a.ended]
            ended = max(t for t in known if t is not None)
            for a in attempts:
                if a.ended is None:
                    self.write_attempt(attrs.evolve(a, ended=ended, end=AttemptEnd.SHUTDOWN, end_reason=reason))
            done = attrs.evolve(
                record,
                ended=ended,
                outcome=Outcome.FAILED,
                end_reason=reason,
                wait_time=None if record.answered is None else (record.bridged or ended) - record.answered,
                talk_time=None if record.bridged is None else ended - record.bridged,
            )
            self.write_call(done)
            closed.append(done)
        return closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_call_log(path: str | Path, *, readonly: bool = False) -> CallLog:
    """Open the call log the configuration names (``[calllog] path``): an SQLite file for now."""
    return SqliteCallLog(path, readonly=readonly)


# --------------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------------


class SqliteCallLog(CallLog):
    """The call log in one SQLite file (created with the current schema when missing, unless ``readonly``).

    Safe to use from several threads (one lock serialises the connection) and from several processes
    (SQLite's own locking; writers wait up to ``timeout`` seconds for each other).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        name = str(self.path)
        if self.path.is_dir():
            raise CallLogError(f"{name}: cannot open the call log: this is a directory")
        if readonly and not self.path.is_file():
            raise CallLogError(f"{name}: no call log here (the file does not exist)")
        if not readonly and not self.path.parent.is_dir():
            raise CallLogError(
                f"{name}: cannot create the call log: the folder {str(self.path.parent)!r} does not exist"
            )
        try:
            if readonly:
                uri = "file:" + urllib.parse.quote(str(self.path.resolve())) + "?mode=ro"
                db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
            else:
                db = sqlite3.connect(name, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise CallLogError(f"{name}: cannot open the call log: {exc}") from None
        self._db = db
        try:
            if not readonly:
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise CallLogError(f"{name}: cannot switch the call log to WAL mode (it stays in {mode!r})")
                db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._migrate()
        except sqlite3.Error as exc:
            self.close()
            raise CallLogError(f"{name}: cannot open the call log: {exc}") from None
        except CallLogError:
            self.close()
            raise

    # ---------------------------------------------------------------------------- schema

    def _version(self, db: sqlite3.Connection) -> int:
        exists = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if exists is None:
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise CallLogError(f"{self.path}: this SQLite file is not a sipcallhunt call log")
            return 0
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        db = self._conn()
        version = self._version(db)
        if version > SCHEMA_VERSION:
            raise CallLogError(
                f"{self.path}: the call log has schema version {version}, written by a newer sipcallhunt "
                f"(this one knows up to version {SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        if self.readonly:
            raise CallLogError(
                f"{self.path}: the call log has schema version {version}; start the daemon once to upgrade it "
                f"to version {SCHEMA_VERSION}"
            )
        db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version(db)  # another process may have migrated meanwhile
            if version == 0:
                db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # ---------------------------------------------------------------------------- helpers

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise CallLogError(f"{self.path}: the call log is closed")
        return self._db

    def _write(self, records: Sequence[LogRecord], what: str) -> None:
        """Store ``records`` in one transaction, each with its own revision (in order)."""
        with self._lock:
            db = self._conn()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("UPDATE log_revision SET rev = rev + ? WHERE id = 1", (len(records),))
                last = db.execute("SELECT rev FROM log_revision WHERE id = 1").fetchone()[0]
                for rev, record in enumerate(records, start=last - len(records) + 1):
                    table = _CALLS if isinstance(record, CallRecord) else _ATTEMPTS
                    db.execute(table.upsert_sql(), [*table.encode(record), rev])
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise CallLogError(f"{self.path}: cannot store {what}: {exc}") from None

    def _query(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._lock:
            try:
                return self._conn().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise CallLogError(f"{self.path}: cannot read the call log: {exc}") from None

    # ---------------------------------------------------------------------------- CallLog

    def write_call(self, record: CallRecord) -> None:
        self._write([record], f"call {record.call_id}")

    def write_attempt(self, record: AttemptRecord) -> None:
        self._write([record], f"attempt {record.seq} of call {record.call_id}")

    atomic_batches: ClassVar[bool] = True

    def write_many(self, records: Sequence[LogRecord]) -> None:
        """One transaction for all of ``records`` (each gets its own revision, in order)."""
        if records:
            self._write(records, f"{len(records)} records")

    def recent_calls(
        self, limit: int = 50, *, hotline: str | None = None, since: float | None = None
    ) -> list[CallRecord]:
        where: list[str] = []
        params: list[object] = []
        if hotline is not None:
            where.append("hotline = ?")
            params.append(hotline)
        if since is not None:
            where.append("started >= ?")
            params.append(since)
        sql = _CALLS.select_sql()
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started DESC, call_id DESC LIMIT ?"
        rows = self._query(sql, [*params, max(0, limit)])
        return [self._call(row) for row in rows]

    def get_call(self, call_id: str) -> CallRecord | None:
        rows = self._query(_CALLS.select_sql() + " WHERE call_id = ?", [call_id])
        return self._call(rows[0]) if rows else None

    def attempts(self, call_id: str) -> list[AttemptRecord]:
        rows = self._query(_ATTEMPTS.select_sql() + " WHERE call_id = ? ORDER BY seq", [call_id])
        return [self._attempt(row) for row in rows]

    def changes_since(self, cursor: int, limit: int = 1000) -> tuple[list[LogRecord], int]:
        limit = max(1, limit)
        changed: list[tuple[int, LogRecord]] = []
        for table in (_CALLS, _ATTEMPTS):
            rows = self._query(table.select_sql() + " WHERE rev > ? ORDER BY rev LIMIT ?", [cursor, limit])
            changed += [(int(row[-1]), table.decode(row[:-1], str(self.path))) for row in rows]
        changed.sort(key=lambda item: item[0])
        changed = changed[:limit]
        return [record for _, record in changed], (changed[-1][0] if changed else cursor)

    def latest_cursor(self) -> int:
        return int(self._query("SELECT rev FROM log_revision WHERE id = 1", [])[0][0])

    def unfinished_calls(self, node: str) -> list[CallRecord]:
        rows = self._query(_CALLS.select_sql() + " WHERE outcome IS NULL AND node = ? ORDER BY started", [node])
        return [self._call(row) for row in rows]

    def integrity_check(self) -> str:
        with self._lock:
            try:
                rows = self._conn().execute("PRAGMA integrity_check").fetchall()
            except sqlite3.DatabaseError as exc:  # damage bad enough that the check itself cannot run
                return str(exc)
        return "\n".join(str(row[0]) for row in rows)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                db, self._db = self._db, None
                try:
                    db.close()
                except sqlite3.Error as exc:
                    _log.warning("%s: closing the call log failed: %s", self.path, exc)

    def _call(self, row: Sequence[Any]) -> CallRecord:
        record = _CALLS.decode(row[:-1], str(self.path))
        assert isinstance(record, CallRecord)
        return record

    def _attempt(self, row: Sequence[Any]) -> AttemptRecord:
        record = _ATTEMPTS.decode(row[:-1], str(self.path))
        assert isinstance(record, AttemptRecord)
        return record

    def journal_mode(self) -> str:
        """SQLite's journal mode of the open file (``"wal"``)."""
        return str(self._query("PRAGMA journal_mode", [])[0][0]).lower()

    def __repr__(self) -> str:
        return f"SqliteCallLog({str(self.path)!r}{', readonly=True' if self.readonly else ''})"


# --------------------------------------------------------------------------------------------------
# The daemon's non-blocking front
# --------------------------------------------------------------------------------------------------


@attrs.frozen(eq=False)
class _Barrier:
    """Resolve ``future`` on ``loop`` once the writer reaches this item; ``stop`` ends the writer."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    stop: bool = False


@attrs.frozen(eq=False)
class _Query:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    function: Callable[[CallLog], Any]


def _settle(future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _record_key(record: LogRecord) -> tuple[object, ...]:
    if isinstance(record, CallRecord):
        return ("call", record.call_id)
    return ("attempt", record.call_id, record.seq)


class AsyncCallLog:
    """A :class:`CallLog` behind one writer thread, for the asyncio daemon (which must never wait on disk).

    ``write_call``/``write_attempt`` return at once; the writer thread stores the records in the order
    they were given.  Failures are logged with the call's id and counted in :attr:`errors`; records
    refused because the queue is full (``max_pending``, a stuck disk) or the log is closed are counted
    in :attr:`dropped`.  Nothing here raises into the call flow.
    """

    LOGGED_ERRORS: Final = 10  # log the first failures one by one, then every 1000th
    BATCH: Final = 500  # records written in one transaction at most

    def __init__(self, store: CallLog, *, max_pending: int = 100_000, name: str = "calllog-writer") -> None:
        self.store = store
        self.max_pending = max_pending
        self.written = 0
        self.errors = 0
        self.dropped = 0
        self._queue: queue.SimpleQueue[LogRecord | _Barrier | _Query] = queue.SimpleQueue()
        self._pending = 0
        self._count_lock = threading.Lock()
        self._closing = False
        self._closed_future: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Records queued and not yet written."""
        return self._pending

    # ---------------------------------------------------------------------------- the event loop's side

    def write_call(self, record: CallRecord) -> None:
        """Queue ``record`` for storing; never blocks, never raises."""
        self._put(record)

    def write_attempt(self, record: AttemptRecord) -> None:
        """Queue ``record`` for storing; never blocks, never raises."""
        self._put(record)

    def _put(self, record: LogRecord) -> None:
        if self._closing or self._pending >= self.max_pending:
            self.dropped += 1
            if self.dropped <= self.LOGGED_ERRORS or self.dropped % 1000 == 0:
                why = "it is closed" if self._closing else f"{self._pending} records are waiting for the disk"
                _log.error(
                    "call log: dropped a record of call %s because %s (%d dropped)", record.call_id, why, self.dropped
                )
            return
        with self._count_lock:
            self._pending += 1
        self._queue.put(record)

    async def flush(self) -> None:
        """Wait until every record queued before this call has been written (or has failed)."""
        if self._closed_future is not None:
            await asyncio.shield(self._closed_future)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Barrier(loop, future))
        await future

    async def query(self, function: Callable[[CallLog], T]) -> T:
        """Run ``function(store)`` on the writer thread, after the records queued so far; its result or error."""
        if self._closing:
            raise CallLogError(f"{self.store!r}: the call log is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Query(loop, future, function))
        return await future

    async def close(self) -> None:
        """Write everything queued, then close the store and end the writer thread (idempotent)."""
        if self._closed_future is None:
            self._closing = True
            loop = asyncio.get_running_loop()
            self._closed_future = loop.create_future()
            self._queue.put(_Barrier(loop, self._closed_future, stop=True))
        await asyncio.shield(self._closed_future)
        self._thread.join(timeout=5.0)  # the thread has finished its work; this returns at once

    # ---------------------------------------------------------------------------- the writer thread

    def _run(self) -> None:
        pending: _Barrier | _Query | None = None
        while True:
            item = pending if pending is not None else self._queue.get()
            pending = None
            if isinstance(item, CallRecord | AttemptRecord):
                # Whatever queued up meanwhile goes into the same transaction: under load one
                # commit (and one wake-up of this thread) serves many records.
                batch: list[LogRecord] = [item]
                while len(batch) < self.BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if isinstance(more, CallRecord | AttemptRecord):
                        batch.append(more)
                    else:
                        pending = more  # a barrier or query waits for the batch before it
                        break
                self._store_batch(batch)
                continue
            if isinstance(item, _Barrier):
                if item.stop:
                    self._close_store()
                self._resolve(item.loop, item.future, None, None)
                if item.stop:
                    return
            elif isinstance(item, _Query):
                try:
                    result, error = item.function(self.store), None
                except Exception as exc:  # noqa: BLE001  # handed to the awaiting caller
                    result, error = None, exc
                self._resolve(item.loop, item.future, result, error)

    def _store_batch(self, batch: list[LogRecord]) -> None:
        if len(batch) == 1 or not self.store.atomic_batches:
            for record in batch:
                self._store(record)
            return
        # Several snapshots of one record in the batch: only the last is written, in its place.
        last: dict[tuple[object, ...], int] = {}
        for index, record in enumerate(batch):
            last[_record_key(record)] = index
        try:
            self.store.write_many([r for i, r in enumerate(batch) if last[_record_key(r)] == i])
        except Exception:  # noqa: BLE001  # nothing was stored: one by one, so one bad record costs only itself
            for record in batch:
                self._store(record)
            return
        self.written += len(batch)
        with self._count_lock:
            self._pending -= len(batch)

    def _store(self, record: LogRecord) -> None:
        try:
            if isinstance(record, CallRecord):
                self.store.write_call(record)
            else:
                self.store.write_attempt(record)
        except CallLogError as exc:
            self._failed(record, str(exc), trace=False)
        except Exception as exc:  # noqa: BLE001  # a bug must not end the writer thread: log it, go on
            self._failed(record, repr(exc), trace=True)
        else:
            self.written += 1
        finally:
            with self._count_lock:
                self._pending -= 1

    def _failed(self, record: LogRecord, message: str, *, trace: bool) -> None:
        self.errors += 1
        if self.errors <= self.LOGGED_ERRORS or self.errors % 1000 == 0:
            what = (
                f"call {record.call_id}"
                if isinstance(record, CallRecord)
                else f"attempt {record.seq} of call {record.call_id}"
            )
            _log.error(
                "call log: cannot store %s: %s (%d failed writes so far)", what, message, self.errors, exc_info=trace
            )

    def _close_store(self) -> None:
        try:
            self.store.close()
        except Exception as exc:  # noqa: BLE001  # closing must finish whatever the store does
            _log.error("call log: closing %r failed: %r", self.store, exc)

    @staticmethod
    def _resolve(
        loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, future, result, error)
