"""Bounded mutation fuzzer for every parser that reads what a peer sends.

    python -m benchmarks.fuzz                         # 1,000,000 inputs for each target, one after another
    python -m benchmarks.fuzz --target sdp --inputs 200000 --seed 7
    python -m benchmarks.fuzz --seconds 60            # at most a minute per target
    python -m benchmarks.fuzz --smoke                 # 3,000 inputs per target, a few seconds in all

Targets and the one error each may raise (anything else is a finding):

==============  ===========================================================  =====================
target          what runs                                                    own error
==============  ===========================================================  =====================
sip-message     ``parse_message`` + the typed accessors a user agent reads   ``SipParseError``
sip-stream      ``StreamFramer.feed`` whole and in pieces                    ``SipParseError``
sip-uri         ``SipUri``/``NameAddr``/``Via``/``CSeq.parse``, list split   ``SipParseError``
sdp             ``parse_sdp``, ``answer_offer``, ``accept_answer``           ``SdpError``
rtp             ``RtpPacket.parse``, ``payload_bounds``, ``peek_header``     ``RtpError``
rtcp            ``parse_compound``                                           ``RtpError``
rfc4733         ``parse_rfc4733_payload``, ``Rfc4733Receiver.receive``       ``RtpError``
sip-info        ``parse_info_dtmf``                                          ``RemoteProtocolError``
digest          a 401/407 with this challenge value: ``challenges_of``,      ``SipParseError``
                ``DigestSession``, the authorised request serialised and
                parsed back (realm, nonce and opaque must survive quoting)
==============  ===========================================================  =====================

Inputs come from a seed corpus (valid messages as sipp, baresip, Asterisk and Kamailio send them,
the RFC 4475 torture messages of ``tests/sip/torture``, SDP offers, RTP/RTCP packets from the
captures of ``tests/media/fixtures``, and every file already in ``tests/fuzz/corpus/<target>``),
changed by one to eight stacked mutations (bit flips, interesting bytes, truncation, splicing,
duplicated/deleted/swapped lines, folding, CRLF variants, odd whitespace, non-UTF-8 octets, huge
and non-ASCII numbers, Content-Length games, RTP/RTCP field and length games), or generated from
a small grammar of each format.  Inputs that parse are fed back into the pool, so mutations go
deeper than one step from a seed.

Besides exceptions, each target checks what its API promises: a parsed value serializes and
parses back to the same value (SIP message, URI values, SDP, RTP byte-exact, RTCP), the TCP
framer gives the same messages however the stream is cut, ``payload_bounds`` agrees with
``RtpPacket.parse``, a duplicated telephone-event packet never yields a second digit.  An input
that takes more than a second (twice) is a finding too.

Each new finding is shrunk (chunks and lines removed while the same failure remains), saved as
``tests/fuzz/corpus/<target>/<kind>-<hash>`` (unless ``--no-save``) and printed.  The exit
status is 1 when anything was found.  Runs are deterministic for a given ``--seed`` (a
``--seconds`` cap only shortens them).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import random
import re
import struct
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from benchmarks.machine import print_header
from sipcallhunt.errors import RemoteProtocolError, RtpError, SdpError, SipParseError
from sipcallhunt.media.dtmf import (
    DTMF_DIGITS,
    MAX_EVENT_KEYS,
    Rfc4733Receiver,
    parse_info_dtmf,
    parse_rfc4733_payload,
    rfc4733_packets,
)
from sipcallhunt.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_report,
    parse_compound,
    serialize_compound,
)
from sipcallhunt.media.rtp import RtpPacket, is_rtcp, payload_bounds, peek_header
from sipcallhunt.sip.message import MAX_MESSAGE_SIZE, KeepAlive, SipRequest, StreamFramer, parse_message
from sipcallhunt.sip.sdp import accept_answer, answer_offer, build_offer, parse_sdp
from sipcallhunt.sip.uri import CSeq, NameAddr, SipUri, Via, generic_params, split_comma_list

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fuzz" / "corpus"
TORTURE = ROOT / "tests" / "sip" / "torture"
MEDIA_FIXTURES = ROOT / "tests" / "media" / "fixtures"

SLOW_SECONDS = 1.0
POOL_LIMIT = 4000
MAX_RECORDS = 40  # datagrams per rfc4733 input


class RoundTripError(Exception):
    """A parsed value that does not survive serialize → parse, or an API that contradicts another."""


# -- seeds ---------------------------------------------------------------------------------------

SDP_SIPP = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)
SDP_BARESIP = (
    b"v=0\r\n"
    b"o=- 1243158411 2968547316 IN IP4 192.0.2.33\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.33\r\n"
    b"t=0 0\r\n"
    b"m=audio 10766 RTP/AVP 96 97 9 0 8 101\r\n"
    b"b=AS:64\r\n"
    b"a=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 stereo=1;sprop-stereo=1\r\n"
    b"a=rtpmap:97 L16/8000\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=sendrecv\r\n"
    b"a=label:1\r\n"
    b"a=ssrc:3485745231 cname:e9d1fc2bff0a3f77\r\n"
    b"a=rtcp-rsize\r\n"
    b"a=ptime:20\r\n"
)
SDP_ASTERISK = (
    b"v=0\r\n"
    b"o=- 1785286476 1785286478 IN IP4 192.0.2.10\r\n"
    b"s=Asterisk\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 17014 RTP/AVP 8 0 3 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:3 GSM/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=maxptime:150\r\n"
    b"a=sendrecv\r\n"
)
SDP_ICE = (
    b"v=0\r\n"
    b"o=FreeSWITCH 1632033305 1632033306 IN IP6 2001:db8::5\r\n"
    b"s=FreeSWITCH\r\n"
    b"i=hotline call\r\n"
    b"u=http://www.example.com/seminars/sdp.pdf\r\n"
    b"e=j.doe@example.com (Jane Doe)\r\n"
    b"c=IN IP6 2001:db8::5\r\n"
    b"b=CT:128\r\n"
    b"t=2873397496 2873404696\r\n"
    b"r=7d 1h 0 25h\r\n"
    b"z=2882844526 -1h 2898848070 0\r\n"
    b"a=msid-semantic: WMS\r\n"
    b"a=recvonly\r\n"
    b"m=audio 0 RTP/SAVPF 111\r\n"
    b"a=rtpmap:111 opus/48000/2\r\n"
    b"m=audio 31414 RTP/AVPF 0 8 101 13\r\n"
    b"c=IN IP4 224.2.1.1/127/3\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=rtcp:31415 IN IP4 198.51.100.7\r\n"
    b"a=rtcp-mux\r\n"
    b"a=ice-ufrag:8hhY\r\n"
    b"a=ice-pwd:asd88fgpdd777uzjYhagZg\r\n"
    b"a=candidate:1 1 UDP 2130706431 198.51.100.7 31414 typ host\r\n"
    b"a=inactive\r\n"
    b"a=ptime:30.0\r\n"
    b"m=video 51372 RTP/AVP 99\r\n"
    b"a=rtpmap:99 h263-1998/90000\r\n"
)
SDP_HOLD = b"v=0\no=- 2 3 IN IP4 0.0.0.0\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 4000 RTP/AVP 0 101\na=sendonly\n"
SDP_SEEDS = [SDP_SIPP, SDP_BARESIP, SDP_ASTERISK, SDP_ICE, SDP_HOLD]


def _with_length(head: bytes, body: bytes = b"") -> bytes:
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


SIP_SEEDS = [
    _with_length(
        b"INVITE sip:hotline@192.0.2.20:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-8-0\r\n"
        b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=8SIPpTag008\r\n"
        b"To: <sip:hotline@192.0.2.20:5060>\r\n"
        b"Call-ID: 8-12345@127.0.0.1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: sip:sipp@127.0.0.1:5061\r\n"
        b"Max-Forwards: 70\r\n"
        b"Subject: Performance Test\r\n"
        b"Content-Type: application/sdp\r\n",
        SDP_SIPP,
    ),
    _with_length(
        b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 192.0.2.33:46019;branch=z9hG4bK0d3f1e2a8b7c;alias;rport\r\n"
        b"Contact: <sip:agent1-0x55d3@192.0.2.33:46019;transport=tcp>;expires=3600\r\n"
        b"Max-Forwards: 70\r\n"
        b"To: <sip:agent1@pbx.example.com>\r\n"
        b"From: <sip:agent1@pbx.example.com>;tag=a83b19d2c0e4f5a6\r\n"
        b"Call-ID: 7e1fcd3b2a40d5c6\r\n"
        b"CSeq: 2 REGISTER\r\n"
        b'Authorization: Digest username="agent1",realm="pbx.example.com",nonce="ZtBx5GbQcZ2x",'
        b'uri="sip:pbx.example.com",response="6629fae49393a05397450978507c4ef1",algorithm=MD5,'
        b'qop=auth,nc=00000001,cnonce="0a4f113b"\r\n'
        b"User-Agent: baresip v3.10.1 (x86_64/linux)\r\n"
        b"Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\r\n"
        b"Supported: replaces,norefersub,100rel\r\n",
    ),
    _with_length(
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.20:5060;rport=5060;received=192.0.2.20;branch=z9hG4bKPj6a1e0c2f\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::9]:5080;branch=z9hG4bK.second, SIP/2.0/TCP pbx.example.com;branch=z9hG4bK3\r\n"
        b"Record-Route: <sip:192.0.2.1;lr;ftag=8f1c7b3a>\r\n"
        b"Call-ID: 5d7e2b1a-9c4f-4e3d-8a6b-1f0e2d3c4b5a\r\n"
        b'From: "Front Desk" <sip:201@pbx.example.com>;tag=8f1c7b3a\r\n'
        b"To: <sip:hotline@pbx.example.com>;tag=as6c1d2e3f\r\n"
        b"CSeq: 27611 INVITE\r\n"
        b"Server: Asterisk PBX 20.5.0\r\n"
        b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE\r\n"
        b"Supported: replaces, timer\r\n"
        b"Session-Expires: 1800;refresher=uas\r\n"
        b"Contact: <sip:hotline@192.0.2.10:5060>\r\n"
        b"Content-Type: application/sdp\r\n",
        SDP_ASTERISK,
    ),
    _with_length(
        b"SIP/2.0 401 Unauthorized\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.33:5060;branch=z9hG4bK0d3f1e2a;rport=5060;received=192.0.2.33\r\n"
        b"From: <sip:agent1@pbx.example.com>;tag=a83b19d2c0e4f5a6\r\n"
        b"To: <sip:agent1@pbx.example.com>;tag=b27e1a1d33761e85846fc98f5f3a7e58.a2b1\r\n"
        b"Call-ID: 7e1fcd3b2a40d5c6\r\n"
        b"CSeq: 1 REGISTER\r\n"
        b'WWW-Authenticate: Digest realm="pbx.example.com", nonce="ZtBx5GbQcZ2x", qop="auth"\r\n'
        b"Server: kamailio (5.6.3 (x86_64/linux))\r\n",
    ),
    _with_length(
        b"SIP/2.0 100 Trying\r\n"
        b"v: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-8-0\r\n"
        b"f: sipp <sip:sipp@127.0.0.1:5061>;tag=8SIPpTag008\r\n"
        b"t: <sip:hotline@192.0.2.20:5060>\r\n"
        b"i: 8-12345@127.0.0.1\r\n"
        b"CSeq: 1 INVITE\r\n",
    ),
    _with_length(
        b"BYE sip:hotline@192.0.2.20:5060;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-8-5\r\n"
        b"Route: <sip:192.0.2.1;lr>, <sip:192.0.2.2;lr;r2=on>\r\n"
        b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=8SIPpTag008\r\n"
        b"To: <sip:hotline@192.0.2.20:5060>;tag=1234abcd\r\n"
        b"Call-ID: 8-12345@127.0.0.1\r\n"
        b"CSeq: 2 BYE\r\n"
        b"Max-Forwards: 70\r\n"
        b'Reason: Q.850;cause=16;text="Normal call clearing"\r\n',
    ),
    _with_length(
        b"INFO sip:hotline@192.0.2.20 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.33:5060;branch=z9hG4bKinfo1\r\n"
        b"From: <sip:201@pbx.example.com>;tag=x1\r\n"
        b"To: <sip:hotline@pbx.example.com>;tag=y2\r\n"
        b"Call-ID: info-1@192.0.2.33\r\n"
        b"CSeq: 3 INFO\r\n"
        b"Content-Type: application/dtmf-relay\r\n",
        b"Signal=5\r\nDuration=160\r\n",
    ),
    _with_length(
        b"OPTIONS sip:192.0.2.20:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1b1c.4f8e0d32000000000000000000000000.0\r\n"
        b"To: <sip:192.0.2.20:5060>\r\n"
        b"From: <sip:keepalive@192.0.2.1>;tag=cb2000b247d89723001a836145f3b053-5b2a\r\n"
        b"CSeq: 10 OPTIONS\r\n"
        b"Call-ID: 4a3d8c0c1c8b5f1a-1234@192.0.2.1\r\n"
        b"Max-Forwards: 70\r\n"
        b"Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"
        b"Expires: 0\r\n"
        b'P-Asserted-Identity: "Hotline" <sip:hotline@pbx.example.com>, <tel:+15551234567>\r\n',
    ),
    b"ACK sip:hotline@192.0.2.20:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-8-3\r\n"
    b"From: sipp <sip:sipp@127.0.0.1:5061>;tag=8SIPpTag008\r\n"
    b"To: <sip:hotline@192.0.2.20:5060>;tag=1234abcd\r\n"
    b"Call-ID: 8-12345@127.0.0.1\r\n"
    b"CSeq: 1 ACK\r\n"
    b"Max-Forwards: 70\r\n\r\n",
]

URI_SEEDS = [
    "sip:alice@[2001:db8::1]:5061;transport=tls?subject=hi&priority=urgent",
    "sips:%61lice:pa%20ss@atlanta.example.com;maddr=239.255.255.1;ttl=15",
    "sip:+1-212-555-1212:1234@gateway.com;user=phone",
    "tel:+1-201-555-0123;phone-context=example.com",
    "urn:service:sos",
    "sip:hotline@192.0.2.20:5060;transport=udp;lr",
    '"Bob \\"B\\"" <sip:bob@biloxi.com>;tag=a6c85cf',
    "Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8",
    "<sip:192.0.2.1;lr;ftag=8f1c7b3a>",
    "sip:agent1@192.0.2.33:46019;expires=3600",
    "*",
    "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport;received=::1",
    "SIP/2.0/TCP [::1]:5060 ;branch=x;received=192.0.2.3;rport=5062",
    "SIP / 2.0 / UDP host.example.com : 5060 ; branch = z9hG4bK1",
    "4711 INVITE",
    "1 ACK",
    '<sip:a@b>, "x, y" <sip:c@d>;q=0.5, sip:e@f',
    ';tag=1;lr;q="a;b";received=::1',
]

INFO_SEEDS = [
    b"application/dtmf-relay\n\nSignal=5\r\nDuration=160\r\n",
    b"application/dtmf-relay; charset=utf-8\n\nSignal= #\nDuration= 250\n",
    b"Application/DTMF-Relay\n\nsignal=11\r\nduration=100\r\n",
    b"application/dtmf\n\n*",
    b"application/dtmf\n\n12",
    b"application/sdp\n\n" + SDP_SIPP,
    b"-\n\nSignal=1",
]


DIGEST_SEEDS = [
    b'Digest realm="asterisk", nonce="1a2b3c4d"',
    b'Digest realm="kamailio.test", nonce="ZW5kIG9mIG5vbmNl", qop="auth", algorithm=MD5',
    b'Digest realm="sip.example.org", qop="auth,auth-int", algorithm=SHA-256, '
    b'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
    b'Digest realm="a", nonce="b", algorithm=SHA-512-256-sess, qop=auth, stale=TRUE, userhash=true',
    b'Digest realm="with \\"quotes\\" and \\\\ backslash", nonce="n", domain="sip:a sip:b"',
    b'Basic realm="x", Digest realm="y", nonce="z"',
    b'Digest realm="r",nonce="n",,,algorithm=md5-sess,qop="auth"',
    b"Digest realm=token, nonce=token",
]


def generate_digest(rng: random.Random) -> bytes:
    params = []
    for _ in range(rng.randrange(7)):
        name = rng.choice([b"realm", b"nonce", b"qop", b"algorithm", b"opaque", b"stale", b"userhash", b"domain", b"x"])
        value = rng.choice(
            [
                *(b'"a"', b'"\\""', b'"a,b"', b"auth", b'"auth,auth-int"', b"MD5", b"SHA-256-sess", b'""', b"true"),
                *(b'"\xff\xfe"', b'"' + b"n" * rng.randrange(1, 2000) + b'"', b"", b'"unterminated'),
            ]
        )
        params.append(name + rng.choice([b"=", b" = ", b""]) + value)
    scheme = rng.choice([b"Digest", b"digest", b"Basic", b"", b"Digest Digest"])
    return scheme + b" " + rng.choice([b",", b", ", b" ,"]).join(params)


def _torture() -> list[bytes]:
    return [path.read_bytes() for path in sorted(TORTURE.glob("*.dat"))]


def _pcap_packets() -> list[tuple[float, bytes]]:
    from tests.media.fixtures import read_pcap_udp

    out: list[tuple[float, bytes]] = []
    for name in ("dtmf_2833_1.pcap", "dtmf_2833_pound.pcap", "dtmf_2833_star.pcap", "g711a.pcap"):
        path = MEDIA_FIXTURES / name
        if path.exists():
            out.extend(read_pcap_udp(path))
    return out


def _rtp_seeds() -> list[bytes]:
    packets = [data for _, data in _pcap_packets()]
    seeds = packets[:: max(1, len(packets) // 40)]
    seeds.append(
        RtpPacket(
            payload_type=8,
            sequence=65535,
            timestamp=2**32 - 160,
            ssrc=0xDEADBEEF,
            payload=b"\xd5" * 160,
            marker=True,
            csrc=(1, 2, 3),
            extension=(0xBEDE, b"\x10\xff\x00\x00"),
            padding=True,
            padding_bytes=b"\x00\x00\x03",
        ).serialize()
    )
    seeds.append(RtpPacket(payload_type=101, sequence=1, timestamp=0, ssrc=1, payload=b"\x05\x8a\x03\x20").serialize())
    return seeds


def _rtcp_seeds() -> list[bytes]:
    block = ReportBlock(ssrc=0x1234, fraction_lost=12, cumulative_lost=-3, highest_sequence=70000, jitter=33)
    sdes = SourceDescription(
        (
            SdesChunk(0xCAFE, ((1, b"agent1@192.0.2.33"), (2, b"Agent One"), (6, b"baresip"))),
            SdesChunk(0xBEEF, ()),
        )
    )
    seeds = [
        build_report(ssrc=0xCAFE, wallclock=1.7e9, packets_sent=250, octets_sent=40000, rtp_timestamp=40000),
        build_report(ssrc=0xCAFE, wallclock=1.7e9, reports=(block,), bye=True, reason="hangup"),
        serialize_compound(
            [
                SenderReport(
                    ssrc=1,
                    ntp_timestamp=2**63,
                    rtp_timestamp=5,
                    packet_count=6,
                    octet_count=7,
                    reports=(block, block),
                    extension=b"\x00\x01\x02\x03",
                ),
                sdes,
                Bye((1, 2)),
            ]
        ),
        ReceiverReport(ssrc=9, reports=(block,)).serialize() + sdes.serialize(),
    ]
    app = struct.pack("!BBHI4s", 0x80 | 3, 204, 3, 0xCAFE, b"QOS1") + b"\x00\x00\x00\x01"
    fb = struct.pack("!BBHII", 0x80 | 1, 205, 2, 0xCAFE, 0xBEEF)  # RFC 4585 generic NACK header
    xr = struct.pack("!BBHI", 0x80, 207, 1, 0xCAFE)
    seeds.append(seeds[0] + app + fb + xr)
    padded = ReceiverReport(ssrc=9).serialize()
    padded = bytes([padded[0] | 0x20]) + padded[1:3] + bytes([padded[3] + 1]) + padded[4:] + b"\x00\x00\x00\x04"
    seeds.append(seeds[1] + padded)
    return seeds


def _records(packets: Sequence[tuple[float, bytes]]) -> bytes:
    """Pack timed datagrams as the rfc4733 target reads them: u16 length, u8 gap (25 ms units), octets."""
    out = bytearray()
    previous = packets[0][0] if packets else 0.0
    for at, data in packets:
        gap = min(255, max(0, round((at - previous) / 0.025)))
        previous = at
        out += struct.pack("!HB", len(data), gap) + data
    return bytes(out)


def _unpack_records(data: bytes) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 3 <= len(data) and len(out) < MAX_RECORDS:
        length, gap = struct.unpack_from("!HB", data, pos)
        pos += 3
        out.append((gap, data[pos : pos + length]))
        pos += length
    return out


def _rfc4733_seeds() -> list[bytes]:
    seeds: list[bytes] = []
    captured = [(at, data) for at, data in _pcap_packets() if len(data) > 1 and data[1] & 0x7F == 101]
    if captured:
        seeds.append(_records(captured[:30]))
    sequence = 100
    for index, digit in enumerate("5#*A0"):
        timed = [
            (at, packet.serialize())
            for at, packet in rfc4733_packets(
                digit, payload_type=101, ssrc=0x55 + index % 2, first_sequence=sequence, timestamp=8000 * index
            )
        ]
        sequence += 10
        seeds.append(_records(timed))
    # A long press continued in a second segment (RFC 4733 §2.5.1.3), then a late duplicate.
    long_press = [
        RtpPacket(payload_type=101, sequence=1, timestamp=0, ssrc=7, payload=b"\x03\x0a\xff\xff", marker=True),
        RtpPacket(payload_type=101, sequence=2, timestamp=0xFFFF, ssrc=7, payload=b"\x03\x0a\x01\x00"),
        RtpPacket(payload_type=101, sequence=3, timestamp=0xFFFF, ssrc=7, payload=b"\x03\x8a\x02\x00"),
        RtpPacket(payload_type=0, sequence=4, timestamp=0x1FFFF, ssrc=7, payload=b"\xff" * 160),
    ]
    seeds.append(
        _records([(i * 0.02, p.serialize()) for i, p in enumerate(long_press)] + [(9.0, long_press[0].serialize())])
    )
    return seeds


# -- mutation ------------------------------------------------------------------------------------

INTERESTING_NUMBERS = [
    b"0",
    b"-1",
    b"1",
    b"00",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"18446744073709551616",
    b"9" * 20,
    b"9" * 400,
    b"1" * 4400,
    "\u00b2".encode(),  # SUPERSCRIPT TWO: str.isdigit() but not int()
    "\u0661\u0662".encode(),  # ARABIC-INDIC 12: int() reads it
    "\U0001d7d7".encode(),  # MATHEMATICAL BOLD DIGIT NINE
    "\uff15".encode(),  # FULLWIDTH FIVE
    b"1_000",
    b"0x1F",
    b"1e9",
    b"1e-300",
    b"0.4",
    b"+5",
    b" 5 ",
    b"nan",
    b"inf",
    b"-0",
    b"3.5",
]
INTERESTING_BYTES = b'\x00\x01\x7f\x80\xff\r\n \t:;,<>"\\%=@/?&[]*#.-_+0\x0b\x0c'
ODD_TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n ",
    b"\r\n\t",
    b"\r\n\r\n",
    b"\n\n",
    b" ",
    b"\t",
    b"\x0b",
    b"\x0c",
    b"\x00",
    "\u00a0".encode(),
    "\u3000".encode(),
    "\u2028".encode(),
    "\u0085".encode(),
    b"\xff",
    b"\xc3",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    "\u00e9".encode(),
    "\U0001f4de".encode(),
    b'"',
    b'\\"',
    b"\\",
    b"<",
    b">",
    b",",
    b";",
    b":",
    b"=",
    b"%",
    b"%zz",
    b"%00",
    b"%ff",
    b"[",
    b"]",
    b"[::1]",
    b"@",
    b"?",
    b"&",
    b"*",
    b";lr",
    b";tag=",
    b";branch=",
    b";received=::1",
    b";rport",
    b"sip:",
    b"sips:",
    b"tel:",
    b"SIP/2.0",
    b"SIP/3.0",
    b"sip/2.0",
    b"Content-Length: ",
    b"l: ",
    b"Content-Length: 99999999\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: -5\r\n",
    b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",
    b"CSeq: 1 INVITE\r\n",
    b"Call-ID: x\r\n",
    b"a=sendonly\r\n",
    b"a=rtpmap:96 telephone-event/8000\r\n",
    b"a=ptime:0.3\r\n",
    b"m=audio 1 RTP/AVP 0\r\n",
    b"c=IN IP4 0.0.0.0\r\n",
    b"Signal=",
    b"Duration=",
]

_NUMBER_RE = re.compile(rb"\d+")
_TOKEN_SPLIT_RE = re.compile(rb"([ :;,<>=@/\r\n]+)")
_CL_RE = re.compile(rb"(?im)^(content-length|l)[ \t]*:[ \t]*([^\r\n]*)")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _pick_line_ops(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    n = len(lines)
    i = rng.randrange(n)
    op = rng.randrange(8)
    if op == 0:
        lines.insert(rng.randrange(n + 1), lines[i])  # duplicate (header duplication)
    elif op == 1 and n > 1:
        del lines[i]
    elif op == 2:
        j = rng.randrange(n)
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:
        line = lines[i]
        cut = line.find(b" ", rng.randrange(len(line) + 1))
        if cut >= 0:  # fold the line here (RFC 3261 §7.3.1 LWS)
            lines[i] = line[:cut] + rng.choice([b"\r\n ", b"\r\n\t", b"\n  ", b"\r\n"]) + line[cut:]
    elif op == 4:
        lines[i] = lines[i] + b"x" * rng.choice([100, 1000, 10000, 70000])
    elif op == 5:
        lines[i] = lines[i].upper() if rng.random() < 0.5 else lines[i].lower()
    elif op == 6:
        line = lines[i]
        colon = line.find(b":")
        if colon >= 0:
            lines[i] = (
                line[:colon] + rng.choice([b" :", b"\t:", b": ", b":\t", b" : ", b"::", b":\r"]) + line[colon + 1 :]
            )
    else:
        lines[i] = lines[i].rstrip(b"\r") + rng.choice([b"", b"\r", b" \r", b"\t\r", b"\r\r"])
    return b"\n".join(lines)


def _line_endings(rng: random.Random, data: bytes) -> bytes:
    choice = rng.randrange(5)
    if choice == 0:
        return data.replace(b"\r\n", b"\n")
    if choice == 1:
        return data.replace(b"\r\n", b"\r")
    if choice == 2:
        return data.replace(b"\r\n", b"\n\r")
    if choice == 3:
        return data.replace(b"\n", b"\r\n")
    # mixed: change a random subset
    parts = data.split(b"\r\n")
    return b"".join(p + rng.choice([b"\r\n", b"\n", b"\r\n", b"\r\n", b""]) for p in parts[:-1]) + parts[-1]


def _replace_number(rng: random.Random, data: bytes) -> bytes:
    matches = list(_NUMBER_RE.finditer(data))
    if not matches:
        return data
    m = rng.choice(matches)
    return data[: m.start()] + rng.choice(INTERESTING_NUMBERS) + data[m.end() :]


def _content_length(rng: random.Random, data: bytes) -> bytes:
    m = _CL_RE.search(data)
    value = rng.choice(
        [*INTERESTING_NUMBERS[:16], str(max(0, len(data) // 2)).encode(), b"", b"5, 6", b"0\r\nContent-Length: 7"]
    )
    if m is None or rng.random() < 0.2:
        head_end = data.find(b"\r\n")
        head_end = head_end if head_end >= 0 else len(data)
        return data[:head_end] + b"\r\nContent-Length: " + value + data[head_end:]
    return data[: m.start(2)] + value + data[m.end(2) :]


def _token_swap(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    parts = _TOKEN_SPLIT_RE.split(data)
    if len(parts) < 2:
        return data
    i = rng.randrange(0, len(parts), 2)
    donor = _TOKEN_SPLIT_RE.split(rng.choice(pool))
    parts[i] = rng.choice(donor[::2]) if rng.random() < 0.6 else rng.choice(ODD_TOKENS)
    return b"".join(parts)


def mutate_bytes(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """One generic byte-level mutation."""
    n = len(data)
    op = rng.randrange(10)
    if n == 0:
        return rng.choice(pool)[: rng.randrange(64)] or bytes([rng.randrange(256)])
    if op == 0:
        i = rng.randrange(n)
        return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]
    if op == 1:
        i = rng.randrange(n)
        return data[:i] + bytes([rng.choice(INTERESTING_BYTES)]) + data[i + 1 :]
    if op == 2:
        i = rng.randrange(n + 1)
        return data[:i] + rng.choice(ODD_TOKENS) + data[i:]
    if op == 3:
        i = rng.randrange(n)
        j = min(n, i + 1 + int(rng.expovariate(1 / 8)))
        return data[:i] + data[j:]
    if op == 4:
        i = rng.randrange(n)
        j = min(n, i + 1 + int(rng.expovariate(1 / 16)))
        return data[:j] + data[i:j] * rng.choice([1, 2, 10]) + data[j:]
    if op == 5:
        return data[: rng.randrange(n)]
    if op == 6:
        other = rng.choice(pool)
        return data[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1) :]
    if op == 7:
        i = rng.randrange(n + 1)
        return data[:i] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9))) + data[i:]
    if op == 8:
        return _replace_number(rng, data)
    i = rng.randrange(n)
    return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]


def mutate_text(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """A byte mutation or one aware of lines, tokens, numbers and Content-Length."""
    choice = rng.randrange(16)
    if choice < 6:
        return mutate_bytes(rng, data, pool)
    if choice < 9:
        return _pick_line_ops(rng, data) if data else data
    if choice == 9:
        return _line_endings(rng, data)
    if choice < 12:
        return _replace_number(rng, data)
    if choice == 12:
        return _content_length(rng, data)
    return _token_swap(rng, data, pool)


def mutate_rtp(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    if not data or rng.random() < 0.4:
        return mutate_bytes(rng, data, pool)
    b = bytearray(data)
    op = rng.randrange(6)
    if op == 0:  # first octet: version, padding, extension, CSRC count
        b[0] = (rng.randrange(4) << 6) | (rng.randrange(2) << 5) | (rng.randrange(2) << 4) | rng.randrange(16)
    elif op == 1:  # a 16-bit field: extension length, sequence...
        i = rng.randrange(0, max(1, len(b) - 1))
        value = rng.choice([0, 1, 2, 3, 0x7FFF, 0x8000, 0xFFFF, len(b) // 4, len(b) // 4 + 1])
        b[i : i + 2] = value.to_bytes(2, "big")
    elif op == 2:  # the padding count
        b[-1] = rng.choice([0, 1, 3, 4, len(b) - 12, len(b) - 11, len(b), len(b) + 1, 255]) & 0xFF
    elif op == 3:
        del b[rng.choice([1, 4]) * -1 :]
    elif op == 4:
        b += bytes(rng.choice([1, 3, 4, 8]))
    else:
        b += rng.choice(pool)
    return bytes(b)


def _rtcp_headers(data: bytes) -> list[int]:
    out: list[int] = []
    pos = 0
    while pos + 4 <= len(data) and len(out) < 64:
        out.append(pos)
        pos += 4 * (struct.unpack_from("!H", data, pos + 2)[0] + 1)
    return out


def mutate_rtcp(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    headers = _rtcp_headers(data)
    if not headers or rng.random() < 0.35:
        return mutate_rtp(rng, data, pool)
    b = bytearray(data)
    pos = rng.choice(headers)
    op = rng.randrange(5)
    if op == 0:  # count and padding bits
        b[pos] = (b[pos] & 0xC0) | (rng.randrange(2) << 5) | rng.randrange(32)
    elif op == 1:  # packet type
        b[pos + 1] = rng.choice([200, 201, 202, 203, 204, 205, 206, 207, 0, 255])
    elif op == 2:  # length in words
        words = struct.unpack_from("!H", b, pos + 2)[0]
        b[pos + 2 : pos + 4] = (rng.choice([0, 1, words - 1, words + 1, 0xFFFF, len(b) // 4]) & 0xFFFF).to_bytes(
            2, "big"
        )
    elif op == 3:  # an SDES item length or BYE reason length inside the body
        if pos + 8 < len(b):
            b[rng.randrange(pos + 4, len(b))] = rng.choice([0, 1, 2, 3, 4, 255])
    else:  # cut at a packet boundary or in the middle of one
        cut = rng.choice(headers + [len(b) - rng.randrange(1, 5)])
        del b[max(0, cut) :]
    return bytes(b)


def mutate_records(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    records = _unpack_records(data)
    if not records or rng.random() < 0.2:
        return mutate_bytes(rng, data, pool)
    op = rng.randrange(6)
    i = rng.randrange(len(records))
    gap, packet = records[i]
    if op == 0:
        records.insert(rng.randrange(len(records) + 1), (rng.choice([0, 0, 1, 40, 255]), packet))  # duplicate
    elif op == 1 and len(records) > 1:
        del records[i]  # loss
    elif op == 2:
        j = rng.randrange(len(records))
        records[i], records[j] = records[j], records[i]  # reordering
    elif op == 3:
        records[i] = (rng.choice([0, 1, 40, 200, 255]), packet)  # jitter and long silences
    elif op == 4:
        records[i] = (gap, mutate_rtp(rng, packet, [p for _, p in records]))
    elif len(packet) >= 16:  # change the event, flags or duration of the payload
        b = bytearray(packet)
        b[12 + rng.randrange(4)] = rng.choice([0, 1, 11, 15, 16, 0x80, 0x8A, 0xFF, rng.randrange(256)])
        records[i] = (gap, bytes(b))
    return b"".join(struct.pack("!HB", len(p) & 0xFFFF, g) + p for g, p in records)


# -- grammar-aware generation --------------------------------------------------------------------

_METHODS = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "PRACK",
    "NOTIFY",
    "X-ÄÖ",
    "inv ite",
]
_HEADER_NAMES = {
    "Via": ["v", "VIA", "via"],
    "From": ["f", "FROM"],
    "To": ["t", "tO"],
    "Call-ID": ["i", "call-id", "CALL-ID"],
    "CSeq": ["cseq"],
    "Contact": ["m"],
    "Max-Forwards": [],
    "Route": [],
    "Record-Route": [],
    "Expires": [],
    "Min-Expires": [],
    "Date": [],
    "Content-Type": ["c"],
    "Content-Length": ["l"],
    "Supported": ["k"],
    "Require": [],
    "Allow": [],
    "Subject": ["s"],
    "X-Custom": ["x-custom"],
}
_VALUES = {
    "Via": URI_SEEDS[11:14] + ["SIP/2.0/UDP a.b", "SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKx;rport"],
    "From": URI_SEEDS[6:11],
    "To": URI_SEEDS[6:11],
    "Contact": [*URI_SEEDS[6:11], "*", URI_SEEDS[16]],
    "Route": ["<sip:192.0.2.1;lr>", "<sip:[::1]:5070;lr>, <sip:p2;lr>"],
    "Record-Route": ["<sip:192.0.2.1;lr>"],
    "Call-ID": ["a84b4c76e66710@pc33.atlanta.com", "x", "= = ="],
    "CSeq": ["1 INVITE", "2 BYE", "4294967296 INVITE", "1 ACK"],
    "Max-Forwards": ["70", "0", "256"],
    "Expires": ["3600", "0", "4294967296"],
    "Min-Expires": ["60"],
    "Date": ["Sat, 13 Nov 2010 23:29:00 GMT", "Thu, 44 Dec 19999 16:00:00 EDT"],
    "Content-Type": ["application/sdp", "application/dtmf-relay", "multipart/mixed;boundary=x"],
    "Content-Length": ["0", "10", "99999"],
    "Supported": ["100rel, timer", ""],
    "Require": ["foo"],
    "Allow": ["INVITE,ACK,BYE"],
    "Subject": ["hi", "\u00e9t\u00e9"],
    "X-Custom": ["a,b,c", '"q,uo" <x>, y'],
}


def generate_sip(rng: random.Random) -> bytes:
    if rng.random() < 0.7:
        method = rng.choice(_METHODS)
        uri = rng.choice([*URI_SEEDS[:6], "sip:hotline@192.0.2.20", "sip:a@b?c=d", "*"])
        start = f"{method} {uri} SIP/2.0"
    else:
        status = rng.choice([100, 180, 183, 200, 401, 407, 486, 487, 603, 699, 700, 99])
        start = f"SIP/2.0 {status} {rng.choice(['OK', '', 'Ringing'])}"
        method = "INVITE"
    lines = [start]
    names = list(_HEADER_NAMES)
    for _ in range(rng.randrange(3, 14)):
        name = rng.choice(names)
        spelling = rng.choice([name, *_HEADER_NAMES[name]])
        value = rng.choice(_VALUES[name])
        if name == "CSeq" and rng.random() < 0.7:
            value = f"{rng.randrange(1, 100)} {method}"
        colon = rng.choice([": ", ":", " : ", ":\t"])
        lines.append(f"{spelling}{colon}{value}")
    body = rng.choice([b"", b"", SDP_SIPP, b"Signal=5\r\n", b"\x00\xff\xfe"])
    if rng.random() < 0.8:
        lines.append(f"Content-Length: {len(body) + rng.choice([0, 0, 0, 1, -1])}")
    rng.shuffle(lines[1:]) if rng.random() < 0.1 else None
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def generate_stream(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randrange(1, 4)):
        parts.append(rng.choice([b"\r\n\r\n", b"\r\n", b""]))
        parts.append(rng.choice(SIP_SEEDS) if rng.random() < 0.7 else generate_sip(rng))
    return b"".join(parts)


def generate_uri(rng: random.Random) -> bytes:
    scheme = rng.choice(["sip", "sips", "tel", "SIP", "mailto", "x"])
    user = rng.choice(["", "alice@", "a%40b@", "a:b@", ":@", "+1-555@", "\u00e9@", "a;b?c@"])
    host = rng.choice(
        ["example.com", "192.0.2.1", "[2001:db8::1]", "[::ffff:1.2.3.4]", "[1::2::3]", "a..b", "-a.com", "256.1.1.1"]
    )
    port = rng.choice(["", ":5060", ":0", ":65535", ":65536", ":", ":\u00b2", ":00005060"])
    params = "".join(
        rng.choice([";lr", ";transport=tcp", ";maddr=[::1]", ";a=%41", ";=x", ";"]) for _ in range(rng.randrange(3))
    )
    headers = rng.choice(["", "?subject=hi", "?a=b&c=", "?=", "?x"])
    uri = f"{scheme}:{user}{host}{port}{params}{headers}"
    form = rng.randrange(4)
    if form == 0:
        return uri.encode()
    if form == 1:
        display = rng.choice(["", '"Bob" ', "Bob Smith ", '"a\\"b" ', '"unterminated ', "\u00e9 "])
        return f"{display}<{uri}>{rng.choice(['', ';tag=x', ';q=0.5;expires=10', ';tag'])}".encode()
    if form == 2:
        via_params = rng.choice(["", ";branch=z9hG4bK1", ";rport;received=" + host])
        return f"SIP/2.0/{rng.choice(['UDP', 'TCP', 'TLS'])} {host}{port}{via_params}".encode()
    number = rng.choice(["1", "0", "2147483648", "\u0661"])
    return f"{number} {rng.choice(_METHODS)}".encode()


_SDP_ATTRS = [
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000/1",
    "a=rtpmap:101 telephone-event/8000",
    "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:128 PCMU/8000",
    "a=fmtp:101 0-16",
    "a=fmtp:96",
    "a=ptime:20",
    "a=ptime:0.4",
    "a=maxptime:150",
    "a=sendonly",
    "a=recvonly",
    "a=inactive",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=x:",
    "c=IN IP4 192.0.2.5",
    "c=IN IP6 ::",
    "b=AS:64",
    "i=info",
    "k=clear:x",
]


def generate_sdp(rng: random.Random) -> bytes:
    lines = ["v=0", f"o=- {rng.randrange(10**12)} {rng.randrange(10**6)} IN IP4 192.0.2.{rng.randrange(256)}", "s=-"]
    session = [
        "c=IN IP4 192.0.2.9",
        "t=0 0",
        "b=CT:100",
        "u=http://x",
        "i=x",
        "e=a@b",
        "p=+1",
        "z=0 0",
        "a=sendonly",
        "a=group:BUNDLE 0",
    ]
    lines += rng.sample(session, rng.randrange(len(session) + 1))
    for _ in range(rng.randrange(4)):
        formats = " ".join(str(rng.choice([0, 8, 3, 9, 18, 96, 101, 127, 128])) for _ in range(rng.randrange(0, 5)))
        media, port = rng.choice(["audio", "video", "image"]), rng.choice([0, 4000, 65535, 65536])
        lines.append(f"m={media} {port} {rng.choice(['RTP/AVP', 'RTP/AVPF', 'RTP/SAVP', 'udptl'])} {formats}")
        lines += [rng.choice(_SDP_ATTRS) for _ in range(rng.randrange(8))]
    return ("\r\n".join(lines) + rng.choice(["\r\n", "\n", ""])).encode()


def generate_rtp(rng: random.Random) -> bytes:
    padding = rng.random() < 0.2
    count = rng.randrange(1, 8)
    return RtpPacket(
        payload_type=rng.randrange(128),
        sequence=rng.randrange(65536),
        timestamp=rng.randrange(2**32),
        ssrc=rng.randrange(2**32),
        payload=bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 4, 20]))),
        marker=rng.random() < 0.5,
        csrc=tuple(rng.randrange(2**32) for _ in range(rng.choice([0, 0, 1, 15]))),
        extension=(rng.randrange(65536), bytes(4 * rng.randrange(4))) if rng.random() < 0.3 else None,
        padding=padding,
        padding_bytes=bytes(count - 1) + bytes([count]) if padding else b"",
    ).serialize()


def generate_rtcp(rng: random.Random) -> bytes:
    packets: list[bytes] = []
    for _ in range(rng.randrange(1, 5)):
        kind = rng.randrange(6)
        blocks = tuple(
            ReportBlock(ssrc=rng.randrange(2**32), cumulative_lost=rng.randrange(-(2**23), 2**23))
            for _ in range(rng.choice([0, 1, 2, 31]))
        )
        if kind == 0:
            packets.append(
                SenderReport(
                    ssrc=1,
                    ntp_timestamp=rng.randrange(2**64),
                    rtp_timestamp=2,
                    packet_count=3,
                    octet_count=4,
                    reports=blocks,
                ).serialize()
            )
        elif kind == 1:
            packets.append(
                ReceiverReport(
                    ssrc=rng.randrange(2**32), reports=blocks, extension=bytes(4 * rng.randrange(3))
                ).serialize()
            )
        elif kind == 2:
            items = tuple(
                (rng.randrange(1, 9), bytes(rng.randrange(256) for _ in range(rng.randrange(12))))
                for _ in range(rng.randrange(4))
            )
            packets.append(
                SourceDescription(
                    tuple(SdesChunk(rng.randrange(2**32), items) for _ in range(rng.randrange(3)))
                ).serialize()
            )
        elif kind == 3:
            reason = rng.choice([None, b"", b"bye", b"x" * 255])
            packets.append(Bye(tuple(rng.randrange(2**32) for _ in range(rng.randrange(4))), reason).serialize())
        else:
            body = bytes(4 * rng.randrange(4))
            packets.append(
                struct.pack("!BBH", 0x80 | rng.randrange(32), rng.choice([204, 205, 206, 207, 195, 72]), len(body) // 4)
                + body
            )
    return b"".join(packets)


def generate_rfc4733(rng: random.Random) -> bytes:
    timed: list[tuple[float, bytes]] = []
    at = 0.0
    sequence = rng.randrange(65536)
    timestamp = rng.randrange(2**32)
    for _ in range(rng.randrange(1, 4)):
        packets = rfc4733_packets(
            rng.choice(DTMF_DIGITS),
            payload_type=101,
            ssrc=rng.choice([1, 2]),
            first_sequence=sequence,
            timestamp=timestamp,
            duration_ms=rng.choice([40, 100, 160, 8000]),
        )
        sequence += len(packets)
        timestamp = (timestamp + rng.choice([0, 160, 1600, 2**31])) & 0xFFFFFFFF
        for offset, packet in packets:
            if rng.random() < 0.1:
                continue
            timed.append((at + offset, packet.serialize()))
        at += rng.choice([0.2, 1.0, 6.0, 70.0])
    rng.shuffle(timed) if rng.random() < 0.2 else None
    return _records(timed) if timed else b""


def generate_info(rng: random.Random) -> bytes:
    ct = rng.choice(
        [b"application/dtmf-relay", b"application/dtmf", b"APPLICATION/DTMF-RELAY ; x=y", b"text/plain", b"-"]
    )
    lines = []
    for _ in range(rng.randrange(4)):
        name = rng.choice([b"Signal", b"signal", b"Duration", b"X", b""])
        value = rng.choice([b"5", b"#", b"10", b"16", b" a ", b"", b"160", b"-1", *INTERESTING_NUMBERS])
        lines.append(name + rng.choice([b"=", b" = ", b":"]) + value)
    return ct + b"\n\n" + rng.choice([b"\r\n", b"\n"]).join(lines)


# -- targets -------------------------------------------------------------------------------------


def _touch_message(message: SipRequest | object) -> None:
    """Read what a user agent reads; every accessor may raise only SipParseError."""
    from sipcallhunt.sip.message import SipRequest, SipResponse

    assert isinstance(message, SipRequest | SipResponse)
    for via in message.vias:
        _ = via.branch, via.sent_by, via.param("rport"), via.param("received")
    for contact in (*message.contacts, *message.record_routes):
        if contact.uri is not None:
            _ = contact.uri.transport, contact.uri.default_port(), contact.uri.host_bare
    _ = message.cseq, message.from_.tag, message.to.tag, message.call_id, message.content_type
    _ = message.header_tokens("Supported"), message.header_tokens("Require")
    if isinstance(message, SipRequest):
        uri = message.request_uri
        _ = uri.is_sip, uri.transport, uri.default_port(), uri.param("user")
    else:
        _ = message.is_provisional


def run_sip_message(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data, stream=True)  # as framed on TCP: no Content-Length means no body
    try:
        message = parse_message(data)
    except SipParseError as exc:
        partial = exc.partial
        if partial is not None:
            bytes(partial)  # the shell answers from it
            if not isinstance(partial, SipRequest):
                raise RoundTripError("partial is not a request") from None
        raise
    _touch_message(message)
    wire = bytes(message)
    if len(wire) <= MAX_MESSAGE_SIZE:
        again = parse_message(wire)
        if again != message:
            raise RoundTripError("parse_message(bytes(m)) != m")


def _frame(data: bytes, cuts: Sequence[int]) -> tuple[list[object], int | None]:
    framer = StreamFramer()
    items: list[object] = []
    start = 0
    try:
        for cut in [*cuts, len(data)]:
            for item in framer.feed(data[start:cut]):
                items.append(item if isinstance(item, KeepAlive) else bytes(item))
            start = cut
    except SipParseError as exc:
        return items, exc.status
    if framer.error is not None:  # raised by the next feed: messages before it were returned
        return items, framer.error.status
    return items, None


def run_sip_stream(data: bytes) -> None:
    whole, whole_error = _frame(data, [])
    digest = hashlib.blake2b(data, digest_size=8).digest()
    cutter = random.Random(digest)
    if 1 < len(data) < 512 or (digest[0] < 8 and len(data) < 4096):
        cuts = list(range(1, len(data)))  # byte by byte: short inputs, and one in 32 of the others
    else:
        cuts = sorted(cutter.randrange(len(data) + 1) for _ in range(cutter.randrange(1, 8)))
    pieces, pieces_error = _frame(data, cuts)
    if (whole, whole_error) != (pieces, pieces_error):
        raise RoundTripError(f"framing depends on chunking: {len(whole)}/{whole_error} vs {len(pieces)}/{pieces_error}")
    if whole_error is not None:
        raise SipParseError("stream rejected")


def run_sip_uri(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    check_round_trip = "\r" not in text and "\n" not in text  # what a header value can carry
    accepted = False
    parsers: tuple[Callable[[str], object], ...] = (SipUri.parse, NameAddr.parse, Via.parse, CSeq.parse)
    for parse in parsers:
        try:
            value = parse(text)
        except SipParseError:
            continue
        accepted = True
        if isinstance(value, SipUri):
            _ = value.transport, value.default_port(), value.host_bare, value.is_sip
        elif isinstance(value, NameAddr):
            _ = value.tag
        elif isinstance(value, Via):
            _ = value.branch, value.sent_by
        if check_round_trip and parse(str(value)) != value:
            raise RoundTripError(f"{type(value).__name__}.parse(str(v)) != v")
    for helper in (split_comma_list, lambda t: generic_params(t, "fuzz")):
        with contextlib.suppress(SipParseError):
            helper(text)
    if not accepted:  # counted as an error: no URI, name-addr, Via or CSeq
        raise SipParseError("nothing accepted")


_OFFER = build_offer(address="192.0.2.20", port=40000, session_id=1, session_version=1)


def run_sdp(data: bytes) -> None:
    sd = parse_sdp(data)
    for media in sd.media:
        for pt in media.payload_types:
            media.encoding_of(pt)
            media.fmtp_of(pt)
        sd.media_direction(media)
        sd.media_connection(media)
    again = parse_sdp(bytes(sd))
    if again != sd:
        raise RoundTripError("parse_sdp(bytes(sd)) != sd")
    try:
        answer, _ = answer_offer(sd, address="192.0.2.20", port=40000, session_id=2, session_version=2)
    except SdpError:
        pass
    else:
        if parse_sdp(bytes(answer)) != answer:
            raise RoundTripError("our answer does not round-trip")
    with contextlib.suppress(SdpError):
        accept_answer(_OFFER, sd)


def run_rtp(data: bytes) -> None:
    is_rtcp(data)
    packet: RtpPacket | None
    try:
        packet = RtpPacket.parse(data)
    except RtpError as exc:
        packet, error = None, exc
    try:
        bounds: tuple[int, int] | None = payload_bounds(data)
    except RtpError:
        bounds = None
    if (packet is None) != (bounds is None):
        raise RoundTripError("payload_bounds and RtpPacket.parse disagree on accepting the packet")
    if packet is None:
        raise error
    assert bounds is not None
    if data[bounds[0] : bounds[1]] != packet.payload:
        raise RoundTripError("payload_bounds and RtpPacket.parse disagree on the payload")
    if peek_header(data) != (packet.marker, packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc):
        raise RoundTripError("peek_header and RtpPacket.parse disagree")
    if packet.serialize() != data:
        raise RoundTripError("RtpPacket.parse(data).serialize() != data")


def run_rtcp(data: bytes) -> None:
    packets = parse_compound(data)
    for packet in packets:
        if isinstance(packet, SourceDescription):
            for chunk in packet.chunks:
                packet.cname(chunk.ssrc)
    try:
        wire = serialize_compound(packets)
    except RtpError as exc:
        raise RoundTripError(f"a parsed compound cannot be serialized: {exc}") from None
    if wire and parse_compound(wire) != packets:
        raise RoundTripError("parse_compound(serialize_compound(p)) != p")


def run_rfc4733(data: bytes) -> None:
    receiver = Rfc4733Receiver(payload_type=101)
    now = 0.0
    rejected = 0
    records = _unpack_records(data)
    for gap, datagram in records:
        now += gap * 0.025
        try:
            event = parse_rfc4733_payload(datagram)
            if not (0 <= event.event <= 255 and 0 <= event.volume <= 63 and 0 <= event.duration <= 0xFFFF):
                raise RoundTripError(f"impossible telephone-event fields {event}")
        except RtpError:
            pass
        try:
            packet = RtpPacket.parse(datagram)
            digits = receiver.receive(packet, now)
        except RtpError:
            rejected += 1
            continue
        for digit in digits:
            if digit.digit not in DTMF_DIGITS or (digit.duration is not None and not digit.duration >= 0):
                raise RoundTripError(f"impossible digit {digit}")
        if receiver.receive(packet, now):
            raise RoundTripError("the same packet twice yields a digit twice")
        if len(receiver._events) > MAX_EVENT_KEYS:
            raise RoundTripError(f"{len(receiver._events)} event keys kept, more than {MAX_EVENT_KEYS}")
    if rejected == len(records):
        raise RtpError("no packet accepted")


def run_sip_info(data: bytes) -> None:
    head, _, body = data.partition(b"\n\n")
    content_type = None if head == b"-" else head.decode("utf-8", "replace")
    digit = parse_info_dtmf(content_type, body)
    if digit is not None:
        if digit.digit not in DTMF_DIGITS:
            raise RoundTripError(f"INFO digit {digit.digit!r} is not a key")
        if digit.duration is not None and not (digit.duration >= 0 and math.isfinite(digit.duration)):
            raise RoundTripError(f"INFO duration {digit.duration!r}")


def run_digest(data: bytes) -> None:
    from sipcallhunt.sip.digest import DigestSession, challenges_of
    from sipcallhunt.sip.message import SipResponse

    status, header = (b"407", b"Proxy-Authenticate") if data[:1] == b"P" else (b"401", b"WWW-Authenticate")
    wire = (
        b"SIP/2.0 " + status + b" Unauthorized\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKd\r\n"
        b"From: <sip:h@pbx>;tag=1\r\nTo: <sip:h@pbx>;tag=2\r\nCall-ID: d@1\r\nCSeq: 1 REGISTER\r\n"
        + header + b": " + data + b"\r\nContent-Length: 0\r\n\r\n"
    )  # fmt: skip
    response = parse_message(wire)
    if not isinstance(response, SipResponse):
        return
    challenges = challenges_of(response)
    session = DigestSession("hotline", "secret", lambda: "c0ffee")
    session.on_challenge(response)
    request = parse_message(
        b"REGISTER sip:pbx SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKr\r\nFrom: <sip:h@pbx>;tag=1\r\n"
        b"To: <sip:h@pbx>\r\nCall-ID: d@1\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(request, SipRequest)
    again = parse_message(bytes(session.authorize(request)))
    answered = {c.realm for c in challenges if c.supported}
    sent = challenges_of_request(again)
    if {realm for realm, _ in sent} != answered:
        raise RoundTripError(f"realms answered {sorted(answered)!r}, sent {sorted(sent)!r}")
    for realm, nonce in sent:
        if not any(c.realm == realm and c.nonce == nonce for c in challenges):
            raise RoundTripError(f"realm {realm!r}: nonce {nonce!r} changed on the way")


def challenges_of_request(request: object) -> set[tuple[str, str]]:
    """(realm, nonce) of every credential an authorised request carries, read back as a server would."""
    from sipcallhunt.sip.digest import parse_challenges

    assert isinstance(request, SipRequest)
    out = set()
    for name in ("Authorization", "Proxy-Authorization"):
        for value in request.headers.get_all(name):
            for credential in parse_challenges(value):
                out.add((credential.realm, credential.nonce))
    return out


@attrs.frozen
class Target:
    name: str
    run: Callable[[bytes], None]
    own: type[Exception]
    seeds: Callable[[], list[bytes]]
    mutate: Callable[[random.Random, bytes, Sequence[bytes]], bytes]
    generate: Callable[[random.Random], bytes]


def _sip_seeds() -> list[bytes]:
    return SIP_SEEDS + _torture()


def _stream_seeds() -> list[bytes]:
    seeds = [s for s in SIP_SEEDS if b"Content-Length" in s]
    return [b"".join(seeds[:3]), b"\r\n\r\n" + seeds[0] + b"\r\n" + seeds[1], seeds[2] + b"\r\n\r\n\r\n", *seeds]


def _uri_seeds() -> list[bytes]:
    seeds = [s.encode() for s in URI_SEEDS]
    for message in _sip_seeds():
        for line in message.split(b"\r\n")[:20]:
            name, colon, value = line.partition(b":")
            if colon and name.strip().lower() in (
                b"via",
                b"v",
                b"from",
                b"f",
                b"to",
                b"t",
                b"contact",
                b"m",
                b"route",
                b"cseq",
            ):
                seeds.append(value.strip())
        start = message.split(b"\r\n", 1)[0].split(b" ")
        if len(start) == 3 and not start[0].startswith(b"SIP/"):
            seeds.append(start[1])
    return seeds


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("sip-message", run_sip_message, SipParseError, _sip_seeds, mutate_text, generate_sip),
        Target("sip-stream", run_sip_stream, SipParseError, _stream_seeds, mutate_text, generate_stream),
        Target("sip-uri", run_sip_uri, SipParseError, _uri_seeds, mutate_text, generate_uri),
        Target("sdp", run_sdp, SdpError, lambda: list(SDP_SEEDS), mutate_text, generate_sdp),
        Target("rtp", run_rtp, RtpError, _rtp_seeds, mutate_rtp, generate_rtp),
        Target("rtcp", run_rtcp, RtpError, _rtcp_seeds, mutate_rtcp, generate_rtcp),
        Target("rfc4733", run_rfc4733, RtpError, _rfc4733_seeds, mutate_records, generate_rfc4733),
        Target("sip-info", run_sip_info, RemoteProtocolError, lambda: list(INFO_SEEDS), mutate_text, generate_info),
        Target("digest", run_digest, SipParseError, lambda: list(DIGEST_SEEDS), mutate_text, generate_digest),
    )
}


# -- the loop ------------------------------------------------------------------------------------


def corpus_files(target: str, corpus: Path = CORPUS) -> list[Path]:
    folder = corpus / target
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []


def classify(target: Target, data: bytes) -> str | None:
    """None when ``data`` is handled (a result or the target's own error), else a failure signature."""
    try:
        target.run(data)
    except target.own:
        return None
    except RoundTripError as exc:
        return f"roundtrip: {str(exc).split(':')[0]}"
    except Exception as exc:  # noqa: BLE001 - every other exception is what we are looking for
        where = "?"
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            parts = Path(frame.filename).parts
            if "sipcallhunt" in parts:
                where = f"{'/'.join(parts[parts.index('sipcallhunt') :])}:{frame.lineno}"
                break
        return f"{type(exc).__name__} at {where}"
    return None


def shrink(target: Target, data: bytes, signature: str, budget: float = 5.0) -> bytes:
    """A smaller input with the same failure: drop lines, then chunks, while it still fails the same way."""
    deadline = time.monotonic() + budget
    best = data
    for separator in (b"\n", None):
        chunk = max(1, len(best) // 2)
        while chunk >= 1 and time.monotonic() < deadline:
            progressed = False
            if separator is not None:
                parts = best.split(separator)
                i = 0
                while i < len(parts) and len(parts) > 1 and time.monotonic() < deadline:
                    candidate = separator.join(parts[:i] + parts[i + 1 :])
                    if classify(target, candidate) == signature:
                        parts = parts[:i] + parts[i + 1 :]
                        best = candidate
                    else:
                        i += 1
                break
            i = 0
            while i < len(best) and time.monotonic() < deadline:
                candidate = best[:i] + best[i + chunk :]
                if classify(target, candidate) == signature:
                    best = candidate
                    progressed = True
                else:
                    i += chunk
            if not progressed:
                chunk //= 2
    return best


@attrs.define
class Stats:
    inputs: int = 0
    accepted: int = 0
    errors: int = 0
    findings: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    signatures: dict[str, bytes] = attrs.field(factory=dict)


def fuzz_target(
    target: Target, *, inputs: int, seconds: float | None, seed: int, save: Path | None, out: Callable[[str], None]
) -> Stats:
    rng = random.Random(f"{seed}:{target.name}")
    seeds = target.seeds() + [p.read_bytes() for p in corpus_files(target.name)]
    pool = list(seeds)
    stats = Stats()
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else math.inf
    run, own, mutate, generate = target.run, target.own, target.mutate, target.generate
    clock = time.perf_counter
    for index in range(inputs):
        if index & 255 == 0 and clock() > deadline:
            break
        if rng.random() < 0.15:
            data = generate(rng)
        else:
            data = rng.choice(pool)
            for _ in range(1 + min(7, int(rng.expovariate(0.7)))):
                data = mutate(rng, data, pool)
            if len(data) > 200_000:
                data = data[:200_000]
        stats.inputs += 1
        t0 = clock()
        try:
            run(data)
        except own:
            stats.errors += 1
        except Exception:  # noqa: BLE001 - classified (and shrunk) below
            t0 -= clock()
            stats.findings += 1
            signature = classify(target, data) or "flaky: fails only once"
            _report(target, data, signature, stats, save=save, out=out)
            t0 += clock()  # the time spent on the finding is not the input's
        else:
            stats.accepted += 1
            if rng.random() < 0.05:  # keep valid mutants: deeper mutations from there
                if len(pool) < POOL_LIMIT:
                    pool.append(data)
                else:
                    pool[len(seeds) + rng.randrange(POOL_LIMIT - len(seeds))] = data
        elapsed = clock() - t0
        if elapsed > stats.slowest:
            stats.slowest = elapsed
            if elapsed > SLOW_SECONDS:
                t1 = clock()
                classify(target, data)
                if clock() - t1 > SLOW_SECONDS:
                    stats.findings += 1
                    _report(target, data, f"slow: {elapsed:.1f} s", stats, save=save, out=out)
    stats.seconds = clock() - started
    return stats


def _report(
    target: Target, data: bytes, signature: str, stats: Stats, *, save: Path | None, out: Callable[[str], None]
) -> None:
    key = signature if not signature.startswith("slow") else "slow"
    if key in stats.signatures:
        return
    small = data if key == "slow" or signature.startswith("flaky") else shrink(target, data, signature)
    stats.signatures[key] = small
    where = ""
    if save is not None:
        kind = re.sub(r"[^a-z0-9]+", "-", key.split(" at ")[0].lower()).strip("-")[:24]
        path = save / target.name / f"{kind}-{hashlib.sha1(small).hexdigest()[:10]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(small)
        where = f" -> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
    out(f"FINDING {target.name}: {signature}{where}\n  input ({len(small)} bytes): {small[:600]!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target (default 1,000,000)")
    parser.add_argument("--seconds", type=float, default=None, help="at most this long per target")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="only this target (repeatable)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1); same seed, same inputs")
    parser.add_argument("--smoke", action="store_true", help="3,000 inputs per target")
    parser.add_argument("--no-save", action="store_true", help="do not write findings to the corpus")
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="where findings are saved (default tests/fuzz/corpus)"
    )
    args = parser.parse_args(argv)
    inputs = 3000 if args.smoke else args.inputs
    names = args.target or list(TARGETS)
    save = None if args.no_save else args.corpus
    print_header(
        f"fuzz: {inputs:,} inputs per target, seed {args.seed}" + (f", cap {args.seconds:g} s" if args.seconds else "")
    )
    columns = ("inputs", 10), ("inputs/s", 9), ("accepted", 9), ("errors(own)", 11), ("findings", 8), ("unique", 6)
    print(f"{'target':<12} " + " ".join(f"{name:>{width}}" for name, width in columns) + f" {'slowest':>8} {'time':>8}")
    total_findings = 0
    for name in names:
        stats = fuzz_target(TARGETS[name], inputs=inputs, seconds=args.seconds, seed=args.seed, save=save, out=print)
        total_findings += stats.findings
        rate = stats.inputs / stats.seconds if stats.seconds > 0 else 0.0
        print(
            f"{name:<12} {stats.inputs:>10,} {rate:>9,.0f} {stats.accepted:>9,} {stats.errors:>11,}"
            f" {stats.findings:>8,} {len(stats.signatures):>6} {stats.slowest * 1000:>6.1f}ms {stats.seconds:>7.1f}s",
            flush=True,
        )
    print(f"# {'FINDINGS: ' + str(total_findings) if total_findings else 'no findings'}")
    return 1 if total_findings else 0


if __name__ == "__main__":
    sys.exit(main())
