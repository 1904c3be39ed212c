"""RTP relay rules: latching, source checking, stream rewriting, payload mapping, counters.

Theory of operation
-------------------
The media shell receives one datagram at a time and asks the objects here what to do with it;
nothing in this module touches a socket or reads a clock (``now`` is an argument).

* :class:`Latch` — symmetric RTP (RFC 4961; the "latching" of RFC 7362 §4): the address a
  peer's packets really come from is learnt from the first packet, because many endpoints
  (baresip among them) send from another address than their SDP says.  Before latching any
  source is accepted and latched; after latching only the latched source is accepted, except
  the address signalled in SDP, which always wins (re-latch), and any port of the signalled
  host while the latch is on another host (a phone that sends from another port than its SDP
  says takes its media back from a stranger who won the race for the first packet), and — if
  ``relatch_after`` is set — any source once the latched one has been silent that long (a peer
  whose NAT binding or port changed).  Everything else is dropped and counted as a foreign source.

* :class:`RelayPath` — the per-packet rewrite from one leg to the other, called once per packet
  on the fast path.  The receiver of a leg must see ONE stream (RFC 3550 §8: one SSRC per
  source; §5.1: sequence numbers and timestamps continue), even though the audio came first
  from our prompts and then from the other party, so the path rewrites SSRC, sequence number
  and timestamp by fixed deltas computed from the outgoing stream's :class:`StreamPosition`
  when the bridge starts and again whenever the incoming SSRC changes.  The first packet after
  each such switch carries the marker bit (a new talkspurt, RFC 3551 §4.1).  The audio payload
  type is mapped between the legs' negotiated numbers, PCMU↔PCMA is transcoded with one
  ``bytes.translate`` (ITU-T G.711 tables), and telephone-events (RFC 4733 §2.1) are mapped to
  the other leg's negotiated telephone-event payload type; the rest of a key press that began
  before the bridge (``suppressed_event``: the agent's confirm key) is not relayed.

* :class:`RelayCounters` — what went through and what was dropped, by :class:`DropReason`.
  Garbage never raises: it is dropped and counted.

Fast path contract: :meth:`RelayPath.forward` works in place on the receive buffer and returns
the number of bytes to send (``> 0``), :data:`DROP` (``0``, dropped and counted) or
:data:`SLOW` (``-1``: not a plain audio packet the path can forward alone; the shell hands it
to its slow path, which may call :meth:`RelayPath.forward_event`).

The relay-only mode (``python -m sipcallhunt.media.relay --base-port B --sessions N``, this
package's ``__main__``) runs the production media engine with N bridged pairs of legs; the engine
lives in :mod:`sipcallhunt.runtime.media`, the only media module that does I/O.
"""

from __future__ import annotations

__all__ = [
    "DROP",
    "RTP_HEADER_LEN",
    "RTP_VERSION",
    "SLOW",
    "Address",
    "DropReason",
    "Latch",
    "LatchResult",
    "RelayCounters",
    "RelayPath",
    "StreamPosition",
]

import enum
import struct
from typing import Final

import attrs

from sipcallhunt.errors import RtpError
from sipcallhunt.media.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW
from sipcallhunt.media.rtp import payload_bounds

Address = tuple[str, int]

RTP_VERSION: Final = 2  # RFC 3550 §5.1
RTP_HEADER_LEN: Final = 12  # RFC 3550 §5.1: fixed header without CSRCs
RTP_CLOCK_RATE: Final = 8000  # RFC 3551 §4.5.14: PCMU/PCMA; RFC 4733 §2.1 uses the audio clock
_FRAME_TICKS: Final = 160  # one 20 ms G.711 frame, RFC 3551 §4.5
_SEQ_MOD: Final = 1 << 16
_TS_MOD: Final = 1 << 32
_SEQ_MASK: Final = _SEQ_MOD - 1
_TS_MASK: Final = _TS_MOD - 1
_MARKER: Final = 0x80
_PLAIN_FIRST_BYTE: Final = 0x80  # V=2, P=0, X=0, CC=0

