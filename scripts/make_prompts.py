#!/usr/bin/env python3
"""Regenerate every bundled prompt and the bundled hold music of sipcallhunt.

    python scripts/make_prompts.py            # writes audio/en/, audio/de/, audio/music/, audio/README.md
    python scripts/make_prompts.py --check    # regenerates into a temporary folder and compares with audio/

Prompts are spoken by espeak-ng, resampled to 8 kHz mono with soxr, band-limited to the telephone band,
trimmed to the speech (a short lead-in and a short tail are kept so that composed playlists such as
"press" + "one" + "to accept the call" sound like one sentence), level-normalised (every prompt gets the
same active speech level) and written as 16-bit PCM WAV.  The hold music is synthesised with numpy: a soft
chord progression with a gentle arpeggio and melody, rendered circularly so that the end flows into the
start without a click; it is written as 16-bit FLAC at 8 kHz.

The output depends only on this script, espeak-ng and numpy/soxr: running it twice gives the same files.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

RATE: Final = 8000
ROOT: Final = Path(__file__).resolve().parent.parent
AUDIO: Final = ROOT / "audio"

# ---------------------------------------------------------------------------------------------------------
# What the prompts say.  The names are the ones the hotline call flow uses (sipcallhunt.prompts).
# ---------------------------------------------------------------------------------------------------------

TEXTS: Final[dict[str, dict[str, str]]] = {
    "en": {
        "intro": "Welcome to the hotline.",
        "enter_pin": "Please enter your PIN, followed by the hash key.",
        "wrong_pin": "That PIN is not valid.",
        "pin_locked": "Too many wrong PIN entries. Please try again later.",
        "goodbye": "Goodbye.",
        "please_hold": "Please hold. We are connecting you with an agent.",
        "whisper": "Incoming hotline call.",
        "press": "Press",
        "to_accept": "to accept the call.",
        "to_decline": "to decline.",
        "no_agent": "All our agents are busy. Please try again later.",
        "forwarding": "Please hold, your call is being forwarded.",
        "digit_0": "zero",
        "digit_1": "one",
        "digit_2": "two",
        "digit_3": "three",
        "digit_4": "four",
        "digit_5": "five",
        "digit_6": "six",
        "digit_7": "seven",
        "digit_8": "eight",
        "digit_9": "nine",
        "digit_star": "star",
        "digit_hash": "hash",
        "digit_A": "A",
        "digit_B": "B",
        "digit_C": "C",
        "digit_D": "D",
    },
    "de": {
        "intro": "Willkommen bei der Hotline.",
        "enter_pin": "Bitte geben Sie Ihre PIN ein und drücken Sie anschließend die Raute-Taste.",
        "wrong_pin": "Diese PIN ist leider ungültig.",
        "pin_locked": "Zu viele falsche PIN-Eingaben. Bitte versuchen Sie es später noch einmal.",
        "goodbye": "Auf Wiederhören.",
        "please_hold": "Bitte bleiben Sie am Apparat. Wir verbinden Sie mit einem Mitarbeiter.",
        "whisper": "Ein Anruf über die Hotline.",
        "press": "Drücken Sie die",
        "to_accept": "um den Anruf anzunehmen.",
        "to_decline": "um abzulehnen.",
        "no_agent": "Leider sind im Moment alle Mitarbeiter im Gespräch. Bitte versuchen Sie es später noch einmal.",
        "forwarding": "Bitte bleiben Sie am Apparat, Ihr Anruf wird weitergeleitet.",
        "digit_0": "Null",
        "digit_1": "Eins",
        "digit_2": "Zwei",
        "digit_3": "Drei",
        "digit_4": "Vier",
        "digit_5": "Fünf",
        "digit_6": "Sechs",
        "digit_7": "Sieben",
        "digit_8": "Acht",
        "digit_9": "Neun",
        "digit_star": "Sterntaste",
        "digit_hash": "Rautetaste",
        "digit_A": "A-Taste",
        "digit_B": "B-Taste",
        "digit_C": "C-Taste",
        "digit_D": "D-Taste",
    },
}

# Recordings for examples/hotline.toml (an operator's own prompts, e.g. the hotline's name for the agent
# announcement): path relative to the repository, language, text.
EXAMPLES: Final[dict[str, tuple[str, str]]] = {
    "examples/prompts/support-name.wav": ("en", "Support hotline."),
}

# espeak-ng voice, words per minute, pitch (0-99).  A female variant at a calm rate carries well over G.711.
VOICES: Final[dict[str, tuple[str, int, int]]] = {
    "en": ("en-us+f3", 150, 48),
    "de": ("de+f3", 145, 48),
}

SPEECH_RMS_DBFS: Final = -19.0  # level of the active speech (10 ms frames above the silence gate)
PEAK_LIMIT_DBFS: Final = -1.0  # never louder than this, whatever the RMS target says
LEAD_S: Final = 0.03  # silence kept before the first sound
TAIL_S: Final = 0.12  # silence kept after the last sound (the gap between composed prompts)
GATE_DB: Final = 40.0  # frames quieter than the loudest frame by more than this count as silence
FADE_S: Final = 0.005

# ---------------------------------------------------------------------------------------------------------
# Speech
# ---------------------------------------------------------------------------------------------------------


def speak(text: str, voice: str, rate_wpm: int, pitch: int, workdir: Path) -> tuple[npt.NDArray[np.float64], int]:
    """Run espeak-ng; return its samples (float, mono) and sample rate."""
    out = workdir / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-p", str(pitch), "-a", "120", "-w", str(out), text],
        check=True,
        capture_output=True,
    )
    data, rate = soundfile.read(str(out), dtype="float64", always_2d=True)
    return np.asarray(data.mean(axis=1), dtype=np.float64), int(rate)


def telephone_band(x: npt.NDArray[np.float64], low: float = 200.0, high: float = 3600.0) -> npt.NDArray[np.float64]:
    """Remove DC and rumble below ``low`` and anything above ``high`` (smooth cosine edges, zero phase)."""
    n = len(x)
    size = 1 << max(10, (n + 2048 - 1).bit_length())
    spectrum = np.fft.rfft(x, size)
    freqs = np.fft.rfftfreq(size, 1.0 / RATE)
    gain = np.ones_like(freqs)
    edge_low = (freqs >= low * 0.5) & (freqs < low)
    gain[freqs < low * 0.5] = 0.0
    gain[edge_low] = 0.5 - 0.5 * np.cos(np.pi * (freqs[edge_low] - low * 0.5) / (low * 0.5))
    edge_high = (freqs > high) & (freqs <= RATE / 2)
    gain[edge_high] = 0.5 + 0.5 * np.cos(np.pi * (freqs[edge_high] - high) / (RATE / 2 - high))
    return np.asarray(np.fft.irfft(spectrum * gain, size)[:n], dtype=np.float64)


def frame_levels(x: npt.NDArray[np.float64], frame: int) -> npt.NDArray[np.float64]:
    """RMS of each ``frame``-sample frame (the last one zero-padded)."""
    padded = np.pad(x, (0, (-len(x)) % frame))
    return np.asarray(np.sqrt(np.mean(padded.reshape(-1, frame) ** 2, axis=1)), dtype=np.float64)


def finish_prompt(x: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    """Trim, normalise and fade a prompt at 8 kHz; return int16 samples."""
    frame = RATE // 100
    levels = frame_levels(x, frame)
    gate = levels.max() * 10 ** (-GATE_DB / 20)
    active = np.flatnonzero(levels > gate)
    if active.size == 0:
        raise SystemExit("espeak-ng produced silence")
    start = max(0, active[0] * frame - int(LEAD_S * RATE))
    end = min(len(x), (active[-1] + 1) * frame + int(TAIL_S * RATE))
    x = x[start:end].copy()
    # Level: the RMS over the active frames only, so that short and long prompts sound equally loud.
    speech = levels[active]
    rms = math.sqrt(float(np.mean(speech**2)))
    gain = 10 ** (SPEECH_RMS_DBFS / 20) / rms
    peak = float(np.max(np.abs(x))) * gain
    limit = 10 ** (PEAK_LIMIT_DBFS / 20)
    if peak > limit:
        gain *= limit / peak
    x *= gain
    fade = int(FADE_S * RATE)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def make_prompt(language: str, text: str, workdir: Path) -> npt.NDArray[np.int16]:
    voice, wpm, pitch = VOICES[language]
    raw, rate = speak(text, voice, wpm, pitch, workdir)
    x = np.asarray(soxr.resample(raw, rate, RATE, quality="VHQ"), dtype=np.float64)
    return finish_prompt(telephone_band(x))


# ---------------------------------------------------------------------------------------------------------
# Hold music
# ---------------------------------------------------------------------------------------------------------

BPM: Final = 75
BEAT: Final = RATE * 60 // BPM  # 6400 samples: every event starts on a whole sample
BAR: Final = 4 * BEAT
MUSIC_RMS_DBFS: Final = -23.0
MUSIC_PEAK_DBFS: Final = -6.0
HIGHEST_NOTE: Final = 76  # E5, 659 Hz: every fundamental stays below the DTMF low group (697 Hz and up)

# One chord per bar (MIDI note numbers): bass root, then the voicing.  16 bars = 51.2 s, then it loops.
PROGRESSION: Final[list[tuple[int, tuple[int, ...]]]] = [
    (41, (57, 60, 64, 65)),  # Fmaj7
    (38, (57, 60, 62, 65)),  # Dm7
    (46, (58, 62, 65, 69)),  # Bbmaj7
    (48, (55, 58, 60, 65)),  # C7sus4
    (41, (57, 60, 64, 69)),  # Fmaj7
    (45, (55, 60, 64, 67)),  # Am7
    (43, (58, 62, 65, 67)),  # Gm7
    (48, (55, 58, 60, 64)),  # C7
    (46, (57, 62, 65, 69)),  # Bbmaj7
    (45, (57, 60, 64, 67)),  # Am7
    (38, (57, 60, 62, 65)),  # Dm7
    (43, (55, 58, 62, 65)),  # Gm7
    (46, (58, 62, 65, 69)),  # Bbmaj7
    (48, (55, 60, 64, 67)),  # C
    (46, (57, 62, 65, 69)),  # Bb(add9)
    (48, (55, 58, 60, 64)),  # C7, leading back to Fmaj7 at the loop point
]

# (bar, beat, length in beats, MIDI note): a slow melody over the second half.
MELODY: Final[list[tuple[int, float, float, int]]] = [
    (8, 0, 3, 69), (8, 3, 1, 67),
    (9, 0, 2, 64), (9, 2, 2, 67),
    (10, 0, 3, 65), (10, 3, 1, 64),
    (11, 0, 4, 62),
    (12, 0, 2, 65), (12, 2, 2, 69),
    (13, 0, 3, 67), (13, 3, 1, 64),
    (14, 0, 2, 65), (14, 2, 2, 62),
    (15, 0, 4, 64),
]  # fmt: skip


def midi_hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


class LoopBuffer:
    """A circular mix buffer: whatever rings past the end continues at the start (a seamless loop)."""

    def __init__(self, length: int) -> None:
        self.data = np.zeros(length, dtype=np.float64)

    def add(self, start: int, signal: npt.NDArray[np.float64]) -> None:
        index = (start + np.arange(len(signal))) % len(self.data)
        np.add.at(self.data, index, signal)


def tone(
    freq: float, n: int, partials: Iterable[tuple[int, float]], detune_cents: float = 0.0
) -> npt.NDArray[np.float64]:
    t = np.arange(n) / RATE
    f = freq * 2 ** (detune_cents / 1200)
    out = np.zeros(n)
    for k, amp in partials:
        if k * f < 3400:
            out += amp * np.sin(2 * np.pi * k * f * t)
    return out


def pluck_envelope(n: int, attack: float, decay: float) -> npt.NDArray[np.float64]:
    t = np.arange(n) / RATE
    env = np.exp(-t / decay)
    a = int(attack * RATE)
    env[:a] *= 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, a))
    release = int(0.05 * RATE)
    env[-release:] *= np.linspace(1.0, 0.0, release)
    return env


def swell_envelope(n: int, attack: int, release: int) -> npt.NDArray[np.float64]:
    env = np.ones(n)
    env[:attack] = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, attack))
    env[-release:] = 0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, release))
    return env


def make_hold_music() -> npt.NDArray[np.int16]:
    bars = len(PROGRESSION)
    mix = LoopBuffer(bars * BAR)
    overlap = BEAT  # each pad chord swells in over one beat while the previous one fades out
    arp_pattern_a = (0, 1, 2, 3, 4, 3, 2, 1)
    arp_pattern_b = (0, 2, 1, 3, 2, 4, 3, 1)
    for bar, (bass, chord) in enumerate(PROGRESSION):
        start = bar * BAR
        # Pad: soft, slightly detuned sines with a faint second harmonic.
        n = BAR + overlap
        env = swell_envelope(n, overlap, overlap)
        for note in chord:
            for detune in (-4.0, 4.0):
                mix.add(start, 0.035 * env * tone(midi_hz(note), n, ((1, 1.0), (2, 0.12)), detune))
        # Bass: the root an octave up from MIDI bass (audible on a phone line), warm and round.
        bass_note = bass + 12
        for beat in (0, 2):
            m = 2 * BEAT + BEAT // 2
            mix.add(
                start + beat * BEAT,
                0.13 * pluck_envelope(m, 0.02, 0.9) * tone(midi_hz(bass_note), m, ((1, 1.0), (2, 0.35), (3, 0.1))),
            )
        # Arpeggio in eighth notes over the chord (an octave up where it stays below HIGHEST_NOTE).
        tones = sorted(chord)
        tones = [*tones, tones[0] + 12]
        pattern = arp_pattern_a if bar < 8 else arp_pattern_b
        for step, index in enumerate(pattern):
            note = tones[index]
            while note + 12 <= HIGHEST_NOTE and note < 64:
                note += 12
            m = int(1.6 * RATE)
            accent = 1.0 if step % 4 == 0 else 0.75
            mix.add(
                start + step * (BEAT // 2),
                0.07 * accent * pluck_envelope(m, 0.006, 0.45) * tone(midi_hz(note), m, ((1, 1.0), (2, 0.08))),
            )
    # Melody: a gentle sine voice with slow vibrato.
    for m_bar, m_beat, length, note in MELODY:
        n = int(length * BEAT + BEAT // 2)
        t = np.arange(n) / RATE
        vibrato = 1 + 0.003 * np.sin(2 * np.pi * 5.0 * t) * np.clip(t / 0.6, 0, 1)
        phase = 2 * np.pi * midi_hz(note) * np.cumsum(vibrato) / RATE
        voice = np.sin(phase) + 0.05 * np.sin(2 * phase)
        env = swell_envelope(n, int(0.12 * RATE), int(0.6 * RATE))
        mix.add(m_bar * BAR + int(m_beat * BEAT), 0.12 * env * voice)
    x = mix.data - mix.data.mean()
    # Softer than the prompts: MUSIC_RMS_DBFS, and never a peak above MUSIC_PEAK_DBFS.
    gain = 10 ** (MUSIC_RMS_DBFS / 20) / math.sqrt(float(np.mean(x**2)))
    gain = min(gain, 10 ** (MUSIC_PEAK_DBFS / 20) / float(np.max(np.abs(x))))
    x *= gain
    out: npt.NDArray[np.int16] = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    return out


# ---------------------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------------------

README_HEAD = """\
# Bundled prompts and hold music

