"""Kamailio 5.6 as the test bed's PBX: one process per test, on its own loopback address.

    pbx = Kamailio(host="127.0.3.5", port=free_port("127.0.3.5"), workdir=tmp_path / "pbx",
                   users=[("hotline", "hotlinepw"), ("agent1", "agent1pw")])
    pbx.start()                       # returns once it answers SIP OPTIONS (~0.2 s)
    pbx.wait_registered("agent1", timeout=5)
    pbx.restart()                     # registrations are forgotten
    pbx.stop()                        # SIGTERM, then SIGKILL; by PID

The config is rendered from ``kamailio.cfg.in`` next to this file (see its header for the
routing behaviour); users live in a generated db_text ``subscriber`` table.  Registrations are
read over JSON-RPC (``ul.dump``) on a unix datagram socket in the run directory.
"""

from __future__ import annotations

__all__ = ["KAMAILIO_PROGRAM", "Kamailio", "sip_options_ping"]

import json
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ._proc import ManagedProcess, find_binary, missing_binaries_message, poll_until

KAMAILIO_PROGRAM = "kamailio"
_TEMPLATE = Path(__file__).with_name("kamailio.cfg.in")
_MODULE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/lib64/kamailio/modules",
)
_STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3}) ")


def sip_options_ping(
    host: str, port: int, *, user: str | None = None, source: str | None = None, timeout: float = 0.2
) -> int | None:
    """Send one OPTIONS to ``sip:[user@]host:port`` over UDP from ``source`` (default: ``host``);
    returns the final response's status code, or None if none came within ``timeout``.

    The From domain is ``probe.invalid``, a foreign domain, so a PBX routes it unchallenged.
    """
    target = f"sip:{user + '@' if user else ''}{host}:{port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source or host, 0))
        local_host, local_port = sock.getsockname()
        branch = "z9hG4bK" + secrets.token_hex(8)
        request = (
            f"OPTIONS {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local_host}:{local_port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@probe.invalid>;tag={secrets.token_hex(4)}\r\n"
            f"To: <{target}>\r\n"
            f"Call-ID: {secrets.token_hex(8)}@{local_host}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(request, (host, port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            match = _STATUS_RE.match(data)
            if branch.encode() in data and match and int(match.group(1)) >= 200:
                return int(match.group(1))
        return None


def _module_path() -> str:
    for directory in _MODULE_DIRS:
        if Path(directory, "tm.so").is_file():
            return directory + "/"
    return _MODULE_DIRS[0] + "/"


@attrs.define(eq=False)
class Kamailio:
    """A Kamailio registrar/proxy listening on ``host:port`` (UDP and TCP)."""

    host: str
    port: int
    workdir: Path
    users: Sequence[tuple[str, str]] = ()
    gateways: Sequence[str] = ()
    """Source addresses whose requests are routed without a digest challenge."""
    debug: int = 2
    """Kamailio's log level (2 = info: one line per routed request and registration)."""
    startup_timeout: float = 5.0
    shm_mb: int = 64
    """Kamailio's shared memory pool (``-m``): transactions live there; 64 MB lasts to about
    150 calls/s through a B2BUA (each call's transactions are kept for seconds after they end)."""
    _process: ManagedProcess | None = attrs.field(default=None, init=False)
    _rundir: Path | None = attrs.field(default=None, init=False)
    starts: int = attrs.field(default=0, init=False)

    # --- addresses ----------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def domain(self) -> str:
        """The SIP domain of the local users (the proxy's own address)."""
        return self.host

    def uri(self, user: str | None = None, *, transport: str | None = None) -> str:
        """``sip:[user@]host:port[;transport=tcp]``."""
        suffix = f";transport={transport}" if transport else ""
        return f"sip:{user + '@' if user else ''}{self.host}:{self.port}{suffix}"

    def password(self, user: str) -> str:
        for name, password in self.users:
            if name == user:
                return password
        raise KeyError(user)

    # --- files --------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.workdir / "kamailio.cfg"

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    @property
    def db_dir(self) -> Path:
        return self.workdir / "db"

    def render_config(self, rpc_socket: Path) -> str:
        checks = "\n".join(f"\tif (src_ip=={ip}) return 1;" for ip in self.gateways)
        values = {
            "HOST": self.host,
            "PORT": str(self.port),
            "DBDIR": str(self.db_dir),
            "MODULE_PATH": _module_path(),
            "RPC_SOCKET": str(rpc_socket),
            "GATEWAY_CHECKS": checks,
            "DEBUG": str(self.debug),
        }
        text = _TEMPLATE.read_text()
        for name, value in values.items():
            text = text.replace(f"@{name}@", value)
        leftover = re.findall(r"@[A-Z_]+@", text)
        if leftover:
            raise ValueError(f"kamailio.cfg.in: unfilled placeholders {sorted(set(leftover))}")
        return text

    def _write_db(self) -> None:
        self.db_dir.mkdir(parents=True, exist_ok=True)
        rows = ["id(int,auto) username(string) domain(string) password(string) ha1(string,null) ha1b(string,null) "]
        for index, (user, password) in enumerate(self.users, start=1):
            for field in (user, password):
                if not field or ":" in field or "\n" in field:
                    raise ValueError(f"user names and passwords must be non-empty and free of ':' ({field!r})")
            rows.append(f"{index}:{user}:{self.domain}:{password}::")
        (self.db_dir / "subscriber").write_text("\n".join(rows) + "\n")
        (self.db_dir / "version").write_text("table_name(string) table_version(int) \nsubscriber:7\nlocation:9\n")

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start in the foreground (``-DD -E``) and return once it answers OPTIONS."""
        if self.is_running:
            raise RuntimeError("kamailio is already running")
        program = find_binary(KAMAILIO_PROGRAM)
        if program is None:
            raise FileNotFoundError(missing_binaries_message([KAMAILIO_PROGRAM]))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_db()
        # The run dir holds unix sockets (108-byte path limit): keep it short, outside workdir.
        self._rundir = Path(tempfile.mkdtemp(prefix="kam"))
        self.config_path.write_text(self.render_config(self._rundir / "rpc.sock"))
        self.starts += 1
        with self.log_path.open("a") as log:
            log.write(f"\n===== harness: start #{self.starts} =====\n")
        argv = [
            program,
            "-f", str(self.config_path),
            "-Y", str(self._rundir),
            "-P", str(self._rundir / "kamailio.pid"),
            "-DD", "-E",
            "-m", str(self.shm_mb), "-M", "8",
        ]  # fmt: skip
        self._process = ManagedProcess(argv, self.log_path)
        self._process.start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if not self._process.is_running:
                self._cleanup_rundir()
                raise RuntimeError(f"kamailio exited with {self._process.returncode} at start:\n{self.log_tail()}")
            if sip_options_ping(self.host, self.port, timeout=0.05) == 200:
                return
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"kamailio did not answer OPTIONS within {self.startup_timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM by PID, then SIGKILL after ``timeout``; returns the exit status."""
        code = self._process.stop(timeout) if self._process is not None else None
        self._cleanup_rundir()
        return code

    def kill(self) -> int | None:
        """SIGKILL by PID (a crashed PBX)."""
        code = self._process.kill() if self._process is not None else None
        self._cleanup_rundir()
        return code

    def restart(self) -> None:
        """Stop and start again on the same address; in-memory registrations are lost."""
        self.stop()
        self.start()

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _cleanup_rundir(self) -> None:
        if self._rundir is not None:
            shutil.rmtree(self._rundir, ignore_errors=True)
            self._rundir = None

    # --- log ----------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, *, timeout: float = 5.0) -> re.Match[str]:
        """Wait until a log line matches the regex ``pattern``; returns the match."""
        regex = re.compile(pattern, re.MULTILINE)
        return poll_until(lambda: regex.search(self.log_text()), timeout=timeout, what=f"kamailio log /{pattern}/")

    # --- registrations over JSON-RPC ----------------------------------------------------------

    def rpc(self, method: str, *params: Any, timeout: float = 2.0) -> Any:
        """Call a Kamailio RPC command (``core.version``, ``ul.dump`` …); returns its ``result``."""
        if self._rundir is None or not self.is_running:
            raise RuntimeError("kamailio is not running")
        server = str(self._rundir / "rpc.sock")
        with (
            tempfile.TemporaryDirectory(prefix="kamrpc") as tmp,
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        ):
            sock.bind(str(Path(tmp) / "c.sock"))
            sock.settimeout(timeout)
            request = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
            sock.sendto(json.dumps(request).encode(), server)
            reply = json.loads(sock.recv(1 << 20))
        if "error" in reply:
            raise RuntimeError(f"kamailio rpc {method}: {reply['error']}")
        return reply.get("result")

    def contacts(self, user: str) -> list[str]:
        """Contact URIs currently registered for ``user`` (any domain)."""
        found: list[str] = []
        dump = self.rpc("ul.dump")
        for domain in dump.get("Domains", []):
            for record in domain.get("Domain", {}).get("AoRs", []):
                info = record.get("Info", {})
                aor = str(info.get("AoR", ""))
                if aor.split("@", 1)[0] != user:
                    continue
                for contact in info.get("Contacts", []):
                    address = contact.get("Contact", {}).get("Address")
                    if address:
                        found.append(str(address))
        return found

    def is_registered(self, user: str) -> bool:
        return bool(self.contacts(user))

    def wait_registered(self, user: str, *, timeout: float = 5.0, contact: str | None = None) -> list[str]:
        """Wait until ``user`` has a binding (containing ``contact`` if given); returns the contacts."""

        def check() -> list[str] | None:
            contacts = self.contacts(user)
            if contact is not None:
                contacts = [c for c in contacts if contact in c]
            return contacts or None

        return poll_until(check, timeout=timeout, interval=0.03, what=f"registration of {user!r} at kamailio")

    def remove_contacts(self, user: str, *, contact: str | None = None) -> list[str]:
        """Drop ``user``'s bindings (those containing ``contact`` if given) as an expiry would;
        returns the removed contact URIs."""
        removed = [c for c in self.contacts(user) if contact is None or contact in c]
        for uri in removed:
            self.rpc("ul.rm_contact", "location", user, uri)
        return removed

    def wait_unregistered(self, user: str, *, timeout: float = 5.0) -> None:
        poll_until(lambda: not self.contacts(user), timeout=timeout, interval=0.03, what=f"{user!r} to unregister")

    def __enter__(self) -> Kamailio:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
