"""``sipcallhunt calls``: read the call log.

    sipcallhunt calls -c /etc/sipcallhunt/hotline.toml        recent calls, as a table
    sipcallhunt calls --db calls.sqlite3 --since 2h --attempts with each call's agent attempts
    sipcallhunt calls --db calls.sqlite3 --follow             live, until Ctrl-C
    sipcallhunt calls --db calls.sqlite3 CALL_ID              one call, explained step by step
    sipcallhunt calls ... --json | --csv                      for scripts and spreadsheets

The call log is opened read-only: reading never disturbs the daemon writing it.  Exit status 0, or 1
when the call log (or the configuration naming it) cannot be read or the call does not exist; 2 for
bad options.
"""

from __future__ import annotations

__all__ = ["build_parser", "main", "parse_since"]

import argparse
import contextlib
import csv
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO

import attrs

from sipcallhunt.calllog import CallLog, LogRecord, open_call_log
from sipcallhunt.errors import CallLogError, ConfigError
from sipcallhunt.records import AttemptRecord, CallRecord, ConfirmResult, PinResult

PROG = "sipcallhunt calls"
DEFAULT_DB = Path("calls.sqlite3")

_sleep: Callable[[float], None] = time.sleep  # replaced in tests
_now: Callable[[], float] = time.time

