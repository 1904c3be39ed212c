"""Relay rules: latching, source checking, rewrite continuity, payload types, transcoding, garbage."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipcallhunt.media import g711
from sipcallhunt.media.relay import (
    DROP,
    SLOW,
    DropReason,
    Latch,
    LatchResult,
    RelayPath,
    StreamPosition,
)
from sipcallhunt.media.rtp import RtpPacket, seq_diff, ts_diff
from tests.media.strategies import rtp_packets

PEER = ("127.0.0.1", 40000)
SIGNALLED = ("127.0.0.21", 40000)
STRANGER = ("127.0.0.99", 5555)


def make_path(
    in_codec: str = "PCMU",
    out_codec: str = "PCMU",
    *,
    in_event: int | None = 101,
    out_event: int | None = 96,
    position: StreamPosition | None = None,
) -> RelayPath:
    return RelayPath.create(
        position or StreamPosition(ssrc=0xCAFE, next_seq=65530, timestamp=0xFFFFFF00, time=10.0),
        in_codec=in_codec,
        in_audio_pt=0 if in_codec == "PCMU" else 8,
        in_event_pt=in_event,
        out_codec=out_codec,
        out_audio_pt=0 if out_codec == "PCMU" else 8,
        out_event_pt=out_event,
    )


def send(path: RelayPath, packet: RtpPacket, now: float) -> RtpPacket | None:
    buf = bytearray(2048)
    data = packet.serialize()
    buf[: len(data)] = data
    n = path.forward(buf, len(data), now)
    if n == SLOW:
        n = path.forward_slow(buf, len(data), now)
    return RtpPacket.parse(bytes(buf[:n])) if n > 0 else None


def audio(seq: int, ts: int, ssrc: int = 77, payload: bytes = b"\xff" * 160, pt: int = 0) -> RtpPacket:
    return RtpPacket(payload_type=pt, sequence=seq & 0xFFFF, timestamp=ts & 0xFFFFFFFF, ssrc=ssrc, payload=payload)


# -- latching ------------------------------------------------------------------------------


def test_latches_to_the_first_source_and_drops_others() -> None:
    latch = Latch(signalled=SIGNALLED)
    assert latch.destination == SIGNALLED
    assert latch.check(PEER, 1.0) is LatchResult.LATCHED  # baresip: another address than its SDP
    assert latch.destination == PEER
    assert latch.check(PEER, 1.02) is LatchResult.ACCEPT
    assert latch.check(STRANGER, 1.04) is LatchResult.FOREIGN
    assert latch.check(STRANGER, 100.0) is LatchResult.FOREIGN  # no re-latch unless configured
    assert latch.foreign == 2
    assert latch.latched == PEER


def test_the_signalled_address_always_wins() -> None:
    latch = Latch(signalled=SIGNALLED)
    latch.check(PEER, 1.0)
    assert latch.check(SIGNALLED, 1.1) is LatchResult.LATCHED
    assert latch.check(PEER, 1.2) is LatchResult.FOREIGN


def test_the_signalled_host_takes_its_media_back_from_a_stranger() -> None:
    """A stranger wins the race for the first packet; the real phone sends from its SDP host but
    another port (as baresip does): it re-latches, and the stranger is foreign from then on.  Once
    the latch is on the signalled host, another port of that host does not move it."""
    latch = Latch(signalled=SIGNALLED)
    assert latch.check(STRANGER, 1.0) is LatchResult.LATCHED
    same_host = (SIGNALLED[0], SIGNALLED[1] + 10)
    assert latch.check(same_host, 1.02) is LatchResult.LATCHED
    assert latch.check(STRANGER, 1.04) is LatchResult.FOREIGN
    assert latch.check((SIGNALLED[0], SIGNALLED[1] + 20), 1.06) is LatchResult.FOREIGN
    assert latch.latched == same_host


def test_optional_relatch_after_silence() -> None:
    latch = Latch(relatch_after=2.0)
    latch.check(PEER, 1.0)
    latch.check(PEER, 2.0)
    assert latch.check(STRANGER, 3.9) is LatchResult.FOREIGN
    assert latch.check(STRANGER, 4.0) is LatchResult.LATCHED
    assert latch.destination == STRANGER


def test_resignalling_forgets_the_latch() -> None:
    latch = Latch(signalled=SIGNALLED)
    latch.check(PEER, 1.0)
    latch.signal(("127.0.0.5", 7000))
    assert latch.latched is None
    assert latch.destination == ("127.0.0.5", 7000)


# -- rewriting -----------------------------------------------------------------------------


def test_rewrite_continues_the_outgoing_stream() -> None:
    position = StreamPosition(ssrc=0xCAFE, next_seq=65530, timestamp=0xFFFFFF00, time=10.0)
    path = make_path(position=position)
    out = [send(path, audio(1000 + i, 5000 + 160 * i), 10.0 + 0.02 * i) for i in range(20)]
    assert all(p is not None for p in out)
    packets = [p for p in out if p is not None]
    assert {p.ssrc for p in packets} == {0xCAFE}
    assert packets[0].sequence == 65530  # wraps below
    assert packets[0].timestamp == position.timestamp
    assert [p.marker for p in packets] == [True] + [False] * 19
    for a, b in itertools.pairwise(packets):
        assert seq_diff(b.sequence, a.sequence) == 1
        assert ts_diff(b.timestamp, a.timestamp) == 160
    assert path.counters.packets_in == path.counters.packets_out == 20
    assert path.counters.octets_out == 20 * 172


def test_new_source_ssrc_continues_with_wall_clock_timestamps() -> None:
    path = make_path()
    first = [send(path, audio(i, 160 * i, ssrc=1), 10.0 + 0.02 * i) for i in range(5)]
    # the peer restarts with another SSRC, random sequence and timestamp, 300 ms later
    second = [send(path, audio(40000 + i, 99 + 160 * i, ssrc=2), 10.38 + 0.02 * i) for i in range(3)]
    packets = [p for p in first + second if p is not None]
    assert len(packets) == 8
    assert seq_diff(packets[5].sequence, packets[4].sequence) == 1
    assert ts_diff(packets[5].timestamp, packets[4].timestamp) == round(0.3 * 8000)
    assert packets[5].marker and not packets[6].marker
    assert {p.ssrc for p in packets} == {0xCAFE}


def test_reordered_old_packet_keeps_its_place() -> None:
    path = make_path()
    a = send(path, audio(10, 1600), 10.0)
    c = send(path, audio(12, 1920), 10.04)
    b = send(path, audio(11, 1760), 10.05)  # late
    d = send(path, audio(13, 2080), 10.06)
    assert a and b and c and d
    assert [seq_diff(x.sequence, a.sequence) for x in (b, c, d)] == [1, 2, 3]
    assert path.position(10.06).next_seq == (a.sequence + 4) & 0xFFFF


def test_position_after_the_bridge() -> None:
    path = make_path()
    last = None
    for i in range(10):
        last = send(path, audio(i, 160 * i), 10.0 + 0.02 * i)
    assert last is not None
    pos = path.position(10.18 + 0.1)
    assert pos.ssrc == 0xCAFE
    assert pos.next_seq == (last.sequence + 1) & 0xFFFF
    assert ts_diff(pos.timestamp, last.timestamp) == 800


def test_marker_of_the_peer_is_kept() -> None:
    path = make_path()
    send(path, audio(1, 160), 10.0)
    talkspurt = RtpPacket(payload_type=0, sequence=2, timestamp=3200, ssrc=77, payload=b"\xff" * 160, marker=True)
    out = send(path, talkspurt, 10.4)
    assert out is not None and out.marker


# -- payload types and transcoding ---------------------------------------------------------


def test_telephone_event_payload_type_is_mapped() -> None:
    path = make_path(in_event=101, out_event=96)
    a = send(path, audio(1, 8000), 10.0)
    event = RtpPacket(payload_type=101, sequence=2, timestamp=8160, ssrc=77, payload=b"\x05\x0a\x00\xa0", marker=True)
    out = send(path, event, 10.02)
    assert a is not None and out is not None
    assert out.payload_type == 96
    assert out.payload == b"\x05\x0a\x00\xa0"
    assert ts_diff(out.timestamp, a.timestamp) == 160
    assert seq_diff(out.sequence, a.sequence) == 1


def test_telephone_event_without_a_counterpart_is_dropped_and_counted() -> None:
    path = make_path(in_event=101, out_event=None)
    event = RtpPacket(payload_type=101, sequence=2, timestamp=8160, ssrc=77, payload=b"\x05\x0a\x00\xa0")
    assert send(path, event, 10.0) is None
    assert path.counters.dropped == {DropReason.NO_EVENT_PAYLOAD_TYPE: 1}


def test_a_key_press_from_before_the_bridge_is_not_relayed() -> None:
    path = make_path(in_event=101, out_event=96)
    path.suppressed_event = (77, 8000)  # the confirm key, already reported on this leg
    old = [
        RtpPacket(payload_type=101, sequence=s, timestamp=8000, ssrc=77, payload=bytes([1, flags, 0, d]))
        for s, flags, d in ((3, 0x0A, 0xA0), (4, 0x8A, 0xF0), (4, 0x8A, 0xF0))
    ]
    assert [send(path, p, 10.0) for p in old] == [None, None, None]
    assert path.counters.dropped == {DropReason.EVENT_BEFORE_BRIDGE: 3}
    new = RtpPacket(payload_type=101, sequence=9, timestamp=9600, ssrc=77, payload=b"\x05\x0a\x00\xa0", marker=True)
    out = send(path, new, 10.2)
    assert out is not None and out.payload == new.payload


def test_dropping_the_rest_of_a_key_press_leaves_no_gap_in_sequence_numbers() -> None:
    path = make_path(in_event=101, out_event=96)
    path.suppressed_event = (77, 8000)
    first = send(path, RtpPacket(payload_type=0, sequence=10, timestamp=7840, ssrc=77, payload=b"\xff" * 160), 10.0)
    assert first is not None
    # The key's last update and its three end packets (one number) arrive after the bridge.
    for seq, flags in ((11, 0x0A), (12, 0x8A), (12, 0x8A), (12, 0x8A)):
        event = RtpPacket(payload_type=101, sequence=seq, timestamp=8000, ssrc=77, payload=bytes([1, flags, 0, 0xA0]))
        assert send(path, event, 10.02) is None
    after = send(path, RtpPacket(payload_type=0, sequence=13, timestamp=8320, ssrc=77, payload=b"\xff" * 160), 10.06)
    assert after is not None
    assert after.sequence == (first.sequence + 1) & 0xFFFF  # continuous for the receiver
    again = send(path, RtpPacket(payload_type=0, sequence=14, timestamp=8480, ssrc=77, payload=b"\xff" * 160), 10.08)
    assert again is not None and again.sequence == (after.sequence + 1) & 0xFFFF


def test_unknown_payload_type_is_dropped_and_counted() -> None:
    path = make_path()
    assert send(path, audio(1, 160, pt=18, payload=b"\x00" * 20), 10.0) is None
    assert send(path, audio(2, 320, pt=8), 10.02) is None  # PCMA where PCMU was negotiated
    assert path.counters.dropped == {DropReason.UNKNOWN_PAYLOAD_TYPE: 2}
    assert path.counters.packets_in == 2
    assert path.counters.packets_out == 0


@pytest.mark.parametrize(("src", "dst"), [("PCMU", "PCMA"), ("PCMA", "PCMU")])
def test_transcoding_keeps_the_audio(src: str, dst: str) -> None:
    t = np.arange(160) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    path = make_path(src, dst)
    out = send(path, audio(1, 160, payload=g711.encode(src, pcm), pt=0 if src == "PCMU" else 8), 10.0)
    assert out is not None
    assert out.payload_type == (0 if dst == "PCMU" else 8)
    got = g711.decode(dst, out.payload).astype(np.int32)
    assert np.max(np.abs(got - pcm)) <= 0.07 * 8000  # two G.711 quantisations
    assert np.corrcoef(got, pcm)[0, 1] > 0.999


def test_same_codec_is_not_touched() -> None:
    payload = bytes(range(160))
    out = send(make_path(), audio(1, 160, payload=payload), 10.0)
    assert out is not None and out.payload == payload


def test_unsupported_codec_pair() -> None:
    with pytest.raises(ValueError, match="G722"):
        make_path("G722", "PCMU")


def test_csrc_extension_and_padding_are_handled_on_the_slow_path() -> None:
    path = make_path()
    fancy = RtpPacket(
        payload_type=0,
        sequence=7,
        timestamp=1120,
        ssrc=77,
        payload=b"\x11" * 160,
        csrc=(1, 2, 3),
        extension=(0xBEDE, b"\x00" * 8),
        padding=True,
        padding_bytes=b"\x00\x00\x03",
    )
    out = send(path, fancy, 10.0)
    assert out is not None
    assert out.payload == b"\x11" * 160
    assert out.csrc == () and out.extension is None and not out.padding
    assert out.ssrc == 0xCAFE


# -- garbage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x80", b"\x80\x00\x00", b"\x00" * 172, b"\x40" * 20, b"\xbf" + b"\x00" * 11, b"\xa0" + b"\x00" * 11],
)
def test_garbage_is_dropped_and_counted(garbage: bytes) -> None:
    path = make_path()
    buf = bytearray(2048)
    buf[: len(garbage)] = garbage
    n = path.forward(buf, len(garbage), 10.0)
    if n == SLOW:
        n = path.forward_slow(buf, len(garbage), 10.0)
    assert n == DROP
    assert path.counters.dropped_total == 1
    assert path.counters.packets_out == 0


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    path = make_path()
    buf = bytearray(2048)
    buf[: len(data)] = data
    n = path.forward(buf, len(data), 10.0)
    if n == SLOW:
        n = path.forward_slow(buf, len(data), 10.0)
    assert n == DROP or n >= 12
    assert len(buf) == 2048
    if n > 0:
        RtpPacket.parse(bytes(buf[:n]))  # whatever goes out is valid RTP


@settings(max_examples=200, deadline=None)
@given(packet=rtp_packets())
def test_any_rtp_packet_is_forwarded_or_counted(packet: RtpPacket) -> None:
    path = make_path()
    out = send(path, packet, 10.0)
    if packet.payload_type in (0, 101):
        assert out is not None
        assert out.ssrc == 0xCAFE
        assert out.payload_type == (0 if packet.payload_type == 0 else 96)
        assert out.payload == packet.payload
    else:
        assert out is None
        assert path.counters.dropped == {DropReason.UNKNOWN_PAYLOAD_TYPE: 1}


# -- the modules' faces (their purity: tests/test_purity.py) ---------------------------


@pytest.mark.parametrize("module", ["relay", "player", "prompt"])
def test_public_names(module: str) -> None:
    mod = importlib.import_module(f"sipcallhunt.media.{module}")
    assert mod.__doc__ and len(mod.__doc__) > 300
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"
