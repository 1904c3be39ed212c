"""The test bed shared by :mod:`benchmarks.load` and :mod:`benchmarks.soak`.

Kamailio (the e2e harness's) is the PBX; the daemon runs as a child process
(``python -m sipcallhunt run -c FILE``) with prompts of a few tens of milliseconds; callers are
sipp UACs on the PBX's trusted gateway address (routed to the hotline without a challenge),
agents are sipp UASs registered with the PBX.  The sipp processes here run without message
traces (:class:`QuietSipp`): at hundreds of calls per second the trace files would cost more
CPU than the calls.  Each sipp writes its statistics (``-trace_stat``) and, for callers, every
call's INVITE → 200 OK time (``-trace_rtt``).  The daemon's own figures come from /proc (CPU,
RSS, descriptors), its call log, and its ``/metrics`` endpoint.

Everything uses addresses from ``$SIPCALLHUNT_E2E_NETWORK`` (locked per address, as the e2e
tests do) and is stopped by PID when the bed closes.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from tests.e2e.harness import Daemon, RegisteredSipp, Sipp, TestBed, tone, write_wav
from tests.e2e.harness.metrics import Metrics, scrape
from tests.e2e.harness.ports import LoopbackPool, free_port, port_is_free, toml_dumps

__all__ = [
    "CallRow",
    "LoadBed",
    "ProcSample",
    "QuietSipp",
    "busy_percent",
    "cpu_busy",
    "SippStats",
    "percentile",
    "proc_sample",
]

NETWORK = os.environ.get("SIPCALLHUNT_E2E_NETWORK", "127.0.3.0/24")

PROMPT_KEYS = (
    "intro",
    "enter_pin",
    "wrong_pin",
    "goodbye",
    "please_hold",
    "hold_music",
    "no_agent",
    "forwarding",
    "whisper",
    "hotline_name",
    "pin_locked",
)


# --- sipp without message traces -----------------------------------------------------------------


@attrs.frozen
class SippStats:
    """The last row of sipp's ``-trace_stat`` file (cumulative counters)."""

    created: int
    successful: int
    failed: int
    current: int
    elapsed: float

    @classmethod
    def parse(cls, text: str) -> SippStats | None:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            return None
        head = lines[0].rstrip(";").split(";")
        row = dict(zip(head, lines[-1].rstrip(";").split(";"), strict=False))

        def number(key: str) -> int:
            try:
                return int(row.get(key, "0") or 0)
            except ValueError:
                return 0

        elapsed = row.get("ElapsedTime(C)", "00:00:00")
        seconds = 0.0
        with contextlib.suppress(ValueError):
            h, m, s = elapsed.split(":")[:3]
            seconds = int(h) * 3600 + int(m) * 60 + float(s)
        created = number("TotalCallCreated") or number("IncomingCall(C)") + number("OutgoingCall(C)")
        return cls(created, number("SuccessfulCall(C)"), number("FailedCall(C)"), number("CurrentCall"), seconds)


@attrs.define(eq=False)
class QuietSipp(Sipp):
    """A :class:`Sipp` without the message trace, with statistics, a call rate and a CPU.

    ``rate``: new calls per second (``-r``); ``limit``: the most calls open at once (``-l``);
    ``cpu``: run pinned to that CPU (``taskset``)."""

    rate: float | None = None
    limit: int | None = None
    cpu: int | None = None

    def argv(self) -> list[str]:
        argv = super().argv()
        for flag in ("-trace_msg", "-message_file"):
            index = argv.index(flag)
            del argv[index : index + (2 if flag == "-message_file" else 1)]
        argv += ["-trace_stat", "-stf", str(self._path(".stat.csv")), "-fd", "1"]
        if self.remote is not None:
            argv += ["-trace_rtt", "-rtt_freq", "1"]
        if self.rate is not None:
            argv += _rate_args(self.rate)
        if self.limit is not None:
            argv += ["-l", str(self.limit)]
        if self.cpu is not None:
            argv = ["taskset", "-c", str(self.cpu), *argv]
        return argv

    def stats(self) -> SippStats | None:
        try:
            return SippStats.parse(self._path(".stat.csv").read_text(errors="replace"))
        except FileNotFoundError:
            return None

    def response_times_ms(self) -> list[float]:
        """INVITE → 200 OK of every successful call, in ms (sipp's ``-trace_rtt`` file)."""
        times: list[float] = []
        for path in self.workdir.glob(f"{self.scenario_path.stem}_*_rtt.csv"):
            for line in path.read_text(errors="replace").splitlines()[1:]:
                parts = line.split(";")
                with contextlib.suppress(ValueError, IndexError):
                    times.append(float(parts[1]))
        return times

    def error_lines(self, count: int = 10) -> list[str]:
        try:
            text = self._path(".errors.log").read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line[:200] for line in text.splitlines() if line.strip()][-count:]