_DURATION_RE = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = (7 * 86400, 86400, 3600, 60, 1)
_TIME_FIELDS = frozenset({"started", "answered", "ended", "bridged", "ringing"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Show the hotline calls from the call log: a table of recent calls (oldest first, the newest "
        "at the bottom), one call explained step by step, or calls live as they happen.",
    )
    parser.add_argument("call_id", nargs="?", metavar="CALL_ID", help="show this call in detail, with its attempts")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-c", "--config", metavar="FILE", help="read the call log's path from this configuration")
    source.add_argument("--db", metavar="PATH", help=f"the call log file (default: ./{DEFAULT_DB})")
    parser.add_argument("-n", "--limit", type=_positive_int, default=50, help="how many calls (default: 50)")
    parser.add_argument("--hotline", metavar="NAME", help="only this hotline's calls")
    parser.add_argument(
        "--since",
        metavar="WHEN",
        help="only calls started since WHEN: a date/time (2024-05-01, '2024-05-01 14:30', ISO 8601), "
        "a duration back from now (30m, 2h, 1d, 1w, 1h30m), 'today' or 'yesterday'",
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON (with --follow: one JSON object per line)")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    parser.add_argument("--attempts", action="store_true", help="include each call's agent attempts")
    parser.add_argument("-f", "--follow", action="store_true", help="keep showing calls as they change (Ctrl-C ends)")
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="how often --follow looks (default: 1)"
    )
    parser.add_argument("--utc", action="store_true", help="show times in UTC instead of local time")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def parse_since(text: str, now: float, tz: tzinfo | None = None) -> float:
    """``--since`` as seconds since the epoch; naive dates and times are in ``tz`` (None: local time).

    Raises ValueError with a message for people.
    """
    text = text.strip()
    match = _DURATION_RE.fullmatch(text)
    if match and any(match.groups()):
        return now - sum(int(g) * unit for g, unit in zip(match.groups(), _UNITS, strict=True) if g)
    current = datetime.fromtimestamp(now, tz).astimezone(tz)
    midnight = current.replace(hour=0, minute=0, second=0, microsecond=0)
    if text.lower() == "today":
        return midnight.timestamp()
    if text.lower() == "yesterday":
        return (midnight - timedelta(days=1)).timestamp()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a date/time (2024-05-01, '2024-05-01 14:30') nor a duration (30m, 2h, 1d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz) if tz is not None else when.astimezone()
    return when.timestamp()


# ------------------------------------------------------------------------------------------------------
# Formatting
# ------------------------------------------------------------------------------------------------------


@attrs.frozen
class _Fmt:
    tz: tzinfo | None  # None: local time

    def dt(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.tz).astimezone(self.tz)

    def when(self, ts: float | None) -> str:
        return "-" if ts is None else self.dt(ts).strftime("%Y-%m-%d %H:%M:%S")

    def clock(self, ts: float) -> str:
        return self.dt(ts).strftime("%H:%M:%S.") + f"{self.dt(ts).microsecond // 1000:03d}"

    def iso(self, ts: float | None) -> str | None:
        return None if ts is None else self.dt(ts).isoformat(timespec="milliseconds")


def _duration(seconds: float | None) -> str:
    """``0:07``, ``12:30``, ``1:02:03``; ``-`` for none."""
    if seconds is None:
        return "-"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _words(value: object) -> str:
    return str(value).replace("_", " ")


def _status(call: CallRecord) -> str:
    """The outcome, or where a call in progress is."""
    if call.outcome is not None:
        return _words(call.outcome)
    if call.ended is not None:
        return "ended"
    if call.bridged is not None:
        return "talking"
    if call.answered is None:
        return "arriving"
    if call.pin_result is PinResult.PENDING:
        return "entering PIN"
    return "waiting"


def _who(name: str | None, number: str | None) -> str:
    if name and number and name != number:
        return f"{name} ({number})"
    return name or number or "-"


_HEADERS = ("TIME", "HOTLINE", "CALLER", "OUTCOME", "AGENT", "WAIT", "TALK", "END REASON")
_RIGHT = frozenset({"WAIT", "TALK"})
_FOLLOW_WIDTHS = (19, 12, 16, 14, 18, 7, 7, 0)
_FOLLOW_BATCH = 1000


def _call_cells(call: CallRecord, fmt: _Fmt) -> list[str]:
    return [
        fmt.when(call.started),
        call.hotline,
        call.caller,
        _status(call),
        _who(call.agent, call.agent_number),
        _duration(call.wait_time),
        _duration(call.talk_time),
        call.end_reason or "",
    ]


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    parts = []
    for header, cell, width in zip(_HEADERS, cells, widths, strict=True):
        parts.append(cell.rjust(width) if header in _RIGHT else cell.ljust(width))
    return "  ".join(parts).rstrip()


def _attempt_line(a: AttemptRecord, fmt: _Fmt) -> str:
    what = "forward to" if a.round == 0 else f"round {a.round}:"
    text = f"#{a.seq} {fmt.when(a.started)[11:]} {what} {_who(a.agent, a.number)}"
    return f"{text} - {_attempt_result(a)}"


def _attempt_result(a: AttemptRecord) -> str:
    if a.ended is None:
        if a.answered is not None:
            return "answered, waiting for a key" if a.confirm is None else _confirm(a)
        return "ringing" if a.ringing is not None else "calling"
    parts = []
    if a.confirm is not None and a.confirm is not ConfirmResult.NOT_REQUIRED:
        parts.append(_confirm(a))
    elif a.confirm is ConfirmResult.NOT_REQUIRED and a.answered is not None:
        parts.append("answered")
    if a.end_reason:  # the call flow's own sentence says it best
        parts.append(a.end_reason)
    elif a.end is not None:
        parts.append(_words(a.end))
    if a.sip_status is not None and a.sip_status != 200:
        parts.append(f"SIP {a.sip_status}")
    return ", ".join(parts) or "ended"


def _confirm(a: AttemptRecord) -> str:
    text = _words(a.confirm)
    if a.confirm in (ConfirmResult.ACCEPTED, ConfirmResult.DECLINED) and a.dtmf_method is not None:
        text += f" (key via {a.dtmf_method})"
    return text


def _print_table(
    calls: Sequence[CallRecord], attempts: dict[str, list[AttemptRecord]] | None, fmt: _Fmt, out: TextIO
) -> None:
    rows = [_call_cells(c, fmt) for c in calls]
    widths = [len(h) for h in _HEADERS]
    for cells in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, cells, strict=True)]
    widths[-1] = 0
    print(_row(_HEADERS, widths), file=out)
    for call, cells in zip(calls, rows, strict=True):
        print(_row(cells, widths), file=out)
        for a in (attempts or {}).get(call.call_id, []):
            print("    " + _attempt_line(a, fmt), file=out)
    if not calls:
        print("(no calls)", file=out)


