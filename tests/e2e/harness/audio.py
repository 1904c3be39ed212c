"""Test signals and their analysis: tones, DTMF, G.711, spectra, WAV files.

Signals are ``numpy.int16`` arrays at 8 kHz unless a ``rate`` says otherwise.  The G.711 coder
here is the harness's own textbook implementation, independent of sipcallhunt's, so that an
end-to-end test does not judge the product with the product's own code.

    samples = tone(440, 1.0)                          # 1 s of 440 Hz at -10 dBFS
    dominant_frequency(samples)                       # ~440.0
    assert_tones(recording, present=[440], absent=[1000])
"""

from __future__ import annotations

__all__ = [
    "DTMF_FREQUENCIES",
    "RATE",
    "alaw_decode",
    "alaw_encode",
    "assert_tones",
    "band_fraction",
    "concat",
    "decode",
    "dominant_frequency",
    "dtmf_sequence",
    "dtmf_tone",
    "encode",
    "goertzel_power",
    "level_dbfs",
    "read_wav",
    "silence",
    "tone",
    "tone_fraction",
    "ulaw_decode",
    "ulaw_encode",
    "write_wav",
]

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

RATE: Final = 8000

# ITU-T Q.23: (row, column) frequencies of each key.
DTMF_FREQUENCIES: Final[dict[str, tuple[int, int]]] = {
    key: (row, col)
    for row, keys in zip((697, 770, 852, 941), ("123A", "456B", "789C", "*0#D"), strict=True)
    for col, key in zip((1209, 1336, 1477, 1633), keys, strict=True)
}

# --- generation ---------------------------------------------------------------------------------


def _n(seconds: float, rate: int) -> int:
    return round(seconds * rate)


def tone(
    frequencies: float | Sequence[float], seconds: float, *, level_dbfs: float = -10.0, rate: int = RATE
) -> Samples:
    """A sine (or a sum of sines, each at ``level_dbfs`` peak) lasting ``seconds``."""
    freqs = [frequencies] if isinstance(frequencies, int | float) else list(frequencies)
    t = np.arange(_n(seconds, rate)) / rate
    amplitude = 32767.0 * 10 ** (level_dbfs / 20)
    signal = sum((amplitude * np.sin(2 * np.pi * f * t) for f in freqs), np.zeros_like(t))
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def silence(seconds: float, *, rate: int = RATE) -> Samples:
    return np.zeros(_n(seconds, rate), dtype=np.int16)


def concat(*parts: Samples) -> Samples:
    return np.concatenate([np.asarray(p, dtype=np.int16) for p in parts]) if parts else silence(0)


def dtmf_tone(key: str, seconds: float = 0.1, *, level_dbfs: float = -10.0, rate: int = RATE) -> Samples:
    """The Q.23 dual tone of ``key`` (0-9, *, #, A-D), each component at ``level_dbfs``."""
    return tone(DTMF_FREQUENCIES[key.upper()], seconds, level_dbfs=level_dbfs, rate=rate)


def dtmf_sequence(
    keys: str, *, on: float = 0.1, off: float = 0.1, level_dbfs: float = -10.0, rate: int = RATE
) -> Samples:
    """In-band DTMF for ``keys``: each tone ``on`` seconds followed by ``off`` seconds of silence."""
    return concat(*(concat(dtmf_tone(k, on, level_dbfs=level_dbfs, rate=rate), silence(off, rate=rate)) for k in keys))


# --- G.711 (ITU-T G.711, segment/mantissa form) -------------------------------------------------

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635


