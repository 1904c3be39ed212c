"""HotlineCall: answering, intro, the PIN phase and the lockout."""

from __future__ import annotations

import pytest

from sipcallhunt.errors import LocalProtocolError
from sipcallhunt.hotline.actions import (
    AnswerCaller,
    DetectDtmf,
    Dial,
    HangupCaller,
    Log,
    Play,
    RejectCaller,
    StopPlayback,
    StoreCall,
)
from sipcallhunt.hotline.call import CallState
from sipcallhunt.hotline.events import CALLER, CallerConnected, CallerHungUp, Digit, PlaybackFinished
from sipcallhunt.hotline.pin import PinGuard
from sipcallhunt.records import DtmfMethod, Outcome, PinResult
from tests.hotline.helpers import START, WALL_OFFSET, Driver, make_config

PIN = "4711"


def pin_driver(**overrides: object) -> Driver:
    values: dict[str, object] = {"pins": (PIN,), "pin_timeout": 8.0, "pin_attempts": 3}
    values.update(overrides)
    return Driver(make_config(**values))


# -- answering and intro ------------------------------------------------------------------------


def test_start_answers_and_creates_the_record() -> None:
    d = Driver()
    actions = d.start()
    assert d.ops(actions) == [AnswerCaller()]
    record = d.of(StoreCall, actions)[0].record
    assert record.call_id == "call-1" and record.hotline == "support"
    assert record.caller == "0301234" and record.caller_uri == "sip:0301234@pbx.example"
    assert record.started == START + WALL_OFFSET
    assert record.pin_result is PinResult.NOT_REQUIRED and record.outcome is None
    assert any("incoming call from 0301234" in log.message for log in d.of(Log, actions))
    assert all(log.call_id == "call-1" for log in d.of(Log, actions))


def test_intro_plays_only_once_the_caller_is_connected() -> None:
    d = Driver()
    d.start()
    assert not d.of(Play)
    actions = d.send(CallerConnected(), after=0.3)
    assert d.ops(actions) == [Play(CALLER, ("intro",), loop=False, token=d.token("intro"))]
    assert d.record.answered == START + 0.3 + WALL_OFFSET


def test_caller_never_connected_ends_the_call_after_intro_timeout() -> None:
    d = Driver(intro_timeout=30.0)
    d.start()
    assert d.wait(29.9) == []
    actions = d.wait(0.1)
    assert d.of(HangupCaller, actions)
    assert d.call.finished
    assert d.record.outcome is Outcome.FAILED
    assert "never confirmed the answer" in (d.record.end_reason or "")


def test_without_pins_the_hunt_starts_after_the_intro() -> None:
    d = Driver()
    d.start()
    d.send(CallerConnected())
    actions = d.played("intro", after=4.0)
    ops = d.ops(actions)
    assert isinstance(ops[0], Play) and ops[0].prompts == ("please_hold",) and not ops[0].loop
    assert ops[1] == Dial(1, "Alice", "201", "0301234")
    assert d.call.state is CallState.HUNTING


def test_a_lost_end_of_the_intro_does_not_strand_the_call() -> None:
    d = Driver(intro_timeout=20.0)
    d.start()
    d.send(CallerConnected())
    actions = d.wait(20.0)
    assert d.of(Dial, actions) == [Dial(1, "Alice", "201", "0301234")]
    assert "did not report its end" in d.log_text()


def test_keys_during_the_intro_are_ignored_without_type_ahead() -> None:
    d = pin_driver(pin_type_ahead=False)
    d.start()
    d.send(CallerConnected())
    for key in PIN:
        assert d.ops(d.key(key)) == []
    d.played("intro")
    assert d.call.state is CallState.PIN_PROMPT
    assert PIN not in d.log_text()


def test_pin_typed_during_the_intro_stops_it_and_counts() -> None:
    d = pin_driver()
    d.start()
    actions = d.send(CallerConnected())
    assert DetectDtmf(CALLER, inband=True) in d.ops(actions)  # in-band keys are heard during the intro
    first = d.ops(d.key(PIN[0]))
    assert StopPlayback(CALLER) in first and d.call.state is CallState.PIN_ENTRY
    for key in PIN[1:-1]:
        d.key(key)
    actions = d.key(PIN[-1])
    assert d.record.pin_result is PinResult.OK
    assert d.call.state is CallState.HUNTING and d.of(Dial, actions)
    assert PIN not in d.log_text()


