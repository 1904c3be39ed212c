"""Transactions on a fake clock: retransmission schedules, timeouts, ACK for failures (RFC 3261 §17)."""

from __future__ import annotations

import pytest

from sipcallhunt.errors import LocalProtocolError
from sipcallhunt.sip.message import Headers, SipRequest, SipResponse
from sipcallhunt.sip.transaction import (
    ClientInvite,
    ClientNonInvite,
    Deliver,
    Endpoint,
    ServerInvite,
    ServerNonInvite,
    TimedOut,
    Timers,
    Transmit,
    TxAction,
    TxState,
    build_ack_for_failure,
    build_cancel,
)

UDP = Endpoint("udp", "192.0.2.1", 5060)
TCP = Endpoint("tcp", "192.0.2.1", 5060)
TIMERS = Timers()


def request(method: str = "INVITE", branch: str = "z9hG4bKabc") -> SipRequest:
    return SipRequest(
        method,
        "sip:bob@example.com",
        Headers.of(
            [
                ("Via", f"SIP/2.0/UDP 192.0.2.9:5060;branch={branch};rport"),
                ("Route", "<sip:proxy.example.com;lr>"),
                ("Max-Forwards", "70"),
                ("From", "<sip:alice@example.com>;tag=a1"),
                ("To", "<sip:bob@example.com>"),
                ("Call-ID", "c1@192.0.2.9"),
                ("CSeq", f"7 {method}"),
                ("Contact", "<sip:alice@192.0.2.9>"),
            ]
        ),
    )


def response(req: SipRequest, status: int, to_tag: str | None = "b1") -> SipResponse:
    to = req.headers.get("To") or ""
    if to_tag:
        to += f";tag={to_tag}"
    headers = [(n, v) for n, v in req.headers if n in ("Via", "From", "Call-ID", "CSeq")]
    headers.append(("To", to))
    return SipResponse(status, "X", Headers.of(headers))


def transmits(actions: list[TxAction]) -> list[Transmit]:
    return [a for a in actions if isinstance(a, Transmit)]


def run_until(tx: ClientInvite | ClientNonInvite | ServerInvite | ServerNonInvite, end: float) -> list[float]:
    """Fire timers up to ``end``; return the times at which something was transmitted."""
    times: list[float] = []
    while (deadline := tx.next_deadline()) is not None and deadline <= end:
        actions = tx.handle_timer(deadline)
        times += [deadline] * len(transmits(actions))
    return times


