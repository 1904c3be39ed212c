"""Hypothesis strategies and test signals for the media tests (the signals also feed benchmarks/dtmf.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from sipcallhunt.media.rtp import RtpPacket

__all__ = [
    "ALL_KEYS",
    "DTMF_DIGITS",
    "Q24_ACCEPT",
    "Q24_REJECT",
    "digit_strings",
    "dtmf_digits",
    "dtmf_signal",
    "dual_tone",
    "key_frequencies",
    "q24_signal",
    "rtp_packets",
    "synthetic_music",
    "u16",
    "u32",
]

DTMF_DIGITS = "0123456789*#ABCD"
u16 = st.integers(min_value=0, max_value=0xFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
dtmf_digits = st.sampled_from(DTMF_DIGITS)
digit_strings = st.text(alphabet=DTMF_DIGITS, min_size=1, max_size=12)


@st.composite
def _padding(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(min_value=1, max_value=255))
    return draw(st.binary(min_size=count - 1, max_size=count - 1)) + bytes([count])


@st.composite
def rtp_packets(draw: st.DrawFn) -> RtpPacket:
    """Any encodable RTP packet, with and without CSRCs, header extension and padding."""
    extension = draw(
        st.none()
        | st.tuples(u16, st.integers(min_value=0, max_value=16).map(lambda words: b"\x5a" * (4 * words)))
        | st.tuples(u16, st.binary(max_size=64).map(lambda b: b[: len(b) // 4 * 4]))
    )
    padding_bytes = draw(st.just(b"") | _padding())
    return RtpPacket(
        payload_type=draw(st.integers(min_value=0, max_value=127)),
        sequence=draw(u16),
        timestamp=draw(u32),
        ssrc=draw(u32),
        payload=draw(st.binary(max_size=200)),
        marker=draw(st.booleans()),
        csrc=tuple(draw(st.lists(u32, max_size=15))),
        extension=extension,
        padding=bool(padding_bytes),
        padding_bytes=padding_bytes,
    )


# -- in-band DTMF test signals (shared with benchmarks/dtmf.py) --------------------------------

ROW_HZ = (697.0, 770.0, 852.0, 941.0)
COLUMN_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
DBM0 = 32768.0 * 10 ** (-3.17 / 20)  # peak of a 0 dBm0 sine in int16 (G.711 full scale is +3.17 dBm0)
RATE = 8000


def key_frequencies(digit: str) -> tuple[float, float]:
    for row, keys in enumerate(KEYS):
        if digit in keys:
            return ROW_HZ[row], COLUMN_HZ[keys.index(digit)]
    raise ValueError(digit)


def dual_tone(
    digit: str,
    ms: float,
    *,
    level_dbm0: float = -10.0,
    twist_db: float = 0.0,
    deviation: tuple[float, float] = (0.0, 0.0),
    phases: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """A key's two tones as float samples: the low tone at ``level_dbm0``, the high one ``twist_db`` above."""
    low, high = key_frequencies(digit)
    t = np.arange(round(ms * RATE / 1000)) / RATE
    a_low = DBM0 * 10 ** (level_dbm0 / 20)
    a_high = DBM0 * 10 ** ((level_dbm0 + twist_db) / 20)
    return a_low * np.sin(2 * np.pi * low * (1 + deviation[0]) * t + phases[0]) + a_high * np.sin(
        2 * np.pi * high * (1 + deviation[1]) * t + phases[1]
    )