Everything in this folder is generated by `scripts/make_prompts.py` (espeak-ng for speech, numpy for the
music) and shipped inside the wheel as `sipcallhunt/audio/`.  Files: 8 kHz, mono, 16-bit;
prompts are WAV, the hold music is FLAC (51.2 s, loops without a gap).

| folder | what |
|---|---|
| `en/`, `de/` | one `<name>.wav` per prompt below, in English and German (`language = "en"` / `"de"`) |
| `music/hold.flac` | the hold music callers hear while agents are being called |

## Regenerating

    apt-get install espeak-ng          # Debian/Ubuntu
    python scripts/make_prompts.py     # rewrites audio/en, audio/de, audio/music and this README
    python scripts/make_prompts.py --check   # exit 1 if the committed files differ from a fresh run

Edit the texts, voices and levels at the top of the script.  Speech is band-limited to 200-3600 Hz, trimmed
to 30 ms before the first and 120 ms after the last sound (so that the composed agent announcement
"Press" + "one" + "to accept the call." flows like one sentence), and every prompt gets the same active speech
level ({speech} dBFS RMS, peaks below {peak} dBFS).  The music keeps every note below 697 Hz, so that
it cannot be taken for DTMF, and sits a little below the speech ({music} dBFS RMS).

## Replacing prompts

