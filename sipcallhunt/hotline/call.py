"""One hotline call: answer, intro, PIN, hold music while hunting agents, bridge, log — sans-IO.

Theory of operation
-------------------
A :class:`HotlineCall` is created by the shell for an INVITE to a hotline's extension (the peer is
already known to be trusted).  It never does I/O and never reads a clock: the shell passes
``now`` (its monotonic clock, seconds) into every method and carries out the returned actions
(:mod:`sipcallhunt.hotline.actions`) in order; SIP and media happenings come back as events
(:mod:`sipcallhunt.hotline.events`)::

    call = HotlineCall(config=hotline, call_id=..., caller="0301234", caller_uri="sip:0301234@pbx",
                       sip_call_id=..., now=loop.time(), wall_offset=time.time() - loop.time(),
                       pin_guard=guards[hotline.name])
    run(call.start(loop.time()))
    ... run(call.handle(event, loop.time()))        # for each event of the call's legs
    ... run(call.handle_timer(loop.time()))         # when loop.time() reaches call.next_deadline()
    ... until call.finished

Every method may return actions; after each, the shell re-arms one timer at ``next_deadline()``
(None: no timer).  Timers fire only in ``handle_timer`` (a deadline up to :data:`TIMER_SLACK`
after ``now`` counts as due); an event that arrives after a deadline but before
``handle_timer`` ran is handled as if it came first.  ``now`` values smaller than an
earlier one are taken as the earlier one, so record times never go backwards.

The flow (states in capitals; each arrow is one entry of :data:`TRANSITIONS`):

1. ``start``: a caller whose number the hotline's :class:`~sipcallhunt.hotline.pin.PinGuard`
   has locked out is rejected with 403 (no answer, no media; outcome ``rejected``, PIN result
   ``locked_out``) → ENDED.  Otherwise ``AnswerCaller`` → ANSWERING.  Rejecting rather than
   answering with the ``pin_locked`` prompt costs no media port and gives a guessing caller no
   connected call at all.  The same 403 (PIN result ``rate_limited``) refuses every caller while
   the hotline-wide limit holds (``pin_rate_limit`` failed PIN calls within a minute, from all
   numbers together: a guesser can change the number he calls from).
2. ANSWERING —CallerConnected→ INTRO: the intro plays.  No ``CallerConnected`` within
   ``intro_timeout``: the call ends (outcome ``failed``).
3. INTRO —intro played→ PIN_PROMPT if the hotline has PINs, else HUNTING.  With PINs and
   ``pin_type_ahead`` (the default), a key during the intro stops it and starts the PIN entry
   with that key (a caller who knows the PIN need not wait); otherwise keys during the intro
   are ignored (set ``pin_type_ahead = false`` when the intro carries notices callers must hear).
4. PIN_PROMPT: ``enter_pin`` plays (after a wrong entry ``wrong_pin`` + ``enter_pin``; after a
   timed-out one just ``enter_pin``).  The first key stops the prompt and counts (barge-in)
   → PIN_ENTRY; the prompt's end also → PIN_ENTRY.  PIN_ENTRY waits ``pin_timeout`` from the
   prompt's end or from the last key; keys from any DTMF method count alike.  When an entry ends
   (rules in :mod:`sipcallhunt.hotline.pin`): right → HUNTING; wrong or timed out → PIN_PROMPT
   again, until ``pin_attempts`` entries failed → ENDING with ``goodbye`` (outcome
   ``pin_failed``).  The in-band detector runs on the caller's leg only during the PIN phase.
5. HUNTING: ``please_hold`` plays, then ``hold_music`` on a loop — one playlist switch on the
   caller's one stream, never restarted between agents.  Agents are dialed in config order, one
   at a time, ``rounds`` times (attempts numbered 1, 2, … with their round); each attempt is an
   :class:`~sipcallhunt.hotline.attempt.AgentAttempt`.  An attempt that ends (no answer, busy,
   declined, unavailable, failed, decline key, confirm timeout, agent hung up) → the next one at
   once.  An agent who answers → CONFIRMING (the whisper plays on the agent's leg only).
6. CONFIRMING —confirm key→ BRIDGED: the music stops and the legs are bridged.  Either side
   hanging up, a media timeout on either leg, ``max_call_time`` or shutdown ends the call
   (outcome ``connected``, with the talk time; ``forwarded`` for the forward leg).
7. Nobody accepted: ``on_no_agent = "announce"`` → ENDING with ``no_agent`` (outcome
   ``no_agent``); ``"forward:<number>"`` → FORWARDING: ``forwarding`` plays (then the music
   again), the number is dialed as attempt round 0 with no confirmation, bridged when it answers;
   if it fails → ENDING with ``no_agent``.  The forward rings at most
   :data:`FORWARD_RING_TIMEOUT` seconds.
8. ENDING: the closing prompt plays, then ``HangupCaller`` → ENDED.
9. From any state: the caller hanging up, a media timeout on the caller's leg, ``max_call_time``
   (from the INVITE) and ``Shutdown`` end the call at once — every live agent leg gets its
   ``HangupAgent`` in that same step.  Outcome: ``connected``/``forwarded`` once bridged, the one
   already decided while a closing prompt plays, else ``caller_hung_up`` (caller hung up) or
   ``failed`` (media timeout, max call time, shutdown).

Outside-world events that make no sense in the current state (a late 180, a duplicate BYE, a
stale playback token, an event for an attempt that is over or was never dialed, a malformed key)
are ignored and logged; they never raise.  Inputs the call makes itself (timers, the PIN and hunt
decisions, an attempt's signals) must always have an entry: a missing one is our bug and raises
:class:`~sipcallhunt.errors.LocalProtocolError`.

Records: the call keeps one :class:`~sipcallhunt.records.CallRecord` (key ``call_id``) and one
:class:`~sipcallhunt.records.AttemptRecord` per attempt; at the end of every step it emits
``StoreCall``/``StoreAttempt`` for each record that changed (call first).  Times in records are
wall clock: ``now + wall_offset``.  ``answered`` is when the caller's leg was connected (ACK);
``wait_time`` runs from there to the bridge (or to the end), ``talk_time`` from the bridge to
the end.  ``Log`` actions trace every step; PIN keys are never logged, only that one arrived.

PIN lockout accounting (see :class:`~sipcallhunt.hotline.pin.PinGuard`): a call that ends without
the right PIN after at least one wrong or timed-out entry counts as one failed call — also when
the caller hangs up before the last attempt.
"""

