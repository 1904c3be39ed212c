"""Reading audio files into the project's one internal format: mono int16 at 8 kHz.

Anything libsndfile reads (WAV, FLAC, OGG/Vorbis, and MP3 where the installed libsndfile has
it) is mixed down to mono and resampled with soxr (a band-limited, anti-aliasing resampler).
Every failure raises :class:`~sipcallhunt.errors.AudioFileError` naming the file.
"""

from __future__ import annotations

__all__ = ["RATE", "load_audio", "normalize", "to_int16"]

from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from sipcallhunt.errors import AudioFileError

RATE: Final = 8000
"""The sample rate of all audio inside sipcallhunt (G.711 narrowband)."""


def load_audio(path: str | Path, *, rate: int = RATE) -> npt.NDArray[np.float64]:
    """Read ``path`` as mono float64 in [-1, 1] at ``rate`` Hz."""
    import soundfile  # imported here: only the shell and tools read files

    name = str(path)
    try:
        data, file_rate = soundfile.read(name, dtype="float64", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as exc:
        # soundfile raises LibsndfileError (a RuntimeError) for unreadable formats.
        raise AudioFileError(name, f"cannot read audio: {exc}") from None
    if data.size == 0 or data.shape[0] == 0:
        raise AudioFileError(name, "the file holds no audio samples")
    mono = data.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise AudioFileError(name, "the file holds invalid (NaN or infinite) samples")
    if file_rate != rate:
        import soxr

        mono = np.asarray(soxr.resample(mono, file_rate, rate, quality="HQ"), dtype=np.float64)
    if mono.size == 0:
        raise AudioFileError(name, "the file is too short to hold any audio at 8 kHz")
    return np.asarray(mono, dtype=np.float64)


def normalize(samples: npt.NDArray[np.float64], *, peak_dbfs: float = -3.0) -> npt.NDArray[np.float64]:
    """Scale so that the loudest sample sits at ``peak_dbfs``; silence stays silence."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak < 1e-6:
        return samples
    return samples * (10 ** (peak_dbfs / 20) / peak)


def to_int16(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    """Float samples in [-1, 1] to int16 with clipping."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