class TestClientInvite:
    def test_timer_a_doubles_and_timer_b_times_out(self) -> None:
        tx = ClientInvite(UDP, TIMERS, request=request())
        assert transmits(tx.start(0.0))
        times = run_until(tx, 100.0)
        # Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 (doubling, no cap for INVITE) until B at 32 s.
        assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
        assert tx.terminated

    def test_timer_b_reports_timeout(self) -> None:
        tx = ClientInvite(UDP, TIMERS, request=request())
        tx.start(0.0)
        actions: list[TxAction] = []
        while (deadline := tx.next_deadline()) is not None:
            actions += tx.handle_timer(deadline)
        assert TimedOut("B") in actions

    def test_no_retransmission_over_tcp(self) -> None:
        tx = ClientInvite(TCP, TIMERS, request=request())
        tx.start(0.0)
        assert run_until(tx, 100.0) == []
        assert tx.terminated

    def test_provisional_stops_retransmission_and_timeout(self) -> None:
        req = request()
        tx = ClientInvite(UDP, TIMERS, request=req)
        tx.start(0.0)
        actions = tx.receive_response(response(req, 180), 0.2)
        assert actions == [Deliver(response(req, 180))]
        assert tx.state is TxState.PROCEEDING
        assert tx.next_deadline() is None  # the TU times a ringing call

    def test_failure_is_acked_inside_the_transaction(self) -> None:
        req = request()
        tx = ClientInvite(UDP, TIMERS, request=req)
        tx.start(0.0)
        busy = response(req, 486)
        actions = tx.receive_response(busy, 1.0)
        ack = transmits(actions)[0].message
        assert isinstance(ack, SipRequest) and ack.method == "ACK"
        assert ack.cseq.seq == 7 and ack.cseq.method == "ACK"
        assert ack.top_via.branch == "z9hG4bKabc"  # same branch as the INVITE (§17.1.1.3)
        assert ack.to.tag == "b1"
        assert ack.headers.get_all("Route") == ["<sip:proxy.example.com;lr>"]
        assert Deliver(busy) in actions
        # A retransmitted 486 is ACKed again but not delivered twice.
        again = tx.receive_response(busy, 2.0)
        assert [type(a) for a in again] == [Transmit]
        # Timer D: 32 s over UDP.
        assert tx.next_deadline() == pytest.approx(33.0)
        tx.handle_timer(33.0)
        assert tx.terminated

    def test_timer_d_zero_over_tcp(self) -> None:
        req = request()
        tx = ClientInvite(TCP, TIMERS, request=req)
        tx.start(0.0)
        tx.receive_response(response(req, 603), 1.0)
        assert tx.next_deadline() == pytest.approx(1.0)

    def test_2xx_goes_to_accepted_and_retransmissions_reach_the_tu(self) -> None:
        req = request()
        tx = ClientInvite(UDP, TIMERS, request=req)
        tx.start(0.0)
        ok = response(req, 200)
        assert tx.receive_response(ok, 1.0) == [Deliver(ok)]
        assert tx.state is TxState.ACCEPTED
        assert tx.receive_response(ok, 1.5) == [Deliver(ok)]  # RFC 6026: the TU re-ACKs
        assert tx.next_deadline() == pytest.approx(1.0 + 32.0)  # timer M

    def test_late_provisional_after_final_is_absorbed(self) -> None:
        req = request()
        tx = ClientInvite(UDP, TIMERS, request=req)
        tx.start(0.0)
        tx.receive_response(response(req, 404), 1.0)
        assert tx.receive_response(response(req, 180), 1.1) == []

    def test_transport_error(self) -> None:
        tx = ClientInvite(UDP, TIMERS, request=request())
        tx.start(0.0)
        assert tx.transport_error() == [TimedOut("transport")]
        assert tx.terminated


class TestClientNonInvite:
    def test_timer_e_caps_at_t2_and_f_times_out(self) -> None:
        tx = ClientNonInvite(UDP, TIMERS, request=request("OPTIONS"))
        tx.start(0.0)
        times = run_until(tx, 40.0)
        # 0.5, 1.5, 3.5, 7.5, then every 4 s (T2) until F at 32 s.
        assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        assert tx.terminated

    def test_proceeding_retransmits_every_t2(self) -> None:
        req = request("BYE")
        tx = ClientNonInvite(UDP, TIMERS, request=req)
        tx.start(0.0)
        tx.receive_response(response(req, 100), 0.1)
        assert tx.state is TxState.PROCEEDING
        times = run_until(tx, 10.0)
        assert times == [0.5, 4.5, 8.5]

    def test_final_then_timer_k(self) -> None:
        req = request("BYE")
        tx = ClientNonInvite(UDP, TIMERS, request=req)
        tx.start(0.0)
        ok = response(req, 200)
        assert tx.receive_response(ok, 0.2) == [Deliver(ok)]
        assert tx.receive_response(ok, 0.3) == []  # absorbed in Completed
        assert tx.next_deadline() == pytest.approx(0.2 + 5.0)  # timer K = T4
        tx.handle_timer(5.2)
        assert tx.terminated

    def test_tcp_no_retransmission_k_zero(self) -> None:
        req = request("BYE")
        tx = ClientNonInvite(TCP, TIMERS, request=req)
        tx.start(0.0)
        assert tx.next_deadline() == pytest.approx(32.0)  # only F
        tx.receive_response(response(req, 200), 1.0)
        assert tx.next_deadline() == pytest.approx(1.0)


