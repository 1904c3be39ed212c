"""Loopback addresses and free ports for the test bed, and a sipcallhunt config writer.

Tests never use fixed ports: each role (PBX, phone, daemon) gets its own loopback address from a
:class:`LoopbackPool` and asks the kernel for free ports on it.  The pool takes a file lock per
address (in the system temp dir), so two pytest runs on the same machine never share an address.

    pool = LoopbackPool("127.0.3.0/24")
    with pool.lease() as lease:
        pbx_ip = lease.address()            # e.g. "127.0.3.17", locked until the lease ends
        port = free_port(pbx_ip)             # free for UDP and TCP on that address
        rtp_first, rtp_last = free_port_range(pbx_ip, 20)
"""

from __future__ import annotations

__all__ = [
    "AddressLease",
    "LoopbackPool",
    "free_port",
    "free_port_range",
    "free_tcp_port",
    "free_udp_port",
    "port_is_free",
    "toml_dumps",
    "write_sipcallhunt_config",
]

import contextlib
import fcntl
import ipaddress
import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

_LOCK_DIR = Path(tempfile.gettempdir()) / "sipcallhunt-e2e-addresses"


# --- free ports ---------------------------------------------------------------------------------


def port_is_free(host: str, port: int, *, udp: bool = True, tcp: bool = True) -> bool:
    """True if ``port`` can be bound on ``host`` right now (for UDP and/or TCP)."""
    kinds = [k for k, wanted in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)) if wanted]
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_udp_port(host: str) -> int:
    """A UDP port the kernel reports free on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_tcp_port(host: str) -> int:
    """A TCP port the kernel reports free on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# Ports handed out recently by this process: the kernel reports a port free until someone binds
# it, so two roles asking one after the other (before either starts) could get the same one.
_HANDED_OUT: dict[tuple[str, int], float] = {}
_HOLD_SECONDS = 120.0


def _taken(host: str, ports: range) -> bool:
    now = time.monotonic()
    for key in [k for k, t in _HANDED_OUT.items() if now - t > _HOLD_SECONDS]:
        del _HANDED_OUT[key]
    return any((host, p) in _HANDED_OUT for p in ports)


def _hand_out(host: str, ports: range) -> None:
    now = time.monotonic()
    for port in ports:
        _HANDED_OUT[(host, port)] = now


def free_port(host: str, *, attempts: int = 50) -> int:
    """A port free for both UDP and TCP on ``host`` (SIP listens on both)."""
    for _ in range(attempts):
        port = free_udp_port(host)
        if not _taken(host, range(port, port + 1)) and port_is_free(host, port, udp=False, tcp=True):
            _hand_out(host, range(port, port + 1))
            return port
    raise OSError(f"no port free for both UDP and TCP on {host} after {attempts} attempts")


def free_port_range(
    host: str, count: int, *, udp: bool = True, tcp: bool = False, attempts: int = 50
) -> tuple[int, int]:
    """``(first, last)`` of ``count`` consecutive ports free on ``host`` (an RTP port range).

    The start is an even port picked by the kernel (RTP uses even ports, RTCP the odd ones).
    """
    for _ in range(attempts):
        first = free_udp_port(host) & ~1
        last = first + count - 1
        if last > 65535:
            continue
        ports = range(first, last + 1)
        if not _taken(host, ports) and all(port_is_free(host, p, udp=udp, tcp=tcp) for p in ports):
            _hand_out(host, ports)
            return first, last
    raise OSError(f"no {count} consecutive free ports on {host} after {attempts} attempts")


# --- loopback addresses -------------------------------------------------------------------------