Operators usually record their own welcome message.  Each hotline in the configuration file may replace
these prompts with any audio file libsndfile reads (WAV, FLAC, OGG; any rate, mono or stereo: it is mixed
down and resampled to 8 kHz at start-up); a relative path is relative to the configuration file:

```toml
[[hotline]]
name = "support"
language = "en"                  # which bundled set the other prompts come from: "en" or "de"
intro = "prompts/welcome.wav"    # replaces intro
enter_pin = "prompts/pin.wav"
wrong_pin = "prompts/wrong-pin.wav"
pin_locked = "prompts/locked.wav"
goodbye = "prompts/goodbye.wav"
please_hold = "prompts/hold-on.wav"
hold_music = "music/our-jingle.flac"   # looped for as long as the caller waits
whisper = "prompts/support-call.wav"   # what the agent hears after answering
no_agent = "prompts/closed.wav"
forwarding = "prompts/forwarding.wav"  # when on_no_agent = "forward:<number>"
hotline_name = "prompts/support-name.wav"  # "Support hotline.": played to the agent before whisper
```

The keys that can be replaced are `intro`, `enter_pin`, `wrong_pin`, `pin_locked`, `goodbye`,
`please_hold`, `hold_music`, `whisper`, `no_agent` and `forwarding`.  `hotline_name` has no bundled
recording: without it the daemon speaks the hotline's `name` with espeak-ng when that is installed,
else the agent announcement starts with `whisper`.  The agent's key instructions
(`press`, the key names, `to_accept`, `to_decline`) always come from the bundled set of the hotline's
language.  The agent hears: [`hotline_name`] `whisper`, `press`, `digit_<confirm_key>`, `to_accept`,
`press`, `digit_<decline_key>`, `to_decline`, repeated until a key is pressed.