def _top_bit(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """floor(log2(v)) for v >= 1 (exact, via frexp)."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64) - 1


def ulaw_encode(samples: Samples) -> bytes:
    x = np.asarray(samples, dtype=np.int64)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    exponent = np.clip(_top_bit(magnitude) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes())


def ulaw_decode(data: bytes) -> Samples:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int64) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def alaw_encode(samples: Samples) -> bytes:
    x = np.asarray(samples, dtype=np.int64)
    mask = np.where(x >= 0, 0xD5, 0x55)
    magnitude = np.where(x >= 0, x, -x - 1) >> 3  # 13-bit magnitude, 0..4095
    segment = np.where(magnitude < 32, 0, np.clip(_top_bit(np.maximum(magnitude, 1)) - 4, 0, 7))
    mantissa = (magnitude >> np.maximum(segment, 1)) & 0x0F
    return bytes((((segment << 4) | mantissa) ^ mask).astype(np.uint8).tobytes())


def alaw_decode(data: bytes) -> Samples:
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int64) ^ 0x55
    segment = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(segment == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(segment - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def encode(codec: str, samples: Samples) -> bytes:
    """Encode with ``codec`` "PCMU" or "PCMA"."""
    if codec.upper() == "PCMU":
        return ulaw_encode(samples)
    if codec.upper() == "PCMA":
        return alaw_encode(samples)
    raise ValueError(f"unsupported codec {codec!r}")


def decode(codec: str, data: bytes) -> Samples:
    if codec.upper() == "PCMU":
        return ulaw_decode(data)
    if codec.upper() == "PCMA":
        return alaw_decode(data)
    raise ValueError(f"unsupported codec {codec!r}")


# --- analysis -----------------------------------------------------------------------------------


def _float(samples: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return np.asarray(samples, dtype=np.float64) / 32768.0


def level_dbfs(samples: npt.ArrayLike) -> float:
    """RMS level relative to a full-scale square wave (a full-scale sine is -3 dBFS); -inf for silence."""
    x = _float(samples)
    if x.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(x * x)))
    return 20 * float(np.log10(rms)) if rms > 0 else float("-inf")


def dominant_frequency(samples: npt.ArrayLike, *, rate: int = RATE) -> float:
    """The strongest frequency (Hann window, parabolic interpolation between FFT bins)."""
    x = _float(samples)
    if x.size < 16:
        raise ValueError("too few samples to find a frequency")
    spectrum = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size)))
    peak = int(np.argmax(spectrum[1:])) + 1
    offset = 0.0
    if 1 <= peak < spectrum.size - 1:
        a, b, c = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
        denominator = a - 2 * b + c
        if denominator != 0:
            offset = 0.5 * (a - c) / denominator
    return float((peak + offset) * rate / x.size)


def goertzel_power(samples: npt.ArrayLike, frequency: float, *, rate: int = RATE) -> float:
    """Mean-square power of the ``frequency`` component (one DFT term, as Goertzel computes it).

    A full-scale sine at exactly ``frequency`` gives ~0.5, the same scale as ``mean(x**2)``.
    """
    x = _float(samples)
    if x.size == 0:
        return 0.0
    n = np.arange(x.size)
    term = np.dot(x, np.exp(-2j * np.pi * frequency * n / rate))
    return float(2 * abs(term) ** 2 / x.size**2)


def _active(samples: npt.ArrayLike, rate: int, threshold_dbfs: float) -> npt.NDArray[np.float64]:
    """Only the 20 ms frames louder than ``threshold_dbfs`` (so silence does not dilute a tone)."""
    x = _float(samples)
    frame = rate // 50
    usable = x[: x.size - x.size % frame].reshape(-1, frame)
    if usable.size == 0:
        return x
    rms = np.sqrt(np.mean(usable * usable, axis=1))
    loud = usable[rms > 10 ** (threshold_dbfs / 20)]
    return np.asarray(loud.reshape(-1), dtype=np.float64)


def band_fraction(samples: npt.ArrayLike, frequency: float, *, bandwidth: float = 15.0, rate: int = RATE) -> float:
    """Share (0..1) of the signal's energy within ``frequency`` ± ``bandwidth`` Hz."""
    x = _float(samples)
    if x.size == 0:
        return 0.0
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size))) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    total = float(power.sum())
    if total <= 0:
        return 0.0
    return float(power[np.abs(freqs - frequency) <= bandwidth].sum() / total)


def tone_fraction(
    samples: npt.ArrayLike,
    frequency: float,
    *,
    bandwidth: float = 15.0,
    silence_dbfs: float = -45.0,
    rate: int = RATE,
) -> float:
    """:func:`band_fraction` over the non-silent 20 ms frames only (0.0 if all is silence)."""
    active = _active(samples, rate, silence_dbfs)
    return band_fraction(active, frequency, bandwidth=bandwidth, rate=rate) if active.size else 0.0


def assert_tones(
    samples: npt.ArrayLike,
    *,
    present: Iterable[float] = (),
    absent: Iterable[float] = (),
    min_fraction: float = 0.3,
    max_fraction: float = 0.02,
    rate: int = RATE,
) -> None:
    """Assert that each ``present`` tone holds at least ``min_fraction`` of the non-silent energy
    and each ``absent`` tone at most ``max_fraction``; the message names what was found."""
    x = np.asarray(samples)
    problems = []
    for freq in present:
        share = tone_fraction(x, freq, rate=rate)
        if share < min_fraction:
            problems.append(f"{freq:g} Hz holds {share:.1%} of the energy (want >= {min_fraction:.0%})")
    for freq in absent:
        share = tone_fraction(x, freq, rate=rate)
        if share > max_fraction:
            problems.append(f"{freq:g} Hz holds {share:.1%} of the energy (want <= {max_fraction:.0%})")
    if problems:
        active = _active(x, rate, -45.0)
        found = f"{dominant_frequency(active, rate=rate):.1f} Hz" if active.size >= 16 else "nothing (silence)"
        raise AssertionError(
            f"{'; '.join(problems)}; {x.size / rate:.2f} s of audio at {level_dbfs(x):.1f} dBFS, dominant {found}"
        )


# --- files --------------------------------------------------------------------------------------


def read_wav(path: str | Path, *, rate: int | None = RATE) -> Samples:
    """Read a WAV (e.g. a baresip ``sndfile`` recording) as mono int16, resampled to ``rate``
    (None keeps the file's rate)."""
    import soundfile

    data, file_rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    mono = data.mean(axis=1) if data.size else np.zeros(0)
    if rate is not None and file_rate != rate and mono.size:
        import soxr

        mono = soxr.resample(mono, file_rate, rate, quality="HQ")
    return np.clip(np.round(np.asarray(mono) * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: str | Path, samples: npt.ArrayLike, *, rate: int = RATE) -> Path:
    """Write mono 16-bit PCM."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.asarray(samples, dtype=np.int16), rate, subtype="PCM_16")
    return path
