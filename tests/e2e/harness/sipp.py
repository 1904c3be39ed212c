"""sipp 3.6 as a scripted phone: scenario templates rendered per test, one process per role.

A scenario is an XML file in ``tests/e2e/scenarios/``.  Its header comment declares its own
parameters (``params: ring_ms=0 call_ms=30000 pcap``; no ``=`` means required); they appear in the
XML as ``[name]``, like sipp's ``-key`` values.  The harness fills them in by rendering the file
per test (needed anyway for ``play_pcap_audio`` paths, which sipp fixes at load time), so a typo
or a missing value fails before sipp starts.

    callee = Sipp("uas_answer", workdir, local_ip="127.0.3.20", params={"call_ms": 2000}).start()
    caller = Sipp("uac_call", workdir, local_ip="127.0.3.21", remote=callee.address,
                  service="bob", params={"pcap": pcap_path}).start()
    assert caller.wait().ok and callee.wait().ok
    result.received_responses     # e.g. [100, 180, 200, 200]

Every sipp runs with ``-nostdin -m N``, its own ``-i``/``-mi`` address, free ports, message and
error traces, sipp's own ``-timeout`` and, as a hard stop, under ``timeout(1)``.  ``wait`` has an
``async`` twin; ``terminate`` ends it by PID.  :class:`RegisteredSipp` is the two-process pattern:
one sipp answers calls, a second one registers the first one's address with the PBX, so that a
failing call shows in the answering process's exit code (``-oocsf`` failures do not).
"""

from __future__ import annotations

__all__ = [
    "PRESETS",
    "SCENARIO_DIR",
    "SIPP_PROGRAM",
    "RegisteredSipp",
    "Scenario",
    "Sipp",
    "SippResult",
    "TracedMessage",
    "info_dtmf_requests",
    "parse_message_trace",
]

import itertools
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from ._proc import ManagedProcess, find_binary, missing_binaries_message
from .ports import free_port, free_port_range

if TYPE_CHECKING:
    from .kamailio import Kamailio

SIPP_PROGRAM: Final = "sipp"
SCENARIO_DIR: Final = Path(__file__).resolve().parent.parent / "scenarios"
EXIT_TIMEOUT: Final = 124  # timeout(1) killed it

PRESETS: Final[Mapping[str, tuple[str, Mapping[str, str]]]] = {
    "uas_busy": ("uas_reject", {"status": "486", "reason": "Busy Here"}),
    "uas_decline": ("uas_reject", {"status": "603", "reason": "Decline"}),
    "uas_unavailable": ("uas_reject", {"status": "480", "reason": "Temporarily Unavailable"}),
}
"""Scenario names that are another scenario with fixed parameters."""

_PARAMS_RE = re.compile(r"^\s*params:(.*)$", re.MULTILINE)
_PLACEHOLDER_RE = re.compile(r"\[([A-Za-z_][A-Za-z0-9_]*)\]")


# --- scenarios ----------------------------------------------------------------------------------


@attrs.frozen
class Scenario:
    """A scenario template and its declared parameters (None: required)."""

    name: str
    template: str
    params: Mapping[str, str | None]

    @classmethod
    def load(cls, name: str | Path) -> Scenario:
        path = Path(name) if isinstance(name, Path) or name.endswith(".xml") else SCENARIO_DIR / f"{name}.xml"
        template = path.read_text(encoding="iso-8859-1")
        params: dict[str, str | None] = {}
        match = _PARAMS_RE.search(template.split("-->", 1)[0])
        if match:
            for item in match.group(1).split():
                key, sep, default = item.partition("=")
                params[key] = default if sep else None
        return cls(path.stem, template, params)

    def render(self, values: Mapping[str, object]) -> str:
        """Fill in the parameters; ValueError names unknown and missing ones."""
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise ValueError(f"scenario {self.name}: unknown parameter(s) {unknown}; it takes {sorted(self.params)}")
        filled = {key: default for key, default in self.params.items() if default is not None}
        filled.update({key: str(value) for key, value in values.items()})
        missing = sorted(set(self.params) - set(filled))
        if missing:
            raise ValueError(f"scenario {self.name}: missing required parameter(s) {missing}")
        body = self.template.split("-->", 1)
        text = body[1] if len(body) == 2 else body[0]
        text = _PLACEHOLDER_RE.sub(lambda m: filled.get(m.group(1), m.group(0)), text)
        return (body[0] + "-->" if len(body) == 2 else "") + text


