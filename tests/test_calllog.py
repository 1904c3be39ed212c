"""The call log: SQLite store (upserts, queries, changes, schema, crash safety) and AsyncCallLog."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from sipcallhunt import calllog
from sipcallhunt.calllog import (
    MIGRATIONS,
    SCHEMA_VERSION,
    AsyncCallLog,
    CallLog,
    LogRecord,
    SqliteCallLog,
    open_call_log,
)
from sipcallhunt.errors import CallLogError, ConfigError
from sipcallhunt.records import (
    AttemptEnd,
    AttemptRecord,
    CallRecord,
    ConfirmResult,
    DtmfMethod,
    Outcome,
    PinResult,
)

T0 = 1_700_000_000.0


def call(call_id: str = "c1", *, hotline: str = "support", started: float = T0, **changes: Any) -> CallRecord:
    record = CallRecord(
        call_id=call_id,
        hotline=hotline,
        caller="+4930123456",
        caller_uri="sip:+4930123456@pbx.example.org",
        sip_call_id=f"{call_id}@pbx",
        started=started,
    )
    return attrs.evolve(record, **changes)


def attempt(call_id: str = "c1", seq: int = 1, **changes: Any) -> AttemptRecord:
    record = AttemptRecord(call_id=call_id, seq=seq, round=1, agent="Alice", number="201", started=T0 + 2 + seq)
    return attrs.evolve(record, **changes)


FULL_CALL = call(
    "full",
    answered=T0 + 0.5,
    ended=T0 + 130.25,
    pin_result=PinResult.OK,
    outcome=Outcome.CONNECTED,
    agent="Alice",
    agent_number="201",
    bridged=T0 + 20.0,
    wait_time=19.5,
    talk_time=110.25,
    end_reason="Alice accepted and hung up after 1 min 50 s",
    node="alpha",
)
FULL_ATTEMPT = attempt(
    "full",
    2,
    round=2,
    ringing=T0 + 4.0,
    answered=T0 + 9.0,
    ended=T0 + 130.25,
    confirm=ConfirmResult.ACCEPTED,
    dtmf_method=DtmfMethod.RFC4733,
    end=AttemptEnd.CALLER_HUNG_UP,
    sip_status=200,
    end_reason="the caller hung up",
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "calls.sqlite3"


@pytest.fixture
def log(db: Path) -> Iterator[SqliteCallLog]:
    store = SqliteCallLog(db)
    yield store
    store.close()


# ----------------------------------------------------------------------------------- round trips, upserts


def test_every_field_round_trips(log: SqliteCallLog) -> None:
    # Every field differs from its default, so a column that is not stored or read back would show.
    for field in attrs.fields(CallRecord):
        if field.default is not attrs.NOTHING:
            assert getattr(FULL_CALL, field.name) != field.default, field.name
    for field in attrs.fields(AttemptRecord):
        if field.default is not attrs.NOTHING:
            assert getattr(FULL_ATTEMPT, field.name) != field.default, field.name
    log.write_call(FULL_CALL)
    log.write_attempt(FULL_ATTEMPT)
    assert log.get_call("full") == FULL_CALL
    assert log.attempts("full") == [FULL_ATTEMPT]
    got = log.get_call("full")
    assert got is not None and type(got.outcome) is Outcome and type(got.pin_result) is PinResult


def test_upsert_keeps_one_row_with_the_latest_snapshot(log: SqliteCallLog, db: Path) -> None:
    first = call("c1")
    log.write_call(first)
    answered = attrs.evolve(first, answered=T0 + 1)
    log.write_call(answered)
    ended = attrs.evolve(answered, ended=T0 + 9, outcome=Outcome.NO_AGENT, end_reason="nobody answered")
    log.write_call(ended)
    log.write_attempt(attempt("c1", 1))
    log.write_attempt(attempt("c1", 2))
    log.write_attempt(attempt("c1", 1, end=AttemptEnd.BUSY, sip_status=486, ended=T0 + 3.5))
    assert log.get_call("c1") == ended
    assert [a.seq for a in log.attempts("c1")] == [1, 2]
    assert log.attempts("c1")[0].end is AttemptEnd.BUSY
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT count(*) FROM calls").fetchone() == (1,)
        assert other.execute("SELECT count(*) FROM attempts").fetchone() == (2,)


def test_queries(log: SqliteCallLog) -> None:
    for i in range(10):
        log.write_call(call(f"c{i}", hotline="sales" if i % 2 else "support", started=T0 + 60 * i))
    log.write_attempt(attempt("c3", 2))
    log.write_attempt(attempt("c3", 1))
    log.write_attempt(attempt("c4", 1))
    assert [c.call_id for c in log.recent_calls()] == [f"c{i}" for i in range(9, -1, -1)]  # newest first
    assert [c.call_id for c in log.recent_calls(3)] == ["c9", "c8", "c7"]
    assert [c.call_id for c in log.recent_calls(3, hotline="support")] == ["c8", "c6", "c4"]
    assert [c.call_id for c in log.recent_calls(since=T0 + 60 * 7)] == ["c9", "c8", "c7"]
    assert [c.call_id for c in log.recent_calls(hotline="sales", since=T0 + 60 * 6)] == ["c9", "c7"]
    assert log.recent_calls(0) == []
    assert log.recent_calls(hotline="nobody") == []
    assert log.get_call("nope") is None
    assert [a.seq for a in log.attempts("c3")] == [1, 2]
    assert log.attempts("nope") == []


def test_same_start_time_orders_by_call_id(log: SqliteCallLog) -> None:
    for call_id in ("b", "a", "c"):
        log.write_call(call(call_id))
    assert [c.call_id for c in log.recent_calls()] == ["c", "b", "a"]


def test_recent_queries_use_the_indexes(log: SqliteCallLog) -> None:
    with sqlite3.connect(log.path) as other:
        for where in ("", "WHERE hotline = 'x'", "WHERE started >= 5", "WHERE hotline = 'x' AND started >= 5"):
            plan = other.execute(
                f"EXPLAIN QUERY PLAN SELECT * FROM calls {where} ORDER BY started DESC, call_id DESC LIMIT 5"
            ).fetchall()
            text = " ".join(str(row[-1]) for row in plan)
            assert "USING INDEX" in text and "TEMP B-TREE" not in text, text


# ------------------------------------------------------------------------------------------- changes


def test_changes_since(log: SqliteCallLog) -> None:
    assert log.changes_since(0) == ([], 0)
    assert log.latest_cursor() == 0
    log.write_call(call("c1"))
    log.write_attempt(attempt("c1", 1))
    log.write_call(call("c2", started=T0 + 5))
    records, cursor = log.changes_since(0)
    assert [_key(r) for r in records] == [("c1",), ("c1", 1), ("c2",)]
    assert cursor == log.latest_cursor() == 3
    assert log.changes_since(cursor) == ([], cursor)
    # c1 changes twice: it shows once, in its latest state, after the earlier change of the attempt.
    log.write_call(call("c1", answered=T0 + 1))
    log.write_attempt(attempt("c1", 1, ringing=T0 + 4))
    log.write_call(call("c1", answered=T0 + 1, ended=T0 + 8, outcome=Outcome.CALLER_HUNG_UP))
    records, cursor2 = log.changes_since(cursor)
    assert [_key(r) for r in records] == [("c1", 1), ("c1",)]
    assert records[1] == call("c1", answered=T0 + 1, ended=T0 + 8, outcome=Outcome.CALLER_HUNG_UP)
    assert cursor2 == 6


def test_changes_since_pages_with_limit(log: SqliteCallLog) -> None:
    for i in range(7):
        log.write_call(call(f"c{i}"))
        log.write_attempt(attempt(f"c{i}", 1))
    seen: list[tuple[object, ...]] = []
    cursor = 0
    for _ in range(20):
        records, cursor = log.changes_since(cursor, limit=3)
        if not records:
            break
        assert len(records) <= 3
        seen += [_key(r) for r in records]
    assert seen == [k for i in range(7) for k in ((f"c{i}",), (f"c{i}", 1))]
    assert cursor == 14


def _key(record: LogRecord) -> tuple[object, ...]:
    return (record.call_id,) if isinstance(record, CallRecord) else (record.call_id, record.seq)


# ------------------------------------------------------------------------------------- SQLite settings


def test_wal_mode_and_synchronous_normal(log: SqliteCallLog, db: Path) -> None:
    log.write_call(call())
    assert log.journal_mode() == "wal"
    assert log._query("PRAGMA synchronous", []) == [(1,)]  # NORMAL
    with sqlite3.connect(db) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # persistent in the file
    assert Path(f"{db}-wal").exists()
    assert log.integrity_check() == "ok"


def test_schema_version_is_recorded_and_kept(db: Path) -> None:
    SqliteCallLog(db).close()
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    with SqliteCallLog(db) as again:  # opening again migrates nothing
        again.write_call(call())
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_migrations_upgrade_an_older_log(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SqliteCallLog(db) as old:
        old.write_call(FULL_CALL)
    monkeypatch.setattr(calllog, "MIGRATIONS", (*MIGRATIONS, ("ALTER TABLE calls ADD COLUMN note TEXT",)))
    monkeypatch.setattr(calllog, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(CallLogError, match="start the daemon once to upgrade"):
        SqliteCallLog(db, readonly=True)
    with SqliteCallLog(db) as new:
        assert new.get_call("full") == FULL_CALL
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION + 1,)]
        assert "note" in [row[1] for row in other.execute("PRAGMA table_info(calls)")]


def test_a_newer_schema_is_refused(db: Path) -> None:
    SqliteCallLog(db).close()
    with sqlite3.connect(db) as other:
        other.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(CallLogError, match=r"calls\.sqlite3.*schema version 99.*newer"):
        SqliteCallLog(db)


def test_unknown_enum_value_is_a_call_log_error(log: SqliteCallLog, db: Path) -> None:
    log.write_call(call())
    with sqlite3.connect(db) as other:
        other.execute("UPDATE calls SET outcome = 'teleported'")
    with pytest.raises(CallLogError, match=r"calls\.outcome holds 'teleported'"):
        log.get_call("c1")


# ------------------------------------------------------------------------------- opening problems


def test_corrupt_file_names_the_file(db: Path) -> None:
    db.write_bytes(b"this is not a database, just some text that happens to be long enough" * 100)
    with pytest.raises(CallLogError, match=rf"^{db}: cannot open the call log: file is not a database"):
        SqliteCallLog(db)


def test_damaged_database_is_reported(db: Path) -> None:
    with SqliteCallLog(db) as store:
        for i in range(300):
            store.write_call(call(f"c{i}", end_reason="x" * 200))
    with sqlite3.connect(db) as other:
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    page = 4096
    data[3 * page : 3 * page + 200] = b"\xff" * 200  # scribble over page 4: the calls primary-key index
    db.write_bytes(bytes(data))
    with SqliteCallLog(db) as store:  # the header is intact, so it opens; the check finds the damage
        assert store.integrity_check() == "database disk image is malformed"
        with pytest.raises(CallLogError, match=rf"^{db}: cannot read the call log: database disk image is malformed"):
            store.get_call("c5")  # looked up through the damaged primary-key index


def test_foreign_sqlite_file_is_refused(db: Path) -> None:
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(CallLogError, match="not a sipcallhunt call log"):
        SqliteCallLog(db)


def test_unwritable_places_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CallLogError, match="is a directory"):
        SqliteCallLog(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CallLogError, match=r"a-file/calls\.sqlite3: cannot create .* does not exist"):
        SqliteCallLog(blocker / "calls.sqlite3")
    with pytest.raises(CallLogError, match="does not exist"):
        SqliteCallLog(tmp_path / "missing" / "calls.sqlite3")


def test_readonly(db: Path) -> None:
    with pytest.raises(CallLogError, match="no call log here"):
        SqliteCallLog(db, readonly=True)
    assert not db.exists()  # not created by a reader
    with SqliteCallLog(db) as writer:
        writer.write_call(call())
        with SqliteCallLog(db, readonly=True) as reader:
            assert reader.get_call("c1") == call()
            writer.write_call(call("c2"))  # a reader does not block the writer, and sees its commits
            assert [c.call_id for c in reader.recent_calls()] == ["c2", "c1"]
            with pytest.raises(CallLogError, match="cannot store call c3"):
                reader.write_call(call("c3"))
    assert isinstance(open_call_log(db, readonly=True), SqliteCallLog)


def test_closed_store_raises_call_log_error(db: Path) -> None:
    store = SqliteCallLog(db)
    store.close()
    store.close()
    with pytest.raises(CallLogError, match="closed"):
        store.write_call(call())


# ------------------------------------------------------------------------------------- crash safety

WRITER = """
import sys
from sipcallhunt.calllog import SqliteCallLog
from sipcallhunt.records import AttemptRecord, CallRecord
log = SqliteCallLog(sys.argv[1])
i = 0
while True:
    call_id = f"call-{i // 3}"
    log.write_call(CallRecord(call_id=call_id, hotline="h", caller="1", caller_uri="sip:1@x",
                              sip_call_id=call_id, started=float(i // 3), end_reason=f"step {i}"))
    log.write_attempt(AttemptRecord(call_id=call_id, seq=1 + i % 2, round=1, agent="a", number="2",
                                    started=float(i), end_reason=f"step {i}"))
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize("run", range(3))
def test_kill_9_loses_nothing_committed(tmp_path: Path, run: int) -> None:
    db = tmp_path / "calls.sqlite3"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True, stderr=subprocess.PIPE
    )
    assert writer.stdout is not None
    deadline = time.monotonic() + 30
    reported = -1
    try:
        while reported < 200 + 97 * run and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            reported = int(line)
    finally:
        writer.send_signal(signal.SIGKILL)
        # Read the rest through the same buffered reader: communicate() would read the pipe's fd
        # directly and miss lines that readline() had already buffered.
        rest = writer.stdout.read()
        err = writer.stderr.read() if writer.stderr is not None else ""
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL, err
    for line in rest.split():
        reported = int(line)  # printed before the kill: committed too
    assert reported >= 200
    assert Path(f"{db}-wal").exists()  # the data comes back from the write-ahead log
    with SqliteCallLog(db, readonly=True) as store:
        assert store.integrity_check() == "ok"
        calls = {c.call_id: c for c in store.recent_calls(100_000)}
        for i in range(reported + 1):
            assert f"call-{i // 3}" in calls
        # Every call's final snapshot is its last step (the one in flight at the kill may be newer).
        for n in range(reported // 3):
            record = calls[f"call-{n}"]
            assert record.end_reason == f"step {3 * n + 2}"
            expected = {1 + step % 2: f"step {step}" for step in (3 * n, 3 * n + 1, 3 * n + 2)}
            assert {a.seq: a.end_reason for a in store.attempts(f"call-{n}")} == expected
        last = calls[f"call-{reported // 3}"]
        assert last.end_reason is not None and int(last.end_reason.split()[1]) >= reported
        assert len(calls) in (reported // 3 + 1, reported // 3 + 2)


# --------------------------------------------------------------------------------------- AsyncCallLog


class RecordingStore(CallLog):
    """A store that remembers what it was given; can be made slow or failing."""

    def __init__(self) -> None:
        self.written: list[LogRecord] = []
        self.threads: set[str] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on: set[str] = set()
        self.bug_on: set[str] = set()
        self.closed = False

    def _write(self, record: LogRecord) -> None:
        self.threads.add(threading.current_thread().name)
        assert self.gate.wait(10)
        if record.call_id in self.fail_on:
            raise CallLogError(f"disk full while writing {record.call_id}")
        if record.call_id in self.bug_on:
            raise ZeroDivisionError("a bug")
        self.written.append(record)

    def write_call(self, record: CallRecord) -> None:
        self._write(record)

    def write_attempt(self, record: AttemptRecord) -> None:
        self._write(record)

    def recent_calls(
        self, limit: int = 50, *, hotline: str | None = None, since: float | None = None
    ) -> list[CallRecord]:
        return [r for r in self.written if isinstance(r, CallRecord)][-limit:]

    def get_call(self, call_id: str) -> CallRecord | None:
        raise CallLogError("not here")

    def attempts(self, call_id: str) -> list[AttemptRecord]:
        return []

    def changes_since(self, cursor: int, limit: int = 1000) -> tuple[list[LogRecord], int]:
        return [], cursor

    def latest_cursor(self) -> int:
        return 0

    def integrity_check(self) -> str:
        return "ok"

    def close(self) -> None:
        self.closed = True


async def test_async_writes_in_order_and_flush_waits() -> None:
    store = RecordingStore()
    front = AsyncCallLog(store)
    expected: list[LogRecord] = []
    for i in range(500):
        record: LogRecord = call(f"c{i % 7}", end_reason=str(i)) if i % 3 else attempt(f"c{i % 7}", i)
        expected.append(record)
        if isinstance(record, CallRecord):
            front.write_call(record)
        else:
            front.write_attempt(record)
    await front.flush()
    assert store.written == expected
    assert front.written == 500 and front.pending == 0 and front.errors == 0
    assert store.threads == {"calllog-writer"}
    await front.close()
    assert store.closed


async def test_async_writes_never_block_the_loop() -> None:
    store = RecordingStore()
    store.gate.clear()  # the disk hangs
    front = AsyncCallLog(store, max_pending=50)
    started = time.perf_counter()
    for i in range(60):
        front.write_call(call(f"c{i}"))
    assert time.perf_counter() - started < 0.5
    assert front.dropped == 60 - 50 and front.pending == 50
    flushed = asyncio.ensure_future(front.flush())
    await asyncio.sleep(0.05)
    assert not flushed.done()  # flush waits for the disk ...
    store.gate.set()
    await asyncio.wait_for(flushed, 10)  # ... and returns once the queue before it is written
    assert [r.call_id for r in store.written] == [f"c{i}" for i in range(50)]
    await front.close()


async def test_async_errors_are_logged_and_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    store = RecordingStore()
    store.fail_on = {"bad"}
    store.bug_on = {"buggy"}
    front = AsyncCallLog(store)
    with caplog.at_level(logging.ERROR, logger="sipcallhunt.calllog"):
        front.write_call(call("good1"))
        front.write_call(call("bad"))
        front.write_attempt(attempt("bad", 3))
        front.write_call(call("buggy"))
        front.write_call(call("good2"))
        await front.flush()
    assert [r.call_id for r in store.written] == ["good1", "good2"]
    assert front.errors == 3 and front.written == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("cannot store call bad: disk full" in m for m in messages)
    assert any("cannot store attempt 3 of call bad" in m for m in messages)
    assert any("call buggy" in m and "ZeroDivisionError" in m for m in messages)
    await front.close()


async def test_async_close_drains_then_drops(caplog: pytest.LogCaptureFixture) -> None:
    store = RecordingStore()
    store.gate.clear()
    front = AsyncCallLog(store)
    for i in range(300):
        front.write_call(call(f"c{i}"))
    closing = asyncio.ensure_future(front.close())
    await asyncio.sleep(0.02)
    front.write_call(call("late"))  # after close began: dropped, logged, not raised
    store.gate.set()
    await asyncio.wait_for(closing, 10)
    assert len(store.written) == 300 and store.closed
    assert front.dropped == 1
    assert "late" in caplog.text
    await front.close()  # idempotent
    await front.flush()  # returns at once after close
    assert not front._thread.is_alive()


async def test_async_query_runs_after_pending_writes() -> None:
    store = RecordingStore()
    front = AsyncCallLog(store)
    front.write_call(call("c1"))
    front.write_call(call("c2"))
    assert [c.call_id for c in await front.query(lambda s: s.recent_calls())] == ["c1", "c2"]
    with pytest.raises(CallLogError, match="not here"):
        await front.query(lambda s: s.get_call("c1"))
    await front.close()
    with pytest.raises(CallLogError, match="closed"):
        await front.query(lambda s: s.recent_calls())


async def test_async_over_sqlite(db: Path) -> None:
    front = AsyncCallLog(SqliteCallLog(db))
    for i in range(50):
        front.write_call(call("c1", end_reason=f"step {i}"))
        front.write_attempt(attempt("c1", 1 + i % 3, end_reason=f"step {i}"))
    await front.flush()
    with SqliteCallLog(db, readonly=True) as reader:  # visible to another connection right after flush
        assert reader.get_call("c1") == call("c1", end_reason="step 49")
        assert [a.end_reason for a in reader.attempts("c1")] == ["step 48", "step 49", "step 47"]
    assert await front.query(lambda s: s.integrity_check()) == "ok"
    await front.close()
    assert front.written == 100 and front.errors == 0


# ------------------------------------------------------------------------------ calls a killed daemon left


def test_close_unfinished_closes_only_this_nodes_open_calls(log: SqliteCallLog) -> None:
    """A daemon killed mid-call leaves rows without an outcome; on its next start they are closed as
    failed, ended at the last moment the log knows of, their open attempts ended ``shutdown``."""
    bridged = call("bridged", node="alpha", answered=T0 + 0.5, bridged=T0 + 10.0, agent="Alice")
    hunting = call("hunting", node="alpha", answered=T0 + 0.5, started=T0 + 1)
    elsewhere = call("elsewhere", node="beta", answered=T0 + 0.5)
    for record in (bridged, hunting, elsewhere, FULL_CALL):
        log.write_call(record)
    log.write_attempt(attempt("bridged", 1, answered=T0 + 9.0, confirm=ConfirmResult.ACCEPTED))
    log.write_attempt(attempt("hunting", 1, ended=T0 + 5.0, end=AttemptEnd.BUSY, sip_status=486))
    log.write_attempt(attempt("hunting", 2, ringing=T0 + 6.0))

    closed = log.close_unfinished("alpha", "interrupted")

    assert [c.call_id for c in closed] == ["bridged", "hunting"]
    assert log.unfinished_calls("alpha") == [] and log.unfinished_calls("beta") == [log.get_call("elsewhere")]
    done = log.get_call("bridged")
    assert done is not None
    assert (done.outcome, done.end_reason, done.ended) == (Outcome.FAILED, "interrupted", T0 + 10.0)
    assert (done.wait_time, done.talk_time) == (9.5, 0.0)
    [agent] = log.attempts("bridged")
    assert (agent.end, agent.ended, agent.end_reason, agent.confirm) == (
        AttemptEnd.SHUTDOWN,
        T0 + 10.0,
        "interrupted",
        ConfirmResult.ACCEPTED,
    )
    done = log.get_call("hunting")
    assert done is not None and done.ended == T0 + 6.0 and done.talk_time is None and done.wait_time == 5.5
    busy, ringing = log.attempts("hunting")
    assert (busy.end, busy.end_reason) == (AttemptEnd.BUSY, None)  # finished attempts stay as they were
    assert (ringing.end, ringing.ended) == (AttemptEnd.SHUTDOWN, T0 + 6.0)
    assert log.get_call("full") == FULL_CALL
    assert log.close_unfinished("alpha", "again") == []


def test_close_unfinished_through_the_generic_interface(log: SqliteCallLog) -> None:
    """Stores without a query of their own find the open calls through recent_calls()."""
    log.write_call(call("open", node="n"))
    log.write_call(call("other", node="m"))
    log.write_call(FULL_CALL)
    assert [c.call_id for c in CallLog.unfinished_calls(log, "n")] == ["open"]
    assert CallLog.unfinished_calls(log, "n") == log.unfinished_calls("n")


async def test_a_record_is_committed_moments_after_it_is_queued(db: Path) -> None:
    """The durability bound behind kill -9: the writer thread commits each record as soon as it gets
    to it (no batching, no timer), so a call's final record is on disk within milliseconds of the
    call's end.  Measured here from write_call() to the row being visible to another connection."""
    writer = AsyncCallLog(SqliteCallLog(db))
    latencies = []
    try:
        with SqliteCallLog(db, readonly=True) as reader:
            for n in range(50):
                record = call(f"c{n}", outcome=Outcome.CONNECTED, ended=T0 + 1)
                queued = time.perf_counter()
                writer.write_call(record)
                deadline = queued + 5.0
                while reader.get_call(record.call_id) is None and time.perf_counter() < deadline:
                    await asyncio.sleep(0)
                latencies.append(time.perf_counter() - queued)
                assert reader.get_call(record.call_id) == record
    finally:
        await writer.close()
    latencies.sort()
    print(f"queued -> committed: median {latencies[25] * 1000:.2f} ms, max {latencies[-1] * 1000:.2f} ms")
    assert latencies[-1] < 5.0


def test_the_daemon_closes_the_calls_of_its_own_node_name(log: SqliteCallLog, tmp_path: Path) -> None:
    """``[calllog] node`` names the daemon in a shared log: at start it closes only its own open calls,
    so a second daemon on the same host (another node name) keeps its live calls."""
    from sipcallhunt.config import parse_config
    from sipcallhunt.runtime.daemon import Daemon

    base = '[sip]\nlisten = "127.0.0.1:5070"\n[[account]]\nname = "pbx"\nregistrar = "sip:127.0.0.1"\n'
    base += 'username = "h"\npassword = "p"\n[calllog]\n'
    config = parse_config(base + 'node = "hotline-1"\n', tmp_path / "a.toml")
    assert config.calllog.node_name == "hotline-1"
    assert parse_config(base, tmp_path / "b.toml").calllog.node_name == socket.gethostname()
    with pytest.raises(ConfigError, match=r"calllog\.node"):
        parse_config(base + 'node = ""\n', tmp_path / "c.toml")
    log.write_call(call("mine", node="hotline-1", answered=T0 + 0.5))
    log.write_call(call("theirs", node="hotline-2", answered=T0 + 0.5))
    Daemon._close_interrupted_calls(log, config.calllog.node_name)
    mine, theirs = log.get_call("mine"), log.get_call("theirs")
    assert mine is not None and mine.outcome is Outcome.FAILED
    assert theirs is not None and theirs.outcome is None


class AtomicRecordingStore(RecordingStore):
    """A recording store that takes batches all or none, and says how it was called."""

    atomic_batches = True

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def write_many(self, records: Sequence[LogRecord]) -> None:
        self.batches.append([f"{r.call_id}/{r.end_reason}" for r in records])
        if any(r.call_id in self.fail_on for r in records):
            raise CallLogError("disk full")
        self.written.extend(records)


async def test_async_batches_what_queued_up_keeping_the_last_snapshot_in_its_place() -> None:
    store = AtomicRecordingStore()
    store.gate.clear()  # the disk is slow: records queue up behind the first
    front = AsyncCallLog(store)
    front.write_call(call("first"))
    await asyncio.sleep(0.05)
    for i, name in enumerate(["a", "b", "a", "c", "b", "a"]):
        front.write_call(call(name, end_reason=str(i)))
    store.gate.set()
    await front.flush()
    assert store.batches == [["c/3", "b/4", "a/5"]]  # one transaction; a's and b's last snapshots only
    assert [r.call_id for r in store.written] == ["first", "c", "b", "a"]
    assert front.written == 7 and front.pending == 0 and front.errors == 0
    await front.close()


async def test_async_a_failed_batch_is_retried_one_by_one(caplog: pytest.LogCaptureFixture) -> None:
    store = AtomicRecordingStore()
    store.fail_on = {"bad"}
    store.gate.clear()
    front = AsyncCallLog(store)
    front.write_call(call("first"))
    await asyncio.sleep(0.05)
    for name in ("x", "bad", "y"):
        front.write_call(call(name))
    store.gate.set()
    with caplog.at_level(logging.ERROR, logger="sipcallhunt.calllog"):
        await front.flush()
    assert [r.call_id for r in store.written] == ["first", "x", "y"]
    assert front.errors == 1 and front.written == 3 and front.pending == 0
    assert any("cannot store call bad" in r.getMessage() for r in caplog.records)
    await front.close()


def test_sqlite_write_many_is_one_transaction_with_a_revision_each(log: SqliteCallLog) -> None:
    log.write_call(call("before"))
    cursor = log.latest_cursor()
    log.write_many([call("c1"), attempt("c1", 1), call("c2")])
    changes, after = log.changes_since(cursor)
    assert [(type(r).__name__, r.call_id) for r in changes] == [
        ("CallRecord", "c1"),
        ("AttemptRecord", "c1"),
        ("CallRecord", "c2"),
    ]
    assert after == cursor + 3
    broken = attrs.evolve(call("c3"), pin_result=object())  # not storable: the whole batch is refused
    with pytest.raises(CallLogError):
        log.write_many([call("c3-ok"), broken])
    assert log.get_call("c3-ok") is None and log.latest_cursor() == after
