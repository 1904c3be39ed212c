"""G.711 cost: encode/decode one 20 ms frame, many frames at once, and PCMU↔PCMA transcoding.

    python -m benchmarks.g711            # about a second
    python -m benchmarks.g711 --smoke    # a fraction of a second

Prints, per codec: µs per 20 ms frame (160 samples) when called frame by frame (what a prompt
encoder or the in-band path pays per call and tick), ns per frame and MB/s of samples when 1000
frames go through in one call (the batched tick), and the cost of ``bytes.translate`` with the
transcoding tables (the relay's per-packet fast path).  Best of several repetitions.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from benchmarks.machine import print_header
from sipcallhunt.media import g711

FRAME = 160  # samples in 20 ms at 8 kHz


def best_seconds(call: Callable[[], object], *, repeat: int, number: int) -> float:
    """Seconds per call: the best of ``repeat`` timings of ``number`` calls."""
    call()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def run(*, smoke: bool) -> None:
    print_header("G.711 encode/decode/transcode (sipcallhunt.media.g711)")
    repeat, number = (2, 200) if smoke else (7, 5000)
    batch = 100 if smoke else 1000
    rng = np.random.default_rng(711)
    frame = (rng.standard_normal(FRAME) * 6000).clip(-32768, 32767).astype(np.int16)
    frames = (rng.standard_normal(FRAME * batch) * 6000).clip(-32768, 32767).astype(np.int16)
    sample_bytes = FRAME * batch * 2
    print(f"# frame = {FRAME} samples (20 ms); batch = {batch} frames in one call; best of {repeat}")
    print(f"{'operation':32s} {'per frame':>12s} {'batched/frame':>14s} {'MB/s batched':>13s}")
    for codec in g711.CODECS:
        payload = g711.encode(codec, frame)
        payloads = g711.encode(codec, frames)
        rows: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            (f"encode {codec}", lambda c=codec: g711.encode(c, frame), lambda c=codec: g711.encode(c, frames)),
            (
                f"decode {codec}",
                lambda c=codec, p=payload: g711.decode(c, p),
                lambda c=codec, p=payloads: g711.decode(c, p),
            ),
        ]
        for name, single, batched in rows:
            one = best_seconds(single, repeat=repeat, number=number)
            many = best_seconds(batched, repeat=repeat, number=max(1, number // batch * 4))
            print(f"{name:32s} {one * 1e6:9.2f} µs {many / batch * 1e9:11.1f} ns {sample_bytes / many / 1e6:13.0f}")
    ulaw = g711.encode_ulaw(frame)
    alaw = g711.encode_alaw(frame)
    big = g711.encode_ulaw(frames)
    for name, data, table in (
        ("transcode PCMU→PCMA translate", ulaw, g711.ULAW_TO_ALAW),
        ("transcode PCMA→PCMU translate", alaw, g711.ALAW_TO_ULAW),
    ):
        one = best_seconds(lambda d=data, t=table: d.translate(t), repeat=repeat, number=number * 4)
        many = best_seconds(lambda t=table: big.translate(t), repeat=repeat, number=max(1, number // batch * 4))
        print(f"{name:32s} {one * 1e6:9.2f} µs {many / batch * 1e9:11.1f} ns {len(big) / many / 1e6:13.0f}")
    decode_encode = best_seconds(lambda: g711.encode_alaw(g711.decode_ulaw(ulaw)), repeat=repeat, number=number)
    print(f"{'transcode via decode+encode':32s} {decode_encode * 1e6:9.2f} µs")
    print("# MB/s: megabytes of int16 samples per second for encode/decode, of payload for translate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.g711", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="run for a second or two (checks the script works)")
    args = parser.parse_args(argv)
    run(smoke=args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
