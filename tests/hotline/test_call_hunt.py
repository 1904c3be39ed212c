"""HotlineCall: the hunt, the agent's confirmation, the bridge, no agent, forward, and every way a call ends."""

from __future__ import annotations

import pytest

from sipcallhunt.config import AgentConfig
from sipcallhunt.hotline.actions import (
    Bridge,
    DetectDtmf,
    Dial,
    HangupAgent,
    HangupCaller,
    Play,
    StopPlayback,
    StoreAttempt,
    StoreCall,
)
from sipcallhunt.hotline.call import FORWARD_RING_TIMEOUT, CallState
from sipcallhunt.hotline.events import (
    CALLER,
    AgentAnswered,
    AgentFailed,
    AgentHungUp,
    AgentRinging,
    CallerConnected,
    CallerHungUp,
    MediaTimeout,
    PlaybackFinished,
    Shutdown,
)
from sipcallhunt.records import AttemptEnd, ConfirmResult, DtmfMethod, Outcome, PinResult
from tests.hotline.helpers import WALL_OFFSET, Driver, make_config

WHISPER = ("hotline_name", "whisper", "press", "digit_1", "to_accept", "press", "digit_2", "to_decline")


def answer(d: Driver, seq: int | None = None, *, after: float = 2.0) -> None:
    d.send(AgentAnswered(seq or d.current()), after=after)


def accept(d: Driver, *, after: float = 3.0, method: DtmfMethod = DtmfMethod.RFC4733) -> None:
    seq = d.current()
    answer(d, seq)
    d.key("1", leg=seq, method=method, after=after)


# -- the hunt --------------------------------------------------------------------------------------


def test_agents_are_dialed_in_order_one_at_a_time_for_every_round() -> None:
    d = Driver(make_config(rounds=2))
    d.hunt()
    assert d.dials == [Dial(1, "Alice", "201", "0301234")]
    for _ in range(3):
        actions = d.wait_until_deadline()
        # The ring timeout cancels and dials the next agent in the same step.
        ops = d.ops(actions)
        assert isinstance(ops[0], HangupAgent) and isinstance(ops[1], Dial)
    assert [(dial.attempt, dial.agent_name) for dial in d.dials] == [(1, "Alice"), (2, "Bob"), (3, "Alice"), (4, "Bob")]
    assert [d.attempt(seq).round for seq in range(1, 5)] == [1, 1, 2, 2]
    assert [d.attempt(seq).end for seq in range(1, 4)] == [AttemptEnd.NO_ANSWER] * 3
    assert d.attempt(1).end_reason == "Alice did not answer within 20 s"


def test_ring_timeout_runs_from_the_invite_whatever_provisional_responses_arrive() -> None:
    d = Driver()
    d.hunt()
    dialed_at = d.now
    d.send(AgentRinging(1, early_media=False), after=1.0)
    d.send(AgentRinging(1, early_media=True), after=5.0)
    d.send(AgentRinging(1, early_media=True), after=5.0)
    assert d.call.next_deadline() == dialed_at + 20.0
    assert d.ops(d.wait(dialed_at + 19.99 - d.now)) == []
    actions = d.wait(0.01)
    assert d.ops(actions)[0] == HangupAgent(1, "Alice did not answer within 20 s")
    assert d.attempt(1).ringing == dialed_at + 1.0 + WALL_OFFSET
    assert "ringing (early media)" not in d.log_text().split("\n")[0]
    assert "(early media)" in d.log_text()


def test_each_agent_rings_for_its_own_ring_timeout() -> None:
    d = Driver()
    d.hunt()
    d.wait(20.0)  # Alice: 20 s
    started = d.now
    d.wait(14.9)
    assert len(d.dials) == 2
    d.wait(0.1)  # Bob: 15 s
    assert len(d.dials) == 3
    assert d.attempt(2).ended == started + 15.0 + WALL_OFFSET


