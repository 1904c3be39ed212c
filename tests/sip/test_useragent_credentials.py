"""Which credentials each request carries (fake clock, hand-written PBX messages).

The registrar's challenge (401 to REGISTER) must not make every later INVITE carry an
Authorization header: a proxy forwards credentials it did not ask for (Kamailio consumes only the
Proxy-Authorization it checked), so the agent's phone would receive a digest response computed
with the hotline's password.  Calls carry only what calls were challenged for: Proxy-Authorization
after a 407 (Kamailio, OpenSIPS), Authorization after a 401 to an INVITE (Asterisk).  Requests
inside a dialog (BYE) carry none until challenged: the proxies on the route set relay them to the
far end without looking at (or removing) credentials.
"""

from __future__ import annotations

from sipcallhunt.sip.message import SipRequest
from sipcallhunt.sip.registration import RegState
from tests.sip.test_useragent import ANSWER, MEDIA, Harness, reply

WWW = ("WWW-Authenticate", 'Digest realm="127.0.0.1", nonce="reg-nonce", algorithm=MD5')
PROXY = ("Proxy-Authenticate", 'Digest realm="127.0.0.1", nonce="call-nonce", algorithm=MD5')


def registered(h: Harness) -> SipRequest:
    h.ua.start(h.now)
    h.pump()
    h.deliver(reply(h.requests("REGISTER")[-1], 401, extra=[WWW]))
    second = h.requests("REGISTER")[-1]
    assert 'nonce="reg-nonce"' in (second.headers.get("Authorization") or "")
    h.deliver(reply(second, 200, to_tag="r"))
    assert h.ua.registration_state("main") is RegState.REGISTERED
    return second


def test_registrar_credentials_stay_with_register() -> None:
    h = Harness(register=True)
    registered(h)
    h.ua.invite("main", "agent1", MEDIA, h.now)
    h.pump()
    first = h.requests("INVITE")[-1]
    assert first.headers.get("Authorization") is None and first.headers.get("Proxy-Authorization") is None
    h.deliver(reply(first, 407, extra=[PROXY]))
    second = h.requests("INVITE")[-1]
    assert 'nonce="call-nonce"' in (second.headers.get("Proxy-Authorization") or "")
    assert second.headers.get("Authorization") is None  # nothing of the registrar's for the callee
    # the next call carries the proxy's credentials pre-emptively, still not the registrar's
    h.ua.invite("main", "agent2", MEDIA, h.now)
    h.pump()
    third = h.requests("INVITE")[-1]
    assert third.call_id != second.call_id
    assert 'nonce="call-nonce"' in (third.headers.get("Proxy-Authorization") or "")
    assert third.headers.get("Authorization") is None
    # and a registration refresh carries the registrar's credentials only
    h.advance(300.0)
    refresh = h.requests("REGISTER")[-1]
    assert 'nonce="reg-nonce"' in (refresh.headers.get("Authorization") or "")
    assert refresh.headers.get("Proxy-Authorization") is None


def test_invite_challenged_with_401_is_answered_with_authorization() -> None:
    h = Harness(register=True)
    registered(h)
    h.ua.invite("main", "agent1", MEDIA, h.now)
    h.pump()
    first = h.requests("INVITE")[-1]
    h.deliver(reply(first, 401, extra=[("WWW-Authenticate", 'Digest realm="asterisk", nonce="inv-nonce"')]))
    second = h.requests("INVITE")[-1]
    assert second.top_via.branch != first.top_via.branch
    authorization = second.headers.get("Authorization") or ""
    assert 'realm="asterisk"' in authorization and 'nonce="inv-nonce"' in authorization
    assert "reg-nonce" not in str(second.headers)


def test_bye_carries_no_credentials_until_challenged() -> None:
    """A proxy relays in-dialog requests without consuming credentials: the agent would get them."""
    h = Harness(register=True)
    registered(h)
    leg = h.ua.invite("main", "agent1", MEDIA, h.now)
    h.pump()
    h.deliver(reply(h.requests("INVITE")[-1], 407, extra=[PROXY]))
    answered = h.requests("INVITE")[-1]
    assert answered.headers.get("Proxy-Authorization")
    h.deliver(reply(answered, 200, body=ANSWER))
    h.ua.hangup(leg, h.now)
    h.pump()
    bye = h.requests("BYE")[-1]
    assert bye.headers.get("Proxy-Authorization") is None and bye.headers.get("Authorization") is None
    # challenged anyway: the BYE is sent again, with credentials for it
    h.deliver(reply(bye, 407, extra=[("Proxy-Authenticate", 'Digest realm="127.0.0.1", nonce="bye-nonce"')]))
    again = h.requests("BYE")[-1]
    assert again.cseq.seq == bye.cseq.seq + 1 and again.top_via.branch != bye.top_via.branch
    assert 'nonce="bye-nonce"' in (again.headers.get("Proxy-Authorization") or "")
    assert 'uri="sip:agent1@127.0.0.11:5062"' in (again.headers.get("Proxy-Authorization") or "")
