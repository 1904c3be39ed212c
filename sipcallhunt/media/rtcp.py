"""RTCP (RFC 3550 §6): parse compound packets and build the minimal reports sipcallhunt sends.

sipcallhunt answers RTCP on the RTP port + 1 only so that peers see a live, well-behaved
endpoint: every few seconds a compound packet of one SR (when it has sent media) or RR, plus an
SDES with a CNAME (RFC 3550 §6.1: both are mandatory in every compound packet), and a BYE when
the stream ends.  :func:`build_report` makes that packet.

:func:`parse_compound` reads what peers send: SR, RR, SDES and BYE become frozen values; APP
(RFC 3550 §6.7), feedback (RFC 4585), XR (RFC 3611) and any other packet type are skipped by
their length.  Anything malformed (truncated header, bad version, a length running past the
datagram, padding on any but the last packet, report blocks or SDES chunks that do not fit)
raises :class:`~sipcallhunt.errors.RtpError` and nothing else.  Every value has
``serialize()``; :func:`serialize_compound` joins them and is the inverse of the parser.

Pure module: no I/O, no clock (the wall-clock time of a report is a parameter).
"""

from __future__ import annotations

__all__ = [
    "NTP_EPOCH_OFFSET",
    "RTCP_APP",
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "SDES_CNAME",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "build_report",
    "ntp_timestamp",
    "parse_compound",
    "serialize_compound",
]

import struct
from typing import Final

import attrs

from sipcallhunt.errors import RtpError

RTCP_VERSION: Final = 2
RTCP_SR: Final = 200  # RFC 3550 §6.4.1
RTCP_RR: Final = 201  # RFC 3550 §6.4.2
RTCP_SDES: Final = 202  # RFC 3550 §6.5
RTCP_BYE: Final = 203  # RFC 3550 §6.6
RTCP_APP: Final = 204  # RFC 3550 §6.7 (skipped)
SDES_END: Final = 0
SDES_CNAME: Final = 1  # RFC 3550 §6.5.1
MAX_COUNT: Final = 31  # the 5-bit RC / SC field
NTP_EPOCH_OFFSET: Final = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)

_HEADER: Final = struct.Struct("!BBH")
_SENDER_INFO: Final = struct.Struct("!IQIII")  # SSRC, NTP timestamp, RTP timestamp, packets, octets
_BLOCK: Final = struct.Struct("!IB3sIIII")  # RFC 3550 §6.4.1 report block, 24 bytes