@pytest.mark.parametrize(
    ("status", "reason", "end", "sentence"),
    [
        (486, "Busy Here", AttemptEnd.BUSY, "Alice was busy (486 Busy Here)"),
        (600, "Busy Everywhere", AttemptEnd.BUSY, "Alice was busy (600 Busy Everywhere)"),
        (603, "Decline", AttemptEnd.DECLINED, "Alice declined the call (603 Decline)"),
        (404, "Not Found", AttemptEnd.UNAVAILABLE, "Alice was unavailable (404 Not Found)"),
        (480, "Temporarily Unavailable", AttemptEnd.UNAVAILABLE, "Alice was unavailable (480 Temporarily Unavailable)"),
        (503, "Service Unavailable", AttemptEnd.FAILED, "the call to Alice failed (503 Service Unavailable)"),
        (None, "", AttemptEnd.FAILED, "the call to Alice failed (no response)"),
    ],
)
def test_final_failures_move_on_to_the_next_agent_at_once(
    status: int | None, reason: str, end: AttemptEnd, sentence: str
) -> None:
    d = Driver()
    d.hunt()
    d.send(AgentRinging(1), after=1.0)
    actions = d.send(AgentFailed(1, status, reason), after=2.0)
    assert d.ops(actions) == [Dial(2, "Bob", "202", "0301234")]  # no CANCEL: the INVITE is over
    record = d.attempt(1)
    assert (record.end, record.sip_status, record.end_reason) == (end, status, sentence)


def test_caller_id_is_the_callers_number_or_none_for_the_hotline() -> None:
    d = Driver(make_config(caller_id="hotline"))
    d.hunt()
    assert d.dials[0].caller_id is None
    d = Driver(caller="sip:anonymous@anonymous.invalid")
    d.hunt()
    assert d.dials[0].caller_id is None  # no number to present


def test_hold_music_is_one_stream_for_the_whole_hunt() -> None:
    d = Driver()
    d.hunt()
    actions = d.played("please_hold", after=4.0)
    assert d.ops(actions) == [Play(CALLER, ("hold_music",), loop=True, token=d.token("hold_music"))]
    d.wait(20.0)  # Alice: no answer
    answer(d)  # Bob answers, then declines
    d.key("2", leg=2, after=1.0)
    d.send(AgentFailed(3, 486, "Busy Here"), after=1.0)
    caller_ops = [a for a in d.ops() if getattr(a, "leg", None) is CALLER]
    assert [getattr(a, "prompts", None) for a in caller_ops if isinstance(a, Play)] == [
        ("intro",),
        ("please_hold",),
        ("hold_music",),
    ]
    assert not d.of(StopPlayback)


def test_music_starts_after_please_hold_even_while_an_agent_is_confirming() -> None:
    d = Driver()
    d.hunt()
    answer(d, after=0.5)
    assert d.call.state is CallState.CONFIRMING
    actions = d.played("please_hold", after=2.0)
    assert [p.prompts for p in d.of(Play, actions)] == [("hold_music",)]


# -- confirmation ---------------------------------------------------------------------------------


def test_an_answering_agent_hears_the_whisper_on_a_loop_with_inband_detection() -> None:
    d = Driver()
    d.hunt()
    actions = d.send(AgentAnswered(1), after=4.0)
    ops = d.ops(actions)
    assert ops[0] == DetectDtmf(1, inband=True)
    assert isinstance(ops[1], Play) and (ops[1].leg, ops[1].prompts, ops[1].loop) == (1, WHISPER, True)
    assert len(ops) == 2  # the caller hears nothing new
    assert d.attempt(1).answered is not None and d.attempt(1).sip_status == 200
    assert d.call.state is CallState.CONFIRMING


def test_whisper_names_the_configured_keys() -> None:
    d = Driver(make_config(confirm_key="*", decline_key="#", inband_dtmf=False))
    d.hunt()
    actions = d.send(AgentAnswered(1))
    assert not d.of(DetectDtmf, actions)
    play = d.of(Play, actions)[0]
    assert play.prompts[3] == "digit_star" and play.prompts[6] == "digit_hash"
    d.key("*", leg=1)
    assert d.call.state is CallState.BRIDGED