from __future__ import annotations

__all__ = [
    "EXTERNAL_INPUTS",
    "FORWARD_AGENT_NAME",
    "FORWARD_RING_TIMEOUT",
    "REJECT_REASON",
    "REJECT_STATUS",
    "TIMER_SLACK",
    "TRANSITIONS",
    "CallInput",
    "CallState",
    "CallTimer",
    "HotlineCall",
]

import enum
import itertools
from collections.abc import Callable, Iterator
from typing import Final

import attrs

from sipcallhunt.config import HotlineConfig
from sipcallhunt.errors import LocalProtocolError
from sipcallhunt.hotline.actions import (
    Action,
    AnswerCaller,
    Bridge,
    DetectDtmf,
    HangupCaller,
    Log,
    LogLevel,
    Play,
    RejectCaller,
    StopPlayback,
    StoreAttempt,
    StoreCall,
)
from sipcallhunt.hotline.attempt import AgentAttempt, AttemptSignal
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
from sipcallhunt.hotline.pin import DTMF_KEYS, EntryResult, PinEntry, PinGuard
from sipcallhunt.hotline.wording import format_duration, plural
from sipcallhunt.records import AttemptEnd, AttemptRecord, CallRecord, Outcome, PinResult

REJECT_STATUS: Final = 403  # RFC 3261 §21.4.4 Forbidden: a locked-out caller
REJECT_REASON: Final = "Forbidden"
FORWARD_RING_TIMEOUT: Final = 60.0
"""How long the forward number may ring (HotlineConfig has no setting for it)."""
FORWARD_AGENT_NAME: Final = "forward"
"""The agent name of the forward attempt in records and ``Dial``."""
TIMER_SLACK: Final = 0.001
"""A deadline this close after ``now`` is due: asyncio may run a ``call_at`` callback up to its clock
resolution early, and the shell must not be left re-arming a timer that never fires."""
TIMER_STEP_LIMIT: Final = 10_000
"""Most timers one ``handle_timer`` fires (each fire ends an attempt or a phase; a safety net)."""


class CallState(enum.Enum):
    NEW = "new"  # created, start() not called yet
    ANSWERING = "answering"  # 200 OK sent, waiting for the ACK
    INTRO = "intro"  # the intro plays
    PIN_PROMPT = "pin_prompt"  # enter_pin (or wrong_pin + enter_pin) plays; a key barges in
    PIN_ENTRY = "pin_entry"  # waiting for PIN keys (pin_timeout)
    HUNTING = "hunting"  # hold music; an agent attempt is being dialed / ringing
    CONFIRMING = "confirming"  # an agent answered and hears the whisper
    FORWARDING = "forwarding"  # nobody accepted: the forward number is being dialed / ringing
    BRIDGED = "bridged"  # caller and agent (or forward) talk
    ENDING = "ending"  # a closing prompt plays (goodbye, no_agent), then hang up
    ENDED = "ended"


class CallInput(enum.Enum):
    # start()
    ACCEPT = "accept"
    REJECT = "reject"
    # from the outside world
    CALLER_CONNECTED = "caller_connected"
    CALLER_HUNG_UP = "caller_hung_up"
    CALLER_KEY = "caller_key"
    TYPE_AHEAD = "type_ahead"  # a key during the intro of a hotline with PINs: PIN entry starts
    CALLER_MEDIA_TIMEOUT = "caller_media_timeout"
    PROMPT_DONE = "prompt_done"  # the prompt the call waits for played out
    MUSIC_CUE = "music_cue"  # please_hold / forwarding played out: start the hold music
    SHUTDOWN = "shutdown"
    # timers
    CONNECT_TIMEOUT = "connect_timeout"
    PROMPT_TIMEOUT = "prompt_timeout"
    PIN_TIMEOUT = "pin_timeout"
    MAX_CALL_TIME = "max_call_time"
    # the call's own decisions
    PIN_REQUIRED = "pin_required"
    NO_PIN = "no_pin"
    PIN_RIGHT = "pin_right"
    PIN_WRONG = "pin_wrong"
    PIN_FAILED = "pin_failed"
    NO_AGENT_ANNOUNCE = "no_agent_announce"
    NO_AGENT_FORWARD = "no_agent_forward"
    # the current attempt's signals
    AGENT_ANSWERED = "agent_answered"
    AGENT_ACCEPTED = "agent_accepted"
    AGENT_ENDED = "agent_ended"


EXTERNAL_INPUTS: Final = frozenset(
    {
        CallInput.CALLER_CONNECTED,
        CallInput.CALLER_HUNG_UP,
        CallInput.CALLER_KEY,
        CallInput.TYPE_AHEAD,
        CallInput.CALLER_MEDIA_TIMEOUT,
        CallInput.PROMPT_DONE,
        CallInput.MUSIC_CUE,
        CallInput.SHUTDOWN,
    }
)
"""Inputs the outside world causes: unexpected ones are ignored and logged, never an error."""


class CallTimer(enum.Enum):
    CONNECT = "connect"  # intro_timeout for the ACK
    PROMPT = "prompt"  # intro_timeout for any prompt the call waits for (a lost PlaybackFinished)
    PIN = "pin"  # pin_timeout
    MAX_CALL = "max_call"  # max_call_time from the INVITE


