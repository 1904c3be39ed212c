"""Call-log records: what the hotline call flow reports and the call log stores.

Pure values.  The call state machine emits a fresh snapshot of its :class:`CallRecord` (and of
the :class:`AttemptRecord` of each agent attempt) whenever something in it changes; the call log
upserts them by key, so a crash loses nothing that had already been reported.  Times are wall
clock seconds since the epoch (floats).
"""

from __future__ import annotations

__all__ = [
    "AttemptEnd",
    "AttemptRecord",
    "CallRecord",
    "ConfirmResult",
    "DtmfMethod",
    "Outcome",
    "PinResult",
]

import enum

import attrs


class DtmfMethod(enum.StrEnum):
    """How a DTMF digit arrived."""

    RFC4733 = "rfc4733"
    INFO = "info"
    INBAND = "inband"


class PinResult(enum.StrEnum):
    NOT_REQUIRED = "not_required"
    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"  # pin_attempts wrong or timed-out entries
    LOCKED_OUT = "locked_out"  # the caller number was locked out before or by this call
    RATE_LIMITED = "rate_limited"  # refused: the hotline had pin_rate_limit failed PIN calls in the last minute
    ABANDONED = "abandoned"  # the caller hung up while entering the PIN


class Outcome(enum.StrEnum):
    """How a hotline call ended (None on the record while it is in progress)."""

    CONNECTED = "connected"
    NO_AGENT = "no_agent"
    FORWARDED = "forwarded"
    CALLER_HUNG_UP = "caller_hung_up"
    PIN_FAILED = "pin_failed"
    REJECTED = "rejected"
    FAILED = "failed"  # an internal error or a media failure ended the call


class ConfirmResult(enum.StrEnum):
    """What the agent did after answering (press-1 confirmation)."""

    ACCEPTED = "accepted"
    DECLINED = "declined"
    TIMEOUT = "timeout"  # no key within confirm_timeout: a voicemail box, or nobody there
    HUNG_UP = "hung_up"  # the agent's leg ended during the confirmation
    CANCELLED = "cancelled"  # the caller hung up during the confirmation
    NOT_REQUIRED = "not_required"  # a forward leg: bridged without confirmation


class AttemptEnd(enum.StrEnum):
    """Why an agent attempt ended."""

    NO_ANSWER = "no_answer"  # ring timeout, CANCEL sent
    BUSY = "busy"  # 486/600
    DECLINED = "declined"  # 603 while ringing, or decline_key after answering
    UNAVAILABLE = "unavailable"  # 404/480/408 and other final failures
    FAILED = "failed"  # transport error, 5xx, no response at all
    CONFIRM_TIMEOUT = "confirm_timeout"
    AGENT_HUNG_UP = "agent_hung_up"  # BYE from the agent before or after the bridge
    CALLER_HUNG_UP = "caller_hung_up"  # the caller ended the call (attempt cancelled or bridge ended)
    MEDIA_TIMEOUT = "media_timeout"
    SHUTDOWN = "shutdown"


@attrs.frozen(kw_only=True)
class CallRecord:
    """One row per hotline call."""

    call_id: str  # sipcallhunt's id for the call; on every log line of it
    hotline: str
    caller: str  # the caller's number (From user part), or the full URI when it has none
    caller_uri: str
    sip_call_id: str
    started: float
    answered: float | None = None
    ended: float | None = None
    pin_result: PinResult = PinResult.NOT_REQUIRED
    outcome: Outcome | None = None
    agent: str | None = None  # the agent (name) connected, if any
    agent_number: str | None = None
    bridged: float | None = None
    wait_time: float | None = None  # answered → bridged (or → end when never bridged)
    talk_time: float | None = None  # bridged → end
    end_reason: str | None = None  # a sentence explaining the end, for people
    node: str = ""  # which daemon handled it (several daemons may share one call log)


@attrs.frozen(kw_only=True)
class AttemptRecord:
    """One row per agent attempt (and per forward attempt) of a call."""

    call_id: str
    seq: int  # 1, 2, ... within the call
    round: int  # 1-based round of the hunt; 0 for the forward on no agent
    agent: str
    number: str
    started: float
    ringing: float | None = None
    answered: float | None = None
    ended: float | None = None
    confirm: ConfirmResult | None = None
    dtmf_method: DtmfMethod | None = None
    end: AttemptEnd | None = None
    sip_status: int | None = None  # the final SIP status of the INVITE (200 when answered)
    end_reason: str | None = None
