"""RTCP compound packets (RFC 3550 §6): parse what peers send, build what sipcallhunt sends."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sipcallhunt.errors import RtpError
from sipcallhunt.media import rtcp
from sipcallhunt.media.rtcp import (
    NTP_EPOCH_OFFSET,
    SDES_CNAME,
    Bye,
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_report,
    ntp_timestamp,
    parse_compound,
    serialize_compound,
)
from sipcallhunt.media.rtp import is_rtcp
from tests.media.strategies import u32

# An SR with one report block, then SDES CNAME, as a softphone sends it (bytes written out by hand
# from RFC 3550 §6.4.1 and §6.5).
SR_SDES = bytes.fromhex(
    "81c8000c"  # V=2 RC=1 PT=200 length=12
    "1a2b3c4d"  # SSRC of sender
    "e9a1b2c3"
    "80000000"  # NTP timestamp
    "00012340"  # RTP timestamp
    "00000064"  # sender's packet count 100
    "00003e80"  # sender's octet count 16000
    "5e6f7081"  # report block: SSRC
    "19fffffe"  # fraction lost 25, cumulative lost -2
    "0001000a"  # extended highest sequence
    "00000020"  # jitter
    "b2c38000"  # LSR
    "00010000"  # DLSR
    "81ca0006"  # V=2 SC=1 PT=202 length=6
    "1a2b3c4d"
    "0111" + b"user@host.example".hex() + "00"  # CNAME (17 octets), end of items: 24 bytes, no padding
)


def test_exports() -> None:
    for name in rtcp.__all__:
        assert hasattr(rtcp, name)


def test_parse_captured_style_sr_sdes() -> None:
    sr, sdes = parse_compound(SR_SDES)
    assert isinstance(sr, SenderReport)
    assert sr.ssrc == 0x1A2B3C4D
    assert sr.ntp_timestamp == 0xE9A1B2C380000000
    assert (sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (0x12340, 100, 16000)
    (block,) = sr.reports
    assert block == ReportBlock(
        ssrc=0x5E6F7081,
        fraction_lost=25,
        cumulative_lost=-2,
        highest_sequence=0x1000A,
        jitter=32,
        last_sr=0xB2C38000,
        delay_since_last_sr=0x10000,
    )
    assert isinstance(sdes, SourceDescription)
    assert sdes.cname(0x1A2B3C4D) == b"user@host.example"
    assert sdes.cname(1) is None
    assert serialize_compound([sr, sdes]) == SR_SDES
    assert is_rtcp(SR_SDES)


def test_app_and_unknown_types_skipped() -> None:
    app = bytes.fromhex("80cc0003 1a2b3c4d") + b"NAME" + b"data"  # APP (RFC 3550 §6.7)
    psfb = bytes.fromhex("81ce0002 00000001 00000002")  # PLI (RFC 4585), type 206
    bye = Bye((0x1A2B3C4D,), b"done").serialize()
    assert parse_compound(SR_SDES + app + psfb + bye)[2:] == [Bye((0x1A2B3C4D,), b"done")]


def test_padding_on_the_last_packet() -> None:
    rr = ReceiverReport(ssrc=7).serialize()
    padded = bytes([rr[0] | 0x20, rr[1]]) + struct.pack("!H", 2) + rr[4:] + b"\x00\x00\x00\x04"
    assert parse_compound(padded) == [ReceiverReport(ssrc=7)]
    with pytest.raises(RtpError, match="not the last"):
        parse_compound(padded + rr)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x80\xc9\x00", "truncated"),
        (bytes.fromhex("40c90001 00000001"), "bad version 1"),
        (bytes.fromhex("80c90004 00000001"), "runs past"),
        (bytes.fromhex("81c90001 00000001"), "report blocks"),
        (bytes.fromhex("80c80001 00000001"), "sender info"),
        (bytes.fromhex("80c90000"), "no room for the SSRC"),
        (bytes.fromhex("81ca0001 00000001"), "terminating null"),
        (bytes.fromhex("81ca0002 00000001 01080000"), "SDES item is truncated"),
        (bytes.fromhex("82cb0001 00000001"), "BYE announces 2"),
        (bytes.fromhex("81cb0002 00000001 05414200"), "reason is truncated"),
        (bytes.fromhex("a0c90001 00000000"), "padding length 0"),
    ],
)
def test_precise_errors(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError, match=reason):
        parse_compound(data)


@given(st.binary(max_size=200))
@example(bytes.fromhex("81ca0001 00000001"))
def test_arbitrary_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        packets = parse_compound(data)
    except RtpError:
        return
    assert all(isinstance(p, SenderReport | ReceiverReport | SourceDescription | Bye) for p in packets)


blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-(1 << 23), (1 << 23) - 1),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
words = st.binary(max_size=16).map(lambda b: b[: len(b) // 4 * 4])
texts = st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"x"))
packets = st.one_of(
    st.builds(
        SenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, (1 << 64) - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=st.lists(blocks, max_size=3).map(tuple),
        extension=words,
    ),
    st.builds(ReceiverReport, ssrc=u32, reports=st.lists(blocks, max_size=3).map(tuple), extension=words),
    st.builds(
        SourceDescription,
        st.lists(
            st.builds(SdesChunk, u32, st.lists(st.tuples(st.integers(1, 8), texts), max_size=3).map(tuple)),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Bye, st.lists(u32, max_size=4).map(tuple), st.none() | texts),
)


@given(st.lists(packets, min_size=1, max_size=4))
def test_round_trip(compound: list[rtcp.RtcpPacket]) -> None:
    data = serialize_compound(compound)
    assert len(data) % 4 == 0
    assert parse_compound(data) == compound


def test_build_sender_report_with_cname_and_bye() -> None:
    wallclock = 1_700_000_000.25
    data = build_report(
        ssrc=0xCAFE, wallclock=wallclock, packets_sent=50, octets_sent=8000, rtp_timestamp=1234, bye=True
    )
    sr, sdes, bye = parse_compound(data)
    assert isinstance(sr, SenderReport)
    assert (sr.ssrc, sr.packet_count, sr.octet_count, sr.rtp_timestamp) == (0xCAFE, 50, 8000, 1234)
    assert sr.ntp_timestamp >> 32 == 1_700_000_000 + NTP_EPOCH_OFFSET
    assert sr.ntp_timestamp & 0xFFFFFFFF == 1 << 30
    assert isinstance(sdes, SourceDescription) and sdes.cname(0xCAFE) == b"0000cafe@sipcallhunt"
    assert bye == Bye((0xCAFE,), None)
    assert is_rtcp(data)


def test_build_receiver_report_when_nothing_sent() -> None:
    block = ReportBlock(ssrc=9, highest_sequence=70000)
    data = build_report(ssrc=1, wallclock=0.0, cname="hotline@example.org", reports=(block,), reason=None)
    rr, sdes = parse_compound(data)
    assert rr == ReceiverReport(ssrc=1, reports=(block,))
    assert sdes == SourceDescription((SdesChunk(1, ((SDES_CNAME, b"hotline@example.org"),)),))


def test_build_bye_with_reason_and_wrapping_counters() -> None:
    data = build_report(ssrc=3, wallclock=1.5, packets_sent=(1 << 32) + 5, octets_sent=1 << 33, bye=True, reason="bye")
    sr, _, bye = parse_compound(data)
    assert isinstance(sr, SenderReport) and (sr.packet_count, sr.octet_count) == (5, 0)
    assert bye == Bye((3,), b"bye")


def test_ntp_timestamp() -> None:
    assert ntp_timestamp(0.0) == NTP_EPOCH_OFFSET << 32
    assert ntp_timestamp(0.5) == (NTP_EPOCH_OFFSET << 32) | (1 << 31)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ReportBlock(ssrc=1 << 32),
        lambda: ReportBlock(ssrc=1, cumulative_lost=1 << 23),
        lambda: SenderReport(ssrc=1, ntp_timestamp=1 << 64, rtp_timestamp=0, packet_count=0, octet_count=0),
        lambda: ReceiverReport(ssrc=1, reports=(ReportBlock(ssrc=1),) * 32).serialize(),
        lambda: ReceiverReport(ssrc=1, extension=b"abc").serialize(),
        lambda: SdesChunk(1, ((0, b"x"),)),
        lambda: SdesChunk(1, ((1, b"x" * 256),)),
        lambda: Bye((1,), b"x" * 256),
    ],
)
def test_unencodable_values_rejected(make: object) -> None:
    with pytest.raises(RtpError):
        make()  # type: ignore[operator]
