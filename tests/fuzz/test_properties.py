"""Property tests for the parsers: structured values round-trip, random input raises only the parser's own error.

The long campaign is ``python -m benchmarks.fuzz`` (10^6 inputs per parser); these run a few
hundred examples each so that the whole of ``tests/fuzz`` stays within half a minute.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipcallhunt.errors import RemoteProtocolError, RtpError, SdpError, SipParseError
from sipcallhunt.media.dtmf import (
    DTMF_DIGITS,
    Rfc4733Receiver,
    parse_info_dtmf,
    parse_rfc4733_payload,
    rfc4733_packets,
)
from sipcallhunt.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    parse_compound,
    serialize_compound,
)
from sipcallhunt.media.rtp import RtpPacket, payload_bounds, peek_header
from sipcallhunt.records import DtmfMethod
from sipcallhunt.sip.message import Headers, KeepAlive, SipRequest, SipResponse, StreamFramer, parse_message
from sipcallhunt.sip.sdp import parse_sdp
from sipcallhunt.sip.uri import CSeq, SipUri, Via
from tests.media.strategies import rtp_packets, u16, u32
from tests.sip.strategies import (
    call_ids,
    header_values,
    name_addrs,
    request_uris,
    session_descriptions,
    tokens,
    vias,
)

SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(SOME, max_examples=400)

# -- SIP -------------------------------------------------------------------------------------------


@st.composite
def header_sets(draw: st.DrawFn, method: str) -> Headers:
    """The mandatory headers plus random extension and list headers, in a random order."""
    pairs = [
        ("Via", str(draw(vias()))),
        ("From", str(draw(name_addrs()).with_tag(draw(tokens)))),
        ("To", str(draw(name_addrs()))),
        ("Call-ID", draw(call_ids)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(tokens.map(lambda t: "X-" + t), st.sampled_from(["Subject", "User-Agent", "Allow"])))
        value = draw(header_values)
        if name == "Allow":
            value = value.replace(",", "")  # a list header: one field per value
        pairs.append((name, value))
    pairs.extend(("Via", str(v)) for v in draw(st.lists(vias(), max_size=2)))
    return Headers.of(draw(st.permutations(pairs)))


@st.composite
def sip_messages(draw: st.DrawFn) -> SipRequest | SipResponse:
    body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        method = draw(st.sampled_from(["INVITE", "BYE", "OPTIONS", "INFO"]) | tokens)
        return SipRequest(method, str(draw(request_uris)), draw(header_sets(method)), body)
    status = draw(st.integers(100, 699))
    return SipResponse(
        status, draw(st.sampled_from(["OK", "", "Ringing", "Kaputt (sic)"])), draw(header_sets("INVITE")), body
    )


@SOME
@given(sip_messages())
def test_random_header_sets_round_trip(message: SipRequest | SipResponse) -> None:
    parsed = parse_message(bytes(message))
    assert parsed == message
    assert [name for name, _ in parsed.headers] == [name for name, _ in message.headers]  # order kept


@SOME
@given(st.lists(sip_messages(), min_size=1, max_size=3), st.data())
def test_a_stream_of_random_messages_frames_the_same_in_any_chunks(
    messages: list[SipRequest | SipResponse], data: st.DataObject
) -> None:
    stream = b"\r\n\r\n".join(bytes(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    framer = StreamFramer()
    items: list[object] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        items.extend(framer.feed(stream[start:cut]))
        start = cut
    assert [i for i in items if not isinstance(i, KeepAlive)] == messages
    assert len(items) == 2 * len(messages) - 1


@MANY
@given(st.binary(max_size=400))
def test_random_bytes_are_a_sip_message_or_sip_parse_error(data: bytes) -> None:
    try:
        message = parse_message(b"INVITE sip:a@b SIP/2.0\r\n" + data)
    except SipParseError:
        return
    assert parse_message(bytes(message)) == message


@SOME
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=5))
def test_random_streams_frame_or_raise_sip_parse_error(data: bytes, cuts: list[int]) -> None:
    framer = StreamFramer()
    start = 0
    try:
        for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
            framer.feed(data[start:cut])
            start = cut
    except SipParseError:
        pass


_ODD_DIGITS = st.characters(categories=["Nd", "No"]).filter(lambda c: not c.isascii())


@SOME
@given(_ODD_DIGITS, st.text(st.characters(categories=["Nd"]), max_size=3))
def test_non_ascii_digits_in_ports_and_cseq_are_parse_errors(digit: str, more: str) -> None:
    for parse, text in (
        (SipUri.parse, f"sip:alice@example.com:{digit}{more}"),
        (Via.parse, f"SIP/2.0/UDP host:{more}{digit};branch=z9hG4bK1"),
        (CSeq.parse, f"{digit}{more} INVITE"),
    ):
        with pytest.raises(SipParseError):
            parse(text)


def test_cseq_of_thousands_of_digits_is_a_parse_error() -> None:
    with pytest.raises(SipParseError, match="too large"):
        CSeq.parse("1" * 5000 + " INVITE")


def test_a_message_before_garbage_on_a_stream_is_not_lost() -> None:
    good = bytes(
        SipRequest(
            "BYE",
            "sip:a@192.0.2.1",
            Headers.of(
                [
                    ("Via", "SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK1"),
                    ("From", "<sip:b@192.0.2.2>;tag=1"),
                    ("To", "<sip:a@192.0.2.1>;tag=2"),
                    ("Call-ID", "c"),
                    ("CSeq", "2 BYE"),
                ]
            ),
        )
    )
    framer = StreamFramer()
    [message] = framer.feed(good + b"BYE sip:x SIP/2.0\r\nbroken line\r\n\r\n")
    assert bytes(message) == good
    assert framer.error is not None and framer.error.status == 400
    with pytest.raises(SipParseError):
        framer.feed(b"")
    # Garbage alone still raises at once.
    with pytest.raises(SipParseError):
        StreamFramer().feed(b"garbage\r\n\r\n")


# -- SDP -------------------------------------------------------------------------------------------


@SOME
@given(session_descriptions())
def test_sdp_round_trip(sd: object) -> None:
    assert parse_sdp(bytes(sd)) == sd  # type: ignore[call-overload]


_OTHER_LINES = st.lists(
    st.tuples(st.sampled_from("iuepzkr"), st.text("abc 0123-=:", max_size=8)).map(lambda kv: f"{kv[0]}={kv[1]}"),
    max_size=8,
)


@SOME
@given(_OTHER_LINES, st.lists(st.sampled_from(["i=x", "k=y", "a=ptime:0.4", "a=ptime:20.5", "a=maxptime:1e-3"])))
def test_sdp_other_lines_in_any_order_read_back_the_same(session: list[str], media: list[str]) -> None:
    text = "\r\n".join(["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", *session, "t=0 0", "m=audio 4000 RTP/AVP 0", *media])
    sd = parse_sdp(text.encode())
    assert parse_sdp(bytes(sd)) == sd


_SDP_LINES = st.lists(
    st.one_of(
        st.sampled_from(["v=0", "o=- 1 1 IN IP4 1.2.3.4", "s=-", "t=0 0", "c=IN IP4 1.2.3.4", "m=audio 1 RTP/AVP 0"]),
        st.tuples(st.sampled_from("vosctmabiukz"), st.text(max_size=20)).map(lambda kv: f"{kv[0]}={kv[1]}"),
        st.text(max_size=10),
    ),
    max_size=12,
)


@MANY
@given(_SDP_LINES, st.sampled_from(["\r\n", "\n"]))
def test_random_sdp_lines_parse_or_raise_sdp_error(lines: list[str], eol: str) -> None:
    try:
        sd = parse_sdp(eol.join(["v=0", *lines]).encode("utf-8", "surrogatepass"))
    except SdpError:
        return
    for media in sd.media:
        assert all(0 <= pt <= 127 for pt in media.payload_types)
    assert parse_sdp(bytes(sd)) == sd


# -- RTP and RTCP ----------------------------------------------------------------------------------


@MANY
@given(rtp_packets())
def test_rtp_round_trip_and_fast_path_agree(packet: RtpPacket) -> None:
    wire = packet.serialize()
    assert RtpPacket.parse(wire) == packet
    start, stop = payload_bounds(wire)
    assert wire[start:stop] == packet.payload
    assert peek_header(wire) == (packet.marker, packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc)


@MANY
@given(st.binary(max_size=80))
def test_random_bytes_are_rtp_or_rtp_error(data: bytes) -> None:
    data = b"\x80" + data if data[:1] != b"\x80" and len(data) % 2 else data  # half of them look like RTP
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        with pytest.raises(RtpError):
            payload_bounds(data)
        return
    assert packet.serialize() == data


report_blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-(2**23), 2**23 - 1),
    highest_sequence=u32,
    jitter=u32,
    last_sr=u32,
    delay_since_last_sr=u32,
)
_words = st.integers(0, 3).map(lambda n: b"\x5a" * (4 * n))
rtcp_packets: st.SearchStrategy[RtcpPacket] = st.one_of(
    st.builds(
        SenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, 2**64 - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=st.lists(report_blocks, max_size=3).map(tuple),
        extension=_words,
    ),
    st.builds(ReceiverReport, ssrc=u32, reports=st.lists(report_blocks, max_size=3).map(tuple), extension=_words),
    st.builds(
        SourceDescription,
        st.lists(
            st.builds(
                SdesChunk,
                u32,
                st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=30)), max_size=3).map(tuple),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Bye, st.lists(u32, max_size=4).map(tuple), st.none() | st.binary(max_size=40)),
)


@MANY
@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_rtcp_compound_round_trip(packets: list[RtcpPacket]) -> None:
    assert parse_compound(serialize_compound(packets)) == packets


@MANY
@given(st.lists(rtcp_packets, min_size=1, max_size=3), st.binary(max_size=8), st.integers(0, 200), u16)
def test_damaged_rtcp_is_rtcp_or_rtp_error(packets: list[RtcpPacket], noise: bytes, at: int, word: int) -> None:
    wire = bytearray(serialize_compound(packets))
    at %= len(wire)
    wire[at : at + len(noise)] = noise
    if len(wire) > 3 and word % 3 == 0:
        wire[2:4] = word.to_bytes(2, "big")
    try:
        parsed = parse_compound(bytes(wire))
    except RtpError:
        return
    again = serialize_compound(parsed)
    assert not again or parse_compound(again) == parsed


# -- DTMF ------------------------------------------------------------------------------------------


@MANY
@given(st.binary(max_size=12))
def test_rfc4733_payload_decodes_or_raises_rtp_error(payload: bytes) -> None:
    try:
        event = parse_rfc4733_payload(payload)
    except RtpError:
        assert len(payload) < 4
        return
    assert (event.event, event.duration) == (payload[0], int.from_bytes(payload[2:4], "big"))


@st.composite
def key_presses(draw: st.DrawFn) -> tuple[str, list[RtpPacket]]:
    """The packets of random key presses, some lost, duplicated and reordered, and stray ones."""
    digits = draw(st.text(DTMF_DIGITS, min_size=1, max_size=4))
    sequence, timestamp = draw(u16), draw(u32)
    packets: list[RtpPacket] = []
    for digit in digits:
        own = [
            p for _, p in rfc4733_packets(digit, payload_type=101, ssrc=5, first_sequence=sequence, timestamp=timestamp)
        ]
        sequence += 8
        timestamp = (timestamp + 4000) & 0xFFFFFFFF
        kept = [p for p in own if draw(st.integers(0, 4))] or own[-1:]  # at least one of each press arrives
        kept += draw(st.lists(st.sampled_from(own), max_size=3))
        packets += draw(st.permutations(kept))
    stray = draw(
        st.lists(
            st.builds(
                RtpPacket,
                payload_type=st.sampled_from([0, 101]),
                sequence=u16,
                timestamp=u32,
                ssrc=st.just(9),
                payload=st.binary(max_size=6),
            ),
            max_size=3,
        )
    )
    return digits, packets + stray


@SOME
@given(key_presses())
def test_each_key_press_is_reported_once_whatever_the_network_did(case: tuple[str, list[RtpPacket]]) -> None:
    digits, packets = case
    receiver = Rfc4733Receiver(payload_type=101)
    got: list[str] = []
    for index, packet in enumerate(packets):
        try:
            got.extend(d.digit for d in receiver.receive(packet, index * 0.02) if packet.ssrc == 5)
        except RtpError:
            assert len(packet.payload) < 4 and packet.ssrc == 9
    assert "".join(got) == digits


_INFO_DIGIT = st.sampled_from([*DTMF_DIGITS, "10", "11", "12", "13", "14", "15", "a", " 5 "])


@MANY
@given(_INFO_DIGIT, st.none() | st.integers(0, 99_999_999), st.sampled_from(["\r\n", "\n"]), st.booleans())
def test_info_dtmf_relay_bodies(signal: str, millis: int | None, eol: str, reverse: bool) -> None:
    lines = [f"Signal={signal}"] + ([f"Duration={millis}"] if millis is not None else [])
    body = eol.join(reversed(lines) if reverse else lines).encode()
    digit = parse_info_dtmf("application/dtmf-relay", body)
    expected = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}.get(signal, signal.strip().upper())
    assert digit is not None
    assert attrs.astuple(digit) == (expected, DtmfMethod.INFO, None if millis is None else millis / 1000)


@MANY
@given(st.sampled_from(["application/dtmf-relay", "application/dtmf", "Application/DTMF; x=1"]), st.binary(max_size=60))
def test_random_info_bodies_are_a_digit_or_remote_protocol_error(content_type: str, body: bytes) -> None:
    try:
        digit = parse_info_dtmf(content_type, body)
    except RemoteProtocolError:
        return
    assert digit is not None and digit.digit in DTMF_DIGITS
    assert digit.duration is None or 0 <= digit.duration < 100_000


@SOME
@given(st.one_of(_ODD_DIGITS, st.just("9" * 400), st.just("1_000"), st.just("-5")))
def test_info_duration_must_be_ascii_digits(number: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_info_dtmf("application/dtmf-relay", f"Signal=5\r\nDuration={number}\r\n".encode())
