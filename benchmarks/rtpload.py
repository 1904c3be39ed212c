"""An RTP load generator for relays: N sessions of G.711 (50 packets/s each way) from two sockets.

    python -m benchmarks.rtpload --relay-host 127.0.2.1 --base-port 30000 --sessions 1000 --seconds 10

Session i of the relay under test relays between ports B+2i and B+2i+1 and latches each port to
its first sender, so two generator sockets suffice: socket A sends every session's A side, B
every B side, and each receives what the relay forwards from the other.  All packets of one
direction live in one preallocated buffer and one ``mmsghdr`` array (ctypes), sessions ordered
by their send phase, so the packets due in a tick are a contiguous run of the array and go out
with one ``sendmmsg``; their sequence numbers, timestamps and send times are written with numpy
over that run.  Receiving uses ``recvmmsg`` into another preallocated array.  Each payload
carries (session, direction, counter, send time in CLOCK_MONOTONIC ns), which survive the
relay's header rewrite, so the generator counts loss per direction and the added latency of
every packet (receive time - send time, so it includes the generator's own batching: an upper
bound).  The generator never blocks on its sockets (it sleeps until its next tick), so the
relay's sends do not pay for waking it up.
"""

from __future__ import annotations

__all__ = ["LoadGenerator", "LoadResult", "main"]

import argparse
import ctypes
import ctypes.util
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Final

import attrs
import numpy as np

PACKET_SIZE: Final = 172  # 12-byte RTP header + 160 bytes of G.711
RX_SLOT: Final = 2048
RX_BATCH: Final = 512
MAX_BATCH: Final = 1024  # UIO_MAXIOV: sendmmsg's vlen limit
MSG_DONTWAIT: Final = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


class _SockAddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),
        ("sin_addr", ctypes.c_uint32),
        ("sin_zero", ctypes.c_char * 8),
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_libc.sendmmsg.restype = ctypes.c_int
_libc.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_libc.recvmmsg.restype = ctypes.c_int
_MMSG_SIZE: Final = ctypes.sizeof(_MMsgHdr)


@attrs.frozen(kw_only=True)
class LoadResult:
    sessions: int
    seconds: float
    sent: int
    received: int
    loss_percent: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    send_lateness_p99_ms: float  # how late the generator itself sent (its own health)
    generator_stall_ms: float  # the longest gap between two rounds of the generator's loop
    generator_cpu_percent: float