def test_keys_during_the_intro_of_a_hotline_without_pins_are_ignored() -> None:
    d = Driver()
    d.start()
    d.send(CallerConnected())
    assert d.ops(d.key("5")) == []
    assert d.call.state is CallState.INTRO


def test_start_twice_and_events_before_start_are_bugs_of_the_shell() -> None:
    d = Driver()
    with pytest.raises(LocalProtocolError):
        d.call.handle(CallerConnected(), START)
    with pytest.raises(LocalProtocolError):
        d.call.handle_timer(START)
    d.start()
    with pytest.raises(LocalProtocolError):
        d.call.start(START)


# -- PIN -------------------------------------------------------------------------------------------


def test_right_pin_ends_at_its_length_and_starts_the_hunt() -> None:
    d = pin_driver()
    d.connect()
    # In-band detection went on with the intro (type-ahead); the PIN prompt follows the intro.
    assert DetectDtmf(CALLER, inband=True) in d.ops(d.actions)
    assert d.ops(d.last)[:1] == [Play(CALLER, ("enter_pin",), loop=False, token=d.token("enter_pin"))]
    assert d.record.pin_result is PinResult.PENDING
    d.played("enter_pin", after=3.0)
    assert d.ops(d.keys(PIN[:-1])) == []
    actions = d.key(PIN[-1])
    ops = d.ops(actions)
    assert ops[0] == DetectDtmf(CALLER, inband=False)
    assert isinstance(ops[1], Play) and ops[1].prompts == ("please_hold",)
    assert isinstance(ops[2], Dial)
    assert d.record.pin_result is PinResult.OK
    assert PIN not in d.log_text() and "'4'" not in d.log_text()


def test_a_hash_after_a_complete_pin_is_harmless() -> None:
    d = pin_driver()
    d.connect()
    d.pass_pin(PIN)
    assert d.ops(d.key("#")) == []
    assert d.call.state is CallState.HUNTING


@pytest.mark.parametrize("method", list(DtmfMethod))
def test_pin_keys_count_from_every_dtmf_method(method: DtmfMethod) -> None:
    d = pin_driver()
    d.connect()
    d.played("enter_pin")
    d.keys(PIN, method=method)
    assert d.record.pin_result is PinResult.OK


def test_one_entry_may_mix_dtmf_methods() -> None:
    d = pin_driver()
    d.connect()
    d.played("enter_pin")
    for key, method in zip(PIN, [DtmfMethod.RFC4733, DtmfMethod.INFO, DtmfMethod.INBAND, DtmfMethod.INFO], strict=True):
        d.key(key, method=method)
    assert d.record.pin_result is PinResult.OK


def test_no_inband_detector_when_the_hotline_disables_it() -> None:
    d = pin_driver(inband_dtmf=False)
    d.hunt()
    assert not d.of(DetectDtmf)
    assert d.record.pin_result is PinResult.OK


def test_barge_in_stops_the_prompt_at_the_first_key_and_the_key_counts() -> None:
    d = pin_driver()
    d.connect()
    prompt = d.token("enter_pin")
    actions = d.key(PIN[0], after=0.5)
    assert d.ops(actions) == [StopPlayback(CALLER)]
    d.keys(PIN[1:])
    assert d.record.pin_result is PinResult.OK
    # The stopped prompt's end, reported late, changes nothing.
    assert d.ops(d.send(PlaybackFinished(CALLER, prompt))) == []


def test_wrong_pin_plays_wrong_pin_then_enter_pin_and_allows_another_try() -> None:
    d = pin_driver()
    d.connect()
    d.played("enter_pin")
    actions = d.keys("1234")
    plays = d.of(Play, actions)
    assert [p.prompts for p in plays] == [("wrong_pin", "enter_pin")]
    assert d.call.state is CallState.PIN_PROMPT
    assert "wrong PIN (attempt 1 of 3)" in d.log_text()
    # Barge into the replay with the right PIN.
    actions = d.keys(PIN)
    assert d.of(StopPlayback, actions) == [StopPlayback(CALLER)]
    assert d.record.pin_result is PinResult.OK