@pytest.mark.parametrize("method", list(DtmfMethod))
def test_confirm_key_bridges_the_caller_with_the_agent(method: DtmfMethod) -> None:
    d = Driver()
    d.hunt()
    d.played("please_hold")
    answer(d, after=5.0)
    actions = d.key("1", leg=1, method=method, after=3.0)
    assert d.ops(actions) == [
        StopPlayback(1),
        DetectDtmf(1, inband=False),
        StopPlayback(CALLER),
        Bridge(1),
    ]
    record = d.record
    assert (record.agent, record.agent_number) == ("Alice", "201")
    assert record.bridged == d.now + WALL_OFFSET
    assert record.wait_time == pytest.approx(d.now - (record.answered or 0) + WALL_OFFSET)
    attempt = d.attempt(1)
    assert attempt.confirm is ConfirmResult.ACCEPTED and attempt.dtmf_method is method
    assert d.call.state is CallState.BRIDGED


def test_decline_key_hangs_up_the_agent_and_dials_the_next() -> None:
    d = Driver()
    d.hunt()
    answer(d)
    actions = d.key("2", leg=1, method=DtmfMethod.INFO, after=2.0)
    assert d.ops(actions) == [HangupAgent(1, "Alice pressed 2 to decline"), Dial(2, "Bob", "202", "0301234")]
    attempt = d.attempt(1)
    assert (attempt.end, attempt.confirm, attempt.dtmf_method) == (
        AttemptEnd.DECLINED,
        ConfirmResult.DECLINED,
        DtmfMethod.INFO,
    )


def test_other_keys_are_ignored_and_do_not_extend_the_confirm_timeout() -> None:
    d = Driver(make_config(confirm_timeout=10.0))
    d.hunt()
    answer(d)
    for key in "3*#9":
        assert d.ops(d.key(key, leg=1, after=2.0)) == []
    assert "pressed '3': neither 1 nor 2, ignored" in d.log_text()
    d.key("1", leg=1, after=1.0)  # 9 s after the answer: still in time
    assert d.call.state is CallState.BRIDGED


def test_no_key_within_confirm_timeout_hangs_up_the_agent_and_moves_on() -> None:
    d = Driver(make_config(confirm_timeout=10.0))
    d.hunt()
    answer(d)
    assert d.ops(d.wait(9.9)) == []
    actions = d.wait(0.1)
    assert d.ops(actions) == [
        HangupAgent(1, "Alice answered but pressed no key within 10 s"),
        Dial(2, "Bob", "202", "0301234"),
    ]
    attempt = d.attempt(1)
    assert (attempt.end, attempt.confirm) == (AttemptEnd.CONFIRM_TIMEOUT, ConfirmResult.TIMEOUT)


def test_agent_hanging_up_during_the_confirmation_moves_on() -> None:
    d = Driver()
    d.hunt()
    answer(d)
    actions = d.send(AgentHungUp(1), after=3.0)
    assert d.ops(actions) == [Dial(2, "Bob", "202", "0301234")]
    attempt = d.attempt(1)
    assert (attempt.end, attempt.confirm) == (AttemptEnd.AGENT_HUNG_UP, ConfirmResult.HUNG_UP)


def test_agent_leg_failing_or_losing_media_during_the_confirmation_moves_on() -> None:
    d = Driver()
    d.hunt()
    answer(d)
    actions = d.send(MediaTimeout(1), after=3.0)
    assert [type(a) for a in d.ops(actions)] == [HangupAgent, Dial]
    assert d.attempt(1).end is AttemptEnd.MEDIA_TIMEOUT
    answer(d)
    actions = d.send(AgentFailed(2, None, "transport error"), after=1.0)
    assert [type(a) for a in d.ops(actions)] == [HangupAgent, Dial]
    assert d.attempt(2).end is AttemptEnd.FAILED


def test_keys_before_the_answer_do_nothing() -> None:
    d = Driver()
    d.hunt()
    d.send(AgentRinging(1, early_media=True))
    assert d.ops(d.key("1", leg=1)) == []
    assert d.call.state is CallState.HUNTING


# -- the bridge --------------------------------------------------------------------------------------


def test_agent_hanging_up_in_the_bridge_ends_the_call_as_connected() -> None:
    d = Driver()
    d.hunt()
    accept(d)
    bridged = d.now
    actions = d.send(AgentHungUp(1), after=123.0)
    assert d.ops(actions) == [HangupCaller("Alice accepted and hung up after 2 min 3 s")]
    record = d.record
    assert record.outcome is Outcome.CONNECTED
    assert record.end_reason == "Alice accepted and hung up after 2 min 3 s"
    assert record.talk_time == pytest.approx(123.0)
    assert record.ended == bridged + 123.0 + WALL_OFFSET
    assert d.attempt(1).end is AttemptEnd.AGENT_HUNG_UP
    assert d.call.finished and d.call.next_deadline() is None


