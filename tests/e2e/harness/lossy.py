"""A lossy UDP forwarder: the daemon behind a NAT whose SIP path drops datagrams (no netem here).

The daemon sits on its own address (``inside``) and tells the PBX that it is at ``public``
(``sip.public_address``); the forwarder owns ``public`` and relays between the two sides:

* SIP, with loss: datagrams from the inside host to any of the ``sip_ports`` on ``public`` go to the
  PBX (``outside``), sent from ``public:sip_ports[0]`` (the port in the daemon's Via and Contact);
  datagrams from anyone else go to ``inside``, sent from the port they arrived on.
  The daemon reaches the forwarder as its outbound proxy; the PBX reaches it through the Contact.
  Answers to the PBX's requests come back to ``public`` at the port of the PBX's Via (no rport),
  so that port must be one of ``sip_ports`` too.
* RTP, without loss: each of ``media_ports`` on ``public`` is a full-cone NAT port: from outside to
  the same port on the inside host; from the inside host back to whoever last sent to that port.

Loss is deterministic: each direction has its own ``random.Random(seed)`` and drops the datagram
when it draws below ``loss``.  Per direction it counts datagrams forwarded and dropped, and
retransmissions: datagrams whose bytes equal an earlier one's in that direction.

    with LossyForwarder(public_ip, inside=(daemon_ip, sip_port), outside=pbx.address,
                        sip_ports=(sip_port, pbx.port), media_ports=range(40000, 40020), loss=0.05) as fwd:
        ...
        fwd.stats[TO_INSIDE].dropped, fwd.stats[TO_OUTSIDE].retransmissions

Not carried: the daemon's requests inside a dialog (ACK, BYE, re-INVITE) go to the PBX's
Record-Route, i.e. straight to the PBX, and their answers come back straight too.
"""

from __future__ import annotations

__all__ = ["TO_INSIDE", "TO_OUTSIDE", "DirectionStats", "LossyForwarder", "Passage"]

import contextlib
import hashlib
import random
import selectors
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Final

import attrs

TO_INSIDE: Final = "to_inside"
"""The direction PBX → daemon."""
TO_OUTSIDE: Final = "to_outside"
"""The direction daemon → PBX."""

Address = tuple[str, int]


@attrs.define
class DirectionStats:
    """SIP datagrams in one direction."""

    forwarded: int = 0
    dropped: int = 0
    retransmissions: int = 0  # same bytes as an earlier datagram (dropped or not)


@attrs.frozen
class Passage:
    """One SIP datagram through the forwarder: its direction, first line and fate."""

    time: float
    direction: str
    first_line: str
    dropped: bool
    retransmission: bool
    digest: bytes  # of the whole datagram: equal for a retransmission


class LossyForwarder:
    """See the module docstring; a thread relays until :meth:`close`."""

    def __init__(
        self,
        public: str,
        *,
        inside: Address,
        outside: Address,
        sip_ports: Iterable[int],
        media_ports: Iterable[int] = (),
        loss: float = 0.05,
        seed: int = 1,
    ) -> None:
        self.public = public
        self.inside = inside
        self.outside = outside
        self.loss = loss
        self.stats: dict[str, DirectionStats] = {TO_INSIDE: DirectionStats(), TO_OUTSIDE: DirectionStats()}
        self.passages: list[Passage] = []
        self.media_packets = 0
        self._rng = {TO_INSIDE: random.Random(seed), TO_OUTSIDE: random.Random(seed + 1)}
        self._seen: dict[str, set[bytes]] = {TO_INSIDE: set(), TO_OUTSIDE: set()}
        self._lock = threading.Lock()
        ports = list(dict.fromkeys(sip_ports))
        if not ports:
            raise ValueError("sip_ports must name at least one port")
        self._sip_ports = ports
        self._media_peers: dict[int, Address] = {}
        self._selector = selectors.DefaultSelector()
        self._sockets: dict[tuple[str, int], socket.socket] = {}
        try:
            for port in ports:
                self._bind("sip", port)
            for port in media_ports:
                if port in ports:
                    raise ValueError(f"port {port} is both a SIP and a media port")
                self._bind("media", port)
        except BaseException:
            self._close_sockets()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lossy-forwarder", daemon=True)

    @property
    def sip_port(self) -> int:
        """The port in the daemon's Via and Contact (``sip_ports[0]``)."""
        return self._sip_ports[0]

    def _bind(self, kind: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.public, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"the forwarder cannot bind {self.public}:{port}: {exc}") from None
        sock.setblocking(False)
        self._sockets[(kind, port)] = sock
        self._selector.register(sock, selectors.EVENT_READ, (kind, port))

    def start(self) -> LossyForwarder:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop relaying and close the sockets (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._selector.close()

    def __enter__(self) -> LossyForwarder:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- reading the counters -----------------------------------------------------------------

    def snapshot(self) -> dict[str, DirectionStats]:
        """A copy of the counters, per direction."""
        with self._lock:
            return {k: attrs.evolve(v) for k, v in self.stats.items()}

    def dropped(self, direction: str | None = None) -> list[Passage]:
        """The SIP datagrams dropped (in ``direction``, or both)."""
        with self._lock:
            return [p for p in self.passages if p.dropped and direction in (None, p.direction)]

    # --- the relay thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                kind, port = key.data
                sock = self._sockets.get((kind, port))
                if sock is None:
                    continue
                while True:
                    try:
                        data, source = sock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # e.g. ICMP port unreachable from an earlier send
                        continue
                    if kind == "sip":
                        self._sip(port, data, (source[0], source[1]))
                    else:
                        self._media(port, data, (source[0], source[1]))

    def _sip(self, port: int, data: bytes, source: Address) -> None:
        from_inside = source[0] == self.inside[0]
        direction = TO_OUTSIDE if from_inside else TO_INSIDE
        digest = hashlib.blake2b(data, digest_size=16).digest()
        with self._lock:
            stats = self.stats[direction]
            retransmission = digest in self._seen[direction]
            self._seen[direction].add(digest)
            if retransmission:
                stats.retransmissions += 1
            drop = self._rng[direction].random() < self.loss
            first_line = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            self.passages.append(Passage(time.monotonic(), direction, first_line, drop, retransmission, digest))
            if drop:
                stats.dropped += 1
                return
            stats.forwarded += 1
        if from_inside:
            self._send(self._sockets[("sip", self.sip_port)], data, self.outside)
        else:
            self._send(self._sockets[("sip", port)], data, self.inside)

    def _media(self, port: int, data: bytes, source: Address) -> None:
        sock = self._sockets[("media", port)]
        if source[0] == self.inside[0]:
            peer = self._media_peers.get(port)
            if peer is None:
                return
        else:
            self._media_peers[port] = source
            peer = (self.inside[0], port)
        self.media_packets += 1
        self._send(sock, data, peer)

    @staticmethod
    def _send(sock: socket.socket, data: bytes, destination: Address) -> None:
        with contextlib.suppress(OSError):  # a full buffer or an ICMP error: lost, as on a network
            sock.sendto(data, destination)
