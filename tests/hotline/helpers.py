"""A fake shell for hotline calls: a fake clock, the actions collected, and a model of the legs.

:class:`Driver` plays the part of the asyncio glue: it feeds events with ``now`` from a fake clock,
moves time by calling ``handle_timer`` at every deadline on the way (nothing sleeps), and keeps
every action.  :class:`LegModel` follows the legs from the outside (what was dialed, answered,
bridged, hung up) and checks after every step the rules the product promises: one agent leg at
a time, never two confirming or bridged, every leg ended when the call ends, one call record key,
attempts numbered 1, 2, …, record times that never go backwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import attrs

from sipcallhunt.config import AgentConfig, HotlineConfig
from sipcallhunt.hotline.actions import (
    Action,
    AnswerCaller,
    Bridge,
    DetectDtmf,
    Dial,
    HangupAgent,
    HangupCaller,
    Log,
    LogLevel,
    Play,
    RejectCaller,
    StopPlayback,
    StoreAttempt,
    StoreCall,
)
from sipcallhunt.hotline.call import HotlineCall
from sipcallhunt.hotline.events import (
    CALLER,
    AgentAnswered,
    AgentFailed,
    AgentHungUp,
    CallerConnected,
    CallerHungUp,
    Digit,
    PlaybackFinished,
)
from sipcallhunt.hotline.pin import PinGuard
from sipcallhunt.records import AttemptRecord, CallRecord, DtmfMethod

T = TypeVar("T")

START = 1000.0  # the fake monotonic clock at the INVITE
WALL_OFFSET = 1_700_000_000.0  # wall clock = monotonic + WALL_OFFSET
ACTION_TYPES = (
    AnswerCaller,
    RejectCaller,
    Play,
    StopPlayback,
    DetectDtmf,
    Dial,
    HangupAgent,
    HangupCaller,
    Bridge,
    StoreCall,
    StoreAttempt,
    Log,
)


def make_config(**overrides: Any) -> HotlineConfig:
    """A hotline with Alice (201, rings 20 s) and Bob (202, rings 15 s), 2 rounds, no PIN."""
    values: dict[str, Any] = {
        "name": "support",
        "account": "pbx",
        "agents": (
            AgentConfig(name="Alice", number="201", ring_timeout=20.0),
            AgentConfig(name="Bob", number="202", ring_timeout=15.0),
        ),
    }
    values.update(overrides)
    return HotlineConfig(**values)


class InvariantError(AssertionError):
    pass


@attrs.define
class LegModel:
    """The legs of one call as the shell sees them, checked after every step."""

    caller_connected: bool = False
    caller_gone: bool = False  # CallerHungUp fed
    caller_hung_up: bool = False  # HangupCaller emitted
    rejected: bool = False
    answered_call: bool = False
    dialed: list[int] = attrs.Factory(list)
    ended: set[int] = attrs.Factory(set)
    answered: set[int] = attrs.Factory(set)
    whispering: set[int] = attrs.Factory(set)
    bridged: set[int] = attrs.Factory(set)
    call_records: list[CallRecord] = attrs.Factory(list)
    attempt_records: dict[int, list[AttemptRecord]] = attrs.Factory(dict)
    finished_seen: bool = False

    def live(self) -> list[int]:
        return [seq for seq in self.dialed if seq not in self.ended]

    def fed(self, event: object) -> None:
        """Update the model with an event the shell fed (before the call reacts)."""
        if isinstance(event, CallerHungUp):
            self.caller_gone = True
        elif isinstance(event, CallerConnected):
            self.caller_connected = True
        elif isinstance(event, AgentAnswered) and event.attempt in self.live():
            self.answered.add(event.attempt)
        elif isinstance(event, AgentFailed) and event.attempt in self.live():
            if event.attempt not in self.answered:
                self.ended.add(event.attempt)  # a final response ends the INVITE
        elif isinstance(event, AgentHungUp) and event.attempt in self.live():
            self.ended.add(event.attempt)

    def took(self, actions: Sequence[Action], *, finished: bool, now_wall: float) -> None:
        """Update the model with one step's actions and check every invariant."""
        if self.finished_seen:
            stray = [a for a in actions if not isinstance(a, Log)]
            if stray:
                raise InvariantError(f"actions after the call finished: {stray}")
        for action in actions:
            if not isinstance(action, ACTION_TYPES):
                raise InvariantError(f"not an action: {action!r}")
            if isinstance(action, Log) and action.level is LogLevel.ERROR:
                raise InvariantError(f"the call logged an error (a safety net fired): {action.message}")
            if isinstance(action, AnswerCaller):
                if self.answered_call or self.rejected:
                    raise InvariantError("answered twice")
                self.answered_call = True
            elif isinstance(action, RejectCaller):
                if self.answered_call or self.rejected:
                    raise InvariantError("rejected after answering")
                self.rejected = True
            elif isinstance(action, HangupCaller):
                if self.caller_hung_up or self.caller_gone or self.rejected:
                    raise InvariantError("HangupCaller for a caller leg that is already gone")
                self.caller_hung_up = True
            elif isinstance(action, Dial):
                if self.live():
                    raise InvariantError(f"dialed {action.attempt} while {self.live()} still live")
                expected = len(self.dialed) + 1
                if action.attempt != expected:
                    raise InvariantError(f"attempt numbered {action.attempt}, expected {expected}")
                self.dialed.append(action.attempt)
            elif isinstance(action, HangupAgent):
                if action.attempt not in self.dialed:
                    raise InvariantError(f"hung up attempt {action.attempt} that was never dialed")
                self.ended.add(action.attempt)
            elif isinstance(action, Play) and action.leg is not CALLER:
                if action.leg not in self.answered or action.leg in self.ended:
                    raise InvariantError(f"whisper on leg {action.leg} that is not answered")
                self.whispering.add(action.leg)
            elif isinstance(action, Bridge):
                if action.attempt not in self.answered or action.attempt in self.ended:
                    raise InvariantError(f"bridged attempt {action.attempt}, not answered or over")
                self.bridged.add(action.attempt)
            elif isinstance(action, StoreCall):
                self._check_call_record(action.record, now_wall)
            elif isinstance(action, StoreAttempt):
                self._check_attempt_record(action.record, now_wall)
        live = self.live()
        if len(live) > 1:
            raise InvariantError(f"several agent legs live at once: {live}")
        busy = [seq for seq in live if seq in self.whispering or seq in self.bridged]
        if len(busy) > 1:
            raise InvariantError(f"two agents confirming or bridged at once: {busy}")
        if finished:
            self.finished_seen = True
            if live:
                raise InvariantError(f"call finished with agent legs still live: {live}")
            if not (self.caller_hung_up or self.caller_gone or self.rejected):
                raise InvariantError("call finished without ending the caller's leg")
            final = self.call_records[-1]
            if final.outcome is None or final.ended is None or final.end_reason is None:
                raise InvariantError(f"final call record incomplete: {final}")
            for seq in self.dialed:
                record = self.attempt_records[seq][-1]
                if record.ended is None or record.end is None:
                    raise InvariantError(f"final record of attempt {seq} incomplete: {record}")

    def _check_call_record(self, record: CallRecord, now_wall: float) -> None:
        if self.call_records:
            previous = self.call_records[-1]
            if record == previous:
                raise InvariantError("the same call snapshot emitted twice in a row")
            if record.call_id != previous.call_id or record.sip_call_id != previous.sip_call_id:
                raise InvariantError("a second call record key")
            _check_set_once(previous, record, ("started", "answered", "bridged", "ended"))
            if previous.outcome is not None:
                raise InvariantError("call record changed after its final snapshot")
        _check_ordered(record, ("started", "answered", "bridged", "ended"), now_wall)
        self.call_records.append(record)

    def _check_attempt_record(self, record: AttemptRecord, now_wall: float) -> None:
        history = self.attempt_records.setdefault(record.seq, [])
        if record.seq not in self.dialed:
            raise InvariantError(f"record of attempt {record.seq}, never dialed")
        if self.call_records and record.call_id != self.call_records[0].call_id:
            raise InvariantError("attempt record of another call")
        if history:
            previous = history[-1]
            if record == previous:
                raise InvariantError("the same attempt snapshot emitted twice in a row")
            _check_set_once(previous, record, ("started", "ringing", "answered", "ended"))
            if previous.end is not None:
                raise InvariantError(f"attempt {record.seq} changed after it ended")
        _check_ordered(record, ("started", "answered", "ended"), now_wall)
        if record.ringing is not None and not record.started <= record.ringing <= now_wall:
            raise InvariantError(f"ringing time out of order in {record}")
        history.append(record)


