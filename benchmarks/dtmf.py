"""In-band DTMF: accuracy on the Q.24 set, talk-off, and cost per call-frame when batched.

    python -m benchmarks.dtmf            # about ten seconds
    python -m benchmarks.dtmf --smoke    # a few seconds

1. Accuracy: every case of the ITU-T Q.24 accept/reject set (the signals of the tests,
   ``tests/media/strategies.py``: 16 digits a case, ``--seeds`` random alignments and phases),
   linear and through µ-law.  For accept cases ``found/expected`` (in order) and extra digits;
   for reject cases the digits that should not have been found.  The same signals go through
   ``multimon-ng -a DTMF`` when it is installed, for comparison.
2. Talk-off: digits found in the speech fixtures and in synthetic polyphonic hold music.
3. Cost: µs per call-frame (one 20 ms frame of one stream) of
   :meth:`~sipcallhunt.media.inband.InbandDetectorBank.process` over 1, 100 and 1000 streams, for
   speech (typical: most frames stop at the screen) and for DTMF on every stream (worst case:
   every frame gets the full analysis); and multimon-ng's CPU time per 20 ms of audio.

BLAS threads: numpy's matrix product may use several OpenBLAS threads, which on a busy shared
machine costs far more than it saves for these small products.  This script sets
``OPENBLAS_NUM_THREADS=1`` unless the environment sets it; the value used is printed.
"""

from __future__ import annotations

import os
import sys

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import difflib
import resource
import shutil
import subprocess
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

from benchmarks.machine import print_header
from sipcallhunt.media import g711
from sipcallhunt.media.inband import FRAME_SAMPLES, InbandDetector, InbandDetectorBank
from tests.media.fixtures import FIXTURES
from tests.media.strategies import ALL_KEYS, Q24_ACCEPT, Q24_REJECT, q24_signal, synthetic_music

Samples = npt.NDArray[np.int16]
MULTIMON = shutil.which("multimon-ng")


def ours(samples: Samples) -> str:
    detector = InbandDetector()
    return "".join(digit for digit, _ in detector.feed(samples) + detector.flush())


