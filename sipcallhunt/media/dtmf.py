"""DTMF digits from RTP telephone-events (RFC 4733) and from SIP INFO bodies.

Theory of operation (RFC 4733 receiver).  A telephone-event is one key press; every packet of
it carries the same RTP timestamp (the start of the event, RFC 4733 §2.3.1), the first one
usually with the marker bit, the updates a growing duration, and the last one the E bit, sent
three times (§2.5.1.4).  Any of them can be lost, duplicated or reordered, so
:class:`Rfc4733Receiver` reports an event exactly once, at the first packet seen of it, keyed on
``(SSRC, timestamp)``: a lost start still yields the digit from an update or an end packet, and a
new timestamp is a new event even for the same digit.  Keys are forgotten ``EVENT_KEY_LIFETIME``
seconds after their last packet (at most ``MAX_EVENT_KEYS`` are kept); the newest forgotten
timestamp of each SSRC is kept as a floor so that a very late duplicate is not reported again.
An event longer than the 16-bit duration field continues in a new segment whose timestamp is the
previous timestamp plus its duration (§2.5.1.3); such a continuation is not a new digit.  Events
0-15 are the DTMF keys (§3.2); flash (16) and every other event are ignored.

The sender side, :func:`rfc4733_packets`, returns the packets of one digit with the offsets at
which the shell sends them: updates every ``packet_ms`` and the final (E) packet three times with
one sequence number.  The shell paces them against its clock.

SIP INFO (not standardised, but universal): ``application/dtmf-relay`` with ``Signal=`` and
``Duration=`` lines, and ``application/dtmf`` with the key alone, parsed by
:func:`parse_info_dtmf`.

Pure module: no I/O, no clock (``now`` is a parameter).
"""

from __future__ import annotations

__all__ = [
    "DTMF_DIGITS",
    "EVENT_KEY_LIFETIME",
    "MAX_EVENT_KEYS",
    "RFC4733_CLOCK_RATE",
    "DtmfDigit",
    "Rfc4733Event",
    "Rfc4733Receiver",
    "parse_info_dtmf",
    "parse_rfc4733_payload",
    "rfc4733_packets",
]

import math
import struct
from typing import Final

import attrs

from sipcallhunt.errors import MediaError, RemoteProtocolError, RtpError
from sipcallhunt.media.rtp import RtpPacket, ts_diff
from sipcallhunt.records import DtmfMethod

DTMF_DIGITS: Final = "0123456789*#ABCD"
"""The 16 DTMF keys; a key's index is its RFC 4733 event code (RFC 4733 §3.2, table 7)."""

RFC4733_CLOCK_RATE: Final = 8000  # RFC 4733 §2.1: telephone-event/8000 unless negotiated otherwise
RFC4733_PAYLOAD_SIZE: Final = 4  # RFC 4733 §2.3: event (8), E R volume (8), duration (16)
RFC4733_MAX_DURATION: Final = 0xFFFF  # RFC 4733 §2.5.1.3: longer events continue in a new segment
RFC4733_END_REPEATS: Final = 3  # RFC 4733 §2.5.1.4: the final packet is sent three times

EVENT_KEY_LIFETIME: Final = 5.0
"""Seconds an event key is remembered after its last packet (far beyond any jitter buffer)."""
MAX_EVENT_KEYS: Final = 64
"""At most this many event keys are remembered per receiver (bounded memory)."""
_MAX_SSRCS: Final = 16
_STALE_WINDOW_SECONDS: Final = 60.0  # a timestamp this far behind an SSRC's floor is a restart, not a late packet
_SWEEP_INTERVAL: Final = 1.0
_LONG_SEGMENT_MIN: Final = 0x8000  # a segment this long may be continued by the next one (§2.5.1.3)

_EVENT: Final = struct.Struct("!BBH")


@attrs.frozen
class DtmfDigit:
    """One key press: ``digit`` in ``"0123456789*#ABCD"``, how it arrived, its duration in seconds if known."""

    digit: str
    method: DtmfMethod
    duration: float | None = None


@attrs.frozen
class Rfc4733Event:
    """The payload of a telephone-event packet (RFC 4733 §2.3)."""

    event: int
    end: bool
    volume: int
    duration: int  # in timestamp units


