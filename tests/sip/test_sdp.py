"""SDP parse/serialize (RFC 4566) and offer/answer (RFC 3264) against SDPs as real peers write them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcallhunt.errors import SdpError
from sipcallhunt.sip.sdp import (
    Connection,
    Direction,
    Fmtp,
    MediaDescription,
    NegotiatedMedia,
    RtpMap,
    SessionDescription,
    accept_answer,
    answer_offer,
    build_offer,
    parse_sdp,
)
from tests.sip.strategies import session_descriptions


def sdp(text: str) -> bytes:
    return "".join(line.strip() + "\r\n" for line in text.strip().splitlines()).encode()


ASTERISK = sdp("""
    v=0
    o=- 1785286476 1785286476 IN IP4 192.0.2.10
    s=Asterisk
    c=IN IP4 192.0.2.10
    t=0 0
    m=audio 17014 RTP/AVP 0 8 3 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:3 GSM/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=maxptime:150
    a=sendrecv
""")

FREESWITCH = sdp("""
    v=0
    o=FreeSWITCH 1700000000 1700000001 IN IP4 198.51.100.5
    s=FreeSWITCH
    c=IN IP4 198.51.100.5
    t=0 0
    m=audio 24542 RTP/AVP 8 0 9 102 13
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:9 G722/8000
    a=rtpmap:102 telephone-event/8000
    a=fmtp:102 0-16
    a=rtpmap:13 CN/8000
    a=ptime:30
    a=sendrecv
    a=rtcp:24543 IN IP4 198.51.100.5
""")

BARESIP = sdp("""
    v=0
    o=- 2890844526 2890844527 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 10000 RTP/AVP 96 9 0 8 101
    b=AS:128
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 stereo=1;sprop-stereo=1
    a=rtpmap:9 G722/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtcp-mux
    a=ptime:20
    a=sendrecv
    a=label:1
""")

SIPP = sdp("""
    v=0
    o=user1 53655765 2353687637 IN IP4 127.0.0.1
    s=-
    c=IN IP4 127.0.0.1
    t=0 0
    m=audio 6000 RTP/AVP 0
    a=rtpmap:0 PCMU/8000
""")

LINPHONE_IPV6 = sdp("""
    v=0
    o=bob 1234 5678 IN IP6 2001:db8::10
    s=Talk
    c=IN IP6 2001:db8::10
    t=0 0
    a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
    m=audio 7078 RTP/AVP 96 97 98 0 8 101 99 100
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1
    a=rtpmap:97 speex/16000
    a=fmtp:97 vbr=on
    a=rtpmap:98 speex/8000
    a=fmtp:98 vbr=on
    a=rtpmap:101 telephone-event/48000
    a=rtpmap:99 telephone-event/16000
    a=rtpmap:100 telephone-event/8000
    a=rtcp-fb:* trr-int 1000
    a=rtcp-fb:* ccm tmmbr
""")

CISCO = sdp("""
    v=0
    o=CiscoSystemsSIP-GW-UserAgent 5740 2727 IN IP4 203.0.113.1
    s=SIP Call
    c=IN IP4 203.0.113.1
    t=0 0
    m=audio 16384 RTP/AVP 18 0 8 101
    c=IN IP4 203.0.113.2
    a=rtpmap:18 G729/8000
    a=fmtp:18 annexb=no
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=ptime:20
""")

CISCO_OLD_HOLD = CISCO.replace(b"c=IN IP4 203.0.113.2", b"c=IN IP4 0.0.0.0")

REAL_WORLD = [ASTERISK, FREESWITCH, BARESIP, SIPP, LINPHONE_IPV6, CISCO, CISCO_OLD_HOLD]

HEAD = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"


def our_answer(offer: SessionDescription, **kwargs: str) -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer as the hotline at 192.0.2.99:40000 would."""
    return answer_offer(offer, address="192.0.2.99", port=40000, session_id=77, session_version=1, **kwargs)


@pytest.mark.parametrize("body", REAL_WORLD)
def test_real_world_sdp_round_trips(body: bytes) -> None:
    sd = parse_sdp(body)
    assert parse_sdp(bytes(sd)) == sd