def multimon(samples: Samples, workdir: Path) -> str:
    """Digits multimon-ng 1.2 reports for 8 kHz int16 samples (it resamples WAV input with sox)."""
    assert MULTIMON is not None
    path = workdir / "signal.wav"
    soundfile.write(path, samples, 8000, subtype="PCM_16")
    result = subprocess.run(
        [MULTIMON, "-q", "-m", "-r", "-a", "DTMF", "-t", "wav", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return "".join(line.split(":", 1)[1].strip() for line in result.stdout.splitlines() if line.startswith("DTMF:"))


def channel(samples: Samples, codec: str | None) -> Samples:
    return samples if codec is None else g711.decode(codec, g711.encode(codec, samples))


def score(expected: str, got: str) -> tuple[int, int]:
    """(digits found in order, extra digits)."""
    matched = sum(block.size for block in difflib.SequenceMatcher(None, expected, got).get_matching_blocks())
    return matched, len(got) - matched


def accuracy(seeds: int, cases: dict[str, dict[str, Any]], reject: bool, workdir: Path) -> int:
    """Print one line per case; return how many (case, channel) results miss the requirement."""
    misses = 0
    for name, case in cases.items():
        cells = []
        for codec in (None, "PCMU"):
            expected_all, ours_all, theirs_all = "", "", ""
            for index in range(seeds):
                rng = np.random.default_rng(zlib.crc32(f"{name}/{codec}/{index}".encode()))
                signal, _, digits = q24_signal(case, rng)
                heard = channel(signal, codec)
                expected_all += digits + "|"
                ours_all += ours(heard) + "|"
                if MULTIMON:
                    theirs_all += multimon(heard, workdir) + "|"
            total = len(expected_all) - seeds
            for detector, got in (("ours", ours_all), ("multimon", theirs_all)):
                if detector == "multimon" and not MULTIMON:
                    cells.append(f"{'n/a':>14s}")
                    continue
                found, extra = score(expected_all, got)
                found -= seeds  # the separators
                if reject:
                    cells.append(f"{len(got) - seeds:>8d} found")
                    misses += detector == "ours" and len(got) > seeds
                else:
                    cells.append(f"{found:>4d}/{total:<3d} +{extra:<3d}")
                    misses += detector == "ours" and (found < total or extra > 0)
        print(f"{name:30s} " + " ".join(f"{cell:>14s}" for cell in cells))
    return misses


def talk_off(music_seconds: float, workdir: Path) -> None:
    signals: list[tuple[str, Samples]] = []
    for path in sorted(FIXTURES.glob("speech_*.wav")):
        samples, _ = soundfile.read(path, dtype="int16")
        signals.append((path.stem, samples))
    for seed in range(2):
        music = synthetic_music(music_seconds / 2, seed)
        signals.append((f"music seed {seed}", np.round(music * 0.9 * 32767).astype(np.int16)))
    total_ours = total_theirs = 0
    seconds = 0.0
    for name, samples in signals:
        for codec in (None, "PCMU"):
            heard = channel(samples, codec)
            got = ours(heard)
            theirs = multimon(heard, workdir) if MULTIMON else ""
            total_ours += len(got)
            total_theirs += len(theirs)
            seconds += len(heard) / 8000
            label = f"{name} ({codec or 'linear'}, {len(heard) / 8000:.0f} s)"
            count = len(theirs) if MULTIMON else "n/a"
            print(f"{label:42s} ours {len(got):3d} {got!r:12s} multimon-ng {count} {theirs!r}")
    theirs_total = total_theirs if MULTIMON else "n/a"
    print(f"# talk-off total over {seconds:.0f} s: ours {total_ours} false digits, multimon-ng {theirs_total}")


def traffic(kind: str, streams: int, ticks: int, rng: np.random.Generator) -> list[Samples]:
    """``ticks`` frames of ``streams`` streams, each stream at its own place in a long signal."""
    if kind == "speech":
        parts = [soundfile.read(path, dtype="int16")[0] for path in sorted(FIXTURES.glob("speech_*.wav"))]
        source = np.concatenate([*parts, np.zeros(8000 * 3, np.int16)])  # with pauses, as calls have
    else:
        source, _, _ = q24_signal({"digits": ALL_KEYS * 4, "on_ms": 100.0, "off_ms": 40.0}, rng)
    frames = source[: len(source) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    starts = rng.integers(0, len(frames) - ticks, streams)
    return [frames[starts + tick] for tick in range(ticks)]


def cost(sizes: list[int], ticks: int, repeat: int) -> None:
    rng = np.random.default_rng(1633)
    print(f"{'traffic':8s} {'streams':>8s} {'µs per tick':>12s} {'µs per call-frame':>18s}")
    for kind in ("speech", "dtmf"):
        for streams in sizes:
            frames = traffic(kind, streams, ticks, rng)
            keys = list(range(streams))
            best = float("inf")
            for _ in range(repeat):
                bank = InbandDetectorBank()
                for key in keys:
                    bank.add(key)
                bank.process(keys, frames[0])
                start = time.perf_counter()
                for frame in frames[1:]:
                    bank.process(keys, frame)
                best = min(best, (time.perf_counter() - start) / (len(frames) - 1))
            print(f"{kind:8s} {streams:8d} {best * 1e6:12.1f} {best * 1e6 / streams:18.3f}")


def multimon_cost(seconds: float, workdir: Path) -> None:
    """multimon-ng's CPU time per 20 ms of audio, fed raw at its native 22050 Hz (no sox)."""
    if not MULTIMON:
        print("# multimon-ng not installed: no comparison")
        return
    music = synthetic_music(seconds, 5)
    raw = np.round(soxr.resample(music * 0.5, 8000, 22050) * 32767).astype(np.int16)
    path = workdir / "music.raw"
    path.write_bytes(raw.tobytes())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [MULTIMON, "-q", "-a", "DTMF", "-t", "raw", str(path)], capture_output=True, timeout=300, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"# multimon-ng: {cpu * 1e6 / (seconds / 0.02):.2f} µs CPU per 20 ms of audio ({seconds:.0f} s of music)")


def run(*, smoke: bool, seeds: int) -> int:
    print_header("in-band DTMF detector (sipcallhunt.media.inband)")
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "(unset)")
    print(f"# OPENBLAS_NUM_THREADS={threads}; multimon-ng: {MULTIMON or 'absent'}")
    accept = dict(list(Q24_ACCEPT.items())[:3]) if smoke else Q24_ACCEPT
    reject = dict(list(Q24_REJECT.items())[:2]) if smoke else Q24_REJECT
    with tempfile.TemporaryDirectory(prefix="dtmf-bench-") as tmp:
        workdir = Path(tmp)
        print(f"\n## Q.24 accept cases: digits found in order / expected, +extra ({seeds} x 16 digits)")
        print(f"{'case':30s} {'ours linear':>14s} {'multimon lin.':>14s} {'ours µ-law':>14s} {'multimon µ-law':>14s}")
        misses = accuracy(seeds, accept, False, workdir)
        print(f"\n## Q.24 reject cases: digits found (must be 0; {seeds} x 16 tones)")
        print(f"{'case':30s} {'ours linear':>14s} {'multimon lin.':>14s} {'ours µ-law':>14s} {'multimon µ-law':>14s}")
        misses += accuracy(seeds, reject, True, workdir)
        print(f"# ours: {misses} case/channel results miss the requirement")
        print("\n## Talk-off: digits found in speech and music (must be 0)")
        talk_off(20.0 if smoke else 180.0, workdir)
        print("\n## Cost of InbandDetectorBank.process, best of several runs")
        cost([1, 100] if smoke else [1, 100, 1000], 20 if smoke else 100, 2 if smoke else 5)
        multimon_cost(10.0 if smoke else 60.0, workdir)
    return 1 if misses else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dtmf", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few cases, short signals: a few seconds")
    parser.add_argument("--seeds", type=int, default=None, help="random alignments per case (default 3, smoke 1)")
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else (1 if args.smoke else 3)
    return run(smoke=args.smoke, seeds=seeds)


if __name__ == "__main__":
    raise SystemExit(main())
