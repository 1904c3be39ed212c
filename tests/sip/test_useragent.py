"""The user-agent core on a fake clock, fed with hand-written messages from a "PBX"."""

from __future__ import annotations

import itertools

import pytest

from sipcallhunt.config import AccountConfig
from sipcallhunt.sip.events import (
    INFO,
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgress,
    IncomingCall,
    InfoDigit,
    LogLine,
    MediaUpdate,
    RegistrationChanged,
    SendMessage,
    UaEvent,
)
from sipcallhunt.sip.message import Headers, SipRequest, SipResponse, parse_message
from sipcallhunt.sip.registration import RegState
from sipcallhunt.sip.transaction import Endpoint
from sipcallhunt.sip.uri import SipUri
from sipcallhunt.sip.useragent import LocalMedia, UaSettings, UserAgent

PBX = Endpoint("udp", "127.0.0.1", 5060)
STRANGER = Endpoint("udp", "203.0.113.66", 5060)
MEDIA = LocalMedia(address="127.0.0.2", port=40000)

OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)
VIDEO_ONLY = b"v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=video 30002 RTP/AVP 96\r\n"


def account(**kw: object) -> AccountConfig:
    values: dict[str, object] = {
        "name": "main",
        "registrar": SipUri.parse("sip:127.0.0.1:5060"),
        "username": "hotline",
        "password": "hotlinepw",
        "expires": 300,
    }
    values.update(kw)
    return AccountConfig(**values)  # type: ignore[arg-type]