class _Direction:
    """One generator socket and the packets it sends (one per session) and receives."""

    def __init__(self, index: int, local_host: str, relay_host: str, ports: list[int], sessions: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            self.sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        self.sock.bind((local_host, 0))
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        n = sessions
        self.tx = np.zeros((n, PACKET_SIZE), dtype=np.uint8)
        self.tx[:, 0] = 0x80  # V=2, PT 0 (PCMU)
        self.tx[:, 12:] = 0xFF  # µ-law silence, overwritten below by the tag fields
        self.f_seq = self.tx[:, 2:4].view(">u2")[:, 0]
        self.f_ts = self.tx[:, 4:8].view(">u4")[:, 0]
        self.tx[:, 8:12].view(">u4")[:, 0] = np.arange(n, dtype=np.uint32) + (index << 24)  # SSRC
        self.tx[:, 12:16].view("<u4")[:, 0] = np.arange(n, dtype=np.uint32)  # session
        self.tx[:, 16] = index
        self.f_count = self.tx[:, 20:24].view("<u4")[:, 0]
        self.f_sent = self.tx[:, 24:32].view("<i8")[:, 0]
        self.addrs = (_SockAddrIn * n)()
        host = struct.unpack("=I", socket.inet_aton(relay_host))[0]
        for i, port in enumerate(ports):
            self.addrs[i].sin_family = socket.AF_INET
            self.addrs[i].sin_port = socket.htons(port)
            self.addrs[i].sin_addr = host
        self.iov = (_IoVec * n)()
        self.msgs = (_MMsgHdr * n)()
        base = self.tx.ctypes.data
        for i in range(n):
            self.iov[i].iov_base = base + i * PACKET_SIZE
            self.iov[i].iov_len = PACKET_SIZE
            hdr = self.msgs[i].msg_hdr
            hdr.msg_name = ctypes.addressof(self.addrs[i])
            hdr.msg_namelen = ctypes.sizeof(_SockAddrIn)
            hdr.msg_iov = ctypes.pointer(self.iov[i])
            hdr.msg_iovlen = 1
        self.msgs_base = ctypes.addressof(self.msgs)
        self.sent = 0
        self.send_errors = 0
        # receive side
        self.rx = np.zeros((RX_BATCH, RX_SLOT), dtype=np.uint8)
        self.rx_iov = (_IoVec * RX_BATCH)()
        self.rx_msgs = (_MMsgHdr * RX_BATCH)()
        for i in range(RX_BATCH):
            self.rx_iov[i].iov_base = self.rx.ctypes.data + i * RX_SLOT
            self.rx_iov[i].iov_len = RX_SLOT
            self.rx_msgs[i].msg_hdr.msg_iov = ctypes.pointer(self.rx_iov[i])
            self.rx_msgs[i].msg_hdr.msg_iovlen = 1
        self.rx_base = ctypes.addressof(self.rx_msgs)
        self.rx_len = np.ctypeslib.as_array(
            (ctypes.c_uint * (RX_BATCH * (_MMSG_SIZE // 4))).from_address(self.rx_base)
        ).reshape(RX_BATCH, _MMSG_SIZE // 4)[:, _MMsgHdr.msg_len.offset // 4]

    def send_run(self, start: int, count: int, now_ns: int, counter: int) -> None:
        """Send sessions start..start+count-1 (no wrap) with this round's counter."""
        end = start + count
        self.f_seq[start:end] = counter & 0xFFFF
        self.f_ts[start:end] = (counter * 160) & 0xFFFFFFFF
        self.f_count[start:end] = counter
        self.f_sent[start:end] = now_ns
        done = 0
        while done < count:
            batch = min(MAX_BATCH, count - done)
            rc = _libc.sendmmsg(self.fd, self.msgs_base + (start + done) * _MMSG_SIZE, batch, MSG_DONTWAIT)
            if rc <= 0:  # socket buffer full: count the rest of this run as not sent
                self.send_errors += count - done
                return
            done += rc
            self.sent += rc

    def receive(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Everything waiting: (session, counter, send time ns) arrays, or None."""
        sessions, counters, sent = [], [], []
        while True:
            rc = _libc.recvmmsg(self.fd, self.rx_base, RX_BATCH, MSG_DONTWAIT, None)
            if rc <= 0:
                break
            rows = self.rx[:rc]
            ok = self.rx_len[:rc] >= 32
            sessions.append(rows[ok, 12:16].copy().view("<u4")[:, 0])
            counters.append(rows[ok, 20:24].copy().view("<u4")[:, 0])
            sent.append(rows[ok, 24:32].copy().view("<i8")[:, 0])
            if rc < RX_BATCH:
                break
        if not sessions:
            return None
        return np.concatenate(sessions), np.concatenate(counters), np.concatenate(sent)


class LoadGenerator:
    """Drives ``sessions`` relay sessions at ``pps`` packets/s per direction (see module docstring)."""

    def __init__(
        self,
        *,
        relay_host: str,
        base_port: int,
        sessions: int,
        local_host: str = "127.0.2.2",
        pps: int = 50,
        tick: float = 0.001,
    ) -> None:
        self.sessions = sessions
        self.pps = pps
        self.tick = tick
        ports_a = [base_port + 2 * i for i in range(sessions)]
        ports_b = [base_port + 2 * i + 1 for i in range(sessions)]
        self.dirs = [
            _Direction(0, local_host, relay_host, ports_a, sessions),
            _Direction(1, local_host, relay_host, ports_b, sessions),
        ]

    def run(
        self,
        seconds: float,
        *,
        warmup: float = 1.0,
        drain: float = 0.3,
        on_measure_start: Callable[[], None] | None = None,
    ) -> LoadResult:
        n = self.sessions
        period_ns = 1_000_000_000 // self.pps
        t0 = time.monotonic_ns()
        measure_from = t0 + int(warmup * 1e9)
        stop_at = measure_from + int(seconds * 1e9)
        hist: list[np.ndarray] = []  # added latency of every measured packet, in µs
        lateness: list[int] = []
        sent_total = [0]  # packets scheduled so far (both directions send the same schedule)
        measured_sent = 0
        measured_recv = 0
        cpu0 = time.process_time()
        started = False
        previous = time.monotonic_ns()
        stall_ns = 0
        while True:
            now = time.monotonic_ns()
            if now >= stop_at:
                break
            if now >= measure_from:
                stall_ns = max(stall_ns, now - previous)
            previous = now
            if not started and now >= measure_from:
                started = True
                if on_measure_start is not None:
                    on_measure_start()
            due = min((now - t0) * n // period_ns + 1, (stop_at - t0) * n // period_ns)
            first = sent_total[0]
            if due > first:
                # slot k is session k % n, round k // n, due at t0 + k * period / n
                lateness.append(now - (t0 + first * period_ns // n))
                k = first
                while k < due:
                    session = k % n
                    run = min(due - k, n - session)
                    counter = k // n
                    for d in self.dirs:
                        d.send_run(session, run, now, counter)
                    if now >= measure_from:
                        measured_sent += 2 * run
                    k += run
                sent_total[0] = due
            for d in self.dirs:
                got = d.receive()
                if got is not None:
                    measured_recv += self._account(got, hist, measure_from, stop_at)
            sleep = (t0 + (sent_total[0]) * period_ns // n - time.monotonic_ns()) / 1e9
            time.sleep(min(self.tick, max(sleep, 0.0002)))
        end = time.monotonic() + drain
        while time.monotonic() < end:
            for d in self.dirs:
                got = d.receive()
                if got is not None:
                    measured_recv += self._account(got, hist, measure_from, stop_at)
            time.sleep(0.002)
        cpu = time.process_time() - cpu0
        latencies = np.concatenate(hist) if hist else np.zeros(0, dtype=np.int64)
        total = len(latencies)

        def quantile(q: float) -> float:
            if total == 0:
                return float("nan")
            return float(np.quantile(latencies, q)) / 1000.0

        late = np.array(lateness[len(lateness) // 10 :] or [0], dtype=np.float64) / 1e6
        return LoadResult(
            sessions=n,
            seconds=seconds,
            sent=measured_sent,
            received=measured_recv,
            loss_percent=100.0 * (1 - measured_recv / measured_sent) if measured_sent else float("nan"),
            latency_p50_ms=quantile(0.5),
            latency_p99_ms=quantile(0.99),
            latency_max_ms=float(latencies.max()) / 1000.0 if total else float("nan"),
            send_lateness_p99_ms=float(np.percentile(late, 99)),
            generator_stall_ms=stall_ns / 1e6,
            generator_cpu_percent=100.0 * cpu / (seconds + warmup + drain),
        )

    @staticmethod
    def _account(got: tuple[np.ndarray, np.ndarray, np.ndarray], hist: list[np.ndarray], lo: int, hi: int) -> int:
        _, _, sent = got
        now = time.monotonic_ns()
        mask = (sent >= lo) & (sent < hi)
        if not mask.any():
            return 0
        hist.append((now - sent[mask]) // 1000)
        return int(mask.sum())

    def close(self) -> None:
        for d in self.dirs:
            d.sock.close()


def main(argv: list[str] | None = None) -> int:
    from benchmarks.machine import print_header

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay-host", default="127.0.2.1")
    parser.add_argument("--local-host", default="127.0.2.2")
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cpu", type=int, default=None, help="pin the generator to this CPU")
    parser.add_argument("--smoke", action="store_true", help="a two-second run")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print_header("rtpload")
    gen = LoadGenerator(
        relay_host=args.relay_host, base_port=args.base_port, sessions=args.sessions, local_host=args.local_host
    )
    try:
        result = gen.run(2.0 if args.smoke else args.seconds, warmup=0.5 if args.smoke else 1.0)
    finally:
        gen.close()
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
