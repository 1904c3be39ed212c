"""The user-agent core: transactions, dialogs, calls and registrations of several accounts.

Theory of operation
-------------------
:class:`UserAgent` is sans-IO.  The shell feeds it what arrives (``receive_datagram`` /
``receive_message`` with the source :class:`Endpoint` and ``now``), calls ``handle_timer(now)``
at ``next_deadline()``, and carries out the :mod:`~sipcallhunt.sip.events` it returns from
``drain()``: :class:`SendMessage` for the network, the rest for the application.  The
application (the hotline) drives calls with ``answer``, ``reject``, ``invite`` and ``hangup``.

Layers, bottom up:

* transactions (:mod:`.transaction`) own retransmissions and timeouts; they are found by
  branch + sent-by + method (RFC 3261 §17.2.3) and by branch + CSeq method (§17.1.3);
* each call is a :class:`Leg` (inbound or outbound) whose states live in ``_LEG_TRANSITIONS``;
  it owns its :class:`~sipcallhunt.sip.dialog.Dialog`, its media offer/answer state, the 2xx
  retransmission of the UAS (§13.3.1.4), pending CANCEL/BYE and RFC 4028 session timers;
* each account has a :class:`~sipcallhunt.sip.registration.Registration` (when it registers)
  and two digest sessions that answer 401/407 challenges: one for its REGISTERs, one for every
  other request (calls), so that the registrar's credentials never travel with a call to an
  agent (a proxy forwards credentials it did not ask for: Kamailio passes an Authorization
  header on to the callee).

Security: a dialog-creating request is accepted only from a trusted host (the accounts'
registrars and proxies, or the configured list); anything else is answered 403 and logged.
Malformed requests are answered 400 when they can be, otherwise dropped; every drop is counted
in :attr:`UserAgent.counters`.
"""

from __future__ import annotations

__all__ = ["ALLOWED_METHODS", "Leg", "LegState", "LocalMedia", "UaSettings", "UserAgent"]

import collections
import enum
import heapq
from collections.abc import Callable, Iterable
from typing import Final

import attrs

from sipcallhunt.config import AccountConfig
from sipcallhunt.errors import LocalProtocolError, ProtocolError, SdpError, SipParseError
from sipcallhunt.sip import sdp as sdpmod
from sipcallhunt.sip.dialog import Dialog
from sipcallhunt.sip.digest import ChallengeOutcome, DigestSession
from sipcallhunt.sip.events import (
    DEBUG,
    INFO,
    TRACE,
    WARNING,
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
from sipcallhunt.sip.message import (
    Headers,
    KeepAlive,
    SipMessage,
    SipRequest,
    SipResponse,
    parse_message,
    reason_phrase,
)
from sipcallhunt.sip.registration import (
    Registration,
    RegistrationAction,
    RegState,
    SendKeepalive,
    SendRegister,
    StateChanged,
)
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
)
from sipcallhunt.sip.uri import NameAddr, SipUri, Via

ALLOWED_METHODS: Final = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE")
KNOWN_METHODS: Final = frozenset(
    {*ALLOWED_METHODS, "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER"}
)
SUPPORTED: Final = ("timer",)
ACCEPT: Final = ("application/sdp", "application/dtmf-relay", "application/dtmf")
MIN_SE: Final = 90  # RFC 4028 §4: the smallest Session-Expires we accept
REFUSALS_LOGGED: Final = 10
REFUSAL_WINDOW: Final = 60.0
"""Refused requests (403, 404, 405, 481, 400 ...) logged per source address and window; the rest
are only counted (``refusals_not_logged``): a scanner's flood would be one log line per packet."""
BRANCH_COOKIE: Final = "z9hG4bK"


@attrs.frozen(kw_only=True)
class UaSettings:
    host: str  # the address we put in Via and Contact (public address behind NAT)
    port: int
    transports: tuple[str, ...] = ("udp", "tcp")
    user_agent: str = "sipcallhunt"
    trusted_hosts: frozenset[str] = frozenset()
    keepalive_interval: float = 30.0
    timers: Timers = attrs.field(factory=Timers)


@attrs.frozen(kw_only=True)
class LocalMedia:
    """Our side of a call's media, for the SDP we send."""

    address: str
    port: int
    codecs: tuple[str, ...] = ("PCMU", "PCMA")


class LegState(enum.Enum):
    INCOMING = "incoming"  # INVITE received, not answered yet
    ANSWERED = "answered"  # our 2xx sent, ACK awaited
    CALLING = "calling"  # our INVITE sent, no provisional response yet
    PROCEEDING = "proceeding"  # provisional response received
    CANCELLING = "cancelling"  # CANCEL sent (or waiting for a provisional to send it)
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class LegInput(enum.Enum):
    ANSWER = "answer"
    ACK = "ack"
    PROVISIONAL = "provisional"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCEL = "cancel"
    RETRY = "retry"  # the INVITE was challenged and is sent again with credentials
    END = "end"  # BYE either way, CANCEL received, timeouts


_LEG_TRANSITIONS: dict[tuple[LegState, LegInput], LegState] = {
    (LegState.INCOMING, LegInput.ANSWER): LegState.ANSWERED,
    (LegState.INCOMING, LegInput.FAILURE): LegState.TERMINATED,  # we rejected it
    (LegState.INCOMING, LegInput.END): LegState.TERMINATED,  # CANCEL received
    (LegState.ANSWERED, LegInput.ACK): LegState.CONFIRMED,
    (LegState.ANSWERED, LegInput.END): LegState.TERMINATED,
    (LegState.CALLING, LegInput.PROVISIONAL): LegState.PROCEEDING,
    (LegState.PROCEEDING, LegInput.PROVISIONAL): LegState.PROCEEDING,
    (LegState.CALLING, LegInput.SUCCESS): LegState.CONFIRMED,
    (LegState.PROCEEDING, LegInput.SUCCESS): LegState.CONFIRMED,
    (LegState.CALLING, LegInput.FAILURE): LegState.TERMINATED,
    (LegState.PROCEEDING, LegInput.FAILURE): LegState.TERMINATED,
    (LegState.CALLING, LegInput.RETRY): LegState.CALLING,
    (LegState.PROCEEDING, LegInput.RETRY): LegState.CALLING,
    (LegState.CALLING, LegInput.CANCEL): LegState.CANCELLING,
    (LegState.PROCEEDING, LegInput.CANCEL): LegState.CANCELLING,
    (LegState.CANCELLING, LegInput.PROVISIONAL): LegState.CANCELLING,
    (LegState.CANCELLING, LegInput.FAILURE): LegState.TERMINATED,
    (LegState.CANCELLING, LegInput.SUCCESS): LegState.TERMINATED,  # answered anyway: ACK + BYE
    (LegState.CANCELLING, LegInput.END): LegState.TERMINATED,
    (LegState.CONFIRMED, LegInput.ACK): LegState.CONFIRMED,  # ACK of a re-INVITE
    (LegState.CONFIRMED, LegInput.END): LegState.TERMINATED,
}


@attrs.define(eq=False)
class Leg:
    """One call leg: an INVITE dialog we answered or started."""

    id: str
    account: AccountConfig
    outbound: bool
    invite: SipRequest
    state: LegState
    destination: Endpoint  # where requests outside the dialog (INVITE, CANCEL) went/come from
    server_tx: ServerInvite | None = None
    client_tx: ClientInvite | None = None
    dialog: Dialog | None = None
    local_tag: str = ""
    local_media: LocalMedia | None = None
    local_sdp: sdpmod.SessionDescription | None = None
    offer: sdpmod.SessionDescription | None = None  # an offer we sent, awaiting its answer
    remote_offer: sdpmod.SessionDescription | None = None  # an offer we received, to answer
    sdp_session_id: int = 0
    sdp_version: int = 0
    media: sdpmod.NegotiatedMedia | None = None
    ack: SipRequest | None = None  # our ACK for a 2xx, re-sent for each 2xx retransmission
    ack_destination: Endpoint | None = None
    ok: SipResponse | None = None  # our 2xx awaiting ACK
    ok_destination: Endpoint | None = None
    ok_interval: float = 0.0
    ok_next: float | None = None
    ok_give_up: float | None = None
    reinvite_tx: ServerInvite | None = None  # a re-INVITE we are answering
    reinvite_out: bool = False  # a re-INVITE of ours is pending (for 491 glare)
    bye_after_ack: bool = False
    cancel_after_provisional: bool = False
    auth_tries: int = 0
    session_expires: int | None = None
    session_deadline: float | None = None  # BYE if no refresh by then (RFC 4028 §10)
    refresh_due: float | None = None  # we are the refresher
    final_status: int | None = None

    def move(self, event: LegInput) -> LegState:
        new = _LEG_TRANSITIONS.get((self.state, event))
        if new is None:
            raise LocalProtocolError(f"leg {self.id}: {event.value} in state {self.state.value}")
        self.state = new
        return new

    def can(self, event: LegInput) -> bool:
        return (self.state, event) in _LEG_TRANSITIONS

    @property
    def ended(self) -> bool:
        return self.state is LegState.TERMINATED

    def next_deadline(self) -> float | None:
        times = [t for t in (self.ok_next, self.ok_give_up, self.session_deadline, self.refresh_due) if t is not None]
        return min(times) if times else None