def _record_dict(record: LogRecord, fmt: _Fmt) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field in attrs.fields(type(record)):
        value = getattr(record, field.name)
        if field.name in _TIME_FIELDS:
            value = fmt.iso(value)
        elif isinstance(value, float):
            value = round(value, 3)
        elif value is not None and not isinstance(value, int | str):
            value = str(value)
        data[field.name] = value
    return data


def _call_json(call: CallRecord, attempts: list[AttemptRecord] | None, fmt: _Fmt) -> dict[str, Any]:
    data = _record_dict(call, fmt)
    data["status"] = _status(call)
    if attempts is not None:
        data["attempts"] = [_record_dict(a, fmt) for a in attempts]
    return data


_CALL_COLUMNS = [f.name for f in attrs.fields(CallRecord)]
_ATTEMPT_COLUMNS = [f"attempt_{f.name}" for f in attrs.fields(AttemptRecord) if f.name != "call_id"]


def _csv_writer(out: TextIO, with_attempts: bool) -> csv.DictWriter[str]:
    columns = _CALL_COLUMNS + (_ATTEMPT_COLUMNS if with_attempts else [])
    return csv.DictWriter(out, columns, lineterminator="\n")


def _csv_rows(call: CallRecord, attempts: list[AttemptRecord] | None, fmt: _Fmt) -> Iterable[dict[str, Any]]:
    base = _record_dict(call, fmt)
    if attempts is None:
        yield base
        return
    if not attempts:
        yield base  # a call without attempts still gets its row, with empty attempt columns
    for a in attempts:
        row = dict(base)
        for key, value in _record_dict(a, fmt).items():
            if key != "call_id":
                row[f"attempt_{key}"] = value
        yield row


# ------------------------------------------------------------------------------------------------------
# One call in detail
# ------------------------------------------------------------------------------------------------------


def _timeline(call: CallRecord, attempts: list[AttemptRecord]) -> list[tuple[float | None, str]]:
    """(time, what happened), in order; None for a step without its own time."""
    events: list[tuple[float, int, str]] = []
    order = 0

    def add(ts: float | None, text: str) -> None:
        nonlocal order
        if ts is not None:
            events.append((ts, order, text))
            order += 1

    add(call.started, f"call from {call.caller} to hotline {call.hotline!r}")
    add(call.answered, "answered")
    for a in attempts:
        who = _who(a.agent, a.number)
        if a.round == 0:
            add(a.started, f"forwarding to {who} (attempt #{a.seq})")
        else:
            add(a.started, f"calling agent {who} (attempt #{a.seq}, round {a.round})")
        add(a.ringing, f"{a.agent} is ringing")
        if a.answered is not None:
            answered = f"{a.agent} answered"
            if a.confirm is not None and a.confirm is not ConfirmResult.NOT_REQUIRED:
                answered += f": {_confirm(a)}"
            add(a.answered, answered)
        if a.ended is not None:
            add(a.ended, f"{a.agent}'s leg ended: {_attempt_result(a)}")
    if call.bridged is not None:
        add(call.bridged, f"connected with {_who(call.agent, call.agent_number)}")
    if call.ended is not None:
        outcome = _words(call.outcome) if call.outcome is not None else "ended"
        add(call.ended, f"call ended: {outcome}" + (f" - {call.end_reason}" if call.end_reason else ""))
    events.sort(key=lambda e: (e[0], e[1]))
    timeline: list[tuple[float | None, str]] = [(ts, text) for ts, _, text in events]
    if call.pin_result is not PinResult.NOT_REQUIRED:
        # The PIN step has no time of its own: it follows the answer.
        at = next((i + 1 for i, (_, text) in enumerate(timeline) if text == "answered"), len(timeline))
        timeline.insert(at, (None, f"PIN entry: {_words(call.pin_result)}"))
    return timeline


