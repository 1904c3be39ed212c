"""The media engine over real loopback sockets (127.0.2.x)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from sipcallhunt.errors import MediaError
from sipcallhunt.media import g711, rtcp, rtp
from sipcallhunt.media.dtmf import Rfc4733Receiver, rfc4733_packets
from sipcallhunt.media.player import IdleMode
from sipcallhunt.media.prompt import FRAME_SAMPLES, Prompt, make_prompt
from sipcallhunt.media.rtp import RtpPacket, seq_diff
from sipcallhunt.records import DtmfMethod
from sipcallhunt.runtime.media import (
    DigitReceived,
    LegClosed,
    MediaEngine,
    MediaEvent,
    MediaLeg,
    MediaTimeout,
    PlaybackFinished,
)

ENGINE_HOST = "127.0.2.10"
PEER_HOST = "127.0.2.11"
OTHER_PEER_HOST = "127.0.2.12"
STRANGER_HOST = "127.0.2.13"
NOWHERE = ("127.0.2.21", 9)  # what a baresip-like peer writes in its SDP; it sends from elsewhere
_ports = itertools.count(41000, 200)


def tone(freq: float, seconds: float, level: float = 0.4) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return level * np.sin(2 * np.pi * freq * t)


def tone_prompt(freq: float, seconds: float) -> Prompt:
    return make_prompt(f"{freq:g} Hz", tone(freq, seconds))


def peak(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * 8000 / len(samples))


class Peer:
    """A test RTP endpoint: a non-blocking UDP socket on its own loopback address."""

    def __init__(self, host: str = PEER_HOST) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.ssrc = 0x5EED0000 + self.address[1]

    def send_to(self, leg: MediaLeg, data: bytes) -> None:
        self.sock.sendto(data, (ENGINE_HOST, leg.local_port))

    async def receive(
        self, seconds: float, *, until: Callable[[list[tuple[float, bytes]]], bool] | None = None
    ) -> list[tuple[float, bytes]]:
        """Everything received within ``seconds`` (or until ``until(got)``), with arrival times."""
        loop = asyncio.get_running_loop()
        got: list[tuple[float, bytes]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                break
            got.append((time.monotonic(), data))
            if until is not None and until(got):
                break
        return got

    async def stream(self, leg: MediaLeg, payloads: list[bytes], *, pt: int = 0, first_seq: int = 100) -> None:
        """Send ``payloads`` as a paced RTP stream to ``leg``."""
        start = time.monotonic()
        for i, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=pt, sequence=first_seq + i, timestamp=8000 + 160 * i, ssrc=self.ssrc, payload=payload
            )
            self.send_to(leg, packet.serialize())
            await asyncio.sleep(max(0.0, start + 0.02 * (i + 1) - time.monotonic()))

    def close(self) -> None:
        self.sock.close()


def frames(codec: str, samples: np.ndarray) -> list[bytes]:
    payload = g711.encode(codec, np.round(samples * 32767).astype(np.int16))
    return [payload[i : i + FRAME_SAMPLES] for i in range(0, len(payload) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]


@pytest.fixture
async def events() -> list[MediaEvent]:
    return []


@contextlib.asynccontextmanager
async def make_engine(events: list[MediaEvent], **kwargs: Any) -> AsyncIterator[MediaEngine]:
    base = next(_ports)
    engine = MediaEngine(
        ENGINE_HOST, ENGINE_HOST, base, base + 199, kwargs.pop("media_timeout", 0.0), events.append, **kwargs
    )
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture
async def engine(events: list[MediaEvent]) -> AsyncIterator[MediaEngine]:
    async with make_engine(events, idle=IdleMode.NOTHING) as e:
        yield e


@pytest.fixture
async def peers() -> AsyncIterator[tuple[Peer, Peer]]:
    a, b = Peer(PEER_HOST), Peer(OTHER_PEER_HOST)
    yield a, b
    a.close()
    b.close()


async def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


# -- playing -------------------------------------------------------------------------------


async def test_a_leg_plays_a_paced_tone(
    engine: MediaEngine, events: list[MediaEvent], peers: tuple[Peer, Peer]
) -> None:
    peer, _ = peers
    leg = engine.open_leg("caller")
    assert leg.local_port % 2 == 0
    assert leg.advertise_host == ENGINE_HOST
    leg.set_remote(*peer.address, "PCMU", 0, 101)
    prompt = tone_prompt(1000, 0.5)
    leg.play([prompt], token="intro")
    got = await peer.receive(2.0, until=lambda g: len(g) >= 25)
    packets = [RtpPacket.parse(d) for _, d in got]
    assert len(packets) == 25
    assert [p.payload for p in packets] == list(prompt.frames("PCMU"))
    assert all(seq_diff(b.sequence, a.sequence) == 1 for a, b in itertools.pairwise(packets))
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    # paced: 24 intervals of 20 ms, not a burst
    span = got[-1][0] - got[0][0]
    assert 0.40 < span < 0.60
    assert peak(g711.decode("PCMU", b"".join(p.payload for p in packets)).astype(float)) == pytest.approx(1000, abs=10)
    assert await wait_for(lambda: PlaybackFinished("caller", "intro") in events, 1.0)
    assert events.count(PlaybackFinished("caller", "intro")) == 1


async def test_comfort_silence_when_idle(events: list[MediaEvent], peers: tuple[Peer, Peer]) -> None:
    peer, _ = peers
    async with make_engine(events, idle=IdleMode.SILENCE) as engine:
        leg = engine.open_leg("x")
        leg.set_remote(*peer.address, "PCMA", 8, None)
        got = await peer.receive(2.0, until=lambda g: len(g) >= 15)
        assert len(got) == 15
        assert 0.2 < got[-1][0] - got[0][0] < 0.5  # paced, about 14 x 20 ms
        packets = [RtpPacket.parse(d) for _, d in got]
        assert {p.payload for p in packets} == {g711.silence("PCMA", 160)}
        assert {p.payload_type for p in packets} == {8}


# -- bridging ------------------------------------------------------------------------------


async def test_bridge_relays_audio_both_ways_with_transcoding_and_latching(
    engine: MediaEngine, peers: tuple[Peer, Peer]
) -> None:
    peer_a, peer_b = peers
    a = engine.open_leg("caller")
    b = engine.open_leg("agent")
    a.set_remote(*peer_a.address, "PCMU", 0, 101)
    b.set_remote(*NOWHERE, "PCMA", 8, None)  # peer_b sends from another address than signalled
    b.play([tone_prompt(300, 0.1)])  # the agent hears a whisper first: same stream continues below
    # let the agent leg latch to peer_b's real address with a first packet
    peer_b.send_to(
        b, RtpPacket(payload_type=8, sequence=1, timestamp=0, ssrc=peer_b.ssrc, payload=b"\xd5" * 160).serialize()
    )
    whisper = await peer_b.receive(0.3, until=lambda g: len(g) >= 5)
    engine.bridge(a, b)
    to_a = asyncio.create_task(peer_a.receive(1.2, until=lambda g: len(g) >= 40))
    to_b = asyncio.create_task(peer_b.receive(1.2, until=lambda g: len(g) >= 40))
    await asyncio.gather(
        peer_a.stream(a, frames("PCMU", tone(500, 1.0)), pt=0),
        peer_b.stream(b, frames("PCMA", tone(1500, 1.0)), pt=8, first_seq=2),
    )
    got_a, got_b = await to_a, await to_b
    pa = [RtpPacket.parse(d) for _, d in got_a]
    pb = [RtpPacket.parse(d) for _, d in got_b]
    assert len(pa) >= 40 and len(pb) >= 40
    assert {p.payload_type for p in pa} == {0}
    assert {p.payload_type for p in pb} == {8}
    assert peak(g711.decode("PCMU", b"".join(p.payload for p in pa[2:])).astype(float)) == pytest.approx(1500, abs=15)
    assert peak(g711.decode("PCMA", b"".join(p.payload for p in pb[2:])).astype(float)) == pytest.approx(500, abs=15)
    # the agent hears ONE stream: the whisper and then the caller, same SSRC, continuous sequence
    stream_b = [RtpPacket.parse(d) for _, d in whisper] + pb
    assert len({p.ssrc for p in stream_b}) == 1
    assert all(seq_diff(y.sequence, x.sequence) == 1 for x, y in itertools.pairwise(stream_b))
    assert b.stats().latched == peer_b.address
    assert a.stats().relayed_in >= 40


async def test_unbridge_continues_the_legs_own_stream(engine: MediaEngine, peers: tuple[Peer, Peer]) -> None:
    peer_a, peer_b = peers
    a, b = engine.open_leg("a"), engine.open_leg("b")
    a.set_remote(*peer_a.address, "PCMU", 0, None)
    b.set_remote(*peer_b.address, "PCMU", 0, None)
    engine.bridge(a, b)
    receiving = asyncio.create_task(peer_a.receive(0.6, until=lambda g: len(g) >= 10))
    await peer_b.stream(b, frames("PCMU", tone(700, 0.2)))
    relayed = await receiving
    engine.unbridge(a)
    a.play([tone_prompt(400, 0.1)])
    after = await peer_a.receive(0.5, until=lambda g: len(g) >= 5)
    stream = [RtpPacket.parse(d) for _, d in relayed + after]
    assert len(stream) == 15
    assert len({p.ssrc for p in stream}) == 1
    assert all(seq_diff(y.sequence, x.sequence) == 1 for x, y in itertools.pairwise(stream))
    assert stream[10].marker
    stats_a, stats_b = a.stats(), b.stats()
    assert stats_a.relayed_out == 10 and stats_a.relayed_in == 0
    assert stats_b.relayed_in == 10 and stats_b.packets_in == 10
    assert stats_a.packets_out == 15


async def test_foreign_source_is_dropped_and_counted(engine: MediaEngine, peers: tuple[Peer, Peer]) -> None:
    peer_a, peer_b = peers
    stranger = Peer(STRANGER_HOST)
    try:
        a, b = engine.open_leg("a"), engine.open_leg("b")
        a.set_remote(*peer_a.address, "PCMU", 0, None)
        b.set_remote(*peer_b.address, "PCMU", 0, None)
        engine.bridge(a, b)
        await peer_a.stream(a, frames("PCMU", tone(500, 0.06)))
        for i in range(7):
            stranger.send_to(
                a, RtpPacket(payload_type=0, sequence=i, timestamp=0, ssrc=9, payload=b"\x00" * 160).serialize()
            )
        got = await peer_b.receive(5.0, until=lambda g: len(g) >= 3)
        got += await peer_b.receive(0.2)
        assert len(got) == 3  # only peer_a's packets went through
        assert await wait_for(lambda: a.stats().dropped.get("foreign_source") == 7, 1.0)
        assert a.stats().latched == peer_a.address
    finally:
        stranger.close()


async def test_garbage_from_a_stranger_does_not_latch_a_fresh_leg(
    engine: MediaEngine, peers: tuple[Peer, Peer]
) -> None:
    """A port scan with garbage reaches a new leg before its peer's first packet: the leg must
    still latch to the peer (who sends from elsewhere than its SDP says), not to the scanner."""
    peer_a, peer_b = peers
    stranger = Peer(STRANGER_HOST)
    try:
        a, b = engine.open_leg("a"), engine.open_leg("b")
        a.set_remote(*peer_a.address, "PCMU", 0, None)
        b.set_remote(*NOWHERE, "PCMU", 0, None)
        engine.bridge(a, b)
        for junk in (b"", b"\x80", b"\x00" * 40, b"\x40" + b"\x00" * 20, b"GET / HTTP/1.1\r\n\r\n"):
            stranger.send_to(b, junk)
        await wait_for(lambda: b.stats().dropped.get("foreign_source") == 5, 1.0)
        assert b.stats().latched is None
        receiving = asyncio.create_task(peer_a.receive(0.6, until=lambda g: len(g) >= 5))
        await peer_b.stream(b, frames("PCMU", tone(700, 0.1)))
        assert len(await receiving) == 5  # the peer's audio goes through
        stats = b.stats()
        assert stats.latched == peer_b.address and stats.dropped.get("foreign_source") == 5
        assert stats.relayed_in == 5
    finally:
        stranger.close()


async def test_garbage_never_hurts_the_leg_or_others(engine: MediaEngine, peers: tuple[Peer, Peer]) -> None:
    peer_a, peer_b = peers
    a, b = engine.open_leg("a"), engine.open_leg("b")
    a.set_remote(*peer_a.address, "PCMU", 0, 101)
    b.set_remote(*peer_b.address, "PCMU", 0, None)
    engine.bridge(a, b)
    for junk in (
        b"",
        b"\x00",
        b"\xff" * 3,
        b"\x80\x00",
        b"\x80" + b"\x65" * 30,
        b"\x90" + b"\x00" * 13,
        bytes(range(256)),
    ):
        peer_a.send_to(a, junk)
    peer_a.send_to(a, RtpPacket(payload_type=101, sequence=1, timestamp=1, ssrc=1, payload=b"\x01").serialize())
    await peer_a.stream(a, frames("PCMU", tone(500, 0.1)))
    got = await peer_b.receive(5.0, until=lambda g: len(g) >= 5)  # the five audio frames (a busy CI may lag)
    got += await peer_b.receive(0.2)  # and nothing else: neither the junk nor the telephone-event
    assert len(got) == 5
    stats = a.stats()
    assert stats.dropped.get("malformed", 0) >= 5
    assert engine.errors == 0


# -- DTMF ----------------------------------------------------------------------------------


async def test_rfc4733_digit_is_reported_once(
    engine: MediaEngine, events: list[MediaEvent], peers: tuple[Peer, Peer]
) -> None:
    peer, _ = peers
    leg = engine.open_leg("caller")
    leg.set_remote(*peer.address, "PCMU", 0, 101)
    packets = rfc4733_packets("7", payload_type=101, ssrc=peer.ssrc, first_sequence=10, timestamp=4000)
    for _, packet in packets:
        data = packet.serialize()
        peer.send_to(leg, data)
        peer.send_to(leg, data)  # duplicated on the way
    assert await wait_for(lambda: any(isinstance(e, DigitReceived) for e in events), 1.0)
    await asyncio.sleep(0.1)
    digits = [e for e in events if isinstance(e, DigitReceived)]
    assert len(digits) == 1
    assert digits[0].leg_id == "caller"
    assert digits[0].digit.digit == "7"
    assert digits[0].digit.method is DtmfMethod.RFC4733


async def test_send_dtmf_as_rfc4733(engine: MediaEngine, peers: tuple[Peer, Peer]) -> None:
    peer, _ = peers
    leg = engine.open_leg("agent")
    leg.set_remote(*peer.address, "PCMU", 0, 101)
    leg.send_dtmf("#")
    got = await peer.receive(0.5, until=lambda g: len(g) >= 10)
    receiver = Rfc4733Receiver(payload_type=101)
    digits = [d for _, data in got for d in receiver.receive(RtpPacket.parse(data), 0.0)]
    assert [d.digit for d in digits] == ["#"]
    assert {RtpPacket.parse(d).payload_type for _, d in got} == {101}


async def test_send_dtmf_falls_back_to_inband_tones(engine: MediaEngine, peers: tuple[Peer, Peer]) -> None:
    peer, _ = peers
    leg = engine.open_leg("agent")
    leg.set_remote(*peer.address, "PCMA", 8, None)
    leg.send_dtmf("5")
    got = await peer.receive(0.6, until=lambda g: len(g) >= 8)
    audio = g711.decode("PCMA", b"".join(RtpPacket.parse(d).payload for _, d in got[:8])).astype(float)
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / 8000)
    strongest = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert strongest[0] == pytest.approx(770, abs=10)
    assert strongest[1] == pytest.approx(1336, abs=10)


# -- timeouts, RTCP, ports -----------------------------------------------------------------


async def test_media_timeout_fires_once_for_a_silent_peer(events: list[MediaEvent], peers: tuple[Peer, Peer]) -> None:
    peer_a, peer_b = peers
    async with make_engine(events, media_timeout=0.5) as engine:
        quiet = engine.open_leg("quiet")
        talking = engine.open_leg("talking")
        idle = engine.open_leg("no-remote")  # never timed out: it has no remote yet
        quiet.set_remote(*peer_a.address, "PCMU", 0, None)
        talking.set_remote(*peer_b.address, "PCMU", 0, None)
        await peer_b.stream(talking, frames("PCMU", tone(500, 1.5)))
        timeouts = [e for e in events if isinstance(e, MediaTimeout)]
        assert timeouts == [MediaTimeout("quiet")]
        assert idle.stats().packets_in == 0


async def test_no_media_timeout_while_the_peer_holds_the_call(
    events: list[MediaEvent], peers: tuple[Peer, Peer]
) -> None:
    peer, _ = peers
    async with make_engine(events, media_timeout=0.4) as engine:
        held = engine.open_leg("held")
        held.set_remote(*peer.address, "PCMU", 0, None)
        held.expect_media(False)  # the peer sent a=inactive: it sends nothing on purpose
        await asyncio.sleep(1.0)
        assert not [e for e in events if isinstance(e, MediaTimeout)]
        held.expect_media(True)  # resumed: silence counts again, from now
        await asyncio.sleep(0.2)
        assert not [e for e in events if isinstance(e, MediaTimeout)]
        await asyncio.sleep(0.8)
        assert [e for e in events if isinstance(e, MediaTimeout)] == [MediaTimeout("held")]


async def test_rtcp_is_received_counted_and_answered(events: list[MediaEvent], peers: tuple[Peer, Peer]) -> None:
    peer, _ = peers
    async with make_engine(events, rtcp_interval=0.2) as engine:
        leg = engine.open_leg("x")
        leg.set_remote(*peer.address, "PCMU", 0, None)
        receiver_report = bytes([0x80, 201, 0, 1]) + (1234).to_bytes(4, "big")
        # the peer sends its RTCP from its RTP socket: our reports go back there
        peer.sock.sendto(receiver_report, (ENGINE_HOST, leg.local_port + 1))
        peer.sock.sendto(b"garbage", (ENGINE_HOST, leg.local_port + 1))
        assert await wait_for(lambda: leg.stats().rtcp_in == 2, 1.0)
        assert leg.stats().dropped.get("malformed_rtcp") == 1
        leg.play([tone_prompt(440, 0.2)])
        got = await peer.receive(1.5, until=lambda g: any(rtp.is_rtcp(d) for _, d in g))
        reports = [rtcp.parse_compound(d) for _, d in got if rtp.is_rtcp(d)]
        ssrc = RtpPacket.parse(next(d for _, d in got if not rtp.is_rtcp(d))).ssrc
        assert reports
        first = reports[0]
        assert isinstance(first[0], rtcp.SenderReport | rtcp.ReceiverReport)
        assert first[0].ssrc == ssrc
        assert isinstance(first[1], rtcp.SourceDescription)
        assert first[1].cname(ssrc)
        leg.close()
        after = await peer.receive(1.0, until=lambda g: any(rtp.is_rtcp(d) for _, d in g))
        bye = [p for _, d in after if rtp.is_rtcp(d) for p in rtcp.parse_compound(d) if isinstance(p, rtcp.Bye)]
        assert bye and ssrc in bye[0].sources
        assert leg.stats().rtcp_out >= 2


async def test_port_range_exhaustion_and_reuse(events: list[MediaEvent]) -> None:
    base = next(_ports)
    engine = MediaEngine(ENGINE_HOST, "192.0.2.1", base, base + 3, 0.0, events.append)
    await engine.start()
    try:
        first = engine.open_leg(1)
        second = engine.open_leg(2)
        assert {first.local_port, second.local_port} == {base, base + 2}
        assert second.advertise_host == "192.0.2.1"
        with pytest.raises(MediaError):
            engine.open_leg(3)
        with pytest.raises(MediaError):
            engine.open_leg(2)  # ids are unique
        first.close()
        assert any(isinstance(e, LegClosed) and e.leg_id == 1 for e in events)
        third = engine.open_leg(3)
        assert third.local_port == first.local_port
    finally:
        await engine.close()
    assert {e.leg_id for e in events if isinstance(e, LegClosed)} == {1, 2, 3}


async def test_using_a_leg_before_it_has_a_remote_is_an_error(engine: MediaEngine) -> None:
    leg = engine.open_leg("x")
    with pytest.raises(MediaError):
        leg.play([tone_prompt(440, 0.1)])
    with pytest.raises(MediaError):
        leg.set_remote("127.0.2.11", 4000, "G729", 18)


async def test_one_failing_event_handler_does_not_stop_the_engine(peers: tuple[Peer, Peer]) -> None:
    peer, _ = peers
    seen: list[MediaEvent] = []

    def handler(event: MediaEvent) -> None:
        seen.append(event)
        raise RuntimeError("bug in the call controller")

    base = next(_ports)
    engine = MediaEngine(ENGINE_HOST, ENGINE_HOST, base, base + 99, 0.0, handler, idle=IdleMode.NOTHING)
    await engine.start()
    try:
        leg = engine.open_leg("x")
        leg.set_remote(*peer.address, "PCMU", 0, None)
        leg.play([tone_prompt(440, 0.04)], token=1)
        leg2 = engine.open_leg("y")
        leg2.set_remote(*peer.address, "PCMU", 0, None)
        assert await wait_for(lambda: PlaybackFinished("x", 1) in seen, 1.0)
        leg2.play([tone_prompt(440, 0.04)], token=2)
        assert await wait_for(lambda: PlaybackFinished("y", 2) in seen, 1.0)
        assert engine.errors >= 2
    finally:
        await engine.close()


async def test_all_streams_share_one_timer(engine: MediaEngine, peers: tuple[Peer, Peer]) -> None:
    peer, _ = peers
    loop = asyncio.get_running_loop()
    music = tone_prompt(440, 0.5)
    legs = []
    for i in range(30):
        leg = engine.open_leg(i, rtcp=False)
        leg.set_remote(*peer.address, "PCMU", 0, None)
        leg.play([music], loop=True)
        legs.append(leg)
        await asyncio.sleep(0.0013)  # spread the streams' phases

    def engine_timers() -> int:
        scheduled = getattr(loop, "_scheduled", [])
        return sum(1 for h in scheduled if not h.cancelled() and getattr(h._callback, "__self__", None) is engine)

    counts = []
    received = 0
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        counts.append(engine_timers())
        received += len(await peer.receive(0.01))
    assert max(counts) == 1
    assert received >= 30 * 10  # 30 streams x 50 packets/s x 0.3 s, give or take the edges
    late = engine.pacing_lateness()
    assert late.packets >= 30 * 10
    assert 0 < late.p50 <= late.p99 <= late.max


def test_pacing_benchmark_smoke() -> None:
    """The pacing benchmark runs and reports its figures."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.pacing", "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "# machine:" in result.stdout
    row = result.stdout.splitlines()[-1].split()
    assert int(float(row[0])) == 200
    assert int(row[-1]) > 0  # the sink received packets