@attrs.define(eq=False)
class LoopbackPool:
    """Hands out addresses of a loopback network, one holder at a time across processes."""

    network: str = "127.0.3.0/24"
    lock_dir: Path = _LOCK_DIR
    _hosts: list[str] = attrs.field(init=False)
    _cursor: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        net = ipaddress.ip_network(self.network)
        if not net.is_loopback:
            raise ValueError(f"{self.network} is not a loopback network")
        self._hosts = [str(h) for h in net.hosts()]
        if not self._hosts:
            raise ValueError(f"{self.network} has no host addresses")
        # Different processes start at different places; one process walks round-robin, so an
        # address is not reused by the very next test while its old sockets may still linger.
        self._cursor = os.getpid() % len(self._hosts)

    def acquire(self) -> tuple[str, int]:
        """Lock the next free address; returns ``(address, lock fd)``. Release with :meth:`release`."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(len(self._hosts)):
            host = self._hosts[self._cursor]
            self._cursor = (self._cursor + 1) % len(self._hosts)
            fd = os.open(self.lock_dir / host, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return host, fd
        raise OSError(f"every address of {self.network} is in use by other test runs")

    @staticmethod
    def release(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @contextlib.contextmanager
    def lease(self) -> Iterator[AddressLease]:
        """A context in which :meth:`AddressLease.address` hands out addresses, all released at exit."""
        lease = AddressLease(self)
        try:
            yield lease
        finally:
            lease.release_all()


@attrs.define(eq=False)
class AddressLease:
    """The addresses one test holds (see :meth:`LoopbackPool.lease`)."""

    pool: LoopbackPool
    _held: list[tuple[str, int]] = attrs.field(factory=list, init=False)

    def address(self) -> str:
        """A loopback address no other test (in this or another process) holds."""
        host, fd = self.pool.acquire()
        self._held.append((host, fd))
        return host

    @property
    def addresses(self) -> list[str]:
        return [host for host, _ in self._held]

    def release_all(self) -> None:
        held, self._held = self._held, []
        for _, fd in held:
            self.pool.release(fd)


# --- sipcallhunt configuration ------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value!r}")
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _toml_table(lines: list[str], prefix: str, table: Mapping[str, Any], *, array: bool) -> None:
    if prefix:
        lines.append(f"[[{prefix}]]" if array else f"[{prefix}]")
    nested = []
    for key, value in table.items():
        if value is None:
            continue
        if isinstance(value, Mapping) or _is_table_array(value):
            nested.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    if prefix:
        lines.append("")
    for key, value in nested:
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            _toml_table(lines, name, value, array=False)
        else:
            for item in value:
                _toml_table(lines, name, item, array=True)


def toml_dumps(data: Mapping[str, Any]) -> str:
    """TOML text for nested dicts/lists of str, int, float, bool and Path (None values are left out)."""
    lines: list[str] = []
    _toml_table(lines, "", data, array=False)
    return "\n".join(lines).rstrip() + "\n"


def write_sipcallhunt_config(
    path: Path,
    *,
    listen: tuple[str, int],
    rtp_ports: tuple[int, int],
    registrar: tuple[str, int],
    username: str,
    password: str,
    hotlines: Sequence[Mapping[str, Any]] = (),
    account_name: str = "pbx",
    calllog: Path | None = None,
    log_level: str = "DEBUG",
    sip: Mapping[str, Any] | None = None,
    account: Mapping[str, Any] | None = None,
    metrics: tuple[str, int] | None = None,
) -> Path:
    """Write a sipcallhunt TOML config for a daemon registering with the harness PBX.

    ``hotlines`` are ``[[hotline]]`` tables; ``account`` defaults to ``account_name`` and
    ``agent`` may be a list of numbers (``["agent1", "agent2"]``) or of agent tables.  ``sip`` and
    ``account`` add or override keys of the ``[sip]`` table and the ``[[account]]`` table.
    ``metrics`` turns on the daemon's metrics endpoint on that address.
    """
    host, port = registrar
    sip_table: dict[str, Any] = {"listen": f"{listen[0]}:{listen[1]}", "rtp_ports": list(rtp_ports)}
    sip_table.update(sip or {})
    account_table: dict[str, Any] = {
        "name": account_name,
        "registrar": f"sip:{host}:{port}",
        "username": username,
        "password": password,
    }
    account_table.update(account or {})
    hotline_tables = []
    for hotline in hotlines:
        table = {"account": account_name, **hotline}
        agents = table.pop("agent", table.pop("agents", []))
        table["agent"] = [{"number": a} if isinstance(a, str) else dict(a) for a in agents]
        hotline_tables.append(table)
    data: dict[str, Any] = {
        "sip": sip_table,
        "account": [account_table],
        "calllog": {"path": str(calllog if calllog is not None else path.parent / "calls.sqlite3")},
        "logging": {"level": log_level},
    }
    if hotline_tables:
        data["hotline"] = hotline_tables
    if metrics is not None:
        data["metrics"] = {"listen": f"{metrics[0]}:{metrics[1]}"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_dumps(data), encoding="utf-8")
    path.chmod(0o600)  # it holds passwords (the daemon warns otherwise)
    return path