def _rate_args(rate: float) -> list[str]:
    """sipp's ``-r CALLS -rp MS`` for ``rate`` calls per second (sipp takes whole calls per period)."""
    for period in (1000, 2000, 4000, 5000, 10000):
        calls = rate * period / 1000
        if abs(calls - round(calls)) < 1e-9 and round(calls) > 0:
            return ["-r", str(round(calls)), "-rp", str(period)]
    return ["-r", "1", "-rp", str(max(1, round(1000 / rate)))]


# --- processes seen through /proc ----------------------------------------------------------------


@attrs.frozen
class ProcSample:
    time: float  # monotonic
    cpu: float  # utime + stime, seconds (every thread)
    rss_kib: int
    fds: int
    threads: int
    main_cpu: float  # utime + stime of the main thread (the event loop), seconds


def _stat_cpu(path: str) -> float:
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> ProcSample:
    cpu = _stat_cpu(f"/proc/{pid}/stat")
    main_cpu = _stat_cpu(f"/proc/{pid}/task/{pid}/stat")
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return ProcSample(time.monotonic(), cpu, rss, fds, threads, main_cpu)


def cpu_busy() -> dict[int, tuple[float, float]]:
    """Per CPU: (busy, total) jiffies from /proc/stat (every process on the machine)."""
    result = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [float(x) for x in fields[:8]]
                idle = values[3] + values[4]  # idle + iowait
                result[int(name[3:])] = (sum(values) - idle, sum(values))
    return result


def busy_percent(before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]) -> dict[int, float]:
    return {
        cpu: 100 * (after[cpu][0] - before[cpu][0]) / max(1e-9, after[cpu][1] - before[cpu][1])
        for cpu in before
        if cpu in after
    }


# --- the call log --------------------------------------------------------------------------------


@attrs.frozen
class CallRow:
    call_id: str
    hotline: str
    sip_call_id: str
    started: float
    answered: float | None
    bridged: float | None
    ended: float | None
    outcome: str | None
    attempts: int
    attempts_open: int


def read_calls(path: Path) -> list[CallRow]:
    """Every call of the call log with its attempt counts (plain SQL: fast for thousands of rows)."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute(
            "SELECT c.call_id, c.hotline, c.sip_call_id, c.started, c.answered, c.bridged, c.ended, c.outcome,"
            " (SELECT COUNT(*) FROM attempts a WHERE a.call_id = c.call_id),"
            " (SELECT COUNT(*) FROM attempts a WHERE a.call_id = c.call_id AND a.ended IS NULL)"
            " FROM calls c ORDER BY c.started"
        ).fetchall()
    finally:
        db.close()
    return [CallRow(*row) for row in rows]


# --- the bed -------------------------------------------------------------------------------------


def write_prompts(folder: Path, seconds: float) -> dict[str, str]:
    """A short tone per prompt (config key → path); hold music a little longer, looped."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for index, name in enumerate(PROMPT_KEYS):
        length = max(seconds, 0.2) if name == "hold_music" else seconds
        files[name] = str(write_wav(folder / f"{name}.wav", tone(300 + 50 * index, length)))
    return files


