"""URIs and the structured header values: exact round trips and precise refusals."""

from __future__ import annotations

import pytest
from hypothesis import given

from sipcallhunt.errors import LocalProtocolError, SipParseError
from sipcallhunt.sip.uri import CSeq, NameAddr, SipUri, Via, generic_params, quote, split_comma_list, unquote
from tests.sip.strategies import line_text, name_addrs, sip_uris, vias


@given(sip_uris())
def test_uri_round_trip(uri: SipUri) -> None:
    assert SipUri.parse(str(uri)) == uri


@given(name_addrs())
def test_name_addr_round_trip(value: NameAddr) -> None:
    assert NameAddr.parse(str(value)) == value


@given(vias())
def test_via_round_trip(via: Via) -> None:
    assert Via.parse(str(via)) == via


@given(line_text)
def test_quote_round_trip(text: str) -> None:
    quoted = quote(text)
    assert unquote(quoted) == text
    assert NameAddr.parse(f"{quoted} <sip:a@b>").display_name == text


def test_quote_escapes_controls_and_refuses_line_breaks() -> None:
    assert quote('a"b\\c\x00\x7f') == '"a\\"b\\\\c\\\x00\\\x7f"'
    with pytest.raises(LocalProtocolError):
        quote("a\r\nb")


@pytest.mark.parametrize(
    ("text", "user", "host", "port", "params"),
    [
        ("sip:alice@example.com", "alice", "example.com", None, ()),
        ("sips:bob:pw@[2001:db8::1]:5061;transport=tcp", "bob", "[2001:db8::1]", 5061, (("transport", "tcp"),)),
        ("SIP:carol@192.0.2.1;lr;maddr=[::1]", "carol", "192.0.2.1", None, (("lr", None), ("maddr", "[::1]"))),
        ("sip:%61lice@example.com;n%61me=v%2541", "alice", "example.com", None, (("name", "v%41"),)),
        ("sip:user;par=1?x@example.com", "user;par=1?x", "example.com", None, ()),
        ("sip:example.com.", None, "example.com.", None, ()),
    ],
)
def test_uri_examples(text: str, user: str | None, host: str, port: int | None, params: object) -> None:
    uri = SipUri.parse(text)
    assert (uri.user, uri.host, uri.port, uri.params) == (user, host, port, params)
    assert SipUri.parse(str(uri)) == uri


def test_uri_conveniences() -> None:
    uri = SipUri.parse("sips:[2001:db8::5]")
    assert uri.host_bare == "2001:db8::5" and uri.default_port() == 5061 and uri.transport == "tls"
    tel = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert tel.user == "+1-201-555-0123" and str(tel) == "tel:+1-201-555-0123;phone-context=example.com"
    other = SipUri.parse("urn:service:sos")
    assert other.opaque == "service:sos" and not other.is_sip and str(other) == "urn:service:sos"
    assert SipUri.parse("sip:a@b;x=1").with_param("lr").without_params("x") == SipUri.parse("sip:a@b;lr")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "alice@example.com",
        "sip:alice@",
        "sip:@example.com",
        "sip:a b@example.com",
        "sip:alice@example.com:99999",
        "sip:alice@example.com:5o60",
        "sip:alice@[2001:db8::1",
        "sip:alice@[2001:db8:::1]",
        "sip:alice@[1.2.3.4]",
        "sip:alice@256.1.1.1.1",
        "sip:alice@-bad-.com",
        "sip:alice@example.com;=x",
        "sip:alice@example.com?=",
        'sip:al"ice@example.com',
        "tel:12ab#?z",
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_name_addr_forms() -> None:
    plain = NameAddr.parse("sip:a@b;tag=1")  # addr-spec: the parameters belong to the header
    assert plain.tag == "1" and plain.uri == SipUri(user="a", host="b")
    spaced = NameAddr.parse("sip:a@b ;  tag = 2")
    assert spaced.tag == "2"
    named = NameAddr.parse('"A \\"B\\"" <sip:a@b;lr>;tag=x;flag')
    assert named.display_name == 'A "B"' and named.uri is not None and named.uri.params == (("lr", None),)
    assert named.params == (("tag", "x"), ("flag", None))
    assert NameAddr.parse("Alice  Smith <sip:a@b>").display_name == "Alice Smith"
    assert NameAddr.parse("*").uri is None and str(NameAddr.parse("*")) == "*"
    assert NameAddr.parse("<sip:a@b>").with_tag("t").tag == "t"


@pytest.mark.parametrize(
    "text",
    [
        "< sip:a@b>",
        "<sip:a@b >",
        '"unterminated <sip:a@b>',
        "Bell, Alexander <sip:a@b>",
        "sip:a@b?x=y",
        "<sip:a@b",
        '"x" sip:a@b',
        "<sip:a@b>;;",
        "<sip:a@b>;tag=a b",
        "<sip:a@b> junk",
    ],
)
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_via_forms() -> None:
    via = Via.parse("SIP / 2.0 / udp  [::1] : 5070 ;branch=z9hG4bKx;rport;received=2001:db8::9")
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "[::1]", 5070, "z9hG4bKx")
    assert via.param("received") == "2001:db8::9" and via.param("rport") == ""
    assert via.sent_by == ("[::1]", 5070)
    for bad in ["SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP host;branch", "SIP/2.0/UDP host:x", "SIP/2.0/UDP a b"]:
        with pytest.raises(SipParseError):
            Via.parse(bad)


def test_cseq() -> None:
    assert CSeq.parse("  0009 INVITE ") == CSeq(9, "INVITE")
    assert str(CSeq(2**31 - 1, "BYE")) == "2147483647 BYE"
    for bad in ["2147483648 INVITE", "1", "x INVITE", "1 IN VITE", "-1 BYE", '1 IN"VITE']:
        with pytest.raises(SipParseError):
            CSeq.parse(bad)


def test_comma_lists_and_params() -> None:
    assert split_comma_list('"a, b" <sip:x>, <sip:y;p=1,2>,c') == ['"a, b" <sip:x>', "<sip:y;p=1,2>", "c"]
    assert generic_params(' ; a = "x;y" ;b', "test") == (("a", '"x;y"'), ("b", None))
    with pytest.raises(SipParseError):
        generic_params("a=b", "test")
