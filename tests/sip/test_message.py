"""SIP message parsing, serialization and stream framing: properties and examples."""

from __future__ import annotations

import itertools
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipcallhunt.errors import LocalProtocolError, SipParseError
from sipcallhunt.sip.message import (
    MAX_MESSAGE_SIZE,
    Headers,
    KeepAlive,
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    canonical_name,
    parse_message,
    reason_phrase,
)
from tests.sip.strategies import messages, mutated, wire_forms

# CI runs a modest number of examples; SIP_FUZZ_EXAMPLES=100000 runs the long local campaign.
_EXAMPLES = os.environ.get("SIP_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_EXAMPLES or "60"),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_CHEAP = settings(FUZZ, max_examples=int(_EXAMPLES or "1000"))

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


@FUZZ
@given(messages())
def test_serialize_then_parse_is_identity(message: SipMessage) -> None:
    assert parse_message(bytes(message)) == message
    assert parse_message(bytes(message), stream=True) == message


@FUZZ
@given(st.data())
def test_other_wire_spellings_parse_to_the_same_message(data: st.DataObject) -> None:
    message = data.draw(messages())
    wire = data.draw(wire_forms(message))
    assert parse_message(wire) == message


def _parse_or_parse_error(data: bytes) -> SipMessage | None:
    try:
        message = parse_message(data)
    except SipParseError as exc:
        assert exc.partial is None or isinstance(exc.partial, SipRequest)
        assert 100 <= exc.status <= 699
        return None
    # whatever parsed serializes to something that parses to the same value
    assert parse_message(bytes(message)) == message
    return message


@FUZZ_CHEAP
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    _parse_or_parse_error(data)


@FUZZ
@given(st.data())
def test_mutated_messages_parse_or_raise_sip_parse_error(data: st.DataObject) -> None:
    message = data.draw(messages())
    wire = data.draw(st.one_of(st.just(bytes(message)), wire_forms(message)))
    _parse_or_parse_error(data.draw(mutated(wire)))


@FUZZ
@given(st.data())
def test_mutated_streams_frame_or_raise_sip_parse_error(data: st.DataObject) -> None:
    wire = b"".join(bytes(m) for m in data.draw(st.lists(messages(), min_size=1, max_size=3)))
    framer = StreamFramer()
    try:
        for item in framer.feed(data.draw(mutated(wire))):
            assert isinstance(item, SipRequest | SipResponse | KeepAlive)
    except SipParseError:
        pass


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _feed_all(pieces: list[bytes]) -> list[SipMessage | KeepAlive]:
    framer = StreamFramer()
    out: list[SipMessage | KeepAlive] = []
    for piece in pieces:
        out += framer.feed(piece)
    assert framer.pending in (0, 2)  # at most a trailing lone CRLF (a pong) waits
    return out


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 3), messages()), min_size=1, max_size=4),
    st.integers(0, 3),
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_framing_is_independent_of_chunking(
    items: list[tuple[int, SipMessage]], trailing: int, cuts: list[int]
) -> None:
    stream = b""
    expected: list[SipMessage | KeepAlive] = []
    for pings, message in items:
        stream += b"\r\n\r\n" * pings + bytes(message)
        expected += [KeepAlive()] * pings + [message]
    stream += b"\r\n\r\n" * trailing
    expected += [KeepAlive()] * trailing
    assert _feed_all([stream]) == expected
    assert _feed_all(_chunks(stream, cuts)) == expected
    if len(stream) < 3000:
        assert _feed_all([stream[i : i + 1] for i in range(len(stream))]) == expected


def test_pong_is_skipped_and_a_lone_crlf_waits_for_more() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.pending == 2  # could be the start of a ping
    assert framer.feed(b"\r\n") == [KeepAlive()]
    assert framer.feed(b"\r\n" + INVITE) == [parse_message(INVITE)]


def test_oversized_datagram_is_513() -> None:
    big = INVITE.replace(b"Max-Forwards: 70\r\n", b"X-Pad: " + b"a" * MAX_MESSAGE_SIZE + b"\r\n")
    with pytest.raises(SipParseError) as info:
        parse_message(big)
    assert info.value.status == 513


