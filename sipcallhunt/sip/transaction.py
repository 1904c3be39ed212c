"""SIP transactions (RFC 3261 §17, with the RFC 6026 "Accepted" state for INVITE 2xx).

Theory of operation
-------------------
A transaction is a small state machine that owns retransmissions and timeouts for one request
and its responses.  It never touches a socket or a clock: every input carries ``now`` and
returns a list of :data:`TxAction` values that the user-agent core carries out (send bytes,
hand a message to the transaction user, report a timeout).  ``next_deadline()`` tells the
caller when to call ``handle_timer(now)`` next.

The four kinds and their timers:

* :class:`ClientInvite` (ICT, §17.1.1): Calling —1xx→ Proceeding —2xx→ Accepted (timer M)
  or —300..699→ Completed (ACK sent by the transaction, timer D) → Terminated.  Timer A
  retransmits over UDP; timer B times out while Calling.
* :class:`ClientNonInvite` (NICT, §17.1.2): Trying → Proceeding → Completed (timer K).
  Timer E retransmits (capped at T2), timer F times out.
* :class:`ServerInvite` (IST, §17.2.1): Proceeding —2xx→ Accepted (timer L; the UAS core
  retransmits the 2xx itself, §13.3.1.4) or —300..699→ Completed (timer G retransmits, timer H
  waits for the ACK) —ACK→ Confirmed (timer I) → Terminated.
* :class:`ServerNonInvite` (NIST, §17.2.2): Trying → Proceeding → Completed (timer J).

Over a reliable transport (TCP) nothing is retransmitted and timers D, I, J, K are zero.
Every (state, input) pair a transaction handles is in its ``_TRANSITIONS`` table; a response or
request that arrives in a state with no entry is absorbed (a late retransmission).
"""

from __future__ import annotations

__all__ = [
    "T1",
    "T2",
    "T4",
    "ClientInvite",
    "ClientNonInvite",
    "Deliver",
    "Endpoint",
    "ServerInvite",
    "ServerNonInvite",
    "TimedOut",
    "Timers",
    "Transmit",
    "TxAction",
    "TxState",
    "build_ack_for_failure",
    "build_cancel",
]

import enum
from typing import Final

import attrs

from sipcallhunt.errors import LocalProtocolError
from sipcallhunt.sip.message import Headers, SipMessage, SipRequest, SipResponse

T1: Final = 0.5  # RFC 3261 §17.1.1.1: RTT estimate
T2: Final = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4: Final = 5.0  # maximum duration a message remains in the network


@attrs.frozen
class Timers:
    """The base timer values; tests and unusual networks may change them."""

    t1: float = T1
    t2: float = T2
    t4: float = T4

    @property
    def b(self) -> float:  # INVITE transaction timeout (also F, H, J, L, M)
        return 64 * self.t1


@attrs.frozen
class Endpoint:
    """Where a message goes or came from: transport ("udp"/"tcp"), host, port."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


@attrs.frozen
class Transmit:
    """Send ``message`` to ``destination``."""

    message: SipMessage
    destination: Endpoint


@attrs.frozen
class Deliver:
    """Hand ``message`` (a response to a client transaction, an ACK to a server one) to the TU."""

    message: SipMessage


@attrs.frozen
class TimedOut:
    """The transaction gave up (timer B/F: no answer; timer H: no ACK; timer L/M end quietly)."""

    timer: str


TxAction = Transmit | Deliver | TimedOut


class TxState(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def build_ack_for_failure(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK a client INVITE transaction sends for a 300-699 response (RFC 3261 §17.1.1.3).

    Same Request-URI, Call-ID, From, top Via (branch) and Route as the INVITE; To from the
    response (with its tag); CSeq number of the INVITE with method ACK.
    """
    h = invite.headers
    headers: list[tuple[str, str]] = [("Via", h.get_all("Via")[0])]
    headers += [("Route", r) for r in h.get_all("Route")]
    headers += [
        ("Max-Forwards", "70"),
        ("From", h.get("From") or ""),
        ("To", response.headers.get("To") or ""),
        ("Call-ID", h.get("Call-ID") or ""),
        ("CSeq", f"{invite.cseq.seq} ACK"),
    ]
    return SipRequest("ACK", invite.uri, Headers(tuple(headers)))


