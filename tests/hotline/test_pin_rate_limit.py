"""The hotline-wide limit on failed PIN calls (``pin_rate_limit``): a guesser who changes the number
he calls from for every call is never locked out by number, so the hotline as a whole accepts at
most ``pin_rate_limit`` failed PIN calls per minute; beyond that every new call gets 403."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipcallhunt.config import parse_config
from sipcallhunt.errors import ConfigError
from sipcallhunt.hotline.actions import AnswerCaller, Log, LogLevel, RejectCaller
from sipcallhunt.hotline.pin import RATE_WINDOW, PinGuard
from sipcallhunt.records import Outcome, PinResult
from tests.hotline.helpers import START, Driver, make_config

PIN = "4711"


def test_guard_throttles_after_rate_limit_failures_of_any_numbers_within_a_minute() -> None:
    guard = PinGuard(failures=3, lockout_time=900.0, rate_limit=3)
    assert RATE_WINDOW == 60.0
    guard.failed("a", 0.0)
    guard.failed("b", 20.0)
    assert guard.throttled_until(20.0) is None
    guard.failed("c", 30.0)  # three numbers, one failure each: no number is locked out ...
    assert not any(guard.is_locked(n, 30.0) for n in "abc")
    assert guard.throttled_until(30.0) == 60.0  # ... but the hotline is, until the first leaves the window
    assert guard.throttled_until(59.9) == 60.0
    assert guard.throttled_until(60.0) is None
    guard.failed("d", 61.0)  # b, c, d within the minute
    assert guard.throttled_until(61.0) == 80.0


def test_guard_success_does_not_lift_the_hotline_limit() -> None:
    guard = PinGuard(failures=3, lockout_time=900.0, rate_limit=2)
    guard.failed("a", 0.0)
    guard.failed("a", 1.0)
    guard.succeeded("a", 2.0)  # the number's failures are forgotten, the hotline's are not
    assert guard.throttled_until(2.0) == 60.0


def test_guard_without_rate_limit_never_throttles_and_keeps_little() -> None:
    guard = PinGuard(failures=1000, lockout_time=900.0)
    for i in range(500):
        guard.failed(f"n{i}", i * 0.01)
    assert guard.throttled_until(5.0) is None
    assert len(guard._recent) == 1  # memory stays bounded by the limit


def test_guard_takes_new_settings_on_reload_and_keeps_its_memory() -> None:
    guard = PinGuard.for_hotline(make_config(pin_rate_limit=5, pin_lockout_failures=2))
    assert (guard.rate_limit, guard.failures) == (5, 2)
    guard.failed("a", 0.0)
    guard.failed("a", 1.0)
    assert guard.is_locked("a", 1.0)
    guard.configure(make_config(pin_rate_limit=1, pin_lockout_failures=9, pin_lockout_time=30.0))
    assert (guard.rate_limit, guard.failures, guard.lockout_time) == (1, 9, 30.0)
    assert guard.is_locked("a", 2.0)  # locked before the reload
    assert guard.throttled_until(2.0) == 61.0


def failed_call(guard: PinGuard, now: float, caller: str) -> Driver:
    d = Driver(make_config(pins=(PIN,), pin_attempts=1), guard=guard, now=now, caller=caller)
    d.connect()
    d.played("enter_pin")
    d.keys("0000")
    d.played("goodbye")
    assert d.call.finished and d.record.outcome is Outcome.PIN_FAILED
    return d


def test_calls_from_changing_numbers_are_refused_once_the_hotline_limit_is_reached() -> None:
    guard = PinGuard(failures=3, lockout_time=900.0, rate_limit=2)
    first = failed_call(guard, START, "0301")
    assert not [a for a in first.of(Log) if a.level is LogLevel.WARNING]
    second = failed_call(guard, START + 10, "0302")
    warnings = [a.message for a in second.of(Log) if a.level is LogLevel.WARNING]
    assert warnings == ["hotline 'support' had 2 failed PIN calls within a minute: new calls are refused for 50 s"]
    assert second.record.pin_result is PinResult.FAILED  # its number is not locked out

    third = Driver(make_config(pins=(PIN,)), guard=guard, now=START + 20, caller="0303")
    assert third.ops(third.start()) == [RejectCaller(403, "Forbidden")]
    record = third.record
    assert record.outcome is Outcome.REJECTED and record.pin_result is PinResult.RATE_LIMITED
    assert record.answered is None and third.call.finished and third.call.next_deadline() is None
    assert record.end_reason is not None
    assert record.end_reason.startswith("the hotline refuses calls after 2 failed PIN calls within a minute")
    assert guard.throttled_until(START + 20) is not None
    assert not guard.is_locked("0303", START + 20)  # a refusal is not a failure of the number

    # A caller who knows the PIN is refused as well while the limit holds ...
    known = Driver(make_config(pins=(PIN,)), guard=guard, now=START + 30, caller="0409999")
    assert known.ops(known.start()) == [RejectCaller(403, "Forbidden")]
    # ... and gets in once the window has room again.
    until = guard.throttled_until(START + 30)
    assert until is not None
    later = Driver(make_config(pins=(PIN,)), guard=guard, now=until, caller="0409999")
    assert later.ops(later.start()) == [AnswerCaller()]


def test_a_locked_out_number_keeps_its_own_reason_while_the_hotline_is_throttled() -> None:
    guard = PinGuard(failures=2, lockout_time=900.0, rate_limit=2)
    failed_call(guard, START, "0301")
    failed_call(guard, START + 10, "0301")
    d = Driver(make_config(pins=(PIN,)), guard=guard, now=START + 20, caller="0301")
    d.start()
    assert d.record.pin_result is PinResult.LOCKED_OUT
    assert (d.record.end_reason or "").startswith("0301 is locked out")


def test_hotlines_without_pins_are_never_throttled() -> None:
    guard = PinGuard(failures=3, lockout_time=900.0, rate_limit=1)
    guard.failed("0301", START)
    d = Driver(make_config(), guard=guard, now=START + 1)
    assert d.ops(d.start()) == [AnswerCaller()]


CONFIG = """
[[account]]
name = "main"
registrar = "sip:127.0.0.1"
username = "u"
password = "p"

[[hotline]]
name = "h"
account = "main"
pins = ["4711"]
{extra}

[[hotline.agent]]
number = "201"
"""


def test_config_default_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    assert parse_config(CONFIG.format(extra=""), path).hotlines[0].pin_rate_limit == 10
    assert parse_config(CONFIG.format(extra="pin_rate_limit = 0"), path).hotlines[0].pin_rate_limit == 0
    for bad, words in (("-1", "must be 0-10000"), ('"10"', "int"), ("2.5", "int")):
        with pytest.raises(ConfigError) as info:
            parse_config(CONFIG.format(extra=f"pin_rate_limit = {bad}"), path)
        [problem] = info.value.problems
        assert problem.key == "hotline[0].pin_rate_limit" and words in problem.problem, problem
