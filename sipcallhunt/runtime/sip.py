"""The asyncio shell around the user-agent core: UDP and TCP sockets, one timer, logging.

:class:`SipEndpoint` owns the listening sockets (UDP and a TCP server on the same port), the TCP
connections (inbound and outbound, each with its own :class:`StreamFramer`), and the single
``loop.call_at`` timer of the :class:`~sipcallhunt.sip.useragent.UserAgent`.  After every input
it *pumps*: drains the core's events, sends what must be sent, logs what must be logged and
hands everything else to the application's ``on_event`` callback.  The application calls back
into the core through :meth:`SipEndpoint.call` so that the pump runs afterwards.

Guards against hostile peers: datagrams larger than ``MAX_DATAGRAM`` are dropped, a TCP peer
must finish a message within ``TCP_MESSAGE_TIMEOUT`` seconds (slow-loris; a new connection its
first one) and idle connections close after ``TCP_IDLE_TIMEOUT``; the number of TCP connections
is capped, in all and per untrusted address.  Each is counted.
"""

from __future__ import annotations

__all__ = ["SipEndpoint", "is_ip", "redact_dtmf"]

import asyncio
import collections
import functools
import ipaddress
import logging
import re
import socket
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from sipcallhunt.errors import SipParseError
from sipcallhunt.sip.events import TRACE, LogLine, SendMessage, UaEvent
from sipcallhunt.sip.message import KeepAlive, StreamFramer
from sipcallhunt.sip.transaction import Endpoint
from sipcallhunt.sip.useragent import UserAgent

log = logging.getLogger("sipcallhunt.sip")

MAX_DATAGRAM: Final = 16384
"""Larger datagrams are dropped unparsed (counted ``oversized``).  Any UDP datagram fits 64 KiB,
so that limit would never apply; no SIP peer sends 16 KiB over UDP (RFC 3261 §18.1.1 moves a
request of more than 1300 bytes to TCP where it can), only a flood of forged ones costs parsing."""
TCP_MESSAGE_TIMEOUT: Final = 10.0
TCP_IDLE_TIMEOUT: Final = 300.0
TCP_MAX_CONNECTIONS: Final = 512
TCP_MAX_PER_HOST: Final = 32
"""Connections from one address that is not a trusted peer (one host cannot take every slot)."""
TCP_CONNECT_TIMEOUT: Final = 5.0

T = TypeVar("T")