DROP: Final = 0
SLOW: Final = -1

_SEQ_TS_SSRC: Final = struct.Struct("!HII")  # RFC 3550 §5.1: bytes 2..11


class DropReason(enum.Enum):
    MALFORMED = "malformed"  # not an RTP packet (RFC 3550 §5.1 / A.1 validity checks)
    MALFORMED_RTCP = "malformed_rtcp"  # an RTCP datagram that does not parse (RFC 3550 §6.1)
    FOREIGN_SOURCE = "foreign_source"  # not from the latched/signalled address
    UNKNOWN_PAYLOAD_TYPE = "unknown_payload_type"  # neither the negotiated audio nor event PT
    NO_EVENT_PAYLOAD_TYPE = "no_event_payload_type"  # telephone-event but the other leg has none
    EVENT_BEFORE_BRIDGE = "event_before_bridge"  # the rest of a key press that began before the bridge
    NO_DESTINATION = "no_destination"  # the other leg has no address to send to yet
    SEND_FAILED = "send_failed"  # the kernel refused the datagram


@attrs.define(eq=False)
class RelayCounters:
    """Packets and octets in and out, and drops by reason."""

    packets_in: int = 0
    octets_in: int = 0
    packets_out: int = 0
    octets_out: int = 0
    dropped: dict[DropReason, int] = attrs.field(factory=dict)

    def drop(self, reason: DropReason) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def undelivered(self, reason: DropReason, octets: int) -> None:
        """A packet counted out by :meth:`RelayPath.forward` that the shell could not send."""
        self.packets_out -= 1
        self.octets_out -= octets
        self.drop(reason)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, int]:
        out = {
            "packets_in": self.packets_in,
            "octets_in": self.octets_in,
            "packets_out": self.packets_out,
            "octets_out": self.octets_out,
        }
        for reason in DropReason:
            out[f"dropped_{reason.value}"] = self.dropped.get(reason, 0)
        return out


class LatchResult(enum.Enum):
    ACCEPT = "accept"  # from the latched source
    LATCHED = "latched"  # accepted, and the latched address changed to this source
    FOREIGN = "foreign"  # dropped


@attrs.define(eq=False)
class Latch:
    """Symmetric-RTP latching for one local port (see the module docstring for the rule)."""

    signalled: Address | None = None
    relatch_after: float | None = None
    latched: Address | None = None
    last_seen: float = 0.0
    foreign: int = 0

    def check(self, source: Address, now: float) -> LatchResult:
        if source == self.latched:
            self.last_seen = now
            return LatchResult.ACCEPT
        signalled = self.signalled
        if (
            self.latched is None
            or source == signalled
            or (signalled is not None and source[0] == signalled[0] != self.latched[0])
            or (self.relatch_after is not None and now - self.last_seen >= self.relatch_after)
        ):
            self.latched = source
            self.last_seen = now
            return LatchResult.LATCHED
        self.foreign += 1
        return LatchResult.FOREIGN

    def signal(self, address: Address | None) -> None:
        """The peer's SDP address changed (a re-INVITE): forget the old latch."""
        if address != self.signalled:
            self.signalled = address
            self.latched = None

    @property
    def destination(self) -> Address | None:
        """Where to send to this peer: the latched source, else the signalled address."""
        return self.latched if self.latched is not None else self.signalled


@attrs.frozen
class StreamPosition:
    """Where an outgoing RTP stream stands: its SSRC, the next sequence number to use, and the
    RTP timestamp that belongs to the wall-clock instant ``time``."""

    ssrc: int
    next_seq: int
    timestamp: int
    time: float