_TIMER_INPUTS: Final = {
    CallTimer.CONNECT: CallInput.CONNECT_TIMEOUT,
    CallTimer.PROMPT: CallInput.PROMPT_TIMEOUT,
    CallTimer.PIN: CallInput.PIN_TIMEOUT,
    CallTimer.MAX_CALL: CallInput.MAX_CALL_TIME,
}

_STATE_TIMERS: Final[dict[CallState, frozenset[CallTimer]]] = {
    CallState.NEW: frozenset(),
    CallState.ANSWERING: frozenset({CallTimer.CONNECT, CallTimer.MAX_CALL}),
    CallState.INTRO: frozenset({CallTimer.PROMPT, CallTimer.MAX_CALL}),
    CallState.PIN_PROMPT: frozenset({CallTimer.PROMPT, CallTimer.MAX_CALL}),
    CallState.PIN_ENTRY: frozenset({CallTimer.PIN, CallTimer.MAX_CALL}),
    CallState.HUNTING: frozenset({CallTimer.MAX_CALL}),
    CallState.CONFIRMING: frozenset({CallTimer.MAX_CALL}),
    CallState.FORWARDING: frozenset({CallTimer.MAX_CALL}),
    CallState.BRIDGED: frozenset({CallTimer.MAX_CALL}),
    CallState.ENDING: frozenset({CallTimer.PROMPT, CallTimer.MAX_CALL}),
    CallState.ENDED: frozenset(),
}
"""The timers that may run in each state; entering a state cancels the others."""

_PROMPT_STATES: Final = frozenset({CallState.INTRO, CallState.PIN_PROMPT, CallState.ENDING})
_MUSIC_STATES: Final = frozenset({CallState.HUNTING, CallState.CONFIRMING, CallState.FORWARDING})
_LIVE_STATES: Final = frozenset(CallState) - {CallState.NEW, CallState.ENDED}


@attrs.frozen
class _Cause:
    """What set a transition off: the outside event and/or the attempt concerned."""

    event: object = None
    attempt: AgentAttempt | None = None