def test_caller_hanging_up_in_the_bridge_hangs_up_the_agent() -> None:
    d = Driver()
    d.hunt()
    accept(d)
    actions = d.send(CallerHungUp(), after=65.0)
    assert d.ops(actions) == [HangupAgent(1, "the caller hung up after 1 min 5 s connected")]
    assert d.record.outcome is Outcome.CONNECTED
    assert d.record.end_reason == "the caller hung up after 1 min 5 s with Alice"
    assert d.attempt(1).end is AttemptEnd.CALLER_HUNG_UP


@pytest.mark.parametrize("leg", [CALLER, 1])
def test_a_media_timeout_on_either_leg_ends_the_bridged_call(leg: object) -> None:
    d = Driver()
    d.hunt()
    accept(d)
    actions = d.send(MediaTimeout(leg), after=40.0)  # type: ignore[arg-type]
    ops = d.ops(actions)
    assert [type(a) for a in ops] == [HangupAgent, HangupCaller]
    assert d.record.outcome is Outcome.CONNECTED
    assert "media stopped" in (d.record.end_reason or "")
    assert d.attempt(1).end is AttemptEnd.MEDIA_TIMEOUT


def test_agent_leg_failure_in_the_bridge_ends_the_call() -> None:
    d = Driver()
    d.hunt()
    accept(d)
    actions = d.send(AgentFailed(1, None, "transport error"), after=10.0)
    assert [type(a) for a in d.ops(actions)] == [HangupAgent, HangupCaller]
    assert d.record.outcome is Outcome.CONNECTED


# -- the caller hangs up ---------------------------------------------------------------------------


def test_caller_hanging_up_while_an_agent_rings_cancels_it_in_the_same_step() -> None:
    d = Driver()
    d.hunt()
    d.wait(20.0)
    d.send(AgentRinging(2, early_media=True), after=1.0)
    actions = d.send(CallerHungUp(), after=2.0)
    assert d.ops(actions) == [HangupAgent(2, "the caller hung up while Bob's phone was ringing")]
    assert d.record.outcome is Outcome.CALLER_HUNG_UP
    assert d.record.end_reason == "caller hung up while Bob's phone was ringing"
    assert d.attempt(2).end is AttemptEnd.CALLER_HUNG_UP
    assert d.call.finished and d.call.next_deadline() is None


def test_caller_hanging_up_during_the_confirmation_cancels_the_agent() -> None:
    d = Driver()
    d.hunt()
    answer(d)
    actions = d.send(CallerHungUp(), after=2.0)
    assert d.ops(actions) == [HangupAgent(1, "the caller hung up while Alice was being asked to accept the call")]
    assert d.attempt(1).confirm is ConfirmResult.CANCELLED
    assert d.record.end_reason == "caller hung up while Alice was being asked to accept the call"


def test_caller_hanging_up_during_the_intro() -> None:
    d = Driver()
    d.start()
    d.send(CallerConnected())
    d.send(CallerHungUp(), after=1.0)
    assert d.record.outcome is Outcome.CALLER_HUNG_UP
    assert d.record.end_reason == "caller hung up during the intro"
    assert d.record.wait_time == pytest.approx(1.0)


# -- nobody accepts: announce or forward -------------------------------------------------------------


def exhaust(d: Driver) -> None:
    """Let every attempt of every round ring out."""
    for _ in range(len(d.config.agents) * d.config.rounds):
        d.wait_until_deadline()


def test_no_agent_announces_and_hangs_up() -> None:
    d = Driver(make_config(rounds=2))
    d.hunt()
    d.played("please_hold")
    exhaust(d)
    assert [p.prompts for p in d.of(Play, d.last)] == [("no_agent",)]
    assert d.call.state is CallState.ENDING
    actions = d.played("no_agent", after=4.0)
    assert d.ops(actions) == [HangupCaller("no agent pressed 1 in 2 rounds")]
    assert d.record.outcome is Outcome.NO_AGENT
    assert d.record.end_reason == "no agent pressed 1 in 2 rounds"
    assert d.record.wait_time is not None and d.record.talk_time is None