@attrs.define(eq=False, slots=True)
class RelayPath:
    """Forwarding rules for the packets one leg receives and the other leg sends.

    ``in_*`` are the receiving leg's negotiated payload types, ``out_*`` the sending leg's;
    ``translate`` is the G.711 table when the codecs differ.  Create it with :meth:`create`
    from the sending leg's :class:`StreamPosition`; when the bridge ends, :meth:`position`
    tells the sending leg's player where the stream stands.
    """

    in_audio_pt: int
    out_audio_pt: int
    in_event_pt: int | None
    out_event_pt: int | None
    translate: bytes | None
    ssrc: int
    next_seq: int
    last_ts: int
    last_time: float
    in_ssrc: int = -1
    seq_delta: int = 0
    ts_delta: int = 0
    counters: RelayCounters = attrs.field(factory=RelayCounters)
    suppressed_event: tuple[int, int] | None = None  # (SSRC, timestamp) of an event not to relay

    @classmethod
    def create(
        cls,
        position: StreamPosition,
        *,
        in_codec: str,
        in_audio_pt: int,
        in_event_pt: int | None,
        out_codec: str,
        out_audio_pt: int,
        out_event_pt: int | None,
    ) -> RelayPath:
        translate: bytes | None = None
        if in_codec != out_codec:
            if (in_codec, out_codec) == ("PCMU", "PCMA"):
                translate = ULAW_TO_ALAW
            elif (in_codec, out_codec) == ("PCMA", "PCMU"):
                translate = ALAW_TO_ULAW
            else:
                raise ValueError(f"cannot relay {in_codec} to {out_codec}")
        return cls(
            in_audio_pt=in_audio_pt,
            out_audio_pt=out_audio_pt,
            in_event_pt=in_event_pt,
            out_event_pt=out_event_pt,
            translate=translate,
            ssrc=position.ssrc,
            next_seq=position.next_seq,
            # the packet that would be sent at position.time carries position.timestamp; a
            # relayed packet arriving then must get it, so "last" is one 20 ms frame before.
            last_ts=(position.timestamp - _FRAME_TICKS) & _TS_MASK,
            last_time=position.time - 0.020,
        )

    def position(self, now: float) -> StreamPosition:
        """The stream's position at ``now``, for the sending leg's player to continue from.

        The timestamp is at least one frame after the last packet's, so that audio sent next
        never overlaps it, however soon it follows."""
        elapsed = max(_FRAME_TICKS, round((now - self.last_time) * RTP_CLOCK_RATE))
        return StreamPosition(self.ssrc, self.next_seq, (self.last_ts + elapsed) & _TS_MASK, now)

    def _resync(self, in_ssrc: int, in_seq: int, in_ts: int, now: float) -> None:
        # A new source (the bridge's first packet, or the peer changed SSRC): continue our
        # sequence numbers and advance our timestamp by the wall-clock time since our last packet
        # (RFC 3550 §5.1: the timestamp reflects the sampling instant), and by at least the
        # frame our last packet held, so that the two sources' audio never overlaps.
        elapsed = max(_FRAME_TICKS, round((now - self.last_time) * RTP_CLOCK_RATE))
        self.in_ssrc = in_ssrc
        self.seq_delta = (self.next_seq - in_seq) & _SEQ_MASK
        self.ts_delta = (self.last_ts + elapsed - in_ts) & _TS_MASK

    def _skip_number(self, seq: int, ssrc: int) -> None:
        """A packet dropped on purpose must not leave a gap in our sequence numbers (a receiver
        would count it as lost): the packets after it move down by one.  Its repetitions (RFC 4733
        end packets share a number) and old numbers move nothing."""
        if ssrc != self.in_ssrc:
            return  # no numbering from this source yet: the next packet resynchronises
        would_be = (seq + self.seq_delta) & _SEQ_MASK
        if ((would_be - self.next_seq) & _SEQ_MASK) < 0x8000:
            self.seq_delta = (self.seq_delta - 1) & _SEQ_MASK

    def forward(self, buf: bytearray, n: int, now: float) -> int:
        """Rewrite the packet in ``buf[:n]`` in place for the other leg (fast path)."""
        counters = self.counters
        counters.packets_in += 1
        counters.octets_in += n
        if n <= RTP_HEADER_LEN or buf[0] != _PLAIN_FIRST_BYTE:
            return SLOW  # CSRCs, extension, padding, or garbage: rare, checked by forward_slow
        second = buf[1]
        if (second & 0x7F) != self.in_audio_pt:
            return SLOW
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(buf, 2)
        if ssrc != self.in_ssrc:
            self._resync(ssrc, seq, ts, now)
            second |= _MARKER
        out_seq = (seq + self.seq_delta) & _SEQ_MASK
        out_ts = (ts + self.ts_delta) & _TS_MASK
        buf[1] = (second & _MARKER) | self.out_audio_pt
        _SEQ_TS_SSRC.pack_into(buf, 2, out_seq, out_ts, self.ssrc)
        if self.translate is not None:
            buf[RTP_HEADER_LEN:n] = buf[RTP_HEADER_LEN:n].translate(self.translate)
        if ((out_seq - self.next_seq) & _SEQ_MASK) < 0x8000:  # not an old reordered packet
            self.next_seq = (out_seq + 1) & _SEQ_MASK
            self.last_ts = out_ts
            self.last_time = now
        counters.packets_out += 1
        counters.octets_out += n
        return n

    def forward_slow(self, buf: bytearray, n: int, now: float) -> int:
        """Everything :meth:`forward` returned :data:`SLOW` for: RTP with CSRCs, extension or
        padding, telephone-events, unknown payload types and garbage.  Call it only after
        :meth:`forward` (which counted the packet in)."""
        counters = self.counters
        data = bytes(buf[:n])
        try:
            start, stop = payload_bounds(data)
        except RtpError:
            counters.drop(DropReason.MALFORMED)
            return DROP
        pt = data[1] & 0x7F
        if pt == self.in_audio_pt:
            out_pt = self.out_audio_pt
            table = self.translate
        elif self.in_event_pt is not None and pt == self.in_event_pt:
            if self.out_event_pt is None:
                counters.drop(DropReason.NO_EVENT_PAYLOAD_TYPE)
                return DROP
            if self.suppressed_event is not None and self.suppressed_event == (
                int.from_bytes(data[8:12], "big"),
                int.from_bytes(data[4:8], "big"),
            ):
                counters.drop(DropReason.EVENT_BEFORE_BRIDGE)
                self._skip_number(int.from_bytes(data[2:4], "big"), int.from_bytes(data[8:12], "big"))
                return DROP
            out_pt = self.out_event_pt
            table = None
        else:
            counters.drop(DropReason.UNKNOWN_PAYLOAD_TYPE)
            return DROP
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        marker = data[1] & _MARKER
        if ssrc != self.in_ssrc:
            self._resync(ssrc, seq, ts, now)
            marker = _MARKER
        out_seq = (seq + self.seq_delta) & _SEQ_MASK
        out_ts = (ts + self.ts_delta) & _TS_MASK
        # Drop CSRCs and the extension (they describe the other leg's sources, RFC 3550 §7.1)
        # and padding; keep the payload.
        body = data[start:stop]
        if table is not None:
            body = body.translate(table)
        buf[0] = _PLAIN_FIRST_BYTE
        buf[1] = marker | out_pt
        _SEQ_TS_SSRC.pack_into(buf, 2, out_seq, out_ts, self.ssrc)
        out = RTP_HEADER_LEN + len(body)
        buf[RTP_HEADER_LEN:out] = body
        if ((out_seq - self.next_seq) & _SEQ_MASK) < 0x8000:
            self.next_seq = (out_seq + 1) & _SEQ_MASK
            # A telephone-event keeps the timestamp of its start (RFC 4733 §2.5.1.2): it does
            # not tell where the stream's clock stands, so only audio moves last_ts.
            if pt == self.in_audio_pt:
                self.last_ts = out_ts
                self.last_time = now
        counters.packets_out += 1
        counters.octets_out += out
        return out
