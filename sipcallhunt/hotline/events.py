"""What the outside world tells a hotline call: the inputs of :class:`~sipcallhunt.hotline.call.HotlineCall`.

Vocabulary
----------
A call has *legs*.  The caller's leg is :data:`CALLER`; every agent leg is named by its *attempt
number* (``1, 2, …`` within the call, the ``seq`` of its
:class:`~sipcallhunt.records.AttemptRecord`).  The shell keeps the map from ``(call_id, leg)`` to its
SIP dialogs and media legs.  Events are frozen values; the shell builds them from SIP and media
happenings and passes them to ``HotlineCall.handle(event, now)``:

=====================================  ==========================================================
``CallerConnected()``                  our 2xx to the caller's INVITE was ACKed: media flows
``CallerHungUp()``                     the caller's leg is gone (BYE, CANCEL before the ACK,
                                       transport failure, ACK timeout)
``Digit(leg, digit, method)``          a DTMF key on a leg, from any method (RFC 4733, SIP INFO,
                                       in-band); ``digit`` is one of ``0-9 * # A-D``
``PlaybackFinished(leg, token)``       a non-looping ``Play`` with this token played to its end
``AgentRinging(attempt, early_media)`` a 180 or 183 for the attempt's INVITE
``AgentAnswered(attempt)``             a 2xx for the attempt's INVITE (the shell ACKs it)
``AgentFailed(attempt, sip_status,     a final non-2xx response (``sip_status``), or no response /
reason)``                              transport error (``sip_status=None``); also a confirmed agent
                                       dialog that died without a BYE
``AgentHungUp(attempt)``               a BYE from the agent
``MediaTimeout(leg)``                  no RTP from a leg for ``media_timeout`` seconds
``Shutdown()``                         the daemon stops: end the call cleanly now
=====================================  ==========================================================

Timers are not events: the shell calls ``handle_timer(now)`` at ``next_deadline()``.

Nothing here trusts the outside world: an event for an unknown attempt, a stale playback token,
a late response for an attempt that is already over, a duplicate, a malformed digit — each is
ignored and logged by the call, never an error.
"""

from __future__ import annotations

__all__ = [
    "CALLER",
    "AgentAnswered",
    "AgentFailed",
    "AgentHungUp",
    "AgentRinging",
    "CallerConnected",
    "CallerHungUp",
    "CallerLeg",
    "Digit",
    "Event",
    "LegId",
    "MediaTimeout",
    "PlaybackFinished",
    "Shutdown",
]

import enum
from typing import Final, TypeAlias

import attrs

from sipcallhunt.records import DtmfMethod


class CallerLeg(enum.Enum):
    """The caller's leg of a call (one per call); agent legs are attempt numbers."""

    CALLER = "caller"

    def __str__(self) -> str:
        return "caller"


CALLER: Final = CallerLeg.CALLER
"""The caller's leg."""

LegId: TypeAlias = CallerLeg | int
"""A leg of a call: :data:`CALLER` or an agent attempt number (1, 2, …)."""


@attrs.frozen
class CallerConnected:
    """The caller ACKed our answer; prompts can be heard from now on."""


@attrs.frozen
class CallerHungUp:
    """The caller's leg ended (BYE, CANCEL, ACK timeout, transport failure)."""


@attrs.frozen
class Digit:
    """A DTMF key pressed on ``leg``, however it arrived (RFC 4733, SIP INFO or in-band)."""

    leg: LegId
    digit: str
    method: DtmfMethod


@attrs.frozen
class PlaybackFinished:
    """The non-looping playlist started by ``Play(..., token=token)`` on ``leg`` played to its end."""

    leg: LegId
    token: int


@attrs.frozen
class AgentRinging:
    """A provisional response (180 Ringing, 183 Session Progress) for the attempt's INVITE."""

    attempt: int
    early_media: bool = False


@attrs.frozen
class AgentAnswered:
    """A 2xx response for the attempt's INVITE: the agent's phone picked up."""

    attempt: int


@attrs.frozen
class AgentFailed:
    """The attempt's INVITE failed: final status ``sip_status``, or None without any response."""

    attempt: int
    sip_status: int | None
    reason: str = ""


@attrs.frozen
class AgentHungUp:
    """The agent sent BYE."""

    attempt: int


@attrs.frozen
class MediaTimeout:
    """No RTP arrived from ``leg`` for the configured media timeout."""

    leg: LegId


@attrs.frozen
class Shutdown:
    """The daemon is stopping: end the call now, cleanly (every leg hung up, record closed)."""


Event: TypeAlias = (
    CallerConnected
    | CallerHungUp
    | Digit
    | PlaybackFinished
    | AgentRinging
    | AgentAnswered
    | AgentFailed
    | AgentHungUp
    | MediaTimeout
    | Shutdown
)
"""Every input a call accepts through ``handle``."""
