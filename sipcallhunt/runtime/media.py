"""The media engine: the one I/O shell around the pure media cores (prompts, players, relay).

Usage (by the call controller)::

    engine = MediaEngine(bind_host, advertise_host, port_min, port_max, media_timeout, on_event)
    await engine.start()
    leg = engine.open_leg(leg_id)            # even RTP port + RTCP on port+1; MediaError if exhausted
    leg.local_port, leg.advertise_host       # for our SDP
    leg.set_remote(host, port, codec, payload_type, dtmf_payload_type, ptime_ms=20)   # after SDP
    leg.play(prompts, loop=False, token=tok) # seamless source switch; PlaybackFinished(leg_id, tok)
    leg.stop_playback()
    leg.detect_inband(True)                  # in-band DTMF → DigitReceived
    leg.send_dtmf("5")                       # RFC 4733, or in-band tones without telephone-event
    engine.bridge(leg_a, leg_b); engine.unbridge(leg_a)
    leg.close()                              # RTCP BYE, LegClosed(leg_id, stats)
    await engine.close()

``on_event`` is called synchronously (from the event loop) with frozen events:
:class:`DigitReceived`, :class:`PlaybackFinished`, :class:`MediaTimeout` (no RTP for
``media_timeout`` seconds since the leg got a remote; 0 disables it) and :class:`LegClosed`
(final :class:`LegStats`).  ``leg.stats()`` gives the counters at any time.

Design (measured by ``benchmarks/relay.py`` and ``benchmarks/pacing.py``):

* **One epoll set for all media sockets**, nested in the asyncio loop: the loop watches only the
  epoll descriptor (``add_reader``) and :meth:`MediaEngine._dispatch` drains every ready socket
  in one tight loop.  A datagram protocol per socket costs an asyncio callback, a ``bytes`` and
  an address tuple per packet; this costs ``recv_into`` a preallocated buffer, an in-place
  header rewrite and one ``send``.  Everything runs on the event-loop thread: no GIL hand-offs,
  no locks, and the call controller's state is never touched from another thread.  The same
  dispatcher also runs without asyncio (:meth:`MediaEngine.run_blocking`) for the relay-only mode.
  Why not a relay thread: with the GIL only one thread runs Python at a time, so a thread adds
  hand-offs (and latency whenever the SIP side holds the GIL) without adding a core; the
  per-packet work is a few µs of Python around two system calls, which one thread does best.
  Why not a relay process: it would add a core, but every bridge, unbridge, latch change and
  DTMF event would cross a process boundary (and sockets would be passed with SCM_RIGHTS), and
  the 2-core machine has only one core to spare for it anyway.  One core relays the goal load
  (1500 calls at 80-95 % of it), so the single-thread design stays; beyond that, run more
  daemons (more extensions) or move the bridged legs to a relay process.
* **Fast path cost** (``benchmarks/relay.py``, 2-vCPU VM): 5.5-7 µs of CPU per relayed packet,
  about two thirds of it in the kernel (``recv_into`` plus a loopback ``send``, which delivers
  the datagram in the sender's context) and 2 µs of Python.  1500 calls (150,000 packets/s each
  way) take 80-95 % of one core; the variants measured at 1000 calls: this design 5.6-5.9 µs per
  packet, the same dispatcher in a bare blocking epoll loop 5.6-6.1 µs (no gain), one asyncio
  datagram protocol per socket 7.1-7.3 µs.  ``connect()``-ed sockets save ~0.8 µs per packet
  over ``recvfrom_into``/``sendto``; polling the epoll set every millisecond instead of waking
  per packet saved nothing measurable.
* **Symmetric RTP with two sockets per RTP port.**  The port is bound (``SO_REUSEPORT``) by a
  wildcard socket that sees packets from any source; once a source is latched (see
  :class:`~sipcallhunt.media.relay.Latch`), a second socket on the same port is ``connect()``-ed
  to it.  Linux delivers a datagram to the connected socket when its source matches (a better
  match than the wildcard), so the latched peer's packets take the fast path — ``recv_into``
  without an address, ``send`` without one — while foreign sources still reach the wildcard
  socket, where they are counted and dropped (or re-latched).  A port is first claimed with an
  exclusive bind, so no other process shares it.
* **One timer for all pacing**: a heap of (due time, leg) re-armed with one ``call_later``; each
  stream's packet n goes out at ``start + n x 20 ms`` (see :mod:`sipcallhunt.media.player`).
  The same heap carries the 20 ms in-band DTMF tick (all legs' frames decoded and handed to the
  detector bank at once) and the housekeeping tick (media timeouts).
* RTCP on port+1 (and RFC 5761 RTCP on the RTP port) is received, parsed and counted; every
  5 s (randomised, RFC 3550 §6.3.1) each leg sends an SR (RR before it has sent) with SDES
  CNAME to where the peer's RTCP comes from (else RTP port + 1), and a BYE when it closes.
* A leg's garbage, a send error or an exception in one leg's handling is counted and logged with
  the leg's id; it never reaches other legs or the loop.

Relay-only mode: :func:`relay_only_main` (``python -m sipcallhunt.media.relay``).
"""

from __future__ import annotations

__all__ = [
    "DigitReceived",
    "LegClosed",
    "LegStats",
    "MediaEngine",
    "MediaEvent",
    "MediaLeg",
    "MediaTimeout",
    "PacingLateness",
    "PlaybackFinished",
    "relay_only_main",
]

import argparse
import asyncio
import collections
import contextlib
import errno
import heapq
import itertools
import logging
import math
import random
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs
import numpy as np

from sipcallhunt.errors import MediaError, RtpError
from sipcallhunt.media import g711, rtcp
from sipcallhunt.media.dtmf import DtmfDigit, Rfc4733Receiver, rfc4733_packets
from sipcallhunt.media.inband import InbandDetectorBank
from sipcallhunt.media.player import IdleMode, OutboundStream
from sipcallhunt.media.prompt import FRAME_SAMPLES, Prompt
from sipcallhunt.media.relay import RTP_HEADER_LEN, SLOW, DropReason, Latch, LatchResult, RelayCounters, RelayPath
from sipcallhunt.media.rtp import RTP_VERSION, RtpPacket, is_rtcp, payload_bounds
from sipcallhunt.records import DtmfMethod

