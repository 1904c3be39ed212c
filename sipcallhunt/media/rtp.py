"""RTP packets (RFC 3550 §5.1) as values, plus allocation-free helpers for the relay's fast path.

:class:`RtpPacket` is a frozen value: :meth:`RtpPacket.parse` turns a datagram into one and
:meth:`RtpPacket.serialize` (also ``bytes(packet)``) is its exact inverse, padding, CSRC list and
header extension included.  Malformed input raises :class:`~sipcallhunt.errors.RtpError` and
nothing else; the shell drops such a datagram and counts it.

The relay does not need objects for every packet: :func:`peek_header` reads the fixed header
fields, :func:`payload_bounds` finds the payload, :func:`pack_header` builds a fixed header, and
:func:`seq_diff` / :func:`ts_diff` compare sequence numbers and timestamps across wrap-around.
:func:`is_rtcp` tells RTCP from RTP when both share one port (RFC 5761 §4).

Pure module: no I/O, no clock.
"""

from __future__ import annotations

__all__ = [
    "RTCP_PT_MAX",
    "RTCP_PT_MIN",
    "RTP_HEADER_SIZE",
    "RTP_VERSION",
    "RtpPacket",
    "is_rtcp",
    "pack_header",
    "payload_bounds",
    "peek_header",
    "seq_diff",
    "ts_diff",
]

import struct
from typing import Final

import attrs

from sipcallhunt.errors import RtpError

RTP_VERSION: Final = 2  # RFC 3550 §5.1 "version (V): 2 bits"
RTP_HEADER_SIZE: Final = 12  # RFC 3550 §5.1: the fixed header, without CSRC list and extension
RTP_MAX_CSRC: Final = 15  # RFC 3550 §5.1 "CSRC count (CC): 4 bits"
RTP_EXTENSION_HEADER_SIZE: Final = 4  # RFC 3550 §5.3.1: 16-bit profile data, 16-bit length in words

# RFC 5761 §4: RTCP packet types 192-223 collide with RTP payload types 64-95 (with the marker
# bit set); those payload types must not be used when RTP and RTCP share a port.
RTCP_PT_MIN: Final = 192
RTCP_PT_MAX: Final = 223

_SEQ_MOD: Final = 1 << 16
_TS_MOD: Final = 1 << 32

_FIXED: Final = struct.Struct("!BBHII")
_WORD: Final = struct.Struct("!I")
_EXT_HEADER: Final = struct.Struct("!HH")


def _check_range(name: str, value: int, limit: int) -> None:
    if not 0 <= value < limit:
        raise RtpError(f"RTP {name} {value} out of range 0..{limit - 1}")