def _check_set_once(previous: object, record: object, fields: Iterable[str]) -> None:
    for name in fields:
        before, after = getattr(previous, name), getattr(record, name)
        if before is not None and before != after:
            raise InvariantError(f"{name} changed from {before} to {after}")


def _check_ordered(record: object, fields: Sequence[str], now_wall: float) -> None:
    times = [getattr(record, name) for name in fields]
    present = [t for t in times if t is not None]
    if present != sorted(present) or (present and present[-1] > now_wall + 1e-9):
        raise InvariantError(f"record times out of order: {dict(zip(fields, times, strict=True))}")


class Driver:
    """Runs one HotlineCall on a fake clock, like the shell would."""

    def __init__(
        self,
        config: HotlineConfig | None = None,
        *,
        caller: str = "0301234",
        guard: PinGuard | None = None,
        now: float = START,
        call_id: str = "call-1",
        **overrides: Any,
    ) -> None:
        self.config = config if config is not None else make_config(**overrides)
        self.guard = guard if guard is not None else PinGuard.for_hotline(self.config)
        self.now = now
        self.call = HotlineCall(
            config=self.config,
            call_id=call_id,
            caller=caller,
            caller_uri=f"sip:{caller}@pbx.example",
            sip_call_id=f"{call_id}@pbx.example",
            now=now,
            wall_offset=WALL_OFFSET,
            pin_guard=self.guard,
        )
        self.model = LegModel()
        self.actions: list[Action] = []
        self.last: list[Action] = []

    # -- driving --------------------------------------------------------------------------------

    def _take(self, actions: list[Action]) -> list[Action]:
        self.model.took(actions, finished=self.call.finished, now_wall=self.now + WALL_OFFSET)
        self.actions.extend(actions)
        self.last = actions
        return actions

    def start(self) -> list[Action]:
        return self._take(self.call.start(self.now))

    def send(self, event: object, *, after: float = 0.0) -> list[Action]:
        """Move time by ``after`` seconds (timers fire on the way), then feed ``event``."""
        if after:
            self.wait(after)
        self.model.fed(event)
        return self._take(self.call.handle(event, self.now))

    def wait(self, seconds: float) -> list[Action]:
        """Move the clock by ``seconds``, calling handle_timer at each deadline on the way."""
        target = self.now + seconds
        taken: list[Action] = []
        for _ in range(1000):
            deadline = self.call.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            taken += self._take(self.call.handle_timer(self.now))
        else:
            raise AssertionError("timers kept firing")
        self.now = target
        self.last = taken
        return taken

    def wait_until_deadline(self) -> list[Action]:
        deadline = self.call.next_deadline()
        assert deadline is not None, "no timer is running"
        return self.wait(max(0.0, deadline - self.now))

    # -- shortcuts through the flow -----------------------------------------------------------

    def token(self, *prompts: str) -> int:
        """The token of the last Play on the caller's leg that played exactly ``prompts``."""
        for action in reversed(self.actions):
            if isinstance(action, Play) and action.leg is CALLER and action.prompts == prompts:
                return action.token
        raise AssertionError(f"no Play of {prompts} on the caller's leg")

    def played(self, *prompts: str, after: float = 0.0) -> list[Action]:
        """Report that the caller's last playlist ``prompts`` played to its end."""
        return self.send(PlaybackFinished(CALLER, self.token(*prompts)), after=after)

    def key(
        self, digit: str, leg: object = CALLER, method: DtmfMethod = DtmfMethod.RFC4733, after: float = 0.0
    ) -> list[Action]:
        return self.send(Digit(leg, digit, method), after=after)  # type: ignore[arg-type]

    def keys(self, digits: str, leg: object = CALLER, method: DtmfMethod = DtmfMethod.RFC4733) -> list[Action]:
        out: list[Action] = []
        for digit in digits:
            out += self.key(digit, leg, method, after=0.2)
        return out

    def connect(self) -> None:
        """Answer, connect, and play the intro to its end."""
        self.start()
        self.send(CallerConnected(), after=0.1)
        self.played("intro", after=3.0)

    def pass_pin(self, pin: str) -> None:
        """From the intro's end: let enter_pin play out and type ``pin``."""
        self.played("enter_pin", after=2.0)
        self.keys(pin)

    def hunt(self) -> None:
        """Answer, connect, intro, PIN if any: the first agent is being dialed."""
        self.connect()
        if self.config.pins:
            self.pass_pin(self.config.pins[0])

    # -- looking at what happened ------------------------------------------------------------------

    def of(self, kind: type[T], actions: Iterable[Action] | None = None) -> list[T]:
        return [a for a in (self.actions if actions is None else actions) if isinstance(a, kind)]

    def ops(self, actions: Iterable[Action] | None = None) -> list[Action]:
        """The actions that are neither logs nor records: what the shell does on the wire."""
        return [
            a
            for a in (self.actions if actions is None else actions)
            if not isinstance(a, Log | StoreCall | StoreAttempt)
        ]

    @property
    def record(self) -> CallRecord:
        return self.model.call_records[-1]

    def attempt(self, seq: int) -> AttemptRecord:
        return self.model.attempt_records[seq][-1]

    @property
    def dials(self) -> list[Dial]:
        return self.of(Dial)

    def current(self) -> int:
        return self.dials[-1].attempt

    def log_text(self) -> str:
        return "\n".join(f"{a.level} {a.message}" for a in self.of(Log))