def build_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, From, To, top Via, Route."""
    h = invite.headers
    headers: list[tuple[str, str]] = [("Via", h.get_all("Via")[0])]
    headers += [("Route", r) for r in h.get_all("Route")]
    headers += [
        ("Max-Forwards", "70"),
        ("From", h.get("From") or ""),
        ("To", h.get("To") or ""),
        ("Call-ID", h.get("Call-ID") or ""),
        ("CSeq", f"{invite.cseq.seq} CANCEL"),
    ]
    for name in ("User-Agent",):
        value = h.get(name)
        if value:
            headers.append((name, value))
    return SipRequest("CANCEL", invite.uri, Headers(tuple(headers)))


@attrs.define(eq=False)
class _Timer:
    name: str
    deadline: float
    interval: float = 0.0


@attrs.define(eq=False)
class _Transaction:
    """Shared machinery: named timers and the state."""

    destination: Endpoint
    timers: Timers
    state: TxState
    _timers: dict[str, _Timer] = attrs.field(factory=dict, init=False)

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    def next_deadline(self) -> float | None:
        if not self._timers:
            return None
        return min(t.deadline for t in self._timers.values())

    def _arm(self, name: str, now: float, delay: float, interval: float = 0.0) -> None:
        self._timers[name] = _Timer(name, now + delay, interval)

    def _cancel(self, *names: str) -> None:
        for name in names:
            self._timers.pop(name, None)

    def _terminate(self) -> None:
        self.state = TxState.TERMINATED
        self._timers.clear()

    def handle_timer(self, now: float) -> list[TxAction]:
        actions: list[TxAction] = []
        while True:
            due = [t for t in self._timers.values() if t.deadline <= now]
            if not due or self.terminated:
                return actions
            timer = min(due, key=lambda t: t.deadline)
            del self._timers[timer.name]
            actions += self._fire(timer, now)

    def _fire(self, timer: _Timer, now: float) -> list[TxAction]:
        raise NotImplementedError


# -- client transactions ----------------------------------------------------------------------


@attrs.define(eq=False)
class ClientInvite(_Transaction):
    """INVITE client transaction (ICT).  Create it, then call :meth:`start`."""

    request: SipRequest = attrs.field(kw_only=True)
    state: TxState = TxState.CALLING
    ack: SipRequest | None = attrs.field(default=None, init=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.request.top_via.branch or "", "INVITE")

    def start(self, now: float) -> list[TxAction]:
        if not self.destination.reliable:
            self._arm("A", now, self.timers.t1, self.timers.t1)
        self._arm("B", now, self.timers.b)
        return [Transmit(self.request, self.destination)]

    def receive_response(self, response: SipResponse, now: float) -> list[TxAction]:
        status = response.status
        kind = "1xx" if status < 200 else "2xx" if status < 300 else "final"
        handler = _ICT_TRANSITIONS.get((self.state, kind))
        if handler is None:
            return []  # late retransmission, absorbed
        return handler(self, response, now)

    def _provisional(self, response: SipResponse, now: float) -> list[TxAction]:
        self.state = TxState.PROCEEDING
        self._cancel("A", "B")  # §17.1.1.2: no timeout while proceeding; the TU times the call
        return [Deliver(response)]

    def _success(self, response: SipResponse, now: float) -> list[TxAction]:
        # RFC 6026 §8.4: Accepted; 2xx retransmissions go to the TU, which re-sends its ACK.
        if self.state is not TxState.ACCEPTED:
            self.state = TxState.ACCEPTED
            self._cancel("A", "B")
            self._arm("M", now, self.timers.b)
        return [Deliver(response)]

    def _failure(self, response: SipResponse, now: float) -> list[TxAction]:
        self.ack = build_ack_for_failure(self.request, response)
        self.state = TxState.COMPLETED
        self._cancel("A", "B")
        self._arm("D", now, 0.0 if self.destination.reliable else 32.0)
        return [Transmit(self.ack, self.destination), Deliver(response)]

    def _failure_again(self, response: SipResponse, now: float) -> list[TxAction]:
        assert self.ack is not None
        return [Transmit(self.ack, self.destination)]

    def transport_error(self) -> list[TxAction]:
        if self.state in (TxState.CALLING, TxState.PROCEEDING):
            self._terminate()
            return [TimedOut("transport")]
        self._terminate()
        return []

    def _fire(self, timer: _Timer, now: float) -> list[TxAction]:
        if timer.name == "A":
            interval = timer.interval * 2
            self._arm("A", now, interval, interval)
            return [Transmit(self.request, self.destination)]
        if timer.name == "B":
            self._terminate()
            return [TimedOut("B")]
        self._terminate()  # D, M
        return []


_ICT_TRANSITIONS = {
    (TxState.CALLING, "1xx"): ClientInvite._provisional,
    (TxState.PROCEEDING, "1xx"): ClientInvite._provisional,
    (TxState.CALLING, "2xx"): ClientInvite._success,
    (TxState.PROCEEDING, "2xx"): ClientInvite._success,
    (TxState.ACCEPTED, "2xx"): ClientInvite._success,
    (TxState.CALLING, "final"): ClientInvite._failure,
    (TxState.PROCEEDING, "final"): ClientInvite._failure,
    (TxState.COMPLETED, "final"): ClientInvite._failure_again,
}


@attrs.define(eq=False)
class ClientNonInvite(_Transaction):
    """Non-INVITE client transaction (NICT)."""

    request: SipRequest = attrs.field(kw_only=True)
    state: TxState = TxState.TRYING

    @property
    def key(self) -> tuple[str, str]:
        return (self.request.top_via.branch or "", self.request.method)

    def start(self, now: float) -> list[TxAction]:
        if not self.destination.reliable:
            self._arm("E", now, self.timers.t1, self.timers.t1)
        self._arm("F", now, self.timers.b)
        return [Transmit(self.request, self.destination)]

    def receive_response(self, response: SipResponse, now: float) -> list[TxAction]:
        kind = "1xx" if response.status < 200 else "final"
        handler = _NICT_TRANSITIONS.get((self.state, kind))
        if handler is None:
            return []
        return handler(self, response, now)

    def _provisional(self, response: SipResponse, now: float) -> list[TxAction]:
        self.state = TxState.PROCEEDING
        return [Deliver(response)]

    def _final(self, response: SipResponse, now: float) -> list[TxAction]:
        self.state = TxState.COMPLETED
        self._cancel("E", "F")
        self._arm("K", now, 0.0 if self.destination.reliable else self.timers.t4)
        return [Deliver(response)]

    def transport_error(self) -> list[TxAction]:
        was_pending = self.state in (TxState.TRYING, TxState.PROCEEDING)
        self._terminate()
        return [TimedOut("transport")] if was_pending else []

    def _fire(self, timer: _Timer, now: float) -> list[TxAction]:
        if timer.name == "E":
            # §17.1.2.2: double up to T2 while Trying; T2 once Proceeding.
            interval = self.timers.t2 if self.state is TxState.PROCEEDING else min(timer.interval * 2, self.timers.t2)
            self._arm("E", now, interval, interval)
            return [Transmit(self.request, self.destination)]
        if timer.name == "F":
            self._terminate()
            return [TimedOut("F")]
        self._terminate()  # K
        return []


_NICT_TRANSITIONS = {
    (TxState.TRYING, "1xx"): ClientNonInvite._provisional,
    (TxState.PROCEEDING, "1xx"): ClientNonInvite._provisional,
    (TxState.TRYING, "final"): ClientNonInvite._final,
    (TxState.PROCEEDING, "final"): ClientNonInvite._final,
}


# -- server transactions ----------------------------------------------------------------------


@attrs.define(eq=False)
class ServerInvite(_Transaction):
    """INVITE server transaction (IST).

    ``respond(response, now)`` sends a response from the TU; ``receive_request`` takes INVITE
    retransmissions and the ACK for a non-2xx final response.
    """

    request: SipRequest = attrs.field(kw_only=True)
    state: TxState = TxState.PROCEEDING
    last_response: SipResponse | None = attrs.field(default=None, init=False)

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def respond(self, response: SipResponse, now: float) -> list[TxAction]:
        if self.state is not TxState.PROCEEDING:
            raise LocalProtocolError(
                f"cannot send {response.status} in INVITE server transaction state {self.state.value}"
            )
        self.last_response = response
        if response.status < 200:
            return [Transmit(response, self.destination)]
        if response.status < 300:
            # RFC 6026 §7.1: Accepted; INVITE retransmissions are absorbed, 2xx retransmission is
            # the UAS core's job (RFC 3261 §13.3.1.4).
            self.state = TxState.ACCEPTED
            self._arm("L", now, self.timers.b)
            return [Transmit(response, self.destination)]
        self.state = TxState.COMPLETED
        if not self.destination.reliable:
            self._arm("G", now, self.timers.t1, self.timers.t1)
        self._arm("H", now, self.timers.b)
        return [Transmit(response, self.destination)]

    def receive_request(self, request: SipRequest, now: float) -> list[TxAction]:
        kind = "ACK" if request.method == "ACK" else "INVITE"
        handler = _IST_TRANSITIONS.get((self.state, kind))
        if handler is None:
            return []
        return handler(self, request, now)

    def _retransmit_last(self, request: SipRequest, now: float) -> list[TxAction]:
        if self.last_response is None:
            return []
        return [Transmit(self.last_response, self.destination)]

    def _ack(self, request: SipRequest, now: float) -> list[TxAction]:
        self.state = TxState.CONFIRMED
        self._cancel("G", "H")
        self._arm("I", now, 0.0 if self.destination.reliable else self.timers.t4)
        return [Deliver(request)]

    def transport_error(self) -> list[TxAction]:
        self._terminate()
        return [TimedOut("transport")]

    def _fire(self, timer: _Timer, now: float) -> list[TxAction]:
        if timer.name == "G":
            interval = min(timer.interval * 2, self.timers.t2)
            self._arm("G", now, interval, interval)
            assert self.last_response is not None
            return [Transmit(self.last_response, self.destination)]
        if timer.name == "H":
            self._terminate()
            return [TimedOut("H")]
        self._terminate()  # I, L
        return []


_IST_TRANSITIONS = {
    (TxState.PROCEEDING, "INVITE"): ServerInvite._retransmit_last,
    (TxState.COMPLETED, "INVITE"): ServerInvite._retransmit_last,
    (TxState.COMPLETED, "ACK"): ServerInvite._ack,
    # ACCEPTED/INVITE: absorbed (RFC 6026 §7.1); CONFIRMED/*: absorbed.
}


@attrs.define(eq=False)
class ServerNonInvite(_Transaction):
    """Non-INVITE server transaction (NIST)."""

    request: SipRequest = attrs.field(kw_only=True)
    state: TxState = TxState.TRYING
    last_response: SipResponse | None = attrs.field(default=None, init=False)

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def respond(self, response: SipResponse, now: float) -> list[TxAction]:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            raise LocalProtocolError(f"cannot respond in non-INVITE server transaction state {self.state.value}")
        self.last_response = response
        if response.status < 200:
            self.state = TxState.PROCEEDING
        else:
            self.state = TxState.COMPLETED
            self._arm("J", now, 0.0 if self.destination.reliable else self.timers.b)
        return [Transmit(response, self.destination)]

    def receive_request(self, request: SipRequest, now: float) -> list[TxAction]:
        if self.state in (TxState.PROCEEDING, TxState.COMPLETED) and self.last_response is not None:
            return [Transmit(self.last_response, self.destination)]
        return []

    def transport_error(self) -> list[TxAction]:
        self._terminate()
        return []

    def _fire(self, timer: _Timer, now: float) -> list[TxAction]:
        self._terminate()  # J
        return []
