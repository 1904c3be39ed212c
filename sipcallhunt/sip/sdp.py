"""SDP: parse and serialize session descriptions (RFC 4566), negotiate audio (RFC 3264).

Theory of operation
-------------------
:func:`parse_sdp` turns a body into a frozen :class:`SessionDescription` holding one
:class:`MediaDescription` per ``m=`` line.  The attributes the user agent needs (``rtpmap``,
``fmtp``, ``ptime``, ``maxptime``, the direction, ``rtcp-mux``) become fields; every other
line is kept, in order, so that ``parse_sdp(bytes(sd)) == sd``.  Serialization writes the
lines in the order of RFC 4566 §5.

Offer/answer is limited to what the hotline does: exactly one audio stream with G.711
(PCMU or PCMA) and, when the peer offers it, RFC 4733 telephone-events.

- :func:`build_offer` makes our offer (one audio stream, our codecs in our order).
- :func:`answer_offer` answers a peer's offer: the first usable audio stream is accepted
  with the first of the offerer's formats that we support (RFC 3264 §6.1: the offerer's
  order is its preference); every other ``m=`` line is rejected with port 0 (§6); the
  telephone-event payload type is the one the peer offered; the direction is the
  answer of §6.1 (sendonly → recvonly, recvonly → sendonly, inactive → inactive), and
  ``c=0.0.0.0`` is read as the old hold of §8.4 ("do not send to me").
- :func:`accept_answer` reads the answer to one of our offers.

Both return :class:`NegotiatedMedia`: where to send, which codec and payload types, the
ptime the peer wants to receive, what *we* may do (the direction) and whether the peer put
the call on hold.  An SDP that cannot be parsed raises :class:`~sipcallhunt.errors.SdpError`
with status 400; one that offers nothing we can serve raises it with status 488.
"""

from __future__ import annotations

__all__ = [
    "Connection",
    "Direction",
    "Fmtp",
    "MediaDescription",
    "NegotiatedMedia",
    "Origin",
    "RtpMap",
    "SessionDescription",
    "accept_answer",
    "answer_offer",
    "build_offer",
    "parse_sdp",
]

import enum
import functools
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from sipcallhunt.errors import SdpError

MAX_SDP_SIZE: Final = 65536
"""Largest body accepted; a SIP message cannot be larger anyway."""

DEFAULT_PTIME: Final = 20
"""Packetisation in ms when the peer states none (RFC 3551 §4.5: 20 ms for G.711)."""

TELEPHONE_EVENT: Final = "telephone-event"
"""RFC 4733 §7.1.1 encoding name."""

TELEPHONE_EVENT_FMTP: Final = "0-16"
"""The events we accept: DTMF 0-9 * # A-D and flash (RFC 4733 §3.2)."""

RTP_AVP: Final = "RTP/AVP"
"""The only profile we speak (RFC 3551); RTP/AVPF is accepted in offers as a superset."""

_PROFILES: Final = frozenset({"RTP/AVP", "RTP/AVPF"})

G711_STATIC: Final[dict[str, int]] = {"PCMU": 0, "PCMA": 8}
"""Static payload types of G.711 (RFC 3551 §6, table 4)."""

_STATIC_BY_PT: Final[dict[int, str]] = {pt: name for name, pt in G711_STATIC.items()}

_HOLD_ADDRESSES: Final = frozenset({"0.0.0.0", "::"})  # RFC 3264 §8.4 hold


