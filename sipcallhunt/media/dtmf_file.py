"""Decode in-band DTMF from audio files with the production detector: ``sipcallhunt dtmf FILE [FILE…]``.

The file is read with :func:`sipcallhunt.media.audiofile.load_audio` (any format libsndfile
reads, mixed to mono and resampled to 8 kHz), converted to int16 and run through
:class:`sipcallhunt.media.inband.InbandDetector`, the same detector the media engine uses on
live calls.  Useful to check a recording, a prompt (which must not contain digits) or a peer's
tones.
"""

from __future__ import annotations

__all__ = ["decode_file", "main"]

import argparse
import sys
from pathlib import Path

from sipcallhunt.errors import AudioFileError
from sipcallhunt.media.audiofile import load_audio, to_int16
from sipcallhunt.media.inband import InbandDetector

PROG = "sipcallhunt dtmf"


def decode_file(path: str | Path) -> list[tuple[str, float]]:
    """``(digit, offset in seconds)`` of every DTMF digit in the file; :class:`AudioFileError` if unreadable."""
    samples = to_int16(load_audio(path))
    detector = InbandDetector()
    return detector.feed(samples) + detector.flush()


def main(argv: list[str]) -> int:
    """Print each digit found, one per line, the digit first (``5  1.240 s``).

    With several files a ``# FILE`` line precedes each file's digits.  Unreadable files are
    reported on stderr as ``sipcallhunt dtmf: FILE: reason``; the others are still decoded and
    the exit status is then 1.
    """
    parser = argparse.ArgumentParser(
        prog=PROG, description="Print the in-band DTMF digits in audio files, with their time offsets."
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio file (WAV, FLAC, OGG, ...)")
    args = parser.parse_args(argv)
    status = 0
    several = len(args.files) > 1
    for name in args.files:
        try:
            digits = decode_file(name)
        except AudioFileError as exc:
            print(f"{PROG}: {exc.path}: {exc.reason}", file=sys.stderr)
            status = 1
            continue
        if several:
            print(f"# {name}")
        for digit, offset in digits:
            print(f"{digit}  {offset:.3f} s")
    sys.stdout.flush()
    return status