def test_caller_hanging_up_during_the_no_agent_prompt_keeps_the_outcome() -> None:
    d = Driver(make_config(rounds=1))
    d.hunt()
    exhaust(d)
    d.send(CallerHungUp(), after=1.0)
    assert d.record.outcome is Outcome.NO_AGENT
    assert d.record.end_reason == ("no agent pressed 1 in 1 round (caller hung up during the closing announcement)")


def test_a_hotline_without_agents_announces_no_agent() -> None:
    d = Driver(make_config(agents=()))
    d.hunt()
    assert not d.dials
    d.played("no_agent")
    assert d.record.outcome is Outcome.NO_AGENT
    assert d.record.end_reason == "the hotline has no agents"


def test_forward_is_dialed_after_the_hunt_and_bridged_without_confirmation() -> None:
    d = Driver(make_config(rounds=1, on_no_agent="forward:0800123"))
    d.hunt()
    d.played("please_hold")
    exhaust(d)
    ops = d.ops(d.last)
    assert ops[0] == HangupAgent(2, "Bob did not answer within 15 s")
    assert isinstance(ops[1], Play) and ops[1].prompts == ("forwarding",) and not ops[1].loop
    assert ops[2] == Dial(3, "forward", "0800123", "0301234")
    assert d.attempt(3).round == 0
    # After "forwarding" the music goes on while the forward rings.
    assert [p.prompts for p in d.of(Play, d.played("forwarding"))] == [("hold_music",)]
    actions = d.send(AgentAnswered(3), after=5.0)
    assert d.ops(actions) == [StopPlayback(CALLER), Bridge(3)]  # no whisper
    assert d.attempt(3).confirm is ConfirmResult.NOT_REQUIRED
    d.send(CallerHungUp(), after=30.0)
    assert d.record.outcome is Outcome.FORWARDED
    assert (d.record.agent, d.record.agent_number) == ("forward", "0800123")
    assert d.record.end_reason == "forwarded to 0800123; the caller hung up after 30 s"


def test_forward_hanging_up_ends_the_call_as_forwarded() -> None:
    d = Driver(make_config(rounds=1, on_no_agent="forward:0800123"))
    d.hunt()
    exhaust(d)
    d.send(AgentAnswered(3))
    d.send(AgentHungUp(3), after=12.0)
    assert d.record.outcome is Outcome.FORWARDED
    assert d.record.end_reason == "forwarded; the forward number 0800123 hung up after 12 s"


@pytest.mark.parametrize("how", ["busy", "ring_timeout"])
def test_forward_failure_announces_no_agent(how: str) -> None:
    d = Driver(make_config(rounds=2, on_no_agent="forward:0800123"))
    d.hunt()
    exhaust(d)
    assert d.call.state is CallState.FORWARDING
    if how == "busy":
        actions = d.send(AgentFailed(5, 486, "Busy Here"), after=3.0)
        assert not d.of(HangupAgent, actions)
    else:
        assert d.call.next_deadline() == pytest.approx(d.now + FORWARD_RING_TIMEOUT)
        actions = d.wait_until_deadline()
        assert d.of(HangupAgent, actions) == [HangupAgent(5, "forward did not answer within 1 min")]
    assert [p.prompts for p in d.of(Play, actions)] == [("no_agent",)]
    d.played("no_agent")
    assert d.record.outcome is Outcome.NO_AGENT
    assert (d.record.end_reason or "").startswith("no agent pressed 1 in 2 rounds and the forward to 0800123 failed")


# -- max call time, shutdown, caller media timeout ----------------------------------------------------


def test_max_call_time_caps_a_bridged_call_from_the_invite() -> None:
    d = Driver(make_config(max_call_time=300.0))
    invite = d.now
    d.hunt()
    accept(d)
    actions = d.wait(invite + 300.0 - d.now)
    assert [type(a) for a in d.ops(actions)] == [HangupAgent, HangupCaller]
    assert d.record.outcome is Outcome.CONNECTED
    assert d.record.ended == invite + 300.0 + WALL_OFFSET
    assert "maximum call time of 5 min" in (d.record.end_reason or "")