# -- in-band DTMF --------------------------------------------------------------------------


def dtmf_tone(low: float, high: float, seconds: float) -> np.ndarray:
    return tone(low, seconds, 0.3) + tone(high, seconds, 0.3)


async def test_inband_digit_when_enabled(
    engine: MediaEngine, events: list[MediaEvent], peers: tuple[Peer, Peer]
) -> None:
    peer_a, peer_b = peers
    listening = engine.open_leg("listening")
    deaf = engine.open_leg("deaf")
    listening.set_remote(*peer_a.address, "PCMU", 0, 101)
    deaf.set_remote(*peer_b.address, "PCMA", 8, None)
    listening.detect_inband(True)
    signal = np.concatenate([np.zeros(800), dtmf_tone(697, 1477, 0.1), np.zeros(1600)])  # "3"
    await asyncio.gather(
        peer_a.stream(listening, frames("PCMU", signal)),
        peer_b.stream(deaf, frames("PCMA", signal), pt=8),
    )
    assert await wait_for(lambda: any(isinstance(e, DigitReceived) for e in events), 0.5)
    await asyncio.sleep(0.1)
    digits = [e for e in events if isinstance(e, DigitReceived)]
    assert len(digits) == 1
    assert digits[0].leg_id == "listening"
    assert digits[0].digit.digit == "3"
    assert digits[0].digit.method is DtmfMethod.INBAND
    # PCMA legs are decoded as A-law
    deaf.detect_inband(True)
    listening.detect_inband(False)
    await asyncio.gather(
        peer_a.stream(listening, frames("PCMU", signal)),
        peer_b.stream(deaf, frames("PCMA", signal), pt=8),
    )
    assert await wait_for(lambda: len([e for e in events if isinstance(e, DigitReceived)]) == 2, 0.5)
    await asyncio.sleep(0.1)
    digits = [e for e in events if isinstance(e, DigitReceived)]
    assert [(d.leg_id, d.digit.digit) for d in digits] == [("listening", "3"), ("deaf", "3")]


