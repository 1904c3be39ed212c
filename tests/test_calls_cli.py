"""``sipcallhunt calls``: table, JSON, CSV, one call in detail, --follow, and the error cases."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from sipcallhunt import calls_cli
from sipcallhunt.calllog import SqliteCallLog
from sipcallhunt.calls_cli import main, parse_since
from sipcallhunt.config import (
    PROMPT_NAMES,
    AccountConfig,
    AgentConfig,
    HotlineConfig,
    SipConfig,
    load_config,
)
from sipcallhunt.records import (
    AttemptEnd,
    AttemptRecord,
    CallRecord,
    ConfirmResult,
    DtmfMethod,
    Outcome,
    PinResult,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC).timestamp()


def call(call_id: str, started: float, **changes: Any) -> CallRecord:
    record = CallRecord(
        call_id=call_id,
        hotline="support",
        caller="+4930123456",
        caller_uri="sip:+4930123456@pbx",
        sip_call_id=f"{call_id}@pbx",
        started=started,
    )
    return attrs.evolve(record, **changes)


CONNECTED = call(
    "c1",
    T0,
    answered=T0 + 0.5,
    pin_result=PinResult.OK,
    bridged=T0 + 28,
    ended=T0 + 130,
    outcome=Outcome.CONNECTED,
    agent="Alice",
    agent_number="201",
    wait_time=27.5,
    talk_time=102,
    end_reason="Alice accepted and hung up after 1 min 42 s",
    node="alpha",
)
BOB_NO_ANSWER = AttemptRecord(
    call_id="c1",
    seq=1,
    round=1,
    agent="Bob",
    number="202",
    started=T0 + 3,
    ringing=T0 + 3.2,
    ended=T0 + 23,
    end=AttemptEnd.NO_ANSWER,
    end_reason="Bob's phone rang 20 s without answer",
)
ALICE_ACCEPTS = AttemptRecord(
    call_id="c1",
    seq=2,
    round=1,
    agent="Alice",
    number="201",
    started=T0 + 23,
    ringing=T0 + 23.1,
    answered=T0 + 27,
    ended=T0 + 130,
    confirm=ConfirmResult.ACCEPTED,
    dtmf_method=DtmfMethod.INBAND,
    end=AttemptEnd.AGENT_HUNG_UP,
    sip_status=200,
)
NO_AGENT = call(
    "c2",
    T0 + 3600,
    hotline="notdienst",
    caller="+4940999",
    answered=T0 + 3600.4,
    ended=T0 + 3650,
    outcome=Outcome.NO_AGENT,
    wait_time=49.6,
    end_reason="no agent pressed 1 in 2 rounds",
)
BUSY = AttemptRecord(
    call_id="c2",
    seq=1,
    round=1,
    agent="Carol",
    number="203",
    started=T0 + 3601,
    ended=T0 + 3601.5,
    end=AttemptEnd.BUSY,
    sip_status=486,
)
IN_PROGRESS = call("c3", T0 + 7200, answered=T0 + 7200.3)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "calls.sqlite3"
    with SqliteCallLog(path) as log:
        for record in (CONNECTED, NO_AGENT, IN_PROGRESS):
            log.write_call(record)
        for a in (BOB_NO_ANSWER, ALICE_ACCEPTS, BUSY):
            log.write_attempt(a)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------------------------- table


def test_table(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--db", str(db), "--utc")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "HOTLINE", "CALLER", "OUTCOME", "AGENT", "WAIT", "TALK", "END", "REASON"]
    assert len(lines) == 4
    # Oldest first, the newest at the bottom.
    assert lines[1].startswith("2024-05-01 10:00:00  support ")
    assert lines[2].startswith("2024-05-01 11:00:00  notdienst")
    assert lines[3].startswith("2024-05-01 12:00:00  support ")
    assert "connected" in lines[1] and "Alice (201)" in lines[1] and "0:28" in lines[1] and "1:42" in lines[1]
    assert lines[1].endswith("Alice accepted and hung up after 1 min 42 s")
    assert "no agent" in lines[2] and "0:50" in lines[2]
    assert "waiting" in lines[3]  # in progress: answered, not bridged
    # Aligned: each column starts at the same place on every line.
    for header in ("HOTLINE", "CALLER", "OUTCOME", "AGENT", "END REASON"):
        column = lines[0].index(header)
        for line in lines[1:]:
            if header == "END REASON" and len(line) <= column:
                continue  # no end reason yet: trailing blanks are stripped
            assert line[column - 2 : column] == "  " and line[column] != " ", (header, line)
    for header in ("WAIT", "TALK"):  # right-aligned
        end = lines[0].index(header) + len(header)
        for line in lines[1:]:
            assert line[end - 1] != " " and line[end : end + 1] in (" ", "")


def test_table_with_attempts(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(db), "--utc", "--attempts")
    assert code == 0
    lines = out.splitlines()
    assert lines[2] == "    #1 10:00:03 round 1: Bob (202) - Bob's phone rang 20 s without answer"
    assert lines[3] == "    #2 10:00:23 round 1: Alice (201) - accepted (key via inband), agent hung up"
    assert lines[4].startswith("2024-05-01 11:00:00")
    assert lines[5] == "    #1 11:00:01 round 1: Carol (203) - busy, SIP 486"


def test_filters_and_limit(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--db", str(db), "-n", "2")
    assert len(out.splitlines()) == 3 and "notdienst" in out and "+4930123456       " not in out
    _, out, _ = run(capsys, "--db", str(db), "--hotline", "notdienst")
    assert len(out.splitlines()) == 2 and "notdienst" in out
    _, out, _ = run(capsys, "--db", str(db), "--since", "2024-05-01T10:30:00+00:00")
    assert len(out.splitlines()) == 3 and "10:00:00" not in out
    _, out, _ = run(capsys, "--db", str(db), "--hotline", "nobody")
    assert out.splitlines()[1] == "(no calls)"


def test_since_durations_count_back_from_now(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(calls_cli, "_now", lambda: T0 + 7200 + 60)
    _, out, _ = run(capsys, "--db", str(db), "--since", "90m", "--json")
    assert [c["call_id"] for c in json.loads(out)] == ["c2", "c3"]
    _, out, _ = run(capsys, "--db", str(db), "--since", "1h", "--json")
    assert [c["call_id"] for c in json.loads(out)] == ["c3"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", T0 - 7200),
        ("1d", T0 - 86400),
        ("1w", T0 - 7 * 86400),
        ("1h30m", T0 - 5400),
        ("45s", T0 - 45),
        ("2024-04-30", datetime(2024, 4, 30, tzinfo=UTC).timestamp()),
        ("2024-04-30 08:15", datetime(2024, 4, 30, 8, 15, tzinfo=UTC).timestamp()),
        ("2024-04-30T08:15:30", datetime(2024, 4, 30, 8, 15, 30, tzinfo=UTC).timestamp()),
        ("2024-04-30T08:15:30+02:00", datetime(2024, 4, 30, 6, 15, 30, tzinfo=UTC).timestamp()),
        ("2024-04-30T08:15:30Z", datetime(2024, 4, 30, 8, 15, 30, tzinfo=UTC).timestamp()),
        ("today", datetime(2024, 5, 1, tzinfo=UTC).timestamp()),
        ("yesterday", datetime(2024, 4, 30, tzinfo=UTC).timestamp()),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, T0, UTC) == expected


@pytest.mark.parametrize("text", ["", "soon", "2x", "h", "2024-13-01", "1.5h"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="neither a date/time"):
        parse_since(text, T0, UTC)


def test_bad_options_exit_2(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--db", str(db), "--since", "soon")
    assert code == 2 and "--since" in err and "soon" in err
    code, _, err = run(capsys, "--db", str(db), "-n", "0")
    assert code == 2 and "must be 1 or more" in err
    code, _, _ = run(capsys, "--db", str(db), "--json", "--csv")
    assert code == 2
    code, _, _ = run(capsys, "--db", str(db), "-c", "x.toml")
    assert code == 2


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "sipcallhunt calls" in out and "--follow" in out


# ------------------------------------------------------------------------------------------- JSON, CSV


def test_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(db), "--json", "--utc")
    assert code == 0
    data = json.loads(out)
    assert [c["call_id"] for c in data] == ["c1", "c2", "c3"]
    first = data[0]
    assert first["started"] == "2024-05-01T10:00:00.000+00:00"
    assert first["bridged"] == "2024-05-01T10:00:28.000+00:00"
    assert first["outcome"] == "connected" and first["pin_result"] == "ok" and first["status"] == "connected"
    assert first["wait_time"] == 27.5 and first["talk_time"] == 102
    assert first["agent"] == "Alice" and first["node"] == "alpha"
    assert "attempts" not in first
    assert data[2]["outcome"] is None and data[2]["ended"] is None and data[2]["status"] == "waiting"
    _, out, _ = run(capsys, "--db", str(db), "--json", "--attempts")
    data = json.loads(out)
    assert [a["seq"] for a in data[0]["attempts"]] == [1, 2]
    assert data[0]["attempts"][1]["confirm"] == "accepted" and data[0]["attempts"][1]["dtmf_method"] == "inband"
    assert data[1]["attempts"][0]["sip_status"] == 486 and data[1]["attempts"][0]["end"] == "busy"
    assert data[2]["attempts"] == []


def test_json_times_in_local_time_carry_the_offset(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--db", str(db), "--json")
    started = datetime.fromisoformat(json.loads(out)[0]["started"])
    assert started.tzinfo is not None and started.timestamp() == T0


def test_csv(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(db), "--csv", "--utc")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["call_id"] for r in rows] == ["c1", "c2", "c3"]
    assert rows[0]["started"] == "2024-05-01T10:00:00.000+00:00"
    assert rows[0]["outcome"] == "connected" and rows[0]["talk_time"] == "102.0"
    assert rows[2]["ended"] == "" and rows[2]["outcome"] == ""
    assert [name for name in rows[0] if name.startswith("attempt_")] == []


def test_csv_with_attempts_has_one_row_per_attempt(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--db", str(db), "--csv", "--attempts", "--utc")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["call_id"], r["attempt_seq"]) for r in rows] == [("c1", "1"), ("c1", "2"), ("c2", "1"), ("c3", "")]
    assert rows[1]["attempt_agent"] == "Alice" and rows[1]["attempt_confirm"] == "accepted"
    assert rows[2]["attempt_sip_status"] == "486"
    assert rows[1]["hotline"] == "support" and rows[2]["hotline"] == "notdienst"


# ----------------------------------------------------------------------------------------- one call


def test_one_call_explained(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(db), "--utc", "c1")
    assert code == 0
    assert out.startswith("Call c1 on hotline 'support' (node alpha)\n")
    assert "  caller       +4930123456 <sip:+4930123456@pbx>" in out
    assert "  status       connected: Alice (201)" in out
    assert "  ended        2024-05-01 10:02:10 after 2:10" in out
    timeline = out.split("Timeline\n")[1].split("\n\n")[0].splitlines()
    events = [line[26:] for line in timeline]
    assert events == [
        "call from +4930123456 to hotline 'support'",
        "answered",
        "PIN entry: ok",
        "calling agent Bob (202) (attempt #1, round 1)",
        "Bob is ringing",
        "Bob's leg ended: Bob's phone rang 20 s without answer",
        "calling agent Alice (201) (attempt #2, round 1)",
        "Alice is ringing",
        "Alice answered: accepted (key via inband)",
        "connected with Alice (201)",
        "Alice's leg ended: accepted (key via inband), agent hung up",
        "call ended: connected - Alice accepted and hung up after 1 min 42 s",
    ]
    assert timeline[0].startswith("  10:00:00.000   +0:00.0  ")
    assert timeline[9].startswith("  10:00:28.000   +0:28.0  ")
    assert "Agent attempts\n  #1 10:00:03 round 1: Bob (202)" in out


def test_call_in_progress_says_so(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--db", str(db), "c3")
    assert "still in progress" in out and "status       waiting" in out


def test_one_call_as_json_and_csv(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--db", str(db), "--utc", "--json", "c2")
    data = json.loads(out)
    assert data["call_id"] == "c2" and data["attempts"][0]["agent"] == "Carol"
    assert data["timeline"][0] == {
        "time": "2024-05-01T11:00:00.000+00:00",
        "event": "call from +4940999 to hotline 'notdienst'",
    }
    assert data["timeline"][-1]["event"] == "call ended: no agent - no agent pressed 1 in 2 rounds"
    _, out, _ = run(capsys, "--db", str(db), "--csv", "c1")
    assert [r["attempt_seq"] for r in csv.DictReader(io.StringIO(out))] == ["1", "2"]


def test_unknown_call(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--db", str(db), "nope")
    assert code == 1 and out == "" and "no call 'nope'" in err


# ------------------------------------------------------------------------------------ finding the log


def test_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.sqlite3"
    code, out, err = run(capsys, "--db", str(missing))
    assert code == 1 and out == ""
    assert err == f"sipcallhunt calls: {missing}: no call log here (the file does not exist)\n"
    assert not missing.exists()


def test_default_database_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys)
    assert code == 1 and "calls.sqlite3: no call log here" in err and "--db PATH or -c CONFIG" in err


def test_corrupt_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "calls.sqlite3"
    bad.write_bytes(b"garbage" * 1000)
    code, _, err = run(capsys, "--db", str(bad))
    assert code == 1 and str(bad) in err and "not a database" in err


MINIMAL_CONFIG = """
[[account]]
name = "pbx"
registrar = "sip:127.0.0.1"
username = "hotline"
password = "secret"