def test_parse_fields() -> None:
    sd = parse_sdp(FREESWITCH)
    assert sd.origin.username == "FreeSWITCH"
    assert (sd.origin.session_id, sd.origin.session_version) == (1700000000, 1700000001)
    assert sd.session_name == "FreeSWITCH"
    assert sd.connection == Connection("198.51.100.5")
    (audio,) = sd.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 24542, "RTP/AVP")
    assert audio.formats == ("8", "0", "9", "102", "13")
    assert audio.rtpmap[0] == RtpMap(8, "PCMA", 8000)
    assert audio.fmtp == (Fmtp(102, "0-16"),)
    assert audio.ptime == 30
    assert audio.direction is Direction.SENDRECV
    assert audio.attributes == (("rtcp", "24543 IN IP4 198.51.100.5"),)
    assert not audio.rtcp_mux


def test_parse_keeps_unknown_lines_and_attributes() -> None:
    sd = parse_sdp(BARESIP)
    (audio,) = sd.media
    assert audio.bandwidths == ("AS:128",)
    assert audio.rtcp_mux
    assert ("label", "1") in audio.attributes
    assert audio.rtpmap[0] == RtpMap(96, "opus", 48000, 2)
    assert audio.fmtp_of(96) == "stereo=1;sprop-stereo=1"
    linphone = parse_sdp(LINPHONE_IPV6)
    assert linphone.attributes[0][0] == "rtcp-xr"
    assert linphone.connection == Connection("2001:db8::10", "IP6")


def test_trailing_blanks_and_bare_lf_are_tolerated() -> None:
    sd = parse_sdp(ASTERISK.replace(b"\r\n", b" \n"))
    assert sd == parse_sdp(ASTERISK)
    assert sd.media[0].direction is Direction.SENDRECV


def test_static_payload_types_need_no_rtpmap() -> None:
    sd = parse_sdp(sdp(HEAD + "m=audio 5004 RTP/AVP 8"))
    answer, media = our_answer(sd)
    assert (media.codec, media.payload_type, media.dtmf_payload_type) == ("PCMA", 8, None)
    assert answer.media[0].formats == ("8",)


@pytest.mark.parametrize(
    ("body", "codec", "pt", "dtmf", "host", "port", "ptime"),
    [
        (ASTERISK, "PCMU", 0, 101, "192.0.2.10", 17014, 20),
        (FREESWITCH, "PCMA", 8, 102, "198.51.100.5", 24542, 30),  # offerer's order: PCMA first
        (BARESIP, "PCMU", 0, 101, "127.0.0.1", 10000, 20),
        (SIPP, "PCMU", 0, None, "127.0.0.1", 6000, 20),
        (LINPHONE_IPV6, "PCMU", 0, 100, "2001:db8::10", 7078, 20),  # the 8 kHz telephone-event
        (CISCO, "PCMU", 0, 101, "203.0.113.2", 16384, 20),  # media-level c= wins
    ],
)
def test_answer_real_world_offers(  # noqa: PLR0917 - one parameter per column
    body: bytes, codec: str, pt: int, dtmf: int | None, host: str, port: int, ptime: int
) -> None:
    offer = parse_sdp(body)
    answer, media = our_answer(offer)
    assert media == NegotiatedMedia(
        remote_host=host,
        remote_port=port,
        codec=codec,
        payload_type=pt,
        dtmf_payload_type=dtmf,
        ptime=ptime,
        direction=Direction.SENDRECV,
        on_hold=False,
    )
    (audio,) = answer.media
    assert audio.port == 40000
    assert audio.payload_types == [pt] + ([dtmf] if dtmf is not None else [])
    assert not audio.rtcp_mux  # we never multiplex RTCP (RFC 5761 §5.1.1: omit to decline)
    assert answer.connection == Connection("192.0.2.99")
    assert answer.origin.session_id == 77
    # The answer is valid SDP and reads back as the same media from the offerer's side.
    again = parse_sdp(bytes(answer))
    assert again == answer
    theirs = accept_answer(offer, answer)
    assert (theirs.codec, theirs.payload_type, theirs.dtmf_payload_type) == (codec, pt, dtmf)
    assert (theirs.remote_host, theirs.remote_port) == ("192.0.2.99", 40000)