def info_dtmf_requests(
    digits: str, *, duration_ms: int = 160, pause_ms: int = 200, content_type: str = "application/dtmf-relay"
) -> str:
    """The XML for one in-dialog INFO per digit (for the ``info`` parameter of ``uac_call_info``
    and ``uas_answer_info``), each answered 200, ``pause_ms`` apart.

    ``application/dtmf-relay`` bodies are ``Signal=5`` / ``Duration=160``; ``application/dtmf``
    bodies are the digit alone.
    """
    blocks = []
    for digit in digits:
        if content_type == "application/dtmf-relay":
            body = f"Signal={digit}\n      Duration={duration_ms}"
        elif content_type == "application/dtmf":
            body = digit
        else:
            raise ValueError(f"unsupported INFO content type {content_type!r}")
        blocks.append(
            f"""  <send retrans="500">
    <![CDATA[
      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: [$me]
      To: [$peer]
      Call-ID: [call_id]
      CSeq: [cseq] INFO
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: {content_type}
      Content-Length: [len]

      {body}
    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="{pause_ms}"/>
"""
        )
    return "\n".join(blocks)


# --- traces -------------------------------------------------------------------------------------

_TRACE_SEPARATOR = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.MULTILINE)
_TRACE_HEADING = re.compile(r"^(\w+) message (sent|received)\b.*$", re.MULTILINE)


@attrs.frozen
class TracedMessage:
    """One SIP message from sipp's ``-trace_msg`` log."""

    time: float  # seconds since the epoch
    direction: str  # "sent" or "received"
    transport: str  # "UDP" or "TCP"
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str | None:
        """The request method, or for a response the method of its CSeq."""
        if self.is_request:
            return self.first_line.split(" ", 1)[0]
        cseq = self.header("CSeq")
        return cseq.split()[-1] if cseq else None

    @property
    def status(self) -> int | None:
        if self.is_request:
            return None
        parts = self.first_line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def headers(self) -> list[tuple[str, str]]:
        head = self.text.replace("\r\n", "\n").split("\n\n", 1)[0]
        result: list[tuple[str, str]] = []
        for line in head.split("\n")[1:]:
            if line[:1] in (" ", "\t") and result:
                result[-1] = (result[-1][0], result[-1][1] + " " + line.strip())
            elif ":" in line:
                name, value = line.split(":", 1)
                result.append((name.strip(), value.strip()))
        return result

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive; compact forms not expanded)."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def body(self) -> str:
        parts = self.text.replace("\r\n", "\n").split("\n\n", 1)
        return parts[1] if len(parts) == 2 else ""


