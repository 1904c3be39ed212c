"""Random event sequences and time jumps against HotlineCall, checked by the leg model after every step.

Invariants (checked in tests.hotline.helpers.LegModel and here): no exception ever; one agent leg
at a time, never two confirming or bridged; every agent leg ended and the caller's leg ended when
the call ends; one call record key, attempts numbered 1, 2, …; the final snapshot has an outcome,
an end time and a reason; record times never go backwards; a live call always has a timer
(max_call_time), a finished one none.  Several calls in a row share one PinGuard, so lockouts
and rejections happen too.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sipcallhunt.config import HotlineConfig
from sipcallhunt.hotline.actions import Play
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
from sipcallhunt.hotline.pin import PinGuard
from sipcallhunt.records import DtmfMethod
from tests.hotline.helpers import START, Driver
from tests.hotline.strategies import hotline_configs, keys

methods = st.sampled_from(list(DtmfMethod))
rarely = st.integers(0, 4).map(lambda n: n == 0)  # gates the rules that end a call, so calls get far
statuses = st.sampled_from([None, 302, 404, 408, 480, 486, 487, 500, 503, 600, 603])


class HotlineCallMachine(RuleBasedStateMachine):
    config: HotlineConfig
    guard: PinGuard
    d: Driver
    calls: int

    @initialize(config=hotline_configs(), caller=st.sampled_from(["0301", "0302", "sip:anonymous@x"]))
    def first_call(self, config: HotlineConfig, caller: str) -> None:
        self.config = config
        self.caller = caller
        self.guard = PinGuard.for_hotline(config)
        self.calls = 0
        self.new_driver(START)

    def new_driver(self, now: float) -> None:
        self.calls += 1
        self.d = Driver(self.config, guard=self.guard, caller=self.caller, now=now, call_id=f"call-{self.calls}")
        self.d.start()

    def agent_leg(self, data: st.DataObject) -> int:
        dialed = [dial.attempt for dial in self.d.dials]
        return data.draw(st.sampled_from([*dialed, 0, len(dialed) + 1]) if dialed else st.integers(0, 3))

    # -- the caller ---------------------------------------------------------------------------------

    @rule()
    def caller_connected(self) -> None:
        self.d.send(CallerConnected())

    @rule(now=rarely)
    def caller_hung_up(self, now: bool) -> None:
        if now:
            self.d.send(CallerHungUp())

    @rule(key=keys, method=methods)
    def caller_key(self, key: str, method: DtmfMethod) -> None:
        self.d.send(Digit(CALLER, key, method))

    @precondition(lambda self: bool(self.config.pins))
    @rule(which=st.integers(0, 1), method=methods)
    def caller_types_a_pin(self, which: int, method: DtmfMethod) -> None:
        pin = self.config.pins[which % len(self.config.pins)]
        for key in pin:
            self.d.send(Digit(CALLER, key, method), after=0.3)

    @rule(data=st.data(), stale=st.booleans())
    def playlist_ends(self, data: st.DataObject, stale: bool) -> None:
        tokens = [a.token for a in self.d.actions if isinstance(a, Play) and a.leg is CALLER and not a.loop]
        if tokens and not stale:
            token = tokens[-1]
        else:
            token = data.draw(st.integers(0, 50))
        self.d.send(PlaybackFinished(CALLER, token))

    @rule(now=rarely)
    def caller_media_timeout(self, now: bool) -> None:
        if now:
            self.d.send(MediaTimeout(CALLER))

    # -- agents -------------------------------------------------------------------------------------

    @rule(data=st.data(), early=st.booleans())
    def agent_ringing(self, data: st.DataObject, early: bool) -> None:
        self.d.send(AgentRinging(self.agent_leg(data), early_media=early))

    @rule(data=st.data())
    def agent_answered(self, data: st.DataObject) -> None:
        self.d.send(AgentAnswered(self.agent_leg(data)))

    @rule(data=st.data(), status=statuses)
    def agent_failed(self, data: st.DataObject, status: int | None) -> None:
        self.d.send(AgentFailed(self.agent_leg(data), status, "reason"))

    @rule(data=st.data())
    def agent_hung_up(self, data: st.DataObject) -> None:
        self.d.send(AgentHungUp(self.agent_leg(data)))

    @rule(data=st.data(), method=methods)
    def agent_presses_confirm(self, data: st.DataObject, method: DtmfMethod) -> None:
        self.d.send(Digit(self.agent_leg(data), self.config.confirm_key, method))

    @rule(data=st.data(), key=keys, method=methods)
    def agent_key(self, data: st.DataObject, key: str, method: DtmfMethod) -> None:
        self.d.send(Digit(self.agent_leg(data), key, method))

    @rule(data=st.data())
    def agent_media_timeout(self, data: st.DataObject) -> None:
        self.d.send(MediaTimeout(self.agent_leg(data)))

    @rule(method=methods, steps=st.integers(1, 6))
    def progress(self, method: DtmfMethod, steps: int) -> None:
        """Up to ``steps`` natural next steps of the flow, so that random runs reach the bridge."""
        for _ in range(steps):
            d, state = self.d, self.d.call.state
            current = d.dials[-1].attempt if d.dials else 1
            tokens = [a.token for a in d.actions if isinstance(a, Play) and a.leg is CALLER and not a.loop]
            if state is CallState.ANSWERING:
                d.send(CallerConnected(), after=0.1)
            elif state in (CallState.INTRO, CallState.PIN_PROMPT, CallState.ENDING) and tokens:
                d.send(PlaybackFinished(CALLER, tokens[-1]), after=1.0)
            elif state is CallState.PIN_ENTRY and self.config.pins:
                for key in self.config.pins[0]:
                    d.send(Digit(CALLER, key, method), after=0.2)
            elif state in (CallState.HUNTING, CallState.FORWARDING):
                d.send(AgentAnswered(current), after=0.5)
            elif state is CallState.CONFIRMING:
                d.send(Digit(current, self.config.confirm_key, method), after=0.5)
            else:
                return

    # -- time and the daemon ------------------------------------------------------------------------

    @rule(seconds=st.one_of(st.floats(0.0, 10.0), st.floats(0.0, 300.0)))
    def time_passes(self, seconds: float) -> None:
        self.d.wait(seconds)

    @precondition(lambda self: self.d.call.next_deadline() is not None)
    @rule()
    def until_the_next_deadline(self) -> None:
        self.d.wait_until_deadline()

    @rule(now=rarely)
    def shutdown(self, now: bool) -> None:
        if now:
            self.d.send(Shutdown())

    @precondition(lambda self: self.d.call.finished)
    @rule(gap=st.floats(0.0, 600.0))
    def next_call_from_the_same_number(self, gap: float) -> None:
        self.new_driver(self.d.now + gap)

    # -- invariants ---------------------------------------------------------------------------------

    @invariant()
    def a_live_call_has_a_timer_and_a_finished_one_none(self) -> None:
        if not hasattr(self, "d"):
            return
        assert (self.d.call.next_deadline() is None) == self.d.call.finished

    def teardown(self) -> None:
        if hasattr(self, "d") and not self.d.call.finished:
            self.d.send(Shutdown())
            assert self.d.call.finished


HotlineCallMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestHotlineCall = HotlineCallMachine.TestCase
