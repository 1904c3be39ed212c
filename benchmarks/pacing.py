"""Pacing: how punctually one engine sends many concurrent 20 ms streams, and at what CPU cost.

    python -m benchmarks.pacing                 # 500, 1000, 2000 streams, 10 s each
    python -m benchmarks.pacing --smoke         # a few seconds

The engine (production :class:`~sipcallhunt.runtime.media.MediaEngine` on uvloop) runs in this
process pinned to CPU 0; every leg plays looping music to one sink socket in a child process
pinned to CPU 1, which counts packets per SSRC with ``recvmmsg``.  Per step it prints:

* lateness p50/p99/max — when the engine's one pacing timer served each packet, relative to its
  due time ``start + n x 20 ms`` (the engine's own 0.1 ms histogram, an upper bound);
* jitter p99 at the sink — arrival time minus RTP-timestamp time, per stream, relative to its
  earliest packet (includes the sink's own batching);
* missed — sequence gaps seen by the sink plus slots the engine skipped (late by > 60 ms);
* engine CPU % — process time of this process over the measured window.
Goals: 2000 streams with p99 lateness <= 3 ms and no missed packet; <= 40 % of a core at 1000.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import socket
import subprocess
import sys
import time

import numpy as np

from benchmarks.machine import print_header
from benchmarks.rtpload import MSG_DONTWAIT, RX_BATCH, RX_SLOT, _IoVec, _libc, _MMsgHdr

ENGINE_HOST = "127.0.2.3"
SINK_HOST = "127.0.2.4"


def sink_main(seconds: float) -> None:
    """Child process: receive everything for ``seconds``; print per-stream counts and jitter."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((SINK_HOST, 0))
    sock.setblocking(False)
    print(sock.getsockname()[1], flush=True)
    rx = np.zeros((RX_BATCH, RX_SLOT), dtype=np.uint8)
    iov = (_IoVec * RX_BATCH)()
    msgs = (_MMsgHdr * RX_BATCH)()
    for i in range(RX_BATCH):
        iov[i].iov_base = rx.ctypes.data + i * RX_SLOT
        iov[i].iov_len = RX_SLOT
        msgs[i].msg_hdr.msg_iov = ctypes.pointer(iov[i])
        msgs[i].msg_hdr.msg_iovlen = 1
    ssrcs, seqs, stamps, arrivals = [], [], [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rc = _libc.recvmmsg(sock.fileno(), ctypes.addressof(msgs), RX_BATCH, MSG_DONTWAIT, None)
        if rc <= 0:
            time.sleep(0.0005)
            continue
        now = time.monotonic()
        rows = rx[:rc]
        seqs.append(rows[:, 2:4].copy().view(">u2")[:, 0].astype(np.int64))
        stamps.append(rows[:, 4:8].copy().view(">u4")[:, 0].astype(np.int64))
        ssrcs.append(rows[:, 8:12].copy().view(">u4")[:, 0].astype(np.int64))
        arrivals.append(np.full(rc, now))
    if not ssrcs:
        print("0 0 nan", flush=True)
        return
    ssrc, seq = np.concatenate(ssrcs), np.concatenate(seqs)
    ts, arrival = np.concatenate(stamps), np.concatenate(arrivals)
    streams, first_index, inverse = np.unique(ssrc, return_index=True, return_inverse=True)
    rel_seq = (seq - seq[first_index][inverse]) & 0xFFFF
    rel_ts = (ts - ts[first_index][inverse]) & 0xFFFFFFFF
    # drop each stream's first and last 0.5 s (the engine starts and stops them one by one)
    expected = np.zeros(len(streams), dtype=np.int64)
    np.maximum.at(expected, inverse, rel_seq + 1)
    received = np.bincount(inverse, minlength=len(streams))
    missed = int(np.sum(np.maximum(expected - received, 0)))
    offset = arrival - rel_ts / 8000.0
    best = np.full(len(streams), np.inf)
    np.minimum.at(best, inverse, offset)
    jitter = offset - best[inverse]
    print(f"{len(ssrc)} {missed} {float(np.percentile(jitter, 99)) * 1000:.3f}", flush=True)


async def run_engine(streams: int, seconds: float, warmup: float, sink_port: int) -> dict[str, float]:
    from sipcallhunt.media.player import IdleMode
    from sipcallhunt.media.prompt import make_prompt
    from sipcallhunt.runtime.media import MediaEngine

    t = np.arange(8000 * 7) / 8000
    music = make_prompt("music", 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 660 * t * (1 + t / 70)))
    engine = MediaEngine(ENGINE_HOST, ENGINE_HOST, 20000, 59999, 0.0, lambda event: None, idle=IdleMode.SILENCE)
    await engine.start()
    try:
        legs = []
        for i in range(streams):
            leg = engine.open_leg(i, rtcp=False)
            leg.set_remote(SINK_HOST, sink_port, "PCMU", 0, None)
            leg.play([music], loop=True)
            legs.append(leg)
        await asyncio.sleep(warmup)
        engine.pacing_lateness(reset=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        late = engine.pacing_lateness()
        skipped = sum(leg.stats().late_skipped for leg in legs)
        return {
            "cpu_%": 100 * cpu / wall,
            "late_p50_ms": late.p50 * 1000,
            "late_p99_ms": late.p99 * 1000,
            "late_max_ms": late.max * 1000,
            "packets": float(late.packets),
            "skipped": float(skipped),
        }
    finally:
        await engine.close()


def run_step(streams: int, seconds: float, warmup: float, engine_cpu: int, sink_cpu: int) -> dict[str, float]:
    import uvloop

    sink_seconds = warmup + seconds + 0.3
    sink = subprocess.Popen(
        ["taskset", "-c", str(sink_cpu), sys.executable, "-m", "benchmarks.pacing", "--sink", str(sink_seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None
        sink_port = int(sink.stdout.readline())
        os.sched_setaffinity(0, {engine_cpu})
        try:
            row = uvloop.run(run_engine(streams, seconds, warmup, sink_port))
        finally:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        received, missed, jitter = sink.stdout.readline().split()
        sink.wait(timeout=30)
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    row.update(
        {
            "streams": float(streams),
            "sink_pkts": float(received),
            "missed": float(missed),
            "jitter_p99_ms": float(jitter),
        }
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="500,1000,2000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--engine-cpu", type=int, default=0)
    parser.add_argument("--sink-cpu", type=int, default=1)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--sink", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink is not None:
        sink_main(args.sink)
        return 0
    print_header("pacing: one engine, N looping streams, one timer")
    steps = [200] if args.smoke else [int(x) for x in args.steps.split(",")]
    seconds, warmup = (1.5, 0.5) if args.smoke else (args.seconds, args.warmup)
    print(f"# {seconds:.1f} s measured per step after {warmup:.1f} s warm-up; engine on CPU {args.engine_cpu}")
    columns = ["streams", "late_p50_ms", "late_p99_ms", "late_max_ms", "jitter_p99_ms", "missed", "skipped", "cpu_%",
               "packets", "sink_pkts"]  # fmt: skip
    print(" ".join(f"{c:>13}" for c in columns))
    for streams in steps:
        row = run_step(streams, seconds, warmup, args.engine_cpu, args.sink_cpu)
        print(
            " ".join(f"{row[c]:>13.3f}" if c.endswith(("ms", "%")) else f"{int(row[c]):>13}" for c in columns),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
