"""The transition tables: complete where they must be, and every (state, input) pair handled."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from sipcallhunt.errors import LocalProtocolError
from sipcallhunt.hotline import attempt as attempt_module
from sipcallhunt.hotline import call as call_module
from sipcallhunt.hotline.actions import Action, Log
from sipcallhunt.hotline.attempt import (
    AgentAttempt,
    AttemptInput,
    AttemptSignal,
    AttemptState,
    classify_failure,
    whisper_playlist,
)
from sipcallhunt.hotline.call import CallInput, CallState, CallTimer
from sipcallhunt.hotline.events import (
    CALLER,
    AgentAnswered,
    AgentFailed,
    AgentHungUp,
    AgentRinging,
    CallerConnected,
    CallerHungUp,
    Digit,
    MediaTimeout,
    PlaybackFinished,
    Shutdown,
)
from sipcallhunt.records import AttemptEnd, DtmfMethod
from tests.hotline.helpers import Driver, make_config

# -- attempt ---------------------------------------------------------------------------------------


def new_attempt(*, confirm: bool = True) -> AgentAttempt:
    return AgentAttempt(
        call_id="c",
        seq=1,
        round=1,
        agent_name="Alice",
        number="201",
        caller_id=None,
        ring_timeout=20.0,
        confirm=confirm,
        tokens=itertools.count(1),
    )


def attempt_in(state: AttemptState) -> AgentAttempt:
    attempt = new_attempt()
    attempt.dial(0.0)
    steps: dict[AttemptState, list[object]] = {
        AttemptState.INVITING: [],
        AttemptState.RINGING: [AgentRinging(1)],
        AttemptState.CONFIRMING: [AgentAnswered(1)],
        AttemptState.BRIDGED: [AgentAnswered(1), Digit(1, "1", DtmfMethod.INFO)],
        AttemptState.ENDED: [AgentFailed(1, 486)],
    }
    for event in steps[state]:
        attempt.handle(event, 1.0)
    assert attempt.state is state
    return attempt


EXTERNAL_EVENTS: dict[AttemptInput, object] = {
    AttemptInput.PROVISIONAL: AgentRinging(1, early_media=True),
    AttemptInput.ANSWERED: AgentAnswered(1),
    AttemptInput.FAILED: AgentFailed(1, 500, "Server Internal Error"),
    AttemptInput.HUNG_UP: AgentHungUp(1),
    AttemptInput.CONFIRM_KEY: Digit(1, "1", DtmfMethod.RFC4733),
    AttemptInput.DECLINE_KEY: Digit(1, "2", DtmfMethod.RFC4733),
    AttemptInput.OTHER_KEY: Digit(1, "5", DtmfMethod.RFC4733),
    AttemptInput.MEDIA_TIMEOUT: MediaTimeout(1),
}


@pytest.mark.parametrize("state", list(AttemptState))
@pytest.mark.parametrize("input_", list(EXTERNAL_EVENTS))
def test_every_attempt_state_handles_every_outside_event(state: AttemptState, input_: AttemptInput) -> None:
    attempt = attempt_in(state)
    before = attempt.record
    actions, signal = attempt.handle(EXTERNAL_EVENTS[input_], 2.0)
    rule = attempt_module.TRANSITIONS.get((state, input_))
    if rule is None:
        assert attempt.state is state and attempt.record == before and signal is AttemptSignal.NONE
        assert all(isinstance(a, Log) for a in actions)
    else:
        assert attempt.state is rule[0] and signal is rule[2]


def test_every_live_attempt_state_can_be_aborted_and_reaches_ended() -> None:
    for state in AttemptState:
        if state is AttemptState.ENDED:
            with pytest.raises(LocalProtocolError):
                attempt_in(state).abort(AttemptEnd.SHUTDOWN, "x", 3.0)
            continue
        attempt = attempt_in(state)
        actions = attempt.abort(AttemptEnd.SHUTDOWN, "the daemon shut down", 3.0)
        assert attempt.state is AttemptState.ENDED and attempt.record.end is AttemptEnd.SHUTDOWN
        assert any(type(a).__name__ == "HangupAgent" for a in actions)


def test_attempt_timers_have_entries_in_the_states_where_they_run() -> None:
    table = attempt_module.TRANSITIONS
    for state in (AttemptState.INVITING, AttemptState.RINGING):
        assert (state, AttemptInput.RING_TIMEOUT) in table
    assert (AttemptState.CONFIRMING, AttemptInput.CONFIRM_TIMEOUT) in table
    for state, input_ in table:
        assert state is not AttemptState.ENDED, "nothing leaves ENDED"
        assert isinstance(input_, AttemptInput)


def test_attempt_timers_run_only_where_they_belong() -> None:
    attempt = new_attempt()
    attempt.dial(0.0)
    assert attempt.next_deadline() == 20.0
    assert attempt.handle_timer(4.0) == ([], AttemptSignal.NONE)
    attempt.handle(AgentAnswered(1), 5.0)
    assert attempt.next_deadline() == 15.0  # the ring timer stopped, the confirm timer runs
    _, signal = attempt.handle_timer(15.0)
    assert signal is AttemptSignal.ENDED and attempt.next_deadline() is None
    assert attempt.record.end is AttemptEnd.CONFIRM_TIMEOUT


def test_forward_attempt_is_accepted_by_its_answer() -> None:
    attempt = new_attempt(confirm=False)
    attempt.dial(0.0)
    _, signal = attempt.handle(AgentAnswered(1), 1.0)
    assert signal is AttemptSignal.ACCEPTED and attempt.state is AttemptState.BRIDGED
    assert attempt.next_deadline() is None
    _, signal = attempt.handle(Digit(1, "1", DtmfMethod.INBAND), 2.0)
    assert signal is AttemptSignal.NONE  # keys mean nothing on a forward leg


def test_dialing_twice_is_a_bug() -> None:
    attempt = new_attempt()
    attempt.dial(0.0)
    with pytest.raises(LocalProtocolError):
        attempt.dial(1.0)


@pytest.mark.parametrize(
    ("status", "end"),
    [
        (486, AttemptEnd.BUSY),
        (600, AttemptEnd.BUSY),
        (603, AttemptEnd.DECLINED),
        (302, AttemptEnd.UNAVAILABLE),
        (404, AttemptEnd.UNAVAILABLE),
        (408, AttemptEnd.UNAVAILABLE),
        (480, AttemptEnd.UNAVAILABLE),
        (487, AttemptEnd.UNAVAILABLE),
        (500, AttemptEnd.FAILED),
        (503, AttemptEnd.FAILED),
        (604, AttemptEnd.FAILED),
        (None, AttemptEnd.FAILED),
        (180, AttemptEnd.FAILED),
    ],
)
def test_classify_failure(status: int | None, end: AttemptEnd) -> None:
    assert classify_failure(status) is end


def test_whisper_playlist_names_every_key() -> None:
    assert whisper_playlist("1", "2") == (
        "hotline_name",
        "whisper",
        "press",
        "digit_1",
        "to_accept",
        "press",
        "digit_2",
        "to_decline",
    )
    assert whisper_playlist("A", "#")[3::3] == ("digit_A", "digit_hash")


# -- call ------------------------------------------------------------------------------------------


def test_call_table_covers_the_inputs_that_must_always_be_handled() -> None:
    table = call_module.TRANSITIONS
    live = [s for s in CallState if s not in (CallState.NEW, CallState.ENDED)]
    for state in live:
        for input_ in (
            CallInput.CALLER_HUNG_UP,
            CallInput.CALLER_MEDIA_TIMEOUT,
            CallInput.MAX_CALL_TIME,
            CallInput.SHUTDOWN,
        ):
            assert table[(state, input_)][0] is CallState.ENDED
    timer_inputs = {
        CallTimer.CONNECT: CallInput.CONNECT_TIMEOUT,
        CallTimer.PROMPT: CallInput.PROMPT_TIMEOUT,
        CallTimer.PIN: CallInput.PIN_TIMEOUT,
        CallTimer.MAX_CALL: CallInput.MAX_CALL_TIME,
    }
    for state, timers in call_module._STATE_TIMERS.items():
        for timer in timers:
            assert (state, timer_inputs[timer]) in table, f"{timer} may run in {state} but has no entry"
    assert not [key for key in table if key[0] is CallState.ENDED]


def reach(state: CallState) -> Driver:
    """A call with a PIN and a forward number, driven into ``state``."""
    d = Driver(make_config(pins=("4711",), rounds=1, on_no_agent="forward:0800"))
    d.start()
    if state is CallState.ANSWERING:
        return d
    d.send(CallerConnected())
    if state is CallState.INTRO:
        return d
    d.played("intro")
    if state is CallState.PIN_PROMPT:
        return d
    d.played("enter_pin")
    if state is CallState.PIN_ENTRY:
        return d
    if state is CallState.ENDING:
        for _ in range(3):
            d.keys("0000")
            if not d.call.finished and d.call.state is CallState.PIN_PROMPT:
                d.played("wrong_pin", "enter_pin")
        return d
    d.keys("4711")
    if state is CallState.HUNTING:
        return d
    d.send(AgentAnswered(1))
    if state is CallState.CONFIRMING:
        return d
    if state is CallState.BRIDGED:
        d.key("1", leg=1)
        return d
    d.key("2", leg=1)  # Alice declines
    d.send(AgentFailed(2, 486))  # Bob is busy: forward
    if state is CallState.FORWARDING:
        return d
    d.send(CallerHungUp())
    assert state is CallState.ENDED
    return d


def outside_events(d: Driver) -> list[Callable[[], object]]:
    current = d.dials[-1].attempt if d.dials else 1
    waited = [a.token for a in d.actions if type(a).__name__ == "Play"]
    return [
        CallerConnected,
        CallerHungUp,
        Shutdown,
        lambda: MediaTimeout(CALLER),
        lambda: Digit(CALLER, "4", DtmfMethod.INBAND),
        lambda: Digit(CALLER, "#", DtmfMethod.INFO),
        lambda: PlaybackFinished(CALLER, waited[-1] if waited else 1),
        lambda: PlaybackFinished(CALLER, 999),
        lambda: AgentRinging(current, early_media=True),
        lambda: AgentAnswered(current),
        lambda: AgentFailed(current, 486, "Busy Here"),
        lambda: AgentHungUp(current),
        lambda: MediaTimeout(current),
        lambda: Digit(current, "1", DtmfMethod.RFC4733),
        lambda: Digit(current, "2", DtmfMethod.RFC4733),
        lambda: AgentAnswered(current + 5),
    ]


@pytest.mark.parametrize("state", [s for s in CallState if s is not CallState.NEW])
def test_every_call_state_handles_every_outside_event_and_timers(state: CallState) -> None:
    template = reach(state)
    assert template.call.state is state
    for index in range(len(outside_events(template))):
        d = reach(state)
        event = outside_events(d)[index]()
        actions: list[Action] = d.send(event)  # the driver's model checks every invariant
        assert isinstance(actions, list)
        d.wait(5000.0)  # and every timer that may follow
        if d.call.state is not CallState.ENDED:
            d.send(Shutdown())
        assert d.call.finished and d.call.next_deadline() is None
