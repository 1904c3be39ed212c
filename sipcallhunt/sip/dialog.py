"""SIP dialogs (RFC 3261 §12): identity, sequence numbers, route set, remote target.

Theory of operation
-------------------
A dialog is created by a 2xx (or a tagged 1xx: early dialog) to an INVITE, on either side:
:meth:`Dialog.as_uas` from the INVITE we answer, :meth:`Dialog.as_uac` from the response to our
INVITE.  It then builds every request inside the dialog (:meth:`Dialog.new_request`: Request-URI
from the remote target or the first strict route, Route headers from the route set, local CSeq
incremented) and checks every request that arrives in it (:meth:`Dialog.receive_request`: a
lower CSeq than the last one is out of order → 500, §12.2.2; target refresh requests update the
remote target, §12.2.2).

The dialog state (early → confirmed → terminated) lives in the table ``_TRANSITIONS``.
"""

from __future__ import annotations

__all__ = ["Dialog", "DialogId", "DialogState"]

import enum

import attrs

from sipcallhunt.errors import LocalProtocolError, RemoteProtocolError
from sipcallhunt.sip.message import Headers, SipRequest, SipResponse
from sipcallhunt.sip.uri import NameAddr, SipUri


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class _Input(enum.Enum):
    CONFIRM = "confirm"  # 2xx sent/received
    TERMINATE = "terminate"  # BYE, non-2xx to an early dialog's INVITE, timeouts


_TRANSITIONS: dict[tuple[DialogState, _Input], DialogState] = {
    (DialogState.EARLY, _Input.CONFIRM): DialogState.CONFIRMED,
    (DialogState.CONFIRMED, _Input.CONFIRM): DialogState.CONFIRMED,  # 2xx retransmission
    (DialogState.EARLY, _Input.TERMINATE): DialogState.TERMINATED,
    (DialogState.CONFIRMED, _Input.TERMINATE): DialogState.TERMINATED,
    (DialogState.TERMINATED, _Input.TERMINATE): DialogState.TERMINATED,
}


@attrs.frozen
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


@attrs.define(eq=False)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_party: NameAddr  # our From (UAC) / To (UAS), without tag
    remote_party: NameAddr
    remote_target: SipUri
    route_set: tuple[NameAddr, ...]
    local_seq: int
    remote_seq: int | None
    state: DialogState = DialogState.EARLY

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    def _move(self, event: _Input) -> None:
        next_state = _TRANSITIONS.get((self.state, event))
        if next_state is None:
            raise LocalProtocolError(f"dialog {self.call_id}: {event.value} in state {self.state.value}")
        self.state = next_state

    def confirm(self) -> None:
        self._move(_Input.CONFIRM)

    def terminate(self) -> None:
        self._move(_Input.TERMINATE)

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def as_uas(cls, invite: SipRequest, local_tag: str) -> Dialog:
        """The dialog our response to ``invite`` creates (§12.1.1)."""
        contacts = invite.contacts
        if not contacts or contacts[0].uri is None:
            raise RemoteProtocolError("INVITE without a usable Contact", status=400)
        from_ = invite.from_
        if not from_.tag:
            raise RemoteProtocolError("INVITE without a From tag", status=400)
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=from_.tag,
            local_party=_untagged(invite.to),
            remote_party=_untagged(from_),
            remote_target=contacts[0].uri,
            route_set=tuple(invite.record_routes),
            local_seq=0,
            remote_seq=invite.cseq.seq,
        )

    @classmethod
    def as_uac(cls, invite: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a tagged 1xx or a 2xx to our ``invite`` creates (§12.1.2)."""
        to = response.to
        if not to.tag:
            raise RemoteProtocolError("response without a To tag cannot create a dialog")
        contacts = response.contacts
        target = contacts[0].uri if contacts and contacts[0].uri is not None else invite.request_uri
        from_ = invite.from_
        return cls(
            call_id=invite.call_id,
            local_tag=from_.tag or "",
            remote_tag=to.tag,
            local_party=_untagged(from_),
            remote_party=_untagged(to),
            remote_target=target,
            route_set=tuple(reversed(response.record_routes)),
            local_seq=invite.cseq.seq,
            remote_seq=None,
        )

    def update_from_response(self, response: SipResponse) -> None:
        """A 2xx to our INVITE (after an early dialog) sets the route set and target anew (§12.1.2)."""
        contacts = response.contacts
        if contacts and contacts[0].uri is not None:
            self.remote_target = contacts[0].uri
        if response.status >= 200:
            self.route_set = tuple(reversed(response.record_routes))

    # -- requests -------------------------------------------------------------------------------
    def next_hop(self) -> SipUri:
        """Where an in-dialog request goes first: the first route, or the remote target (§12.2.1.1)."""
        if self.route_set and self.route_set[0].uri is not None:
            return self.route_set[0].uri
        return self.remote_target

    def new_request(
        self,
        method: str,
        *,
        via: str,
        extra: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        cseq: int | None = None,
    ) -> SipRequest:
        """Build a request inside the dialog (§12.2.1.1).  ACK/CANCEL pass their INVITE's ``cseq``."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        routes = [r for r in self.route_set if r.uri is not None]
        uri: SipUri = self.remote_target
        route_values = [str(r) for r in routes]
        if routes and routes[0].uri is not None and routes[0].uri.param("lr") is None:
            # Strict routing (RFC 2543): first route becomes the Request-URI, target goes last.
            uri = routes[0].uri
            route_values = [str(r) for r in routes[1:]] + [f"<{self.remote_target}>"]
        headers: list[tuple[str, str]] = [("Via", via)]
        headers += [("Route", r) for r in route_values]
        headers += [
            ("Max-Forwards", "70"),
            ("From", str(self.local_party.with_tag(self.local_tag))),
            ("To", str(self.remote_party.with_tag(self.remote_tag))),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        headers += extra or []
        return SipRequest(method, str(uri), Headers(tuple(headers)), body)

    def receive_request(self, request: SipRequest) -> None:
        """Check and absorb a request that arrived in this dialog (§12.2.2).

        Raises RemoteProtocolError(500) for an out-of-order CSeq.  ACK and CANCEL carry the
        INVITE's number and are not checked.
        """
        if request.method in ("ACK", "CANCEL"):
            return
        seq = request.cseq.seq
        if self.remote_seq is not None and seq <= self.remote_seq:
            raise RemoteProtocolError(
                f"CSeq {seq} is not above {self.remote_seq}", status=500, reason="Out of Order CSeq"
            )
        self.remote_seq = seq
        if request.method in TARGET_REFRESH_METHODS:
            contacts = request.contacts
            if contacts and contacts[0].uri is not None:
                self.remote_target = contacts[0].uri


def _untagged(addr: NameAddr) -> NameAddr:
    return attrs.evolve(addr, params=tuple((k, v) for k, v in addr.params if k.lower() != "tag"))