class _Kind(enum.Enum):
    INVITE = "invite"
    REINVITE = "reinvite"
    CANCEL = "cancel"
    BYE = "bye"
    REGISTER = "register"
    PING = "ping"
    OTHER = "other"


@attrs.define(eq=False)
class _Outgoing:
    """Bookkeeping for one client transaction: why we sent it, for whom."""

    kind: _Kind
    tx: ClientInvite | ClientNonInvite
    account: AccountConfig
    leg: Leg | None = None
    ping: int = 0
    auth_tries: int = 0


@attrs.define(eq=False)
class _AccountState:
    config: AccountConfig
    contact_user: str
    digest: DigestSession  # the registrar's challenges: REGISTER only
    call_digest: DigestSession  # a proxy's or far end's challenges: every other request
    registration: Registration | None
    call_id: str
    cseq: int = 0
    from_tag: str = ""
    registered: bool = False

    def next_deadline(self) -> float | None:
        return self.registration.next_deadline() if self.registration is not None else None

    def digest_for(self, method: str) -> DigestSession:
        """The digest session whose (pre-emptive) credentials ``method`` carries."""
        return self.digest if method == "REGISTER" else self.call_digest


TimerOwner = ClientInvite | ClientNonInvite | ServerInvite | ServerNonInvite | Leg | _AccountState