async def test_no_inband_digit_from_music(
    engine: MediaEngine, events: list[MediaEvent], peers: tuple[Peer, Peer]
) -> None:
    peer, _ = peers
    leg = engine.open_leg("caller")
    leg.set_remote(*peer.address, "PCMU", 0, None)
    leg.detect_inband(True)
    t = np.arange(8000) / 8000
    music = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.15 * np.sin(2 * np.pi * 554 * t) + 0.1 * np.sin(2 * np.pi * 659 * t)
    await peer.stream(leg, frames("PCMU", music))
    await asyncio.sleep(0.1)
    assert not [e for e in events if isinstance(e, DigitReceived)]


async def test_reinvite_with_another_codec_while_bridged(engine: MediaEngine, peers: tuple[Peer, Peer]) -> None:
    peer_a, peer_b = peers
    a, b = engine.open_leg("a"), engine.open_leg("b")
    a.set_remote(*peer_a.address, "PCMU", 0, None)
    b.set_remote(*peer_b.address, "PCMA", 8, None)
    engine.bridge(a, b)
    receiving = asyncio.create_task(peer_b.receive(1.0, until=lambda g: len(g) >= 5))
    await peer_a.stream(a, frames("PCMU", tone(600, 0.1)))
    before = [RtpPacket.parse(d) for _, d in await receiving]
    b.set_remote(*peer_b.address, "PCMU", 0, None)  # re-INVITE: the agent now wants PCMU
    receiving = asyncio.create_task(peer_b.receive(1.0, until=lambda g: len(g) >= 10))
    await peer_a.stream(a, frames("PCMU", tone(600, 0.2)), first_seq=105)
    after = [RtpPacket.parse(d) for _, d in await receiving]
    assert {p.payload_type for p in before} == {8}
    assert {p.payload_type for p in after} == {0}
    assert peak(g711.decode("PCMU", b"".join(p.payload for p in after)).astype(float)) == pytest.approx(600, abs=15)
    stream = before + after
    assert len({p.ssrc for p in stream}) == 1
    assert all(seq_diff(y.sequence, x.sequence) == 1 for x, y in itertools.pairwise(stream))


