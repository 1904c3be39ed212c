"""The relay-only mode as a subprocess: READY, relays both ways, exits 0 on SIGTERM."""

from __future__ import annotations

import itertools
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sipcallhunt.media.rtp import RtpPacket, seq_diff

HOST = "127.0.2.5"
GEN_HOST = "127.0.2.6"
ROOT = Path(__file__).resolve().parents[2]


def free_base(count: int) -> int:
    for base in range(43000, 60000, 100):
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((HOST, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def start_relay(base: int, sessions: int, loop: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipcallhunt.media.relay", "--base-port", str(base), "--sessions", str(sessions),
         "--host", HOST, "--loop", loop],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    assert ready, "relay did not print READY within 20 s"
    line = proc.stdout.readline()
    assert "READY" in line, line + (proc.stderr.read() if proc.stderr else "")
    return proc


def udp(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(2.0)
    return s


def receive(sock: socket.socket, count: int) -> list[tuple[bytes, tuple[str, int]]]:
    got = []
    deadline = time.monotonic() + 3.0
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(sock.recvfrom(2048))
        except TimeoutError:
            break
    return got


@pytest.mark.parametrize("loop", ["uvloop", "epoll"])
def test_relay_only_mode(loop: str) -> None:
    base = free_base(4)
    proc = start_relay(base, 2, loop)
    a, b = udp(GEN_HOST), udp(GEN_HOST)
    try:
        # session 1: a <-> port base+2, b <-> port base+3; each side latches to its first sender
        b.sendto(RtpPacket(payload_type=0, sequence=1, timestamp=0, ssrc=2, payload=b"\x7f" * 160).serialize(),
                 (HOST, base + 3))  # fmt: skip
        time.sleep(0.05)
        for i in range(10):
            packet = RtpPacket(payload_type=0, sequence=500 + i, timestamp=160 * i, ssrc=1, payload=bytes([i]) * 160)
            a.sendto(packet.serialize(), (HOST, base + 2))
        got = receive(b, 10)
        assert len(got) == 10
        assert {addr for _, addr in got} == {(HOST, base + 3)}  # symmetric: from the port b sends to
        packets = [RtpPacket.parse(data) for data, _ in got]
        assert [p.payload for p in packets] == [bytes([i]) * 160 for i in range(10)]
        assert len({p.ssrc for p in packets}) == 1
        assert all(seq_diff(y.sequence, x.sequence) == 1 for x, y in itertools.pairwise(packets))
        # and back
        b.sendto(RtpPacket(payload_type=0, sequence=2, timestamp=160, ssrc=2, payload=b"\x11" * 160).serialize(),
                 (HOST, base + 3))  # fmt: skip
        back = receive(a, 1)
        assert back and RtpPacket.parse(back[0][0]).payload == b"\x11" * 160
        # garbage is counted, not fatal
        a.sendto(b"\x00garbage", (HOST, base + 2))
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        a.close()
        b.close()
    assert proc.returncode == 0, err
    counters = next(line for line in out.splitlines() if line.startswith("COUNTERS"))
    assert "relayed_out=11" in counters
    assert "dropped_malformed=1" in counters


def test_relay_only_mode_fails_cleanly_on_a_busy_port() -> None:
    base = free_base(4)
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind((HOST, base + 1))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "sipcallhunt.media.relay", "--base-port", str(base), "--sessions", "2",
             "--host", HOST],
            capture_output=True, text=True, timeout=30, cwd=ROOT, check=False,
        )  # fmt: skip
    finally:
        busy.close()
    assert result.returncode == 1
    assert "READY" not in result.stdout
    assert "cannot bind" in result.stderr


def test_relay_benchmark_smoke() -> None:
    """The benchmark (generator + relay-only mode on one core) runs and reports its figures."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.relay", "--smoke"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "# machine:" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] == ["uvloop"]]
    assert len(rows) == 1
    calls, loss, relay_exit = int(rows[0][1]), float(rows[0][3]), rows[0][-1]
    assert calls == 100
    assert loss < 5.0  # a smoke run on a busy machine: the figures matter in the real run
    assert relay_exit == "0"