class TestServerInvite:
    def test_provisional_then_retransmitted_invite_gets_it_again(self) -> None:
        req = request()
        tx = ServerInvite(UDP, TIMERS, request=req)
        trying = response(req, 100, to_tag=None)
        assert transmits(tx.respond(trying, 0.0))[0].message == trying
        assert transmits(tx.receive_request(req, 0.5))[0].message == trying

    def test_failure_retransmitted_with_timer_g_until_ack(self) -> None:
        req = request()
        tx = ServerInvite(UDP, TIMERS, request=req)
        tx.respond(response(req, 486), 0.0)
        times = run_until(tx, 5.0)
        assert times == [0.5, 1.5, 3.5]  # G doubles: 0.5, 1, 2, then 4 (capped at T2)
        ack = build_ack_for_failure(req, response(req, 486))
        assert tx.receive_request(ack, 5.0) == [Deliver(ack)]
        assert tx.state is TxState.CONFIRMED
        assert tx.next_deadline() == pytest.approx(10.0)  # timer I = T4
        tx.handle_timer(10.0)
        assert tx.terminated

    def test_timer_h_without_ack(self) -> None:
        req = request()
        tx = ServerInvite(UDP, TIMERS, request=req)
        tx.respond(response(req, 480), 0.0)
        actions: list[TxAction] = []
        while (deadline := tx.next_deadline()) is not None:
            actions += tx.handle_timer(deadline)
        assert TimedOut("H") in actions
        g_times = [a for a in actions if isinstance(a, Transmit)]
        assert len(g_times) == 10  # 0.5, 1.5, 3.5, 7.5, then every 4 s to 32 s

    def test_2xx_moves_to_accepted_and_absorbs_retransmissions(self) -> None:
        req = request()
        tx = ServerInvite(UDP, TIMERS, request=req)
        tx.respond(response(req, 200), 0.0)
        assert tx.state is TxState.ACCEPTED
        assert tx.receive_request(req, 0.5) == []  # the UAS core retransmits the 2xx, not us
        assert tx.next_deadline() == pytest.approx(32.0)  # timer L

    def test_cannot_respond_twice_with_a_final(self) -> None:
        req = request()
        tx = ServerInvite(UDP, TIMERS, request=req)
        tx.respond(response(req, 486), 0.0)
        with pytest.raises(LocalProtocolError):
            tx.respond(response(req, 200), 0.1)

    def test_tcp_no_timer_g(self) -> None:
        req = request()
        tx = ServerInvite(TCP, TIMERS, request=req)
        tx.respond(response(req, 486), 0.0)
        assert run_until(tx, 40.0) == []


class TestServerNonInvite:
    def test_retransmitted_request_gets_last_response(self) -> None:
        req = request("OPTIONS")
        tx = ServerNonInvite(UDP, TIMERS, request=req)
        assert tx.receive_request(req, 0.0) == []  # Trying: nothing to send yet
        ok = response(req, 200)
        tx.respond(ok, 0.1)
        assert transmits(tx.receive_request(req, 0.5))[0].message == ok
        assert tx.next_deadline() == pytest.approx(0.1 + 32.0)  # timer J

    def test_timer_j_zero_on_tcp(self) -> None:
        req = request("BYE")
        tx = ServerNonInvite(TCP, TIMERS, request=req)
        tx.respond(response(req, 200), 1.0)
        tx.handle_timer(1.0)
        assert tx.terminated


def test_cancel_copies_invite_identity() -> None:
    req = request()
    cancel = build_cancel(req)
    assert cancel.method == "CANCEL"
    assert cancel.uri == req.uri
    assert cancel.top_via.branch == req.top_via.branch
    assert cancel.cseq.seq == 7 and cancel.cseq.method == "CANCEL"
    assert cancel.headers.get("To") == req.headers.get("To")
    assert cancel.headers.get_all("Route") == req.headers.get_all("Route")