log = logging.getLogger(__name__)

RECV_BUFFER: Final = 65536
TIMER_SLACK: Final = 0.001
"""The event loop's timers have millisecond resolution and may fire up to 1 ms early: whatever is
due within this slack is served then (a packet up to 1 ms early), instead of spinning."""
EVENT_CARRYOVER: Final = 8.0  # a key press seen this recently before a bridge is not relayed
RTCP_INTERVAL: Final = 5.0  # RFC 3550 §6.2: the recommended minimum report interval
HOUSEKEEPING_INTERVAL: Final = 0.05
HOUSEKEEPING_SLICES: Final = 10  # each leg is looked at every 0.5 s, a tenth of them per tick
INBAND_TICK: Final = 0.020
INBAND_MAX_BACKLOG: Final = 8 * FRAME_SAMPLES  # 160 ms of undetected audio per leg at most
DTMF_DURATION_MS: Final = 160
DTMF_TONE_LEVEL: Final = 0.35  # each of the two tones, about -12 dBm0 (Q.24 accepts 0 to -25)
_EPOLL_IN: Final = select.EPOLLIN
LATENESS_BINS_PER_SECOND: Final = 10_000  # pacing lateness histogram: 0.1 ms bins …
LATENESS_BINS: Final = 1001  # … up to 100 ms (the last bin holds everything later)

# kinds of non-fast sockets in the dispatcher
_WILD: Final = 1
_RTCP: Final = 2

# ITU-T Q.23 DTMF frequencies (row, column)
_DTMF_FREQS: Final = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip


# -- events --------------------------------------------------------------------------------


@attrs.frozen
class DigitReceived:
    leg_id: object
    digit: DtmfDigit


@attrs.frozen
class PlaybackFinished:
    leg_id: object
    token: object


@attrs.frozen
class MediaTimeout:
    leg_id: object


@attrs.frozen(kw_only=True)
class LegStats:
    """One leg's counters (RTP unless named RTCP)."""

    leg_id: object
    packets_in: int  # every datagram received on the RTP port, garbage and foreign sources included
    octets_in: int
    packets_out: int  # everything sent: our own stream, spliced DTMF and packets relayed to this leg
    octets_out: int
    relayed_in: int  # received here and forwarded to the bridge partner
    relayed_out: int  # forwarded from the bridge partner to this leg's peer
    dropped: Mapping[str, int]  # by DropReason value
    rtcp_in: int
    rtcp_out: int
    late_skipped: int  # pacing slots skipped because the engine was more than 60 ms late
    latched: tuple[str, int] | None  # the peer's real RTP source address


@attrs.frozen
class PacingLateness:
    """Upper bounds (0.1 ms resolution) of how late stream timers fired, in seconds."""

    packets: int
    p50: float
    p99: float
    max: float


@attrs.frozen
class LegClosed:
    leg_id: object
    stats: LegStats


MediaEvent = DigitReceived | PlaybackFinished | MediaTimeout | LegClosed


def _dtmf_tone(digit: str, codec: str) -> list[bytes]:
    low, high = _DTMF_FREQS[digit]
    samples = DTMF_DURATION_MS * 8
    t = np.arange(samples) / 8000.0
    wave = DTMF_TONE_LEVEL * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
    pcm = np.clip(np.round(wave * 32767), -32768, 32767).astype(np.int16)
    gap = np.zeros(2 * FRAME_SAMPLES, dtype=np.int16)  # 40 ms pause after the digit (Q.24)
    payload = g711.encode(codec, np.concatenate([pcm, gap]))
    return [payload[i : i + FRAME_SAMPLES] for i in range(0, len(payload), FRAME_SAMPLES)]


def _add_stats(totals: collections.Counter[str], stats: LegStats) -> None:
    totals["packets_in"] += stats.packets_in
    totals["packets_out"] += stats.packets_out
    totals["octets_in"] += stats.octets_in
    totals["octets_out"] += stats.octets_out
    totals["relayed"] += stats.relayed_in
    totals["rtcp_in"] += stats.rtcp_in
    totals["rtcp_out"] += stats.rtcp_out
    totals["late_skipped"] += stats.late_skipped
    for reason, n in stats.dropped.items():
        totals[f"dropped_{reason}"] += n


def _new_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    return sock


# -- legs ----------------------------------------------------------------------------------


