"""Late, duplicate, unknown and malformed events are ignored and logged, never errors."""

from __future__ import annotations

import pytest

from sipcallhunt.hotline.actions import Log, LogLevel, StoreAttempt, StoreCall
from sipcallhunt.hotline.call import CallState
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
from sipcallhunt.records import DtmfMethod
from tests.hotline.helpers import WALL_OFFSET, Driver, make_config

LATE_AGENT_EVENTS = [
    AgentRinging(1, early_media=True),
    AgentAnswered(1),
    AgentFailed(1, 487, "Request Terminated"),
    AgentHungUp(1),
    MediaTimeout(1),
    Digit(1, "1", DtmfMethod.RFC4733),
    PlaybackFinished(1, 1),
]


@pytest.mark.parametrize("event", LATE_AGENT_EVENTS, ids=lambda e: type(e).__name__)
def test_events_for_an_attempt_that_is_over_are_ignored(event: object) -> None:
    d = Driver()
    d.hunt()
    d.wait(20.0)  # attempt 1 cancelled (ring timeout); Bob rings
    state, record, attempt = d.call.state, d.record, d.attempt(1)
    actions = d.send(event, after=0.5)
    assert d.ops(actions) == []
    assert not d.of(StoreCall, actions) and not d.of(StoreAttempt, actions)
    assert d.of(Log, actions), "an ignored event is still logged"
    assert (d.call.state, d.record, d.attempt(1)) == (state, record, attempt)


def test_a_2xx_crossing_our_cancel_is_left_to_the_shell() -> None:
    d = Driver()
    d.hunt()
    d.wait(20.0)
    d.send(AgentAnswered(1))  # the shell ACKs and BYEs it (HangupAgent was already sent)
    assert d.call.state is CallState.HUNTING
    assert d.current() == 2


@pytest.mark.parametrize("seq", [0, 7, -1, 99])
def test_events_for_attempts_never_dialed_are_ignored_with_a_warning(seq: int) -> None:
    d = Driver()
    d.hunt()
    for event in (AgentAnswered(seq), AgentHungUp(seq), AgentFailed(seq, 486), MediaTimeout(seq)):
        actions = d.send(event)
        assert d.ops(actions) == []
        assert any(log.level is LogLevel.WARNING for log in d.of(Log, actions))


def test_duplicates_are_ignored() -> None:
    d = Driver()
    d.hunt()
    d.send(AgentAnswered(1))
    assert d.ops(d.send(AgentAnswered(1))) == []
    d.key("1", leg=1)
    assert d.ops(d.key("1", leg=1)) == []
    assert d.ops(d.send(CallerConnected())) == []
    d.send(AgentHungUp(1), after=5.0)
    assert d.call.finished
    for event in (AgentHungUp(1), CallerHungUp(), Shutdown(), MediaTimeout(CALLER)):
        actions = d.send(event)
        assert d.ops(actions) == [] and not d.of(StoreCall, actions)
    assert d.wait(10_000.0) == []


def test_stale_playback_tokens_are_ignored() -> None:
    d = Driver(make_config(pins=("4711",)))
    d.connect()
    intro = d.token("intro")
    assert d.ops(d.send(PlaybackFinished(CALLER, intro))) == []  # already handled
    assert d.ops(d.send(PlaybackFinished(CALLER, 12345))) == []
    assert d.call.state is CallState.PIN_PROMPT


def test_unknown_event_types_are_ignored() -> None:
    d = Driver()
    d.hunt()
    actions = d.send(object())
    assert d.ops(actions) == []
    assert d.of(Log, actions)[0].level is LogLevel.WARNING


def test_time_going_backwards_never_makes_record_times_go_backwards() -> None:
    d = Driver()
    d.hunt()
    call = d.call
    later = d.now + 50.0
    call.handle(AgentRinging(1), later)
    actions = call.handle(AgentAnswered(1), later - 40.0)  # a clock that jumped back
    records = [a.record for a in actions if isinstance(a, StoreAttempt)]
    assert records[-1].answered == later + WALL_OFFSET
    assert records[-1].ringing == later + WALL_OFFSET
    deadline = call.next_deadline()
    assert deadline is not None and deadline >= later


def test_a_timer_run_a_hair_early_still_fires_at_its_deadline() -> None:
    d = Driver()
    d.hunt()
    deadline = d.call.next_deadline()
    assert deadline is not None
    actions = d.call.handle_timer(deadline - 0.0005)  # asyncio may run call_at this early
    assert [type(a).__name__ for a in actions if type(a).__name__ in ("HangupAgent", "Dial")] == [
        "HangupAgent",
        "Dial",
    ]
    records = [a.record for a in actions if isinstance(a, StoreAttempt)]
    assert records[0].ended == deadline + WALL_OFFSET
    assert d.call.handle_timer(deadline - 0.0005) == []  # nothing else is due