## The texts
"""


def readme() -> str:
    lines = [
        README_HEAD.format(speech=f"{SPEECH_RMS_DBFS:g}", peak=f"{PEAK_LIMIT_DBFS:g}", music=f"{MUSIC_RMS_DBFS:g}"),
        "",
    ]
    languages = list(TEXTS)
    lines.append("| name | " + " | ".join(f"`{lang}`" for lang in languages) + " |")
    lines.append("|---|" + "---|" * len(languages))
    for name in TEXTS["en"]:
        lines.append(f"| `{name}` | " + " | ".join(TEXTS[lang][name] for lang in languages) + " |")
    voices = ", ".join(f"`{lang}`: {v} at {wpm} words/min, pitch {p}" for lang, (v, wpm, p) in VOICES.items())
    lines += ["", f"espeak-ng voices: {voices}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------


def write_all(target: Path) -> list[Path]:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        for language, texts in TEXTS.items():
            folder = target / language
            folder.mkdir(parents=True, exist_ok=True)
            for name, text in texts.items():
                path = folder / f"{name}.wav"
                soundfile.write(str(path), make_prompt(language, text, Path(tmp)), RATE, subtype="PCM_16")
                written.append(path)
    music = target / "music"
    music.mkdir(parents=True, exist_ok=True)
    path = music / "hold.flac"
    soundfile.write(str(path), make_hold_music(), RATE, format="FLAC", subtype="PCM_16")
    written.append(path)
    readme_path = target / "README.md"
    readme_path.write_text(readme(), encoding="utf-8")
    written.append(readme_path)
    return written


def write_examples(root: Path) -> list[Path]:
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (language, text) in EXAMPLES.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(str(path), make_prompt(language, text, Path(tmp)), RATE, subtype="PCM_16")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=AUDIO, help="target folder (default: the repository's audio/)")
    parser.add_argument("--check", action="store_true", help="compare a fresh run with the files in --out")
    args = parser.parse_args(argv)
    if not args.check:
        for path in write_all(args.out):
            print(path.relative_to(args.out) if path.is_relative_to(args.out) else path)
        if args.out == AUDIO:
            for path in write_examples(ROOT):
                print(path.relative_to(ROOT))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        different = []
        for path in write_all(Path(tmp)):
            rel = path.relative_to(tmp)
            old = args.out / rel
            if rel.suffix in (".wav", ".flac"):
                same = old.is_file() and np.array_equal(
                    soundfile.read(str(old), dtype="int16")[0], soundfile.read(str(path), dtype="int16")[0]
                )
            else:
                same = old.is_file() and old.read_bytes() == path.read_bytes()
            if not same:
                different.append(str(rel))
    for name in different:
        print(f"differs: {name}")
    print("up to date" if not different else f"{len(different)} file(s) differ")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