[[hotline]]
name = "support"
account = "pbx"
[[hotline.agent]]
number = "201"

[calllog]
path = "{path}"
"""


def test_config_names_the_database(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "conf" / "hotline.toml"
    config.parent.mkdir()
    config.write_text(MINIMAL_CONFIG.format(path="../calls.sqlite3"))  # relative to the config file
    code, out, _ = run(capsys, "-c", str(config), "--json")
    assert code == 0 and len(json.loads(out)) == 3


def test_broken_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hotline.toml"
    config.write_text("[calllog]\npath = 5\n")
    code, _, err = run(capsys, "-c", str(config))
    assert code == 1 and "cannot read the configuration" in err and str(config) in err
    code, _, err = run(capsys, "-c", str(tmp_path / "missing.toml"))
    assert code == 1 and "missing.toml" in err


# ------------------------------------------------------------------------------------------- follow


def _writer_sleep(
    db: Path, steps: list[list[CallRecord | AttemptRecord]]
) -> tuple[list[float], Callable[[float], None]]:
    """A stand-in for time.sleep that writes one batch per call, then presses Ctrl-C."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > len(steps):
            raise KeyboardInterrupt
        with SqliteCallLog(db) as log:
            for record in steps[len(slept) - 1]:
                if isinstance(record, CallRecord):
                    log.write_call(record)
                else:
                    log.write_attempt(record)

    return slept, sleep