class Direction(enum.StrEnum):
    """Media direction attribute (RFC 4566 §6, RFC 3264 §5.1), from the point of view of the SDP's author."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @classmethod
    def of(cls, *, send: bool, recv: bool) -> Direction:
        if send and recv:
            return cls.SENDRECV
        if send:
            return cls.SENDONLY
        if recv:
            return cls.RECVONLY
        return cls.INACTIVE

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    def reversed(self) -> Direction:
        """The same stream seen from the other end."""
        return Direction.of(send=self.receives, recv=self.sends)


_DIRECTIONS: Final = frozenset(d.value for d in Direction)


@attrs.frozen
class Connection:
    """``c=`` (RFC 4566 §5.7): network type, address type and address (without multicast suffixes)."""

    address: str
    addr_type: str = "IP4"
    net_type: str = "IN"
    suffix: str = ""
    """A multicast ``/ttl[/count]`` suffix, kept as written."""

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address, "IP6" if ":" in address else "IP4")

    def __str__(self) -> str:
        return f"{self.net_type} {self.addr_type} {self.address}{self.suffix}"

    @property
    def is_hold(self) -> bool:
        """``c=IN IP4 0.0.0.0``: the pre-RFC 3264 way to put a call on hold (RFC 3264 §8.4)."""
        return self.address in _HOLD_ADDRESSES


@attrs.frozen(kw_only=True)
class Origin:
    """``o=`` (RFC 4566 §5.2)."""

    username: str = "-"
    session_id: int
    session_version: int
    net_type: str = "IN"
    addr_type: str = "IP4"
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} {self.net_type} {self.addr_type} {self.address}"
        )


@attrs.frozen
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`` (RFC 4566 §6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        channels = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{channels}"


@attrs.frozen
class Fmtp:
    """``a=fmtp:<pt> <parameters>`` (RFC 4566 §6); parameters kept as written."""

    payload_type: int
    parameters: str

    def __str__(self) -> str:
        return f"{self.payload_type} {self.parameters}"


Attribute = tuple[str, str | None]
"""Another ``a=`` line: name and value (None for a property attribute such as ``a=recvonly``)."""

Line = tuple[str, str]
"""Another line kept as written: type letter and value."""


@attrs.frozen(kw_only=True)
class MediaDescription:
    """One ``m=`` section (RFC 4566 §5.14) with the attributes that matter parsed out."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    rtpmap: tuple[RtpMap, ...] = ()
    fmtp: tuple[Fmtp, ...] = ()
    ptime: int | None = None
    maxptime: int | None = None
    direction: Direction | None = None
    """The media-level direction attribute; None when absent (the session's applies)."""
    rtcp_mux: bool = False
    bandwidths: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    lines: tuple[Line, ...] = ()
    """Other lines (``i=``, ``k=``) as written."""

    def encoding_of(self, payload_type: int) -> RtpMap | None:
        """The rtpmap of ``payload_type``, or the RFC 3551 default for the static G.711 types."""
        for entry in self.rtpmap:
            if entry.payload_type == payload_type:
                return entry
        if payload_type in _STATIC_BY_PT:
            return RtpMap(payload_type, _STATIC_BY_PT[payload_type], 8000)
        return None

    def fmtp_of(self, payload_type: int) -> str | None:
        for entry in self.fmtp:
            if entry.payload_type == payload_type:
                return entry.parameters
        return None

    @property
    def payload_types(self) -> list[int]:
        """The formats that are RTP payload type numbers, in order."""
        return [int(f) for f in self.formats if _is_number(f, 3) and int(f) <= 127]

    def lines_out(self) -> Iterable[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        yield f"m={self.media} {port} {' '.join((self.proto, *self.formats))}"
        for kind, value in self.lines:
            if kind == "i":
                yield f"i={value}"
        if self.connection is not None:
            yield f"c={self.connection}"
        for bandwidth in self.bandwidths:
            yield f"b={bandwidth}"
        for kind, value in self.lines:
            if kind != "i":
                yield f"{kind}={value}"
        for rtpmap in self.rtpmap:
            yield f"a=rtpmap:{rtpmap}"
        for fmtp in self.fmtp:
            yield f"a=fmtp:{fmtp}"
        if self.ptime is not None:
            yield f"a=ptime:{self.ptime}"
        if self.maxptime is not None:
            yield f"a=maxptime:{self.maxptime}"
        if self.rtcp_mux:
            yield "a=rtcp-mux"
        if self.direction is not None:
            yield f"a={self.direction.value}"
        yield from _attribute_lines(self.attributes)


@attrs.frozen(kw_only=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 §5)."""

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    times: tuple[tuple[int, int], ...] = ((0, 0),)
    direction: Direction | None = None
    """The session-level direction attribute; None when absent."""
    bandwidths: tuple[str, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    lines: tuple[Line, ...] = ()
    """Other session-level lines (``i= u= e= p= r= z= k=``) as written."""
    media: tuple[MediaDescription, ...] = ()
    version: int = 0

    def __str__(self) -> str:
        return "".join(line + "\r\n" for line in self._lines())

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")

    def _lines(self) -> Iterable[str]:
        yield f"v={self.version}"
        yield f"o={self.origin}"
        yield f"s={self.session_name}"
        order = "iuep"
        for kind in order:
            for k, value in self.lines:
                if k == kind:
                    yield f"{k}={value}"
        if self.connection is not None:
            yield f"c={self.connection}"
        for bandwidth in self.bandwidths:
            yield f"b={bandwidth}"
        repeats = [value for k, value in self.lines if k == "r"]
        for start, stop in self.times:
            yield f"t={start} {stop}"
        for value in repeats:
            yield f"r={value}"
        for kind in "zk":
            for k, value in self.lines:
                if k == kind:
                    yield f"{k}={value}"
        if self.direction is not None:
            yield f"a={self.direction.value}"
        yield from _attribute_lines(self.attributes)
        for media in self.media:
            yield from media.lines_out()

    def media_direction(self, media: MediaDescription) -> Direction:
        """The direction that applies to ``media``: its own, else the session's, else sendrecv (RFC 3264 §5.1)."""
        return media.direction or self.direction or Direction.SENDRECV

    def media_connection(self, media: MediaDescription) -> Connection | None:
        return media.connection or self.connection


def _attribute_lines(attributes: Iterable[Attribute]) -> Iterable[str]:
    for name, value in attributes:
        yield f"a={name}" if value is None else f"a={name}:{value}"


@attrs.frozen(kw_only=True)
class NegotiatedMedia:
    """The outcome of an offer/answer for the one audio stream.

    ``direction`` is what *we* may do: ``sendonly`` means we send and the peer does not send
    to us.  ``on_hold`` is True when the peer's SDP puts the call on hold (it will not
    receive: ``sendonly``/``inactive``, or the ``c=0.0.0.0`` of RFC 3264 §8.4).
    ``ptime`` is the packetisation the peer asked to receive.
    """

    remote_host: str
    remote_port: int
    codec: str
    payload_type: int
    dtmf_payload_type: int | None
    ptime: int
    direction: Direction
    on_hold: bool


# -- parsing -----------------------------------------------------------------------------------


def _garbage(message: str) -> SdpError:
    return SdpError(message, status=400, reason="Bad Request")


def _is_number(text: str, digits: int) -> bool:
    """ASCII digits only (str.isdigit() also accepts '²', which int() refuses), at most ``digits`` of them."""
    return text.isascii() and text.isdigit() and len(text) <= digits


def _int(text: str, what: str, limit: int = 2**63 - 1) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 20 or int(text) > limit:
        raise _garbage(f"invalid {what}: {text[:40]!r}")
    return int(text)


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise _garbage(f"invalid c= line: {value[:100]!r}")
    net_type, addr_type, address = parts
    address, slash, suffix = address.partition("/")
    if not address:
        raise _garbage(f"invalid c= line: {value[:100]!r}")
    return Connection(address, addr_type, net_type, slash + suffix)


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise _garbage(f"invalid o= line: {value[:100]!r}")
    return Origin(
        username=parts[0],
        session_id=_int(parts[1], "o= session id"),
        session_version=_int(parts[2], "o= session version"),
        net_type=parts[3],
        addr_type=parts[4],
        address=parts[5],
    )


def _parse_media_line(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise _garbage(f"invalid m= line: {value[:100]!r}")
    media, port_text, proto, *formats = parts
    port_text, slash, count_text = port_text.partition("/")
    port = _int(port_text, "m= port", 65535)
    count = _int(count_text, "m= port count", 65535) if slash else None
    return MediaDescription(media=media, port=port, port_count=count, proto=proto, formats=tuple(formats))


def _parse_rtpmap(value: str) -> RtpMap | None:
    pt_text, _, rest = value.partition(" ")
    pieces = rest.strip().split("/")
    if not _is_number(pt_text, 3) or len(pieces) not in (2, 3) or not pieces[0]:
        return None
    if not _is_number(pieces[1], 9) or (len(pieces) == 3 and not _is_number(pieces[2], 3)):
        return None
    if int(pt_text) > 127:
        return None
    return RtpMap(int(pt_text), pieces[0], int(pieces[1]), int(pieces[2]) if len(pieces) == 3 else None)


def _parse_fmtp(value: str) -> Fmtp | None:
    pt_text, _, rest = value.partition(" ")
    if not _is_number(pt_text, 3) or int(pt_text) > 127:
        return None
    return Fmtp(int(pt_text), rest.strip())


def _parse_ms(value: str) -> int | None:
    """``a=ptime:20`` (some peers write ``20.0``); None when unusable."""
    try:
        ms = float(value)
    except ValueError:
        return None
    if not 0 < ms <= 10000:
        return None
    return round(ms) or None  # 0.4 ms would become 0, which reads back as unusable


_SESSION_LINE_TYPES: Final = frozenset("iuepzkr")
_MEDIA_LINE_TYPES: Final = frozenset("ik")
# The order serialization writes other lines in (RFC 4566 §5); parsing sorts them the same way
# (stable, so lines of one type keep theirs), which keeps parse_sdp(bytes(sd)) == sd.
_LINE_ORDER: Final = {kind: index for index, kind in enumerate("iueprzk")}


def _in_line_order(lines: Iterable[Line]) -> tuple[Line, ...]:
    return tuple(sorted(lines, key=lambda line: _LINE_ORDER[line[0]]))


def parse_sdp(body: bytes) -> SessionDescription:
    """Parse an SDP body (RFC 4566); raises :class:`SdpError` (status 400) when it is not SDP."""
    if len(body) > MAX_SDP_SIZE:
        raise _garbage(f"SDP too large ({len(body)} bytes)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _garbage("SDP is not UTF-8") from None
    # Trailing blanks on a line are not SDP (RFC 4566 §5) but some peers send them: ignore them.
    lines = [line.rstrip(" \t\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines or lines[0].strip() != "v=0":
        raise _garbage("SDP does not start with v=0")

    origin: Origin | None = None
    session_name: str | None = None
    connection: Connection | None = None
    times: list[tuple[int, int]] = []
    direction: Direction | None = None
    bandwidths: list[str] = []
    attributes: list[Attribute] = []
    others: list[Line] = []
    media: list[MediaDescription] = []

    current: _MediaBuilder | None = None
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise _garbage(f"malformed SDP line: {line[:100]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            if current is not None:
                media.append(current.build())
            current = _MediaBuilder(_parse_media_line(value))
            continue
        if current is not None:
            current.add(kind, value, line)
            continue
        if kind == "o":
            origin = _parse_origin(value)
        elif kind == "s":
            session_name = value
        elif kind == "c":
            connection = _parse_connection(value)
        elif kind == "t":
            parts = value.split()
            if len(parts) != 2:
                raise _garbage(f"invalid t= line: {value[:100]!r}")
            times.append((_int(parts[0], "t= start"), _int(parts[1], "t= stop")))
        elif kind == "b":
            bandwidths.append(value)
        elif kind == "a":
            name, colon, attr_value = value.partition(":")
            if not colon and name in _DIRECTIONS and direction is None:
                direction = Direction(name)
            else:
                attributes.append((name, attr_value if colon else None))
        elif kind in _SESSION_LINE_TYPES:
            others.append((kind, value))
        else:
            raise _garbage(f"unexpected SDP line at session level: {line[:100]!r}")
    if current is not None:
        media.append(current.build())
    if origin is None:
        raise _garbage("SDP without o= line")
    return SessionDescription(
        version=0,
        origin=origin,
        session_name=session_name if session_name is not None else "-",
        connection=connection,
        times=tuple(times) if times else ((0, 0),),
        direction=direction,
        bandwidths=tuple(bandwidths),
        attributes=tuple(attributes),
        lines=_in_line_order(others),
        media=tuple(media),
    )


@attrs.define
class _MediaBuilder:
    """Collects the lines of one media section while parsing."""

    head: MediaDescription
    connection: Connection | None = None
    rtpmap: list[RtpMap] = attrs.field(factory=list)
    fmtp: list[Fmtp] = attrs.field(factory=list)
    ptime: int | None = None
    maxptime: int | None = None
    direction: Direction | None = None
    rtcp_mux: bool = False
    bandwidths: list[str] = attrs.field(factory=list)
    attributes: list[Attribute] = attrs.field(factory=list)
    lines: list[Line] = attrs.field(factory=list)

    def add(self, kind: str, value: str, line: str) -> None:
        if kind == "c":
            self.connection = _parse_connection(value)
        elif kind == "b":
            self.bandwidths.append(value)
        elif kind == "a":
            self._attribute(value)
        elif kind in _MEDIA_LINE_TYPES:
            self.lines.append((kind, value))
        else:
            raise _garbage(f"unexpected SDP line in a media section: {line[:100]!r}")

    def _attribute(self, value: str) -> None:
        name, colon, attr_value = value.partition(":")
        if name == "rtpmap" and colon:
            rtpmap = _parse_rtpmap(attr_value)
            if rtpmap is not None and str(rtpmap) == attr_value:
                self.rtpmap.append(rtpmap)
                return
        elif name == "fmtp" and colon:
            fmtp = _parse_fmtp(attr_value)
            if fmtp is not None and str(fmtp) == attr_value:
                self.fmtp.append(fmtp)
                return
        elif name == "ptime" and colon and self.ptime is None:
            self.ptime = _parse_ms(attr_value)
            if self.ptime is not None:
                return
        elif name == "maxptime" and colon and self.maxptime is None:
            self.maxptime = _parse_ms(attr_value)
            if self.maxptime is not None:
                return
        elif not colon and name in _DIRECTIONS and self.direction is None:
            self.direction = Direction(name)
            return
        elif not colon and name == "rtcp-mux" and not self.rtcp_mux:
            self.rtcp_mux = True
            return
        self.attributes.append((name, attr_value if colon else None))

    def build(self) -> MediaDescription:
        return attrs.evolve(
            self.head,
            connection=self.connection,
            rtpmap=tuple(self.rtpmap),
            fmtp=tuple(self.fmtp),
            ptime=self.ptime,
            maxptime=self.maxptime,
            direction=self.direction,
            rtcp_mux=self.rtcp_mux,
            bandwidths=tuple(self.bandwidths),
            attributes=tuple(self.attributes),
            lines=_in_line_order(self.lines),
        )


# -- offer / answer ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _addr_type(address: str) -> str:
    try:
        return "IP6" if isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address) else "IP4"
    except ValueError:
        return "IP6" if ":" in address else "IP4"


def _check_codecs(codecs: Sequence[str]) -> tuple[str, ...]:
    out = tuple(c.upper() for c in codecs)
    if not out or any(c not in G711_STATIC for c in out):
        raise ValueError(f"codecs must be a non-empty selection of {sorted(G711_STATIC)}: {codecs!r}")
    return out


def _g711_name(media: MediaDescription, payload_type: int) -> str | None:
    entry = media.encoding_of(payload_type)
    if entry is None or entry.clock_rate != 8000 or entry.channels not in (None, 1):
        return None
    name = entry.encoding.upper()
    return name if name in G711_STATIC else None


def _telephone_event(media: MediaDescription) -> int | None:
    for pt in media.payload_types:
        entry = media.encoding_of(pt)
        if entry is not None and entry.encoding.lower() == TELEPHONE_EVENT and entry.clock_rate == 8000:
            return pt
    return None


def _session(
    *, address: str, session_id: int, session_version: int, media: tuple[MediaDescription, ...]
) -> SessionDescription:
    return SessionDescription(
        origin=Origin(
            session_id=session_id, session_version=session_version, addr_type=_addr_type(address), address=address
        ),
        session_name="-",
        connection=Connection(address, _addr_type(address)),
        media=media,
    )


def _audio_section(
    *,
    port: int,
    codecs: Sequence[tuple[str, int]],
    dtmf_payload_type: int | None,
    dtmf_fmtp: str,
    ptime: int,
    direction: Direction,
) -> MediaDescription:
    rtpmap = [RtpMap(pt, name, 8000) for name, pt in codecs]
    fmtp: list[Fmtp] = []
    formats = [str(pt) for _, pt in codecs]
    if dtmf_payload_type is not None:
        formats.append(str(dtmf_payload_type))
        rtpmap.append(RtpMap(dtmf_payload_type, TELEPHONE_EVENT, 8000))
        fmtp.append(Fmtp(dtmf_payload_type, dtmf_fmtp))
    return MediaDescription(
        media="audio",
        port=port,
        proto=RTP_AVP,
        formats=tuple(formats),
        rtpmap=tuple(rtpmap),
        fmtp=tuple(fmtp),
        ptime=ptime,
        direction=direction,
    )


def build_offer(
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf_payload_type: int | None = 101,
    ptime: int = DEFAULT_PTIME,
    direction: str = "sendrecv",
) -> SessionDescription:
    """Our offer: one audio stream with ``codecs`` in our order of preference (RFC 3264 §5)."""
    names = _check_codecs(codecs)
    if dtmf_payload_type is not None and not 96 <= dtmf_payload_type <= 127:
        raise ValueError(f"telephone-event needs a dynamic payload type (96-127), not {dtmf_payload_type}")
    audio = _audio_section(
        port=port,
        codecs=[(name, G711_STATIC[name]) for name in names],
        dtmf_payload_type=dtmf_payload_type,
        dtmf_fmtp=TELEPHONE_EVENT_FMTP,
        ptime=ptime,
        direction=Direction(direction),
    )
    return _session(address=address, session_id=session_id, session_version=session_version, media=(audio,))


def _usable_audio(offer: SessionDescription, media: MediaDescription, codecs: tuple[str, ...]) -> int | None:
    """The first of the offerer's formats that is one of ``codecs``, if this stream can be served."""
    if media.media != "audio" or media.port == 0 or media.proto.upper() not in _PROFILES:
        return None
    if offer.media_connection(media) is None:
        return None
    for pt in media.payload_types:
        if _g711_name(media, pt) in codecs:
            return pt
    return None


def _rejected(media: MediaDescription) -> MediaDescription:
    """The answer's copy of an ``m=`` line we decline: same media and formats, port 0 (RFC 3264 §6)."""
    return MediaDescription(media=media.media, port=0, proto=media.proto, formats=media.formats or ("0",))


def _peer_direction(sd: SessionDescription, media: MediaDescription) -> tuple[Direction, bool]:
    """The peer's direction for ``media`` and whether that puts us on hold (RFC 3264 §8.4)."""
    direction = sd.media_direction(media)
    connection = sd.media_connection(media)
    old_hold = connection is not None and connection.is_hold
    if old_hold:
        direction = Direction.of(send=direction.sends, recv=False)
    on_hold = old_hold or direction in (Direction.SENDONLY, Direction.INACTIVE)
    return direction, on_hold


def answer_offer(
    offer: SessionDescription,
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    direction: str = "sendrecv",
) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer ``offer`` (RFC 3264 §6); raises :class:`SdpError` (488) when no audio stream is usable."""
    names = _check_codecs(codecs)
    wanted = Direction(direction)
    chosen: int | None = None
    sections: list[MediaDescription] = []
    negotiated: NegotiatedMedia | None = None
    for media in offer.media:
        pt = _usable_audio(offer, media, names) if negotiated is None else None
        if pt is None:
            sections.append(_rejected(media))
            continue
        codec = _g711_name(media, pt)
        assert codec is not None
        dtmf = _telephone_event(media)
        peer, on_hold = _peer_direction(offer, media)
        ours = Direction.of(send=wanted.sends and peer.receives, recv=wanted.receives and peer.sends)
        ptime = media.ptime or DEFAULT_PTIME
        sections.append(
            _audio_section(
                port=port,
                codecs=[(codec, pt)],
                dtmf_payload_type=dtmf,
                dtmf_fmtp=TELEPHONE_EVENT_FMTP,
                ptime=ptime,
                direction=ours,
            )
        )
        connection = offer.media_connection(media)
        assert connection is not None
        negotiated = NegotiatedMedia(
            remote_host=connection.address,
            remote_port=media.port,
            codec=codec,
            payload_type=pt,
            dtmf_payload_type=dtmf,
            ptime=ptime,
            direction=ours,
            on_hold=on_hold,
        )
        chosen = pt
    if negotiated is None or chosen is None:
        raise SdpError("no audio stream with PCMU or PCMA offered", status=488)
    answer = _session(address=address, session_id=session_id, session_version=session_version, media=tuple(sections))
    return answer, negotiated


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """Read the answer to our ``offer`` (RFC 3264 §7); raises :class:`SdpError` (488) if audio was refused."""
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m= lines for the {len(offer.media)} offered (RFC 3264 §6)", status=488
        )
    for ours, theirs in zip(offer.media, answer.media, strict=True):
        if ours.media != "audio" or ours.port == 0:
            continue
        if theirs.port == 0:
            raise SdpError("the audio stream was refused in the answer", status=488)
        offered = {pt for pt in ours.payload_types if _g711_name(ours, pt) is not None}
        codec_pt = next(
            (pt for pt in theirs.payload_types if pt in offered and _g711_name(theirs, pt) is not None), None
        )
        if codec_pt is None:
            raise SdpError("the answer accepts none of the offered codecs", status=488)
        codec = _g711_name(theirs, codec_pt)
        assert codec is not None
        dtmf = _telephone_event(theirs)
        if dtmf is not None and _telephone_event(ours) is None:
            dtmf = None
        connection = answer.media_connection(theirs)
        if connection is None:
            raise SdpError("the answer has no connection address", status=488)
        peer, on_hold = _peer_direction(answer, theirs)
        mine = offer.media_direction(ours)
        direction = Direction.of(send=mine.sends and peer.receives, recv=mine.receives and peer.sends)
        return NegotiatedMedia(
            remote_host=connection.address,
            remote_port=theirs.port,
            codec=codec,
            payload_type=codec_pt,
            dtmf_payload_type=dtmf,
            ptime=theirs.ptime or DEFAULT_PTIME,
            direction=direction,
            on_hold=on_hold,
        )
    raise SdpError("our offer had no audio stream", status=488)