@attrs.define(eq=False, kw_only=True)
class HotlineCall:
    """The call flow of one hotline call (see the module docstring)."""

    config: HotlineConfig
    call_id: str
    caller: str  # the caller's number (From user part), or the URI when it has none
    caller_uri: str
    sip_call_id: str
    now: float  # when the INVITE arrived (monotonic)
    wall_offset: float  # wall clock = monotonic + wall_offset
    pin_guard: PinGuard
    node: str = ""

    state: CallState = attrs.field(init=False, default=CallState.NEW)
    record: CallRecord = attrs.field(init=False)
    _now: float = attrs.field(init=False)
    _out: list[Action] = attrs.field(init=False, factory=list)
    _timers: dict[CallTimer, float] = attrs.field(init=False, factory=dict)
    _tokens: Iterator[int] = attrs.field(init=False, factory=lambda: itertools.count(1))
    _awaited: int | None = attrs.field(init=False, default=None)  # token of the prompt we wait for
    _music_cue: int | None = attrs.field(init=False, default=None)  # token after which music starts
    _entry: PinEntry = attrs.field(init=False)
    _pin_failures: int = attrs.field(init=False, default=0)
    _pin_timed_out: bool = attrs.field(init=False, default=False)
    _pin_counted: bool = attrs.field(init=False, default=False)
    _inband_on: bool = attrs.field(init=False, default=False)
    _attempts: dict[int, AgentAttempt] = attrs.field(init=False, factory=dict)
    _current: AgentAttempt | None = attrs.field(init=False, default=None)
    _position: int = attrs.field(init=False, default=-1)  # index into agents x rounds
    _answered_at: float | None = attrs.field(init=False, default=None)
    _bridged_at: float | None = attrs.field(init=False, default=None)
    _connected: AgentAttempt | None = attrs.field(init=False, default=None)
    _no_agent_reason: str = attrs.field(init=False, default="")
    _pending: tuple[Outcome, str] | None = attrs.field(init=False, default=None)
    _from_state: CallState = attrs.field(init=False, default=CallState.NEW)  # before the current transition
    _stored_call: CallRecord | None = attrs.field(init=False, default=None)
    _stored_attempts: dict[int, AttemptRecord] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        self._now = float(self.now)
        self._entry = PinEntry(self.config.pins)
        self.record = CallRecord(
            call_id=self.call_id,
            hotline=self.config.name,
            caller=self.caller,
            caller_uri=self.caller_uri,
            sip_call_id=self.sip_call_id,
            started=self._wall(self._now),
            pin_result=PinResult.PENDING if self.config.pins else PinResult.NOT_REQUIRED,
            node=self.node,
        )

    # -- public interface -----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the call has ended (every leg hung up, the final record emitted)."""
        return self.state is CallState.ENDED

    @property
    def attempt_records(self) -> tuple[AttemptRecord, ...]:
        """The current record of every attempt, in order."""
        return tuple(self._attempts[seq].record for seq in sorted(self._attempts))

    def start(self, now: float) -> list[Action]:
        """Decide about the INVITE: answer it, or reject a locked-out caller."""
        if self.state is not CallState.NEW:
            raise LocalProtocolError(f"call {self.call_id}: start() called twice")
        self._advance(now)
        self._log(
            LogLevel.INFO,
            f"incoming call from {self.caller} ({self.caller_uri}) to hotline {self.config.name!r}, "
            f"SIP Call-ID {self.sip_call_id}",
        )
        refused = bool(self.config.pins) and (
            self.pin_guard.is_locked(self.caller, self._now) or self.pin_guard.throttled_until(self._now) is not None
        )
        self._fire(CallInput.REJECT if refused else CallInput.ACCEPT, _Cause())
        return self._step_done()

    def handle(self, event: object, now: float) -> list[Action]:
        """One event from the outside world (see :mod:`sipcallhunt.hotline.events`)."""
        if self.state is CallState.NEW:
            raise LocalProtocolError(f"call {self.call_id}: event {event!r} before start()")
        self._advance(now)
        if self.state is CallState.ENDED:
            self._log(LogLevel.DEBUG, f"ignored {_describe(event)}: the call has ended")
            return self._step_done()
        self._dispatch(event)
        return self._step_done()

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must be called next (None: no timer runs)."""
        candidates = list(self._timers.values())
        for attempt in self._attempts.values():
            deadline = attempt.next_deadline() if attempt.live else None
            if deadline is not None:
                candidates.append(deadline)
        return min(candidates) if candidates else None

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``, earliest first."""
        if self.state is CallState.NEW:
            raise LocalProtocolError(f"call {self.call_id}: handle_timer() before start()")
        self._advance(now)
        for _ in range(TIMER_STEP_LIMIT):
            if not self._fire_one_timer():
                break
        return self._step_done()

    # -- dispatch -------------------------------------------------------------------------------

    def _dispatch(self, event: object) -> None:
        if isinstance(event, CallerConnected):
            self._fire(CallInput.CALLER_CONNECTED, _Cause(event))
        elif isinstance(event, CallerHungUp):
            self._fire(CallInput.CALLER_HUNG_UP, _Cause(event))
        elif isinstance(event, Shutdown):
            self._fire(CallInput.SHUTDOWN, _Cause(event))
        elif isinstance(event, Digit):
            key = event.digit.upper() if isinstance(event.digit, str) else ""
            if len(key) != 1 or key not in DTMF_KEYS:
                self._log(LogLevel.WARNING, f"ignored a malformed DTMF key on leg {event.leg}")
            elif event.leg is CALLER:
                typed_ahead = self.state is CallState.INTRO and bool(self.config.pins) and self.config.pin_type_ahead
                kind = CallInput.TYPE_AHEAD if typed_ahead else CallInput.CALLER_KEY
                self._fire(kind, _Cause(attrs.evolve(event, digit=key)))
            else:
                self._to_attempt(event.leg, attrs.evolve(event, digit=key))
        elif isinstance(event, PlaybackFinished):
            if event.leg is not CALLER:
                self._log(LogLevel.DEBUG, f"ignored the end of a playlist on leg {event.leg}")
            elif event.token == self._awaited:
                self._fire(CallInput.PROMPT_DONE, _Cause(event))
            elif event.token == self._music_cue:
                self._fire(CallInput.MUSIC_CUE, _Cause(event))
            else:
                self._log(LogLevel.DEBUG, f"ignored the end of playlist {event.token} (not waited for)")
        elif isinstance(event, MediaTimeout):
            if event.leg is CALLER:
                self._fire(CallInput.CALLER_MEDIA_TIMEOUT, _Cause(event))
            else:
                self._to_attempt(event.leg, event)
        elif isinstance(event, AgentRinging | AgentAnswered | AgentFailed | AgentHungUp):
            self._to_attempt(event.attempt, event)
        else:
            self._log(LogLevel.WARNING, f"ignored an unknown event {event!r}")

    def _to_attempt(self, seq: object, event: object) -> None:
        attempt = self._attempts.get(seq) if isinstance(seq, int) else None
        if attempt is None:
            self._log(LogLevel.WARNING, f"ignored {_describe(event)} for attempt {seq!r}, which was never dialed")
            return
        actions, signal = attempt.handle(event, self._now)
        self._out.extend(actions)
        self._on_signal(attempt, signal)

    def _on_signal(self, attempt: AgentAttempt, signal: AttemptSignal) -> None:
        if signal is AttemptSignal.NONE:
            return
        if attempt is not self._current:
            raise LocalProtocolError(f"attempt {attempt.seq} signalled {signal.value} but is not the current one")
        input_ = {
            AttemptSignal.ANSWERED: CallInput.AGENT_ANSWERED,
            AttemptSignal.ACCEPTED: CallInput.AGENT_ACCEPTED,
            AttemptSignal.ENDED: CallInput.AGENT_ENDED,
        }[signal]
        self._fire(input_, _Cause(attempt=attempt))

    def _fire_one_timer(self) -> bool:
        due: list[tuple[float, int, int]] = []  # (deadline, kind, index) for a stable order
        timers = list(self._timers.items())
        limit = self._now + TIMER_SLACK
        for index, (_, at) in enumerate(timers):
            if at <= limit:
                due.append((at, 0, index))
        for seq, attempt in self._attempts.items():
            deadline = attempt.next_deadline() if attempt.live else None
            if deadline is not None and deadline <= limit:
                due.append((deadline, 1, seq))
        if not due:
            return False
        at, kind, index = min(due)
        self._advance(at)  # a timer fired a hair early happens at its deadline
        if kind == 0:
            timer = timers[index][0]
            del self._timers[timer]
            self._fire(_TIMER_INPUTS[timer], _Cause())
        else:
            attempt = self._attempts[index]
            actions, signal = attempt.handle_timer(self._now)
            self._out.extend(actions)
            self._on_signal(attempt, signal)
        return True

    def _fire(self, input_: CallInput, cause: _Cause) -> None:
        rule = TRANSITIONS.get((self.state, input_))
        if rule is None:
            if input_ in EXTERNAL_INPUTS:
                self._log(LogLevel.DEBUG, f"ignored {_describe(cause.event)} in state {self.state.value}")
                return
            raise LocalProtocolError(f"call {self.call_id}: no transition for {input_.value} in {self.state.value}")
        next_state, effect = rule
        self._from_state = self.state
        if next_state is not self.state:
            self._log(LogLevel.DEBUG, f"{self.state.value} -> {next_state.value} ({input_.value})")
            self.state = next_state
            allowed = _STATE_TIMERS[next_state]
            for timer in [t for t in self._timers if t not in allowed]:
                del self._timers[timer]
            if next_state not in _PROMPT_STATES:
                self._awaited = None
            if next_state not in _MUSIC_STATES:
                self._music_cue = None
        effect(self, cause)

    # -- helpers --------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        self._now = float(max(now, self._now))

    def _wall(self, now: float) -> float:
        return now + self.wall_offset

    def _log(self, level: LogLevel, message: str) -> None:
        self._out.append(Log(level, message, self.call_id))

    def _step_done(self) -> list[Action]:
        if self.record != self._stored_call:
            self._out.append(StoreCall(self.record))
            self._stored_call = self.record
        for seq in sorted(self._attempts):
            record = self._attempts[seq].record
            if record != self._stored_attempts.get(seq):
                self._out.append(StoreAttempt(record))
                self._stored_attempts[seq] = record
        out, self._out = self._out, []
        return out

    def _play(self, prompts: tuple[str, ...], *, loop: bool = False) -> int:
        token = next(self._tokens)
        self._out.append(Play(CALLER, prompts, loop=loop, token=token))
        return token

    def _await_prompt(self, *prompts: str) -> None:
        self._awaited = self._play(prompts)
        self._timers[CallTimer.PROMPT] = self._now + self.config.intro_timeout

    def _inband(self, on: bool) -> None:
        if self.config.inband_dtmf and on != self._inband_on:
            self._inband_on = on
            self._out.append(DetectDtmf(CALLER, inband=on))

    def _caller_id(self) -> str | None:
        if self.config.caller_id != "caller" or ":" in self.caller or not self.caller:
            return None
        return self.caller

    def _new_attempt(self, name: str, number: str, round_: int, ring_timeout: float, *, confirm: bool) -> AgentAttempt:
        seq = len(self._attempts) + 1
        attempt = AgentAttempt(
            call_id=self.call_id,
            seq=seq,
            round=round_,
            agent_name=name,
            number=number,
            caller_id=self._caller_id(),
            ring_timeout=ring_timeout,
            confirm=confirm,
            confirm_key=self.config.confirm_key,
            decline_key=self.config.decline_key,
            confirm_timeout=self.config.confirm_timeout,
            inband_dtmf=self.config.inband_dtmf,
            wall_offset=self.wall_offset,
            tokens=self._tokens,
        )
        self._attempts[seq] = attempt
        self._current = attempt
        self._out.extend(attempt.dial(self._now))
        return attempt

    def _situation(self, state: CallState) -> str:
        """Where a call in ``state`` stands, for sentences: "while Bob's phone was ringing"."""
        if state is CallState.ANSWERING:
            return "before the call was connected"
        if state is CallState.INTRO:
            return "during the intro"
        if state in (CallState.PIN_PROMPT, CallState.PIN_ENTRY):
            return "while entering the PIN"
        if state is CallState.BRIDGED and self._connected is not None:
            return f"after {self._talk()} with {self._connected_name()}"
        if state is CallState.ENDING:
            return "during the closing announcement"
        if self._current is not None and self._current.live:
            return self._current.situation(self._now)
        return "while waiting for an agent"

    def _talk(self) -> str:
        return format_duration(self._now - (self._bridged_at if self._bridged_at is not None else self._now))

    def _connected_name(self) -> str:
        attempt = self._connected
        if attempt is None:
            return "nobody"
        return attempt.agent_name if attempt.confirm else f"the forward number {attempt.number}"

    def _connected_outcome(self) -> Outcome:
        if self._connected is not None and not self._connected.confirm:
            return Outcome.FORWARDED
        return Outcome.CONNECTED

    def _abort_attempts(self, end: AttemptEnd, sentence: Callable[[AgentAttempt], str]) -> None:
        for seq in sorted(self._attempts):
            attempt = self._attempts[seq]
            if attempt.live:
                self._out.extend(attempt.abort(end, sentence(attempt), self._now))

    def _end_now(self, outcome_if_not_connected: Outcome, reason: str, attempt_end: AttemptEnd, why: str) -> None:
        """End the call at once from any live state: every agent leg and the caller's leg."""
        self._abort_attempts(attempt_end, lambda a: f"{why} {a.situation(self._now)}".strip())
        self._out.append(HangupCaller(reason))
        self._finish_with(outcome_if_not_connected, reason)

    def _finish_with(self, outcome_if_not_connected: Outcome, reason: str) -> None:
        # Called with the state already ENDED; what was decided before decides the outcome.
        if self._connected is not None:
            outcome = self._connected_outcome()
        elif self._pending is not None:
            outcome, pending_reason = self._pending
            reason = f"{pending_reason} ({reason})"
        else:
            outcome = outcome_if_not_connected
        self._finish(outcome, reason)

    def _finish(self, outcome: Outcome, reason: str) -> None:
        for seq in sorted(self._attempts):  # by construction none is live here; never leave one behind
            attempt = self._attempts[seq]
            if attempt.live:
                self._log(LogLevel.ERROR, f"attempt {seq} still live at the end of the call; hanging it up")
                self._out.extend(attempt.abort(AttemptEnd.FAILED, "the call ended", self._now))
        self._timers.clear()
        self._awaited = self._music_cue = None
        pin_result = self.record.pin_result
        if pin_result is PinResult.PENDING:
            pin_result = PinResult.ABANDONED
            if self._pin_failures and not self._pin_counted:
                self._pin_counted = True
                if self._count_pin_failure():
                    pin_result = PinResult.LOCKED_OUT
        wait_time = None
        if self._answered_at is not None:
            wait_time = (self._bridged_at if self._bridged_at is not None else self._now) - self._answered_at
        talk_time = self._now - self._bridged_at if self._bridged_at is not None else None
        self.record = attrs.evolve(
            self.record,
            ended=self._wall(self._now),
            outcome=outcome,
            end_reason=reason,
            pin_result=pin_result,
            wait_time=wait_time,
            talk_time=talk_time,
        )
        self._log(LogLevel.INFO, f"call ended ({outcome.value}): {reason}")

    # -- effects (one per transition kind; see TRANSITIONS) --------------------------------------

    def _on_accept(self, cause: _Cause) -> None:
        self._out.append(AnswerCaller())
        self._timers[CallTimer.CONNECT] = self._now + self.config.intro_timeout
        self._timers[CallTimer.MAX_CALL] = self.now + self.config.max_call_time
        self._log(LogLevel.INFO, "answering")

    def _on_reject(self, cause: _Cause) -> None:
        self._out.append(RejectCaller(REJECT_STATUS, REJECT_REASON))
        until = self.pin_guard.locked_until(self.caller, self._now)
        if until is not None:
            self.record = attrs.evolve(self.record, pin_result=PinResult.LOCKED_OUT)
            left = format_duration(until - self._now)
            self._finish(
                Outcome.REJECTED, f"{self.caller} is locked out after too many wrong PIN entries (for {left} more)"
            )
            return
        until = self.pin_guard.throttled_until(self._now)
        left = format_duration(until - self._now) if until is not None else "a while"
        calls = plural(self.pin_guard.rate_limit, "failed PIN call")
        self.record = attrs.evolve(self.record, pin_result=PinResult.RATE_LIMITED)
        self._finish(
            Outcome.REJECTED,
            f"the hotline refuses calls after {calls} within a minute, from any number (for {left} more)",
        )

    def _on_connected(self, cause: _Cause) -> None:
        self._answered_at = self._now
        self.record = attrs.evolve(self.record, answered=self._wall(self._now))
        self._log(LogLevel.INFO, "caller connected; playing the intro")
        if self.config.pins and self.config.pin_type_ahead:
            self._inband(True)  # a caller who knows the PIN may type it during the intro
        self._await_prompt("intro")

    def _on_never_connected(self, cause: _Cause) -> None:
        reason = f"the caller never confirmed the answer (no ACK within {format_duration(self.config.intro_timeout)})"
        self._out.append(HangupCaller(reason))
        self._finish(Outcome.FAILED, reason)

    def _on_intro_done(self, cause: _Cause) -> None:
        self._awaited = None
        if cause.event is None:
            self._log(LogLevel.WARNING, "the intro did not report its end in time; going on")
        self._fire(CallInput.PIN_REQUIRED if self.config.pins else CallInput.NO_PIN, _Cause())

    def _on_ask_pin(self, cause: _Cause) -> None:
        self._inband(True)
        self._entry.clear()
        self._log(LogLevel.INFO, "asking for the PIN")
        self._await_prompt("enter_pin")

    def _on_pin_prompt_done(self, cause: _Cause) -> None:
        self._awaited = None
        self._timers[CallTimer.PIN] = self._now + self.config.pin_timeout

    def _on_barge_in(self, cause: _Cause) -> None:
        self._awaited = None
        self._out.append(StopPlayback(CALLER))
        self._timers[CallTimer.PIN] = self._now + self.config.pin_timeout
        self._on_pin_key(cause)

    def _on_type_ahead(self, cause: _Cause) -> None:
        self._log(LogLevel.INFO, "PIN typed during the intro; skipping to the PIN entry")
        self._entry.clear()
        self._on_barge_in(cause)

    def _on_pin_key(self, cause: _Cause) -> None:
        event = cause.event
        if not isinstance(event, Digit):
            raise LocalProtocolError("a PIN key without a Digit event")
        if event.digit == "#" and len(self._entry) == 0:
            self._log(LogLevel.DEBUG, "ignored '#' with no PIN keys typed")
            return
        result = self._entry.add(event.digit)
        self._log(LogLevel.DEBUG, f"PIN key received ({event.method.value})")  # never the key itself
        if result is EntryResult.INCOMPLETE:
            self._timers[CallTimer.PIN] = self._now + self.config.pin_timeout
        elif result is EntryResult.RIGHT:
            self._fire(CallInput.PIN_RIGHT, cause)
        else:
            self._pin_timed_out = False
            self._pin_failed_once()

    def _on_pin_timeout(self, cause: _Cause) -> None:
        self._entry.clear()
        self._pin_timed_out = True
        self._pin_failed_once()

    def _pin_failed_once(self) -> None:
        self._pin_failures += 1
        last = self._pin_failures >= self.config.pin_attempts
        self._fire(CallInput.PIN_FAILED if last else CallInput.PIN_WRONG, _Cause())

    def _on_pin_again(self, cause: _Cause) -> None:
        what = "no PIN entered in time" if self._pin_timed_out else "wrong PIN"
        self._log(LogLevel.INFO, f"{what} (attempt {self._pin_failures} of {self.config.pin_attempts})")
        if self._pin_timed_out:
            self._await_prompt("enter_pin")
        else:
            self._await_prompt("wrong_pin", "enter_pin")

    def _on_pin_failed(self, cause: _Cause) -> None:
        self._inband(False)
        self._pin_counted = True
        locked = self._count_pin_failure()
        attempts = plural(self.config.pin_attempts, "attempt")
        reason = f"no valid PIN in {attempts}"
        if locked:
            reason += f"; {self.caller} is now locked out for {format_duration(self.pin_guard.lockout_time)}"
        self.record = attrs.evolve(self.record, pin_result=PinResult.LOCKED_OUT if locked else PinResult.FAILED)
        self._pending = (Outcome.PIN_FAILED, reason)
        self._log(LogLevel.INFO, reason)
        self._await_prompt("goodbye")

    def _count_pin_failure(self) -> bool:
        """Count this call as failed with the guard; True when that locked the caller's number out."""
        locked = self.pin_guard.failed(self.caller, self._now)
        until = self.pin_guard.throttled_until(self._now)
        if until is not None:
            calls = plural(self.pin_guard.rate_limit, "failed PIN call")
            self._log(
                LogLevel.WARNING,
                f"hotline {self.config.name!r} had {calls} within a minute: "
                f"new calls are refused for {format_duration(until - self._now)}",
            )
        return locked

    def _on_pin_right(self, cause: _Cause) -> None:
        self._inband(False)
        self.pin_guard.succeeded(self.caller, self._now)
        self.record = attrs.evolve(self.record, pin_result=PinResult.OK)
        self._log(LogLevel.INFO, "PIN accepted")
        self._begin_hunt()

    def _on_no_pin(self, cause: _Cause) -> None:
        self._begin_hunt()

    def _begin_hunt(self) -> None:
        self._music_cue = self._play(("please_hold",))
        agents = len(self.config.agents)
        self._log(
            LogLevel.INFO,
            f"hunting: {plural(agents, 'agent')}, {plural(self.config.rounds, 'round')}",
        )
        self._dial_next()

    def _dial_next(self) -> None:
        agents = self.config.agents
        self._position += 1
        if self._position >= len(agents) * self.config.rounds:
            if agents:
                self._no_agent_reason = (
                    f"no agent pressed {self.config.confirm_key} in {plural(self.config.rounds, 'round')}"
                )
            else:
                self._no_agent_reason = "the hotline has no agents"
            forward = self.config.forward_number
            self._fire(CallInput.NO_AGENT_FORWARD if forward else CallInput.NO_AGENT_ANNOUNCE, _Cause())
            return
        round_index, agent_index = divmod(self._position, len(agents))
        agent = agents[agent_index]
        self._new_attempt(agent.name, agent.number, round_index + 1, agent.ring_timeout, confirm=True)

    def _on_music_cue(self, cause: _Cause) -> None:
        self._music_cue = None
        self._play(("hold_music",), loop=True)

    def _on_agent_answered(self, cause: _Cause) -> None:
        name = cause.attempt.agent_name if cause.attempt is not None else "?"
        self._log(LogLevel.INFO, f"{name} answered; waiting for {self.config.confirm_key}")

    def _on_agent_gone(self, cause: _Cause) -> None:
        self._dial_next()

    def _on_bridge(self, cause: _Cause) -> None:
        attempt = cause.attempt
        if attempt is None:
            raise LocalProtocolError("a bridge without an attempt")
        self._out.append(StopPlayback(CALLER))
        self._out.append(Bridge(attempt.seq))
        self._bridged_at = self._now
        self._connected = attempt
        wait = self._now - self._answered_at if self._answered_at is not None else None
        self.record = attrs.evolve(
            self.record,
            agent=attempt.agent_name,
            agent_number=attempt.number,
            bridged=self._wall(self._now),
            wait_time=wait,
        )
        self._log(LogLevel.INFO, f"bridged the caller with {self._connected_name()}")

    def _on_no_agent(self, cause: _Cause) -> None:
        self._pending = (Outcome.NO_AGENT, self._no_agent_reason)
        self._log(LogLevel.INFO, f"{self._no_agent_reason}; announcing it")
        self._await_prompt("no_agent")

    def _on_forward(self, cause: _Cause) -> None:
        number = self.config.forward_number or ""
        self._log(LogLevel.INFO, f"{self._no_agent_reason}; forwarding to {number}")
        self._music_cue = self._play(("forwarding",))
        self._new_attempt(FORWARD_AGENT_NAME, number, 0, FORWARD_RING_TIMEOUT, confirm=False)

    def _on_forward_failed(self, cause: _Cause) -> None:
        attempt = cause.attempt
        why = attempt.record.end_reason if attempt is not None else "failed"
        number = self.config.forward_number or ""
        reason = f"{self._no_agent_reason} and the forward to {number} failed: {why}"
        self._pending = (Outcome.NO_AGENT, reason)
        self._log(LogLevel.INFO, reason)
        self._await_prompt("no_agent")

    def _on_agent_left(self, cause: _Cause) -> None:
        attempt = cause.attempt
        end = attempt.record.end if attempt is not None else None
        name, talk = self._connected_name(), self._talk()
        if end is AttemptEnd.MEDIA_TIMEOUT:
            reason = f"{name}'s media stopped after {talk} connected"
        elif end is AttemptEnd.AGENT_HUNG_UP:
            if self._connected_outcome() is Outcome.FORWARDED:
                reason = f"forwarded; {name} hung up after {talk}"
            else:
                reason = f"{name} accepted and hung up after {talk}"
        else:
            reason = f"{name}'s leg failed after {talk} connected"
        self._out.append(HangupCaller(reason))
        self._finish(self._connected_outcome(), reason)

    def _on_closing_done(self, cause: _Cause) -> None:
        self._awaited = None
        outcome, reason = self._pending or (Outcome.FAILED, "the call ended")
        self._out.append(HangupCaller(reason))
        self._finish(outcome, reason)

    def _on_caller_hung_up(self, cause: _Cause) -> None:
        # The state is already ENDED; the situation is that of the state we came from.
        situation = self._situation(self._from_state)
        if self._connected is not None:
            if self._connected_outcome() is Outcome.FORWARDED:
                reason = f"forwarded to {self._connected.number}; the caller hung up after {self._talk()}"
            else:
                reason = f"the caller hung up after {self._talk()} with {self._connected_name()}"
        else:
            reason = f"caller hung up {situation}"
        self._abort_attempts(AttemptEnd.CALLER_HUNG_UP, lambda a: f"the caller hung up {a.situation(self._now)}")
        self._finish_with(Outcome.CALLER_HUNG_UP, reason)

    def _on_caller_media_timeout(self, cause: _Cause) -> None:
        reason = f"the caller's media stopped {self._situation(self._from_state)}"
        self._end_now(Outcome.FAILED, reason, AttemptEnd.MEDIA_TIMEOUT, "the caller's media stopped")

    def _on_max_call_time(self, cause: _Cause) -> None:
        limit = format_duration(self.config.max_call_time)
        reason = f"the call reached the maximum call time of {limit} {self._situation(self._from_state)}"
        self._end_now(Outcome.FAILED, reason, AttemptEnd.FAILED, f"the call reached its maximum time of {limit}")

    def _on_shutdown(self, cause: _Cause) -> None:
        reason = f"the daemon shut down {self._situation(self._from_state)}"
        self._end_now(Outcome.FAILED, reason, AttemptEnd.SHUTDOWN, "the daemon shut down")