class MediaLeg:
    """One RTP session (a call leg's audio).  Created by :meth:`MediaEngine.open_leg`."""

    __slots__ = (
        "_conn",
        "_conn_send",
        "_engine",
        "_inband",
        "_inband_buf",
        "_last_event",
        "_last_rx_count",
        "_last_rx_time",
        "_next_rtcp",
        "_partner",
        "_receiver",
        "_relay_send",
        "_rtcp",
        "_rtcp_dest",
        "_rtp",
        "_rx_path",
        "_sched_due",
        "_timed_out",
        "advertise_host",
        "closed",
        "codec",
        "counters",
        "dtmf_payload_type",
        "expect_rtp",
        "latch",
        "leg_id",
        "local_port",
        "payload_type",
        "ptime_ms",
        "relayed_in",
        "relayed_out",
        "rtcp_in",
        "rtcp_out",
        "stream",
    )

    def __init__(
        self,
        engine: MediaEngine,
        leg_id: object,
        *,
        rtp: socket.socket,
        rtcp: socket.socket | None,
        port: int,
        now: float,
    ) -> None:
        self._engine = engine
        self.leg_id = leg_id
        self._rtp = rtp
        self._rtcp = rtcp
        self.local_port = port
        self.advertise_host = engine.advertise_host
        self.latch = Latch(relatch_after=engine.relatch_after)
        self.counters = RelayCounters()  # what this leg received and sent outside a bridge
        self._conn: socket.socket | None = None
        self._conn_send: Callable[[Any], int] | None = None
        self._rx_path: RelayPath | None = None  # packets received here, forwarded to _partner
        self._relay_send: Callable[[Any], int] | None = None  # how _rx_path's output leaves
        self._partner: MediaLeg | None = None
        self.codec: str | None = None
        self.payload_type: int | None = None
        self.dtmf_payload_type: int | None = None
        self.ptime_ms = 20
        self._receiver: Rfc4733Receiver | None = None
        self.stream: OutboundStream | None = None
        self._inband = False
        self._inband_buf = bytearray()
        self._sched_due: float | None = None
        self._last_rx_count = 0
        self._last_rx_time = now
        self._last_event: tuple[int, int, float] | None = None  # (SSRC, timestamp, when) of a telephone-event
        self._timed_out = False
        self.expect_rtp = True  # False while the peer has put us on hold (it sends nothing)
        self._rtcp_dest: tuple[str, int] | None = None
        self.rtcp_in = 0
        self.rtcp_out = 0
        self._next_rtcp = 0.0
        self.relayed_in = 0  # packets received here and forwarded, in bridges that ended
        self.relayed_out = 0  # packets forwarded to here from a partner, in bridges that ended
        self.closed = False

    # -- what the call controller uses ------------------------------------------------------

    def set_remote(  # noqa: PLR0917 - the call controller's positional shape
        self,
        host: str | None,
        port: int | None,
        codec: str,
        payload_type: int,
        dtmf_payload_type: int | None = None,
        ptime_ms: int = 20,
    ) -> None:
        """The negotiated media (from SDP).  ``host``/``port`` None: learn the peer's address from
        its first packet.  May be called again (re-INVITE); the outgoing stream continues."""
        if codec not in g711.CODECS:
            raise MediaError(f"unsupported codec {codec!r}")
        if self.closed:
            raise MediaError(f"media leg {self.leg_id!r} is closed")
        engine = self._engine
        now = engine.clock()
        partner = self._partner
        if partner is not None:  # the relay rules depend on both legs' formats: rebuild them
            engine.unbridge(self)
        address = (host, port) if host is not None and port is not None else None
        if address != self.latch.signalled:
            self.latch.signal(address)
            self._drop_connection()
        self.codec, self.payload_type = codec, payload_type
        if dtmf_payload_type != self.dtmf_payload_type or self._receiver is None:
            self._receiver = Rfc4733Receiver(payload_type=dtmf_payload_type) if dtmf_payload_type is not None else None
        self.dtmf_payload_type = dtmf_payload_type
        self.ptime_ms = ptime_ms
        if self.stream is None:
            self.stream = OutboundStream.create(codec, payload_type, start=now, rng=engine.rng, idle=engine.idle)
        else:
            self.stream.set_format(codec, payload_type)
        self._last_rx_time = now
        self._timed_out = False
        engine._media_changed(self)
        if partner is not None and not partner.closed:
            engine.bridge(self, partner)
        engine._schedule(self)

    def play(self, prompts: Sequence[Prompt], *, loop: bool = False, token: object = None) -> None:
        """Play ``prompts`` (looped when ``loop``) from the next 20 ms slot on, replacing what played."""
        stream = self._need_stream()
        stream.play(prompts, loop=loop, token=token, now=self._engine.clock())
        self._engine._schedule(self)

    def expect_media(self, expected: bool) -> None:
        """Whether the peer is meant to send RTP (False while it holds the call with sendonly/inactive
        SDP): no media timeout while it is not; the timeout counts afresh once it is again."""
        if expected and not self.expect_rtp:
            self._last_rx_time = self._engine.clock()
            self._timed_out = False
        self.expect_rtp = expected

    def stop_playback(self) -> None:
        self._need_stream().stop()
        self._engine._schedule(self)

    def detect_inband(self, enabled: bool) -> None:
        """Feed this leg's received audio to the in-band DTMF detector bank (or stop)."""
        self._engine._set_inband(self, enabled)

    def send_dtmf(self, digit: str) -> None:
        """Send one key: RFC 4733 events when the peer negotiated telephone-event, else tones."""
        stream = self._need_stream()
        engine = self._engine
        now = engine.clock()
        if stream.relaying:
            raise MediaError("cannot send DTMF on a bridged leg")
        if self.dtmf_payload_type is not None:
            position = stream.next_position(now)
            packets = rfc4733_packets(
                digit,
                payload_type=self.dtmf_payload_type,
                ssrc=position.ssrc,
                first_sequence=position.next_seq,
                timestamp=position.timestamp,
                duration_ms=DTMF_DURATION_MS,
                packet_ms=20,
            )
            next_seq = max(p.sequence for _, p in packets) + 1
            stream.splice(position, [(offset, p.serialize()) for offset, p in packets], next_seq=next_seq)
        else:
            if digit not in _DTMF_FREQS:
                raise MediaError(f"{digit!r} is not a DTMF digit")
            stream.insert_audio(_dtmf_tone(digit, stream.codec), now=now)
        engine._schedule(self)

    def stats(self) -> LegStats:
        """Counters of this leg: everything received and sent, bridged or not."""
        c = self.counters
        dropped = {reason.value: n for reason, n in c.dropped.items()}
        packets_in, octets_in = c.packets_in, c.octets_in
        packets_out, octets_out = c.packets_out, c.octets_out
        relayed_in, relayed_out = self.relayed_in, self.relayed_out
        path = self._rx_path  # what we receive and forward (counted in while bridged)
        if path is not None:
            packets_in += path.counters.packets_in
            octets_in += path.counters.octets_in
            relayed_in += path.counters.packets_out
            for reason, n in path.counters.dropped.items():
                dropped[reason.value] = dropped.get(reason.value, 0) + n
        partner = self._partner  # what the partner forwards to us (counted out while bridged)
        if partner is not None and partner._rx_path is not None:
            packets_out += partner._rx_path.counters.packets_out
            octets_out += partner._rx_path.counters.octets_out
            relayed_out += partner._rx_path.counters.packets_out
        if self.latch.foreign:
            dropped[DropReason.FOREIGN_SOURCE.value] = self.latch.foreign
        stream = self.stream
        if stream is not None:
            packets_out += stream.packets_sent
            octets_out += stream.octets_sent
        return LegStats(
            leg_id=self.leg_id,
            packets_in=packets_in,
            octets_in=octets_in,
            packets_out=packets_out,
            octets_out=octets_out,
            relayed_in=relayed_in,
            relayed_out=relayed_out,
            dropped=dropped,
            rtcp_in=self.rtcp_in,
            rtcp_out=self.rtcp_out,
            late_skipped=stream.late_skipped if stream is not None else 0,
            latched=self.latch.latched,
        )

    def close(self) -> None:
        """Send RTCP BYE, release the ports and report :class:`LegClosed`."""
        self._engine._close_leg(self)

    # -- internals ---------------------------------------------------------------------------

    def _need_stream(self) -> OutboundStream:
        if self.closed:
            raise MediaError(f"media leg {self.leg_id!r} is closed")
        if self.stream is None:
            raise MediaError(f"media leg {self.leg_id!r} has no remote yet (set_remote first)")
        return self.stream

    def _send(self, packet: bytes) -> None:
        """Send one of our own packets (paced stream) to the peer."""
        send = self._conn_send
        try:
            if send is not None:
                send(packet)
                return
            destination = self.latch.destination
            if destination is None:
                self.counters.drop(DropReason.NO_DESTINATION)
                return
            self._rtp.sendto(packet, destination)
        except OSError:
            self.counters.drop(DropReason.SEND_FAILED)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._engine._unregister(self._conn)
            self._conn.close()
            self._conn = None
            self._conn_send = None

    def _rx_count(self) -> int:
        """RTP packets accepted from the peer so far (foreign sources do not count)."""
        path = self._rx_path
        accepted = self.counters.packets_in - self.latch.foreign
        return accepted + (path.counters.packets_in if path is not None else 0)


