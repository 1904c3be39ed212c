"""RFC 4733 telephone-events: the receiver reports each key once, the sender's packets parse back."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipcallhunt.errors import MediaError, RtpError
from sipcallhunt.media import dtmf
from sipcallhunt.media.dtmf import (
    DTMF_DIGITS,
    EVENT_KEY_LIFETIME,
    MAX_EVENT_KEYS,
    DtmfDigit,
    Rfc4733Receiver,
    parse_rfc4733_payload,
    rfc4733_packets,
)
from sipcallhunt.media.rtp import RtpPacket, seq_diff
from sipcallhunt.records import DtmfMethod
from tests.media.fixtures import FIXTURES, read_pcap_udp
from tests.media.strategies import digit_strings, u16, u32

PT = 101


def event_packet(
    event: int,
    timestamp: int,
    *,
    end: bool = False,
    duration: int = 160,
    ssrc: int = 7,
    sequence: int = 0,
    payload_type: int = PT,
) -> RtpPacket:
    payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
    return RtpPacket(payload_type=payload_type, sequence=sequence, timestamp=timestamp, ssrc=ssrc, payload=payload)


def test_exports() -> None:
    for name in dtmf.__all__:
        assert hasattr(dtmf, name)


def test_sender_layout() -> None:
    packets = rfc4733_packets("5", payload_type=PT, ssrc=9, first_sequence=65534, timestamp=4000)
    offsets = [offset for offset, _ in packets]
    assert offsets == pytest.approx([i * 0.02 for i in range(10)])
    events = [parse_rfc4733_payload(p.payload) for _, p in packets]
    assert [p.marker for _, p in packets] == [True] + [False] * 9
    assert {e.event for e in events} == {5}
    assert {p.timestamp for _, p in packets} == {4000}
    assert [e.end for e in events] == [False] * 7 + [True] * 3
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 960, 1120, 1280, 1280, 1280]
    assert {e.volume for e in events} == {10}
    sequences = [p.sequence for _, p in packets]
    assert sequences == [65534, 65535, 0, 1, 2, 3, 4, 5, 5, 5]


def test_sender_short_event_is_only_end_packets() -> None:
    packets = rfc4733_packets("#", payload_type=96, ssrc=1, first_sequence=10, timestamp=0, duration_ms=20)
    assert len(packets) == 3
    assert all(parse_rfc4733_payload(p.payload).end for _, p in packets)
    assert [p.marker for _, p in packets] == [True, False, False]
    assert {p.sequence for _, p in packets} == {10}


@pytest.mark.parametrize(
    "kwargs",
    [{"digit": "E"}, {"digit": "12"}, {"volume": 64}, {"duration_ms": 0}, {"packet_ms": 0}, {"duration_ms": 9000}],
)
def test_sender_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"digit": "1", "payload_type": PT, "ssrc": 1, "first_sequence": 0, "timestamp": 0}
    with pytest.raises(MediaError):
        rfc4733_packets(**(args | kwargs))  # type: ignore[arg-type]


@given(st.sampled_from(DTMF_DIGITS), u16, u32, st.integers(min_value=20, max_value=2000))
def test_sender_output_parsed_back(digit: str, sequence: int, timestamp: int, duration_ms: int) -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    packets = rfc4733_packets(
        digit, payload_type=PT, ssrc=3, first_sequence=sequence, timestamp=timestamp, duration_ms=duration_ms
    )
    got: list[DtmfDigit] = []
    for offset, packet in packets:
        got += receiver.receive(RtpPacket.parse(packet.serialize()), offset)
    # the duration is known at the first packet only when it is already an end packet
    known = duration_ms / 1000 if duration_ms <= 20 else None
    assert got == [DtmfDigit(digit, DtmfMethod.RFC4733, known)]
    assert parse_rfc4733_payload(packets[-1][1].payload).duration == duration_ms * 8
    assert seq_diff(packets[-1][1].sequence, sequence) == len(packets) - 3


def _stream(digits: str, first_timestamp: int, gaps: list[int]) -> list[list[tuple[float, RtpPacket]]]:
    """The packets of each digit, one list per digit, with arrival times on one clock."""
    out = []
    sequence, timestamp, start = 100, first_timestamp, 0.0
    for digit, gap in zip(digits, gaps, strict=False):
        packets = rfc4733_packets(digit, payload_type=PT, ssrc=42, first_sequence=sequence, timestamp=timestamp)
        out.append([(start + offset, packet) for offset, packet in packets])
        sequence += len(packets) - 2
        timestamp = (timestamp + 8 * (180 + gap)) & 0xFFFFFFFF
        start += 0.18 + gap / 1000
    return out


@st.composite
def damaged(draw: st.DrawFn, *, across_events: bool) -> tuple[str, list[tuple[float, RtpPacket]]]:
    """A digit sequence's packets after random loss, duplication and reordering, and the digits that survive.

    Within one event the packets are permuted; ``across_events`` adds up to 1.5 s of random delay to
    every packet, so packets of neighbouring events overtake each other too.
    """
    digits = draw(digit_strings)
    gaps = draw(st.lists(st.integers(min_value=40, max_value=3000), min_size=len(digits), max_size=len(digits)))
    first = draw(st.sampled_from([0, 123456, 0xFFFFFFFF - 2000]))
    expected = ""
    arrivals: list[tuple[float, RtpPacket]] = []
    for digit, packets in zip(digits, _stream(digits, first, gaps), strict=True):
        lost = draw(st.integers(min_value=0, max_value=(1 << len(packets)) - 1))
        doubled = draw(st.integers(min_value=0, max_value=(1 << len(packets)) - 1))
        kept = [p for i, p in enumerate(packets) if not lost >> i & 1]
        group = kept + [p for i, p in enumerate(packets) if not lost >> i & 1 and doubled >> i & 1]
        order = draw(st.permutations(range(len(group))))
        times = sorted(t for t, _ in group)
        arrivals += [(t, group[i][1]) for t, i in zip(times, order, strict=True)]
        if kept:
            expected += digit
    if across_events:
        delays = draw(st.lists(st.floats(min_value=0, max_value=1.5), min_size=len(arrivals), max_size=len(arrivals)))
        arrivals = sorted(((t + d, p) for (t, p), d in zip(arrivals, delays, strict=True)), key=lambda a: a[0])
    return expected, arrivals


@settings(max_examples=200, deadline=None)
@given(damaged(across_events=False))
def test_loss_duplication_reordering_each_digit_once_in_order(case: tuple[str, list[tuple[float, RtpPacket]]]) -> None:
    expected, arrivals = case
    receiver = Rfc4733Receiver(payload_type=PT)
    got = "".join(d.digit for t, p in arrivals for d in receiver.receive(p, t))
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(damaged(across_events=True))
def test_reordering_across_events_each_digit_once(case: tuple[str, list[tuple[float, RtpPacket]]]) -> None:
    expected, arrivals = case
    receiver = Rfc4733Receiver(payload_type=PT)
    got = "".join(d.digit for t, p in arrivals for d in receiver.receive(p, t))
    assert sorted(got) == sorted(expected)


def test_lost_start_reported_from_end_packet_with_duration() -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    assert receiver.receive(event_packet(11, 800, end=True, duration=1120), 0.0) == [
        DtmfDigit("#", DtmfMethod.RFC4733, 0.14)
    ]
    assert receiver.receive(event_packet(11, 800, end=True, duration=1120), 0.001) == []


def test_same_digit_twice_is_two_events() -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    first = receiver.receive(event_packet(1, 1000), 0.0)
    second = receiver.receive(event_packet(1, 5000), 0.5)
    assert [d.digit for d in first + second] == ["1", "1"]


def test_same_timestamp_other_ssrc_is_another_event() -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    got = receiver.receive(event_packet(2, 1000, ssrc=1), 0.0) + receiver.receive(event_packet(2, 1000, ssrc=2), 0.0)
    assert [d.digit for d in got] == ["2", "2"]


@pytest.mark.parametrize("event", [16, 17, 32, 255])
def test_non_digit_events_ignored(event: int) -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    assert receiver.receive(event_packet(event, 1000), 0.0) == []
    assert receiver.receive(event_packet(event, 1000, end=True), 0.02) == []
    assert [d.digit for d in receiver.receive(event_packet(12, 2000), 0.5)] == ["A"]


def test_other_payload_types_ignored() -> None:
    receiver = Rfc4733Receiver(payload_type=96)
    assert receiver.receive(event_packet(1, 0, payload_type=0), 0.0) == []
    assert receiver.receive(RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=1, payload=b""), 0.0) == []
    assert [d.digit for d in receiver.receive(event_packet(1, 0, payload_type=96), 0.0)] == ["1"]


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x8a\x00"])
def test_short_payload_raises(payload: bytes) -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    with pytest.raises(RtpError, match="telephone-event payload"):
        receiver.receive(RtpPacket(payload_type=PT, sequence=0, timestamp=0, ssrc=1, payload=payload), 0.0)


def test_memory_bounded_and_late_duplicates_not_reported_again() -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    now, reported = 0.0, 0
    for index in range(1000):
        reported += len(receiver.receive(event_packet(index % 10, index * 2400), now))
        now += 0.3
        assert len(receiver._events) <= MAX_EVENT_KEYS
    assert reported == 1000
    # a very late duplicate of an event long forgotten is not a new digit
    assert (7, 950 * 2400) not in receiver._events
    assert receiver.receive(event_packet(0, 950 * 2400), now) == []
    assert receiver.receive(event_packet(5, 995 * 2400), now + EVENT_KEY_LIFETIME + 2) == []
    # but the stream goes on
    assert len(receiver.receive(event_packet(4, 1000 * 2400), now + 10)) == 1


def test_expired_keys_forgotten_by_time() -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    receiver.receive(event_packet(1, 1000), 0.0)
    receiver.receive(event_packet(2, 9000), EVENT_KEY_LIFETIME + 1.5)
    assert list(receiver._events) == [(7, 9000)]
    assert receiver.receive(event_packet(1, 1000), EVENT_KEY_LIFETIME + 1.6) == []


def test_timestamp_restart_far_behind_is_a_new_event() -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    receiver.receive(event_packet(1, 10_000_000), 0.0)
    receiver.receive(event_packet(1, 10_000_000), 20.0)  # forgotten by now
    receiver.receive(event_packet(2, 10_002_000), 20.0)
    assert [d.digit for d in receiver.receive(event_packet(3, 500), 30.0)] == ["3"]


def test_long_event_continues_in_a_new_segment() -> None:
    # RFC 4733 §2.5.1.3: the duration saturates at 0xFFFF and a new segment starts at ts + 0xFFFF
    receiver = Rfc4733Receiver(payload_type=PT)
    assert len(receiver.receive(event_packet(0, 1000, duration=400), 0.0)) == 1
    for step in range(1, 165):  # an update every 50 ms until the duration saturates after 8.19 s
        duration = min(400 * (step + 1), 0xFFFF)
        assert receiver.receive(event_packet(0, 1000, duration=duration), step * 0.05) == []
    assert duration == 0xFFFF
    assert receiver.receive(event_packet(0, 1000 + 0xFFFF, duration=160), 8.25) == []
    assert receiver.receive(event_packet(0, 1000 + 0xFFFF, end=True, duration=800), 8.35) == []
    # after an ended segment the same key is a new press
    assert len(receiver.receive(event_packet(0, 1000 + 0xFFFF + 2000), 9.0)) == 1


@pytest.mark.parametrize(
    ("name", "digit"), [("dtmf_2833_1.pcap", "1"), ("dtmf_2833_pound.pcap", "#"), ("dtmf_2833_star.pcap", "*")]
)
def test_sipp_captures(name: str, digit: str) -> None:
    receiver = Rfc4733Receiver(payload_type=PT)
    datagrams = read_pcap_udp(FIXTURES / name)
    assert len(datagrams) == 10
    got = [d for t, data in datagrams for d in receiver.receive(RtpPacket.parse(data), t)]
    assert got == [DtmfDigit(digit, DtmfMethod.RFC4733, None)]
    # the same capture with its start lost still gives the digit, with the end packet's duration
    receiver = Rfc4733Receiver(payload_type=PT)
    got = [d for t, data in datagrams[-3:] for d in receiver.receive(RtpPacket.parse(data), t)]
    # these captures count 320 duration units per 20 ms packet, so their end packets say 2240 (0.28 s)
    assert got == [DtmfDigit(digit, DtmfMethod.RFC4733, 2240 / 8000)]
