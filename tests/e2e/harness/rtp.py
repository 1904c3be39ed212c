"""RTP for the test bed: packets, RFC 4733 events, and a recording/sending UDP endpoint.

:class:`RtpEndpoint` stands in for a phone's media side when the signalling peer (sipp) cannot
record: point the SDP of a sipp scenario at it (``rtp_ip``/``rtp_port``) and it records every
packet it gets; it can also send a stream, paced by the packets' own timing.

    with RtpEndpoint("127.0.3.40") as media:
        ...                                   # run a call whose SDP names media.address
        media.wait_for_packets(50, timeout=5)
        assert_tones(media.audio(), present=[440])
        assert media.digits() == "5"
"""

from __future__ import annotations

__all__ = [
    "EVENT_KEYS",
    "PAYLOAD_TYPES",
    "PT_PCMA",
    "PT_PCMU",
    "PT_TELEPHONE_EVENT",
    "ReceivedPacket",
    "RtpEndpoint",
    "RtpPacket",
    "TelephoneEvent",
    "audio_from_packets",
    "digits_from_packets",
]

import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import attrs
import numpy as np

from .audio import Samples, decode, silence

RTP_VERSION: Final = 2  # RFC 3550 §5.1
PT_PCMU: Final = 0  # RFC 3551 §6
PT_PCMA: Final = 8
PT_TELEPHONE_EVENT: Final = 101  # dynamic; what sipp's pcaps and most phones use
PAYLOAD_TYPES: Final = {"PCMU": PT_PCMU, "PCMA": PT_PCMA}
EVENT_KEYS: Final = "0123456789*#ABCD"  # RFC 4733 §3.2: events 0-15
_HEADER = struct.Struct("!BBHII")