def test_codec_preference_is_the_offerers() -> None:
    offer = build_offer(address="192.0.2.1", port=5000, session_id=1, session_version=1, codecs=("PCMA", "PCMU"))
    _, media = our_answer(offer)
    assert media.codec == "PCMA"
    _, media = answer_offer(offer, address="192.0.2.99", port=40000, session_id=77, session_version=1, codecs=("PCMU",))
    assert media.codec == "PCMU"


def test_other_streams_are_rejected_with_port_zero() -> None:
    body = sdp("""
        v=0
        o=- 1 1 IN IP4 192.0.2.1
        s=-
        c=IN IP4 192.0.2.1
        t=0 0
        m=video 5006 RTP/AVP 96
        a=rtpmap:96 H264/90000
        m=audio 5004 RTP/SAVP 0
        m=audio 5008 RTP/AVP 0 8 101
        a=rtpmap:101 telephone-event/8000
        m=audio 5010 RTP/AVP 0
        m=application 5012 UDP/BFCP *
    """)
    offer = parse_sdp(body)
    answer, media = our_answer(offer)
    assert [(m.media, m.port, m.proto) for m in answer.media] == [
        ("video", 0, "RTP/AVP"),
        ("audio", 0, "RTP/SAVP"),
        ("audio", 40000, "RTP/AVP"),
        ("audio", 0, "RTP/AVP"),
        ("application", 0, "UDP/BFCP"),
    ]
    assert answer.media[0].formats == ("96",) and answer.media[4].formats == ("*",)
    assert media.remote_port == 5008
    assert parse_sdp(bytes(answer)) == answer


@pytest.mark.parametrize(
    "body",
    [
        sdp(HEAD + "m=audio 5004 RTP/AVP 18\na=rtpmap:18 G729/8000"),
        sdp(HEAD + "m=audio 5004 RTP/SAVP 0"),
        sdp(HEAD + "m=audio 0 RTP/AVP 0"),
        sdp(HEAD + "m=video 5004 RTP/AVP 0"),
        sdp("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 5004 RTP/AVP 0"),  # no c= at all
        sdp("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0"),
        # PCMU at 16 kHz is not G.711
        sdp(HEAD + "m=audio 5004 RTP/AVP 96\na=rtpmap:96 PCMU/16000"),
    ],
)
def test_unusable_offers_are_488(body: bytes) -> None:
    with pytest.raises(SdpError) as info:
        our_answer(parse_sdp(body))
    assert info.value.status == 488


def test_dynamic_payload_type_for_pcmu() -> None:
    body = sdp(
        "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5004 RTP/AVP 97\na=rtpmap:97 pcmu/8000"
    )
    _, media = our_answer(parse_sdp(body))
    assert (media.codec, media.payload_type) == ("PCMU", 97)


@pytest.mark.parametrize(
    ("offered", "ours", "answered", "hold"),
    [
        ("sendrecv", "sendrecv", "sendrecv", False),
        ("sendonly", "recvonly", "recvonly", True),
        ("recvonly", "sendonly", "sendonly", False),
        ("inactive", "inactive", "inactive", True),
    ],
)
def test_direction_answer_rfc3264_6_1(offered: str, ours: str, answered: str, hold: bool) -> None:
    offer = build_offer(address="192.0.2.1", port=5000, session_id=1, session_version=1, direction=offered)
    answer, media = our_answer(offer)
    assert media.direction == ours
    assert media.on_hold is hold
    assert answer.media[0].direction == answered


def test_session_level_direction_applies_when_media_has_none() -> None:
    body = sdp(HEAD + "a=sendonly\nm=audio 5004 RTP/AVP 0")
    offer = parse_sdp(body)
    assert offer.direction is Direction.SENDONLY and offer.media[0].direction is None
    _, media = our_answer(offer)
    assert media.direction is Direction.RECVONLY and media.on_hold


