"""``benchmarks/fuzz.py`` keeps working: a short run finds nothing, and a planted crash is found, shrunk and saved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attrs

from benchmarks.fuzz import TARGETS, fuzz_target

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_covers_every_target_without_findings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.fuzz", "--smoke", "--no-save"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# machine:" in result.stdout
    rows = {
        line.split()[0]: line.split()
        for line in result.stdout.splitlines()
        if line.split()[:1] in ([t] for t in TARGETS)
    }
    assert set(rows) == set(TARGETS)
    for name, row in rows.items():
        inputs, rate, accepted, errors, findings = (float(x.replace(",", "")) for x in row[1:6])
        assert inputs == 3000, name
        assert rate > 0, name
        assert accepted > 0 and errors > 0, f"{name}: the mix should hold both good and bad inputs"
        assert accepted + errors == inputs and findings == 0, name
    assert result.stdout.rstrip().endswith("# no findings")


def test_a_planted_crash_is_found_shrunk_and_saved(tmp_path: Path) -> None:
    def planted(data: bytes) -> None:
        TARGETS["sip-info"].run(data)
        if b"#" in data:  # only when the parser accepted it
            raise KeyError("planted")

    target = attrs.evolve(TARGETS["sip-info"], name="planted", run=planted)
    lines: list[str] = []
    stats = fuzz_target(target, inputs=3000, seconds=60, seed=3, save=tmp_path, out=lines.append)
    assert stats.findings > 0
    assert list(stats.signatures) == ["KeyError at ?"]
    [saved] = (tmp_path / "planted").iterdir()
    assert saved.name.startswith("keyerror-")
    assert b"#" in saved.read_bytes() and len(saved.read_bytes()) < 24  # shrunk
    assert lines and lines[0].startswith("FINDING planted: KeyError at ?")