class Harness:
    def __init__(self, *, register: bool = False, keepalive: float = 0.0) -> None:
        counter = itertools.count()
        self.ua = UserAgent(
            UaSettings(
                host="127.0.0.2",
                port=5060,
                trusted_hosts=frozenset({"127.0.0.1"}),
                keepalive_interval=keepalive,
            ),
            [account(register=register)],
            token=lambda n: f"{next(counter):0{2 * n}x}",
        )
        self.now = 0.0
        self.sent: list[SendMessage] = []
        self.events: list[UaEvent] = []

    def pump(self) -> list[UaEvent]:
        new = self.ua.drain()
        for event in new:
            if isinstance(event, SendMessage):
                # Every message we send must parse, to the same start line and body.
                again = parse_message(bytes(event.message))
                assert again.start_line() == event.message.start_line() and again.body == event.message.body
                self.sent.append(event)
            self.events.append(event)
        return new

    def deliver(self, message: SipRequest | SipResponse, source: Endpoint = PBX) -> list[UaEvent]:
        self.ua.receive_datagram(bytes(message), source, self.now)
        return self.pump()

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while (deadline := self.ua.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.ua.handle_timer(self.now)
            self.pump()
        self.now = end

    def last(self, kind: type) -> object:
        return [e for e in self.events if isinstance(e, kind)][-1]

    def responses(self, method: str | None = None) -> list[SipResponse]:
        return [
            e.message
            for e in self.sent
            if isinstance(e.message, SipResponse) and (method is None or e.message.cseq.method == method)
        ]

    def requests(self, method: str) -> list[SipRequest]:
        return [e.message for e in self.sent if isinstance(e.message, SipRequest) and e.message.method == method]


def invite(
    *,
    branch: str = "z9hG4bKinv1",
    body: bytes = OFFER,
    user: str = "hotline",
    extra: list[tuple[str, str]] | None = None,
    call_id: str = "call-1@pbx",
) -> SipRequest:
    headers = [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={branch}"),
        ("Record-Route", "<sip:127.0.0.1;lr;ftag=f1>"),
        ("Max-Forwards", "69"),
        ("From", '"0171 555" <sip:0171555@pbx.example>;tag=f1'),
        ("To", f"<sip:{user}@pbx.example>"),
        ("Call-ID", call_id),
        ("CSeq", "10 INVITE"),
        ("Contact", "<sip:caller@127.0.0.5:5070>"),
        *(extra or []),
    ]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return SipRequest("INVITE", f"sip:{user}@127.0.0.2:5060", Headers.of(headers), body)


def in_dialog(ok: SipResponse, method: str, seq: int, *, branch: str, body: bytes = b"", ctype: str = "") -> SipRequest:
    headers = [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={branch}"),
        ("Max-Forwards", "70"),
        ("From", ok.headers.get("From") or ""),
        ("To", ok.headers.get("To") or ""),
        ("Call-ID", ok.call_id),
        ("CSeq", f"{seq} {method}"),
        ("Contact", "<sip:caller@127.0.0.5:5070>"),
    ]
    if ctype:
        headers.append(("Content-Type", ctype))
    return SipRequest(method, "sip:hotline@127.0.0.2:5060", Headers.of(headers), body)


def ack_for(ok: SipResponse, branch: str = "z9hG4bKack1") -> SipRequest:
    return in_dialog(ok, "ACK", ok.cseq.seq, branch=branch)


def answered_call(h: Harness) -> tuple[str, SipResponse]:
    h.deliver(invite())
    incoming = h.last(IncomingCall)
    assert isinstance(incoming, IncomingCall)
    h.ua.answer(incoming.leg, MEDIA, h.now)
    h.pump()
    ok = h.responses("INVITE")[-1]
    assert ok.status == 200
    return incoming.leg, ok


# -- inbound calls -------------------------------------------------------------------------------------


def test_inbound_call_is_answered_with_sdp_and_retransmitted_until_ack() -> None:
    h = Harness()
    h.deliver(invite())
    assert h.responses("INVITE")[0].status == 100
    incoming = h.last(IncomingCall)
    assert isinstance(incoming, IncomingCall)
    assert incoming.caller.display_name == "0171 555"
    h.ua.answer(incoming.leg, MEDIA, h.now)
    h.pump()
    ok = h.responses("INVITE")[-1]
    assert ok.status == 200
    assert ok.to.tag
    assert ok.headers.get_all("Record-Route") == ["<sip:127.0.0.1;lr;ftag=f1>"]
    assert ok.content_type == "application/sdp"
    assert b"m=audio 40000 RTP/AVP 0" in ok.body
    media = h.last(MediaUpdate)
    assert isinstance(media, MediaUpdate) and media.media.codec == "PCMU" and media.media.remote_port == 30000
    # No ACK: the 2xx goes out again at T1, 2T1, 4T1 ... capped at T2 (§13.3.1.4).
    h.advance(8.0)
    assert len([r for r in h.responses("INVITE") if r.status == 200]) == 1 + 4  # 0.5, 1.5, 3.5, 7.5
    h.deliver(ack_for(ok))
    assert isinstance(h.last(CallConfirmed), CallConfirmed)
    h.advance(10.0)
    assert len([r for r in h.responses("INVITE") if r.status == 200]) == 5


def test_no_ack_ends_the_call_with_bye() -> None:
    h = Harness()
    leg, _ = answered_call(h)
    h.advance(40.0)
    byes = h.requests("BYE")
    assert len(byes) >= 1
    ended = h.last(CallEnded)
    assert isinstance(ended, CallEnded) and ended.leg == leg and not ended.by_remote


def test_bye_from_the_caller() -> None:
    h = Harness()
    _, ok = answered_call(h)
    h.deliver(ack_for(ok))
    h.deliver(in_dialog(ok, "BYE", 11, branch="z9hG4bKbye1"))
    assert h.responses("BYE")[-1].status == 200
    ended = h.last(CallEnded)
    assert isinstance(ended, CallEnded) and ended.by_remote
    assert h.ua.active_legs == 0


def test_bye_from_us_goes_through_the_record_route() -> None:
    h = Harness()
    leg, ok = answered_call(h)
    h.deliver(ack_for(ok))
    h.ua.hangup(leg, h.now)
    h.pump()
    bye = h.requests("BYE")[-1]
    assert bye.uri == "sip:caller@127.0.0.5:5070"
    assert bye.headers.get_all("Route") == ["<sip:127.0.0.1;lr;ftag=f1>"]
    assert bye.to.tag == "f1"  # the caller's tag is the remote tag
    assert bye.cseq.seq == 1
    assert h.sent[-1].destination == Endpoint("udp", "127.0.0.1", 5060)


def test_hangup_before_ack_waits_for_the_ack() -> None:
    h = Harness()
    leg, ok = answered_call(h)
    h.ua.hangup(leg, h.now)
    h.pump()
    assert h.requests("BYE") == []  # §15: not before the ACK
    h.deliver(ack_for(ok))
    assert len(h.requests("BYE")) == 1


def test_cancel_of_an_unanswered_inbound_call() -> None:
    h = Harness()
    inv = invite()
    h.deliver(inv)
    cancel = SipRequest(
        "CANCEL",
        inv.uri,
        Headers.of(
            [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv1"),
                ("Max-Forwards", "70"),
                ("From", inv.headers.get("From") or ""),
                ("To", inv.headers.get("To") or ""),
                ("Call-ID", inv.call_id),
                ("CSeq", "10 CANCEL"),
            ]
        ),
    )
    h.deliver(cancel)
    assert h.responses("CANCEL")[-1].status == 200
    assert h.responses("INVITE")[-1].status == 487
    ended = h.last(CallEnded)
    assert isinstance(ended, CallEnded) and ended.by_remote


def test_cancel_for_unknown_transaction_gets_481() -> None:
    h = Harness()
    inv = invite(branch="z9hG4bKother")
    c = SipRequest("CANCEL", inv.uri, inv.headers.with_("CSeq", "10 CANCEL"))
    h.deliver(SipRequest("CANCEL", c.uri, c.headers, b""))
    assert h.responses("CANCEL")[-1].status == 481


def test_untrusted_invite_gets_403_and_no_call() -> None:
    h = Harness()
    h.deliver(invite(), source=STRANGER)
    assert h.responses("INVITE")[-1].status == 403
    assert not any(isinstance(e, IncomingCall) for e in h.events)
    assert h.ua.counters["untrusted_requests"] == 1


def test_invite_for_unknown_user_gets_404() -> None:
    h = Harness()
    h.deliver(invite(user="nobody"))
    assert h.responses("INVITE")[-1].status == 404


def test_refused_requests_are_counted_and_logged_with_their_source() -> None:
    """What a scanner or a fraudster probes with: each answer is counted, and logged with the
    address it came from (an unknown extension, REFER/REGISTER outside a dialog, a made-up dialog)."""
    h = Harness()
    h.deliver(invite(user="00491701234567"))
    base = invite(body=b"")
    probes = [
        ("REFER", base.headers, 405),
        ("REGISTER", base.headers, 405),
        ("FOO", base.headers, 501),
        ("REFER", base.headers.with_("To", "<sip:hotline@pbx.example>;tag=guessed"), 481),
    ]
    for i, (method, headers, status) in enumerate(probes):
        headers = headers.with_("CSeq", f"1 {method}").with_("Via", f"SIP/2.0/UDP 203.0.113.66;branch=z9hG4bKp{i}")
        h.deliver(SipRequest(method, base.uri, headers), source=STRANGER)
        assert h.responses(method)[-1].status == status
    assert h.responses("INVITE")[-1].status == 404
    counters = h.ua.counters
    assert (counters["unknown_user"], counters["method_not_allowed"], counters["unknown_method"]) == (1, 2, 1)
    assert counters["no_dialog"] == 1
    lines = [e.message for e in h.events if isinstance(e, LogLine)]
    assert any(line.startswith("404: INVITE for unknown user sip:00491701234567@") for line in lines), lines
    for prefix in (
        "405: REFER from udp:203.0.113.66",
        "405: REGISTER from udp:203.0.113.66",
        "501: FOO from udp:203.0.113.66",
    ):
        assert any(line.startswith(prefix) for line in lines), (prefix, lines)
    assert any(line.startswith("481: REFER for no dialog of ours from udp:203.0.113.66") for line in lines), lines


def test_a_flood_of_refused_requests_is_counted_but_logged_ten_times_a_minute() -> None:
    h = Harness()

    def flood(source: Endpoint, count: int) -> list[str]:
        start = len(h.events)
        for i in range(count):
            h.deliver(
                invite(branch=f"z9hG4bKflood{source.host}{h.now}{i}", call_id=f"flood-{source.host}-{h.now}-{i}"),
                source=source,
            )
        return [e.message for e in h.events[start:] if isinstance(e, LogLine) and e.level >= INFO]

    lines = flood(STRANGER, 25)
    assert len(lines) == 11 and all(
        line.startswith("403: INVITE from untrusted udp:203.0.113.66") for line in lines[:10]
    )
    assert lines[10].startswith("more than 10 refused requests from 203.0.113.66 within 60 s")
    assert h.ua.counters["untrusted_requests"] == 25 and h.ua.counters["refusals_not_logged"] == 15
    assert len(flood(Endpoint("udp", "203.0.113.67", 5060), 3)) == 3  # another address is logged
    h.advance(30.0)
    assert flood(STRANGER, 1) == []  # still the same minute
    h.advance(31.0)
    assert len(flood(STRANGER, 1)) == 1  # a new one


def test_refer_in_a_call_is_refused_and_logged_with_its_target() -> None:
    """A transfer asked for inside the call (toll fraud: "transfer me to 0049...") gets 405, is
    counted and logged with the target, and the call goes on."""
    h = Harness()
    leg, ok = answered_call(h)
    h.deliver(ack_for(ok))
    refer = in_dialog(ok, "REFER", 11, branch="z9hG4bKrefer")
    h.deliver(SipRequest("REFER", refer.uri, refer.headers.with_("Refer-To", "<sip:00491701234567@pbx.example>")))
    assert h.responses("REFER")[-1].status == 405
    assert h.ua.counters["method_not_allowed"] == 1
    lines = [e.message for e in h.events if isinstance(e, LogLine) and e.leg == leg]
    assert "405: REFER in the call from udp:127.0.0.1:5060 (Refer-To <sip:00491701234567@pbx.example>)" in lines
    assert not any(isinstance(e, CallEnded) for e in h.events)


def test_offer_without_audio_gets_488() -> None:
    h = Harness()
    h.deliver(invite(body=VIDEO_ONLY))
    incoming = h.last(IncomingCall)
    assert isinstance(incoming, IncomingCall)
    h.ua.answer(incoming.leg, MEDIA, h.now)
    h.pump()
    assert h.responses("INVITE")[-1].status == 488


def test_retransmitted_invite_is_absorbed() -> None:
    h = Harness()
    h.deliver(invite())
    h.deliver(invite())
    assert len([e for e in h.events if isinstance(e, IncomingCall)]) == 1
    assert [r.status for r in h.responses("INVITE")] == [100, 100]


def test_merged_request_gets_482() -> None:
    h = Harness()
    h.deliver(invite(branch="z9hG4bKpath1"))
    h.deliver(invite(branch="z9hG4bKpath2"))
    assert h.responses("INVITE")[-1].status == 482


def _options(branch: str, *, call_id: str = "opt@pbx") -> SipRequest:
    return SipRequest(
        "OPTIONS",
        "sip:hotline@127.0.0.2:5060",
        Headers.of(
            [
                ("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={branch}"),
                ("From", "<sip:pbx@127.0.0.1>;tag=o1"),
                ("To", "<sip:hotline@127.0.0.2>"),
                ("Call-ID", call_id),
                ("CSeq", "1 OPTIONS"),
            ]
        ),
    )


def test_merged_request_check_forgets_ended_transactions() -> None:
    """The same request by a second path gets 482 while the first one's transaction lives (Timer
    J: 32 s over UDP); after that it is a new request again, and no ended transaction is kept."""
    h = Harness()
    h.deliver(_options("z9hG4bKpath1"))
    h.deliver(_options("z9hG4bKpath2"))
    assert [r.status for r in h.responses("OPTIONS")] == [200, 482]
    h.advance(40)
    h.deliver(_options("z9hG4bKpath3"))
    assert [r.status for r in h.responses("OPTIONS")] == [200, 482, 200]
    h.advance(40)
    assert not h.ua._server_by_request  # the merged-request index holds live transactions only


def test_merged_request_found_among_many_transactions() -> None:
    """With a thousand other calls' transactions open, a merged INVITE still gets 482, and the
    others are not taken for it."""
    h = Harness()
    for n in range(1000):
        h.deliver(invite(branch=f"z9hG4bKmany{n}", call_id=f"many-{n}@pbx"))
    h.deliver(invite(branch="z9hG4bKother", call_id="many-500@pbx"))
    h.deliver(invite(branch="z9hG4bKfresh", call_id="fresh@pbx"))
    statuses = [(r.call_id, r.status) for r in h.responses("INVITE") if r.status != 100]
    assert statuses == [("many-500@pbx", 482)]
    assert len([e for e in h.events if isinstance(e, IncomingCall)]) == 1001


def test_in_dialog_request_for_unknown_dialog_gets_481() -> None:
    h = Harness()
    _, ok = answered_call(h)
    bye = in_dialog(ok, "BYE", 11, branch="z9hG4bKb")
    bye = SipRequest("BYE", bye.uri, bye.headers.with_("Call-ID", "unknown@x"))
    h.deliver(bye)
    assert h.responses("BYE")[-1].status == 481


def test_options_answered_with_capabilities() -> None:
    h = Harness()
    options = SipRequest(
        "OPTIONS",
        "sip:hotline@127.0.0.2:5060",
        Headers.of(
            [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKopt"),
                ("From", "<sip:pbx@127.0.0.1>;tag=o1"),
                ("To", "<sip:hotline@127.0.0.2>"),
                ("Call-ID", "opt@pbx"),
                ("CSeq", "1 OPTIONS"),
            ]
        ),
    )
    h.deliver(options)
    response = h.responses("OPTIONS")[-1]
    assert response.status == 200
    assert "INVITE" in (response.headers.get("Allow") or "")
    assert response.headers.get("Accept") and response.headers.get("Supported")


def test_unknown_and_disallowed_methods() -> None:
    h = Harness()
    base = invite(body=b"")
    for method, status in (("FOO", 501), ("SUBSCRIBE", 405)):
        headers = base.headers.with_("CSeq", f"1 {method}").with_(
            "Via", f"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK{method}"
        )
        h.deliver(SipRequest(method, base.uri, headers))
        assert h.responses(method)[-1].status == status


def test_unsupported_require_gets_420() -> None:
    h = Harness()
    h.deliver(invite(extra=[("Require", "100rel")]))
    response = h.responses("INVITE")[-1]
    assert response.status == 420 and response.headers.get("Unsupported") == "100rel"


def test_malformed_request_gets_400_and_garbage_is_counted() -> None:
    h = Harness()
    bad = bytes(invite()).replace(b"CSeq: 10 INVITE", b"CSeq: 10 BYE")
    h.ua.receive_datagram(bad, PBX, 0.0)
    h.pump()
    assert h.responses()[-1].status == 400
    h.ua.receive_datagram(b"\x00\xff garbage", PBX, 0.0)
    h.pump()
    assert h.ua.counters["malformed"] == 2


def test_reinvite_hold_is_answered_with_current_media() -> None:
    h = Harness()
    _, ok = answered_call(h)
    h.deliver(ack_for(ok))
    hold = OFFER.replace(b"a=sendrecv", b"a=sendonly").replace(b"o=- 1 1", b"o=- 1 2")
    h.deliver(in_dialog(ok, "INVITE", 11, branch="z9hG4bKre1", body=hold, ctype="application/sdp"))
    re_ok = h.responses("INVITE")[-1]
    assert re_ok.status == 200 and re_ok.cseq.seq == 11
    assert b"a=recvonly" in re_ok.body
    assert b"m=audio 40000" in re_ok.body
    update = h.last(MediaUpdate)
    assert isinstance(update, MediaUpdate) and update.media.on_hold


def test_reinvite_glare_while_another_is_pending_gets_500_retry_after() -> None:
    h = Harness()
    _, ok = answered_call(h)
    # The first 2xx was not ACKed yet: a re-INVITE now is answered 500 with Retry-After.
    h.deliver(in_dialog(ok, "INVITE", 11, branch="z9hG4bKre1", body=OFFER, ctype="application/sdp"))
    response = h.responses("INVITE")[-1]
    assert response.status == 500 and response.headers.get("Retry-After")


def test_out_of_order_cseq_gets_500() -> None:
    h = Harness()
    _, ok = answered_call(h)
    h.deliver(ack_for(ok))
    h.deliver(in_dialog(ok, "INFO", 5, branch="z9hG4bKi0"))
    assert h.responses("INFO")[-1].status == 500


def test_info_dtmf_is_reported_and_answered() -> None:
    h = Harness()
    leg, ok = answered_call(h)
    h.deliver(ack_for(ok))
    h.deliver(
        in_dialog(
            ok, "INFO", 11, branch="z9hG4bKi1", body=b"Signal=5\r\nDuration=160\r\n", ctype="application/dtmf-relay"
        )
    )
    assert h.responses("INFO")[-1].status == 200
    digit = h.last(InfoDigit)
    assert isinstance(digit, InfoDigit) and digit.digit == "5" and digit.leg == leg


def test_session_timer_refresh_and_expiry() -> None:
    h = Harness()
    h.deliver(invite(extra=[("Supported", "timer"), ("Session-Expires", "120;refresher=uac")]))
    incoming = h.last(IncomingCall)
    assert isinstance(incoming, IncomingCall)
    h.ua.answer(incoming.leg, MEDIA, h.now)
    h.pump()
    ok = h.responses("INVITE")[-1]
    assert ok.headers.get("Session-Expires") == "120;refresher=uac"
    assert "timer" in ok.header_tokens("Require")
    h.deliver(ack_for(ok))
    # The caller refreshes at 60 s: the call lives on.
    h.advance(60.0)
    h.deliver(in_dialog(ok, "UPDATE", 11, branch="z9hG4bKup1"))
    assert h.responses("UPDATE")[-1].status == 200
    h.advance(60.0)
    assert not any(isinstance(e, CallEnded) for e in h.events)
    # No refresh any more: BYE before the session expires.
    h.advance(100.0)
    ended = h.last(CallEnded)
    assert isinstance(ended, CallEnded) and "session timer" in ended.reason
    assert h.requests("BYE")


def test_session_expires_too_small_gets_422() -> None:
    h = Harness()
    h.deliver(invite(extra=[("Supported", "timer"), ("Session-Expires", "30")]))
    response = h.responses("INVITE")[-1]
    assert response.status == 422 and response.headers.get("Min-SE") == "90"


# -- outbound calls ---------------------------------------------------------------------------------------


def reply(
    request: SipRequest, status: int, *, to_tag: str | None = "agent1", body: bytes = b"", extra=()
) -> SipResponse:
    to = request.headers.get("To") or ""
    if to_tag and status > 100:
        to += f";tag={to_tag}"
    headers = [(n, v) for n, v in request.headers if n == "Via"]
    headers += [("Record-Route", "<sip:127.0.0.1;lr;ftag=x>")] if 100 < status < 300 else []
    headers += [
        ("From", request.headers.get("From") or ""),
        ("To", to),
        ("Call-ID", request.call_id),
        ("CSeq", request.headers.get("CSeq") or ""),
    ]
    if 100 < status < 300:
        headers.append(("Contact", "<sip:agent1@127.0.0.11:5062>"))
    headers += list(extra)
    if body:
        headers.append(("Content-Type", "application/sdp"))
    return SipResponse(status, "X", Headers.of(headers), body)


ANSWER = OFFER.replace(b"m=audio 30000 RTP/AVP 0 8 101", b"m=audio 31000 RTP/AVP 8 101").replace(
    b"a=rtpmap:0 PCMU/8000\r\n", b""
)


def test_outbound_call_with_407_challenge_then_answer() -> None:
    h = Harness()
    leg = h.ua.invite("main", "agent1", MEDIA, h.now, display_name="0171 555")
    h.pump()
    first = h.requests("INVITE")[-1]
    assert first.uri == "sip:agent1@127.0.0.1"
    assert first.from_.display_name == "0171 555" and first.from_.uri is not None
    assert first.from_.uri.user == "hotline"
    assert b"m=audio 40000" in first.body
    challenge = reply(
        first,
        407,
        extra=[("Proxy-Authenticate", 'Digest realm="127.0.0.1", nonce="abc123", qop="auth"')],
    )
    h.deliver(challenge)
    acks = h.requests("ACK")
    assert acks and acks[-1].top_via.branch == first.top_via.branch  # the 407 is ACKed in its transaction
    second = h.requests("INVITE")[-1]
    assert second.top_via.branch != first.top_via.branch
    assert second.cseq.seq == first.cseq.seq + 1
    assert second.call_id == first.call_id and second.from_.tag == first.from_.tag
    auth = second.headers.get("Proxy-Authorization") or ""
    assert 'username="hotline"' in auth and 'uri="sip:agent1@127.0.0.1"' in auth
    h.deliver(reply(second, 180))
    progress = h.last(CallProgress)
    assert isinstance(progress, CallProgress) and progress.status == 180 and not progress.early_media
    h.deliver(reply(second, 200, body=ANSWER))
    assert isinstance(h.last(CallAnswered), CallAnswered)
    media = h.last(MediaUpdate)
    assert isinstance(media, MediaUpdate) and media.media.codec == "PCMA" and media.media.remote_port == 31000
    ack = h.requests("ACK")[-1]
    assert ack.uri == "sip:agent1@127.0.0.11:5062"
    assert ack.headers.get_all("Route") == ["<sip:127.0.0.1;lr;ftag=x>"]
    assert ack.cseq.seq == second.cseq.seq and ack.top_via.branch != second.top_via.branch
    # A retransmitted 200 is ACKed again.
    h.deliver(reply(second, 200, body=ANSWER))
    assert len(h.requests("ACK")) == 3  # the 407's, the 200's, and the 200's again
    h.ua.hangup(leg, h.now)
    h.pump()
    assert h.requests("BYE")[-1].uri == "sip:agent1@127.0.0.11:5062"


def test_cancel_while_ringing_and_487() -> None:
    h = Harness()
    leg = h.ua.invite("main", "agent1", MEDIA, h.now)
    h.pump()
    inv = h.requests("INVITE")[-1]
    h.deliver(reply(inv, 180))
    h.ua.hangup(leg, h.now)
    h.pump()
    cancel = h.requests("CANCEL")[-1]
    assert cancel.top_via.branch == inv.top_via.branch and cancel.cseq.seq == inv.cseq.seq
    h.deliver(reply(cancel, 200))
    h.deliver(reply(inv, 487))
    assert h.requests("ACK")[-1].cseq.method == "ACK"
    failed = h.last(CallFailed)
    assert isinstance(failed, CallFailed) and failed.status == 487


def test_cancel_before_any_provisional_waits_for_one() -> None:
    h = Harness()
    leg = h.ua.invite("main", "agent1", MEDIA, h.now)
    h.pump()
    h.ua.hangup(leg, h.now)
    h.pump()
    assert h.requests("CANCEL") == []
    inv = h.requests("INVITE")[-1]
    h.deliver(reply(inv, 100, to_tag=None))
    # 100 Trying is a provisional response too (§9.1): the CANCEL may go now.
    assert len(h.requests("CANCEL")) == 1
    h.deliver(reply(inv, 180))
    assert len(h.requests("CANCEL")) == 1


def test_answer_racing_the_cancel_is_acked_and_byed() -> None:
    h = Harness()
    leg = h.ua.invite("main", "agent1", MEDIA, h.now)
    h.pump()
    inv = h.requests("INVITE")[-1]
    h.deliver(reply(inv, 180))
    h.ua.hangup(leg, h.now)
    h.pump()
    h.deliver(reply(inv, 200, body=ANSWER))
    assert h.requests("ACK") and h.requests("BYE")
    assert not any(isinstance(e, CallAnswered) for e in h.events)


@pytest.mark.parametrize("status", [486, 480, 603, 404, 500])
def test_final_failures_are_acked_and_reported(status: int) -> None:
    h = Harness()
    leg = h.ua.invite("main", "agent1", MEDIA, h.now)
    h.pump()
    inv = h.requests("INVITE")[-1]
    h.deliver(reply(inv, status))
    ack = h.requests("ACK")[-1]
    assert ack.top_via.branch == inv.top_via.branch
    failed = h.last(CallFailed)
    assert isinstance(failed, CallFailed) and failed.status == status and failed.leg == leg


def test_outbound_timeout_is_408() -> None:
    h = Harness()
    h.ua.invite("main", "agent1", MEDIA, h.now)
    h.pump()
    h.advance(40.0)
    failed = h.last(CallFailed)
    assert isinstance(failed, CallFailed) and failed.status == 408
    assert len(h.requests("INVITE")) == 7  # first send + 6 retransmissions (timer A) before timer B


def test_early_media_183_with_sdp() -> None:
    h = Harness()
    h.ua.invite("main", "agent1", MEDIA, h.now)
    h.pump()
    inv = h.requests("INVITE")[-1]
    h.deliver(reply(inv, 183, body=ANSWER))
    progress = h.last(CallProgress)
    assert isinstance(progress, CallProgress) and progress.early_media


# -- registration ------------------------------------------------------------------------------------------


def test_register_with_401_then_200_and_refresh() -> None:
    h = Harness(register=True)
    h.ua.start(h.now)
    h.pump()
    first = h.requests("REGISTER")[-1]
    assert first.uri == "sip:127.0.0.1:5060"
    assert first.headers.get("Expires") == "300"
    h.deliver(reply(first, 401, extra=[("WWW-Authenticate", 'Digest realm="127.0.0.1", nonce="n1", algorithm=MD5')]))
    second = h.requests("REGISTER")[-1]
    assert second.cseq.seq == first.cseq.seq + 1 and second.call_id == first.call_id
    assert 'uri="sip:127.0.0.1:5060"' in (second.headers.get("Authorization") or "")
    contact = second.headers.get("Contact") or ""
    h.deliver(reply(second, 200, to_tag="r", extra=[("Contact", contact.replace("expires=300", "expires=60"))]))
    changed = h.last(RegistrationChanged)
    assert isinstance(changed, RegistrationChanged) and changed.registered
    assert h.ua.registration_state("main") is RegState.REGISTERED
    h.advance(50.0)
    refresh = h.requests("REGISTER")[-1]
    assert refresh.cseq.seq == second.cseq.seq + 1  # refreshed at 48 s of the granted 60 s
    assert refresh.headers.get("Authorization")  # pre-emptively, with the known nonce


def test_shutdown_unregisters() -> None:
    h = Harness(register=True)
    h.ua.start(h.now)
    h.pump()
    h.deliver(reply(h.requests("REGISTER")[-1], 200, to_tag="r"))
    h.ua.shutdown(h.now)
    h.pump()
    last = h.requests("REGISTER")[-1]
    assert last.headers.get("Expires") == "0"
    h.deliver(reply(last, 200, to_tag="r"))
    assert h.ua.unregistered