def dtmf_signal(
    digits: str,
    *,
    rng: np.random.Generator,
    on_ms: float = 60.0,
    off_ms: float = 60.0,
    gap_ms: float | None = None,
    **tone: Any,
) -> tuple[np.ndarray, list[float]]:
    """``digits`` as int16 samples, and each digit's start in seconds.

    Random silence (0-50 ms) before the first digit and 0-5 ms added to each pause move the tones
    across the detector's frame grid; random phases.  ``gap_ms`` cuts a hole of that length in the
    middle of every tone (which is then ``2 · on_ms + gap_ms`` long, one key press).
    """
    parts = [np.zeros(int(rng.integers(0, 400)))]
    position = len(parts[0])
    starts = []
    for digit in digits:
        starts.append(position / RATE)
        phases = (float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi)))
        if gap_ms is None:
            samples = dual_tone(digit, on_ms, phases=phases, **tone)
        else:
            samples = dual_tone(digit, 2 * on_ms + gap_ms, phases=phases, **tone)
            hole = round(on_ms * RATE / 1000)
            samples[hole : hole + round(gap_ms * RATE / 1000)] = 0
        pause = np.zeros(round(off_ms * RATE / 1000) + int(rng.integers(0, 40)))
        parts += [samples, pause]
        position += len(samples) + len(pause)
    parts.append(np.zeros(RATE // 5))
    signal = np.concatenate(parts)
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16), starts


# The ITU-T Q.24 receiver requirements (AT&T column), case by case: keyword arguments of
# dtmf_signal.  Accept: each of the 16 digits detected once, in order.  Reject: no digit at all.
Q24_ACCEPT: dict[str, dict[str, Any]] = {
    "nominal -10 dBm0": {},
    "frequency +1.5 % / +1.5 %": {"deviation": (0.015, 0.015)},
    "frequency -1.5 % / -1.5 %": {"deviation": (-0.015, -0.015)},
    "frequency +1.5 % / -1.5 %": {"deviation": (0.015, -0.015)},
    "frequency -1.5 % / +1.5 %": {"deviation": (-0.015, 0.015)},
    "level 0 dBm0 per tone": {"level_dbm0": 0.0},
    "level -25 dBm0 per tone": {"level_dbm0": -25.0},
    "twist +4 dB": {"twist_db": 4.0},
    "twist -8 dB": {"twist_db": -8.0},
    "twist +4 dB at -25 dBm0": {"level_dbm0": -25.0, "twist_db": 4.0},
    "twist -8 dB at -25 dBm0": {"level_dbm0": -17.0, "twist_db": -8.0},
    "twist +4 dB at 0 dBm0": {"level_dbm0": -4.0, "twist_db": 4.0},
    "twist -8 dB at 0 dBm0": {"level_dbm0": 0.0, "twist_db": -8.0},
    "duration 40 ms": {"on_ms": 40.0},
    "pause 40 ms": {"off_ms": 40.0},
    "pause 40 ms, same key again": {"digits": "1111555599990000", "off_ms": 40.0},
    "duration 40 ms, pause 40 ms": {"on_ms": 40.0, "off_ms": 40.0},
    "10 ms interruption": {"on_ms": 50.0, "gap_ms": 10.0},
    "-25 dBm0, -8 dB, +1.5 %": {"level_dbm0": -17.0, "twist_db": -8.0, "deviation": (0.015, 0.015)},
    "-25 dBm0, +4 dB, -1.5 %": {"level_dbm0": -25.0, "twist_db": 4.0, "deviation": (-0.015, -0.015)},
    "40 ms, -25 dBm0, ±1.5 %": {"on_ms": 40.0, "level_dbm0": -25.0, "deviation": (0.015, -0.015)},
}
Q24_REJECT: dict[str, dict[str, Any]] = {
    "low tone +3.5 %": {"deviation": (0.035, 0.0)},
    "low tone -3.5 %": {"deviation": (-0.035, 0.0)},
    "high tone +3.5 %": {"deviation": (0.0, 0.035)},
    "high tone -3.5 %": {"deviation": (0.0, -0.035)},
    "both tones +3.5 %": {"deviation": (0.035, 0.035)},
    "both tones -3.5 %": {"deviation": (-0.035, -0.035)},
    "level -55 dBm0 per tone": {"level_dbm0": -55.0},
    "duration 23 ms": {"on_ms": 23.0},
    "duration 20 ms": {"on_ms": 20.0},
    "duration 23 ms at 0 dBm0": {"on_ms": 23.0, "level_dbm0": 0.0},
}
ALL_KEYS = "0123456789*#ABCD"


def q24_signal(case: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, list[float], str]:
    """The samples of one Q.24 case (16 digits), the digits' starts, and the digits."""
    arguments = dict(case)
    digits = arguments.pop("digits", ALL_KEYS)
    signal, starts = dtmf_signal(digits, rng=rng, **arguments)
    return signal, starts, digits


def _midi(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def _instrument_note(freq: float, seconds: float, rng: np.random.Generator, kind: str) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    if kind == "organ":
        partials, vibrato = [1.0, 0.6, 0.4, 0.3, 0.2, 0.15], 0.0
    elif kind == "strings":
        partials, vibrato = [1 / k ** rng.uniform(0.8, 1.3) for k in range(1, 9)], 0.004
    elif kind == "piano":
        partials, vibrato = [1 / k ** rng.uniform(1.0, 1.6) for k in range(1, 8)], 0.0
    else:  # flute-like: few partials, light vibrato
        partials, vibrato = [1.0, 0.5, 0.35, 0.2], 0.002
    phase = 2 * np.pi * freq * t + (vibrato * freq / 5.5) * np.sin(2 * np.pi * 5.5 * t)
    note = np.zeros(n)
    for k, amplitude in enumerate(partials, 1):
        if freq * k < 3800:
            note += amplitude * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    envelope = np.ones(n)
    attack, release = min(160, n), min(640, n)
    envelope[:attack] = np.linspace(0, 1, attack)
    if kind == "piano":
        envelope *= np.exp(-t * rng.uniform(1.5, 3.0))
    envelope[n - release :] *= np.linspace(1, 0, release)
    return note * envelope


def synthetic_music(seconds: float, seed: int) -> np.ndarray:
    """Polyphonic hold music in [-1, 1]: chord pads, a bass line and a melody, instruments with harmonics.

    Diatonic chord progressions in a random (modulating) key at 80-140 bpm; organ or string pads,
    piano bass, melody notes from flute, strings or piano over three octaves.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(int((seconds + 8) * RATE))
    scale = [0, 2, 4, 5, 7, 9, 11]
    progression = [0, 5, 3, 4, 0, 3, 4, 4]
    key = int(rng.integers(0, 12))
    beat = 60 / rng.uniform(80, 140)
    position, bar_index = 0.0, 0
    while position < seconds:
        degree = progression[bar_index % len(progression)]
        bar_index += 1
        root = key + scale[degree]
        chord = [key + scale[(degree + step) % 7] + (12 if degree + step >= 7 else 0) for step in (0, 2, 4)]
        bar = 4 * beat
        start = int(position * RATE)

        def add(samples: np.ndarray, at: int) -> None:
            out[at : at + len(samples)] += samples

        pad = str(rng.choice(["organ", "strings"]))
        for note in chord:
            add(0.25 * _instrument_note(_midi(60 + note), bar, rng, pad), start)
        for half in range(2):
            add(0.5 * _instrument_note(_midi(36 + root), 2 * beat, rng, "piano"), start + int(half * 2 * beat * RATE))
        t = 0.0
        while t < bar - 1e-9:
            length = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
            note = 72 + key + scale[int(rng.integers(0, 7))] + 12 * int(rng.integers(-1, 2))
            kind = str(rng.choice(["flute", "strings", "piano"]))
            add(0.35 * _instrument_note(_midi(note), length, rng, kind), start + int(t * RATE))
            t += length
        position += bar
        if rng.random() < 0.2:
            key = (key + int(rng.choice([5, 7, 2]))) % 12
    music = out[: int(seconds * RATE)]
    return music / np.max(np.abs(music))