@functools.lru_cache(maxsize=1024)
def is_ip(host: str) -> bool:
    """Whether ``host`` is an IP address (not a name to resolve)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_DTMF_SIGNAL = re.compile(r"(?im)^(signal[ \t]*=[ \t]*)\S+")
_DTMF_TYPE = re.compile(r"(?im)^(?:content-type|c)[ \t]*:[ \t]*application/dtmf[ \t\r]*(?:;|$)")


def redact_dtmf(text: str) -> str:
    """A SIP message for the TRACE log with the keys of a SIP INFO DTMF body replaced by ``*``:
    a caller's PIN never reaches the log, whatever the log level."""
    if "application/dtmf" not in text.lower():
        return text
    text = _DTMF_SIGNAL.sub(r"\1*", text)
    head, sep, body = text.partition("\r\n\r\n")
    if sep and body.strip() and _DTMF_TYPE.search(head):
        body = "*"
    return head + sep + body


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipEndpoint) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.owner._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.owner.counters["udp_errors"] += 1
        log.debug("UDP error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    """One TCP connection, inbound or outbound, framed by Content-Length."""

    def __init__(self, owner: SipEndpoint, peer: Endpoint | None = None) -> None:
        self.owner = owner
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer()
        self.pending: list[bytes] = []
        self.last_activity = 0.0
        self.partial_since: float | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not necessarily an asyncio.Transport subclass: uvloop's
        # TCPTransport implements the same interface without inheriting from it.
        self.transport = cast(asyncio.Transport, transport)
        inbound = self.peer is None
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Endpoint("tcp", host, port)
        self.last_activity = self.owner.loop.time()
        if inbound:  # a peer that connects owes a message within TCP_MESSAGE_TIMEOUT, as a slow one does
            self.partial_since = self.last_activity
        self.owner._tcp_opened(self)
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        now = self.owner.loop.time()
        self.last_activity = now
        try:
            items = self.framer.feed(data)
        except SipParseError as exc:
            self.owner.counters["tcp_framing_errors"] += 1
            log.info("closing TCP connection from %s: %s", self.peer, exc)
            self.close()
            return
        self.partial_since = (self.partial_since or now) if self.framer.pending else None
        assert self.peer is not None
        for item in items:
            if isinstance(item, KeepAlive):
                # RFC 5626 §3.5.1: answer a double-CRLF ping with a single CRLF.
                self.write(b"\r\n")
                continue
            self.owner._message(item, self.peer)
        if self.framer.error is not None:  # good messages came before the garbage in this read
            self.owner.counters["tcp_framing_errors"] += 1
            log.info("closing TCP connection from %s: %s", self.peer, self.framer.error)
            self.close()

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        elif not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.framer.pending and not self.closed:  # the peer left in the middle of a message
            self.owner.counters["tcp_truncated"] += 1
            log.info("TCP connection from %s closed with %d bytes of a message", self.peer, self.framer.pending)
        self.closed = True
        self.owner._tcp_closed(self)


class SipEndpoint:
    """Sockets + timer for one :class:`UserAgent`; see the module docstring."""

    def __init__(
        self,
        ua: UserAgent,
        *,
        host: str,
        port: int,
        transports: tuple[str, ...] = ("udp", "tcp"),
        on_event: Callable[[UaEvent], None],
    ) -> None:
        self.ua = ua
        self.host = host
        self.port = port
        self.transports = transports
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()
        self.counters: collections.Counter[str] = collections.Counter()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp: dict[Endpoint, _TcpConnection] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False
        self._resolved: dict[str, str] = {}
        self._housekeeping: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.leg_labels: dict[str, str] = {}
        """Leg id → the id shown in log lines (the application's call id)."""

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        if "udp" in self.transports:
            self._udp, _ = await self.loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.host, self.port), family=family
            )
            if self.port == 0:
                self.port = self._udp.get_extra_info("sockname")[1]
        if "tcp" in self.transports:
            self._tcp_server = await self.loop.create_server(
                lambda: _TcpConnection(self), host=self.host, port=self.port, family=family, reuse_address=True
            )
        self._housekeeping = self.loop.call_later(1.0, self._tcp_housekeeping)
        log.info("listening for SIP on %s:%d (%s)", self.host, self.port, "+".join(self.transports))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._tcp.values()):
            conn.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
            await self._tcp_server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    # -- the core ---------------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, now, **kwargs)`` on the core, then pump its events."""
        result = fn(*args, self.loop.time(), **kwargs)
        self.pump()
        return result

    def pump(self) -> None:
        if self._pumping:
            return  # the outer pump drains what a nested call produced
        self._pumping = True
        try:
            while True:
                events = self.ua.drain()
                if not events:
                    break
                for event in events:
                    if isinstance(event, SendMessage):
                        self._send(event)
                    elif isinstance(event, LogLine):
                        label = self.leg_labels.get(event.leg, event.leg) if event.leg else "-"
                        log.log(event.level, "%s", event.message, extra={"call_id": label})
                    else:
                        try:
                            self.on_event(event)
                        except Exception:  # one call's failure must not stop the SIP stack
                            self.counters["event_handler_errors"] += 1
                            log.exception("error while handling %s", type(event).__name__)
        finally:
            self._pumping = False
        self._rearm()

    def _rearm(self) -> None:
        deadline = self.ua.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.ua.handle_timer(self.loop.time())
        self.pump()

    # -- input ------------------------------------------------------------------------------------
    def _datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.counters["udp_in"] += 1
        if len(data) > MAX_DATAGRAM:
            self.counters["oversized"] += 1
            log.debug("dropped a %d-byte datagram from %s:%s", len(data), addr[0], addr[1])
            return
        source = Endpoint("udp", addr[0], addr[1])
        if log.isEnabledFor(TRACE):
            log.log(TRACE, "← %s\n%s", source, redact_dtmf(data.decode("utf-8", "replace")))
        self.ua.receive_datagram(data, source, self.loop.time())
        self.pump()

    def _message(self, message: Any, source: Endpoint) -> None:
        self.counters["tcp_in"] += 1
        if log.isEnabledFor(TRACE):
            log.log(TRACE, "← %s\n%s", source, redact_dtmf(bytes(message).decode("utf-8", "replace")))
        self.ua.receive_message(message, source, self.loop.time())
        self.pump()

    # -- output -----------------------------------------------------------------------------------
    def _send(self, event: SendMessage) -> None:
        destination = event.destination
        if not is_ip(destination.host):
            resolved = self._resolved.get(destination.host)
            if resolved is None:
                self._spawn(self._resolve_and_send(event))
                return
            destination = Endpoint(destination.transport, resolved, destination.port)
        data = bytes(event.message)
        if log.isEnabledFor(TRACE):
            log.log(
                TRACE,
                "→ %s\n%s",
                destination,
                redact_dtmf(data.decode("utf-8", "replace")),
                extra={"call_id": self.leg_labels.get(event.leg, event.leg) if event.leg else "-"},
            )
        if destination.transport == "udp":
            if self._udp is None:
                self._failed(event.destination)
                return
            try:
                self._udp.sendto(data, (destination.host, destination.port))
                self.counters["udp_out"] += 1
            except OSError as exc:
                log.warning("cannot send to %s: %s", destination, exc)
                self._failed(event.destination)
            return
        conn = self._tcp.get(destination)
        if conn is None or conn.closed:
            conn = self._connect(destination, event.destination)
            if conn is None:
                return
        conn.write(data)
        self.counters["tcp_out"] += 1

    def _connect(self, destination: Endpoint, original: Endpoint) -> _TcpConnection | None:
        if len(self._tcp) >= TCP_MAX_CONNECTIONS:
            log.warning("too many TCP connections; cannot reach %s", destination)
            self._failed(original)
            return None
        conn = _TcpConnection(self, destination)
        self._tcp[destination] = conn

        # Connect from the address we listen on (and advertise in Via and Contact), not from
        # whatever address the kernel would pick for the route (RFC 3261 §18.1.1).
        local_addr = None
        if self.host not in ("0.0.0.0", "::") and (":" in self.host) == (":" in destination.host):
            local_addr = (self.host, 0)

        async def connect() -> None:
            try:
                await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: conn, destination.host, destination.port, local_addr=local_addr
                    ),
                    TCP_CONNECT_TIMEOUT,
                )
            except (OSError, TimeoutError) as exc:
                log.warning("TCP connection to %s failed: %s", destination, exc)
                self._tcp.pop(destination, None)
                conn.closed = True
                self._failed(original)

        self._spawn(connect())
        return conn

    async def _resolve_and_send(self, event: SendMessage) -> None:
        host = event.destination.host
        try:
            infos = await self.loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("cannot resolve %s: %s", host, exc)
            self._failed(event.destination)
            return
        self._resolved[host] = str(infos[0][4][0])
        self._send(event)

    def _failed(self, destination: Endpoint) -> None:
        self.ua.transport_error(destination, self.loop.time())
        self.pump()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- TCP bookkeeping ----------------------------------------------------------------------------
    def _tcp_opened(self, conn: _TcpConnection) -> None:
        peer = conn.peer
        assert peer is not None
        if peer not in self._tcp:
            full = len(self._tcp) >= TCP_MAX_CONNECTIONS
            if not full and peer.host not in self.ua.settings.trusted_hosts:
                full = sum(1 for other in self._tcp if other.host == peer.host) >= TCP_MAX_PER_HOST
            if full:
                self.counters["tcp_refused"] += 1
                log.info("refusing TCP connection from %s: too many connections", peer)
                conn.close()
                return
        self._tcp[peer] = conn

    def _tcp_closed(self, conn: _TcpConnection) -> None:
        if conn.peer is not None and self._tcp.get(conn.peer) is conn:
            del self._tcp[conn.peer]

    def _tcp_housekeeping(self) -> None:
        now = self.loop.time()
        for conn in list(self._tcp.values()):
            if conn.partial_since is not None and now - conn.partial_since > TCP_MESSAGE_TIMEOUT:
                self.counters["tcp_slow_peers"] += 1
                log.info("closing TCP connection from %s: message not completed in time", conn.peer)
                conn.close()
            elif now - conn.last_activity > TCP_IDLE_TIMEOUT:
                conn.close()
        self._housekeeping = self.loop.call_later(1.0, self._tcp_housekeeping)

    @property
    def tcp_connections(self) -> int:
        return len(self._tcp)
