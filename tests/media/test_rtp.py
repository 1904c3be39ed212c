"""RTP packet model (RFC 3550 §5.1) and the fast-path helpers."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sipcallhunt.errors import RtpError
from sipcallhunt.media import rtp
from sipcallhunt.media.rtp import (
    RtpPacket,
    is_rtcp,
    pack_header,
    payload_bounds,
    peek_header,
    seq_diff,
    ts_diff,
)
from tests.media.fixtures import FIXTURES, read_pcap_udp
from tests.media.strategies import rtp_packets, u16, u32


def test_exports() -> None:
    for name in rtp.__all__:
        assert hasattr(rtp, name)


def test_parse_known_packet() -> None:
    # V=2 P=0 X=0 CC=1, M=1 PT=0, seq 0x1234, ts 0xdeadbeef, ssrc 0x01020304, csrc 0x0a0b0c0d, payload
    data = bytes.fromhex("8180 1234 deadbeef 01020304 0a0b0c0d") + b"\xff" * 160
    packet = RtpPacket.parse(data)
    assert packet == RtpPacket(
        payload_type=0,
        sequence=0x1234,
        timestamp=0xDEADBEEF,
        ssrc=0x01020304,
        payload=b"\xff" * 160,
        marker=True,
        csrc=(0x0A0B0C0D,),
    )
    assert bytes(packet) == data
    assert packet.serialize() == data


def test_parse_extension_and_padding() -> None:
    data = (
        bytes.fromhex("b008 0001 00000002 00000003")  # V=2 P=1 X=1 CC=0, PT=8
        + bytes.fromhex("bede 0001 10ff0000")  # RFC 8285 one-byte header profile, one word
        + b"payload"
        + b"\x00\x00\x03"  # three padding octets
    )
    packet = RtpPacket.parse(data)
    assert packet.extension == (0xBEDE, bytes.fromhex("10ff0000"))
    assert packet.payload == b"payload"
    assert packet.padding and packet.padding_bytes == b"\x00\x00\x03"
    assert packet.serialize() == data
    assert payload_bounds(data) == (20, 27)


@given(rtp_packets())
def test_round_trip(packet: RtpPacket) -> None:
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    marker, payload_type, sequence, timestamp, ssrc = peek_header(data)
    assert (marker, payload_type, sequence, timestamp, ssrc) == (
        packet.marker,
        packet.payload_type,
        packet.sequence,
        packet.timestamp,
        packet.ssrc,
    )
    start, stop = payload_bounds(data)
    assert data[start:stop] == packet.payload


@given(st.binary(max_size=120))
@example(b"")
@example(b"\x80\x00")
@example(bytes.fromhex("8f00 0000 00000000 00000000"))  # 15 CSRCs announced, none there
@example(bytes.fromhex("9000 0000 00000000 00000000 0000"))  # truncated extension header
@example(bytes.fromhex("9000 0000 00000000 00000000 0000 0005"))  # extension longer than the packet
@example(bytes.fromhex("a000 0000 00000000 00000000 00"))  # padding count 0
@example(bytes.fromhex("a000 0000 00000000 00000000 0102 09"))  # padding count beyond the payload
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError as exc:
        assert str(exc).startswith("RTP packet")
        with pytest.raises(RtpError):
            payload_bounds(data)
        return
    assert packet.serialize() == data
    stop = len(data) - len(packet.padding_bytes)
    assert payload_bounds(data) == (stop - len(packet.payload), stop)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00\x00", "truncated: 3 bytes"),
        (bytes.fromhex("4000 0000 00000000 00000000"), "bad version 1"),
        (bytes.fromhex("8200 0000 00000000 00000000 00000001"), "truncated CSRC"),
        (bytes.fromhex("9000 0000 00000000 00000000 bede"), "truncated extension header"),
        (bytes.fromhex("9000 0000 00000000 00000000 bede 0002 00000000"), "truncated extension:"),
        (bytes.fromhex("a000 0000 00000000 00000000 1200"), "padding length 0"),
        (bytes.fromhex("a000 0000 00000000 00000000 1205"), "padding length 5 exceeds"),
    ],
)
def test_precise_errors(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError, match=reason):
        RtpPacket.parse(data)


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"sequence": 65536},
        {"timestamp": -1},
        {"ssrc": 1 << 32},
        {"csrc": tuple(range(16))},
        {"extension": (0, b"abc")},
        {"padding": True, "padding_bytes": b"\x00\x01"},
        {"padding": True},
        {"padding_bytes": b"\x01"},
        {"version": 1},
    ],
)
def test_unencodable_fields_rejected(fields: dict[str, object]) -> None:
    base: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    with pytest.raises(RtpError):
        RtpPacket(**(base | fields))  # type: ignore[arg-type]


def test_peek_header_rejects_short_and_bad_version() -> None:
    with pytest.raises(RtpError):
        peek_header(b"\x80" * 11)
    with pytest.raises(RtpError):
        peek_header(b"\x00" * 12)


@given(st.integers(min_value=0, max_value=127), u16, u32, u32, st.booleans())
def test_pack_header_matches_packet(payload_type: int, sequence: int, timestamp: int, ssrc: int, marker: bool) -> None:
    header = pack_header(payload_type, sequence, timestamp, ssrc, marker)
    packet = RtpPacket(payload_type=payload_type, sequence=sequence, timestamp=timestamp, ssrc=ssrc, marker=marker)
    assert header == packet.serialize()


def test_pack_header_wraps_counters() -> None:
    assert peek_header(pack_header(0, 65536 + 5, (1 << 32) + 7, 1))[2:4] == (5, 7)


@given(u16, st.integers(min_value=-32768, max_value=32767))
def test_seq_diff(base: int, delta: int) -> None:
    assert seq_diff((base + delta) % 65536, base) == delta


@given(u32, st.integers(min_value=-(1 << 31), max_value=(1 << 31) - 1))
def test_ts_diff(base: int, delta: int) -> None:
    assert ts_diff((base + delta) % (1 << 32), base) == delta


def test_seq_diff_wrap_examples() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert ts_diff(0, 0xFFFFFFFF) == 1


def test_is_rtcp() -> None:
    sr = bytes.fromhex("80c8 0006") + b"\x00" * 24  # RFC 3550 §6.4.1 SR, PT 200
    rr = bytes.fromhex("81c9 0007") + b"\x00" * 28  # RR, PT 201
    assert is_rtcp(sr) and is_rtcp(rr)
    assert not is_rtcp(pack_header(0, 1, 2, 3))
    assert not is_rtcp(pack_header(8, 1, 2, 3, marker=True))  # 0x88
    assert not is_rtcp(pack_header(101, 1, 2, 3, marker=True))  # 0xe5 = 229, above the RTCP range
    assert is_rtcp(pack_header(72, 1, 2, 3, marker=True))  # 0xc8: why PT 64-95 are banned with rtcp-mux
    assert not is_rtcp(b"\x80")


def test_captured_g711a_stream() -> None:
    datagrams = read_pcap_udp(FIXTURES / "g711a.pcap")
    assert len(datagrams) > 200
    packets = [RtpPacket.parse(data) for _, data in datagrams]
    for (_, data), packet in zip(datagrams, packets, strict=True):
        assert packet.serialize() == data
    assert {p.payload_type for p in packets} == {8}
    assert len({p.ssrc for p in packets}) == 1
    assert packets[0].marker
    for previous, current in itertools.pairwise(packets):
        assert seq_diff(current.sequence, previous.sequence) == 1
        assert ts_diff(current.timestamp, previous.timestamp) == len(current.payload) == 240


def test_captured_telephone_events() -> None:
    for name in ("dtmf_2833_1.pcap", "dtmf_2833_pound.pcap", "dtmf_2833_star.pcap"):
        datagrams = read_pcap_udp(FIXTURES / name)
        packets = [RtpPacket.parse(data) for _, data in datagrams]
        assert [bytes(p) for p in packets] == [d for _, d in datagrams]
        assert {p.payload_type for p in packets} == {101}
        assert len({p.timestamp for p in packets}) == 1
        # the three end packets share one sequence number (RFC 4733 §2.5.1.4)
        assert packets[-1].sequence == packets[-2].sequence == packets[-3].sequence
        assert struct.unpack("!BBH", packets[-1].payload[:4])[1] & 0x80
