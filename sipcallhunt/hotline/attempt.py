"""One agent attempt of a hotline call: dial, ring, ask to press a key, bridge — or give up.

Theory of operation
-------------------
An :class:`AgentAttempt` is one outgoing leg of a call: an agent of the hunt, or the forward
number when nobody accepted.  The call creates it and calls :meth:`AgentAttempt.dial`; from then
on the call hands it the events for its leg (``AgentRinging``, ``AgentAnswered``, ``AgentFailed``,
``AgentHungUp``, ``Digit`` and ``MediaTimeout`` on the attempt's leg), its timers, and
:meth:`AgentAttempt.abort` when the call ends the leg itself.  Each of these returns the actions
to carry out and an :class:`AttemptSignal` telling the call what changed for it: the agent
answered and is being asked to accept (``ANSWERED``), the leg must be bridged now
(``ACCEPTED``), or the attempt is over (``ENDED``).

States::

    INVITING ──180/183──▶ RINGING
       │  ╲                  │ ╲
       │   ╲──────2xx────────┼──▶ CONFIRMING ──confirm_key──▶ BRIDGED
       │                     │       │                          │
       └─final error, ring timeout, decline_key, confirm timeout, BYE, media timeout, abort──▶ ENDED

* The ring timer runs from the INVITE (``dial``), whatever provisional responses or early media
  arrive; when it fires the leg is cancelled (``HangupAgent``) and the attempt ends ``no_answer``.
* A final error ends the attempt at once: 486/600 busy, 603 declined, other 3xx-4xx unavailable,
  5xx, other 6xx and "no response" failed (RFC 3261 §21).
* Once answered, the agent hears the whisper playlist on a loop and in-band DTMF detection is
  turned on for the leg (if the hotline allows in-band digits).  ``confirm_key`` accepts (the
  attempt becomes ``BRIDGED``), ``decline_key`` declines, any other key is ignored; no key
  within ``confirm_timeout`` (a voicemail box answered) ends it ``confirm_timeout``.
* A forward attempt needs no confirmation: its 2xx goes straight to ``BRIDGED``.
* Every transition is one entry of :data:`TRANSITIONS`.  A pair missing from the table is
  ignored and logged when the outside world caused it (a late 180, a duplicate 2xx, a key on a
  bridged leg, a response after we cancelled); for the call's own inputs (timers, ``abort``) it
  is a bug and raises :class:`~sipcallhunt.errors.LocalProtocolError`.

Records: the attempt keeps its :class:`~sipcallhunt.records.AttemptRecord` up to date (wall clock
times: ``now + wall_offset``); the call emits a snapshot whenever it changes.
"""

from __future__ import annotations

__all__ = [
    "BUSY_STATUSES",
    "DECLINE_STATUSES",
    "EXTERNAL_INPUTS",
    "TRANSITIONS",
    "AgentAttempt",
    "AttemptInput",
    "AttemptSignal",
    "AttemptState",
    "classify_failure",
    "whisper_playlist",
]

import enum
from collections.abc import Callable, Iterator
from typing import Final

import attrs

from sipcallhunt.errors import LocalProtocolError
from sipcallhunt.hotline.actions import (
    Action,
    DetectDtmf,
    Dial,
    HangupAgent,
    Log,
    LogLevel,
    Play,
    StopPlayback,
)
from sipcallhunt.hotline.events import (
    AgentAnswered,
    AgentFailed,
    AgentHungUp,
    AgentRinging,
    Digit,
    MediaTimeout,
)
from sipcallhunt.hotline.wording import digit_prompt, format_duration
from sipcallhunt.records import AttemptEnd, AttemptRecord, ConfirmResult, DtmfMethod

BUSY_STATUSES: Final = frozenset({486, 600})  # RFC 3261 §21.4.24 Busy Here, §21.6.1 Busy Everywhere
DECLINE_STATUSES: Final = frozenset({603})  # RFC 3261 §21.6.2 Decline


def classify_failure(sip_status: int | None) -> AttemptEnd:
    """Why an INVITE that got final status ``sip_status`` (None: no response at all) failed."""
    if sip_status in BUSY_STATUSES:
        return AttemptEnd.BUSY
    if sip_status in DECLINE_STATUSES:
        return AttemptEnd.DECLINED
    if sip_status is not None and 300 <= sip_status < 500:  # RFC 3261 §21.3, §21.4: not reachable there
        return AttemptEnd.UNAVAILABLE
    return AttemptEnd.FAILED  # 5xx, other 6xx, no response, nonsense