def test_oversized_stream_message_is_513_as_soon_as_known() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(INVITE.replace(b"Content-Length: 4", b"Content-Length: 999999"))
    assert info.value.status == 513
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:  # a header section that never ends
        for _ in range(MAX_MESSAGE_SIZE // 1000 + 2):
            framer.feed(b"X-Pad: " + b"a" * 991 + b"\r\n")
    assert info.value.status == 513


def _time_byte_by_byte(size: int) -> float:
    data = b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: " + b"y" * size
    best = float("inf")
    for _ in range(3):
        framer = StreamFramer(max_size=10**9)
        start = time.perf_counter()
        for i in range(len(data)):
            framer.feed(data[i : i + 1])
        best = min(best, time.perf_counter() - start)
    return best


def test_stream_framing_is_not_quadratic() -> None:
    # Feeding a header section byte by byte must cost O(n): 4x the bytes, well under 16x the time.
    small, large = _time_byte_by_byte(20_000), _time_byte_by_byte(80_000)
    assert large < 8 * small


def test_parse_is_linear_in_header_count() -> None:
    def cost(count: int) -> float:
        data = INVITE.replace(b"Max-Forwards: 70\r\n", b"Supported: a\r\n" * count)
        start = time.perf_counter()
        parse_message(data)
        return time.perf_counter() - start

    # 16 times the headers: about 16 times the cost if linear, 256 times if quadratic.  The two sizes
    # are measured in turns and the best of each is kept, so a busy machine cannot fake a verdict.
    small, large = [], []
    for _ in range(7):
        small.append(cost(250))
        large.append(cost(4000))
    assert min(large) < 64 * min(small), (min(small), min(large))


def test_invite_example_fields() -> None:
    m = parse_message(INVITE)
    assert isinstance(m, SipRequest)
    assert m.method == "INVITE" and m.request_uri.user == "bob"
    assert m.to.display_name == "Bob" and m.from_.tag == "1928301774"
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert m.cseq.seq == 314159 and m.top_via.branch == "z9hG4bK776asdhds"
    assert m.content_type == "application/sdp" and m.body == b"v=0\n"
    assert "Content-Length" not in m.headers  # framing, not content
    assert bytes(m).endswith(b"Content-Length: 4\r\n\r\nv=0\n")


def test_compact_names_and_list_headers() -> None:
    wire = (
        b"REGISTER sip:pbx SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2\r\n"
        b"f: <sip:100@pbx>;tag=1\r\nt: <sip:100@pbx>\r\ni: x\r\nCSeq: 1 REGISTER\r\n"
        b'm: "A, B" <sip:100@h1>, <sip:100@h2>;expires=60\r\nk: path, outbound\r\nl: 0\r\n\r\n'
    )
    m = parse_message(wire)
    assert [v.host for v in m.vias] == ["a", "b"]
    assert [c.display_name for c in m.contacts] == ["A, B", None]
    assert m.header_tokens("Supported") == {"path", "outbound"}
    assert canonical_name("k") == "Supported" and canonical_name("CALL-ID") == "Call-ID"


def test_datagram_body_rules() -> None:
    no_length = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert parse_message(no_length).body == b"v=0\n"  # the rest of the datagram
    assert parse_message(no_length, stream=True).body == b""
    shorter = INVITE.replace(b"Content-Length: 4", b"Content-Length: 2")
    assert parse_message(shorter).body == b"v="
    with pytest.raises(SipParseError) as info:
        parse_message(INVITE.replace(b"Content-Length: 4", b"Content-Length: 5"))
    assert info.value.partial is not None and info.value.status == 400


def test_bare_lf_and_leading_crlf_are_tolerated() -> None:
    lf = b"\r\n\r\n" + INVITE.replace(b"\r\n", b"\n")
    m = parse_message(lf)
    assert isinstance(m, SipRequest) and m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"


@pytest.mark.parametrize(
    ("data", "status", "partial"),
    [
        (b"", 400, False),
        (b"\r\n\r\n", 400, False),
        (b"\xff\xfe", 400, False),
        (INVITE.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), 505, True),
        (INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400, True),
        (INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400, True),
        (INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), 400, True),
        (INVITE.replace(b"Call-ID: a84", b"Call-ID: a 84"), 400, True),
        (INVITE.replace(b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", b""), 400, True),
        (INVITE.replace(b"To: Bob", b"To: Bob\x00"), 400, True),
        (INVITE.replace(b"Max-Forwards: 70", b"X-A: a\rb"), 400, True),  # a bare CR inside a value
        (b"SIP/2.0 200 O\rK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", 400, False),
        (b"SIP/2.0 99 Too Small\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n", 400, False),
        (b"SIP/2.0 200OK\r\n\r\n", 400, False),
        (b"NOT A SIP MESSAGE", 400, False),
    ],
)
def test_errors(data: bytes, status: int, partial: bool) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == status
    assert (info.value.partial is not None) is partial


@pytest.mark.parametrize(
    "message",
    [
        SipResponse(200, "OK\r\nX-Injected: 1"),
        SipResponse(200, "OK", Headers.of([("Subject", "hi\r\nContact: <sip:evil@x>")])),
        SipResponse(200, "OK", Headers.of([("Subject", "a\rb")])),
        SipRequest("BYE", "sip:a@b\n", Headers()),
    ],
)
def test_serializing_a_line_break_is_our_bug(message: SipMessage) -> None:
    with pytest.raises(LocalProtocolError):
        bytes(message)


def test_headers_api() -> None:
    h = Headers.of([("v", "SIP/2.0/UDP a"), ("Via", "SIP/2.0/UDP b"), ("X-A", "1")])
    assert h.get("VIA") == "SIP/2.0/UDP a" and h.get_all("v") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert h.prepended("Via", "SIP/2.0/UDP z").get_all("Via")[0] == "SIP/2.0/UDP z"
    assert h.with_("Via", ["SIP/2.0/UDP c"]).items == (("Via", "SIP/2.0/UDP c"), ("X-A", "1"))
    assert h.without("via").items == (("X-A", "1"),)
    assert "x-a" not in h.without("X-A") and len(h.appended("X-B", "2")) == 4


def test_response_helpers() -> None:
    assert reason_phrase(486) == "Busy Here" and reason_phrase(499) == "Bad Request"
    r = SipResponse(180, "Ringing")
    assert r.is_provisional and r.start_line() == "SIP/2.0 180 Ringing"


def test_public_names_exist() -> None:
    import importlib

    for module in ("message", "uri", "sdp", "digest"):
        mod = importlib.import_module(f"sipcallhunt.sip.{module}")
        for name in mod.__all__:
            assert hasattr(mod, name), f"{module}.{name}"
