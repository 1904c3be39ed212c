"""Soak: a steady mix of calls ending in every way for ``--minutes``; afterwards nothing is left.

    python -m benchmarks.soak                    # 10 minutes at 6 calls/s in all
    python -m benchmarks.soak --minutes 30 --rate 12
    python -m benchmarks.soak --smoke            # about 30 s

The bed is :mod:`benchmarks._bed`'s (Kamailio as the PBX, the daemon as a child process with 50 ms
prompts, sipp callers and agents); the media timeout is 2 s, so every caller and agent that
should stay sends RTP (sipp ``play_pcap_audio``).  One hotline per way a call can end, each with
its own PBX extension and sipp caller at ``--rate / 6`` calls per second:

  connected     agent presses 1, talk, the caller hangs up            → connected
  agent_hangup  agent presses 1, talk, the agent hangs up             → connected
  abandon       the caller hangs up while the agent rings (CANCEL)     → caller_hung_up
  no_agent      busy (486), declined (603), no answer (CANCEL): the
                announcement, then BYE                                → no_agent
  wrong_pin     the caller types a wrong PIN (RFC 4733): goodbye, BYE   → pin_failed
  silent        the caller sends no RTP while the agent rings           → failed (media timeout)

Every ``--sample`` seconds the daemon's RSS, open descriptors and threads (/proc) are printed,
with the metrics endpoint's asyncio tasks, active calls and media legs when it exists.  After the
callers finish and the calls drain, the verdict checks: no active call and no media leg, open
descriptors and asyncio tasks back to the start (± a small tolerance), the RSS growth from the end
of the first quarter to the end below ``--rss-growth`` MiB (the slope is printed in KiB/min),
one finished call-log row per call placed with the outcome its hotline expects, every attempt
ended, no sipp failure and no ERROR in the daemon's log.  Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import Counter
from typing import Any

import attrs

from benchmarks._bed import LoadBed, ProcSample, QuietSipp
from benchmarks.machine import print_header
from tests.e2e.harness import RtpStream, tone

MEDIA_TIMEOUT = 2.0
FD_TOLERANCE = 4
TASK_TOLERANCE = 2

AGENTS = ("acc", "hup", "ring", "busy", "decl")


@attrs.frozen
class Case:
    name: str
    expected: str
    scenario: str
    params: dict[str, Any]
    agents: list[dict[str, Any]]
    extra: dict[str, Any] = attrs.field(factory=dict)


def _cases(voice: str, wrong_pin: str) -> list[Case]:
    ringing = {"number": "ring", "ring_timeout": 30}
    return [
        Case("connected", "connected", "uac_call", {"pcap": voice, "call_ms": 2500}, [{"number": "acc"}]),
        Case("agent_hangup", "connected", "uac_call", {"pcap": voice, "call_ms": 10000}, [{"number": "hup"}]),
        Case("abandon", "caller_hung_up", "uac_call", {"pcap": voice, "call_ms": 1500}, [ringing]),
        Case(
            "no_agent",
            "no_agent",
            "uac_call",
            {"pcap": voice, "call_ms": 15000},
            [{"number": "busy"}, {"number": "decl"}, {"number": "ring", "ring_timeout": 1}],
        ),
        Case(
            "wrong_pin",
            "pin_failed",
            "uac_call",
            {"pcap": wrong_pin, "call_ms": 15000},
            [{"number": "acc"}],
            # Every call has its own number (no lockout), and no hotline-wide limit on failed PIN calls
            # (it would refuse all but 10 a minute with 403).  The guard remembers each failing number
            # for pin_lockout_time (900 s by default: longer than the soak, a steady growth by design);
            # 60 s lets its table reach its steady size early, so that RSS growth means a leak.
            {"pins": ["2468"], "pin_attempts": 1, "pin_timeout": 3, "pin_rate_limit": 0, "pin_lockout_time": 60},
        ),
        Case("silent", "failed", "uac_call_quiet", {"call_ms": 15000}, [ringing]),
    ]


def _rss_slope_kib_per_min(samples: list[ProcSample]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return math.nan
    ts = [s.time for s in samples]
    ys = [s.rss_kib for s in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return math.nan
    return 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long calls are placed")
    parser.add_argument("--rate", type=float, default=6.0, help="calls per second in all (split over the cases)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--rss-growth", type=float, default=8.0, help="MiB allowed from the first quarter's end on")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the daemon and the peers to CPUs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, call log)")
    parser.add_argument("--smoke", action="store_true", help="about 30 s: 12 s of calls at 3 calls/s")
    args = parser.parse_args(argv)
    seconds = 12.0 if args.smoke else 60 * args.minutes
    rate = 3.0 if args.smoke else args.rate
    sample_every = 2.0 if args.smoke else args.sample
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    print_header("soak: a steady mix of calls ending in every way, then nothing left over")
    print(
        f"# {seconds:g} s of calls at {rate:g} calls/s in all; media timeout {MEDIA_TIMEOUT:g} s; "
        + ("daemon pinned to CPU 1, the peers to CPU 0" if pin else "not pinned")
    )
    users = ["h_" + c for c in ("connected", "agent_hangup", "abandon", "no_agent", "wrong_pin", "silent")]
    problems: list[str] = []
    with LoadBed.open(
        "soak", (*users, *AGENTS), daemon_cpu=1 if pin else None, peer_cpu=0 if pin else None, keep=args.keep
    ) as bed:
        voice = str(RtpStream().audio(tone(440, 12.0)).write_pcap(bed.workdir / "caller.pcap"))
        agent_voice = RtpStream().silence(0.1).digit("1").audio(tone(880, 12.0))
        agent_pcap = str(agent_voice.write_pcap(bed.workdir / "agent.pcap"))
        wrong_pin = RtpStream().silence(0.3).digits("1357").audio(tone(440, 12.0))
        cases = _cases(voice, str(wrong_pin.write_pcap(bed.workdir / "wrong-pin.pcap")))
        hotlines = [
            {
                "name": case.name,
                "account": "h_" + case.name,
                "rounds": 1,
                "confirm_timeout": 5,
                "agent": case.agents,
                **case.extra,
            }
            for case in cases
        ]
        bed.start_daemon(hotlines, accounts=users, media_timeout=MEDIA_TIMEOUT, rtp_ports=2000)
        bed.agent("acc", "uas_answer_dtmf", params={"pcap": agent_pcap, "call_ms": 60000})
        bed.agent("hup", "uas_answer_dtmf", params={"pcap": agent_pcap, "call_ms": 2000})
        bed.agent("ring", "uas_noanswer")
        bed.agent("busy", "uas_busy")
        bed.agent("decl", "uas_decline")
        print(f"# work dir {bed.workdir}; metrics endpoint: {'yes' if bed.metrics_address else 'no'}")
        time.sleep(1.0)
        start = bed.sample()
        start_metrics = bed.metrics()
        per_case = rate / len(cases)
        callers: dict[str, QuietSipp] = {}
        for case in cases:
            callers[case.name] = bed.callers(
                "h_" + case.name,
                case.scenario,
                rate=per_case,
                calls=max(1, round(per_case * seconds)),
                params={**case.params, "from_user": "c[call_number]"},  # every call its own number
                timeout=seconds + 120,
            )
        columns = ["t_s", "rss_MiB", "fds", "threads", "cpu_%", "tasks", "calls_active", "media_legs", "calls_done"]
        print(" ".join(f"{c:>12}" for c in columns))
        samples: list[ProcSample] = []
        t0 = time.monotonic()
        last = start

        def show(s: ProcSample) -> None:
            nonlocal last
            m = bed.metrics()
            row = {
                "t_s": s.time - t0,
                "rss_MiB": s.rss_kib / 1024,
                "fds": s.fds,
                "threads": s.threads,
                "cpu_%": 100 * (s.cpu - last.cpu) / max(1e-9, s.time - last.time),
                "tasks": m.value("sipcallhunt_asyncio_tasks") if m else math.nan,
                "calls_active": m.total("sipcallhunt_calls_active") if m else math.nan,
                "media_legs": m.value("sipcallhunt_media_legs") if m else math.nan,
                "calls_done": sum(1 for c in bed.calls() if c.ended is not None),
            }
            last = s
            print(" ".join(f"{v:>12.1f}" if isinstance(v, float) else f"{v!s:>12}" for v in row.values()), flush=True)

        while any(c.is_running for c in callers.values()) and time.monotonic() - t0 < seconds + 150:
            time.sleep(sample_every)
            s = bed.sample()
            if s.time - t0 <= seconds:
                samples.append(s)
            show(s)
        placed = 0
        for name, caller in callers.items():
            result = caller.wait(timeout=60)
            stats = caller.stats()
            placed += stats.created if stats else 0
            if stats is None or stats.failed:
                problems.append(
                    f"sipp caller {name}: {stats.failed if stats else '?'} failed calls (exit {result.exit_code}): "
                    + " | ".join(caller.error_lines(3))
                )
        # drain: every call over, the transactions' and the legs' leftovers gone
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            calls = bed.calls()
            m = bed.metrics()
            done = len(calls) >= placed and all(c.ended is not None and c.attempts_open == 0 for c in calls)
            idle = m is None or (m.total("sipcallhunt_calls_active") == 0 and m.value("sipcallhunt_media_legs") == 0)
            if done and idle:
                break
            time.sleep(0.5)
        time.sleep(2.0)
        end = bed.sample()
        end_metrics = bed.metrics()
        show(end)

        # --- the verdict -------------------------------------------------------------------
        calls = bed.calls()
        by_hotline: dict[str, Counter[str]] = {case.name: Counter() for case in cases}
        for c in calls:
            by_hotline.setdefault(c.hotline, Counter())[str(c.outcome)] += 1
        print("# outcomes per hotline (expected first):")
        for case in cases:
            outcomes = by_hotline[case.name]
            print(f"#   {case.name:<13} expects {case.expected:<15} {dict(outcomes)}")
            wrong = sum(n for outcome, n in outcomes.items() if outcome != case.expected)
            if wrong:
                problems.append(f"{case.name}: {wrong} call(s) ended otherwise than {case.expected}: {dict(outcomes)}")
        unfinished = [c for c in calls if c.ended is None or c.outcome is None]
        open_attempts = sum(c.attempts_open for c in calls)
        if len(calls) != placed:
            problems.append(f"{placed} calls placed, {len(calls)} call-log rows")
        if unfinished:
            problems.append(f"{len(unfinished)} call-log row(s) without an end (stuck calls)")
        if open_attempts:
            problems.append(f"{open_attempts} agent attempt(s) without an end")
        if end_metrics is not None:
            if end_metrics.total("sipcallhunt_calls_active"):
                problems.append(f"calls active at the end: {end_metrics.total('sipcallhunt_calls_active'):g}")
            if end_metrics.value("sipcallhunt_media_legs"):
                problems.append(f"media legs open at the end: {end_metrics.value('sipcallhunt_media_legs'):g}")
            if start_metrics is not None:
                t_start = start_metrics.value("sipcallhunt_asyncio_tasks")
                t_end = end_metrics.value("sipcallhunt_asyncio_tasks")
                if t_end > t_start + TASK_TOLERANCE:
                    problems.append(f"asyncio tasks {t_start:g} at the start, {t_end:g} at the end")
        if end.fds > start.fds + FD_TOLERANCE:
            problems.append(f"open descriptors {start.fds} at the start, {end.fds} at the end")
        quarter = [s for s in samples if s.time - t0 >= seconds / 4]
        slope = _rss_slope_kib_per_min(quarter)
        growth = (samples[-1].rss_kib - quarter[0].rss_kib) / 1024 if quarter else math.nan
        print(
            f"# RSS: start {start.rss_kib / 1024:.1f} MiB, end {end.rss_kib / 1024:.1f} MiB; from the first quarter's"
            f" end to the end of the load {growth:+.1f} MiB, slope {slope:+.0f} KiB/min"
        )
        print(
            f"# descriptors {start.fds} -> {end.fds}; threads {start.threads} -> {end.threads}; "
            f"calls placed {placed}, call-log rows {len(calls)}; daemon CPU {end.cpu - start.cpu:.1f} s"
        )
        if not args.smoke and quarter and growth > args.rss_growth:
            problems.append(f"RSS grew {growth:.1f} MiB after the first quarter (limit {args.rss_growth:g} MiB)")
        problems += [f"daemon log: {line}" for line in bed.log_problems(5)]
        assert bed.daemon is not None
        bed.daemon.stop(timeout=30)
    if problems:
        print("# verdict: FAILED")
        for problem in problems:
            print(f"#   {problem}")
        return 1
    print("# verdict: OK (no stuck call, no leaked descriptor, task or media leg; memory flat)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
