"""What the user-agent core tells the outside world, and what it asks the shell to do.

:class:`SendMessage` is the only I/O request: the shell serialises nothing itself, it sends
``data`` to ``destination`` (opening a TCP connection if needed, resolving a host name if one is
given) and reports a failure back with ``UserAgent.transport_error``.  Everything else is an
event for the application (the hotline): calls arriving, progressing, answered, ended;
registration changes; DTMF received by SIP INFO; and log lines.
"""

from __future__ import annotations

__all__ = [
    "DEBUG",
    "ERROR",
    "INFO",
    "TRACE",
    "WARNING",
    "CallAnswered",
    "CallConfirmed",
    "CallEnded",
    "CallFailed",
    "CallProgress",
    "IncomingCall",
    "InfoDigit",
    "LogLine",
    "MediaUpdate",
    "RegistrationChanged",
    "SendMessage",
    "UaEvent",
]

from typing import Final

import attrs

from sipcallhunt.records import DtmfMethod
from sipcallhunt.sip.message import SipMessage, SipRequest
from sipcallhunt.sip.sdp import NegotiatedMedia
from sipcallhunt.sip.transaction import Endpoint
from sipcallhunt.sip.uri import NameAddr

# Log levels of LogLine, the logging module's numbers (the core does not import logging).
TRACE: Final = 5
"""Below DEBUG: whole SIP messages (registered as "TRACE" by the daemon's logging)."""
DEBUG: Final = 10
INFO: Final = 20
WARNING: Final = 30
ERROR: Final = 40


@attrs.frozen
class SendMessage:
    """Send ``message`` (serialised as ``bytes(message)``) to ``destination``."""

    message: SipMessage
    destination: Endpoint
    leg: str | None = None  # the call leg it belongs to, for logging


@attrs.frozen(kw_only=True)
class IncomingCall:
    """A trusted INVITE for one of our accounts: answer it with ``UserAgent.answer`` or reject it."""

    leg: str
    account: str
    caller: NameAddr  # From
    callee: NameAddr  # To
    request: SipRequest
    source: Endpoint


@attrs.frozen
class CallProgress:
    """A provisional response (180/183) to an outbound INVITE."""

    leg: str
    status: int
    reason: str
    early_media: bool  # the response carried SDP


@attrs.frozen
class CallAnswered:
    """2xx to our INVITE; the ACK has been sent."""

    leg: str


@attrs.frozen
class CallConfirmed:
    """The ACK for our 2xx arrived: the inbound call is up."""

    leg: str


@attrs.frozen
class CallFailed:
    """An outbound INVITE ended without a dialog (final status; 408 for a timeout, 503 for transport)."""

    leg: str
    status: int
    reason: str


@attrs.frozen
class CallEnded:
    """A call ended: BYE either way, CANCEL of an inbound call, missing ACK, session timer expiry."""

    leg: str
    reason: str
    by_remote: bool


@attrs.frozen
class MediaUpdate:
    """The negotiated media of a leg (after offer/answer, a re-INVITE or UPDATE, hold/unhold)."""

    leg: str
    media: NegotiatedMedia


@attrs.frozen
class InfoDigit:
    """A DTMF digit received by SIP INFO."""

    leg: str
    digit: str
    method: DtmfMethod = DtmfMethod.INFO


@attrs.frozen
class RegistrationChanged:
    account: str
    state: str
    detail: str
    registered: bool


@attrs.frozen
class LogLine:
    """Something for the daemon log (``level`` is a logging level number)."""

    level: int
    message: str
    leg: str | None = None


UaEvent = (
    SendMessage
    | IncomingCall
    | CallProgress
    | CallAnswered
    | CallConfirmed
    | CallFailed
    | CallEnded
    | MediaUpdate
    | InfoDigit
    | RegistrationChanged
    | LogLine
)
