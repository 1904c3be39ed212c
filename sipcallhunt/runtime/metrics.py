"""The metrics endpoint: ``GET /metrics`` in the Prometheus text format, ``GET /healthz``.

Off unless ``[metrics] listen = "host:port"`` is configured.  Every scrape reads the daemon's live
counters — the SIP shell's (datagrams, TCP framing errors, slow peers, …), the user-agent core's
(malformed, untrusted, unknown users, retransmissions, …), the media engine's summed over every leg
open or closed (packets, drops by reason), the hotline service's (active calls, ended calls by
outcome), the registrations, the call-log writer and the process (memory, file descriptors, CPU,
asyncio tasks).  Nothing is kept for the endpoint: a scrape costs one pass over the open legs.

The HTTP side is deliberately tiny (one request per connection, 8 KiB of request head at most,
5 s to send it) so that a scanner on the metrics port costs nothing.  Bind it to loopback or a
management network: the figures tell an attacker how busy the hotline is.
"""

from __future__ import annotations

__all__ = ["Family", "MetricsServer", "daemon_families", "process_families", "render"]

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from sipcallhunt.runtime.daemon import Daemon

log = logging.getLogger("sipcallhunt.metrics")

MAX_REQUEST_HEAD = 8192
REQUEST_TIMEOUT = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@attrs.frozen
class Family:
    """One metric family: its samples as (labels, value)."""

    name: str
    kind: str  # "counter" or "gauge"
    help: str
    samples: tuple[tuple[Mapping[str, str], float], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The Prometheus text exposition (format 0.0.4) of ``families``."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            if labels:
                text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in sorted(labels.items()))
                lines.append(f"{family.name}{{{text}}} {_number(value)}")
            else:
                lines.append(f"{family.name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _by_label(label: str, counts: Mapping[str, int]) -> tuple[tuple[Mapping[str, str], float], ...]:
    return tuple(({label: key}, float(n)) for key, n in sorted(counts.items()))


def process_families() -> list[Family]:
    """Memory, file descriptors, CPU time and asyncio tasks of this process."""
    families = []
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        families.append(Family("process_resident_memory_bytes", "gauge", "Resident set size.", (({}, rss),)))
    except (OSError, ValueError, IndexError):
        pass
    with contextlib.suppress(OSError):
        fds = len(os.listdir("/proc/self/fd"))
        families.append(Family("process_open_fds", "gauge", "Open file descriptors.", (({}, fds),)))
    times = os.times()
    families.append(
        Family("process_cpu_seconds_total", "counter", "User and system CPU time.", (({}, times.user + times.system),))
    )
    with contextlib.suppress(RuntimeError):
        tasks = len(asyncio.all_tasks())
        families.append(Family("sipcallhunt_asyncio_tasks", "gauge", "Pending asyncio tasks.", (({}, tasks),)))
    return families


def daemon_families(daemon: Daemon) -> list[Family]:
    """Every counter of a running :class:`~sipcallhunt.runtime.daemon.Daemon`."""
    families: list[Family] = []
    if daemon.sip is not None:
        families.append(
            Family(
                "sipcallhunt_sip_transport_total",
                "counter",
                "SIP transport events: datagrams, TCP connections, oversized and unframeable input, slow peers.",
                _by_label("counter", daemon.sip.counters),
            )
        )
    if daemon.ua is not None:
        ua = daemon.ua
        families.append(
            Family(
                "sipcallhunt_sip_ua_total",
                "counter",
                "SIP user-agent events: malformed, untrusted and unknown requests, retransmissions, errors.",
                _by_label("counter", ua.counters),
            )
        )
        registered = tuple(({"account": name}, 1.0 if ok else 0.0) for name, ok in daemon.registrations().items())
        families.append(Family("sipcallhunt_registered", "gauge", "1 while the account is registered.", registered))
        families.append(
            Family("sipcallhunt_sip_legs", "gauge", "SIP call legs in the user agent.", (({}, ua.active_legs),))
        )
    if daemon.engine is not None:
        totals = daemon.engine.totals()
        families.append(
            Family(
                "sipcallhunt_rtp_packets_total",
                "counter",
                "RTP packets received and sent on every media leg.",
                (({"direction": "in"}, totals["packets_in"]), ({"direction": "out"}, totals["packets_out"])),
            )
        )
        families.append(
            Family(
                "sipcallhunt_rtp_relayed_total",
                "counter",
                "RTP packets relayed between bridged legs.",
                (({}, totals["relayed"]),),
            )
        )
        dropped = {k.removeprefix("dropped_"): v for k, v in totals.items() if k.startswith("dropped_")}
        families.append(
            Family(
                "sipcallhunt_rtp_dropped_total",
                "counter",
                "RTP packets dropped, by reason (malformed, foreign source, unknown payload type, …).",
                _by_label("reason", dropped),
            )
        )
        families.append(Family("sipcallhunt_media_legs", "gauge", "Open media legs.", (({}, len(daemon.engine.legs)),)))
        families.append(
            Family("sipcallhunt_media_errors_total", "counter", "Media engine errors.", (({}, daemon.engine.errors),))
        )
    if daemon.service is not None:
        service = daemon.service
        active: dict[str, int] = {hotline.name: 0 for hotline in daemon.config.hotlines}
        for session in service.sessions.values():
            active[session.hotline.name] = active.get(session.hotline.name, 0) + 1
        families.append(Family("sipcallhunt_calls_active", "gauge", "Calls in progress.", _by_label("hotline", active)))
        families.append(
            Family(
                "sipcallhunt_calls_total",
                "counter",
                "Ended calls by hotline and outcome.",
                tuple(
                    ({"hotline": hotline, "outcome": outcome}, float(n))
                    for (hotline, outcome), n in sorted(service.outcomes.items())
                ),
            )
        )
    if daemon.calllog is not None:
        calllog = daemon.calllog
        families.append(
            Family("sipcallhunt_calllog_pending", "gauge", "Records waiting for the disk.", (({}, calllog.pending),))
        )
        families.append(
            Family("sipcallhunt_calllog_written_total", "counter", "Records written.", (({}, calllog.written),))
        )
        families.append(
            Family(
                "sipcallhunt_calllog_errors_total",
                "counter",
                "Records that failed to be written or were dropped.",
                (({}, calllog.errors + calllog.dropped),),
            )
        )
    families.extend(process_families())
    return families


class MetricsServer:
    """A minimal HTTP/1.x server for ``/metrics`` and ``/healthz``."""

    def __init__(self, collect: Callable[[], Sequence[Family]], healthy: Callable[[], bool] = lambda: True) -> None:
        self.collect = collect
        self.healthy = healthy
        self.requests = 0
        self.bad_requests = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST_HEAD)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                self.bad_requests += 1
                return
            self.requests += 1
            status, body, content_type = self._answer(head)
            payload = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + payload
            )
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except Exception:
            log.exception("metrics request failed")
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[str, str, str]:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self.bad_requests += 1
            return "400 Bad Request", "bad request\n", "text/plain"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method != b"GET":
            return "405 Method Not Allowed", "only GET\n", "text/plain"
        if target == b"/metrics":
            return "200 OK", render(self.collect()), CONTENT_TYPE
        if target == b"/healthz":
            if self.healthy():
                return "200 OK", "ok\n", "text/plain"
            return "503 Service Unavailable", "not registered\n", "text/plain"
        return "404 Not Found", "not found\n", "text/plain"