# -- the engine ----------------------------------------------------------------------------


class MediaEngine:
    """All media sockets of the process, one epoll set, one pacing timer (see module docstring)."""

    def __init__(  # noqa: PLR0917 - the daemon's positional shape
        self,
        bind_host: str,
        advertise_host: str,
        port_min: int,
        port_max: int,
        media_timeout: float,
        on_event: Callable[[MediaEvent], None],
        *,
        idle: IdleMode = IdleMode.SILENCE,
        relatch_after: float | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        rtcp_interval: float = RTCP_INTERVAL,
    ) -> None:
        if port_min > port_max:
            raise MediaError(f"empty RTP port range {port_min}-{port_max}")
        self.bind_host = bind_host
        self.advertise_host = advertise_host
        self.port_min = port_min + (port_min & 1)
        self.port_max = port_max
        self.media_timeout = media_timeout
        self.idle = idle
        self.relatch_after = relatch_after
        self.rng = rng if rng is not None else random.SystemRandom()
        self.clock = clock
        self.wallclock = wallclock
        self.rtcp_interval = rtcp_interval
        self._on_event = on_event
        self._legs: dict[object, MediaLeg] = {}
        self._fast: dict[int, MediaLeg] = {}
        self._other: dict[int, tuple[int, MediaLeg]] = {}
        self._epoll: select.epoll | None = None
        self._buf = bytearray(RECV_BUFFER)
        self._mv = memoryview(self._buf)
        self._heap: list[tuple[float, int, MediaLeg | int]] = []
        self._counter = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._next_port = self.port_min
        self._inband_legs: set[MediaLeg] = set()
        self._bank: InbandDetectorBank | None = None
        self._hk_round = 0
        self._lateness = [0] * LATENESS_BINS
        self.errors = 0
        self._closed_totals: collections.Counter[str] = collections.Counter()  # the legs already closed

    # -- life cycle ------------------------------------------------------------------------

    def _open(self) -> None:
        if self._epoll is None:
            self._epoll = select.epoll()
            now = self.clock()
            self._push(now + HOUSEKEEPING_INTERVAL, _HOUSEKEEPING)

    async def start(self) -> None:
        """Start serving in the running event loop."""
        self._open()
        assert self._epoll is not None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._epoll.fileno(), self._on_readable)
        self._arm()

    async def close(self) -> None:
        """Close every leg (BYE, LegClosed) and stop."""
        self._shutdown()

    def _shutdown(self) -> None:
        for leg in list(self._legs.values()):
            self._close_leg(leg)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._epoll is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None

    def run_blocking(self, should_stop: Callable[[], bool]) -> None:
        """Serve without asyncio (same dispatcher and timers) until ``should_stop()``."""
        self._open()
        while not should_stop():
            now = self.clock()
            due = self._heap[0][0] if self._heap else now + 0.1
            self._dispatch(min(0.1, max(0.0, due - now)))
            if self._heap and self._heap[0][0] <= self.clock() + TIMER_SLACK:
                self._run_timers()

    @property
    def legs(self) -> Mapping[object, MediaLeg]:
        return self._legs

    def totals(self) -> collections.Counter[str]:
        """Counters summed over every leg, open and closed: ``packets_in``, ``dropped_<reason>``, …"""
        totals = collections.Counter(self._closed_totals)
        for leg in self._legs.values():
            _add_stats(totals, leg.stats())
        return totals

    def pacing_lateness(self, *, reset: bool = False) -> PacingLateness:
        """How late the pacing timer served the streams (since start or the last reset)."""
        hist = self._lateness
        total = sum(hist)

        def quantile(q: float) -> float:
            target = q * total
            running = 0
            for i, count in enumerate(hist):
                running += count
                if running >= target and count:
                    return (i + 1) / LATENESS_BINS_PER_SECOND
            return 0.0

        last = max((i for i, c in enumerate(hist) if c), default=-1)
        result = PacingLateness(
            packets=total,
            p50=quantile(0.5) if total else 0.0,
            p99=quantile(0.99) if total else 0.0,
            max=(last + 1) / LATENESS_BINS_PER_SECOND,
        )
        if reset:
            self._lateness = [0] * LATENESS_BINS
        return result

    # -- legs ------------------------------------------------------------------------------

    def open_leg(self, leg_id: object, *, port: int | None = None, rtcp: bool = True) -> MediaLeg:
        """A new leg on an even port of the range (or on ``port``), RTCP on port+1 if ``rtcp``."""
        self._open()
        if leg_id in self._legs:
            raise MediaError(f"media leg {leg_id!r} exists already")
        if port is not None:
            try:
                rtp_sock, rtcp_sock = self._bind_pair(port, rtcp)
            except OSError as exc:
                raise MediaError(f"cannot bind RTP port {port} on {self.bind_host}: {exc}") from None
        else:
            span = (self.port_max - self.port_min) // 2 + 1
            for _ in range(span):
                candidate = self._next_port
                self._next_port += 2
                if self._next_port + (1 if rtcp else 0) > self.port_max:
                    self._next_port = self.port_min
                if candidate + (1 if rtcp else 0) > self.port_max:
                    continue
                try:
                    rtp_sock, rtcp_sock = self._bind_pair(candidate, rtcp)
                except OSError:
                    continue
                port = candidate
                break
            else:
                raise MediaError(f"no free RTP port in {self.port_min}-{self.port_max} on {self.bind_host}")
        leg = MediaLeg(self, leg_id, rtp=rtp_sock, rtcp=rtcp_sock, port=port, now=self.clock())
        self._legs[leg_id] = leg
        self._register(rtp_sock, _WILD, leg)
        if rtcp_sock is not None:
            self._register(rtcp_sock, _RTCP, leg)
        return leg

    def _bind_pair(self, port: int, rtcp: bool) -> tuple[socket.socket, socket.socket | None]:
        # Claim the port exclusively first (fails if anybody holds it, with or without
        # SO_REUSEPORT), then bind the wildcard socket with SO_REUSEPORT so that the connected
        # socket can join it once the peer is latched.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtcp_sock: socket.socket | None = None
        try:
            probe.bind((self.bind_host, port))
            if rtcp:
                rtcp_sock = _new_socket()
                rtcp_sock.bind((self.bind_host, port + 1))
        except OSError:
            probe.close()
            if rtcp_sock is not None:
                rtcp_sock.close()
            raise
        probe.close()
        rtp_sock = _new_socket()
        try:
            rtp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            rtp_sock.bind((self.bind_host, port))
        except OSError:
            rtp_sock.close()
            if rtcp_sock is not None:
                rtcp_sock.close()
            raise
        return rtp_sock, rtcp_sock

    def _connect(self, leg: MediaLeg, address: tuple[str, int]) -> None:
        """Latched: open the connected socket for the fast path."""
        leg._drop_connection()
        conn = _new_socket()
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            conn.bind((self.bind_host, leg.local_port))
            conn.connect(address)
        except OSError as exc:
            conn.close()
            log.warning("media leg %r: cannot connect to %s:%d: %s", leg.leg_id, address[0], address[1], exc)
            return
        leg._conn = conn
        leg._conn_send = conn.send
        self._fast[conn.fileno()] = leg
        assert self._epoll is not None
        self._epoll.register(conn.fileno(), _EPOLL_IN)
        self._media_changed(leg)

    def _register(self, sock: socket.socket, kind: int, leg: MediaLeg) -> None:
        assert self._epoll is not None
        self._other[sock.fileno()] = (kind, leg)
        self._epoll.register(sock.fileno(), _EPOLL_IN)

    def _unregister(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd < 0:
            return
        self._fast.pop(fd, None)
        self._other.pop(fd, None)
        if self._epoll is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def _close_leg(self, leg: MediaLeg) -> None:
        if leg.closed:
            return
        if leg._partner is not None:
            self.unbridge(leg)
        try:
            self._send_rtcp(leg, self.clock(), bye=True)
        except Exception:
            self.errors += 1
            log.exception("media leg %r: cannot send RTCP BYE", leg.leg_id)
        stats = leg.stats()
        _add_stats(self._closed_totals, stats)
        leg.closed = True
        self._set_inband(leg, False)
        leg._drop_connection()
        for sock in (leg._rtp, leg._rtcp):
            if sock is not None:
                self._unregister(sock)
                sock.close()
        self._legs.pop(leg.leg_id, None)
        self._emit(LegClosed(leg.leg_id, stats))

    # -- bridging --------------------------------------------------------------------------

    def bridge(self, leg_a: MediaLeg, leg_b: MediaLeg) -> None:
        """Relay RTP both ways between two legs (each must have its remote set)."""
        if leg_a is leg_b:
            raise MediaError("cannot bridge a leg with itself")
        for leg in (leg_a, leg_b):
            if leg.closed or leg.stream is None:
                raise MediaError(f"media leg {leg.leg_id!r} is closed or has no remote")
            if leg._partner is not None:
                self.unbridge(leg)
        now = self.clock()
        for src, dst in ((leg_a, leg_b), (leg_b, leg_a)):
            assert src.codec is not None and src.payload_type is not None
            assert dst.stream is not None and dst.codec is not None and dst.payload_type is not None
            src._rx_path = RelayPath.create(
                dst.stream.start_relay(now),
                in_codec=src.codec,
                in_audio_pt=src.payload_type,
                in_event_pt=src.dtmf_payload_type,
                out_codec=dst.codec,
                out_audio_pt=dst.payload_type,
                out_event_pt=dst.dtmf_payload_type,
            )
            src._partner = dst
            last = src._last_event
            if last is not None and now - last[2] <= EVENT_CARRYOVER:
                # RFC 4733 §2.5.1: a key press pressed before the bridge (the agent's confirm
                # key) continues with updates and end packets: they belong to this leg only.
                src._rx_path.suppressed_event = (last[0], last[1])
        for leg in (leg_a, leg_b):
            self._media_changed(leg)
            self._schedule(leg)

    def unbridge(self, leg: MediaLeg) -> None:
        """End the bridge ``leg`` is in; both streams continue with their own audio/silence."""
        partner = leg._partner
        if partner is None:
            return
        now = self.clock()
        for src, dst in ((leg, partner), (partner, leg)):
            path = src._rx_path
            if path is not None and dst.stream is not None:
                dst.stream.stop_relay(path.position(now), now)
                # keep what went through the bridge in the leg's own counters
                src.counters.packets_in += path.counters.packets_in
                src.counters.octets_in += path.counters.octets_in
                dst.counters.packets_out += path.counters.packets_out
                dst.counters.octets_out += path.counters.octets_out
                src.relayed_in += path.counters.packets_out
                dst.relayed_out += path.counters.packets_out
                for reason, n in path.counters.dropped.items():
                    src.counters.dropped[reason] = src.counters.dropped.get(reason, 0) + n
            src._rx_path = None
            src._relay_send = None
            src._partner = None
        for one in (leg, partner):
            if not one.closed:
                self._schedule(one)

    def _media_changed(self, leg: MediaLeg) -> None:
        """``leg``'s way out changed: update how its bridge partner's packets reach it."""
        partner = leg._partner
        if partner is None:
            return
        send = leg._conn_send
        if send is None:
            destination = leg.latch.destination
            if destination is not None:
                rtp_sendto = leg._rtp.sendto

                def send(data: Any, _sendto: Any = rtp_sendto, _to: tuple[str, int] = destination) -> int:
                    return int(_sendto(data, _to))

        partner._relay_send = send

    # -- receiving -------------------------------------------------------------------------

    def _on_readable(self) -> None:
        self._dispatch(0.0)

    def _dispatch(self, timeout: float) -> None:
        """Handle every ready socket once (the fast path; see the module docstring)."""
        epoll = self._epoll
        if epoll is None:
            return
        events = epoll.poll(timeout)
        if not events:
            return
        now = self.clock()
        fast = self._fast
        buf = self._buf
        mv = self._mv
        for fd, _ in events:
            leg = fast.get(fd)
            try:
                if leg is not None:
                    conn = leg._conn
                    if conn is None:
                        continue
                    n = conn.recv_into(buf)
                    path = leg._rx_path
                    if path is not None:
                        m = path.forward(buf, n, now)
                        if m > 0:
                            send = leg._relay_send
                            if send is not None:
                                try:
                                    send(mv[:m])
                                except OSError:
                                    path.counters.undelivered(DropReason.SEND_FAILED, m)
                            else:
                                path.counters.undelivered(DropReason.NO_DESTINATION, m)
                            continue
                        if m == 0:
                            continue
                    self._slow_rtp(leg, n, now)
                else:
                    self._on_other(fd, now)
            except BlockingIOError:
                pass
            except OSError as exc:
                # e.g. ECONNREFUSED: an ICMP port unreachable for an earlier send on this port
                if leg is not None:
                    leg.counters.drop(DropReason.SEND_FAILED)
                if exc.errno not in (errno.ECONNREFUSED, errno.EAGAIN, errno.ENETUNREACH, errno.EHOSTUNREACH):
                    log.debug("media socket %d: %s", fd, exc)
            except Exception:
                self.errors += 1
                log.exception("media leg %r: error handling a packet", getattr(leg, "leg_id", fd))

    def _on_other(self, fd: int, now: float) -> None:
        entry = self._other.get(fd)
        if entry is None:
            return
        kind, leg = entry
        buf = self._buf
        if kind == _RTCP:
            assert leg._rtcp is not None
            n, address = leg._rtcp.recvfrom_into(buf)
            self._on_rtcp(leg, n, address)
            return
        n, address = leg._rtp.recvfrom_into(buf)
        latch = leg.latch
        if (n < RTP_HEADER_LEN or buf[0] >> 6 != RTP_VERSION) and address not in (latch.latched, latch.signalled):
            # Not RTP (RFC 3550 §A.1) from a source that is neither latched nor in the SDP: it must
            # not (re)latch the leg, or a port scan with garbage would take over a new call's media.
            latch.foreign += 1
            leg.counters.packets_in += 1
            leg.counters.octets_in += n
            return
        result = leg.latch.check(address, now)
        if result is LatchResult.FOREIGN:
            leg.counters.packets_in += 1
            leg.counters.octets_in += n
            return
        if result is LatchResult.LATCHED:
            self._connect(leg, address)
        path = leg._rx_path
        if path is not None:
            m = path.forward(buf, n, now)
            if m != SLOW:
                if m > 0:
                    self._relay_out(leg, path, m)
                return
        self._slow_rtp(leg, n, now)

    def _slow_rtp(self, leg: MediaLeg, n: int, now: float) -> None:
        """A packet from the leg's peer that is not plain relayed audio."""
        buf = self._buf
        path = leg._rx_path
        if path is None:
            leg.counters.packets_in += 1
            leg.counters.octets_in += n
        data = bytes(buf[:n])
        if is_rtcp(data):  # RFC 5761 rtcp-mux: RTCP on the RTP port
            leg.rtcp_in += 1
            return
        try:
            start, stop = payload_bounds(data)
        except RtpError:
            (path.counters if path is not None else leg.counters).drop(DropReason.MALFORMED)
            return
        pt = data[1] & 0x7F
        if leg._receiver is not None and pt == leg.dtmf_payload_type:
            # remember the event before reporting it: the handler may bridge this leg at once,
            # and the rest of this key press must then not reach the other party
            leg._last_event = (int.from_bytes(data[8:12], "big"), int.from_bytes(data[4:8], "big"), now)
            try:
                digits = leg._receiver.receive(RtpPacket.parse(data), now)
            except RtpError:
                digits = []
            for digit in digits:
                self._emit(DigitReceived(leg.leg_id, digit))
        elif pt == leg.payload_type:
            if leg._inband:
                leg._inband_buf += data[start:stop]
                if len(leg._inband_buf) > INBAND_MAX_BACKLOG:
                    del leg._inband_buf[: len(leg._inband_buf) - INBAND_MAX_BACKLOG]
        elif path is None:
            leg.counters.drop(DropReason.UNKNOWN_PAYLOAD_TYPE)
            return
        if path is not None:
            m = path.forward_slow(buf, n, now)
            if m > 0:
                self._relay_out(leg, path, m)

    def _relay_out(self, leg: MediaLeg, path: RelayPath, m: int) -> None:
        """Send the rewritten packet in the receive buffer to ``leg``'s bridge partner."""
        send = leg._relay_send
        if send is None:
            path.counters.undelivered(DropReason.NO_DESTINATION, m)
            return
        try:
            send(self._mv[:m])
        except OSError:
            path.counters.undelivered(DropReason.SEND_FAILED, m)

    def _on_rtcp(self, leg: MediaLeg, n: int, address: tuple[str, int]) -> None:
        # RFC 3550 §6: we count what the peer reports and answer where it sends from; its
        # reports are not used otherwise.
        leg.rtcp_in += 1
        try:
            rtcp.parse_compound(bytes(self._buf[:n]))
        except RtpError:
            leg.counters.drop(DropReason.MALFORMED_RTCP)
            return
        peer = leg.latch.destination
        if leg._rtcp_dest is None or (peer is not None and address[0] == peer[0]):
            leg._rtcp_dest = address

    def _send_rtcp(self, leg: MediaLeg, now: float, *, bye: bool) -> None:
        """RFC 3550 §6.4: an SR (once we have sent) or RR with SDES CNAME; BYE when closing."""
        stream = leg.stream
        if leg._rtcp is None or stream is None:
            return
        destination = leg._rtcp_dest
        if destination is None:
            peer = leg.latch.destination
            if peer is None:
                return
            destination = (peer[0], peer[1] + 1)  # RFC 3550 §11: RTCP on the next port
        stats = leg.stats()
        partner = leg._partner
        if stream.relaying and partner is not None and partner._rx_path is not None:
            timestamp = partner._rx_path.position(now).timestamp
        else:
            timestamp = stream.timestamp_at(now)
        packet = rtcp.build_report(
            ssrc=stream.ssrc,
            wallclock=self.wallclock(),
            packets_sent=stats.packets_out,
            octets_sent=stats.octets_out - RTP_HEADER_LEN * stats.packets_out,  # payload octets
            rtp_timestamp=timestamp,
            bye=bye,
        )
        try:
            leg._rtcp.sendto(packet, destination)
            leg.rtcp_out += 1
        except OSError:
            leg.counters.drop(DropReason.SEND_FAILED)

    # -- timers ----------------------------------------------------------------------------

    def _push(self, due: float, what: MediaLeg | int) -> None:
        heapq.heappush(self._heap, (due, next(self._counter), what))
        if due < self._timer_at:
            self._arm()

    def _schedule(self, leg: MediaLeg) -> None:
        """(Re)plan ``leg``'s next packet after its stream changed."""
        stream = leg.stream
        if leg.closed or stream is None:
            return
        due = stream.next_due()
        if due == leg._sched_due:
            return
        leg._sched_due = due
        if due is not None:
            self._push(due, leg)

    def _arm(self) -> None:
        loop = self._loop
        if loop is None or not self._heap:
            return
        due = self._heap[0][0]
        if self._timer is not None:
            if due >= self._timer_at:
                return
            self._timer.cancel()
        self._timer_at = due
        self._timer = loop.call_later(max(0.0, due - self.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._run_timers()
        self._arm()

    def _run_timers(self) -> None:
        now = self.clock()
        heap = self._heap
        pop = heapq.heappop
        push = heapq.heappush
        counter = self._counter
        lateness = self._lateness
        while heap and heap[0][0] <= now + TIMER_SLACK:
            due, _, what = pop(heap)
            if isinstance(what, MediaLeg):
                leg = what
                if leg.closed or leg._sched_due != due or leg.stream is None:
                    continue
                if now > due:
                    lateness[min(int((now - due) * LATENESS_BINS_PER_SECOND), LATENESS_BINS - 1)] += 1
                else:
                    lateness[0] += 1
                try:
                    stream = leg.stream
                    for packet in stream.pop_due(now if now > due else due):
                        leg._send(packet)
                    finished = stream.take_finished()
                    following = stream.next_due()
                    leg._sched_due = following
                    if following is not None:
                        push(heap, (following, next(counter), leg))
                    for token in finished:
                        self._emit(PlaybackFinished(leg.leg_id, token))
                except Exception:
                    self.errors += 1
                    log.exception("media leg %r: error sending", leg.leg_id)
            elif what == _INBAND:
                self._inband_tick()
                if self._inband_legs:
                    push(heap, (max(due + INBAND_TICK, now), next(counter), _INBAND))
            elif what == _HOUSEKEEPING:
                self._housekeeping(now)
                push(heap, (now + HOUSEKEEPING_INTERVAL, next(counter), _HOUSEKEEPING))
            now = self.clock()

    # -- in-band DTMF ----------------------------------------------------------------------

    def _set_inband(self, leg: MediaLeg, enabled: bool) -> None:
        if enabled and not leg.closed:
            if leg in self._inband_legs:
                return
            bank = self._inband_bank()
            bank.add(leg)
            leg._inband = True
            leg._inband_buf.clear()
            was_idle = not self._inband_legs
            self._inband_legs.add(leg)
            if was_idle:
                self._push(self.clock() + INBAND_TICK, _INBAND)
        elif leg in self._inband_legs:
            self._inband_legs.discard(leg)
            leg._inband = False
            leg._inband_buf.clear()
            self._inband_bank().remove(leg)

    def _inband_bank(self) -> InbandDetectorBank:
        if self._bank is None:
            self._bank = InbandDetectorBank()
        return self._bank

    def _inband_tick(self) -> None:
        """Hand one 20 ms frame of every leg that has one to the detector bank, all at once."""
        for _ in range(INBAND_MAX_BACKLOG // FRAME_SAMPLES):
            keys: list[MediaLeg] = []
            ulaw: list[bytes] = []
            alaw: list[bytes] = []
            alaw_keys: list[MediaLeg] = []
            for leg in self._inband_legs:
                pending = leg._inband_buf
                if len(pending) >= FRAME_SAMPLES:
                    chunk = bytes(pending[:FRAME_SAMPLES])
                    del pending[:FRAME_SAMPLES]
                    if leg.codec == "PCMA":
                        alaw_keys.append(leg)
                        alaw.append(chunk)
                    else:
                        keys.append(leg)
                        ulaw.append(chunk)
            if not keys and not alaw_keys:
                return
            parts = []
            if ulaw:
                parts.append(g711.decode_ulaw(b"".join(ulaw)).reshape(-1, FRAME_SAMPLES))
            if alaw:
                parts.append(g711.decode_alaw(b"".join(alaw)).reshape(-1, FRAME_SAMPLES))
            frames = np.concatenate(parts) if len(parts) > 1 else parts[0]
            try:
                detected = self._inband_bank().process(keys + alaw_keys, frames)
            except Exception:
                self.errors += 1
                log.exception("in-band DTMF detection failed")
                return
            for key, digit, _offset in detected:
                if isinstance(key, MediaLeg) and not key.closed:
                    self._emit(DigitReceived(key.leg_id, DtmfDigit(digit, DtmfMethod.INBAND)))

    # -- housekeeping: media timeout, RTCP -------------------------------------------------

    def _housekeeping(self, now: float) -> None:
        self._hk_round = (self._hk_round + 1) % HOUSEKEEPING_SLICES
        for leg in list(self._legs.values())[self._hk_round :: HOUSEKEEPING_SLICES]:
            if leg.closed:
                continue
            try:
                count = leg._rx_count()
                if count != leg._last_rx_count:
                    leg._last_rx_count = count
                    leg._last_rx_time = now
                elif (
                    self.media_timeout > 0
                    and leg.stream is not None
                    and leg.expect_rtp
                    and not leg._timed_out
                    and now - leg._last_rx_time >= self.media_timeout
                ):
                    leg._timed_out = True
                    self._emit(MediaTimeout(leg.leg_id))
                if leg._rtcp is not None and leg.stream is not None and now >= leg._next_rtcp:
                    if leg._next_rtcp > 0:
                        self._send_rtcp(leg, now, bye=False)
                    # RFC 3550 §6.3.1: randomise the interval to 0.5 … 1.5 times the nominal one
                    leg._next_rtcp = now + self.rtcp_interval * (0.5 + self.rng.random())
            except Exception:
                self.errors += 1
                log.exception("media leg %r: housekeeping failed", leg.leg_id)

    # -- events ----------------------------------------------------------------------------

    def _emit(self, event: MediaEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            self.errors += 1
            log.exception("media event handler failed on %r", event)


_INBAND: Final = 1
_HOUSEKEEPING: Final = 2


# -- relay-only mode -----------------------------------------------------------------------


def _print_counters(engine: MediaEngine, started: float) -> None:
    totals: dict[str, int] = {}
    for leg in engine.legs.values():
        stats = leg.stats()
        for key in ("packets_in", "octets_in", "relayed_in", "relayed_out"):
            totals[key] = totals.get(key, 0) + int(getattr(stats, key))
        for reason, count in stats.dropped.items():
            totals[f"dropped_{reason}"] = totals.get(f"dropped_{reason}", 0) + count
    totals["errors"] = engine.errors
    elapsed = time.monotonic() - started
    print("COUNTERS " + " ".join(f"{k}={v}" for k, v in sorted(totals.items())) + f" seconds={elapsed:.1f}", flush=True)


def relay_only_main(argv: Sequence[str] | None = None) -> int:
    """Relay-only mode: N bridged pairs of legs on ports B+2i / B+2i+1, each side latched to its
    first sender, no RTCP.  Prints READY when bound, its counters on SIGTERM/SIGINT, exits 0."""
    parser = argparse.ArgumentParser(prog="python -m sipcallhunt.media.relay", description=relay_only_main.__doc__)
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--codec", default="PCMU", choices=g711.CODECS)
    parser.add_argument("--dtmf-payload-type", type=int, default=101)
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio", "epoll"),
        default="uvloop",
        help="what waits for the epoll set: uvloop/asyncio (the daemon's way) or a bare epoll loop",
    )
    args = parser.parse_args(argv)
    payload_type = 0 if args.codec == "PCMU" else 8
    engine = MediaEngine(args.host, args.host, 1024, 65535, 0.0, lambda event: None, idle=IdleMode.NOTHING)
    try:
        for i in range(args.sessions):
            a = engine.open_leg(("a", i), port=args.base_port + 2 * i, rtcp=False)
            b = engine.open_leg(("b", i), port=args.base_port + 2 * i + 1, rtcp=False)
            for leg in (a, b):
                leg.set_remote(None, None, args.codec, payload_type, args.dtmf_payload_type)
            engine.bridge(a, b)
    except (OSError, MediaError) as exc:
        print(f"relay: cannot bind: {exc}", file=sys.stderr, flush=True)
        return 1
    started = time.monotonic()
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    if args.loop == "epoll":
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        print(f"READY sessions={args.sessions} base_port={args.base_port} host={args.host} loop=epoll", flush=True)
        engine.run_blocking(lambda: stop)
        _print_counters(engine, started)
        engine._shutdown()
        return 0

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, done.set)
        await engine.start()
        print(
            f"READY sessions={args.sessions} base_port={args.base_port} host={args.host} loop={args.loop}", flush=True
        )
        await done.wait()
        _print_counters(engine, started)
        await engine.close()

    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())
    return 0