def test_old_style_hold_with_zero_address() -> None:
    offer = parse_sdp(CISCO_OLD_HOLD)
    answer, media = our_answer(offer)
    assert media.on_hold
    assert media.direction is Direction.RECVONLY  # never send to 0.0.0.0
    assert answer.media[0].direction is Direction.RECVONLY


def test_we_can_ask_for_a_direction() -> None:
    offer = parse_sdp(ASTERISK)
    answer, media = our_answer(offer, direction="sendonly")
    assert media.direction is Direction.SENDONLY
    assert answer.media[0].direction is Direction.SENDONLY


def test_build_offer_shape() -> None:
    offer = build_offer(address="2001:db8::5", port=30000, session_id=9, session_version=3, ptime=30)
    text = str(offer)
    assert "o=- 9 3 IN IP6 2001:db8::5\r\n" in text
    assert "c=IN IP6 2001:db8::5\r\n" in text
    assert "m=audio 30000 RTP/AVP 0 8 101\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n" in text
    assert "a=ptime:30\r\n" in text and text.endswith("a=sendrecv\r\n")
    no_dtmf = build_offer(address="192.0.2.1", port=1, session_id=1, session_version=1, dtmf_payload_type=None)
    assert no_dtmf.media[0].formats == ("0", "8")
    with pytest.raises(ValueError, match="codecs"):
        build_offer(address="192.0.2.1", port=1, session_id=1, session_version=1, codecs=("G729",))


def test_accept_answer() -> None:
    offer = build_offer(address="192.0.2.1", port=5000, session_id=1, session_version=1)
    answer = parse_sdp(
        sdp("""
        v=0
        o=- 5 5 IN IP4 198.51.100.7
        s=-
        c=IN IP4 198.51.100.7
        t=0 0
        m=audio 7000 RTP/AVP 8 101
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=ptime:40
        a=recvonly
    """)
    )
    media = accept_answer(offer, answer)
    assert media == NegotiatedMedia(
        remote_host="198.51.100.7",
        remote_port=7000,
        codec="PCMA",
        payload_type=8,
        dtmf_payload_type=101,
        ptime=40,
        direction=Direction.SENDONLY,
        on_hold=False,
    )


def test_accept_answer_refusals() -> None:
    offer = build_offer(address="192.0.2.1", port=5000, session_id=1, session_version=1)
    refused = attrs_evolve_port(offer.media[0], 0)
    with pytest.raises(SdpError) as info:
        accept_answer(offer, SessionDescription(origin=offer.origin, connection=offer.connection, media=(refused,)))
    assert info.value.status == 488
    with pytest.raises(SdpError):
        accept_answer(offer, SessionDescription(origin=offer.origin, connection=offer.connection, media=()))


def attrs_evolve_port(media: MediaDescription, port: int) -> MediaDescription:
    import attrs

    return attrs.evolve(media, port=port)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"hello",
        b"v=1\r\n",
        b"v=0\r\ns=-\r\n",  # no o=
        b"v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio port RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nthis is not sdp\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n\xff=\r\n",
    ],
)
def test_garbage_is_400(body: bytes) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(body)
    assert info.value.status == 400


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_sdp_error(body: bytes) -> None:
    try:
        sd = parse_sdp(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n" + body)
    except SdpError:
        return
    assert parse_sdp(bytes(sd)) == sd


@given(session_descriptions())
def test_generated_sdp_round_trips(sd: SessionDescription) -> None:
    assert parse_sdp(bytes(sd)) == sd


@given(session_descriptions())
def test_answering_any_sdp_gives_an_answer_or_488(sd: SessionDescription) -> None:
    try:
        answer, media = our_answer(sd)
    except SdpError as exc:
        assert exc.status == 488
        return
    assert len(answer.media) == len(sd.media)
    assert sum(1 for m in answer.media if m.port != 0) == 1
    assert parse_sdp(bytes(answer)) == answer
    assert media.codec in ("PCMU", "PCMA")
