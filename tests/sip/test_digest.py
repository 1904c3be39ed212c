"""Digest authentication as a client: RFC test vectors, challenge parsing, the per-account session."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcallhunt.errors import SipParseError
from sipcallhunt.sip.digest import (
    ALGORITHMS,
    Challenge,
    ChallengeOutcome,
    DigestSession,
    authorization,
    challenges_of,
    choose_challenge,
    digest_response,
    parse_challenges,
)
from sipcallhunt.sip.message import Headers, SipRequest, SipResponse

RFC2617 = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC7616_SHA256 = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_MD5 = RFC7616_SHA256.replace("algorithm=SHA-256", "algorithm=MD5")
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def params_of(value: str) -> dict[str, str]:
    (challenge,) = parse_challenges(value)
    return dict(challenge.params)


def test_rfc2617_section_3_5_example() -> None:
    (challenge,) = parse_challenges(RFC2617)
    value = authorization(
        challenge,
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
        nc=1,
    )
    assert value.startswith("Digest ")
    got = params_of(value)
    assert got["response"] == "6629fae49393a05397450978507c4ef1"
    assert got["qop"] == "auth" and got["nc"] == "00000001" and got["cnonce"] == "0a4f113b"
    assert got["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert got["uri"] == "/dir/index.html" and got["username"] == "Mufasa"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (RFC7616_MD5, "8ca523f5e9506fed4657c9700eebdbec"),
        (RFC7616_SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(header: str, expected: str) -> None:
    (challenge,) = parse_challenges(header)
    response = digest_response(
        challenge,
        username="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616_CNONCE,
        nc=1,
    )
    assert response == expected


def test_several_challenges_in_one_field_and_the_strongest_wins() -> None:
    challenges = parse_challenges(RFC7616_MD5 + ", " + RFC7616_SHA256)
    assert [c.algorithm for c in challenges] == ["MD5", "SHA-256"]
    best = choose_challenge(challenges)
    assert best is not None and best.algorithm == "SHA-256"
    assert challenges[0].qop == ("auth", "auth-int")


def test_challenges_from_several_fields_of_a_response() -> None:
    response = SipResponse(
        407,
        "Proxy Authentication Required",
        Headers.of(
            [
                ("Proxy-Authenticate", 'Digest realm="a.example", nonce="n1", algorithm=MD5-sess, qop="auth"'),
                ("Proxy-Authenticate", 'Digest realm="a.example", nonce="n1", algorithm=SHA-256-sess, qop="auth"'),
                ("WWW-Authenticate", 'Basic realm="b.example"'),
            ]
        ),
    )
    challenges = challenges_of(response)
    assert [(c.proxy, c.scheme, c.algorithm) for c in challenges] == [
        (False, "Basic", "MD5"),
        (True, "Digest", "MD5-sess"),
        (True, "Digest", "SHA-256-sess"),
    ]
    best = choose_challenge(challenges)
    assert best is not None and best.algorithm == "SHA-256-sess" and best.header_name == "Proxy-Authorization"


@pytest.mark.parametrize(
    ("value", "field", "expected"),
    [
        ("Digest realm=example.com, nonce=abc", "realm", "example.com"),  # unquoted token values
        ('Digest   realm = "x" ,nonce="a\\"b"', "nonce", 'a"b'),  # LWS and quoted-pair
        ('digest realm="x", nonce="n", algorithm="sha-256"', "algorithm", "SHA-256"),  # quoted, any case
        ('Digest realm="x", nonce="n", stale=TRUE', "stale", True),
        ('Digest realm="x", nonce="n", userhash=true', "userhash", True),
        ('Digest realm="x", nonce="n", domain="sip:a sip:b"', "domain", "sip:a sip:b"),
        ('Digest realm="", nonce="n",, qop=auth-int', "qop", ("auth-int",)),
        ('Digest realm="x", nonce="n", newparam="ignored"', "realm", "x"),
    ],
)
def test_parsing_edge_cases(value: str, field: str, expected: object) -> None:
    (challenge,) = parse_challenges(value)
    assert getattr(challenge, field) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        'Digest realm="unterminated',
        "Digest realm=",
        'Digest realm="x" nonce="y"',  # missing comma
        '"Digest" realm="x"',
        "Digest realm=@@",
        "Digest, =x",
    ],
)
def test_garbage_raises_sip_parse_error(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_challenges(value)


@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_sip_parse_error(value: str) -> None:
    try:
        challenges = parse_challenges(value)
    except SipParseError:
        return
    assert challenges


def test_unsupported_challenges() -> None:
    assert choose_challenge(parse_challenges('Digest realm="x", nonce="n", algorithm=SHA-1')) is None
    assert choose_challenge(parse_challenges('Digest realm="x", nonce="n", qop="auth-conf"')) is None
    assert choose_challenge(parse_challenges('Digest realm="x", algorithm=MD5')) is None  # no nonce
    # RFC 2069 (no qop) is MD5 only
    assert choose_challenge(parse_challenges('Digest realm="x", nonce="n", algorithm=SHA-256')) is None
    assert choose_challenge(parse_challenges('Basic realm="x"')) is None
    assert "MD5" in ALGORITHMS and ALGORITHMS.index("SHA-256") < ALGORITHMS.index("MD5")


def test_no_qop_is_rfc2069() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n"')
    value = authorization(challenge, username="u", password="p", method="REGISTER", uri="sip:r", cnonce="c")
    got = params_of(value)
    md5 = hashlib.md5
    ha1 = md5(b"u:r:p").hexdigest()
    ha2 = md5(b"REGISTER:sip:r").hexdigest()
    assert got["response"] == md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert "qop" not in got and "nc" not in got and "cnonce" not in got


def test_auth_int_only_when_it_is_all_that_is_offered() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n", qop="auth-int"')
    body = b"v=0\r\n"
    value = authorization(challenge, username="u", password="p", method="INVITE", uri="sip:b@r", body=body, cnonce="c")
    got = params_of(value)
    assert got["qop"] == "auth-int"
    md5 = hashlib.md5
    ha1 = md5(b"u:r:p").hexdigest()
    ha2 = md5(f"INVITE:sip:b@r:{md5(body).hexdigest()}".encode()).hexdigest()
    assert got["response"] == md5(f"{ha1}:n:00000001:c:auth-int:{ha2}".encode()).hexdigest()


def test_sess_and_userhash() -> None:
    (challenge,) = parse_challenges('Digest realm="r", nonce="n", qop=auth, algorithm=SHA-256-sess, userhash=true')
    got = params_of(authorization(challenge, username="u", password="p", method="BYE", uri="sip:x", cnonce="c", nc=3))
    sha = hashlib.sha256
    ha1 = sha(f"{sha(b'u:r:p').hexdigest()}:n:c".encode()).hexdigest()
    ha2 = sha(b"BYE:sip:x").hexdigest()
    assert got["response"] == sha(f"{ha1}:n:00000003:c:auth:{ha2}".encode()).hexdigest()
    assert got["username"] == sha(b"u:r").hexdigest()
    assert got["userhash"] == "true" and got["algorithm"] == "SHA-256-sess" and got["nc"] == "00000003"


def register(uri: str = "sip:pbx.example") -> SipRequest:
    return SipRequest(
        "REGISTER",
        uri,
        Headers.of(
            [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1"),
                ("From", "<sip:100@pbx.example>;tag=1"),
                ("To", "<sip:100@pbx.example>"),
                ("Call-ID", "c1"),
                ("CSeq", "1 REGISTER"),
            ]
        ),
    )


def challenge(status: int, value: str) -> SipResponse:
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    return SipResponse(status, "Unauthorized", Headers.of([(name, value)]))


def counter() -> DigestSession:
    numbers = itertools.count(1)
    return DigestSession("100", "secret", cnonce_source=lambda: f"cn{next(numbers)}")


def test_session_answers_and_counts_nonce_uses() -> None:
    session = counter()
    assert session.authorize(register()) == register()  # nothing known yet
    assert session.on_challenge(challenge(401, 'Digest realm="pbx", nonce="N1", qop="auth"')) is ChallengeOutcome.RETRY
    first = session.authorize(register())
    got = params_of(first.headers.get("Authorization") or "")
    assert (got["nc"], got["cnonce"], got["uri"]) == ("00000001", "cn1", "sip:pbx.example")
    # a later request (re-REGISTER, BYE...) is authorised pre-emptively with the next nc
    bye = attrs_evolve(register("sip:200@10.0.0.1:5070"), method="BYE")
    got = params_of(session.authorize(bye).headers.get("Authorization") or "")
    assert (got["nc"], got["cnonce"], got["uri"]) == ("00000002", "cn2", "sip:200@10.0.0.1:5070")
    # the header is replaced, not added twice
    again = session.authorize(first)
    assert len(again.headers.get_all("Authorization")) == 1


def attrs_evolve(request: SipRequest, **changes: str) -> SipRequest:
    import attrs

    return attrs.evolve(request, **changes)


def test_stale_nonce_is_not_a_failure_but_a_second_plain_challenge_is() -> None:
    session = counter()
    session.on_challenge(challenge(401, 'Digest realm="pbx", nonce="N1", qop="auth"'))
    session.authorize(register())
    outcome = session.on_challenge(challenge(401, 'Digest realm="pbx", nonce="N2", qop="auth", stale=true'))
    assert outcome is ChallengeOutcome.STALE
    got = params_of(session.authorize(register()).headers.get("Authorization") or "")
    assert (got["nonce"], got["nc"]) == ("N2", "00000001")  # new nonce, count restarts
    outcome = session.on_challenge(challenge(401, 'Digest realm="pbx", nonce="N3", qop="auth"'))
    assert outcome is ChallengeOutcome.REJECTED


def test_proxy_and_www_realms_are_answered_separately() -> None:
    session = counter()
    response = SipResponse(
        407,
        "Proxy Authentication Required",
        Headers.of(
            [
                ("Proxy-Authenticate", 'Digest realm="edge", nonce="P", qop="auth"'),
                ("WWW-Authenticate", 'Digest realm="pbx", nonce="W", qop="auth", algorithm=SHA-256'),
            ]
        ),
    )
    assert session.on_challenge(response) is ChallengeOutcome.RETRY
    request = session.authorize(register())
    assert params_of(request.headers.get("Proxy-Authorization") or "")["realm"] == "edge"
    assert params_of(request.headers.get("Authorization") or "")["algorithm"] == "SHA-256"
    assert sorted(session.realms) == ["edge", "pbx"]


def test_session_limited_to_a_realm_and_unsupported() -> None:
    session = DigestSession("100", "secret", cnonce_source=lambda: "c", realm="pbx")
    assert session.on_challenge(challenge(401, 'Digest realm="other", nonce="N", qop="auth"')) is (
        ChallengeOutcome.UNSUPPORTED
    )
    assert session.on_challenge(challenge(401, 'Digest realm="pbx", nonce="N", algorithm=SHA-1')) is (
        ChallengeOutcome.UNSUPPORTED
    )
    assert session.authorize(register()) == register()


def test_authorization_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(ValueError, match="cannot answer"):
        authorization(Challenge(scheme="Basic"), username="u", password="p", method="M", uri="sip:x", cnonce="c")