@attrs.frozen(kw_only=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).

    ``extension`` is ``(profile, data)`` with ``len(data)`` a multiple of 4 (RFC 3550 §5.3.1).
    When ``padding`` is set, ``padding_bytes`` holds the trailing padding octets as sent; the last
    of them is their count (RFC 3550 §5.1).  Constructing a packet whose fields cannot be encoded
    raises :class:`RtpError`.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: bool = False
    padding_bytes: bytes = b""
    version: int = RTP_VERSION

    def __attrs_post_init__(self) -> None:
        if self.version != RTP_VERSION:
            raise RtpError(f"RTP version {self.version} is not {RTP_VERSION}")
        _check_range("payload type", self.payload_type, 128)
        _check_range("sequence number", self.sequence, _SEQ_MOD)
        _check_range("timestamp", self.timestamp, _TS_MOD)
        _check_range("SSRC", self.ssrc, _TS_MOD)
        if len(self.csrc) > RTP_MAX_CSRC:
            raise RtpError(f"RTP packet has {len(self.csrc)} CSRCs, at most {RTP_MAX_CSRC} fit")
        for csrc in self.csrc:
            _check_range("CSRC", csrc, _TS_MOD)
        if self.extension is not None:
            profile, data = self.extension
            _check_range("extension profile", profile, _SEQ_MOD)
            if len(data) % 4 or len(data) // 4 >= _SEQ_MOD:
                raise RtpError(f"RTP header extension of {len(data)} bytes is not a whole number of 32-bit words")
        if self.padding:
            count = len(self.padding_bytes)
            if not 1 <= count <= 255 or self.padding_bytes[-1] != count:
                raise RtpError("RTP padding must end with its own length (1..255 octets)")
        elif self.padding_bytes:
            raise RtpError("RTP padding_bytes given without the padding bit")

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP datagram; raise :class:`RtpError` with the reason when it is malformed."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet is truncated: {size} bytes, the fixed header needs {RTP_HEADER_SIZE}")
        first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP packet has bad version {version}")
        padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F
        pos = RTP_HEADER_SIZE
        end = pos + 4 * csrc_count
        if end > size:
            raise RtpError(f"RTP packet has truncated CSRC list: {csrc_count} CSRCs need {end} bytes, got {size}")
        csrc = struct.unpack_from(f"!{csrc_count}I", data, pos) if csrc_count else ()
        pos = end
        extension: tuple[int, bytes] | None = None
        if has_extension:
            if pos + RTP_EXTENSION_HEADER_SIZE > size:
                raise RtpError("RTP packet has truncated extension header")
            profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += RTP_EXTENSION_HEADER_SIZE
            end = pos + 4 * words
            if end > size:
                raise RtpError(f"RTP packet has truncated extension: {4 * words} bytes announced, {size - pos} left")
            extension = (profile, bytes(data[pos:end]))
            pos = end
        stop = size
        padding_bytes = b""
        if padding:
            count = data[-1]
            if count == 0:
                raise RtpError("RTP packet has padding length 0")
            if count > size - pos:
                raise RtpError(f"RTP packet padding length {count} exceeds the {size - pos} bytes after the header")
            stop = size - count
            padding_bytes = bytes(data[stop:])
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[pos:stop]),
            marker=bool(second & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
            padding_bytes=padding_bytes,
        )

    def serialize(self) -> bytes:
        """The packet on the wire; ``RtpPacket.parse(p.serialize()) == p``."""
        first = (
            (self.version << 6)
            | (0x20 if self.padding else 0)
            | (0x10 if self.extension is not None else 0)
            | len(self.csrc)
        )
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [_FIXED.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            profile, data = self.extension
            parts.append(_EXT_HEADER.pack(profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        parts.append(self.padding_bytes)
        return b"".join(parts)

    def __bytes__(self) -> bytes:
        return self.serialize()


def peek_header(data: bytes) -> tuple[bool, int, int, int, int]:
    """``(marker, payload_type, sequence, timestamp, ssrc)`` of an RTP datagram, without parsing the rest.

    Checks only the length and the version (RFC 3550 §5.1); raises :class:`RtpError` otherwise.
    """
    if len(data) < RTP_HEADER_SIZE:
        raise RtpError(f"RTP packet is truncated: {len(data)} bytes, the fixed header needs {RTP_HEADER_SIZE}")
    first, second, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP packet has bad version {first >> 6}")
    return bool(second & 0x80), second & 0x7F, sequence, timestamp, ssrc


def payload_bounds(data: bytes) -> tuple[int, int]:
    """``(start, stop)`` such that ``data[start:stop]`` is the payload; same checks as :meth:`RtpPacket.parse`."""
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise RtpError(f"RTP packet is truncated: {size} bytes, the fixed header needs {RTP_HEADER_SIZE}")
    first = data[0]
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP packet has bad version {first >> 6}")
    pos = RTP_HEADER_SIZE + 4 * (first & 0x0F)
    if pos > size:
        raise RtpError("RTP packet has truncated CSRC list")
    if first & 0x10:
        if pos + RTP_EXTENSION_HEADER_SIZE > size:
            raise RtpError("RTP packet has truncated extension header")
        pos += RTP_EXTENSION_HEADER_SIZE + 4 * ((data[pos + 2] << 8) | data[pos + 3])
        if pos > size:
            raise RtpError("RTP packet has truncated extension")
    stop = size
    if first & 0x20:
        count = data[-1]
        if count == 0 or count > size - pos:
            raise RtpError(f"RTP packet has bad padding length {count}")
        stop -= count
    return pos, stop


def pack_header(payload_type: int, sequence: int, timestamp: int, ssrc: int, marker: bool = False) -> bytes:
    """A 12-byte fixed RTP header (no CSRC, no extension, no padding); prepend it to a payload.

    Sequence and timestamp are taken modulo 2**16 and 2**32, so counters can simply be incremented.
    """
    return _FIXED.pack(
        RTP_VERSION << 6,
        (0x80 if marker else 0) | (payload_type & 0x7F),
        sequence & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc & 0xFFFFFFFF,
    )


def seq_diff(a: int, b: int) -> int:
    """How far sequence number ``a`` is ahead of ``b`` (negative: behind), across the 2**16 wrap.

    The result lies in -32768..32767 (RFC 3550 §A.1 serial-number arithmetic).
    """
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_diff(a: int, b: int) -> int:
    """How far RTP timestamp ``a`` is ahead of ``b`` (negative: behind), across the 2**32 wrap."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def is_rtcp(data: bytes) -> bool:
    """True when a datagram on a shared RTP/RTCP port is RTCP (RFC 5761 §4: packet type 192-223)."""
    return len(data) >= 2 and RTCP_PT_MIN <= data[1] <= RTCP_PT_MAX