def whisper_playlist(confirm_key: str, decline_key: str) -> tuple[str, ...]:
    """What an agent hears after answering, on a loop until a key or the confirm timeout."""
    return (
        "hotline_name",
        "whisper",
        "press",
        digit_prompt(confirm_key),
        "to_accept",
        "press",
        digit_prompt(decline_key),
        "to_decline",
    )


class AttemptState(enum.Enum):
    INVITING = "inviting"  # INVITE sent, no response yet
    RINGING = "ringing"  # 180/183 received
    CONFIRMING = "confirming"  # answered; whisper playing, waiting for a key
    BRIDGED = "bridged"  # accepted (or a forward answered): connected with the caller
    ENDED = "ended"  # over; ``record.end`` says why


class AttemptInput(enum.Enum):
    # from the outside world
    PROVISIONAL = "provisional"  # AgentRinging
    ANSWERED = "answered"  # AgentAnswered, confirmation needed
    ANSWERED_UNCONFIRMED = "answered_unconfirmed"  # AgentAnswered on a forward attempt
    FAILED = "failed"  # AgentFailed
    HUNG_UP = "hung_up"  # AgentHungUp
    CONFIRM_KEY = "confirm_key"  # Digit == confirm_key
    DECLINE_KEY = "decline_key"  # Digit == decline_key
    OTHER_KEY = "other_key"  # any other Digit
    MEDIA_TIMEOUT = "media_timeout"  # MediaTimeout on the attempt's leg
    # from the call itself
    RING_TIMEOUT = "ring_timeout"
    CONFIRM_TIMEOUT = "confirm_timeout"
    ABORT = "abort"  # the call ends the leg (caller gone, shutdown, max call time)


EXTERNAL_INPUTS: Final = frozenset(
    {
        AttemptInput.PROVISIONAL,
        AttemptInput.ANSWERED,
        AttemptInput.ANSWERED_UNCONFIRMED,
        AttemptInput.FAILED,
        AttemptInput.HUNG_UP,
        AttemptInput.CONFIRM_KEY,
        AttemptInput.DECLINE_KEY,
        AttemptInput.OTHER_KEY,
        AttemptInput.MEDIA_TIMEOUT,
    }
)
"""Inputs the outside world causes: unexpected ones are ignored and logged, never an error."""


class AttemptSignal(enum.Enum):
    """What an attempt's step means for the call."""

    NONE = "none"
    ANSWERED = "answered"  # the agent answered and is being asked to accept
    ACCEPTED = "accepted"  # bridge the caller with this leg now
    ENDED = "ended"  # the attempt is over (it was not, or is no longer, bridged)


@attrs.frozen
class _Cause:
    """What set a transition off: the event (if any) and, for ``abort``, the end and its sentence."""

    event: object = None
    end: AttemptEnd | None = None
    reason: str = ""