def _print_detail(call: CallRecord, attempts: list[AttemptRecord], fmt: _Fmt, out: TextIO) -> None:
    print(f"Call {call.call_id} on hotline {call.hotline!r}" + (f" (node {call.node})" if call.node else ""), file=out)
    lines = [
        ("caller", f"{call.caller} <{call.caller_uri}>"),
        ("SIP Call-ID", call.sip_call_id),
        ("started", fmt.when(call.started)),
        ("PIN", _words(call.pin_result)),
        ("status", _status(call) + (f": {_who(call.agent, call.agent_number)}" if call.agent else "")),
        ("waited", _duration(call.wait_time)),
        ("talked", _duration(call.talk_time)),
    ]
    if call.ended is not None:
        lines.append(("ended", fmt.when(call.ended) + f" after {_duration(call.ended - call.started)}"))
    if call.end_reason:
        lines.append(("why", call.end_reason))
    for label, value in lines:
        print(f"  {label:<12} {value}", file=out)
    print("", file=out)
    print("Timeline", file=out)
    for ts, text in _timeline(call, attempts):
        if ts is None:
            print(f"  {'':12}  {'':8}  {text}", file=out)
        else:
            minutes, seconds = divmod(max(0.0, ts - call.started), 60)
            offset = f"+{int(minutes)}:{seconds:04.1f}"
            print(f"  {fmt.clock(ts)}  {offset:>8}  {text}", file=out)
    if call.ended is None:
        print("  (the call is still in progress)", file=out)
    if attempts:
        print("", file=out)
        print("Agent attempts", file=out)
        for a in attempts:
            print("  " + _attempt_line(a, fmt), file=out)


# ------------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------------


