"""What a hotline call asks the shell to do: the outputs of :class:`~sipcallhunt.hotline.call.HotlineCall`.

Every method of the call returns a list of these, in the order the shell must carry them out.
Legs are named as in :mod:`sipcallhunt.hotline.events` (:data:`~sipcallhunt.hotline.events.CALLER`
or an attempt number).

=====================================  ==========================================================
``AnswerCaller()``                     send 200 OK (with our SDP) to the caller's INVITE
``RejectCaller(status, reason)``       answer the caller's INVITE with a final error (403 …)
``Play(leg, prompts, loop, token)``    switch what ``leg`` hears to this playlist, seamlessly on
                                       the leg's one RTP stream; ``loop`` repeats the whole list
                                       until replaced or stopped; a non-looping list reports
                                       ``PlaybackFinished(leg, token)`` when it has played out
``StopPlayback(leg)``                  stop what ``leg`` hears (silence or comfort noise)
``DetectDtmf(leg, inband)``            run (True) or stop (False) the in-band DTMF detector on
                                       ``leg``; RFC 4733 and INFO digits are always delivered
``Dial(attempt, agent_name, number,    send an INVITE for a new agent leg; ``caller_id`` is the
caller_id)``                           number to present, or None for the hotline's own identity
``HangupAgent(attempt, reason)``       end the agent leg whatever its state: CANCEL while the
                                       INVITE is pending, BYE once answered; if a 2xx arrives
                                       after the CANCEL, ACK and BYE it (RFC 3261 §9.1); nothing if
                                       the leg is already over
``HangupCaller(reason)``               send BYE to the caller
``Bridge(attempt)``                    connect the caller and this agent leg: relay RTP both ways
``StoreCall(record)``                  upsert this snapshot of the call's record in the call log
``StoreAttempt(record)``               upsert this snapshot of an attempt's record
``Log(level, message, call_id)``       a line for the daemon log (the shell prefixes the call id)
=====================================  ==========================================================

Prompt names used in ``Play``: ``intro``, ``enter_pin``, ``wrong_pin``, ``pin_locked``, ``goodbye``,
``please_hold``, ``hold_music``, ``whisper``, ``press``, ``to_accept``, ``to_decline``, ``no_agent``,
``forwarding``, ``hotline_name`` (the shell drops it when the hotline has no name recording) and the
key names ``digit_0`` … ``digit_9``, ``digit_star``, ``digit_hash``, ``digit_A`` … ``digit_D``.

Playback tokens are integers unique within a call; a ``PlaybackFinished`` whose token is not the
one the call waits for is ignored, so a shell that also reports stopped or replaced playlists
does no harm.
"""

from __future__ import annotations

__all__ = [
    "Action",
    "AnswerCaller",
    "Bridge",
    "DetectDtmf",
    "Dial",
    "HangupAgent",
    "HangupCaller",
    "Log",
    "LogLevel",
    "Play",
    "RejectCaller",
    "StopPlayback",
    "StoreAttempt",
    "StoreCall",
]

import enum
from typing import TypeAlias

import attrs

from sipcallhunt.hotline.events import LegId
from sipcallhunt.records import AttemptRecord, CallRecord


class LogLevel(enum.StrEnum):
    """Levels of :class:`Log` lines (the names of the ``[logging] level`` setting)."""

    TRACE = "TRACE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@attrs.frozen
class AnswerCaller:
    """Answer the caller's INVITE with 200 OK."""


@attrs.frozen
class RejectCaller:
    """Answer the caller's INVITE with a final error response."""

    status: int
    reason: str


@attrs.frozen
class Play:
    """Play ``prompts`` on ``leg``, replacing whatever it was playing; ``loop`` repeats the list."""

    leg: LegId
    prompts: tuple[str, ...]
    loop: bool
    token: int


@attrs.frozen
class StopPlayback:
    """Stop playing on ``leg``."""

    leg: LegId


@attrs.frozen
class DetectDtmf:
    """Turn the in-band DTMF detector on ``leg`` on (``inband=True``) or off."""

    leg: LegId
    inband: bool


@attrs.frozen
class Dial:
    """Call an agent (or the forward number) as a new leg numbered ``attempt``."""

    attempt: int
    agent_name: str
    number: str
    caller_id: str | None


@attrs.frozen
class HangupAgent:
    """End the agent leg ``attempt``: CANCEL if not answered yet, BYE if answered."""

    attempt: int
    reason: str


@attrs.frozen
class HangupCaller:
    """End the caller's leg with BYE."""

    reason: str


@attrs.frozen
class Bridge:
    """Connect the caller's leg with agent leg ``attempt`` (relay RTP both ways)."""

    attempt: int


@attrs.frozen
class StoreCall:
    """Upsert a snapshot of the call's record (key: ``record.call_id``)."""

    record: CallRecord


@attrs.frozen
class StoreAttempt:
    """Upsert a snapshot of an attempt's record (key: ``record.call_id``, ``record.seq``)."""

    record: AttemptRecord


@attrs.frozen
class Log:
    """A line for the daemon log about call ``call_id``."""

    level: LogLevel
    message: str
    call_id: str


Action: TypeAlias = (
    AnswerCaller
    | RejectCaller
    | Play
    | StopPlayback
    | DetectDtmf
    | Dial
    | HangupAgent
    | HangupCaller
    | Bridge
    | StoreCall
    | StoreAttempt
    | Log
)
"""Every output of a call."""
