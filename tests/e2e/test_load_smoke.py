"""``benchmarks/load.py`` and ``benchmarks/soak.py`` keep working: their ``--smoke`` runs (real
Kamailio, sipp and daemon on loopback) succeed and print sane figures.

They run as subprocesses, as they are used, unpinned (the CI machine's CPUs are shared); their
addresses come from ``$SIPCALLHUNT_E2E_NETWORK`` like every e2e test's.  No figure is judged
against a speed: only that calls were placed, connected and counted, and nothing was left over.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--no-pin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"{module} --smoke exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _table(output: str, first_column: str) -> list[dict[str, float]]:
    """The rows of the table whose header starts with ``first_column``."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        columns = line.split()
        if columns and columns[0] == first_column:
            rows = []
            for row in lines[index + 1 :]:
                values = row.split()
                if not values or row.startswith("#") or len(values) != len(columns):
                    break
                rows.append({c: float(v) for c, v in zip(columns, values, strict=True)})
            return rows
    raise AssertionError(f"no table starting with {first_column!r} in:\n{output}")


def test_load_smoke() -> None:
    output = _run("benchmarks.load")
    assert "# machine: " in output
    (step,) = _table(output, "offered")
    assert step["offered"] == 5 and step["calls"] == 15 and step["failed"] == 0
    assert 2 <= step["achieved"] <= 8, step
    for key in ("setup_p50", "setup_p99", "bridge_p50", "bridge_p99"):
        assert math.isfinite(step[key]) and 0 <= step[key] < 10_000, (key, step)
    assert step["bridge_p50"] >= step["setup_p50"], step  # bridged after the caller was answered
    assert 0 < step["cpu_ms/call"] < 1000, step
    (held,) = _table(output, "held")
    assert held["held"] == 20 and held["bridged"] == 20 and held["failed"] == 0, held
    if math.isfinite(held["calls_active"]):  # the metrics endpoint agrees with the call log
        assert held["calls_active"] == 20 and held["media_legs"] == 40, held
    assert math.isfinite(held["KiB/call"]), held
    assert re.search(r"highest step with zero failed calls: 5 calls/s", output), output


def test_soak_smoke() -> None:
    output = _run("benchmarks.soak")
    assert "# verdict: OK" in output, output
    samples = _table(output, "t_s")
    assert len(samples) >= 5, output
    assert max(s["calls_done"] for s in samples) == samples[-1]["calls_done"] > 0
    placed = re.search(r"calls placed (\d+), call-log rows (\d+)", output)
    assert placed and placed.group(1) == placed.group(2) and int(placed.group(1)) >= 30, output
    for hotline, outcome in (
        ("connected", "connected"),
        ("agent_hangup", "connected"),
        ("abandon", "caller_hung_up"),
        ("no_agent", "no_agent"),
        ("wrong_pin", "pin_failed"),
        ("silent", "failed"),
    ):
        line = re.search(rf"^#\s+{hotline}\s+expects {outcome}\s+\{{'{outcome}': (\d+)\}}$", output, re.MULTILINE)
        assert line and int(line.group(1)) >= 5, (hotline, output)