async def test_the_key_that_accepts_the_bridge_is_not_relayed(peers: tuple[Peer, Peer]) -> None:
    """The agent presses 1, the controller bridges on the first packet of that key press: the
    rest of the key press (updates, end packets) must not reach the caller; a later key does."""
    peer_caller, peer_agent = peers
    engine_box: list[MediaEngine] = []
    legs: dict[str, MediaLeg] = {}
    digits: list[DigitReceived] = []

    def on_event(event: MediaEvent) -> None:
        if isinstance(event, DigitReceived):
            digits.append(event)
            if event.leg_id == "agent" and len(digits) == 1:
                engine_box[0].bridge(legs["caller"], legs["agent"])

    async with make_engine([], idle=IdleMode.NOTHING) as engine:
        engine._on_event = on_event
        engine_box.append(engine)
        legs["caller"] = engine.open_leg("caller")
        legs["agent"] = engine.open_leg("agent")
        legs["caller"].set_remote(*peer_caller.address, "PCMU", 0, 101)
        legs["agent"].set_remote(*peer_agent.address, "PCMU", 0, 101)
        confirm = rfc4733_packets("1", payload_type=101, ssrc=peer_agent.ssrc, first_sequence=10, timestamp=4000)
        later = rfc4733_packets("5", payload_type=101, ssrc=peer_agent.ssrc, first_sequence=30, timestamp=9600)
        for _, packet in confirm:
            peer_agent.send_to(legs["agent"], packet.serialize())
            await asyncio.sleep(0.02)
        got = await peer_caller.receive(0.3)
        receiver = Rfc4733Receiver(payload_type=101)
        assert [d for _, data in got for d in receiver.receive(RtpPacket.parse(data), 0.0)] == []
        assert legs["agent"].stats().dropped.get("event_before_bridge") == len(confirm) - 1
        for _, packet in later:
            peer_agent.send_to(legs["agent"], packet.serialize())
        got = await peer_caller.receive(0.5, until=lambda g: len(g) >= len(later))
        assert [d.digit for _, data in got for d in receiver.receive(RtpPacket.parse(data), 0.0)] == ["5"]
        assert [d.digit.digit for d in digits] == ["1", "5"]
