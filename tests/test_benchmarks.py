"""Benchmarks that have no other home for their smoke run: they must keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sip_parse_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.sip_parse", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "# machine:" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith(("INVITE+SDP", "200 OK+SDP"))]
    assert len(rows) >= 6
    for row in rows:  # every figure is a positive rate
        rate = row.split()[-3 if "sipmessage" in result.stdout else -1].replace(",", "")
        assert float(rate) > 0, row