def test_hash_ends_a_short_entry_as_a_wrong_attempt() -> None:
    d = pin_driver()
    d.connect()
    d.played("enter_pin")
    d.keys("47#")
    assert d.call.state is CallState.PIN_PROMPT
    assert d.token("wrong_pin", "enter_pin")


def test_hash_with_nothing_typed_is_not_an_attempt() -> None:
    d = pin_driver(pin_attempts=1)
    d.connect()
    d.played("enter_pin")
    assert d.ops(d.key("#")) == []
    assert d.call.state is CallState.PIN_ENTRY
    d.keys(PIN)
    assert d.record.pin_result is PinResult.OK


def test_pin_timeout_runs_from_the_end_of_the_prompt() -> None:
    d = pin_driver(pin_timeout=8.0)
    d.connect()
    # The prompt takes long: no timeout while it plays (only the prompt guard runs).
    assert d.ops(d.wait(15.0)) == []
    d.played("enter_pin")
    assert d.ops(d.wait(7.9)) == []
    actions = d.wait(0.1)
    assert [p.prompts for p in d.of(Play, actions)] == [("enter_pin",)]  # no "wrong_pin" after silence
    assert "no PIN entered in time (attempt 1 of 3)" in d.log_text()


def test_pin_timeout_restarts_at_every_key() -> None:
    d = pin_driver(pin_timeout=8.0)
    d.connect()
    d.played("enter_pin")
    d.key("4", after=7.0)
    d.key("7", after=7.0)
    assert d.ops(d.wait(7.9)) == []
    assert d.of(Play, d.wait(0.1))  # 8 s after the last key: a failed attempt, the prompt again
    assert d.call.state is CallState.PIN_PROMPT


def test_last_failure_says_goodbye_and_hangs_up_with_pin_failed() -> None:
    d = pin_driver(pin_attempts=2)
    d.connect()
    d.played("enter_pin")
    d.keys("1111")
    d.played("wrong_pin", "enter_pin")
    actions = d.keys("2222")
    ops = d.ops(actions)
    assert ops[0] == DetectDtmf(CALLER, inband=False)
    assert isinstance(ops[1], Play) and ops[1].prompts == ("goodbye",)
    assert d.call.state is CallState.ENDING
    assert d.record.pin_result is PinResult.FAILED
    # Keys during the goodbye change nothing.
    assert d.ops(d.keys(PIN)) == []
    actions = d.played("goodbye", after=1.0)
    assert d.of(HangupCaller, actions)
    assert d.call.finished
    assert d.record.outcome is Outcome.PIN_FAILED
    assert d.record.end_reason == "no valid PIN in 2 attempts"


def test_timeouts_count_as_failures_up_to_pin_attempts() -> None:
    d = pin_driver(pin_attempts=3, pin_timeout=5.0)
    d.connect()
    for _ in range(3):
        d.played(*[p.prompts for p in d.of(Play)][-1])
        d.wait(5.0)
    assert d.call.state is CallState.ENDING
    assert d.record.pin_result is PinResult.FAILED


def test_a_lost_end_of_the_goodbye_still_hangs_up() -> None:
    d = pin_driver(pin_attempts=1, intro_timeout=30.0)
    d.connect()
    d.played("enter_pin")
    d.keys("0000")
    actions = d.wait(30.0)
    assert d.of(HangupCaller, actions)
    assert d.record.outcome is Outcome.PIN_FAILED


def test_caller_hanging_up_during_the_pin_is_abandoned() -> None:
    d = pin_driver()
    d.connect()
    d.played("enter_pin")
    d.keys("12")
    actions = d.send(CallerHungUp())
    assert not d.of(HangupCaller, actions)
    assert d.record.outcome is Outcome.CALLER_HUNG_UP
    assert d.record.pin_result is PinResult.ABANDONED
    assert d.record.end_reason == "caller hung up while entering the PIN"
    assert d.guard.tracked == 0  # no wrong entry yet: not a failed call


# -- lockout -------------------------------------------------------------------------------------