def parse_message_trace(text: str) -> list[TracedMessage]:
    """Split a sipp ``-message_file`` into messages."""
    messages = []
    marks = list(_TRACE_SEPARATOR.finditer(text))
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
        chunk = text[mark.end() : end]
        heading = _TRACE_HEADING.search(chunk)
        if heading is None:
            continue
        message = chunk[heading.end() :].lstrip("\n").rstrip()
        if not message:
            continue
        when = datetime.strptime(mark.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        messages.append(TracedMessage(when, heading.group(2), heading.group(1).upper(), message + "\n"))
    return messages


@attrs.frozen
class SippResult:
    """What a finished sipp did."""

    name: str
    exit_code: int
    messages: tuple[TracedMessage, ...]
    errors: str  # the -trace_err file: unexpected messages, aborted calls
    output: str  # stdout/stderr (statistics screen, fatal errors)
    log: str  # the -trace_logs file (<log> actions of the scenario)

    @property
    def timed_out(self) -> bool:
        return self.exit_code == EXIT_TIMEOUT

    @property
    def ok(self) -> bool:
        """sipp's own verdict: every call of the scenario succeeded."""
        return self.exit_code == 0

    def _select(self, direction: str, requests: bool) -> list[TracedMessage]:
        return [m for m in self.messages if m.direction == direction and m.is_request == requests]

    @property
    def received_responses(self) -> list[int]:
        return [m.status for m in self._select("received", False) if m.status is not None]

    @property
    def received_requests(self) -> list[str]:
        return [m.method for m in self._select("received", True) if m.method]

    @property
    def sent_requests(self) -> list[str]:
        return [m.method for m in self._select("sent", True) if m.method]

    @property
    def sent_responses(self) -> list[int]:
        return [m.status for m in self._select("sent", False) if m.status is not None]

    def received(self, method: str) -> list[TracedMessage]:
        """Received requests of ``method`` (e.g. "INFO")."""
        return [m for m in self._select("received", True) if m.method == method]

    def ladder(self) -> str:
        """One line per message: direction, transport, first line."""
        return "\n".join(
            f"  {'->' if m.direction == 'sent' else '<-'} {m.transport} {m.first_line}" for m in self.messages
        )

    def describe(self) -> str:
        text = f"sipp {self.name}: exit {self.exit_code}{' (hard timeout)' if self.timed_out else ''}\n{self.ladder()}"
        if self.errors.strip():
            text += "\n  errors:\n" + "\n".join("    " + line for line in self.errors.strip().splitlines()[-20:])
        if self.exit_code not in (0, 1) and self.output.strip():
            text += "\n  output:\n" + "\n".join("    " + line for line in self.output.strip().splitlines()[-15:])
        return text

    def assert_ok(self) -> SippResult:
        if not self.ok:
            raise AssertionError(self.describe())
        return self


# --- processes ----------------------------------------------------------------------------------

_names = itertools.count(1)


@attrs.define(eq=False)
class Sipp:
    """One sipp process running ``scenario`` (a name in ``tests/e2e/scenarios``, a preset or a path)."""

    scenario: str | Path
    workdir: Path
    local_ip: str
    remote: tuple[str, int] | None = None
    """Where a UAC sends its first request; None for a UAS."""
    params: Mapping[str, object] = attrs.field(factory=dict)
    service: str | None = None  # -s: the user part of [service]
    auth: tuple[str, str] | None = None  # -au/-ap: digest user and password
    transport: str = "udp"  # "udp" or "tcp" (-t u1 / t1)
    calls: int = 1  # -m
    timeout: float = 30.0  # sipp's -timeout; a hard kill follows 5 s later
    local_port: int | None = None  # default: a free port on local_ip
    media_port: int | None = None  # default: a free, even port on local_ip
    auto_answer: bool = True  # -aa: answer stray INFO/NOTIFY/OPTIONS/UPDATE with 200
    extra_args: Sequence[str] = ()
    name: str | None = None
    _process: ManagedProcess | None = attrs.field(default=None, init=False)
    _result: SippResult | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.local_port is None:
            self.local_port = free_port(self.local_ip)
        if self.media_port is None:
            # sipp binds the media port and media port + 2 (audio, video), RTCP next to each.
            self.media_port = free_port_range(self.local_ip, 4)[0]
        if self.name is None:
            stem = self.scenario if isinstance(self.scenario, str) else self.scenario.stem
            self.name = f"{next(_names):02d}-{Path(stem).stem}"

    # --- addresses ----------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        assert self.local_port is not None
        return self.local_ip, self.local_port

    @property
    def media_address(self) -> tuple[str, int]:
        assert self.media_port is not None
        return self.local_ip, self.media_port

    def uri(self, user: str | None = None) -> str:
        user = user or self.service or "sipp"
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{user}@{self.local_ip}:{self.local_port}{suffix}"

    def _path(self, suffix: str) -> Path:
        return self.workdir / f"sipp-{self.name}{suffix}"

    @property
    def scenario_path(self) -> Path:
        return self._path(".xml")

    # --- running ------------------------------------------------------------------------------

    def argv(self) -> list[str]:
        program = find_binary(SIPP_PROGRAM)
        timeout_program = find_binary("timeout")
        if program is None or timeout_program is None:
            raise FileNotFoundError(missing_binaries_message([SIPP_PROGRAM, "timeout"]))
        argv = [timeout_program, "--kill-after=2", f"{self.timeout + 5:g}", program]
        if self.remote is not None:
            argv.append(f"{self.remote[0]}:{self.remote[1]}")
        argv += [
            "-sf", str(self.scenario_path),
            "-i", self.local_ip,
            "-p", str(self.local_port),
            "-mi", self.local_ip,
            "-mp", str(self.media_port),
            "-t", {"udp": "u1", "tcp": "t1"}[self.transport],
            "-m", str(self.calls),
            "-nostdin",
            "-timeout", f"{self.timeout:g}s", "-timeout_error",
            "-trace_msg", "-message_file", str(self._path(".messages.log")),
            "-trace_err", "-error_file", str(self._path(".errors.log")),
            "-trace_logs", "-log_file", str(self._path(".actions.log")),
        ]  # fmt: skip
        if self.service is not None:
            argv += ["-s", self.service]
        if self.auth is not None:
            argv += ["-au", self.auth[0], "-ap", self.auth[1]]
        if self.auto_answer:
            argv.append("-aa")
        argv += list(self.extra_args)
        return argv

    def start(self) -> Sipp:
        name = self.scenario if isinstance(self.scenario, str) else str(self.scenario)
        values: dict[str, object] = {}
        if name in PRESETS:
            name, preset = PRESETS[name]
            values.update(preset)
        values.update(self.params)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scenario_path.write_text(Scenario.load(name).render(values), encoding="iso-8859-1")
        self._process = ManagedProcess(self.argv(), self._path(".out.log"), cwd=self.workdir)
        self._process.start()
        return self

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    def _collect(self, code: int) -> SippResult:
        def read(path: Path) -> str:
            try:
                return path.read_text(errors="replace")
            except FileNotFoundError:
                return ""

        assert self.name is not None
        self._result = SippResult(
            name=self.name,
            exit_code=code,
            messages=tuple(parse_message_trace(read(self._path(".messages.log")))),
            errors=read(self._path(".errors.log")),
            output=read(self._path(".out.log")),
            log=read(self._path(".actions.log")),
        )
        return self._result

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to finish (default: its own timeout plus the hard-kill margin)."""
        if self._result is not None:
            return self._result
        if self._process is None:
            raise RuntimeError("sipp was never started")
        return self._collect(self._process.wait(self.timeout + 10 if timeout is None else timeout))

    async def wait_async(self, timeout: float | None = None) -> SippResult:
        if self._result is not None:
            return self._result
        if self._process is None:
            raise RuntimeError("sipp was never started")
        return self._collect(await self._process.wait_async(self.timeout + 10 if timeout is None else timeout))

    def run(self, timeout: float | None = None) -> SippResult:
        """Start and wait."""
        return self.start().wait(timeout)

    def terminate(self) -> SippResult:
        """End it now (SIGTERM by PID, then SIGKILL) and collect what it did."""
        if self._result is not None:
            return self._result
        if self._process is None:
            raise RuntimeError("sipp was never started")
        code = self._process.stop(timeout=3.0)
        return self._collect(-1 if code is None else code)

    def messages(self) -> list[TracedMessage]:
        """The messages traced so far (sipp may buffer the file while it runs)."""
        try:
            return parse_message_trace(self._path(".messages.log").read_text(errors="replace"))
        except FileNotFoundError:
            return []


@attrs.define(eq=False)
class RegisteredSipp:
    """A sipp UAS reachable through the PBX as ``user``: the two-process pattern.

    ``uas`` answers calls with its scenario; a second sipp runs ``register`` with the UAS's
    address as Contact and stays registered (``hold_ms``) until :meth:`wait` ends it.  The UAS's
    exit code is the verdict.

        agent = RegisteredSipp.create(pbx, "agent1", "uas_answer", workdir, local_ip=ip).start()
        ... place a call to agent1 through pbx ...
        agent.wait().assert_ok()
    """

    pbx: Kamailio
    user: str
    uas: Sipp
    registrar: Sipp

    @classmethod
    def create(
        cls,
        pbx: Kamailio,
        user: str,
        scenario: str,
        workdir: Path,
        *,
        local_ip: str,
        params: Mapping[str, object] | None = None,
        transport: str = "udp",
        calls: int = 1,
        timeout: float = 30.0,
        password: str | None = None,
    ) -> RegisteredSipp:
        uas = Sipp(
            scenario,
            workdir,
            local_ip=local_ip,
            params=dict(params or {}),
            service=user,
            transport=transport,
            calls=calls,
            timeout=timeout,
        )
        registrar = Sipp(
            "register",
            workdir,
            local_ip=local_ip,
            remote=pbx.address,
            service=user,
            auth=(user, password if password is not None else pbx.password(user)),
            params={
                "hold_ms": int((timeout + 10) * 1000),
                "contact_host": uas.local_ip,
                "contact_port": uas.local_port,
                "contact_transport": transport,
                "domain": pbx.domain,
            },
            timeout=timeout + 15,
            name=f"{uas.name}-register",
        )
        return cls(pbx, user, uas, registrar)

    def start(self, *, timeout: float = 5.0) -> RegisteredSipp:
        """Start both and return once the PBX has the UAS's address as ``user``'s contact."""
        self.uas.start()
        self.registrar.start()
        try:
            self.pbx.wait_registered(self.user, timeout=timeout, contact=self.contact)
        except TimeoutError:
            result = self.registrar.terminate()
            self.uas.terminate()
            raise TimeoutError(f"{self.user} did not register:\n{result.describe()}") from None
        return self

    @property
    def contact(self) -> str:
        return f"@{self.uas.local_ip}:{self.uas.local_port}"

    def _unregister(self) -> None:
        """End the registering process and drop its binding at the PBX, so that a later call to
        ``user`` is not forked to this finished UAS."""
        self.registrar.terminate()
        if self.pbx.is_running:
            self.pbx.remove_contacts(self.user, contact=self.contact)

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for the UAS to finish, then unregister it. Returns the UAS's result."""
        try:
            return self.uas.wait(timeout)
        finally:
            self._unregister()

    async def wait_async(self, timeout: float | None = None) -> SippResult:
        try:
            return await self.uas.wait_async(timeout)
        finally:
            self._unregister()

    def terminate(self) -> SippResult:
        self._unregister()
        return self.uas.terminate()
