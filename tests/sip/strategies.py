"""Hypothesis strategies for SIP values and messages.

``messages()`` draws requests and responses that our parser must read back exactly;
``wire_forms(message)`` draws other spellings of the same message (compact and odd-case
header names, LWS around colons, folded lines, list headers joined by commas) that must
parse to the same value.
"""

from __future__ import annotations

import ipaddress

import attrs
from hypothesis import strategies as st

from sipcallhunt.sip.message import COMPACT_FORMS, LIST_HEADERS, Headers, SipMessage, SipRequest, SipResponse
from sipcallhunt.sip.sdp import Connection, Direction, Fmtp, MediaDescription, Origin, RtpMap, SessionDescription
from sipcallhunt.sip.uri import NameAddr, Params, SipUri, Via, quote

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
WORD_CHARS = TOKEN_CHARS + '()<>:\\"/[]?{}'

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
upper_tokens = tokens.map(str.upper)

# Text without CR/LF or surrogates: what a header value or display name can carry.
_TEXT_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\r\n")
line_text = st.text(_TEXT_CHARS, max_size=30)
# Header values: no control characters, no leading/trailing whitespace (the parser strips it).
_VALUE_CHARS = st.characters(exclude_categories=("Cs", "Cc"))
header_values = (
    st.text(_VALUE_CHARS, max_size=40).map(lambda s: s.strip(" \t\u3000\x85\xa0")).filter(lambda s: s == s.strip(" \t"))
)


def _label() -> st.SearchStrategy[str]:
    return st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,8}[a-z0-9])?", fullmatch=True)


hostnames = st.builds(
    lambda labels, top: ".".join([*labels, top]),
    st.lists(_label(), max_size=3),
    st.from_regex(r"[a-z]([a-z0-9\-]{0,6}[a-z0-9])?", fullmatch=True),
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: str(ipaddress.IPv6Address(a)))
hosts = st.one_of(hostnames, ipv4, ipv6.map(lambda a: f"[{a}]"))
ports = st.one_of(st.none(), st.integers(1, 65535))

_ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)


@st.composite
def uri_params(draw: st.DrawFn) -> Params:
    names = draw(st.lists(_ANY_TEXT, max_size=3, unique_by=str.lower))
    return tuple((name, draw(st.one_of(st.none(), _ANY_TEXT))) for name in names)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(st.one_of(st.none(), _ANY_TEXT))
    password = draw(st.one_of(st.none(), st.text(st.characters(exclude_categories=("Cs",)), max_size=8)))
    headers = draw(
        st.lists(st.tuples(_ANY_TEXT, st.text(st.characters(exclude_categories=("Cs",)), max_size=8)), max_size=2)
    )
    return SipUri(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=password if user is not None else None,
        host=draw(hosts),
        port=draw(ports),
        params=draw(uri_params()),
        headers=tuple(headers),
    )


# Headers are not allowed in a Request-URI (RFC 3261 §19.1.1).
request_uris = sip_uris().map(lambda u: attrs.evolve(u, headers=()))


gen_values = st.one_of(
    tokens,
    hosts,
    st.text(_TEXT_CHARS, max_size=15).map(quote),
)


@st.composite
def header_params(draw: st.DrawFn) -> Params:
    names = draw(st.lists(tokens, max_size=3, unique_by=str.lower))
    return tuple((name, draw(st.one_of(st.none(), gen_values))) for name in names)