def _database(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    if args.config:
        from sipcallhunt.config import load_config

        return load_config(args.config).calllog.path
    return DEFAULT_DB


def _show_call(store: CallLog, args: argparse.Namespace, fmt: _Fmt, out: TextIO) -> int:
    call = store.get_call(args.call_id)
    if call is None:
        print(f"{PROG}: no call {args.call_id!r} in the call log", file=sys.stderr)
        return 1
    attempts = store.attempts(call.call_id)
    if args.json:
        data = _call_json(call, attempts, fmt)
        data["timeline"] = [{"time": fmt.iso(ts), "event": text} for ts, text in _timeline(call, attempts)]
        json.dump(data, out, indent=2, ensure_ascii=False)
        print(file=out)
    elif args.csv:
        writer = _csv_writer(out, with_attempts=True)
        writer.writeheader()
        writer.writerows(_csv_rows(call, attempts, fmt))
    else:
        _print_detail(call, attempts, fmt, out)
    return 0


def _list(store: CallLog, args: argparse.Namespace, since: float | None, fmt: _Fmt, out: TextIO) -> None:
    calls = list(reversed(store.recent_calls(args.limit, hotline=args.hotline, since=since)))
    attempts = {c.call_id: store.attempts(c.call_id) for c in calls} if args.attempts else None
    if args.json and not args.follow:
        data = [_call_json(c, attempts[c.call_id] if attempts is not None else None, fmt) for c in calls]
        json.dump(data, out, indent=2, ensure_ascii=False)
        print(file=out)
    elif args.json:
        for c in calls:
            _json_line({"type": "call", **_call_json(c, attempts[c.call_id] if attempts else None, fmt)}, out)
    elif args.csv:
        writer = _csv_writer(out, args.attempts)
        writer.writeheader()
        for c in calls:
            writer.writerows(_csv_rows(c, attempts[c.call_id] if attempts is not None else None, fmt))
    elif args.follow:
        print(_row(_HEADERS, _FOLLOW_WIDTHS), file=out)
        for c in calls:
            print(_row(_call_cells(c, fmt), _FOLLOW_WIDTHS), file=out)
            for a in (attempts or {}).get(c.call_id, []):
                print("    " + _attempt_line(a, fmt), file=out)
    else:
        _print_table(calls, attempts, fmt, out)


def _json_line(data: dict[str, Any], out: TextIO) -> None:
    print(json.dumps(data, ensure_ascii=False), file=out)


@attrs.define
class _Follower:
    """Prints each change of a call (and, with --attempts, of an attempt) after ``cursor``."""

    store: CallLog
    cursor: int
    args: argparse.Namespace
    fmt: _Fmt
    out: TextIO
    hotlines: dict[str, str] = attrs.field(factory=dict)  # call_id → hotline, to filter attempts
    writer: csv.DictWriter[str] | None = None

    def run(self) -> None:
        """Until interrupted (Ctrl-C)."""
        if self.args.csv:
            self.writer = _csv_writer(self.out, self.args.attempts)  # the header came with the listing
        self.out.flush()
        while True:
            _sleep(self.args.interval)
            self.poll()

    def poll(self) -> None:
        while True:
            records, self.cursor = self.store.changes_since(self.cursor, _FOLLOW_BATCH)
            for record in records:
                if isinstance(record, CallRecord):
                    self.call(record)
                elif self.args.attempts:
                    self.attempt(record)
            if len(records) < _FOLLOW_BATCH:
                break
        self.out.flush()

    def call(self, record: CallRecord) -> None:
        self.hotlines[record.call_id] = record.hotline
        if self.args.hotline is not None and record.hotline != self.args.hotline:
            return
        if self.args.json:
            _json_line({"type": "call", **_call_json(record, None, self.fmt)}, self.out)
        elif self.writer is not None:
            self.writer.writerows(_csv_rows(record, [] if self.args.attempts else None, self.fmt))
        else:
            print(_row(_call_cells(record, self.fmt), _FOLLOW_WIDTHS), file=self.out)

    def attempt(self, record: AttemptRecord) -> None:
        owner = None
        if record.call_id not in self.hotlines:
            owner = self.store.get_call(record.call_id)
            self.hotlines[record.call_id] = owner.hotline if owner is not None else ""
        if self.args.hotline is not None and self.hotlines[record.call_id] != self.args.hotline:
            return
        if self.args.json:
            _json_line({"type": "attempt", **_record_dict(record, self.fmt)}, self.out)
        elif self.writer is not None:
            owner = owner or self.store.get_call(record.call_id)
            if owner is not None:
                self.writer.writerows(_csv_rows(owner, [record], self.fmt))
        else:
            print(f"    call {record.call_id} " + _attempt_line(record, self.fmt), file=self.out)


def main(argv: list[str]) -> int:
    """Run ``sipcallhunt calls`` with ``argv`` (without the program and subcommand names)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or bad options (argparse has printed why)
        return exc.code if isinstance(exc.code, int) else 2
    tz = UTC if args.utc else None
    fmt = _Fmt(tz)
    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, _now(), tz)
        except ValueError as exc:
            parser.print_usage(sys.stderr)
            print(f"{PROG}: error: --since: {exc}", file=sys.stderr)
            return 2
    if args.interval < 0:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: --interval must be 0 or more", file=sys.stderr)
        return 2
    try:
        path = _database(args)
        store = open_call_log(path, readonly=True)
    except ConfigError as exc:
        print(f"{PROG}: cannot read the configuration:\n{exc}", file=sys.stderr)
        return 1
    except CallLogError as exc:
        hint = "" if args.db or args.config else " (name it with --db PATH or -c CONFIG)"
        print(f"{PROG}: {exc}{hint}", file=sys.stderr)
        return 1
    out = sys.stdout
    try:
        with store:
            if args.call_id is not None:
                return _show_call(store, args, fmt, out)
            cursor = store.latest_cursor()  # before listing: a change in between shows twice, never not at all
            _list(store, args, since, fmt, out)
            if args.follow:
                _Follower(store, cursor, args, fmt, out).run()
    except CallLogError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (| head): stop quietly; keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        if out is sys.stdout:
            with contextlib.suppress(BrokenPipeError, ValueError):
                out.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
