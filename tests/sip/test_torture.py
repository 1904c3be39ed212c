"""RFC 4475 torture messages: the valid ones parse with the right fields, the invalid ones raise
SipParseError with the status the RFC implies (and ``partial`` when a request can be answered)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipcallhunt.errors import SipParseError
from sipcallhunt.sip.message import SipRequest, SipResponse, StreamFramer, parse_message
from sipcallhunt.sip.uri import NameAddr, SipUri

TORTURE = Path(__file__).parent / "torture"


def load(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


def request(name: str) -> SipRequest:
    message = parse_message(load(name))
    assert isinstance(message, SipRequest)
    return message


def response(name: str) -> SipResponse:
    message = parse_message(load(name))
    assert isinstance(message, SipResponse)
    return message


# RFC 4475 §3.1.1 (valid), §3.2, §3.3 and §3.4: syntactically well formed; the application layer
# (not the parser) answers 400/416/420/415/401/483 or drops, as the RFC says for each.
VALID = [
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq", "semiuri", "transports",
    "mpart01", "unreason", "noreason",
    "badbranch",  # §3.2.1: a transaction-layer matter (fall back to RFC 2543 matching or answer 400)
    "unkscm", "novelsc", "unksm2", "bext01", "invut", "regaut01", "bcast", "zeromf", "cparam01", "cparam02",
    "regescrt", "sdp01",
    "inv2543",  # §3.4.1: accepted for backward compatibility
]  # fmt: skip

# name → (status, partial expected): requests can be answered, responses are dropped.
INVALID = {
    "badinv01": (400, True),
    "clerr": (400, True),
    "ncl": (400, True),
    "scalar02": (400, True),
    "scalarlg": (400, False),
    "quotbal": (400, True),
    "ltgtruri": (400, True),
    "lwsruri": (400, True),
    "lwsstart": (400, True),
    "trws": (400, True),
    "escruri": (400, True),
    "baddate": (400, True),
    "regbadct": (400, True),
    "badaspec": (400, True),
    "baddn": (400, True),
    "badvers": (505, True),
    "mismatch01": (400, True),
    "mismatch02": (400, True),
    "bigcode": (400, False),
    "insuf": (400, True),  # §3.3.1: missing To, From, Call-ID
    "multi01": (400, True),  # §3.3.8
    "mcl01": (400, True),  # §3.3.9
}


def test_every_fixture_is_classified() -> None:
    names = {p.stem for p in TORTURE.glob("*.dat")}
    assert names == set(VALID) | set(INVALID)
    assert len(names) == 49


def test_fixtures_match_their_rfc_notation() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_fixtures", TORTURE / "build_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in module.MESSAGES.items():
        assert module.expand(text) == load(name), name


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_parse(name: str) -> None:
    message = parse_message(load(name))
    # and our own serialization of them parses back to the same value
    assert parse_message(bytes(message)) == message


# dblreq and inv2543 rely on datagram framing (trailing octets, no Content-Length).
@pytest.mark.parametrize("name", [n for n in VALID if n not in ("dblreq", "inv2543")])
def test_valid_messages_frame_on_a_stream(name: str) -> None:
    data = load(name)
    framer = StreamFramer()
    items = framer.feed(data)
    assert items == [parse_message(data)]
    assert framer.pending == 0


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_messages_raise(name: str) -> None:
    status, has_partial = INVALID[name]
    with pytest.raises(SipParseError) as info:
        parse_message(load(name))
    assert info.value.status == status
    assert (info.value.partial is not None) == has_partial
    if has_partial:
        partial = info.value.partial
        assert isinstance(partial, SipRequest)
        # enough to build the answer: the request's Via, Call-ID and CSeq are there
        assert partial.headers.get("Via") is not None
        assert partial.headers.get("CSeq") is not None


def test_wsinv_folding_and_whitespace() -> None:
    m = request("wsinv")
    assert m.method == "INVITE"
    assert m.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert m.request_uri.params == (("unknownparam", None),)
    to = m.to
    assert to.uri == SipUri(user="vivekg", host="chair-dnrc.example.com")
    assert to.tag == "1918181833n"
    assert m.from_.display_name == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert m.headers.get("Max-Forwards") == "0068"
    assert m.cseq.seq == 9 and m.cseq.method == "INVITE"
    vias = m.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert all(v.protocol == "SIP/2.0" for v in vias)
    assert m.headers.get("Subject") == ""
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    (route,) = [NameAddr.parse(v) for v in m.headers.get_all("Route")]
    assert route.uri is not None and route.uri.params == (
        ("lr", None),
        ("unknownwith", "value"),
        ("unknown-no-value", None),
    )
    assert m.content_type == "application/sdp"
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")


def test_intmeth_odd_tokens_and_binary_quoted_pairs() -> None:
    m = request("intmeth")
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = m.request_uri
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    frm = m.from_
    assert frm.display_name == "token1~` token2'+_ token3*%!.-"
    assert frm.param("fromParam''~+*_!.-%") == '"работающий"'
    assert frm.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.cseq.method == m.method
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01_escapes_are_resolved_once() -> None:
    m = request("esc01")
    assert m.request_uri.user == "sips:user@example.com"
    assert m.request_uri.host == "example.net"
    assert m.to.uri is not None and m.to.uri.user == "user"
    assert m.from_.uri is not None and m.from_.uri.user == "I have spaces"
    (contact,) = m.contacts
    assert contact.uri is not None
    assert contact.uri.user == "caller"
    # "value%41" is not "valueA": unescaping is not recursive (RFC 3986)
    assert contact.uri.params == (("lr", None), ("name", "value%41"))
    assert SipUri.parse(str(contact.uri)) == contact.uri


def test_escnull_keeps_nul_in_user_parts() -> None:
    m = request("escnull")
    assert m.to.uri is not None and m.to.uri.user == "null-\x00-null"
    users = [c.uri.user for c in m.contacts if c.uri is not None]
    assert users == ["\x00", "\x00\x00"]  # two distinct contacts
    assert str(m.contacts[1].uri) == "sip:%00%00@host5.example.com"


def test_esc02_percent_is_not_an_escape_outside_uris() -> None:
    m = request("esc02")
    assert m.method == "RE%47IST%45R"
    assert m.to.display_name == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    assert len(m.contacts) == 2
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_and_longreq() -> None:
    assert request("lwsdisp").from_.display_name == "caller"
    m = request("longreq")
    assert len(m.vias) == 34
    assert m.to.display_name == "I have a user name of " + "extreme" * 10 + " proportion"
    assert m.to.uri is not None and m.to.uri.port == 6000
    assert m.from_.tag == "12" + "982" * 50 + "424"
    assert m.call_id == "longreq.one" + "really" * 20 + "longcallid"
    assert m.vias[-1].branch == "very" + "long" * 50 + "branchvalue"


def test_dblreq_ignores_the_second_request_in_the_datagram() -> None:
    m = request("dblreq")
    assert m.method == "REGISTER"
    assert m.body == b""


def test_dblreq_on_a_stream_is_two_requests() -> None:
    items = StreamFramer().feed(load("dblreq"))
    assert [m.method for m in items if isinstance(m, SipRequest)] == ["REGISTER", "INVITE"]
    assert len(items) == 2


def test_semiuri_user_with_semicolon() -> None:
    m = request("semiuri")
    assert m.request_uri.user == "user;par=u@example.net"
    assert m.request_uri.params == ()
    assert m.header_tokens("Accept") == {
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    }


def test_transports() -> None:
    assert [v.transport for v in request("transports").vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_binary_multipart_body() -> None:
    m = request("mpart01")
    assert m.content_type == "multipart/mixed"
    assert len(m.body) == 553
    assert b"\x00" in m.body and m.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert m.top_via.param("rport") == ""


def test_unreason_and_noreason() -> None:
    m = response("unreason")
    assert m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    n = response("noreason")
    assert (n.status, n.reason) == (100, "")


def test_application_layer_cases_parse_with_their_oddities_visible() -> None:
    assert request("unkscm").request_uri.scheme == "nobodyknowsthisscheme"
    assert not request("unkscm").request_uri.is_sip
    assert request("novelsc").request_uri.opaque == "//192.0.2.103:3002"
    unksm2 = request("unksm2")
    assert unksm2.to.uri is not None and unksm2.to.uri.scheme == "isbn"
    assert request("bext01").header_tokens("Require") == {"nothingsupportsthis", "nothingsupportsthiseither"}
    assert request("zeromf").headers.get("Max-Forwards") == "0"
    (c1,) = request("cparam01").contacts
    assert c1.params == (("unknownparam", None),) and c1.uri is not None and c1.uri.params == ()
    (c2,) = request("cparam02").contacts
    assert c2.params == () and c2.uri is not None and c2.uri.params == (("unknownparam", None),)
    (c3,) = request("regescrt").contacts
    assert c3.uri is not None and c3.uri.headers == (("Route", "<sip:sip.example.com>"),)
    assert request("badbranch").top_via.branch == "z9hG4bK"
    inv = request("inv2543")
    assert inv.top_via.branch is None and inv.from_.tag is None
    assert inv.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
    assert [v.host for v in response("bcast").vias] == ["192.0.2.198", "255.255.255.255"]


def test_multi01_is_refused_for_its_duplicates_even_with_a_right_length() -> None:
    data = load("multi01").replace(b"l: 154\r\n", b"l: 152\r\n")
    with pytest.raises(SipParseError, match="more than one") as info:
        parse_message(data)
    assert info.value.partial is not None


def test_mismatch02_partial_keeps_the_unknown_method() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load("mismatch02"))
    partial = info.value.partial
    assert isinstance(partial, SipRequest) and partial.method == "NEWMETHOD"


def test_lwsstart_partial_is_answerable() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load("lwsstart"))
    partial = info.value.partial
    assert isinstance(partial, SipRequest)
    assert partial.method == "INVITE" and partial.cseq.seq == 1893884