def _describe(event: object) -> str:
    if event is None:
        return "a timer"
    if isinstance(event, Digit):
        return f"a DTMF key on leg {event.leg}"  # never the key: it may be part of a PIN
    if isinstance(event, PlaybackFinished):
        return f"PlaybackFinished({event.token})"
    if isinstance(event, AgentFailed):
        return f"AgentFailed({event.sip_status})"
    return type(event).__name__


_Effect = Callable[[HotlineCall, _Cause], None]
_S = CallState
_I = CallInput
_C = HotlineCall

TRANSITIONS: Final[dict[tuple[CallState, CallInput], tuple[CallState, _Effect]]] = {
    # (state, input): (next state, effect)
    (_S.NEW, _I.ACCEPT): (_S.ANSWERING, _C._on_accept),
    (_S.NEW, _I.REJECT): (_S.ENDED, _C._on_reject),
    (_S.ANSWERING, _I.CALLER_CONNECTED): (_S.INTRO, _C._on_connected),
    (_S.ANSWERING, _I.CONNECT_TIMEOUT): (_S.ENDED, _C._on_never_connected),
    (_S.INTRO, _I.PROMPT_DONE): (_S.INTRO, _C._on_intro_done),
    (_S.INTRO, _I.PROMPT_TIMEOUT): (_S.INTRO, _C._on_intro_done),
    (_S.INTRO, _I.PIN_REQUIRED): (_S.PIN_PROMPT, _C._on_ask_pin),
    (_S.INTRO, _I.NO_PIN): (_S.HUNTING, _C._on_no_pin),
    (_S.INTRO, _I.TYPE_AHEAD): (_S.PIN_ENTRY, _C._on_type_ahead),
    (_S.PIN_PROMPT, _I.PROMPT_DONE): (_S.PIN_ENTRY, _C._on_pin_prompt_done),
    (_S.PIN_PROMPT, _I.PROMPT_TIMEOUT): (_S.PIN_ENTRY, _C._on_pin_prompt_done),
    (_S.PIN_PROMPT, _I.CALLER_KEY): (_S.PIN_ENTRY, _C._on_barge_in),
    (_S.PIN_ENTRY, _I.CALLER_KEY): (_S.PIN_ENTRY, _C._on_pin_key),
    (_S.PIN_ENTRY, _I.PIN_TIMEOUT): (_S.PIN_ENTRY, _C._on_pin_timeout),
    (_S.PIN_ENTRY, _I.PIN_RIGHT): (_S.HUNTING, _C._on_pin_right),
    (_S.PIN_ENTRY, _I.PIN_WRONG): (_S.PIN_PROMPT, _C._on_pin_again),
    (_S.PIN_ENTRY, _I.PIN_FAILED): (_S.ENDING, _C._on_pin_failed),
    (_S.HUNTING, _I.MUSIC_CUE): (_S.HUNTING, _C._on_music_cue),
    (_S.HUNTING, _I.AGENT_ANSWERED): (_S.CONFIRMING, _C._on_agent_answered),
    (_S.HUNTING, _I.AGENT_ENDED): (_S.HUNTING, _C._on_agent_gone),
    (_S.HUNTING, _I.NO_AGENT_ANNOUNCE): (_S.ENDING, _C._on_no_agent),
    (_S.HUNTING, _I.NO_AGENT_FORWARD): (_S.FORWARDING, _C._on_forward),
    (_S.CONFIRMING, _I.MUSIC_CUE): (_S.CONFIRMING, _C._on_music_cue),
    (_S.CONFIRMING, _I.AGENT_ACCEPTED): (_S.BRIDGED, _C._on_bridge),
    (_S.CONFIRMING, _I.AGENT_ENDED): (_S.HUNTING, _C._on_agent_gone),
    (_S.FORWARDING, _I.MUSIC_CUE): (_S.FORWARDING, _C._on_music_cue),
    (_S.FORWARDING, _I.AGENT_ACCEPTED): (_S.BRIDGED, _C._on_bridge),
    (_S.FORWARDING, _I.AGENT_ENDED): (_S.ENDING, _C._on_forward_failed),
    (_S.BRIDGED, _I.AGENT_ENDED): (_S.ENDED, _C._on_agent_left),
    (_S.ENDING, _I.PROMPT_DONE): (_S.ENDED, _C._on_closing_done),
    (_S.ENDING, _I.PROMPT_TIMEOUT): (_S.ENDED, _C._on_closing_done),
    # Whatever the call is doing, these end it at once (every agent leg in the same step):
    **{(state, _I.CALLER_HUNG_UP): (_S.ENDED, _C._on_caller_hung_up) for state in _LIVE_STATES},
    **{(state, _I.CALLER_MEDIA_TIMEOUT): (_S.ENDED, _C._on_caller_media_timeout) for state in _LIVE_STATES},
    **{(state, _I.MAX_CALL_TIME): (_S.ENDED, _C._on_max_call_time) for state in _LIVE_STATES},
    **{(state, _I.SHUTDOWN): (_S.ENDED, _C._on_shutdown) for state in _LIVE_STATES},
    # Not listed, hence ignored and logged: caller keys outside the PIN phase, a second
    # CallerConnected, playback ends nobody waits for, anything once ENDED.
}
"""Every transition of a hotline call."""
