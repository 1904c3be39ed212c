"""Relay throughput: the relay-only mode on ONE core under a ramp of concurrent G.711 calls.

    python -m benchmarks.relay                      # ramp 250 … 2000 calls, 10 s each, production engine
    python -m benchmarks.relay --smoke              # a few seconds
    python -m benchmarks.relay --variants uvloop,asyncio,epoll,protocol --steps 500,1000

Each step starts ``python -m sipcallhunt.media.relay`` pinned to CPU 0 (the generator,
:mod:`benchmarks.rtpload`, runs on CPU 1), waits for READY, drives it for ``--seconds`` after a
warm-up, then stops it with SIGTERM.  Per step it prints loss %, p50/p99/max added latency
(generator send → generator receive, an upper bound of what the relay adds), the relay's CPU %
(utime+stime from /proc over the measured window) and its µs of CPU per relayed packet, and the
generator's own health (p99 lateness of its send ticks, its longest stall): a stall of the
generator (or of the virtual machine) shows up as added latency of everything in flight.

Variants (what waits for the sockets; the per-packet code is the same RelayPath.forward):
  uvloop   — production: the engine's epoll set nested in a uvloop event loop (the daemon's way)
  asyncio  — the same on the standard asyncio loop
  epoll    — the same dispatcher in a bare blocking epoll loop, no asyncio
  protocol — for comparison only: one uvloop DatagramProtocol per socket, bytes + address per packet
The goal is ≥ 1500 calls (150,000 packets/s in and out) with < 0.1 % loss and p99 ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from benchmarks.machine import print_header
from benchmarks.rtpload import LoadGenerator

RELAY_HOST = "127.0.2.1"
GEN_HOST = "127.0.2.2"


def _free_base(host: str, count: int, start: int = 20000) -> int:
    """A base port with 2*count free ports above it on ``host`` (probed, best effort)."""
    for base in range(start, 60000 - 2 * count, 2 * count + 100):
        socks = []
        try:
            for port in range(base, base + 2 * count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_step(
    variant: str, sessions: int, *, seconds: float, warmup: float, relay_cpu: int, gen_cpu: int
) -> dict[str, Any]:
    base = _free_base(RELAY_HOST, sessions)
    if variant == "protocol":
        cmd = [sys.executable, "-m", "benchmarks.relay", "--serve-protocol"]
    else:
        cmd = [sys.executable, "-m", "sipcallhunt.media.relay", "--loop", variant]
    cmd += ["--base-port", str(base), "--sessions", str(sessions), "--host", RELAY_HOST]
    # the relay is pinned with taskset (a preexec_fn is unsafe with threads)
    proc = subprocess.Popen(
        ["taskset", "-c", str(relay_cpu), *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "READY" not in line:
            raise RuntimeError(f"relay did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        os.sched_setaffinity(0, {gen_cpu})
        gen = LoadGenerator(relay_host=RELAY_HOST, base_port=base, sessions=sessions, local_host=GEN_HOST)
        try:
            # measure the relay's CPU over the measured window only
            cpu_box: dict[str, float] = {}
            loop_start = time.monotonic()

            def on_measure_start() -> None:
                cpu_box["start"] = _cpu_seconds(proc.pid)
                cpu_box["t"] = time.monotonic()

            result = gen.run(seconds, warmup=warmup, on_measure_start=on_measure_start)
            cpu = _cpu_seconds(proc.pid) - cpu_box.get("start", 0.0)
            wall = time.monotonic() - cpu_box.get("t", loop_start)
        finally:
            gen.close()
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=30)
        counters = next((x for x in out.splitlines() if x.startswith("COUNTERS")), "")
        return {
            "variant": variant,
            "calls": sessions,
            "pps_each_way": 2 * sessions * 50,
            "loss_%": result.loss_percent,
            "p50_ms": result.latency_p50_ms,
            "p99_ms": result.latency_p99_ms,
            "max_ms": result.latency_max_ms,
            "relay_cpu_%": 100.0 * cpu / wall,
            "us_per_pkt": 1e6 * cpu / max(1, result.received),
            "gen_cpu_%": result.generator_cpu_percent,
            "gen_late_p99_ms": result.send_lateness_p99_ms,
            "gen_stall_ms": result.generator_stall_ms,
            "exit": proc.returncode,
            "counters": counters,
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


# -- the comparison variant: one DatagramProtocol per socket -------------------------------------


def serve_protocol(base_port: int, sessions: int, host: str) -> None:
    import uvloop

    from sipcallhunt.media.relay import RelayPath, StreamPosition

    class Side(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.transport: Any = None
            self.peer: tuple[str, int] | None = None
            self.other: Side | None = None
            self.path = RelayPath.create(
                StreamPosition(0x1234, 0, 0, time.monotonic()),
                in_codec="PCMU", in_audio_pt=0, in_event_pt=101,
                out_codec="PCMU", out_audio_pt=0, out_event_pt=101,
            )  # fmt: skip

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if self.peer is None:
                self.peer = addr
            elif addr != self.peer:
                return
            other = self.other
            if other is None or other.peer is None:
                return
            buf = bytearray(data)
            n = self.path.forward(buf, len(buf), time.monotonic())
            if n > 0:
                other.transport.sendto(buf, other.peer)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, done.set)
        for i in range(sessions):
            a, b = Side(), Side()
            a.other, b.other = b, a
            await loop.create_datagram_endpoint(lambda a=a: a, local_addr=(host, base_port + 2 * i))  # type: ignore[misc]
            await loop.create_datagram_endpoint(lambda b=b: b, local_addr=(host, base_port + 2 * i + 1))  # type: ignore[misc]
        print("READY", flush=True)
        await done.wait()
        print("COUNTERS (protocol variant)", flush=True)

    uvloop.run(serve())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="250,500,875,1000,1500,2000")
    parser.add_argument("--variants", default="uvloop")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--relay-cpu", type=int, default=0)
    parser.add_argument("--gen-cpu", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="one short step per variant")
    parser.add_argument("--serve-protocol", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--host", default=RELAY_HOST, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_protocol:
        serve_protocol(args.base_port, args.sessions, args.host)
        return 0
    print_header("relay: relay-only mode on one core, generator on another")
    steps = [100] if args.smoke else [int(x) for x in args.steps.split(",")]
    seconds, warmup = (1.5, 0.5) if args.smoke else (args.seconds, args.warmup)
    print(f"# {seconds:.1f} s measured per step after {warmup:.1f} s warm-up; relay on CPU {args.relay_cpu}")
    columns = ["variant", "calls", "pps_each_way", "loss_%", "p50_ms", "p99_ms", "max_ms", "relay_cpu_%", "us_per_pkt",
               "gen_cpu_%", "gen_late_p99_ms", "gen_stall_ms", "exit"]  # fmt: skip
    print(" ".join(f"{c:>12}" for c in columns))
    for variant in args.variants.split(","):
        for sessions in steps:
            row = run_step(
                variant, sessions, seconds=seconds, warmup=warmup, relay_cpu=args.relay_cpu, gen_cpu=args.gen_cpu
            )
            print(" ".join(f"{row[c]:>12.3f}" if isinstance(row[c], float) else f"{row[c]!s:>12}" for c in columns))
            print(f"#   {row['counters']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