def test_max_call_time_while_hunting_fails_the_call() -> None:
    d = Driver(make_config(max_call_time=25.0))
    d.hunt()
    actions = d.wait(30.0)
    assert HangupCaller in [type(a) for a in d.ops(actions)]
    assert d.record.outcome is Outcome.FAILED
    assert all(d.attempt(seq).ended is not None for seq in range(1, len(d.dials) + 1))


def test_caller_media_timeout_while_ringing_ends_every_leg() -> None:
    d = Driver()
    d.hunt()
    actions = d.send(MediaTimeout(CALLER), after=5.0)
    assert [type(a) for a in d.ops(actions)] == [HangupAgent, HangupCaller]
    assert d.record.outcome is Outcome.FAILED
    assert d.record.end_reason == "the caller's media stopped while Alice was being called"
    assert d.attempt(1).end is AttemptEnd.MEDIA_TIMEOUT


def reach(state: str) -> Driver:
    d = Driver(make_config(pins=("4711",)))
    d.start()
    if state == "answering":
        return d
    d.send(CallerConnected())
    if state == "intro":
        return d
    d.played("intro")
    if state == "pin":
        return d
    d.pass_pin("4711")
    if state == "ringing":
        d.send(AgentRinging(1))
        return d
    answer(d)
    if state == "confirming":
        return d
    d.key("1", leg=1)
    return d


@pytest.mark.parametrize("state", ["answering", "intro", "pin", "ringing", "confirming", "bridged"])
def test_shutdown_ends_the_call_cleanly_in_every_state(state: str) -> None:
    d = reach(state)
    actions = d.send(Shutdown(), after=1.0)
    ops = d.ops(actions)
    assert ops[-1] == HangupCaller(d.record.end_reason or "")
    assert (d.record.end_reason or "").startswith("the daemon shut down")
    assert d.call.finished and d.call.next_deadline() is None
    if state in ("ringing", "confirming", "bridged"):
        assert ops[0] == HangupAgent(1, ops[0].reason)  # type: ignore[union-attr]
        assert d.attempt(1).end is AttemptEnd.SHUTDOWN
    expected = Outcome.CONNECTED if state == "bridged" else Outcome.FAILED
    assert d.record.outcome is expected
    if state in ("answering", "intro", "pin"):
        assert d.record.pin_result is PinResult.ABANDONED


def test_shutdown_during_a_closing_prompt_keeps_the_decided_outcome() -> None:
    d = Driver(make_config(rounds=1, agents=(AgentConfig(name="Alice", number="201"),)))
    d.hunt()
    exhaust(d)
    d.send(Shutdown())
    assert d.record.outcome is Outcome.NO_AGENT
    assert d.of(HangupCaller, d.last)


# -- records -----------------------------------------------------------------------------------------


def test_one_call_record_key_and_attempts_numbered_with_their_round() -> None:
    d = Driver(make_config(rounds=2))
    d.hunt()
    d.wait(20.0)
    d.send(AgentFailed(2, 486, "Busy Here"))
    accept(d)
    d.send(CallerHungUp(), after=10.0)
    assert {s.record.call_id for s in d.of(StoreCall)} == {"call-1"}
    assert sorted({s.record.seq for s in d.of(StoreAttempt)}) == [1, 2, 3]
    assert [(r.seq, r.round, r.agent) for r in d.call.attempt_records] == [
        (1, 1, "Alice"),
        (2, 1, "Bob"),
        (3, 2, "Alice"),
    ]
    final = d.of(StoreCall)[-1].record
    assert final.outcome is Outcome.CONNECTED and final.ended is not None
    assert final == d.call.record


def test_unchanged_steps_emit_no_snapshots() -> None:
    d = Driver()
    d.hunt()
    d.send(AgentRinging(1))
    actions = d.send(AgentRinging(1))  # a second 180 changes no record
    assert not d.of(StoreCall, actions) and not d.of(StoreAttempt, actions)


def test_unused_playback_end_on_an_agent_leg_is_ignored() -> None:
    d = Driver()
    d.hunt()
    answer(d)
    assert d.ops(d.send(PlaybackFinished(1, 99))) == []
