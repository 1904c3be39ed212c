"""baresip 1.0 as a real softphone: headless, scripted over ctrl_tcp, recording what it hears.

    phone = Baresip(host="127.0.3.30", workdir=tmp_path / "phone", user="agent1", password="agent1pw",
                    registrar=pbx.address, source=tone(1000, 1.0)).start()
    phone.wait_registered(timeout=5)
    ...                                    # someone calls agent1 (answermode=auto answers)
    phone.wait_event("CALL_ESTABLISHED", timeout=5)
    phone.wait_event("CALL_DTMF_START", timeout=5).param      # "5"
    phone.hangup()
    phone.wait_event("CALL_CLOSED", timeout=5)
    assert_tones(phone.received_audio(), present=[440])

Per instance: a config dir (``sip_listen`` and ``net_interface`` on its own loopback address, free
ports), an ``audio_source`` WAV (the ``source`` samples padded with silence to ``source_seconds``,
since aufile hangs up when its file ends), and the ``sndfile`` module writing what it hears
(``dump-*-dec.wav``) and what it sends (``dump-*-enc.wav``) into ``recordings/``.

baresip sends RTP from its wildcard socket, so packets arrive from 127.0.0.1 even though its SDP
names its own address: a media endpoint talking to it must latch on the real source address.
It cannot send SIP INFO DTMF; ``send_dtmf`` sends RFC 4733 events.  Only one ctrl_tcp client at a
time is possible; this class holds it.
"""

from __future__ import annotations

__all__ = ["BARESIP_PROGRAM", "Baresip", "BaresipEvent", "CtrlTcpClient"]

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import numpy as np

from ._proc import ManagedProcess, find_binary, missing_binaries_message, poll_until
from .audio import Samples, read_wav, silence, write_wav
from .ports import free_port, free_tcp_port, port_is_free

BARESIP_PROGRAM: Final = "baresip"
_MODULE_DIRS: Final = ("/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules")
_ANSI_RE: Final = re.compile(r"\x1b\[[0-9;]*m")


@attrs.frozen
class BaresipEvent:
    """One ctrl_tcp event (``{"event": true, "type": "CALL_ESTABLISHED", ...}``)."""

    type: str
    data: Mapping[str, Any]
    time: float  # time.monotonic() at arrival

    @property
    def param(self) -> str:
        """The event's parameter (the key for CALL_DTMF_START, a reason for CALL_CLOSED)."""
        return str(self.data.get("param", ""))

    @property
    def call_id(self) -> str | None:
        value = self.data.get("id")
        return None if value is None else str(value)

    @property
    def peer_uri(self) -> str | None:
        value = self.data.get("peeruri")
        return None if value is None else str(value)