def _rtp_range(host: str, count: int) -> tuple[int, int]:
    """``count`` ports on ``host`` (the daemon's own address) from a fixed region; a sample is probed."""
    for first in range(20000, 60000 - count, 2000):
        last = first + count - 1
        probe = range(first, last + 1, max(1, count // 50))
        if all(port_is_free(host, port, udp=True, tcp=False) for port in probe):
            return first, last
    raise OSError(f"no {count} free RTP ports on {host}")


@attrs.define(eq=False)
class LoadBed:
    """A PBX, a daemon and its sipp peers for one benchmark run.

    ``daemon_cpu``/``peer_cpu``: pin the daemon and everything else (Kamailio, sipp) to these
    CPUs, or None to let the scheduler place them."""

    workdir: Path
    users: Sequence[str]
    daemon_cpu: int | None = None
    peer_cpu: int | None = None
    keep: bool = False
    bed: TestBed = attrs.field(init=False)
    daemon: Daemon | None = attrs.field(default=None, init=False)
    calllog: Path | None = attrs.field(default=None, init=False)
    metrics_address: tuple[str, int] | None = attrs.field(default=None, init=False)
    host: str = attrs.field(default="", init=False)
    _stops: contextlib.ExitStack = attrs.field(factory=contextlib.ExitStack, init=False)
    _peers: list[Sipp] = attrs.field(factory=list, init=False)
    _daemon_args: tuple[Path, dict[str, str], tuple[str, ...]] | None = attrs.field(default=None, init=False)

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, name: str, users: Sequence[str], *, daemon_cpu: int | None, peer_cpu: int | None, keep: bool = False
    ) -> Iterator[LoadBed]:
        workdir = Path(tempfile.mkdtemp(prefix=f"sipcallhunt-{name}-"))
        bed = cls(workdir, users, daemon_cpu, peer_cpu, keep)
        affinity = os.sched_getaffinity(0)
        try:
            with LoopbackPool(NETWORK).lease() as lease:
                # Kamailio keeps each transaction for seconds after it ends: 64 MB of shared
                # memory runs out near 200 calls/s (500 "cannot allocate shmem")
                bed.bed = TestBed(workdir, lease, users=tuple((u, f"{u}pw") for u in users), pbx_shm_mb=512)
                try:
                    if peer_cpu is not None:
                        os.sched_setaffinity(0, {peer_cpu})  # Kamailio and sipp inherit it
                    with bed._stops:  # the sipp peers first, then the daemon and the PBX
                        yield bed
                finally:
                    bed.bed.close()
                    os.sched_setaffinity(0, affinity)
        finally:
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)

    # --- the daemon ---------------------------------------------------------------------------

    def start_daemon(
        self,
        hotlines: Sequence[Mapping[str, Any]],
        *,
        accounts: Sequence[str],
        prompt_seconds: float = 0.05,
        media_timeout: float = 3600,
        rtp_ports: int = 6000,
        log_level: str = "INFO",
        metrics: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> Daemon:
        """Write the config (one account per PBX user in ``accounts``; each hotline names its
        account), start the daemon and wait for every registration."""
        pbx = self.bed.pbx
        self.host = host = self.bed.address()
        prompts = write_prompts(self.workdir / "prompts", prompt_seconds)
        sip: dict[str, Any] = {
            "listen": f"{host}:{free_port(host)}",
            "rtp_ports": list(_rtp_range(host, rtp_ports)),
            "media_timeout": media_timeout,
            "transports": ["udp"],
        }
        account_tables = [
            {
                "name": user,
                "registrar": f"sip:{pbx.host}:{pbx.port}",
                "username": user,
                "password": self.bed.password(user),
            }
            for user in accounts
        ]
        hotline_tables = []
        for hotline in hotlines:
            table = {**prompts, **hotline}
            table["agent"] = [{"number": a} if isinstance(a, str) else dict(a) for a in table.pop("agent", [])]
            hotline_tables.append(table)
        self.calllog = self.workdir / "calls.sqlite3"
        data: dict[str, Any] = {
            "sip": sip,
            "account": account_tables,
            "hotline": hotline_tables,
            "calllog": {"path": str(self.calllog)},
            "logging": {"level": log_level},
        }
        if metrics:
            self.metrics_address = (host, free_port(host))
            data["metrics"] = {"listen": f"{host}:{self.metrics_address[1]}"}
        config = self.workdir / "sipcallhunt.toml"
        config.write_text(toml_dumps(data), encoding="utf-8")
        config.chmod(0o600)  # it holds a password (the daemon warns otherwise)
        environment = dict(os.environ)
        environment.update(env or {})
        self._daemon_args = (config, environment, tuple(accounts))
        return self.restart_daemon()

    def restart_daemon(self) -> Daemon:
        """Stop the daemon (if running) and start a fresh one with the same config; wait for
        every registration."""
        assert self._daemon_args is not None, "start_daemon() first"
        config, environment, accounts = self._daemon_args
        if self.daemon is not None:
            self.daemon.stop(timeout=30)
            for user in accounts:
                self.bed.pbx.wait_unregistered(user, timeout=10)
        daemon = self.bed.daemon(config, env=environment)
        daemon.start()
        if self.daemon_cpu is not None and daemon.pid is not None:
            os.sched_setaffinity(daemon.pid, {self.daemon_cpu})
        for user in accounts:
            daemon.wait_registered(self.bed.pbx, user, timeout=20)
        self.daemon = daemon
        return daemon

    @property
    def daemon_pid(self) -> int:
        assert self.daemon is not None and self.daemon.pid is not None
        return self.daemon.pid

    def sample(self) -> ProcSample:
        return proc_sample(self.daemon_pid)

    def peers_cpu(self) -> float:
        """CPU seconds (utime+stime) of the running peers: every process in the process groups
        of Kamailio and of the sipp callers and agents (each leads its own group)."""
        groups = {p.pid for p in self._peers if p.is_running}
        pbx = self.bed.pbx.pid
        if pbx is not None:
            groups.add(pbx)
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in groups:
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def metrics(self) -> Metrics | None:
        if self.metrics_address is None:
            return None
        try:
            return scrape(*self.metrics_address, timeout=5.0)
        except OSError:
            return None

    def calls(self) -> list[CallRow]:
        assert self.calllog is not None
        return read_calls(self.calllog)

    # --- sipp peers ---------------------------------------------------------------------------

    def agent(
        self,
        user: str,
        scenario: str,
        *,
        params: Mapping[str, object] | None = None,
        calls: int = 1_000_000,
        timeout: float = 3600,
    ) -> RegisteredSipp:
        """A sipp UAS registered as ``user``, answering up to ``calls`` calls (concurrently too)."""
        ip = self.bed.address()
        uas = QuietSipp(
            scenario,
            self.workdir,
            local_ip=ip,
            params=dict(params or {}),
            service=user,
            calls=calls,
            timeout=timeout,
            cpu=self.peer_cpu,
        )
        pbx = self.bed.pbx
        registrar = Sipp(
            "register",
            self.workdir,
            local_ip=ip,
            remote=pbx.address,
            service=user,
            auth=(user, pbx.password(user)),
            params={
                "hold_ms": int((timeout + 10) * 1000),
                "contact_host": uas.local_ip,
                "contact_port": uas.local_port,
                "contact_transport": "udp",
                "domain": pbx.domain,
            },
            timeout=timeout + 15,
            name=f"{uas.name}-register",
        )
        agent = RegisteredSipp(pbx, user, uas, registrar)
        self._peers.append(uas)
        self._stops.callback(lambda: agent.terminate() if agent.registrar.pid is not None else None)
        return agent.start(timeout=10)

    def callers(
        self,
        to: str,
        scenario: str,
        *,
        rate: float,
        calls: int,
        params: Mapping[str, object] | None = None,
        timeout: float = 600,
        limit: int | None = None,
    ) -> QuietSipp:
        """A started sipp UAC placing ``calls`` calls to ``to`` at ``rate`` per second from the
        PBX's trusted gateway address (a foreign caller; no challenge)."""
        pbx = self.bed.pbx
        caller = QuietSipp(
            scenario,
            self.workdir,
            local_ip=self.bed.gateway_ip,
            remote=pbx.address,
            service=to,
            params=dict(params or {}),
            calls=calls,
            timeout=timeout,
            rate=rate,
            limit=limit or calls,
            cpu=self.peer_cpu,
        )
        self._stops.callback(lambda: caller.terminate() if caller.is_running else None)
        caller.start()
        self._peers.append(caller)
        return caller

    def log_problems(self, count: int = 10) -> list[str]:
        """Lines of the daemon's log at ERROR or with a traceback."""
        assert self.daemon is not None
        lines = self.daemon.log_text().splitlines()
        return [line for line in lines if " ERROR " in line or "Traceback" in line or " CRITICAL " in line][:count]


# --- figures -------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
