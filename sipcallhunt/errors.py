"""The one exception hierarchy of sipcallhunt.

    SipCallHuntError
    ├── ConfigError            a broken configuration file (names the file and key)
    ├── MediaError
    │   ├── AudioFileError     an unreadable or empty audio file (names the file)
    │   └── RtpError           a malformed RTP/RTCP packet (dropped and counted, never fatal)
    ├── CallLogError           the call log store failed
    └── ProtocolError          carries the SIP status code that answers it
        ├── LocalProtocolError   our own bug: a transition that must not happen
        └── RemoteProtocolError  the peer's doing: answered with ``status`` or dropped
            ├── SipParseError    unparseable SIP message
            └── SdpError         unusable SDP

The shell catches ``SipCallHuntError`` per call and per packet; anything else is a bug
and is logged with the call's id before that call alone is ended.
"""

from __future__ import annotations

__all__ = [
    "AudioFileError",
    "CallLogError",
    "ConfigError",
    "ConfigProblem",
    "LocalProtocolError",
    "MediaError",
    "ProtocolError",
    "RemoteProtocolError",
    "RtpError",
    "SdpError",
    "SipCallHuntError",
    "SipParseError",
]

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pragma: no cover
    from sipcallhunt.sip.message import SipMessage


class SipCallHuntError(Exception):
    """Base class of every error sipcallhunt raises on purpose."""


class ConfigProblem(NamedTuple):
    """One problem in a configuration file: where it is and what is wrong."""

    file: str
    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.problem}"


class ConfigError(SipCallHuntError):
    """A configuration that cannot be used; lists every problem found."""

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem) -> None:
        if isinstance(problems, ConfigProblem):
            problems = [problems]
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class MediaError(SipCallHuntError):
    """Something in the media engine went wrong."""


class AudioFileError(MediaError):
    """An audio file that cannot be used as a prompt or as hold music."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class RtpError(MediaError):
    """A malformed RTP or RTCP packet."""


class CallLogError(SipCallHuntError):
    """The call log could not be read or written."""


class ProtocolError(SipCallHuntError):
    """A SIP protocol violation; ``status``/``reason`` answer it when it came from a request."""

    status: int = 500
    reason: str = "Server Internal Error"

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol forbids: a bug in sipcallhunt."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""

    status = 400
    reason = "Bad Request"


class SipParseError(RemoteProtocolError):
    """Unparseable SIP message.

    ``message`` holds whatever could be parsed before the problem was found (start line and
    headers), so that a request can still be answered with 400 (or ``status``); it is None
    when not even that was possible, and the datagram is then dropped and counted.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        partial: SipMessage | None = None,
    ) -> None:
        super().__init__(message, status=status, reason=reason)
        self.partial = partial


class SdpError(RemoteProtocolError):
    """SDP that cannot be parsed or offers nothing we can serve (answered 488)."""

    status = 488
    reason = "Not Acceptable Here"