@attrs.define(eq=False, kw_only=True)
class AgentAttempt:
    """One outgoing leg of a call (see the module docstring)."""

    call_id: str
    seq: int
    round: int  # 1-based round of the hunt; 0 for the forward on no agent
    agent_name: str
    number: str
    caller_id: str | None
    ring_timeout: float
    confirm: bool = True  # False: bridged as soon as it answers (the forward)
    confirm_key: str = "1"
    decline_key: str = "2"
    confirm_timeout: float = 10.0
    inband_dtmf: bool = True
    wall_offset: float = 0.0
    tokens: Iterator[int]  # the call's playback token counter

    state: AttemptState = attrs.field(init=False, default=AttemptState.INVITING)
    record: AttemptRecord = attrs.field(init=False)
    answered_at: float | None = attrs.field(init=False, default=None)  # monotonic
    bridged_at: float | None = attrs.field(init=False, default=None)  # monotonic
    _now: float = attrs.field(init=False, default=0.0)
    _dialed: bool = attrs.field(init=False, default=False)
    _ring_deadline: float | None = attrs.field(init=False, default=None)
    _confirm_deadline: float | None = attrs.field(init=False, default=None)
    _out: list[Action] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        self.record = AttemptRecord(
            call_id=self.call_id,
            seq=self.seq,
            round=self.round,
            agent=self.agent_name,
            number=self.number,
            started=0.0,
        )

    # -- the call's interface -------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """True until the attempt has ended."""
        return self.state is not AttemptState.ENDED

    def dial(self, now: float) -> list[Action]:
        """Send the INVITE and start the ring timer."""
        if self._dialed:
            raise LocalProtocolError(f"attempt {self.seq} dialed twice")
        self._dialed = True
        self._now = float(now)
        self.record = attrs.evolve(self.record, started=self._wall(now))
        self._ring_deadline = now + self.ring_timeout
        what = "the forward number" if not self.confirm else f"{self.agent_name} (round {self.round})"
        self._log(LogLevel.INFO, f"dialing {what} at {self.number}")
        self._out.append(Dial(self.seq, self.agent_name, self.number, self.caller_id))
        return self._drain()

    def handle(self, event: object, now: float) -> tuple[list[Action], AttemptSignal]:
        """An event for this attempt's leg (the call has routed it here by attempt number)."""
        self._now = float(max(now, self._now))
        input_ = self._classify(event)
        if input_ is None:
            self._log(LogLevel.DEBUG, f"ignored {type(event).__name__} (not an attempt event)")
            return self._drain(), AttemptSignal.NONE
        return self._fire(input_, _Cause(event=event))

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self._ring_deadline, self._confirm_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> tuple[list[Action], AttemptSignal]:
        """Fire the attempt's timer if it is due at ``now``."""
        self._now = float(max(now, self._now))
        if self._ring_deadline is not None and self._ring_deadline <= now:
            self._ring_deadline = None
            return self._fire(AttemptInput.RING_TIMEOUT, _Cause())
        if self._confirm_deadline is not None and self._confirm_deadline <= now:
            self._confirm_deadline = None
            return self._fire(AttemptInput.CONFIRM_TIMEOUT, _Cause())
        return self._drain(), AttemptSignal.NONE

    def abort(self, end: AttemptEnd, reason: str, now: float) -> list[Action]:
        """The call ends this live leg now (CANCEL or BYE); ``reason`` is the record's sentence."""
        self._now = float(max(now, self._now))
        actions, _ = self._fire(AttemptInput.ABORT, _Cause(end=end, reason=reason))
        return actions

    def situation(self, now: float) -> str:
        """Where the attempt stands at ``now``, for the call's sentences ("while Bob's phone was ringing")."""
        self._now = float(max(now, self._now))
        name = self.agent_name if self.confirm else f"the forward to {self.number}"
        if self.state is AttemptState.INVITING:
            return f"while {name} was being called"
        if self.state is AttemptState.RINGING:
            return f"while {name}'s phone was ringing" if self.confirm else f"while {name} was ringing"
        if self.state is AttemptState.CONFIRMING:
            return f"while {name} was being asked to accept the call"
        if self.state is AttemptState.BRIDGED:
            return f"after {self._talk()} connected"
        return "between two attempts"

    # -- machinery ------------------------------------------------------------------------------

    def _classify(self, event: object) -> AttemptInput | None:
        if isinstance(event, AgentRinging):
            return AttemptInput.PROVISIONAL
        if isinstance(event, AgentAnswered):
            return AttemptInput.ANSWERED if self.confirm else AttemptInput.ANSWERED_UNCONFIRMED
        if isinstance(event, AgentFailed):
            return AttemptInput.FAILED
        if isinstance(event, AgentHungUp):
            return AttemptInput.HUNG_UP
        if isinstance(event, MediaTimeout):
            return AttemptInput.MEDIA_TIMEOUT
        if isinstance(event, Digit):
            if self.confirm and event.digit == self.confirm_key:
                return AttemptInput.CONFIRM_KEY
            if self.confirm and event.digit == self.decline_key:
                return AttemptInput.DECLINE_KEY
            return AttemptInput.OTHER_KEY
        return None

    def _fire(self, input_: AttemptInput, cause: _Cause) -> tuple[list[Action], AttemptSignal]:
        rule = TRANSITIONS.get((self.state, input_))
        if rule is None:
            if input_ in EXTERNAL_INPUTS:
                self._log(LogLevel.DEBUG, f"ignored {_describe(cause.event)} in state {self.state.value}")
                return self._drain(), AttemptSignal.NONE
            raise LocalProtocolError(f"attempt {self.seq}: no transition for {input_.value} in {self.state.value}")
        next_state, effect, signal = rule
        self.state = next_state
        effect(self, cause)
        return self._drain(), signal

    def _drain(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _wall(self, now: float) -> float:
        return now + self.wall_offset

    def _log(self, level: LogLevel, message: str) -> None:
        self._out.append(Log(level, f"attempt {self.seq} ({self.agent_name}): {message}", self.call_id))

    def _end(
        self,
        end: AttemptEnd,
        reason: str,
        *,
        hangup: bool,
        confirm: ConfirmResult | None = None,
        sip_status: int | None = None,
        method: DtmfMethod | None = None,
    ) -> None:
        self._ring_deadline = self._confirm_deadline = None
        if hangup:
            self._out.append(HangupAgent(self.seq, reason))
        changes: dict[str, object] = {"ended": self._wall(self._now), "end": end, "end_reason": reason}
        if confirm is not None and self.record.confirm is None:
            changes["confirm"] = confirm
        if sip_status is not None and self.record.sip_status is None:
            changes["sip_status"] = sip_status
        if method is not None:
            changes["dtmf_method"] = method
        self.record = attrs.evolve(self.record, **changes)  # type: ignore[arg-type]
        self._log(LogLevel.INFO, f"ended ({end.value}): {reason}")

    def _talk(self) -> str:
        since = self.bridged_at if self.bridged_at is not None else self._now
        return format_duration(self._now - since)

    # -- effects (one per transition kind; see TRANSITIONS) --------------------------------------

    def _on_ringing(self, cause: _Cause) -> None:
        early = isinstance(cause.event, AgentRinging) and cause.event.early_media
        self.record = attrs.evolve(self.record, ringing=self._wall(self._now))
        self._log(LogLevel.INFO, "ringing" + (" (early media)" if early else ""))

    def _on_more_ringing(self, cause: _Cause) -> None:
        early = isinstance(cause.event, AgentRinging) and cause.event.early_media
        self._log(LogLevel.DEBUG, "another provisional response" + (" (early media)" if early else ""))

    def _on_answered(self, cause: _Cause) -> None:
        self._ring_deadline = None
        self.answered_at = self._now
        self._confirm_deadline = self._now + self.confirm_timeout
        self.record = attrs.evolve(self.record, answered=self._wall(self._now), sip_status=200)
        if self.inband_dtmf:
            self._out.append(DetectDtmf(self.seq, inband=True))
        self._out.append(
            Play(self.seq, whisper_playlist(self.confirm_key, self.decline_key), loop=True, token=next(self.tokens))
        )
        self._log(
            LogLevel.INFO, f"answered; asking to press {self.confirm_key} to accept, {self.decline_key} to decline"
        )

    def _on_answered_unconfirmed(self, cause: _Cause) -> None:
        self._ring_deadline = None
        self.answered_at = self.bridged_at = self._now
        self.record = attrs.evolve(
            self.record, answered=self._wall(self._now), sip_status=200, confirm=ConfirmResult.NOT_REQUIRED
        )
        self._log(LogLevel.INFO, "answered (no confirmation needed)")

    def _on_failed(self, cause: _Cause) -> None:
        event = cause.event
        status = event.sip_status if isinstance(event, AgentFailed) else None
        text = event.reason if isinstance(event, AgentFailed) else ""
        detail = " ".join(part for part in (str(status) if status is not None else "", text) if part)
        detail = detail or "no response"
        end = classify_failure(status)
        name = self.agent_name
        sentence = {
            AttemptEnd.BUSY: f"{name} was busy ({detail})",
            AttemptEnd.DECLINED: f"{name} declined the call ({detail})",
            AttemptEnd.UNAVAILABLE: f"{name} was unavailable ({detail})",
        }.get(end, f"the call to {name} failed ({detail})")
        self._end(end, sentence, hangup=False, sip_status=status)

    def _failure_text(self, cause: _Cause) -> str:
        event = cause.event
        return event.reason if isinstance(event, AgentFailed) and event.reason else "leg failed"

    def _on_failed_confirming(self, cause: _Cause) -> None:
        # The dialog died without a BYE; hang up anyway so the shell releases whatever is left.
        self._end(
            AttemptEnd.FAILED,
            f"{self.agent_name}'s leg failed while being asked to accept ({self._failure_text(cause)})",
            hangup=True,
            confirm=ConfirmResult.HUNG_UP,
        )

    def _on_failed_bridged(self, cause: _Cause) -> None:
        self._end(
            AttemptEnd.FAILED,
            f"{self.agent_name}'s leg failed after {self._talk()} ({self._failure_text(cause)})",
            hangup=True,
        )

    def _on_hung_up_early(self, cause: _Cause) -> None:
        self._end(AttemptEnd.AGENT_HUNG_UP, f"{self.agent_name}'s leg ended before answering", hangup=False)

    def _on_ring_timeout(self, cause: _Cause) -> None:
        self._end(
            AttemptEnd.NO_ANSWER,
            f"{self.agent_name} did not answer within {format_duration(self.ring_timeout)}",
            hangup=True,
        )

    def _on_accept(self, cause: _Cause) -> None:
        self._confirm_deadline = None
        self.bridged_at = self._now
        method = cause.event.method if isinstance(cause.event, Digit) else None
        self._out.append(StopPlayback(self.seq))
        if self.inband_dtmf:
            self._out.append(DetectDtmf(self.seq, inband=False))
        self.record = attrs.evolve(self.record, confirm=ConfirmResult.ACCEPTED, dtmf_method=method)
        how = f" via {method.value}" if method is not None else ""
        self._log(LogLevel.INFO, f"accepted (pressed {self.confirm_key}{how})")

    def _on_decline(self, cause: _Cause) -> None:
        method = cause.event.method if isinstance(cause.event, Digit) else None
        self._end(
            AttemptEnd.DECLINED,
            f"{self.agent_name} pressed {self.decline_key} to decline",
            hangup=True,
            confirm=ConfirmResult.DECLINED,
            method=method,
        )

    def _on_other_key(self, cause: _Cause) -> None:
        key = cause.event.digit if isinstance(cause.event, Digit) else "?"
        self._log(LogLevel.INFO, f"pressed {key!r}: neither {self.confirm_key} nor {self.decline_key}, ignored")

    def _on_confirm_timeout(self, cause: _Cause) -> None:
        self._end(
            AttemptEnd.CONFIRM_TIMEOUT,
            f"{self.agent_name} answered but pressed no key within {format_duration(self.confirm_timeout)}",
            hangup=True,
            confirm=ConfirmResult.TIMEOUT,
        )

    def _on_hung_up_confirming(self, cause: _Cause) -> None:
        self._end(
            AttemptEnd.AGENT_HUNG_UP,
            f"{self.agent_name} hung up without pressing a key",
            hangup=False,
            confirm=ConfirmResult.HUNG_UP,
        )

    def _on_hung_up_bridged(self, cause: _Cause) -> None:
        self._end(AttemptEnd.AGENT_HUNG_UP, f"{self.agent_name} hung up after {self._talk()}", hangup=False)

    def _on_media_timeout_confirming(self, cause: _Cause) -> None:
        self._end(
            AttemptEnd.MEDIA_TIMEOUT,
            f"{self.agent_name}'s media stopped while being asked to accept",
            hangup=True,
            confirm=ConfirmResult.HUNG_UP,
        )

    def _on_media_timeout_bridged(self, cause: _Cause) -> None:
        self._end(AttemptEnd.MEDIA_TIMEOUT, f"{self.agent_name}'s media stopped after {self._talk()}", hangup=True)

    def _on_abort(self, cause: _Cause) -> None:
        end = cause.end or AttemptEnd.FAILED
        self._end(end, cause.reason or end.value, hangup=True)

    def _on_abort_confirming(self, cause: _Cause) -> None:
        end = cause.end or AttemptEnd.FAILED
        self._end(end, cause.reason or end.value, hangup=True, confirm=ConfirmResult.CANCELLED)


def _describe(event: object) -> str:
    if isinstance(event, Digit):
        return f"key {event.digit!r}"
    if isinstance(event, AgentFailed):
        return f"AgentFailed({event.sip_status})"
    return type(event).__name__


_Effect = Callable[[AgentAttempt, _Cause], None]

_S = AttemptState
_I = AttemptInput
_A = AttemptSignal

TRANSITIONS: Final[dict[tuple[AttemptState, AttemptInput], tuple[AttemptState, _Effect, AttemptSignal]]] = {
    # (state, input): (next state, effect, what it means for the call)
    (_S.INVITING, _I.PROVISIONAL): (_S.RINGING, AgentAttempt._on_ringing, _A.NONE),
    (_S.INVITING, _I.ANSWERED): (_S.CONFIRMING, AgentAttempt._on_answered, _A.ANSWERED),
    (_S.INVITING, _I.ANSWERED_UNCONFIRMED): (_S.BRIDGED, AgentAttempt._on_answered_unconfirmed, _A.ACCEPTED),
    (_S.INVITING, _I.FAILED): (_S.ENDED, AgentAttempt._on_failed, _A.ENDED),
    (_S.INVITING, _I.HUNG_UP): (_S.ENDED, AgentAttempt._on_hung_up_early, _A.ENDED),
    (_S.INVITING, _I.RING_TIMEOUT): (_S.ENDED, AgentAttempt._on_ring_timeout, _A.ENDED),
    (_S.INVITING, _I.ABORT): (_S.ENDED, AgentAttempt._on_abort, _A.ENDED),
    (_S.RINGING, _I.PROVISIONAL): (_S.RINGING, AgentAttempt._on_more_ringing, _A.NONE),
    (_S.RINGING, _I.ANSWERED): (_S.CONFIRMING, AgentAttempt._on_answered, _A.ANSWERED),
    (_S.RINGING, _I.ANSWERED_UNCONFIRMED): (_S.BRIDGED, AgentAttempt._on_answered_unconfirmed, _A.ACCEPTED),
    (_S.RINGING, _I.FAILED): (_S.ENDED, AgentAttempt._on_failed, _A.ENDED),
    (_S.RINGING, _I.HUNG_UP): (_S.ENDED, AgentAttempt._on_hung_up_early, _A.ENDED),
    (_S.RINGING, _I.RING_TIMEOUT): (_S.ENDED, AgentAttempt._on_ring_timeout, _A.ENDED),
    (_S.RINGING, _I.ABORT): (_S.ENDED, AgentAttempt._on_abort, _A.ENDED),
    (_S.CONFIRMING, _I.CONFIRM_KEY): (_S.BRIDGED, AgentAttempt._on_accept, _A.ACCEPTED),
    (_S.CONFIRMING, _I.DECLINE_KEY): (_S.ENDED, AgentAttempt._on_decline, _A.ENDED),
    (_S.CONFIRMING, _I.OTHER_KEY): (_S.CONFIRMING, AgentAttempt._on_other_key, _A.NONE),
    (_S.CONFIRMING, _I.CONFIRM_TIMEOUT): (_S.ENDED, AgentAttempt._on_confirm_timeout, _A.ENDED),
    (_S.CONFIRMING, _I.HUNG_UP): (_S.ENDED, AgentAttempt._on_hung_up_confirming, _A.ENDED),
    (_S.CONFIRMING, _I.FAILED): (_S.ENDED, AgentAttempt._on_failed_confirming, _A.ENDED),
    (_S.CONFIRMING, _I.MEDIA_TIMEOUT): (_S.ENDED, AgentAttempt._on_media_timeout_confirming, _A.ENDED),
    (_S.CONFIRMING, _I.ABORT): (_S.ENDED, AgentAttempt._on_abort_confirming, _A.ENDED),
    (_S.BRIDGED, _I.HUNG_UP): (_S.ENDED, AgentAttempt._on_hung_up_bridged, _A.ENDED),
    (_S.BRIDGED, _I.FAILED): (_S.ENDED, AgentAttempt._on_failed_bridged, _A.ENDED),
    (_S.BRIDGED, _I.MEDIA_TIMEOUT): (_S.ENDED, AgentAttempt._on_media_timeout_bridged, _A.ENDED),
    (_S.BRIDGED, _I.ABORT): (_S.ENDED, AgentAttempt._on_abort, _A.ENDED),
    # Not listed, hence ignored and logged: anything in ENDED (late responses, the 487 after our
    # CANCEL, a 2xx crossing our CANCEL — the shell ACKs and BYEs it, see HangupAgent), keys
    # before the answer or on a bridged leg, early-media timeouts, duplicate 2xx.
}
"""Every transition of an agent attempt."""