class UserAgent:
    """A SIP user agent for several accounts.  See the module docstring."""

    def __init__(
        self,
        settings: UaSettings,
        accounts: Iterable[AccountConfig],
        *,
        token: Callable[[int], str],
    ) -> None:
        self.settings = settings
        self._token = token
        self._events: list[UaEvent] = []
        self._client: dict[tuple[str, str], _Outgoing] = {}
        self._server: dict[tuple[object, ...], ServerInvite | ServerNonInvite] = {}
        # The same server transactions by (method, Call-ID, From tag, CSeq): the merged-request
        # check (RFC 3261 §8.2.2.2) looks up its candidates instead of scanning every transaction.
        self._server_by_request: dict[tuple[object, ...], list[ServerInvite | ServerNonInvite]] = {}
        self._server_legs: dict[int, Leg] = {}  # id(ServerInvite) -> leg, for CANCEL and timeouts
        self._legs: dict[str, Leg] = {}
        self._dialogs: dict[tuple[str, str, str], Leg] = {}  # (call-id, local tag, remote tag)
        self._heap: list[tuple[float, int, TimerOwner]] = []
        self._heap_seq = 0
        self.counters: collections.Counter[str] = collections.Counter()
        self._refusals: dict[str, int] = {}  # source host -> refused requests in this window
        self._refusal_window = float("-inf")
        self._accounts: dict[str, _AccountState] = {}
        for account in accounts:
            registration = (
                Registration(
                    account.name,
                    account.expires,
                    keepalive_interval=settings.keepalive_interval,
                    reregister_interval=account.reregister_interval,
                )
                if account.register
                else None
            )
            self._accounts[account.name] = _AccountState(
                config=account,
                contact_user=account.username,
                digest=DigestSession(
                    username=account.auth_username or account.username,
                    password=account.password,
                    cnonce_source=lambda: token(8),
                ),
                call_digest=DigestSession(
                    username=account.auth_username or account.username,
                    password=account.password,
                    cnonce_source=lambda: token(8),
                ),
                registration=registration,
                call_id=f"{token(12)}@{settings.host}",
                from_tag=token(6),
            )

    # == public: lifecycle ==========================================================================
    def start(self, now: float) -> None:
        """Register every account that registers."""
        for state in self._accounts.values():
            if state.registration is not None:
                self._registration_actions(state, state.registration.start(now), now)

    def shutdown(self, now: float) -> None:
        """Un-register every account (calls are ended by the application before this)."""
        for state in self._accounts.values():
            if state.registration is not None:
                self._registration_actions(state, state.registration.stop(now), now)

    @property
    def unregistered(self) -> bool:
        """True once every registration has finished un-registering (after ``shutdown``)."""
        return all(
            s.registration is None or s.registration.state in (RegState.STOPPED, RegState.IDLE)
            for s in self._accounts.values()
        )

    def registration_state(self, account: str) -> RegState | None:
        registration = self._accounts[account].registration
        return registration.state if registration else None

    @property
    def active_legs(self) -> int:
        return len(self._legs)

    def drain(self) -> list[UaEvent]:
        """Everything produced since the last call, in order."""
        events, self._events = self._events, []
        return events

    # == public: input ==============================================================================
    def receive_datagram(self, data: bytes, source: Endpoint, now: float) -> None:
        """One UDP datagram (or one framed TCP message) from ``source``."""
        if not data.strip(b"\r\n"):
            self.counters["keepalive_received"] += 1
            return
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._parse_failure(exc, source, now)
            return
        self.receive_message(message, source, now)

    def receive_message(self, message: SipMessage | KeepAlive, source: Endpoint, now: float) -> None:
        if isinstance(message, KeepAlive):
            self.counters["keepalive_received"] += 1
            return
        try:
            if isinstance(message, SipResponse):
                self._on_response(message, source, now)
            else:
                self._on_request(message, source, now)
        except SipParseError as exc:
            # A header that parse_message does not check turned out to be malformed.
            self._parse_failure(exc, source, now, message)
        except ProtocolError as exc:
            self.counters["protocol_errors"] += 1
            self._log(WARNING, f"dropped message from {source}: {exc}")

    def transport_error(self, destination: Endpoint, now: float) -> None:
        """The shell could not send to ``destination`` (connection refused, no route...)."""
        self.counters["transport_errors"] += 1
        for out in list(self._client.values()):
            if out.tx.destination == destination and not out.tx.terminated:
                self._run_client(out, out.tx.transport_error(), now)

    # == public: timers =============================================================================
    def next_deadline(self) -> float | None:
        while self._heap:
            deadline, _, owner = self._heap[0]
            actual = owner.next_deadline()
            if actual is None or actual > deadline + 1e-9:
                heapq.heappop(self._heap)
                if actual is not None:
                    self._push(actual, owner)
                continue
            return deadline
        return None

    def handle_timer(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, _, owner = heapq.heappop(self._heap)
            actual = owner.next_deadline()
            if actual is None:
                continue
            if actual > now:
                self._push(actual, owner)
                continue
            self._fire(owner, now)
            self._schedule(owner)

    # == public: calls ==============================================================================
    def answer(self, leg_id: str, media: LocalMedia, now: float) -> None:
        """Answer an incoming call with 200 OK and our SDP (488 if its offer is unusable)."""
        leg = self._legs[leg_id]
        if leg.state is not LegState.INCOMING or leg.server_tx is None:
            raise LocalProtocolError(f"leg {leg_id} cannot be answered in state {leg.state.value}")
        leg.local_media = media
        leg.sdp_session_id = int(self._token(4), 16)
        try:
            body = self._answer_or_offer(leg, leg.remote_offer)
        except SdpError as exc:
            self._log(WARNING, f"offer not acceptable: {exc}", leg.id)
            self.reject(leg_id, exc.status, now, reason=exc.reason)
            return
        dialog = Dialog.as_uas(leg.invite, leg.local_tag)
        dialog.confirm()
        leg.dialog = dialog
        self._dialogs[(dialog.call_id, dialog.local_tag, dialog.remote_tag)] = leg
        extra = self._session_timer_answer(leg, leg.invite, now)
        response = self._response(
            leg.invite, 200, to_tag=leg.local_tag, contact=True, body=body, content_type="application/sdp", extra=extra
        )
        leg.move(LegInput.ANSWER)
        self._send_2xx(leg, leg.server_tx, response, now)

    def ring(self, leg_id: str, now: float) -> None:
        """Send 180 Ringing for an incoming call."""
        leg = self._legs[leg_id]
        if leg.state is LegState.INCOMING and leg.server_tx is not None:
            response = self._response(leg.invite, 180, to_tag=leg.local_tag, contact=True)
            self._run_server(leg.server_tx, leg.server_tx.respond(response, now), now)

    def reject(self, leg_id: str, status: int, now: float, *, reason: str | None = None) -> None:
        leg = self._legs[leg_id]
        if leg.state is not LegState.INCOMING or leg.server_tx is None:
            raise LocalProtocolError(f"leg {leg_id} cannot be rejected in state {leg.state.value}")
        response = self._response(leg.invite, status, reason=reason, to_tag=leg.local_tag)
        leg.move(LegInput.FAILURE)
        leg.final_status = status
        self._run_server(leg.server_tx, leg.server_tx.respond(response, now), now)
        self._forget_leg(leg)

    def invite(
        self,
        account_name: str,
        target: str,
        media: LocalMedia,
        now: float,
        *,
        display_name: str | None = None,
        asserted_identity: str | None = None,
    ) -> str:
        """Call ``target`` (a number/extension or a SIP URI) through the account's PBX; returns the leg id."""
        state = self._accounts[account_name]
        account = state.config
        uri = self._target_uri(account, target)
        leg_id = "L" + self._token(5)
        local_tag = self._token(6)
        call_id = f"{self._token(12)}@{self.settings.host}"
        from_ = NameAddr(
            uri=SipUri(scheme="sip", user=account.username, host=account.aor_domain),
            display_name=display_name if display_name is not None else account.display_name,
            params=(("tag", local_tag),),
        )
        to = NameAddr(uri=uri)
        leg = Leg(
            id=leg_id,
            account=account,
            outbound=True,
            invite=SipRequest("INVITE", str(uri)),
            state=LegState.CALLING,
            destination=self._account_hop(account)[0],
            local_tag=local_tag,
            local_media=media,
            sdp_session_id=int(self._token(4), 16),
        )
        offer = sdpmod.build_offer(
            address=media.address,
            port=media.port,
            session_id=leg.sdp_session_id,
            session_version=leg.sdp_version,
            codecs=media.codecs,
        )
        leg.offer = offer
        leg.local_sdp = offer
        extra: list[tuple[str, str]] = []
        if asserted_identity:
            extra.append(("P-Asserted-Identity", asserted_identity))
        request, destination = self._out_of_dialog_request(
            state,
            "INVITE",
            uri,
            from_=from_,
            to=to,
            call_id=call_id,
            cseq=1,
            extra=extra,
            body=bytes(offer),
            content_type="application/sdp",
        )
        leg.invite = request
        self._legs[leg_id] = leg
        self._log(INFO, f"calling {uri} via {destination}", leg_id)
        self._start_client(_Kind.INVITE, request, destination, state.config, now, leg=leg)
        return leg_id

    def hangup(self, leg_id: str, now: float, *, reason: str = "hangup") -> None:
        """End a leg whatever its state: CANCEL, BYE, 480 — whatever fits.  Idempotent."""
        leg = self._legs.get(leg_id)
        if leg is None or leg.ended:
            return
        if leg.state is LegState.INCOMING:
            self.reject(leg_id, 480, now, reason="Temporarily Unavailable")
            return
        if leg.state in (LegState.CALLING, LegState.PROCEEDING):
            had_provisional = leg.state is LegState.PROCEEDING
            leg.move(LegInput.CANCEL)
            if had_provisional:
                self._send_cancel(leg, now)
            else:
                # RFC 3261 §9.1: no CANCEL before a provisional response; send it when one comes.
                leg.cancel_after_provisional = True
            return
        if leg.state is LegState.CANCELLING:
            return
        if leg.state is LegState.ANSWERED:
            # §15: no BYE before the ACK (or its timeout) — send it then.
            leg.bye_after_ack = True
            leg.move(LegInput.END)
            self._events.append(CallEnded(leg.id, reason, by_remote=False))
            return
        if leg.state is LegState.CONFIRMED:
            self._send_bye(leg, now)
            leg.move(LegInput.END)
            self._events.append(CallEnded(leg.id, reason, by_remote=False))
            self._forget_leg(leg)

    def leg(self, leg_id: str) -> Leg | None:
        return self._legs.get(leg_id)

    # == requests ===================================================================================
    def _on_request(self, request: SipRequest, source: Endpoint, now: float) -> None:
        key = self._server_key(request)
        existing = self._server.get(key)
        if request.method == "ACK":
            if existing is not None and isinstance(existing, ServerInvite):
                self._run_server(existing, existing.receive_request(request, now), now)
                return
            self._on_ack(request, now)
            return
        if existing is not None:
            self.counters["retransmissions_received"] += 1
            self._run_server(existing, existing.receive_request(request, now), now)
            return
        if request.method == "CANCEL":
            self._on_cancel(request, source, now)
            return
        tx: ServerInvite | ServerNonInvite
        destination = self._response_destination(request, source)
        if request.method == "INVITE":
            tx = ServerInvite(destination, self.settings.timers, request=request)
            self._add_server(key, tx)
            self._run_server(tx, tx.respond(self._response(request, 100), now), now)
        else:
            tx = ServerNonInvite(destination, self.settings.timers, request=request)
            self._add_server(key, tx)
        self._log(TRACE, f"new server transaction {request.method} {key[0]}")
        try:
            self._dispatch_request(request, tx, source, now)
        except ProtocolError as exc:
            if not tx.final_sent and isinstance(exc, ProtocolError) and not isinstance(exc, LocalProtocolError):
                self._reply(tx, request, exc.status, now, reason=exc.reason)
            else:
                raise

    def _dispatch_request(
        self, request: SipRequest, tx: ServerInvite | ServerNonInvite, source: Endpoint, now: float
    ) -> None:
        method = request.method
        if method not in KNOWN_METHODS:
            self._refused(tx, request, source, 501, now)
            return
        uri = request.request_uri
        if not uri.is_sip:
            self._reply(tx, request, 416, now)
            return
        unsupported = sorted(request.header_tokens("Require") - set(SUPPORTED))
        if unsupported and method not in ("ACK", "CANCEL"):
            self._reply(tx, request, 420, now, extra=[("Unsupported", ", ".join(unsupported))])
            return
        to_tag = request.to.tag
        if to_tag:
            from_tag = request.from_.tag or ""
            leg = self._dialogs.get((request.call_id, to_tag, from_tag))
            if leg is None or leg.dialog is None:
                self.counters["no_dialog"] += 1
                self._log_refusal(
                    INFO, f"481: {method} for no dialog of ours from {source} (R-URI {request.uri})", source, now
                )
                self._reply(tx, request, 481, now)
                return
            self._in_dialog(leg, request, tx, now)
            return
        if self._merged(request, tx):
            self._reply(tx, request, 482, now)
            return
        if method == "INVITE" and source.host not in self.settings.trusted_hosts:
            self.counters["untrusted_requests"] += 1
            self._log_refusal(
                WARNING,
                f"403: {method} from untrusted {source} (From {request.headers.get('From')}, R-URI {request.uri})",
                source,
                now,
            )
            self._reply(tx, request, 403, now)
            return
        if method == "OPTIONS":
            self._reply(tx, request, 200, now, extra=self._capabilities())
        elif method == "INVITE":
            assert isinstance(tx, ServerInvite)
            self._on_invite(request, tx, source, now)
        elif method in ("BYE", "INFO", "UPDATE", "PRACK"):
            self._reply(tx, request, 481, now)
        else:
            self._refused(tx, request, source, 405, now)

    def _refused(
        self, tx: ServerInvite | ServerNonInvite, request: SipRequest, source: Endpoint, status: int, now: float
    ) -> None:
        """A method we do not take outside a dialog (REGISTER, REFER, MESSAGE ...): 405, or 501
        for one we do not know; counted and logged with where it came from (scanners probe so)."""
        self.counters["method_not_allowed" if status == 405 else "unknown_method"] += 1
        self._log_refusal(INFO, f"{status}: {request.method} from {source} (R-URI {request.uri})", source, now)
        self._reply(tx, request, status, now, extra=[("Allow", ", ".join(ALLOWED_METHODS))])

    def _merged(self, request: SipRequest, tx: ServerInvite | ServerNonInvite) -> bool:
        """A request that reached us twice by different paths (RFC 3261 §8.2.2.2) → 482."""
        branch = request.top_via.branch
        for other in self._server_by_request.get(_request_identity(request), ()):
            if other is not tx and not other.terminated and other.request.top_via.branch != branch:
                return True
        return False

    def _add_server(self, key: tuple[object, ...], tx: ServerInvite | ServerNonInvite) -> None:
        self._server[key] = tx
        self._server_by_request.setdefault(_request_identity(tx.request), []).append(tx)

    def _drop_server(self, tx: ServerInvite | ServerNonInvite) -> None:
        self._server.pop(self._server_key(tx.request), None)
        self._server_legs.pop(id(tx), None)
        identity = _request_identity(tx.request)
        same = self._server_by_request.get(identity)
        if same is not None:
            same[:] = [other for other in same if other is not tx]
            if not same:
                del self._server_by_request[identity]

    def _on_invite(self, request: SipRequest, tx: ServerInvite, source: Endpoint, now: float) -> None:
        account = self._account_for(request)
        if account is None:
            self.counters["unknown_user"] += 1
            self._log_refusal(WARNING, f"404: INVITE for unknown user {request.uri} from {source}", source, now)
            self._reply(tx, request, 404, now)
            return
        offer = self._offer_in(request)  # raises SdpError → 488/400 via _on_request
        expires = request.headers.get("Session-Expires") or request.headers.get("x")
        if expires is not None:
            value = _session_expires(expires)
            if value is not None and value < MIN_SE:
                self._reply(tx, request, 422, now, extra=[("Min-SE", str(MIN_SE))])
                return
        leg = Leg(
            id="L" + self._token(5),
            account=account.config,
            outbound=False,
            invite=request,
            state=LegState.INCOMING,
            destination=source,
            server_tx=tx,
            local_tag=self._token(6),
            remote_offer=offer,
        )
        self._legs[leg.id] = leg
        self._server_legs[id(tx)] = leg
        self._log(INFO, f"incoming call from {request.headers.get('From')} to {request.uri}", leg.id)
        self._events.append(
            IncomingCall(
                leg=leg.id,
                account=account.config.name,
                caller=request.from_,
                callee=request.to,
                request=request,
                source=source,
            )
        )

    def _on_cancel(self, request: SipRequest, source: Endpoint, now: float) -> None:
        destination = self._response_destination(request, source)
        tx = ServerNonInvite(destination, self.settings.timers, request=request)
        self._add_server(self._server_key(request), tx)
        invite_key = self._server_key(request, method="INVITE")
        invite_tx = self._server.get(invite_key)
        if not isinstance(invite_tx, ServerInvite):
            self._reply(tx, request, 481, now)
            return
        self._reply(tx, request, 200, now)
        leg = self._server_legs.get(id(invite_tx))
        if invite_tx.final_sent or leg is None:
            return
        # §9.2: the INVITE is answered 487 and the call is gone.
        response = self._response(invite_tx.request, 487, to_tag=leg.local_tag)
        self._run_server(invite_tx, invite_tx.respond(response, now), now)
        leg.move(LegInput.END)
        self._log(INFO, "caller cancelled", leg.id)
        self._events.append(CallEnded(leg.id, "cancelled by the caller", by_remote=True))
        self._forget_leg(leg)

    def _on_ack(self, request: SipRequest, now: float) -> None:
        """ACK for a 2xx: matched by dialog, not by transaction (§17.2.3, §13.3.1.4)."""
        to_tag = request.to.tag or ""
        leg = self._dialogs.get((request.call_id, to_tag, request.from_.tag or ""))
        if leg is None:
            self.counters["stray_acks"] += 1
            return
        if leg.ok is None or request.cseq.seq != leg.ok.cseq.seq:
            return  # a retransmitted ACK
        leg.ok = None
        leg.ok_next = leg.ok_give_up = None
        if leg.dialog is not None:
            leg.dialog.receive_request(request)
        if request.body and leg.offer is not None:
            self._accept_answer(leg, request.body, now)
        if leg.state is LegState.ANSWERED:
            leg.move(LegInput.ACK)
            self._events.append(CallConfirmed(leg.id))
        elif leg.state is LegState.TERMINATED and leg.bye_after_ack:
            leg.bye_after_ack = False
            self._send_bye(leg, now)
            self._forget_leg(leg)

    def _in_dialog(self, leg: Leg, request: SipRequest, tx: ServerInvite | ServerNonInvite, now: float) -> None:
        assert leg.dialog is not None
        leg.dialog.receive_request(request)  # 500 for an out-of-order CSeq
        method = request.method
        if method == "BYE":
            self._reply(tx, request, 200, now)
            if not leg.ended:
                leg.move(LegInput.END)
                self._log(INFO, "BYE received", leg.id)
                self._events.append(CallEnded(leg.id, "remote hung up", by_remote=True))
            leg.ok = None
            leg.ok_next = leg.ok_give_up = None
            leg.bye_after_ack = False
            self._forget_leg(leg)
        elif method == "INVITE":
            assert isinstance(tx, ServerInvite)
            self._on_reinvite(leg, request, tx, now)
        elif method == "UPDATE":
            self._on_update(leg, request, tx, now)
        elif method == "INFO":
            self._on_info(leg, request, tx, now)
        elif method == "OPTIONS":
            self._reply(tx, request, 200, now, extra=self._capabilities())
        elif method == "PRACK":
            self._reply(tx, request, 481, now)
        else:  # REFER (a transfer the caller or agent asks for), MESSAGE, SUBSCRIBE ...
            self.counters["method_not_allowed"] += 1
            refer_to = request.headers.get("Refer-To")
            target = f" (Refer-To {refer_to})" if refer_to else ""
            self._log_refusal(
                INFO, f"405: {method} in the call from {tx.destination}{target}", tx.destination, now, leg.id
            )
            self._reply(tx, request, 405, now, extra=[("Allow", ", ".join(ALLOWED_METHODS))])

    def _on_reinvite(self, leg: Leg, request: SipRequest, tx: ServerInvite, now: float) -> None:
        if leg.reinvite_out:
            self._reply(tx, request, 491, now)  # RFC 3261 §14.2 glare
            return
        if (leg.reinvite_tx is not None and not leg.reinvite_tx.final_sent) or leg.ok is not None:
            self._reply(tx, request, 500, now, extra=[("Retry-After", "1")])
            return
        if leg.state is not LegState.CONFIRMED or leg.dialog is None:
            self._reply(tx, request, 491, now)
            return
        offer = self._offer_in(request)
        body = self._answer_or_offer(leg, offer)  # SdpError → 488, the old session stays
        extra = self._session_timer_answer(leg, request, now)
        response = self._response(
            request, 200, to_tag=leg.local_tag, contact=True, body=body, content_type="application/sdp", extra=extra
        )
        leg.reinvite_tx = tx
        self._server_legs[id(tx)] = leg
        self._log(INFO, "re-INVITE answered", leg.id)
        self._send_2xx(leg, tx, response, now)

    def _on_update(self, leg: Leg, request: SipRequest, tx: ServerInvite | ServerNonInvite, now: float) -> None:
        offer = self._offer_in(request)
        extra = self._session_timer_answer(leg, request, now)
        if offer is None:
            self._reply(tx, request, 200, now, extra=extra, contact=True, to_tag=leg.local_tag)
            return
        body = self._answer_or_offer(leg, offer)
        response = self._response(
            request, 200, to_tag=leg.local_tag, contact=True, body=body, content_type="application/sdp", extra=extra
        )
        self._run_server(tx, tx.respond(response, now), now)

    def _on_info(self, leg: Leg, request: SipRequest, tx: ServerInvite | ServerNonInvite, now: float) -> None:
        from sipcallhunt.media.dtmf import parse_info_dtmf

        digit = parse_info_dtmf(request.content_type, request.body)  # garbage → 400
        self._reply(tx, request, 200, now)
        if digit is not None:
            # Never the key itself: it may be part of a PIN (the hotline logs only that one came).
            self._log(DEBUG, "a DTMF key by SIP INFO", leg.id)
            self._events.append(InfoDigit(leg.id, digit.digit))

    # == responses ==================================================================================
    def _on_response(self, response: SipResponse, source: Endpoint, now: float) -> None:
        via = response.top_via
        key = (via.branch or "", response.cseq.method)
        out = self._client.get(key)
        if out is None:
            if response.cseq.method == "INVITE" and 200 <= response.status < 300:
                self._stray_2xx(response, now)
            else:
                self.counters["stray_responses"] += 1
            return
        self._run_client(out, out.tx.receive_response(response, now), now)

    def _stray_2xx(self, response: SipResponse, now: float) -> None:
        """A 2xx retransmission after the INVITE transaction ended: ACK it again (§13.2.2.4)."""
        to_tag = response.to.tag or ""
        leg = self._dialogs.get((response.call_id, response.from_.tag or "", to_tag))
        if leg is not None and leg.ack is not None and leg.ack_destination is not None:
            self._send(leg.ack, leg.ack_destination, leg)
        else:
            self.counters["stray_responses"] += 1

    def _client_response(self, out: _Outgoing, response: SipResponse, now: float) -> None:
        if response.status in (401, 407) and out.kind is not _Kind.CANCEL and self._retry_with_auth(out, response, now):
            return
        handler = _RESPONSE_HANDLERS[out.kind]
        handler(self, out, response, now)

    def _invite_response(self, out: _Outgoing, response: SipResponse, now: float) -> None:
        leg = out.leg
        assert leg is not None
        status = response.status
        if status < 200:
            if leg.ended:
                return
            leg.move(LegInput.PROVISIONAL)  # 100 Trying counts: a CANCEL may follow it (§9.1)
            if status > 100 and response.to.tag and leg.dialog is None:
                leg.dialog = Dialog.as_uac(leg.invite, response)
                self._dialogs[(leg.dialog.call_id, leg.dialog.local_tag, leg.dialog.remote_tag)] = leg
            early = bool(response.body) and response.content_type == "application/sdp"
            if early and leg.offer is not None:
                self._accept_answer(leg, response.body, now, early=True)
            if leg.cancel_after_provisional:
                leg.cancel_after_provisional = False
                self._send_cancel(leg, now)
                return
            if status > 100 and leg.state is LegState.PROCEEDING:
                self._events.append(CallProgress(leg.id, status, response.reason, early))
            return
        if status < 300:
            self._invite_success(leg, response, now)
            return
        leg.final_status = status
        if leg.ended:
            return
        leg.move(LegInput.FAILURE)
        self._log(INFO, f"call failed: {status} {response.reason}", leg.id)
        self._events.append(CallFailed(leg.id, status, response.reason))
        self._forget_leg(leg)

    def _invite_success(self, leg: Leg, response: SipResponse, now: float) -> None:
        to_tag = response.to.tag or ""
        if leg.dialog is not None and leg.dialog.remote_tag != to_tag:
            # A second 2xx from another fork: ACK and BYE it (§13.2.2.4).
            other = Dialog.as_uac(leg.invite, response)
            self._ack_2xx(leg, other, response, now, keep=False)
            bye = other.new_request("BYE", via=self._via(self._dialog_destination(other).transport))
            self._start_client(_Kind.OTHER, bye, self._dialog_destination(other), leg.account, now)
            return
        if leg.ack is not None:
            # 2xx retransmission: the same ACK again.
            assert leg.ack_destination is not None
            self._send(leg.ack, leg.ack_destination, leg)
            return
        if leg.dialog is None:
            leg.dialog = Dialog.as_uac(leg.invite, response)
            self._dialogs[(leg.dialog.call_id, leg.dialog.local_tag, leg.dialog.remote_tag)] = leg
        else:
            leg.dialog.update_from_response(response)
        leg.dialog.confirm()
        leg.final_status = response.status
        self._ack_2xx(leg, leg.dialog, response, now, keep=True)
        if leg.state is LegState.CANCELLING:
            # Answered although we cancelled: ACK then BYE at once.
            leg.move(LegInput.SUCCESS)
            self._log(INFO, "answered after CANCEL: sending BYE", leg.id)
            self._send_bye(leg, now)
            self._forget_leg(leg)
            return
        try:
            if response.body and leg.offer is not None:
                self._accept_answer(leg, response.body, now)
        except SdpError as exc:
            self._log(WARNING, f"unusable SDP answer: {exc}; hanging up", leg.id)
            leg.move(LegInput.SUCCESS)
            self._send_bye(leg, now)
            leg.move(LegInput.END)
            self._events.append(CallFailed(leg.id, 488, "Unusable SDP answer"))
            self._forget_leg(leg)
            return
        leg.move(LegInput.SUCCESS)
        self._session_timer_from_response(leg, response, now)
        self._log(INFO, f"answered ({response.status})", leg.id)
        self._events.append(CallAnswered(leg.id))

    def _ack_2xx(self, leg: Leg, dialog: Dialog, response: SipResponse, now: float, *, keep: bool) -> None:
        destination = self._dialog_destination(dialog)
        ack = dialog.new_request(
            "ACK", via=self._via(destination.transport), cseq=response.cseq.seq, extra=self._common_headers()
        )
        self._send(ack, destination, leg)
        if keep:
            leg.ack = ack
            leg.ack_destination = destination

    def _reinvite_response(self, out: _Outgoing, response: SipResponse, now: float) -> None:
        leg = out.leg
        assert leg is not None
        if response.status < 200:
            return
        leg.reinvite_out = False
        if response.status < 300 and leg.dialog is not None:
            self._ack_2xx(leg, leg.dialog, response, now, keep=False)
            if response.body and leg.offer is not None:
                self._accept_answer(leg, response.body, now)
            self._session_timer_from_response(leg, response, now)
        else:
            leg.offer = None
            if response.status in (408, 481) and not leg.ended:
                # RFC 3261 §12.2.1.2: the dialog is gone.
                self._end_by_us(leg, f"session refresh failed ({response.status})", now)

    def _cancel_response(self, out: _Outgoing, response: SipResponse, now: float) -> None:
        return  # the INVITE's 487 (or 2xx) decides what happens to the leg

    def _bye_response(self, out: _Outgoing, response: SipResponse, now: float) -> None:
        return

    def _register_response(self, out: _Outgoing, response: SipResponse, now: float) -> None:
        if response.status < 200:
            return
        state = self._accounts[out.account.name]
        assert state.registration is not None
        granted = self._granted_expires(state, response) if response.status < 300 else None
        min_expires = None
        if response.status == 423:
            value = response.headers.get("Min-Expires")
            if value and value.strip().isdigit():
                min_expires = int(value.strip())
        actions = state.registration.register_response(response.status, now, granted=granted, min_expires=min_expires)
        self._registration_actions(state, actions, now)

    def _ping_response(self, out: _Outgoing, response: SipResponse, now: float) -> None:
        if response.status < 200:
            return
        state = self._accounts[out.account.name]
        if state.registration is not None:
            self._registration_actions(state, state.registration.keepalive_answered(out.ping, now), now)

    def _other_response(self, out: _Outgoing, response: SipResponse, now: float) -> None:
        return

    def _client_timeout(self, out: _Outgoing, timer: str, now: float) -> None:
        reason = "no answer" if timer != "transport" else "transport error"
        if out.kind is _Kind.INVITE and out.leg is not None:
            leg = out.leg
            if leg.ended or leg.state is LegState.CONFIRMED:
                return
            status = 503 if timer == "transport" else 408
            leg.final_status = status
            leg.move(LegInput.FAILURE)
            self._log(INFO, f"call failed: {reason} ({status})", leg.id)
            self._events.append(CallFailed(leg.id, status, reason_phrase(status)))
            self._forget_leg(leg)
        elif out.kind is _Kind.REINVITE and out.leg is not None:
            out.leg.reinvite_out = False
            if not out.leg.ended:
                self._end_by_us(out.leg, "session refresh not answered", now)
        elif out.kind is _Kind.REGISTER:
            state = self._accounts[out.account.name]
            if state.registration is not None:
                self._registration_actions(state, state.registration.register_timeout(now, reason), now)
        elif out.kind is _Kind.PING:
            state = self._accounts[out.account.name]
            if state.registration is not None:
                self._registration_actions(state, state.registration.keepalive_failed(out.ping, now), now)

    # == authentication =============================================================================
    def _retry_with_auth(self, out: _Outgoing, response: SipResponse, now: float) -> bool:
        """Answer a 401/407 by re-sending the request with credentials (new branch, CSeq + 1)."""
        if out.auth_tries >= 2:
            return False
        if out.leg is not None and out.kind is _Kind.INVITE and not out.leg.can(LegInput.RETRY):
            return False  # cancelled meanwhile
        state = self._accounts[out.account.name]
        request = out.tx.request
        digest = state.digest_for(request.method)
        outcome = digest.on_challenge(response)
        if outcome is ChallengeOutcome.UNSUPPORTED or (outcome is ChallengeOutcome.REJECTED and out.auth_tries > 0):
            # A first REJECTED only means our pre-emptive credentials were stale (a restarted
            # registrar forgets its nonces): the new challenge is recorded, so try once more.
            self._log(WARNING, f"{request.method} rejected with {response.status}: credentials not accepted")
            return False
        if out.kind is _Kind.REGISTER:
            state.cseq += 1  # one CSeq space for the registration's Call-ID
            new_cseq = state.cseq
        else:
            new_cseq = request.cseq.seq + 1
        via = request.top_via.with_param("branch", self._branch())
        headers = request.headers.with_("Via", [str(via), *request.headers.get_all("Via")[1:]])
        headers = headers.with_("CSeq", f"{new_cseq} {request.method}")
        retry = digest.authorize(SipRequest(request.method, request.uri, headers, request.body))
        if out.leg is not None and out.kind is _Kind.INVITE:
            out.leg.invite = retry
            out.leg.move(LegInput.RETRY)
        self._log(DEBUG, f"{request.method} challenged ({response.status}); retrying with credentials")
        new = self._start_client(out.kind, retry, out.tx.destination, out.account, now, leg=out.leg, ping=out.ping)
        new.auth_tries = out.auth_tries + 1
        return True

    # == registrations ==============================================================================
    def _registration_actions(self, state: _AccountState, actions: list[RegistrationAction], now: float) -> None:
        for action in actions:
            if isinstance(action, SendRegister):
                self._send_register(state, action.expires, now)
            elif isinstance(action, SendKeepalive):
                self._send_ping(state, action.ping, now)
            elif isinstance(action, StateChanged):
                registered = action.new is RegState.REGISTERED
                state.registered = registered
                if action.new is RegState.RETRY_WAIT or action.old is action.new:
                    level = WARNING
                else:
                    level = DEBUG if action.routine else INFO
                self._log(level, f"account {action.account}: {action.old.value} → {action.new.value}: {action.detail}")
                self._events.append(RegistrationChanged(action.account, action.new.value, action.detail, registered))
        self._schedule(state)

    def _contact(self, account: AccountConfig, transport: str) -> NameAddr:
        params: tuple[tuple[str, str | None], ...] = (("transport", "tcp"),) if transport == "tcp" else ()
        uri = SipUri(
            scheme="sip",
            user=self._accounts[account.name].contact_user,
            host=_host_for_uri(self.settings.host),
            port=self.settings.port,
            params=params,
        )
        return NameAddr(uri=uri)

    def _send_register(self, state: _AccountState, expires: int, now: float) -> None:
        account = state.config
        aor = SipUri(scheme="sip", user=account.username, host=account.aor_domain)
        registrar = account.registrar.without_params("transport", "lr")
        registrar = attrs.evolve(registrar, user=None, password=None, headers=())
        state.cseq += 1
        destination = self._account_hop(account)[0]
        contact = self._contact(account, destination.transport).with_param("expires", str(expires))
        request, destination = self._out_of_dialog_request(
            state,
            "REGISTER",
            registrar,
            from_=NameAddr(uri=aor, params=(("tag", state.from_tag),)),
            to=NameAddr(uri=aor),
            call_id=state.call_id,
            cseq=state.cseq,
            extra=[("Contact", str(contact)), ("Expires", str(expires))],
            contact=False,
        )
        self._start_client(_Kind.REGISTER, request, destination, account, now)

    def _send_ping(self, state: _AccountState, ping: int, now: float) -> None:
        account = state.config
        uri = attrs.evolve(account.registrar.without_params("lr"), user=None, password=None, headers=())
        aor = SipUri(scheme="sip", user=account.username, host=account.aor_domain)
        request, destination = self._out_of_dialog_request(
            state,
            "OPTIONS",
            uri,
            from_=NameAddr(uri=aor, params=(("tag", self._token(6)),)),
            to=NameAddr(uri=uri),
            call_id=f"{self._token(12)}@{self.settings.host}",
            cseq=1,
            extra=[("Accept", "application/sdp")],
        )
        self._start_client(_Kind.PING, request, destination, account, now, ping=ping)

    def _granted_expires(self, state: _AccountState, response: SipResponse) -> int | None:
        """The expiry the registrar granted our binding (§10.2.4): our Contact's expires, else Expires."""
        ours = self._contact(state.config, "udp").uri
        assert ours is not None
        for contact in response.contacts:
            uri = contact.uri
            if uri is None or uri.user != ours.user or uri.port != ours.port:
                continue
            if uri.host_bare != _host_for_uri(self.settings.host).strip("[]"):
                continue
            value = contact.param("expires")
            if value and value.isdigit():
                return int(value)
        value = response.headers.get("Expires")
        if value and value.strip().isdigit():
            return int(value.strip())
        return None

    # == sending ====================================================================================
    def _start_client(
        self,
        kind: _Kind,
        request: SipRequest,
        destination: Endpoint,
        account: AccountConfig,
        now: float,
        *,
        leg: Leg | None = None,
        ping: int = 0,
    ) -> _Outgoing:
        tx: ClientInvite | ClientNonInvite
        if request.method == "INVITE":
            tx = ClientInvite(destination, self.settings.timers, request=request)
        else:
            tx = ClientNonInvite(destination, self.settings.timers, request=request)
        out = _Outgoing(kind, tx, account, leg=leg, ping=ping)
        self._client[tx.key] = out
        if leg is not None and isinstance(tx, ClientInvite) and kind is _Kind.INVITE:
            leg.client_tx = tx
        self._run_client(out, tx.start(now), now)
        return out

    def _run_client(self, out: _Outgoing, actions: list[TxAction], now: float) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                self._send(action.message, action.destination, out.leg)
            elif isinstance(action, Deliver):
                assert isinstance(action.message, SipResponse)
                self._client_response(out, action.message, now)
            elif isinstance(action, TimedOut):
                self._client_timeout(out, action.timer, now)
        if out.tx.terminated:
            self._client.pop(out.tx.key, None)
        else:
            self._schedule(out.tx)

    def _run_server(self, tx: ServerInvite | ServerNonInvite, actions: list[TxAction], now: float) -> None:
        for action in actions:
            if isinstance(action, Transmit):
                leg = self._server_legs.get(id(tx))
                self._send(action.message, action.destination, leg)
            elif isinstance(action, TimedOut):
                self.counters[f"server_timeout_{action.timer}"] += 1
        if tx.terminated:
            self._drop_server(tx)
        else:
            self._schedule(tx)

    def _send(self, message: SipMessage, destination: Endpoint, leg: Leg | None = None) -> None:
        self._events.append(SendMessage(message, destination, leg.id if leg else None))

    def _reply(
        self,
        tx: ServerInvite | ServerNonInvite,
        request: SipRequest,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        extra: list[tuple[str, str]] | None = None,
        contact: bool = False,
        to_tag: str | None = None,
    ) -> None:
        if to_tag is None and status > 100:
            to_tag = request.to.tag or self._token(6)
        response = self._response(request, status, reason=reason, to_tag=to_tag, extra=extra, contact=contact)
        self._run_server(tx, tx.respond(response, now), now)

    def _response(
        self,
        request: SipRequest,
        status: int,
        *,
        reason: str | None = None,
        to_tag: str | None = None,
        contact: bool = False,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> SipResponse:
        """A response to ``request`` (§8.2.6.2): Via, From, Call-ID, CSeq copied; To tagged."""
        h = request.headers
        headers: list[tuple[str, str]] = [("Via", v) for v in h.get_all("Via")]
        if request.method in ("INVITE",) and 100 < status < 300:
            headers += [("Record-Route", r) for r in h.get_all("Record-Route")]
        to = h.get("To") or ""
        if to_tag and status != 100 and not request.to.tag:
            to = str(request.to.with_tag(to_tag))
        headers += [("From", h.get("From") or ""), ("To", to), ("Call-ID", h.get("Call-ID") or "")]
        headers.append(("CSeq", h.get("CSeq") or ""))
        if contact:
            account = self._account_for(request)
            transport = "tcp" if request.top_via.transport == "TCP" else "udp"
            if account is not None:
                headers.append(("Contact", str(self._contact(account.config, transport))))
            else:
                headers.append(("Contact", f"<sip:{_host_for_uri(self.settings.host)}:{self.settings.port}>"))
        headers += self._common_headers(server=True)
        if status == 200 and request.method in ("INVITE", "UPDATE", "OPTIONS"):
            headers += [(k, v) for k, v in self._capabilities() if k != "Accept" or request.method == "OPTIONS"]
        headers += extra or []
        if body and content_type:
            headers.append(("Content-Type", content_type))
        return SipResponse(status, reason or reason_phrase(status), Headers.of(headers), body)

    def _common_headers(self, *, server: bool = False) -> list[tuple[str, str]]:
        return [("Server" if server else "User-Agent", self.settings.user_agent)]

    def _capabilities(self) -> list[tuple[str, str]]:
        return [
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("Accept", ", ".join(ACCEPT)),
            ("Supported", ", ".join(SUPPORTED)),
        ]

    def _via(self, transport: str) -> str:
        via = Via(
            transport=transport.upper(),
            host=_host_for_uri(self.settings.host),
            port=self.settings.port,
            params=(("branch", self._branch()), ("rport", None)),
        )
        return str(via)

    def _branch(self) -> str:
        return BRANCH_COOKIE + self._token(10)

    def _out_of_dialog_request(
        self,
        state: _AccountState,
        method: str,
        uri: SipUri,
        *,
        from_: NameAddr,
        to: NameAddr,
        call_id: str,
        cseq: int,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        contact: bool = True,
    ) -> tuple[SipRequest, Endpoint]:
        destination, routes = self._account_hop(state.config)
        headers: list[tuple[str, str]] = [("Via", self._via(destination.transport))]
        headers += [("Route", r) for r in routes]
        headers += [
            ("Max-Forwards", "70"),
            ("From", str(from_)),
            ("To", str(to)),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        if contact:
            headers.append(("Contact", str(self._contact(state.config, destination.transport))))
        headers += self._common_headers()
        if method in ("INVITE",):
            headers += [("Allow", ", ".join(ALLOWED_METHODS)), ("Supported", "replaces")]
        headers += extra or []
        if body and content_type:
            headers.append(("Content-Type", content_type))
        request = state.digest_for(method).authorize(SipRequest(method, str(uri), Headers.of(headers), body))
        return request, destination

    def _account_hop(self, account: AccountConfig) -> tuple[Endpoint, list[str]]:
        """Next hop for requests outside a dialog: the outbound proxy (with a Route) or the registrar."""
        if account.outbound_proxy is not None:
            proxy = account.outbound_proxy
            route = proxy.without_params("transport").with_param("lr")
            if proxy.transport == "tcp":
                route = route.with_param("transport", "tcp")
            routes = [f"<{attrs.evolve(route, user=None)}>"]
            return Endpoint(proxy.transport, proxy.host_bare, proxy.default_port()), routes
        registrar = account.registrar
        return Endpoint(registrar.transport, registrar.host_bare, registrar.default_port()), []

    def _dialog_destination(self, dialog: Dialog) -> Endpoint:
        hop = dialog.next_hop()
        return Endpoint(hop.transport, hop.host_bare, hop.default_port())

    def _target_uri(self, account: AccountConfig, target: str) -> SipUri:
        if target.startswith(("sip:", "sips:")):
            return SipUri.parse(target)
        if target.startswith("tel:"):
            target = target[4:]
        return SipUri(scheme="sip", user=target, host=account.aor_domain)

    def _send_cancel(self, leg: Leg, now: float) -> None:
        from sipcallhunt.sip.transaction import build_cancel

        cancel = build_cancel(leg.invite)
        self._log(INFO, "cancelling", leg.id)
        self._start_client(_Kind.CANCEL, cancel, leg.destination, leg.account, now, leg=leg)

    def _send_bye(self, leg: Leg, now: float) -> None:
        dialog = leg.dialog
        if dialog is None:
            return
        destination = self._dialog_destination(dialog)
        # No pre-emptive credentials inside a dialog: the proxies on the route set relay in-dialog
        # requests without checking (and without consuming) them, so the far end would receive
        # them; a BYE that is challenged is answered like any other request (_retry_with_auth).
        bye = dialog.new_request("BYE", via=self._via(destination.transport), extra=self._common_headers())
        dialog.terminate()
        self._log(INFO, "sending BYE", leg.id)
        self._start_client(_Kind.BYE, bye, destination, leg.account, now, leg=leg)

    def _end_by_us(self, leg: Leg, reason: str, now: float) -> None:
        """End a leg on our own initiative (timers, failed refresh): BYE if there is a dialog."""
        if leg.state in (LegState.CONFIRMED, LegState.ANSWERED):
            self._send_bye(leg, now)
        if leg.can(LegInput.END):
            leg.move(LegInput.END)
        self._events.append(CallEnded(leg.id, reason, by_remote=False))
        self._forget_leg(leg)

    # == 2xx retransmission (UAS, §13.3.1.4) and session timers (RFC 4028) ==========================
    def _send_2xx(self, leg: Leg, tx: ServerInvite, response: SipResponse, now: float) -> None:
        self._run_server(tx, tx.respond(response, now), now)
        leg.ok = response
        leg.ok_destination = tx.destination
        timers = self.settings.timers
        leg.ok_interval = timers.t1
        leg.ok_next = None if tx.destination.reliable else now + timers.t1
        leg.ok_give_up = now + timers.b
        self._schedule(leg)

    def _session_timer_answer(self, leg: Leg, request: SipRequest, now: float) -> list[tuple[str, str]]:
        value = request.headers.get("Session-Expires")
        if value is None:
            if leg.session_expires is not None:
                # A refresh without the header still refreshes the session (RFC 4028 §10).
                self._arm_session_timer(leg, leg.session_expires, leg.refresh_due is not None, now)
            return []
        interval = _session_expires(value)
        if interval is None:
            return []
        interval = max(interval, MIN_SE)
        peer_supports = "timer" in request.header_tokens("Supported")
        requested = _param(value, "refresher")
        refresher = requested if requested in ("uac", "uas") else ("uac" if peer_supports else "uas")
        if not peer_supports:
            refresher = "uas"
        we_refresh = refresher == "uas"  # we are the UAS of this request
        self._arm_session_timer(leg, interval, we_refresh, now)
        extra = [("Session-Expires", f"{interval};refresher={refresher}")]
        if peer_supports:
            extra.append(("Require", "timer"))
        return extra

    def _session_timer_from_response(self, leg: Leg, response: SipResponse, now: float) -> None:
        value = response.headers.get("Session-Expires")
        if value is None:
            return
        interval = _session_expires(value)
        if interval is None:
            return
        we_refresh = _param(value, "refresher") == "uac"  # we sent the request
        self._arm_session_timer(leg, interval, we_refresh, now)

    def _arm_session_timer(self, leg: Leg, interval: int, we_refresh: bool, now: float) -> None:
        leg.session_expires = interval
        # RFC 4028 §10: BYE if no refresh by expiry minus min(32 s, interval/3).
        leg.session_deadline = now + interval - min(32.0, interval / 3)
        leg.refresh_due = now + interval / 2 if we_refresh else None
        self._schedule(leg)

    def _refresh_session(self, leg: Leg, now: float) -> None:
        if leg.dialog is None or leg.state is not LegState.CONFIRMED or leg.reinvite_out:
            return
        destination = self._dialog_destination(leg.dialog)
        body = bytes(leg.local_sdp) if leg.local_sdp is not None else b""
        extra = [("Contact", str(self._contact(leg.account, destination.transport))), *self._common_headers()]
        extra.append(("Session-Expires", f"{leg.session_expires};refresher=uac"))
        extra.append(("Supported", "timer"))
        if body:
            extra.append(("Content-Type", "application/sdp"))
        request = leg.dialog.new_request("INVITE", via=self._via(destination.transport), extra=extra, body=body)
        leg.reinvite_out = True
        leg.offer = leg.local_sdp
        self._log(DEBUG, "session refresh (re-INVITE)", leg.id)
        self._start_client(_Kind.REINVITE, request, destination, leg.account, now, leg=leg)

    # == timers =====================================================================================
    def _push(self, deadline: float, owner: TimerOwner) -> None:
        self._heap_seq += 1
        heapq.heappush(self._heap, (deadline, self._heap_seq, owner))

    def _schedule(self, owner: TimerOwner) -> None:
        deadline = owner.next_deadline()
        if deadline is not None:
            self._push(deadline, owner)

    def _fire(self, owner: TimerOwner, now: float) -> None:
        if isinstance(owner, (ClientInvite, ClientNonInvite)):
            out = self._client.get(owner.key)
            if out is not None and out.tx is owner:
                self._run_client(out, owner.handle_timer(now), now)
        elif isinstance(owner, (ServerInvite, ServerNonInvite)):
            actions = owner.handle_timer(now)
            leg = self._server_legs.get(id(owner))
            self._run_server(owner, actions, now)
            if leg is not None and any(isinstance(a, TimedOut) and a.timer == "H" for a in actions):
                self._log(DEBUG, "no ACK for a failure response", leg.id)
        elif isinstance(owner, Leg):
            self._leg_timer(owner, now)
        elif owner.registration is not None:
            self._registration_actions(owner, owner.registration.handle_timer(now), now)

    def _leg_timer(self, leg: Leg, now: float) -> None:
        if leg.ok_give_up is not None and now >= leg.ok_give_up:
            # §13.3.1.4: no ACK within 64*T1 — the call is over; BYE it.
            leg.ok = None
            leg.ok_next = leg.ok_give_up = None
            self._log(WARNING, "no ACK for our 2xx: ending the call", leg.id)
            if leg.state is LegState.ANSWERED:
                self._end_by_us(leg, "no ACK received", now)
            elif leg.state is LegState.TERMINATED and leg.bye_after_ack:
                leg.bye_after_ack = False
                self._send_bye(leg, now)
                self._forget_leg(leg)
            return
        if leg.ok_next is not None and now >= leg.ok_next and leg.ok is not None and leg.ok_destination is not None:
            self._send(leg.ok, leg.ok_destination, leg)
            leg.ok_interval = min(leg.ok_interval * 2, self.settings.timers.t2)
            leg.ok_next = now + leg.ok_interval
        if leg.refresh_due is not None and now >= leg.refresh_due:
            leg.refresh_due = None
            self._refresh_session(leg, now)
        if leg.session_deadline is not None and now >= leg.session_deadline:
            leg.session_deadline = None
            if not leg.ended:
                self._log(WARNING, "session timer expired without refresh", leg.id)
                self._end_by_us(leg, "session timer expired", now)

    # == helpers ====================================================================================
    def _forget_leg(self, leg: Leg) -> None:
        """Drop a finished leg, unless it still owes an ACK-triggered BYE."""
        if leg.bye_after_ack or leg.ok is not None:
            return
        self._legs.pop(leg.id, None)
        if leg.dialog is not None:
            self._dialogs.pop((leg.dialog.call_id, leg.dialog.local_tag, leg.dialog.remote_tag), None)
        leg.session_deadline = leg.refresh_due = None

    def _accept_answer(self, leg: Leg, body: bytes, now: float, *, early: bool = False) -> None:
        assert leg.offer is not None
        answer = sdpmod.parse_sdp(body)
        media = sdpmod.accept_answer(leg.offer, answer)
        if not early:
            leg.offer = None
        leg.media = media
        self._events.append(MediaUpdate(leg.id, media))

    def _offer_in(self, request: SipRequest) -> sdpmod.SessionDescription | None:
        if not request.body:
            return None
        content_type = request.content_type
        if content_type != "application/sdp":
            raise SdpError(f"unsupported body type {content_type}", status=415, reason="Unsupported Media Type")
        return sdpmod.parse_sdp(request.body)

    def _answer_or_offer(self, leg: Leg, offer: sdpmod.SessionDescription | None) -> bytes:
        """Our SDP for a 2xx: the answer to ``offer``, or an offer when the request had none."""
        media = leg.local_media
        assert media is not None
        codecs = media.codecs
        if leg.media is not None and leg.media.codec in codecs:
            codecs = (leg.media.codec, *[c for c in codecs if c != leg.media.codec])
        if offer is None:
            sdp = sdpmod.build_offer(
                address=media.address,
                port=media.port,
                session_id=leg.sdp_session_id,
                session_version=self._next_version(leg, None),
                codecs=codecs,
            )
            leg.offer = sdp
        else:
            sdp, negotiated = sdpmod.answer_offer(
                offer,
                address=media.address,
                port=media.port,
                session_id=leg.sdp_session_id,
                session_version=leg.sdp_version,
                codecs=codecs,
            )
            version = self._next_version(leg, sdp)  # moves leg.sdp_version on if the answer changed
            sdp = attrs.evolve(sdp, origin=attrs.evolve(sdp.origin, session_version=version))
            leg.media = negotiated
            self._events.append(MediaUpdate(leg.id, negotiated))
        leg.local_sdp = sdp
        return bytes(sdp)

    def _next_version(self, leg: Leg, candidate: sdpmod.SessionDescription | None) -> int:
        """RFC 3264 §8: the version goes up only when our description changes."""
        if leg.local_sdp is None:
            return leg.sdp_version
        if candidate is not None and _without_origin(candidate) == _without_origin(leg.local_sdp):
            return leg.sdp_version
        leg.sdp_version += 1
        return leg.sdp_version

    def _account_for(self, request: SipRequest) -> _AccountState | None:
        user = request.request_uri.user
        candidates = [s for s in self._accounts.values() if s.contact_user == user]
        if len(candidates) == 1:
            return candidates[0]
        to_uri = request.to.uri
        for state in candidates or self._accounts.values():
            if (
                to_uri is not None
                and to_uri.user == state.config.username
                and (not candidates or to_uri.host == state.config.aor_domain)
            ):
                return state
        return candidates[0] if candidates else None

    def _response_destination(self, request: SipRequest, source: Endpoint) -> Endpoint:
        """Where responses go (RFC 3261 §18.2.2, RFC 3581): the connection, or received/rport."""
        if source.reliable:
            return source
        via = request.top_via
        if via.param("rport") is not None:
            return source
        return Endpoint(source.transport, source.host, via.port or 5060)

    def _server_key(self, request: SipRequest, method: str | None = None) -> tuple[object, ...]:
        via = request.top_via
        method = method or ("INVITE" if request.method == "ACK" else request.method)
        branch = via.branch or ""
        if branch.startswith(BRANCH_COOKIE):
            return (branch, via.host.lower(), via.port or 5060, method)
        # RFC 2543 peers (§17.2.3): match on the request's identity instead.
        return ("2543", request.call_id, request.from_.tag, request.cseq.seq, method, str(via))

    def _parse_failure(
        self, exc: SipParseError, source: Endpoint, now: float, message: SipMessage | None = None
    ) -> None:
        self.counters["malformed"] += 1
        partial = exc.partial if exc.partial is not None else message
        if isinstance(partial, SipRequest) and partial.method != "ACK":
            try:
                response = self._bare_response(partial, exc.status, exc.reason)
            except SipParseError:
                response = None
            if response is not None:
                destination = source
                self._log_refusal(INFO, f"{exc.status} to malformed {partial.method} from {source}: {exc}", source, now)
                self._events.append(SendMessage(response, destination))
                return
        self._log(DEBUG, f"dropped malformed message from {source}: {exc}")

    def _bare_response(self, request: SipRequest, status: int, reason: str) -> SipResponse | None:
        """A stateless error response built from whatever headers the malformed request had."""
        h = request.headers
        vias = h.get_all("Via")
        required = [h.get(name) for name in ("From", "To", "Call-ID", "CSeq")]
        if not vias or any(v is None for v in required):
            return None
        headers = [("Via", v) for v in vias]
        headers += [("From", required[0] or ""), ("To", required[1] or ""), ("Call-ID", required[2] or "")]
        headers += [("CSeq", required[3] or ""), *self._common_headers(server=True)]
        return SipResponse(status, reason, Headers.of(headers))

    def _log(self, level: int, message: str, leg: str | None = None) -> None:
        self._events.append(LogLine(level, message, leg))

    def _log_refusal(self, level: int, message: str, source: Endpoint, now: float, leg: str | None = None) -> None:
        """Log a refused request, :data:`REFUSALS_LOGGED` per source address and window at most."""
        if now - self._refusal_window >= REFUSAL_WINDOW:
            self._refusal_window = now
            self._refusals.clear()
        count = self._refusals.get(source.host, 0) + 1
        self._refusals[source.host] = count
        if count <= REFUSALS_LOGGED:
            self._log(level, message, leg)
            return
        self.counters["refusals_not_logged"] += 1
        if count == REFUSALS_LOGGED + 1:
            self._log(
                WARNING,
                f"more than {REFUSALS_LOGGED} refused requests from {source.host} within {REFUSAL_WINDOW:g} s: "
                "not logging the rest of this minute's (they are still counted)",
            )


_RESPONSE_HANDLERS: dict[_Kind, Callable[[UserAgent, _Outgoing, SipResponse, float], None]] = {
    _Kind.INVITE: UserAgent._invite_response,
    _Kind.REINVITE: UserAgent._reinvite_response,
    _Kind.CANCEL: UserAgent._cancel_response,
    _Kind.BYE: UserAgent._bye_response,
    _Kind.REGISTER: UserAgent._register_response,
    _Kind.PING: UserAgent._ping_response,
    _Kind.OTHER: UserAgent._other_response,
}


def _request_identity(request: SipRequest) -> tuple[object, ...]:
    """What makes two requests the same one (RFC 3261 §8.2.2.2): method, Call-ID, From tag, CSeq."""
    return (request.method, request.call_id, request.from_.tag, request.cseq.seq)


def _host_for_uri(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _session_expires(value: str) -> int | None:
    head = value.split(";", 1)[0].strip()
    return int(head) if head.isdigit() else None


def _param(value: str, name: str) -> str | None:
    for part in value.split(";")[1:]:
        key, _, val = part.partition("=")
        if key.strip().lower() == name:
            return val.strip().lower()
    return None


def _without_origin(sdp: sdpmod.SessionDescription) -> bytes:
    lines = [line for line in bytes(sdp).split(b"\r\n") if not line.startswith(b"o=")]
    return b"\r\n".join(lines)