def _check(name: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise RtpError(f"RTCP {name} {value} does not fit in {bits} bits")


@attrs.frozen(kw_only=True)
class ReportBlock:
    """Reception statistics about one source (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int = 0  # 8-bit fixed point fraction
    cumulative_lost: int = 0  # signed 24 bits
    highest_sequence: int = 0  # extended highest sequence number received
    jitter: int = 0
    last_sr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    delay_since_last_sr: int = 0  # units of 1/65536 s

    def __attrs_post_init__(self) -> None:
        _check("report SSRC", self.ssrc, 32)
        _check("fraction lost", self.fraction_lost, 8)
        if not -(1 << 23) <= self.cumulative_lost < 1 << 23:
            raise RtpError(f"RTCP cumulative lost {self.cumulative_lost} does not fit in 24 bits")
        for name in ("highest_sequence", "jitter", "last_sr", "delay_since_last_sr"):
            _check(name.replace("_", " "), getattr(self, name), 32)

    def serialize(self) -> bytes:
        lost = (self.cumulative_lost & 0xFFFFFF).to_bytes(3, "big")
        return _BLOCK.pack(
            self.ssrc,
            self.fraction_lost,
            lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )

    @classmethod
    def _parse(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        cumulative = int.from_bytes(lost, "big")
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(
            ssrc=ssrc,
            fraction_lost=fraction,
            cumulative_lost=cumulative,
            highest_sequence=highest,
            jitter=jitter,
            last_sr=lsr,
            delay_since_last_sr=dlsr,
        )


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    """Common header (RFC 3550 §6.4.1): V=2, P=0, count, type, length in words minus one."""
    if count > MAX_COUNT:
        raise RtpError(f"RTCP packet type {packet_type} with {count} items; at most {MAX_COUNT} fit")
    if len(body) % 4:
        raise RtpError("RTCP packet body is not a whole number of 32-bit words")
    return _HEADER.pack((RTCP_VERSION << 6) | count, packet_type, (len(body) + 4) // 4 - 1) + body


def _pad_words(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


@attrs.frozen(kw_only=True)
class SenderReport:
    """SR (RFC 3550 §6.4.1); ``extension`` holds profile-specific words after the report blocks."""

    ssrc: int
    ntp_timestamp: int  # 64-bit NTP format: seconds since 1900 << 32 | fraction
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def __attrs_post_init__(self) -> None:
        _check("SSRC", self.ssrc, 32)
        _check("NTP timestamp", self.ntp_timestamp, 64)
        for name in ("rtp_timestamp", "packet_count", "octet_count"):
            _check(name.replace("_", " "), getattr(self, name), 32)

    def serialize(self) -> bytes:
        info = _SENDER_INFO.pack(self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count)
        body = info + b"".join(block.serialize() for block in self.reports) + self.extension
        return _packet(RTCP_SR, len(self.reports), body)


@attrs.frozen(kw_only=True)
class ReceiverReport:
    """RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def __attrs_post_init__(self) -> None:
        _check("SSRC", self.ssrc, 32)

    def serialize(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(block.serialize() for block in self.reports) + self.extension
        return _packet(RTCP_RR, len(self.reports), body)


@attrs.frozen
class SdesChunk:
    """The SDES items of one source: ``(item type, text)`` pairs (RFC 3550 §6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def __attrs_post_init__(self) -> None:
        _check("SDES SSRC", self.ssrc, 32)
        for kind, text in self.items:
            if not 1 <= kind <= 255 or len(text) > 255:
                raise RtpError(f"RTCP SDES item type {kind} with {len(text)} octets cannot be encoded")

    def serialize(self) -> bytes:
        items = b"".join(bytes([kind, len(text)]) + text for kind, text in self.items)
        # the item list ends with at least one null octet, then pads to a word boundary (§6.5)
        return _pad_words(struct.pack("!I", self.ssrc) + items + b"\x00")


@attrs.frozen
class SourceDescription:
    """SDES (RFC 3550 §6.5)."""

    chunks: tuple[SdesChunk, ...] = ()

    def serialize(self) -> bytes:
        return _packet(RTCP_SDES, len(self.chunks), b"".join(chunk.serialize() for chunk in self.chunks))

    def cname(self, ssrc: int) -> bytes | None:
        """The CNAME of ``ssrc``, if this SDES carries one."""
        for chunk in self.chunks:
            if chunk.ssrc == ssrc:
                for kind, text in chunk.items:
                    if kind == SDES_CNAME:
                        return text
        return None


@attrs.frozen
class Bye:
    """BYE (RFC 3550 §6.6): the sources leaving, and an optional reason."""

    sources: tuple[int, ...]
    reason: bytes | None = None

    def __attrs_post_init__(self) -> None:
        for ssrc in self.sources:
            _check("BYE SSRC", ssrc, 32)
        if self.reason is not None and len(self.reason) > 255:
            raise RtpError("RTCP BYE reason longer than 255 octets")

    def serialize(self) -> bytes:
        body = b"".join(struct.pack("!I", ssrc) for ssrc in self.sources)
        if self.reason is not None:
            body += _pad_words(bytes([len(self.reason)]) + self.reason)
        return _packet(RTCP_BYE, len(self.sources), body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye


def _parse_reports(body: bytes, pos: int, count: int, name: str) -> tuple[tuple[ReportBlock, ...], int]:
    end = pos + count * _BLOCK.size
    if end > len(body):
        raise RtpError(f"RTCP {name} announces {count} report blocks that do not fit in {len(body)} bytes")
    if (len(body) - end) % 4:  # padding that is not a whole number of words cut into the extension
        raise RtpError(f"RTCP {name} profile extension of {len(body) - end} bytes is not a whole number of words")
    return tuple(ReportBlock._parse(body, pos + i * _BLOCK.size) for i in range(count)), end


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks: list[SdesChunk] = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(body):
            raise RtpError("RTCP SDES chunk is truncated")
        (ssrc,) = struct.unpack_from("!I", body, pos)
        pos += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if pos >= len(body):
                raise RtpError("RTCP SDES chunk has no terminating null item")
            kind = body[pos]
            if kind == SDES_END:
                pos += 1
                pos += -pos % 4  # skip to the next word boundary
                break
            if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
                raise RtpError("RTCP SDES item is truncated")
            length = body[pos + 1]
            items.append((kind, bytes(body[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def _parse_bye(body: bytes, count: int) -> Bye:
    end = 4 * count
    if end > len(body):
        raise RtpError(f"RTCP BYE announces {count} sources that do not fit in {len(body)} bytes")
    sources = struct.unpack_from(f"!{count}I", body)
    reason = None
    if end < len(body):
        length = body[end]
        if end + 1 + length > len(body):
            raise RtpError("RTCP BYE reason is truncated")
        reason = bytes(body[end + 1 : end + 1 + length])
    return Bye(tuple(sources), reason)


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram (RFC 3550 §6.1); SR, RR, SDES and BYE in order, others skipped."""
    if not data:
        raise RtpError("RTCP datagram is empty")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if pos + _HEADER.size > len(data):
            raise RtpError(f"RTCP packet is truncated: {len(data) - pos} bytes left, the header needs 4")
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != RTCP_VERSION:
            raise RtpError(f"RTCP packet has bad version {first >> 6}")
        end = pos + 4 * (words + 1)
        if end > len(data):
            raise RtpError(f"RTCP packet length {4 * (words + 1)} runs past the datagram ({len(data) - pos} left)")
        body = data[pos + 4 : end]
        if first & 0x20:  # RFC 3550 §6.4.1: padding only on the last packet of a compound
            if end != len(data):
                raise RtpError("RTCP padding on a packet that is not the last of the compound")
            count = body[-1] if body else 0
            if count == 0 or count > len(body):
                raise RtpError(f"RTCP packet has bad padding length {count}")
            body = body[:-count]
        count = first & 0x1F
        if packet_type == RTCP_SR:
            if len(body) < _SENDER_INFO.size:
                raise RtpError("RTCP SR is truncated: no room for the sender info")
            ssrc, ntp, rtp_ts, packets_sent, octets = _SENDER_INFO.unpack_from(body)
            reports, rest = _parse_reports(body, _SENDER_INFO.size, count, "SR")
            packets.append(
                SenderReport(
                    ssrc=ssrc,
                    ntp_timestamp=ntp,
                    rtp_timestamp=rtp_ts,
                    packet_count=packets_sent,
                    octet_count=octets,
                    reports=reports,
                    extension=bytes(body[rest:]),
                )
            )
        elif packet_type == RTCP_RR:
            if len(body) < 4:
                raise RtpError("RTCP RR is truncated: no room for the SSRC")
            reports, rest = _parse_reports(body, 4, count, "RR")
            packets.append(
                ReceiverReport(ssrc=struct.unpack_from("!I", body)[0], reports=reports, extension=bytes(body[rest:]))
            )
        elif packet_type == RTCP_SDES:
            packets.append(_parse_sdes(body, count))
        elif packet_type == RTCP_BYE:
            packets.append(_parse_bye(body, count))
        pos = end
    return packets


def serialize_compound(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """The datagram holding ``packets`` in order (no padding)."""
    return b"".join(packet.serialize() for packet in packets)


def ntp_timestamp(wallclock: float) -> int:
    """Unix time in seconds to the 64-bit NTP timestamp format (RFC 3550 §4)."""
    seconds = int(wallclock // 1) + NTP_EPOCH_OFFSET
    fraction = int((wallclock % 1) * (1 << 32)) & 0xFFFFFFFF
    return ((seconds & 0xFFFFFFFF) << 32) | fraction


def build_report(
    *,
    ssrc: int,
    wallclock: float,
    packets_sent: int = 0,
    octets_sent: int = 0,
    rtp_timestamp: int = 0,
    cname: str | None = None,
    reports: tuple[ReportBlock, ...] = (),
    bye: bool = False,
    reason: str | None = None,
) -> bytes:
    """The compound packet sipcallhunt sends on its RTCP port (RFC 3550 §6.1).

    An SR when ``packets_sent`` > 0, else an RR; then an SDES with the CNAME (default
    ``"<ssrc in hex>@sipcallhunt"``); then a BYE for ``ssrc`` if ``bye``.  ``rtp_timestamp`` is the
    RTP timestamp of the stream at ``wallclock`` (Unix seconds), which the SR pairs with its NTP
    timestamp; counters wrap at 2**32.
    """
    first: RtcpPacket
    if packets_sent > 0:
        first = SenderReport(
            ssrc=ssrc,
            ntp_timestamp=ntp_timestamp(wallclock),
            rtp_timestamp=rtp_timestamp & 0xFFFFFFFF,
            packet_count=packets_sent & 0xFFFFFFFF,
            octet_count=octets_sent & 0xFFFFFFFF,
            reports=reports,
        )
    else:
        first = ReceiverReport(ssrc=ssrc, reports=reports)
    name = cname if cname is not None else f"{ssrc:08x}@sipcallhunt"
    sdes = SourceDescription((SdesChunk(ssrc, ((SDES_CNAME, name.encode("utf-8")[:255]),)),))
    packets: list[RtcpPacket] = [first, sdes]
    if bye:
        packets.append(Bye((ssrc,), reason.encode("utf-8")[:255] if reason is not None else None))
    return serialize_compound(packets)