NEW = call("c4", T0 + 9000)
NEW_ATTEMPT = AttemptRecord(call_id="c4", seq=1, round=1, agent="Bob", number="202", started=T0 + 9003)
OTHER = call("c5", T0 + 9100, hotline="notdienst")


def test_follow_shows_changes_until_ctrl_c(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    slept, sleep = _writer_sleep(
        db,
        [
            [NEW],
            [],
            [NEW_ATTEMPT, attrs.evolve(NEW, answered=T0 + 9000.5)],
            [OTHER],
        ],
    )
    monkeypatch.setattr(calls_cli, "_sleep", sleep)
    code, out, _ = run(capsys, "--db", str(db), "--follow", "--utc", "--interval", "0.25", "-n", "1")
    assert code == 0
    assert slept == [0.25] * 5
    lines = out.splitlines()
    assert lines[0].startswith("TIME")
    assert lines[1].startswith("2024-05-01 12:00:00")  # the listing: the latest call
    assert lines[2].startswith("2024-05-01 12:30:00") and "arriving" in lines[2]
    assert lines[3].startswith("2024-05-01 12:30:00") and "waiting" in lines[3]  # answered now
    assert lines[4].startswith("2024-05-01 12:31:40") and "notdienst" in lines[4]
    assert len(lines) == 5  # attempts only with --attempts


def test_follow_filters_and_attempts(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sleep = _writer_sleep(db, [[NEW, NEW_ATTEMPT, OTHER]])
    monkeypatch.setattr(calls_cli, "_sleep", sleep)
    code, out, _ = run(capsys, "--db", str(db), "-f", "--utc", "--hotline", "support", "--attempts", "-n", "1")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 4 and "notdienst" not in out
    assert lines[3] == "    call c4 #1 12:30:03 round 1: Bob (202) - calling"


def test_follow_json_lines(db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, sleep = _writer_sleep(db, [[NEW, NEW_ATTEMPT]])
    monkeypatch.setattr(calls_cli, "_sleep", sleep)
    code, out, _ = run(capsys, "--db", str(db), "-f", "--json", "--attempts", "-n", "2")
    assert code == 0
    objects = [json.loads(line) for line in out.splitlines()]
    assert [(o["type"], o["call_id"]) for o in objects] == [
        ("call", "c2"),
        ("call", "c3"),
        ("call", "c4"),
        ("attempt", "c4"),
    ]
    assert objects[0]["attempts"][0]["agent"] == "Carol"


def test_follow_csv(db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, sleep = _writer_sleep(db, [[NEW, NEW_ATTEMPT]])
    monkeypatch.setattr(calls_cli, "_sleep", sleep)
    code, out, _ = run(capsys, "--db", str(db), "-f", "--csv", "--attempts", "-n", "1")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["call_id"], r["attempt_seq"]) for r in rows] == [("c3", ""), ("c4", ""), ("c4", "1")]


FOLLOWER = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever our parent ignores
from sipcallhunt.calls_cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_follow_in_a_real_process_ends_on_ctrl_c(db: Path) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, "--db", str(db), "-f", "--interval", "0.05", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    try:
        lines = [follower.stdout.readline(), follower.stdout.readline()]  # header and the listing
        assert lines[0].startswith("TIME") and "support" in lines[1]
        with SqliteCallLog(db) as log:
            log.write_call(NEW)
        deadline = time.monotonic() + 20
        line = ""
        while "arriving" not in line and time.monotonic() < deadline:
            line = follower.stdout.readline()
        assert "arriving" in line
    finally:
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=20)
    assert follower.returncode == 0, err
    assert "Traceback" not in err


def test_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    with SqliteCallLog(path) as log:
        for i in range(3000):
            log.write_call(call(f"c{i}", T0 + i, end_reason="x" * 60))
    reader = subprocess.Popen(
        [sys.executable, "-m", "sipcallhunt.calls_cli", "--db", str(path), "-n", "3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.readline()
    reader.stdout.close()  # like `| head -1`
    assert reader.wait(timeout=30) == 0
    assert reader.stderr.read() == b""


# ------------------------------------------------------------------------------------------ examples


def _keys(config_class: type) -> set[str]:
    return {f.name for f in attrs.fields(config_class)}


def test_example_configuration_validates_and_uses_every_key() -> None:
    example = ROOT / "examples" / "hotline.toml"
    config = load_config(example)
    assert config.hotlines and config.accounts
    data = tomllib.loads(example.read_text(encoding="utf-8"))
    renamed = {
        "listen_host": "listen",
        "listen_port": "listen",
        "rtp_port_min": "rtp_ports",
        "rtp_port_max": "rtp_ports",
    }
    assert {renamed.get(k, k) for k in _keys(SipConfig)} <= set(data["sip"])
    for account in data["account"]:
        assert account.keys() <= _keys(AccountConfig)
    assert set().union(*(a.keys() for a in data["account"])) == _keys(AccountConfig)
    hotline_keys = set().union(*(h.keys() for h in data["hotline"]))
    expected = (_keys(HotlineConfig) - {"prompts", "agents"}) | {"agent"} | set(PROMPT_NAMES)
    assert hotline_keys == expected
    agent_keys = set().union(*(a.keys() for h in data["hotline"] for a in h["agent"]))
    assert agent_keys == _keys(AgentConfig)
    assert set(data["calllog"]) == {"path"} and set(data["logging"]) == {"level"}
    # The replaced prompts point at real files, so that the example validates as it is.
    assert all(path.is_file() for hotline in config.hotlines for path in hotline.prompts.values())


def test_example_systemd_unit_is_hardened() -> None:
    unit = (ROOT / "examples" / "systemd" / "sipcallhunt.service").read_text(encoding="utf-8")
    settings = {}
    for line in unit.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    for key, value in {
        "Restart": "on-failure",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "StateDirectory": "sipcallhunt",
        "PrivateTmp": "yes",
    }.items():
        assert settings.get(key) == value, key
    assert "kill -HUP $MAINPID" in settings["ExecReload"]
    assert "DynamicUser" in settings or "User" in settings
    assert "sipcallhunt run" in settings["ExecStart"]


def test_example_files_exist() -> None:
    for name in ("asterisk/pjsip.conf", "freepbx.md", "kamailio/README.md", "systemd/sipcallhunt.service"):
        assert (ROOT / "examples" / name).is_file(), name
    assert os.path.getsize(ROOT / "examples" / "asterisk" / "pjsip.conf") > 500


def test_example_kamailio_subscribers_have_matching_hashes() -> None:
    lines = (ROOT / "examples" / "kamailio" / "subscriber").read_text().splitlines()
    assert lines[0].split()[4:] == ["ha1(string,null)", "ha1b(string,null)"]
    for line in lines[1:]:
        _, user, domain, password, ha1, ha1b = line.split(":")
        assert ha1 == hashlib.md5(f"{user}:{domain}:{password}".encode()).hexdigest()
        assert ha1b == hashlib.md5(f"{user}@{domain}:{domain}:{password}".encode()).hexdigest()