@attrs.frozen(kw_only=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1); no CSRCs or extensions are written, both are skipped when read."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool = False
    payload: bytes = b""

    def to_bytes(self) -> bytes:
        return (
            _HEADER.pack(
                RTP_VERSION << 6,
                (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
            + self.payload
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RtpPacket:
        if len(data) < _HEADER.size:
            raise ValueError(f"RTP packet too short ({len(data)} bytes)")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise ValueError(f"not RTP version 2 (first byte {first:#04x})")
        offset = _HEADER.size + 4 * (first & 0x0F)
        if first & 0x10:  # header extension, RFC 3550 §5.3.1
            if len(data) < offset + 4:
                raise ValueError("RTP header extension truncated")
            offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
        end = len(data)
        if first & 0x20:  # padding: the last byte counts the padding bytes
            end -= data[-1]
        if offset > end:
            raise ValueError("RTP packet truncated")
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            marker=bool(second & 0x80),
            payload=bytes(data[offset:end]),
        )


@attrs.frozen(kw_only=True)
class TelephoneEvent:
    """An RFC 4733 §2.3 named-event payload."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @property
    def key(self) -> str | None:
        return EVENT_KEYS[self.event] if 0 <= self.event < len(EVENT_KEYS) else None

    def to_bytes(self) -> bytes:
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration)

    @classmethod
    def from_bytes(cls, data: bytes) -> TelephoneEvent:
        if len(data) < 4:
            raise ValueError(f"telephone-event payload too short ({len(data)} bytes)")
        event, flags, duration = struct.unpack_from("!BBH", data)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


def _ordered(packets: Iterable[RtpPacket]) -> list[RtpPacket]:
    """Sort by extended sequence number (wrap-around aware), dropping duplicates."""
    by_extended: dict[int, RtpPacket] = {}
    highest: int | None = None
    for packet in packets:
        if highest is None:
            extended = packet.sequence
        else:  # RFC 3550 Appendix A.1: the nearest extension of the highest number seen
            delta = (packet.sequence - highest + 0x8000) % 0x10000 - 0x8000
            extended = highest + delta
        highest = extended if highest is None else max(highest, extended)
        by_extended.setdefault(extended, packet)
    return [by_extended[k] for k in sorted(by_extended)]


def audio_from_packets(packets: Iterable[RtpPacket], *, fill_gaps: bool = True) -> Samples:
    """Decode the PCMU/PCMA packets in sequence order; a missing packet becomes silence."""
    parts: list[Samples] = []
    previous: RtpPacket | None = None
    for packet in _ordered(p for p in packets if p.payload_type in (PT_PCMU, PT_PCMA)):
        if fill_gaps and previous is not None:
            gap = (packet.timestamp - previous.timestamp) % 0x1_0000_0000 - len(previous.payload)
            if 0 < gap <= 8000 * 5:
                parts.append(silence(gap / 8000))
        codec = "PCMU" if packet.payload_type == PT_PCMU else "PCMA"
        parts.append(decode(codec, packet.payload))
        previous = packet
    return np.concatenate(parts) if parts else silence(0)


def digits_from_packets(packets: Iterable[RtpPacket], *, event_pt: int | None = None) -> str:
    """The RFC 4733 digits, each once per (SSRC, timestamp), in order of first arrival.

    ``event_pt`` None accepts the usual dynamic types (96-127) carrying 4-byte payloads.
    """
    seen: set[tuple[int, int]] = set()
    keys = []
    for packet in packets:
        if event_pt is None:
            if not 96 <= packet.payload_type <= 127 or len(packet.payload) != 4:
                continue
        elif packet.payload_type != event_pt:
            continue
        event = TelephoneEvent.from_bytes(packet.payload)
        ident = (packet.ssrc, packet.timestamp)
        if ident in seen or event.key is None:
            continue
        seen.add(ident)
        keys.append(event.key)
    return "".join(keys)


@attrs.frozen
class ReceivedPacket:
    time: float  # time.monotonic() at arrival
    source: tuple[str, int]
    packet: RtpPacket


@attrs.define(eq=False)
class RtpEndpoint:
    """A UDP socket that records every RTP packet it gets and can send a paced stream."""

    host: str
    port: int = 0
    _sock: socket.socket | None = attrs.field(default=None, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _stop: threading.Event = attrs.field(factory=threading.Event, init=False)
    _lock: threading.Condition = attrs.field(factory=threading.Condition, init=False)
    _received: list[ReceivedPacket] = attrs.field(factory=list, init=False)
    _senders: list[threading.Thread] = attrs.field(factory=list, init=False)
    malformed: int = attrs.field(default=0, init=False)

    def start(self) -> RtpEndpoint:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread = threading.Thread(target=self._receive_loop, name=f"rtp-{self.host}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        for sender in self._senders:
            sender.join(5.0)
        if self._thread is not None:
            self._thread.join(5.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> RtpEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def _receive_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.05)
            if not ready:
                continue
            try:
                data, source = sock.recvfrom(65535)
            except OSError:
                continue
            try:
                packet = RtpPacket.from_bytes(data)
            except ValueError:
                self.malformed += 1
                continue
            with self._lock:
                self._received.append(ReceivedPacket(time.monotonic(), source, packet))
                self._lock.notify_all()

    # --- what arrived -------------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedPacket]:
        with self._lock:
            return list(self._received)

    def packets(self) -> list[RtpPacket]:
        return [r.packet for r in self.received]

    def sources(self) -> set[tuple[str, int]]:
        return {r.source for r in self.received}

    def audio(self) -> Samples:
        """The received PCMU/PCMA audio, decoded in sequence order."""
        return audio_from_packets(self.packets())

    def digits(self, *, event_pt: int | None = None) -> str:
        """The RFC 4733 digits received."""
        return digits_from_packets(self.packets(), event_pt=event_pt)

    def wait_until(self, check: Callable[[list[ReceivedPacket]], bool], *, timeout: float, what: str = "RTP") -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not check(self._received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"timed out after {timeout:.1f} s waiting for {what} at {self.host}:{self.port} "
                        f"({len(self._received)} packets so far)"
                    )
                self._lock.wait(min(left, 0.1))

    def wait_for_packets(self, count: int, *, timeout: float) -> None:
        self.wait_until(lambda r: len(r) >= count, timeout=timeout, what=f"{count} RTP packets")

    def wait_for_digits(self, digits: str, *, timeout: float) -> None:
        self.wait_until(
            lambda r: digits_from_packets(p.packet for p in r).startswith(digits),
            timeout=timeout,
            what=f"RFC 4733 digits {digits!r}",
        )

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    # --- sending ------------------------------------------------------------------------------

    def send(self, packets: Sequence[tuple[float, RtpPacket]], to: tuple[str, int]) -> threading.Thread:
        """Send ``(offset seconds, packet)`` pairs to ``to`` from this socket, paced against the start
        time (not by sleeping a fixed interval); runs in a thread, which is returned."""
        sock = self._sock
        if sock is None:
            raise RuntimeError("endpoint not started")

        def run() -> None:
            start = time.monotonic()
            for offset, packet in packets:
                delay = start + offset - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                sock.sendto(packet.to_bytes(), to)

        thread = threading.Thread(target=run, name=f"rtp-send-{self.port}", daemon=True)
        self._senders.append(thread)
        thread.start()
        return thread