def parse_rfc4733_payload(payload: bytes) -> Rfc4733Event:
    """Decode the first event block of a telephone-event payload; :class:`RtpError` when shorter than 4 bytes.

    Further blocks (RFC 2198 redundancy is a separate payload type) are ignored.
    """
    if len(payload) < RFC4733_PAYLOAD_SIZE:
        raise RtpError(f"telephone-event payload has {len(payload)} bytes, needs {RFC4733_PAYLOAD_SIZE}")
    event, flags, duration = _EVENT.unpack_from(payload)
    return Rfc4733Event(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


@attrs.define
class _EventState:
    event: int
    last_seen: float
    duration: int
    ended: bool


@attrs.define(eq=False)
class Rfc4733Receiver:
    """Turns telephone-event packets of one media stream into digits, each exactly once.

    ``payload_type`` is the negotiated ``telephone-event`` payload type; packets of any other
    payload type are ignored (return ``[]``).
    """

    payload_type: int = 101
    clock_rate: int = RFC4733_CLOCK_RATE
    _events: dict[tuple[int, int], _EventState] = attrs.field(factory=dict, init=False)
    _latest: dict[int, int] = attrs.field(factory=dict, init=False)  # SSRC -> timestamp of its newest event
    _floor: dict[int, int] = attrs.field(factory=dict, init=False)  # SSRC -> newest forgotten timestamp
    _next_sweep: float = attrs.field(default=-math.inf, init=False)

    def receive(self, packet: RtpPacket, now: float) -> list[DtmfDigit]:
        """Digits that start with this packet (``[]`` for updates, duplicates and ignored events)."""
        if packet.payload_type != self.payload_type:
            return []
        info = parse_rfc4733_payload(packet.payload)
        if now >= self._next_sweep:
            self._sweep(now)
        ssrc, timestamp = packet.ssrc, packet.timestamp
        key = (ssrc, timestamp)
        state = self._events.get(key)
        if state is not None:
            state.last_seen = now
            state.duration = max(state.duration, info.duration)
            state.ended = state.ended or info.end
            return []
        floor = self._floor.get(ssrc)
        if floor is not None and -_STALE_WINDOW_SECONDS * self.clock_rate <= ts_diff(timestamp, floor) <= 0:
            return []  # a late packet of an event already forgotten
        continuation = self._is_continuation(ssrc, timestamp, info.event)
        self._remember(key, _EventState(info.event, now, info.duration, info.end))
        if continuation or info.event >= len(DTMF_DIGITS):
            return []
        duration = info.duration / self.clock_rate if info.end else None
        return [DtmfDigit(DTMF_DIGITS[info.event], DtmfMethod.RFC4733, duration)]

    def _is_continuation(self, ssrc: int, timestamp: int, event: int) -> bool:
        latest = self._latest.get(ssrc)
        if latest is None:
            return False
        previous = self._events.get((ssrc, latest))
        return (
            previous is not None
            and previous.event == event
            and not previous.ended
            and previous.duration >= _LONG_SEGMENT_MIN
            and ts_diff(timestamp, latest) == previous.duration
        )

    def _remember(self, key: tuple[int, int], state: _EventState) -> None:
        ssrc, timestamp = key
        if len(self._events) >= MAX_EVENT_KEYS:
            oldest = next(iter(self._events))
            self._forget(oldest)
        self._events[key] = state
        latest = self._latest.get(ssrc)
        if latest is None or ts_diff(timestamp, latest) > 0:
            if latest is None and len(self._latest) >= _MAX_SSRCS:
                del self._latest[next(iter(self._latest))]
            self._latest[ssrc] = timestamp

    def _forget(self, key: tuple[int, int]) -> None:
        del self._events[key]
        ssrc, timestamp = key
        floor = self._floor.get(ssrc)
        if floor is None or ts_diff(timestamp, floor) > 0:
            if floor is None and len(self._floor) >= _MAX_SSRCS:
                del self._floor[next(iter(self._floor))]
            self._floor[ssrc] = timestamp

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + _SWEEP_INTERVAL
        expired = [key for key, state in self._events.items() if now - state.last_seen > EVENT_KEY_LIFETIME]
        for key in expired:
            self._forget(key)


def rfc4733_packets(
    digit: str,
    *,
    payload_type: int,
    ssrc: int,
    first_sequence: int,
    timestamp: int,
    duration_ms: int = 160,
    volume: int = 10,
    packet_ms: int = 20,
    clock_rate: int = RFC4733_CLOCK_RATE,
) -> list[tuple[float, RtpPacket]]:
    """The packets of one key press, each with its send offset in seconds from the first.

    ``ceil(duration_ms / packet_ms)`` sequence numbers are used, from ``first_sequence`` (modulo
    2**16): updates every ``packet_ms`` with the duration so far, the first with the marker bit
    (RFC 4733 §2.5.1.2), then the final packet with the E bit and the full duration three times
    with one sequence number, ``packet_ms`` apart (§2.5.1.4).  ``volume`` is the power level in
    -dBm0 (0..63).  The next free sequence number is ``first_sequence + ceil(duration_ms / packet_ms)``.
    """
    if len(digit) != 1 or digit not in DTMF_DIGITS:
        raise MediaError(f"{digit!r} is not a DTMF digit")
    if not 0 <= volume <= 63:
        raise MediaError(f"telephone-event volume {volume} out of range 0..63")
    if packet_ms <= 0 or duration_ms <= 0:
        raise MediaError("telephone-event duration and packet time must be positive")
    total = duration_ms * clock_rate // 1000
    if total > RFC4733_MAX_DURATION:
        raise MediaError(f"telephone-event duration {duration_ms} ms exceeds one segment")
    step = packet_ms * clock_rate // 1000
    count = max(1, math.ceil(duration_ms / packet_ms))
    event = DTMF_DIGITS.index(digit)
    out: list[tuple[float, RtpPacket]] = []
    for index in range(count + RFC4733_END_REPEATS - 1):
        end = index >= count - 1
        duration = total if end else (index + 1) * step
        payload = _EVENT.pack(event, (0x80 if end else 0) | volume, duration)
        packet = RtpPacket(
            payload_type=payload_type,
            sequence=(first_sequence + min(index, count - 1)) & 0xFFFF,
            timestamp=timestamp & 0xFFFFFFFF,
            ssrc=ssrc,
            payload=payload,
            marker=index == 0,
        )
        out.append((index * packet_ms / 1000, packet))
    return out


_DTMF_RELAY: Final = "application/dtmf-relay"
_DTMF: Final = "application/dtmf"
_SIGNAL_NUMBERS: Final = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


def _signal(value: str) -> str:
    text = value.strip().upper()
    if len(text) == 1 and text in DTMF_DIGITS:
        return text
    if text in _SIGNAL_NUMBERS:
        return _SIGNAL_NUMBERS[text]
    raise RemoteProtocolError(f"DTMF INFO signal {value.strip()[:20]!r} is not a DTMF key")


def parse_info_dtmf(content_type: str | None, body: bytes) -> DtmfDigit | None:
    """The digit in a SIP INFO body, or None when ``content_type`` is not a DTMF type.

    ``application/dtmf-relay``: ``Signal=5`` (0-9, ``*``, ``#``, A-D, or 10-15 for ``*#ABCD``) and
    an optional ``Duration=160`` in milliseconds, one per line, other lines ignored.
    ``application/dtmf``: the key alone.  A DTMF content type with a body that holds no key
    raises :class:`RemoteProtocolError` (answered 400).
    """
    if content_type is None:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in (_DTMF_RELAY, _DTMF):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(f"{media_type} body is not text") from None
    if media_type == _DTMF:
        return DtmfDigit(_signal(text), DtmfMethod.INFO, None)
    signal: str | None = None
    duration: float | None = None
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            if line.strip():
                raise RemoteProtocolError(f"{media_type} body line {line.strip()[:40]!r} is not name=value")
            continue
        name = name.strip().lower()
        if name == "signal":
            if signal is not None:
                raise RemoteProtocolError(f"{media_type} body has more than one Signal")
            signal = _signal(value)
        elif name == "duration":
            number = value.strip()
            if number.startswith("-") and number[1:].isascii() and number[1:].isdigit():
                raise RemoteProtocolError(f"{media_type} Duration {number[:20]} is negative")
            # ASCII digits, at most 8 of them: int() alone takes '١٢' and '1_0', and a
            # 400-digit number overflows the float division below.
            if not (number.isascii() and number.isdigit() and len(number) <= 8):
                raise RemoteProtocolError(f"{media_type} Duration {number[:20]!r} is not a number")
            millis = int(number)
            duration = millis / 1000
    if signal is None:
        raise RemoteProtocolError(f"{media_type} body has no Signal")
    return DtmfDigit(signal, DtmfMethod.INFO, duration)