@st.composite
def name_addrs(draw: st.DrawFn) -> NameAddr:
    return NameAddr(
        uri=draw(sip_uris()),
        display_name=draw(st.one_of(st.none(), line_text)),
        params=draw(header_params()),
    )


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params: list[tuple[str, str | None]] = [("branch", "z9hG4bK" + draw(tokens))]
    if draw(st.booleans()):
        params.append(("rport", None))
    if draw(st.booleans()):
        params.append(("received", draw(st.one_of(ipv4, ipv6))))
    return Via(
        transport=draw(st.one_of(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"]), upper_tokens)),
        host=draw(hosts),
        port=draw(ports),
        params=tuple(params),
    )


call_ids = st.builds(
    lambda a, b: a if b is None else f"{a}@{b}",
    st.text(WORD_CHARS, min_size=1, max_size=20),
    st.one_of(st.none(), st.text(WORD_CHARS, min_size=1, max_size=10)),
)
methods = st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO"]), tokens)

# Names of extension headers: never a known header or a compact form.
extension_names = tokens.map(lambda t: "X-" + t)


@st.composite
def _headers(draw: st.DrawFn, method: str) -> Headers:
    pairs: list[tuple[str, str]] = [("Via", str(v)) for v in draw(st.lists(vias(), min_size=1, max_size=3))]
    pairs += [
        ("From", str(draw(name_addrs()))),
        ("To", str(draw(name_addrs()))),
        ("Call-ID", draw(call_ids)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    extra: list[tuple[str, str]] = []
    extra += [("Contact", str(c)) for c in draw(st.lists(name_addrs(), max_size=2))]
    if draw(st.booleans()):
        extra.append(("Max-Forwards", str(draw(st.integers(0, 255)))))
    extra += [("Supported", t) for t in draw(st.lists(tokens, max_size=3))]
    if draw(st.booleans()):
        extra.append(("Subject", draw(header_values)))
    extra += [(name, draw(header_values)) for name in draw(st.lists(extension_names, max_size=3))]
    order = draw(st.permutations(range(len(extra)))) if extra else []
    # Keep fields of one name in their relative order (a list header's order is its meaning).
    placed = sorted(range(len(extra)), key=lambda i: (order[i], i))
    by_name: dict[str, list[str]] = {}
    for name, value in extra:
        by_name.setdefault(name, []).append(value)
    shuffled: list[tuple[str, str]] = []
    for i in placed:
        name = extra[i][0]
        shuffled.append((name, by_name[name].pop(0)))
    return Headers.of([*pairs, *shuffled])


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(methods)
    body = draw(st.binary(max_size=200))
    headers = draw(_headers(method))
    if body:
        headers = headers.appended("Content-Type", "application/sdp")
    return SipRequest(method, str(draw(request_uris)), headers, body)


@st.composite
def responses(draw: st.DrawFn) -> SipResponse:
    body = draw(st.binary(max_size=200))
    headers = draw(_headers(draw(methods)))
    reason = draw(st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=20))
    return SipResponse(draw(st.integers(100, 699)), reason, headers, body)


def messages() -> st.SearchStrategy[SipMessage]:
    return st.one_of(requests(), responses())


_LONG_TO_COMPACT = {long: short for short, long in COMPACT_FORMS.items()}


@st.composite
def _spell(draw: st.DrawFn, name: str) -> str:
    if name.startswith("X-"):
        return name  # unknown names are kept as written, so keep them
    choices = [name, name.lower(), name.upper()]
    if name in _LONG_TO_COMPACT:
        compact = _LONG_TO_COMPACT[name]
        choices += [compact, compact.upper()]
    return draw(st.sampled_from(choices))


@st.composite
def _fold(draw: st.DrawFn, value: str) -> str:
    """Fold ``value`` at some single spaces (unfolding turns each fold back into one space)."""
    out = []
    for i, ch in enumerate(value):
        lone = ch == " " and 0 < i < len(value) - 1 and value[i - 1] not in " \t" and value[i + 1] not in " \t"
        if lone and draw(st.booleans()):
            out.append(draw(st.sampled_from(["\r\n ", "\r\n\t", "\r\n   "])))
        else:
            out.append(ch)
    return "".join(out)


@st.composite
def wire_forms(draw: st.DrawFn, message: SipMessage) -> bytes:
    """Another wire spelling of ``message`` that must parse to the same value."""
    lines = [message.start_line()]
    items = list(message.headers.items)
    i = 0
    while i < len(items):
        name, value = items[i]
        values = [value]
        if name.lower() in LIST_HEADERS:
            while i + 1 < len(items) and items[i + 1][0] == name and draw(st.booleans()):
                i += 1
                values.append(items[i][1])
        i += 1
        joined = draw(st.sampled_from([", ", ",", " ,  "])).join(values)
        before = draw(st.sampled_from(["", " ", "\t", "  "]))
        after = draw(st.sampled_from(["", " ", "   ", "\t"])) if joined else ""
        lines.append(f"{draw(_spell(name))}{before}:{after}{draw(_fold(joined))}")
    length_name = draw(st.sampled_from(["Content-Length", "l", "content-length"]))
    lines.append(f"{length_name}: {len(message.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + message.body


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few random byte edits (flip, insert, delete, truncate)."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not buf:
            break
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        pos = draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            buf[pos:pos] = draw(st.sampled_from([b"\r\n", b" ", b":", b";", b",", b"<", b'"', b"\x00", b"\xff", b"%"]))
        elif kind == "delete":
            del buf[pos : pos + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del buf[pos:]
        else:
            buf[pos:pos] = buf[pos : pos + draw(st.integers(1, 40))]
    return bytes(buf)


# -- SDP ---------------------------------------------------------------------------------------

_SDP_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s
)
_ATTR_NAMES = st.one_of(st.sampled_from(["label", "rtcp", "mid", "ssrc", "candidate", "rtcp-fb"]), tokens)


@st.composite
def connections(draw: st.DrawFn) -> Connection:
    if draw(st.booleans()):
        return Connection(draw(ipv6), "IP6")
    return Connection(draw(st.one_of(ipv4, hostnames)), "IP4")


@st.composite
def _attributes(draw: st.DrawFn) -> tuple[tuple[str, str | None], ...]:
    reserved = {"rtpmap", "fmtp", "ptime", "maxptime", "rtcp-mux", "sendrecv", "sendonly", "recvonly", "inactive"}
    names = draw(st.lists(_ATTR_NAMES.filter(lambda n: n not in reserved), max_size=3))
    return tuple((name, draw(st.one_of(st.none(), _SDP_TEXT))) for name in names)


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    pts = draw(st.lists(st.integers(0, 127), min_size=1, max_size=5, unique=True))
    rtpmap = tuple(
        RtpMap(pt, draw(st.sampled_from(["PCMU", "PCMA", "telephone-event", "opus", "G722"])), 8000)
        for pt in pts
        if draw(st.booleans())
    )
    fmtp = tuple(Fmtp(pt, draw(_SDP_TEXT)) for pt in pts if draw(st.booleans()))
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video", "application"])),
        port=draw(st.integers(0, 65535)),
        port_count=draw(st.one_of(st.none(), st.integers(1, 4))),
        proto=draw(st.sampled_from(["RTP/AVP", "RTP/AVPF", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"])),
        formats=tuple(str(pt) for pt in pts),
        connection=draw(st.one_of(st.none(), connections())),
        rtpmap=rtpmap,
        fmtp=fmtp,
        ptime=draw(st.one_of(st.none(), st.integers(1, 200))),
        maxptime=draw(st.one_of(st.none(), st.integers(1, 200))),
        direction=draw(st.one_of(st.none(), st.sampled_from(list(Direction)))),
        rtcp_mux=draw(st.booleans()),
        bandwidths=tuple(draw(st.lists(st.sampled_from(["AS:64", "TIAS:64000", "CT:128"]), max_size=2))),
        attributes=draw(_attributes()),
    )


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    connection = draw(connections())
    return SessionDescription(
        origin=Origin(
            username=draw(st.sampled_from(["-", "user1", "FreeSWITCH"])),
            session_id=draw(st.integers(0, 2**62)),
            session_version=draw(st.integers(0, 2**62)),
            addr_type=connection.addr_type,
            address=connection.address,
        ),
        session_name=draw(st.one_of(st.just("-"), _SDP_TEXT)),
        connection=draw(st.one_of(st.none(), st.just(connection))),
        times=tuple(draw(st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)), min_size=1, max_size=2))),
        direction=draw(st.one_of(st.none(), st.sampled_from(list(Direction)))),
        attributes=draw(_attributes()),
        media=tuple(draw(st.lists(media_descriptions(), max_size=3))),
    )
