"""Call load: sipp callers through Kamailio into the daemon at a rising call rate, agents accepting.

    python -m benchmarks.load                                   # steps 10 … 300 calls/s, 10 s each; hold 200, 1000
    python -m benchmarks.load --steps 50,100,200 --seconds 20 --hold 500
    python -m benchmarks.load --smoke                           # 5 calls/s for 3 s, 20 calls held (< 30 s)

The bed (:mod:`benchmarks._bed`): Kamailio (the e2e harness's) as the PBX; the daemon as a child
process with 50 ms prompts and one hotline with one agent number; the agent is one sipp UAS
registered with the PBX that answers every call at once (many calls at a time) and presses 1 as
an RFC 4733 event 100 ms after the ACK (``--confirm info``: as a SIP INFO instead); callers are
sipp UACs (``uac_call_quiet``: no RTP of their own) on the PBX's trusted gateway address, each
call held for ``--call-ms`` after the answer, then ended with BYE.  The media timeout is an hour
(callers are silent).  By default the daemon is pinned to CPU 1 and everything else — Kamailio,
every sipp, this script — to CPU 0 (``--no-pin``: no pinning).

Per step (a new sipp at ``-r RATE`` for ``--seconds``, then the calls drain): offered and
achieved calls/s, failed calls (sipp's failed count + calls the call log does not show as
connected + calls it lacks), caller INVITE → 200 OK (sipp's ``-trace_rtt``) and caller INVITE →
agent bridged (call log: ``bridged - started``) p50/p95/p99 in ms, the daemon's CPU % over the
placing window (utime+stime from /proc; one core = 100 %), of its event-loop thread alone (the
rest is the call-log writer thread), its CPU ms per call over the whole step, the CPU of Kamailio
and sipp, and how busy each CPU of the machine was (everyone's processes: the machine is shared).
Steps stop at the first with failures (``--all``: run them all).  The figure the goal asks for is
the highest step with zero failures.

Then the memory per bridged call: ``--hold N`` calls are set up and held bridged; the daemon's
RSS (/proc VmRSS) at that plateau minus before, divided by the bridged calls counted in the call
log (and in ``sipcallhunt_calls_active`` when the metrics endpoint exists).

``--py-spy DIR`` records the daemon's stacks with py-spy (``pip install py-spy``; the program
named by ``$PY_SPY``, else ``py-spy`` on the PATH) during each step's placing window, as
collapsed stacks in ``DIR/daemon-RATEcps.txt``.  Exit status 1 when the smoke run has a failure.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks._bed import LoadBed, busy_percent, cpu_busy, percentile
from benchmarks.machine import print_header
from tests.e2e.harness import RtpStream, info_dtmf_requests

HOTLINE = "hotline"
AGENT = "agent1"


def _agent_scenario(bed: LoadBed, confirm: str) -> tuple[str, dict[str, object]]:
    if confirm == "info":
        return "uas_answer_info", {"info": info_dtmf_requests("1"), "call_ms": 3_600_000}
    pcap = RtpStream().silence(0.1).digit("1").write_pcap(bed.workdir / "agent-confirm.pcap")
    return "uas_answer_dtmf", {"pcap": pcap, "call_ms": 3_600_000}


def _wait_drained(bed: LoadBed, expected: int, *, timeout: float) -> list[Any]:
    """Poll the call log until ``expected`` calls are there and ended (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        calls = bed.calls()
        if len(calls) >= expected and all(c.ended is not None and c.attempts_open == 0 for c in calls):
            return calls
        if time.monotonic() >= deadline:
            return calls
        time.sleep(0.25)


def run_step(bed: LoadBed, rate: float, seconds: float, call_ms: int, py_spy: Path | None = None) -> dict[str, Any]:
    before_calls = len(bed.calls())
    count = max(1, round(rate * seconds))
    start = bed.sample()
    machine_start = cpu_busy()
    peers_start = bed.peers_cpu()
    profiler = None
    if py_spy is not None:
        py_spy.mkdir(parents=True, exist_ok=True)
        profiler = subprocess.Popen(
            [os.environ.get("PY_SPY", "py-spy"), "record", "--pid", str(bed.daemon_pid), "--duration",
             f"{max(1, int(seconds) - 1)}", "--format", "raw", "--nonblocking",
             "--output", str(py_spy / f"daemon-{rate:g}cps.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    caller = bed.callers(
        HOTLINE,
        "uac_call_quiet",
        rate=rate,
        calls=count,
        params={"call_ms": call_ms},
        timeout=seconds + call_ms / 1000 + 60,
        limit=count,
    )
    # the placing window: sample the daemon's CPU over it
    time.sleep(seconds)
    placing = bed.sample()
    machine = busy_percent(machine_start, cpu_busy())
    peers = bed.peers_cpu() - peers_start
    result = caller.wait()
    calls = _wait_drained(bed, before_calls + count, timeout=30)[before_calls:]
    end = bed.sample()
    if profiler is not None:
        profiler.wait(timeout=60)
    stats = caller.stats()
    sipp_failed = stats.failed if stats else count
    sipp_ok = stats.successful if stats else 0
    not_connected = [c for c in calls if c.outcome != "connected"]
    missing = max(0, count - len(calls))
    answered = sorted(c.answered for c in calls if c.answered is not None)
    achieved = (len(answered) - 1) / (answered[-1] - answered[0]) if len(answered) > 1 else math.nan
    setup = caller.response_times_ms()
    bridged = [1000 * (c.bridged - c.started) for c in calls if c.bridged is not None]
    outcomes: dict[str, int] = {}
    for c in not_connected:
        outcomes[str(c.outcome)] = outcomes.get(str(c.outcome), 0) + 1
    return {
        "offered": rate,
        "achieved": achieved,
        "calls": count,
        "sipp_ok": sipp_ok,
        "failed": sipp_failed + len(not_connected) + missing,
        "setup_p50": percentile(setup, 50),
        "setup_p95": percentile(setup, 95),
        "setup_p99": percentile(setup, 99),
        "bridge_p50": percentile(bridged, 50),
        "bridge_p95": percentile(bridged, 95),
        "bridge_p99": percentile(bridged, 99),
        "cpu_%": 100 * (placing.cpu - start.cpu) / (placing.time - start.time),
        "loop_%": 100 * (placing.main_cpu - start.main_cpu) / (placing.time - start.time),
        "cpu_ms/call": 1000 * (end.cpu - start.cpu) / count,
        "peers_%": 100 * peers / (placing.time - start.time),
        "cpu0_%": machine.get(0, math.nan),
        "cpu1_%": machine.get(1, math.nan),
        "rss_MiB": end.rss_kib / 1024,
        "detail": {
            "sipp_exit": result.exit_code,
            "sipp_failed": sipp_failed,
            "not_connected": outcomes,
            "missing_rows": missing,
            "sipp_errors": caller.error_lines(3) if sipp_failed else [],
        },
    }


def _active_bridged(bed: LoadBed) -> int:
    return sum(1 for c in bed.calls() if c.bridged is not None and c.ended is None)


def hold_calls(bed: LoadBed, count: int, rate: float, settle: float = 4.0) -> dict[str, Any]:
    """On a fresh daemon warmed up by a few calls, set up ``count`` calls at ``rate`` and hold
    them bridged; RSS per bridged call."""
    bed.restart_daemon()
    warmup = bed.callers(HOTLINE, "uac_call_quiet", rate=20, calls=20, params={"call_ms": 200}, timeout=60)
    warmup.wait()
    before_calls = len(_wait_drained(bed, len(bed.calls()), timeout=30))
    time.sleep(1.0)
    base = bed.sample()
    ramp = count / rate
    hold_ms = int((ramp + settle + 6) * 1000)
    caller = bed.callers(
        HOTLINE,
        "uac_call_quiet",
        rate=rate,
        calls=count,
        params={"call_ms": hold_ms},
        timeout=hold_ms / 1000 + ramp + 60,
        limit=count,
    )
    deadline = time.monotonic() + ramp + 30
    active = 0
    while time.monotonic() < deadline:
        active = _active_bridged(bed)
        if active >= count:
            break
        if not caller.is_running:
            break
        time.sleep(0.5)
    time.sleep(settle)  # let the hunt's leftovers (ended attempts, closed legs) go
    plateau = bed.sample()
    active = _active_bridged(bed)
    metrics = bed.metrics()
    gauge = metrics.total("sipcallhunt_calls_active") if metrics else math.nan
    legs = metrics.value("sipcallhunt_media_legs") if metrics else math.nan
    caller.wait(timeout=hold_ms / 1000 + ramp + 70)
    calls = _wait_drained(bed, before_calls + count, timeout=60)[before_calls:]
    after = bed.sample()
    stats = caller.stats()
    failed = (stats.failed if stats else count) + sum(1 for c in calls if c.outcome != "connected")
    failed += max(0, count - len(calls))
    delta = plateau.rss_kib - base.rss_kib
    return {
        "held": count,
        "bridged": active,
        "calls_active": gauge,
        "media_legs": legs,
        "rss_before_MiB": base.rss_kib / 1024,
        "rss_held_MiB": plateau.rss_kib / 1024,
        "rss_after_MiB": after.rss_kib / 1024,
        "KiB/call": delta / active if active else math.nan,
        "fds_held": plateau.fds,
        "failed": failed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="10,25,50,100,150,200,300", help="call rates (calls/s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="placing time per step")
    parser.add_argument("--call-ms", type=int, default=2000, help="how long a caller stays after the answer")
    parser.add_argument("--hold", default="200,1000", help="bridged calls to hold for the memory figure")
    parser.add_argument("--hold-rate", type=float, default=100.0, help="call rate while setting up held calls")
    parser.add_argument("--confirm", choices=("rfc4733", "info"), default="rfc4733", help="how the agent presses 1")
    parser.add_argument("--all", action="store_true", help="go on after a step with failures")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the daemon and the peers to CPUs")
    parser.add_argument("--log-level", default="INFO", help="the daemon's log level")
    parser.add_argument(
        "--py-spy", metavar="DIR", type=Path, help="record the daemon with py-spy during each step (raw stacks in DIR)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, call log)")
    parser.add_argument("--smoke", action="store_true", help="5 calls/s for 3 s and 20 held calls")
    args = parser.parse_args(argv)
    if args.smoke:
        steps, seconds, holds, hold_rate = [5.0], 3.0, [20], 10.0
    else:
        steps = [float(x) for x in args.steps.split(",") if x]
        seconds, holds, hold_rate = args.seconds, [int(x) for x in args.hold.split(",") if x], args.hold_rate
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    print_header("load: calls/s through Kamailio into the daemon, agents accepting")
    if pin:
        print("# pinned: the daemon on CPU 1; Kamailio, sipp callers and agents and this script on CPU 0")
    else:
        print("# not pinned: the daemon shares the CPUs with Kamailio and sipp")
    print(
        f"# {seconds:g} s per step, calls held {args.call_ms} ms after the answer; agent confirms by {args.confirm};"
        f" prompts 50 ms; daemon log level {args.log_level}"
    )
    failures = 0
    with LoadBed.open(
        "load", (HOTLINE, AGENT), daemon_cpu=1 if pin else None, peer_cpu=0 if pin else None, keep=args.keep
    ) as bed:
        hotline = {
            "name": "load",
            "account": HOTLINE,
            "rounds": 1,
            "confirm_timeout": 5.0,
            "agent": [{"number": AGENT, "ring_timeout": 10}],
        }
        bed.start_daemon([hotline], accounts=[HOTLINE], rtp_ports=10000, log_level=args.log_level)
        scenario, params = _agent_scenario(bed, args.confirm)
        bed.agent(AGENT, scenario, params=params)
        print(f"# work dir {bed.workdir}; metrics endpoint: {'yes' if bed.metrics_address else 'no'}")
        columns = ["offered", "achieved", "calls", "failed", "setup_p50", "setup_p95", "setup_p99",
                   "bridge_p50", "bridge_p95", "bridge_p99", "cpu_%", "loop_%", "cpu_ms/call", "peers_%", "cpu0_%",
                   "cpu1_%",
                   "rss_MiB"]  # fmt: skip
        print("# setup = caller INVITE -> 200 OK (ms, sipp's clock); bridge = INVITE -> agent bridged (ms, call log);")
        print("# cpu_% = the daemon's CPU over the placing window (100 = one core), loop_% = its event-loop thread's")
        print("# (the rest is the call-log writer thread); peers_% = Kamailio's and sipp's;")
        print("# cpuN_% = how busy CPU N was")
        print("# (every process on the machine, not only this bed's)")
        print(" ".join(f"{c:>11}" for c in columns))
        best = 0.0
        for rate in steps:
            row = run_step(bed, rate, seconds, args.call_ms, args.py_spy)
            _print_row(columns, row)
            if row["failed"]:
                print(f"#   failures: {row['detail']}", flush=True)
                failures += row["failed"]
                if not args.all:
                    break
            else:
                best = max(best, rate)
        print(f"# highest step with zero failed calls: {best:g} calls/s")
        print()
        print("# memory per bridged call (RSS at the plateau minus before, over the bridged calls)")
        hold_columns = ["held", "bridged", "calls_active", "media_legs", "rss_before_MiB", "rss_held_MiB",
                        "rss_after_MiB", "KiB/call", "fds_held", "failed"]  # fmt: skip
        print(" ".join(f"{c:>14}" for c in hold_columns))
        held_rows = []
        for count in holds:
            row = hold_calls(bed, count, hold_rate)
            held_rows.append(row)
            _print_row(hold_columns, row, width=14)
            failures += row["failed"]
        if len(held_rows) >= 2 and held_rows[-1]["bridged"] > held_rows[0]["bridged"]:
            a, b = held_rows[0], held_rows[-1]
            marginal = 1024 * ((b["rss_held_MiB"] - b["rss_before_MiB"]) - (a["rss_held_MiB"] - a["rss_before_MiB"]))
            print(f"# marginal: {marginal / (b['bridged'] - a['bridged']):.1f} KiB per bridged call "
                  f"between {a['bridged']} and {b['bridged']} calls")  # fmt: skip
        problems = bed.log_problems()
        if problems:
            print("# daemon log errors:")
            for line in problems:
                print(f"#   {line}")
        assert bed.daemon is not None
        bed.daemon.stop(timeout=30)
    if args.smoke and failures:
        print(f"# smoke run FAILED: {failures} failed calls")
        return 1
    return 0


def _print_row(columns: list[str], row: dict[str, Any], width: int = 11) -> None:
    cells = []
    for c in columns:
        value = row.get(c, "")
        if isinstance(value, float):
            cells.append("nan".rjust(width) if math.isnan(value) else f"{value:>{width}.1f}")
        else:
            cells.append(f"{value!s:>{width}}")
    print(" ".join(cells), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