def failed_call(guard: PinGuard, now: float, caller: str = "0301234", **overrides: object) -> Driver:
    values: dict[str, object] = {"pins": (PIN,), "pin_attempts": 1, "pin_lockout_failures": 2}
    values.update(overrides)
    d = Driver(make_config(**values), guard=guard, now=now, caller=caller)
    d.connect()
    d.played("enter_pin")
    d.keys("0000")
    d.played("goodbye")
    assert d.call.finished
    return d


def test_lockout_after_failed_calls_rejects_with_403_and_expires() -> None:
    guard = PinGuard(failures=2, lockout_time=600.0)
    first = failed_call(guard, START)
    assert first.record.pin_result is PinResult.FAILED
    second = failed_call(guard, START + 60)
    assert second.record.pin_result is PinResult.LOCKED_OUT
    assert "now locked out for 10 min" in (second.record.end_reason or "")

    third = Driver(make_config(pins=(PIN,)), guard=guard, now=START + 120)
    actions = third.start()
    assert third.ops(actions) == [RejectCaller(403, "Forbidden")]
    assert third.call.finished and third.call.next_deadline() is None
    record = third.record
    assert record.outcome is Outcome.REJECTED and record.pin_result is PinResult.LOCKED_OUT
    assert record.ended == record.started and record.answered is None
    assert "locked out" in (record.end_reason or "")
    # Events for a rejected call are ignored.
    assert third.ops(third.send(CallerConnected())) == []

    other = Driver(make_config(pins=(PIN,)), guard=guard, now=START + 120, caller="0409999")
    assert other.ops(other.start()) == [AnswerCaller()]

    locked_at = second.now  # the wrong entry that locked came a few seconds into the second call
    still = Driver(make_config(pins=(PIN,)), guard=guard, now=locked_at + 599.9)
    assert still.ops(still.start()) == [RejectCaller(403, "Forbidden")]
    later = Driver(make_config(pins=(PIN,)), guard=guard, now=locked_at + 600)
    assert later.ops(later.start()) == [AnswerCaller()]  # the lockout has expired


def test_hotlines_without_pins_ignore_the_guard() -> None:
    guard = PinGuard(failures=1, lockout_time=600.0)
    guard.failed("0301234", START)
    d = Driver(make_config(), guard=guard)
    assert d.ops(d.start()) == [AnswerCaller()]


def test_hanging_up_after_a_wrong_entry_counts_as_a_failed_call() -> None:
    guard = PinGuard(failures=2, lockout_time=600.0)
    for i in range(2):
        d = Driver(make_config(pins=(PIN,), pin_attempts=3), guard=guard, now=START + 10 * i)
        d.connect()
        d.played("enter_pin")
        d.keys("0000")
        d.send(CallerHungUp())
    assert d.record.pin_result is PinResult.LOCKED_OUT
    assert guard.is_locked("0301234", START + 30)


def test_a_right_pin_resets_the_failures() -> None:
    guard = PinGuard(failures=2, lockout_time=600.0)
    failed_call(guard, START)
    ok = Driver(make_config(pins=(PIN,)), guard=guard, now=START + 10)
    ok.hunt()
    assert ok.record.pin_result is PinResult.OK
    third = failed_call(guard, START + 20)
    assert third.record.pin_result is PinResult.FAILED  # only one failure since the reset


def test_pins_of_different_lengths_through_the_call() -> None:
    d = Driver(make_config(pins=("1234", "987654")))
    d.connect()
    d.played("enter_pin")
    d.keys("9876")
    assert d.call.state is CallState.PIN_ENTRY  # not a PIN yet, not the longest length
    d.keys("54")
    assert d.record.pin_result is PinResult.OK


def test_malformed_keys_are_ignored() -> None:
    d = pin_driver()
    d.connect()
    d.played("enter_pin")
    for bad in ("x", "12", "", "!"):
        assert d.ops(d.send(Digit(CALLER, bad, DtmfMethod.INFO))) == []
    d.keys(PIN.lower())
    assert d.record.pin_result is PinResult.OK
    d2 = pin_driver(pins=("12AB",))
    d2.connect()
    d2.played("enter_pin")
    d2.keys("12ab")  # letters arrive in either case
    assert d2.record.pin_result is PinResult.OK