@attrs.define(eq=False)
class CtrlTcpClient:
    """The ctrl_tcp protocol: JSON objects in netstrings (``len:json,``) both ways.

    Commands carry a token and get a response with the same token; events arrive at any time
    and are kept in order for :meth:`wait_event`.
    """

    address: tuple[str, int]
    _sock: socket.socket | None = attrs.field(default=None, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _cond: threading.Condition = attrs.field(factory=threading.Condition, init=False)
    _responses: dict[str, Mapping[str, Any]] = attrs.field(factory=dict, init=False)
    events: list[BaresipEvent] = attrs.field(factory=list, init=False)
    _tokens: int = attrs.field(default=0, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def connect(self, timeout: float = 5.0) -> None:
        self._sock = socket.create_connection(self.address, timeout=timeout)
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._read_loop, name=f"ctrl_tcp-{self.address}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _read_loop(self) -> None:
        buffer = b""
        sock = self._sock
        assert sock is not None
        while not self._closed:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while True:
                colon = buffer.find(b":")
                if colon < 0 or not buffer[:colon].isdigit():
                    break
                length = int(buffer[:colon])
                end = colon + 1 + length
                if len(buffer) < end + 1:
                    break
                payload, buffer = buffer[colon + 1 : end], buffer[end + 1 :]  # skip the trailing ","
                self._dispatch(json.loads(payload))
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        with self._cond:
            if message.get("event"):
                self.events.append(BaresipEvent(str(message.get("type", "")), message, time.monotonic()))
            elif message.get("response"):
                self._responses[str(message.get("token", ""))] = message
            self._cond.notify_all()

    def command(self, command: str, params: str | None = None, *, timeout: float = 3.0) -> Mapping[str, Any]:
        """Send a command and wait for its response (``{"ok": …, "data": …}``)."""
        if self._sock is None:
            raise RuntimeError("ctrl_tcp is not connected")
        self._tokens += 1
        token = f"t{self._tokens}"
        message: dict[str, Any] = {"command": command, "token": token}
        if params is not None:
            message["params"] = params
        payload = json.dumps(message).encode()
        self._sock.sendall(str(len(payload)).encode() + b":" + payload + b",")
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise TimeoutError(f"no ctrl_tcp response to {command!r} within {timeout} s")
                self._cond.wait(left)
            return self._responses.pop(token)

    def wait_event(
        self,
        event_type: str,
        *,
        timeout: float,
        since: int = 0,
        predicate: Callable[[BaresipEvent], bool] | None = None,
    ) -> BaresipEvent:
        """The first event of ``event_type`` at index ``since`` or later (matching ``predicate``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[since:]:
                    if event.type == event_type and (predicate is None or predicate(event)):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = ", ".join(e.type for e in self.events) or "none"
                    raise TimeoutError(f"no {event_type} event within {timeout} s (events so far: {seen})")
                self._cond.wait(min(left, 0.1))


def _module_path() -> str:
    for directory in _MODULE_DIRS:
        if Path(directory, "g711.so").is_file():
            return directory
    return _MODULE_DIRS[0]


@attrs.define(eq=False)
class Baresip:
    """A baresip process on its own loopback address with one account."""

    host: str
    workdir: Path
    user: str
    password: str | None = None
    registrar: tuple[str, int] | None = None
    """Register with this PBX (``host``, ``port``); None: no registration (direct calls only)."""
    answermode: str = "auto"  # "auto" answers at once, "manual" waits for answer()
    source: Samples | None = None
    """What the phone sends (int16, 8 kHz), padded with silence; default: silence."""
    source_seconds: float = 120.0
    codecs: str = "PCMU"  # audio_codecs of the account, e.g. "PCMU,PCMA"
    transport: str = "udp"  # for registration and calls ("udp" or "tcp")
    sip_port: int = 0  # 0: a free port (sip_listen, and +1 for the TLS listener)
    ctrl_port: int = 0  # 0: a free port for ctrl_tcp
    startup_timeout: float = 5.0
    _process: ManagedProcess | None = attrs.field(default=None, init=False)
    _ctrl: CtrlTcpClient | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.answermode not in ("auto", "manual"):
            raise ValueError(f"answermode must be 'auto' or 'manual', not {self.answermode!r}")
        if self.sip_port == 0:
            for _ in range(50):  # baresip also listens on sip_port + 1 (TLS, TCP)
                port = free_port(self.host)
                if port < 65535 and port_is_free(self.host, port + 1):
                    self.sip_port = port
                    break
            else:
                raise OSError(f"no two adjacent free SIP ports on {self.host}")
        if self.ctrl_port == 0:
            self.ctrl_port = free_tcp_port(self.host)

    # --- files --------------------------------------------------------------------------------

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    @property
    def recordings_dir(self) -> Path:
        return self.workdir / "recordings"

    @property
    def log_path(self) -> Path:
        return self.workdir / "baresip.log"

    @property
    def source_path(self) -> Path:
        return self.workdir / "source.wav"

    @property
    def aor(self) -> str:
        """The account's address of record: at the registrar, else at this phone itself."""
        if self.registrar is not None:
            return f"sip:{self.user}@{self.registrar[0]}:{self.registrar[1]}"
        return f"sip:{self.user}@{self.host}:{self.sip_port}"

    @property
    def uri(self) -> str:
        """Where this phone can be called directly, bypassing the PBX."""
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{self.user}@{self.host}:{self.sip_port}{suffix}"

    def account_line(self) -> str:
        params = [f"answermode={self.answermode}", f"audio_codecs={self.codecs}"]
        if self.password is not None:
            params.insert(0, f"auth_pass={self.password}")
        params.append("regint=300" if self.registrar is not None else "regint=0")
        return f"<{self.aor};transport={self.transport}>;" + ";".join(params)

    def config_text(self) -> str:
        lines = {
            "poll_method": "epoll",
            "sip_listen": f"{self.host}:{self.sip_port}",
            "net_interface": self.host,
            "call_local_timeout": "120",
            "call_max_calls": "4",
            "audio_player": "alsa,null",
            "audio_source": f"aufile,{self.source_path}",
            "audio_alert": "alsa,null",
            "audio_level": "no",
            "jitter_buffer_delay": "1-10",
            "rtp_stats": "no",
            "module_path": _module_path(),
            "snd_path": str(self.recordings_dir),
            "ctrl_tcp_listen": f"{self.host}:{self.ctrl_port}",
        }
        text = "".join(f"{key}\t{value}\n" for key, value in lines.items())
        for module in ("g711.so", "aufile.so", "alsa.so", "sndfile.so"):
            text += f"module\t{module}\n"
        for module in ("uuid.so", "account.so"):
            text += f"module_tmp\t{module}\n"
        for module in ("ctrl_tcp.so", "menu.so"):
            text += f"module_app\t{module}\n"
        return text

    def _write_files(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config").write_text(self.config_text())
        (self.config_dir / "accounts").write_text(self.account_line() + "\n")
        (self.config_dir / "contacts").write_text("")
        source = silence(0) if self.source is None else np.asarray(self.source, dtype=np.int16)
        padding = max(0.0, self.source_seconds - source.size / 8000)
        write_wav(self.source_path, np.concatenate([source, silence(padding)]))

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Baresip:
        """Start and connect to ctrl_tcp (it is ready once that port accepts)."""
        program = find_binary(BARESIP_PROGRAM)
        if program is None:
            raise FileNotFoundError(missing_binaries_message([BARESIP_PROGRAM]))
        self._write_files()
        self._process = ManagedProcess([program, "-f", str(self.config_dir)], self.log_path, cwd=self.workdir)
        self._process.start()

        def connected() -> CtrlTcpClient | None:
            if not self.is_running:
                raise RuntimeError(f"baresip exited with {self.returncode} at start:\n{self.log_tail()}")
            client = CtrlTcpClient((self.host, self.ctrl_port))
            try:
                client.connect(timeout=0.5)
            except OSError:
                return None
            return client

        try:
            self._ctrl = poll_until(connected, timeout=self.startup_timeout, what="baresip ctrl_tcp")
        except TimeoutError:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> int | None:
        """Close ctrl_tcp, SIGTERM by PID (baresip then un-registers), SIGKILL after ``timeout``."""
        if self._ctrl is not None:
            self._ctrl.close()
            self._ctrl = None
        return self._process.stop(timeout) if self._process is not None else None

    def kill(self) -> int | None:
        if self._ctrl is not None:
            self._ctrl.close()
            self._ctrl = None
        return self._process.kill() if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- control ------------------------------------------------------------------------------

    @property
    def ctrl(self) -> CtrlTcpClient:
        if self._ctrl is None:
            raise RuntimeError("baresip is not running")
        return self._ctrl

    def command(self, command: str, params: str | None = None, *, timeout: float = 3.0) -> str:
        """Run a command; returns its text output, RuntimeError if baresip says it failed."""
        response = self.ctrl.command(command, params, timeout=timeout)
        data = _ANSI_RE.sub("", str(response.get("data", "")))
        if not response.get("ok"):
            raise RuntimeError(f"baresip {command} {params or ''}: {data.strip()}")
        return data

    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def answer(self) -> None:
        self.command("accept")

    def hangup(self) -> None:
        self.command("hangup")

    def send_dtmf(self, key: str) -> None:
        """Send one RFC 4733 digit in the active call (``sndcode``)."""
        self.command("sndcode", key)

    @property
    def events(self) -> list[BaresipEvent]:
        return list(self.ctrl.events)

    def wait_event(
        self,
        event_type: str,
        *,
        timeout: float = 5.0,
        since: int = 0,
        predicate: Callable[[BaresipEvent], bool] | None = None,
    ) -> BaresipEvent:
        """Wait for an event (CALL_INCOMING, CALL_ESTABLISHED, CALL_CLOSED, CALL_DTMF_START, …)."""
        return self.ctrl.wait_event(event_type, timeout=timeout, since=since, predicate=predicate)

    def is_registered(self) -> bool:
        """True when the account's registration is OK (from ``reginfo``)."""
        lines = self.command("reginfo").splitlines()
        return any(self.user in line and re.search(r"\bOK\b", line) for line in lines)

    def wait_registered(self, *, timeout: float = 5.0) -> None:
        poll_until(self.is_registered, timeout=timeout, interval=0.05, what=f"baresip {self.user} to register")

    # --- recordings ---------------------------------------------------------------------------

    def recordings(self, kind: str = "dec") -> list[Path]:
        """The sndfile dumps, oldest first: "dec" is what it heard, "enc" what it sent."""
        files = self.recordings_dir.glob(f"dump-*-{kind}.wav")
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def _latest(self, kind: str) -> Path | None:
        files = self.recordings(kind)
        return files[-1] if files else None

    def received_audio(self, *, timeout: float = 3.0) -> Samples:
        """What the phone heard in its latest call, decoded (read it after the call ended)."""
        return read_wav(poll_until(lambda: self._latest("dec"), timeout=timeout, what="a recording"))

    def sent_audio(self, *, timeout: float = 3.0) -> Samples:
        """What the phone sent in its latest call."""
        return read_wav(poll_until(lambda: self._latest("enc"), timeout=timeout, what="a recording"))
