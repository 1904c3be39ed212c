"""Prompt loading, resampling, frames and seamless loops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from sipcallhunt.errors import AudioFileError
from sipcallhunt.media import g711
from sipcallhunt.media.prompt import FRAME_SAMPLES, PromptCache, load_prompt, make_prompt


def tone(freq: float, rate: int, seconds: float, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return level * np.sin(2 * np.pi * freq * t)


def decoded(frames: list[bytes] | tuple[bytes, ...], codec: str = "PCMU") -> np.ndarray:
    return g711.decode(codec, b"".join(frames)).astype(np.float64)


def peak_frequency(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate"),
    [("WAV", "PCM_16", 44100), ("FLAC", "PCM_16", 16000), ("OGG", "VORBIS", 8000), ("WAV", "FLOAT", 16000)],
)
def test_load_formats_rates_stereo(tmp_path: Path, fmt: str, subtype: str, rate: int) -> None:
    path = tmp_path / f"tone.{fmt.lower()}"
    mono = tone(1000, rate, 0.51)
    soundfile.write(path, np.stack([mono, mono], axis=1), rate, format=fmt, subtype=subtype)
    prompt = load_prompt(path, name="tone")
    assert prompt.name == "tone"
    assert prompt.source == str(path)
    assert prompt.duration == pytest.approx(0.51, abs=0.01)
    for codec in ("PCMU", "PCMA"):
        frames = prompt.frames(codec)
        assert all(len(f) == FRAME_SAMPLES for f in frames)
        assert len(frames) == -(-len(prompt.samples) // FRAME_SAMPLES)
        audio = decoded(frames, codec)
        assert peak_frequency(audio[800:3200]) == pytest.approx(1000, abs=10)
        # normalised: the peak sits near -3 dBFS whatever the file's level
        assert np.max(np.abs(audio)) / 32768 == pytest.approx(10 ** (-3 / 20), rel=0.1)


def test_last_frame_padded_with_silence() -> None:
    samples = tone(1000, 8000, 0.0255)  # 204 samples: one full frame and 44 samples
    prompt = make_prompt("short", samples)
    frames = prompt.frames("PCMU")
    assert len(frames) == 2
    assert frames[1][44:] == g711.silence("PCMU", FRAME_SAMPLES - 44)
    assert prompt.frames("PCMA")[1][44:] == g711.silence("PCMA", FRAME_SAMPLES - 44)


def test_resampling_removes_a_tone_above_the_band(tmp_path: Path) -> None:
    # 6 kHz at 44.1 kHz must not alias to 2 kHz at 8 kHz: the resampler band-limits.
    path = tmp_path / "high.wav"
    soundfile.write(path, tone(6000, 44100, 1.0) + tone(1000, 44100, 1.0, level=0.05), 44100)
    prompt = load_prompt(path, name="high", normalize=False)
    audio = decoded(prompt.frames("PCMU"))[400:-400]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    freqs = np.fft.rfftfreq(len(audio), 1 / 8000)
    at_1k = spectrum[np.argmin(np.abs(freqs - 1000))]
    at_2k = spectrum[(freqs > 1900) & (freqs < 2100)].max()
    assert at_2k < at_1k / 30  # the 6 kHz tone was 20 dB louder than the 1 kHz one


@pytest.mark.parametrize("content", [b"", b"this is not audio at all" * 10])
def test_unreadable_and_empty_files_name_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(AudioFileError) as info:
        load_prompt(path, name="broken")
    assert str(path) in str(info.value)
    assert info.value.path == str(path)


def test_wav_without_samples_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nothing.wav"
    soundfile.write(path, np.zeros((0, 1)), 8000)
    with pytest.raises(AudioFileError, match=r"nothing\.wav"):
        load_prompt(path, name="nothing")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"missing\.wav"):
        load_prompt(tmp_path / "missing.wav", name="missing")


@pytest.mark.parametrize("seconds", [0.3333, 1.0, 2.77])
def test_loop_is_seamless(seconds: float) -> None:
    # a 440 Hz tone whose length is not a whole number of frames or periods
    prompt = make_prompt("music", tone(440, 8000, seconds))
    for codec in ("PCMU", "PCMA"):
        frames = prompt.loop_frames(codec)
        assert all(len(f) == FRAME_SAMPLES for f in frames)
        body = decoded(frames, codec)
        looped = np.concatenate([body, body, body])
        steps = np.abs(np.diff(looped))
        seam = len(body)
        inner = np.max(np.abs(np.diff(body)))
        # no click: the step across the seam is no bigger than the tone's own steps
        assert steps[seam - 3 : seam + 3].max() <= inner * 1.1
        # no gap: no run of silence around the seam
        assert np.min(np.abs(looped[seam - 40 : seam + 40]).reshape(-1, 20).max(axis=1)) > 1000
        # the loop keeps almost all of the audio (only the crossfade overlaps)
        assert len(body) >= len(prompt.samples) - 560


def test_loop_of_a_very_short_sound() -> None:
    prompt = make_prompt("beep", tone(1000, 8000, 0.01))
    assert len(prompt.loop_frames("PCMU")) == 1


def test_int16_input_and_no_normalisation() -> None:
    pcm = (tone(1000, 8000, 0.1, level=0.1) * 32767).astype(np.int16)
    prompt = make_prompt("quiet", pcm, normalize_level=False)
    assert np.max(np.abs(prompt.samples)) == pytest.approx(3277, abs=2)


def test_unknown_codec() -> None:
    prompt = make_prompt("x", tone(1000, 8000, 0.1))
    with pytest.raises(ValueError, match="G729"):
        prompt.frames("G729")


def test_cache_loads_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.wav"
    soundfile.write(path, tone(1000, 8000, 0.2), 8000)
    import sipcallhunt.media.prompt as prompt_module

    calls: list[str] = []
    real = prompt_module.load_audio

    def counting(p: str) -> np.ndarray:
        calls.append(p)
        return real(p)

    monkeypatch.setattr(prompt_module, "load_audio", counting)
    cache = PromptCache()
    first = cache.get(path)
    assert cache.get(str(path)) is first
    assert cache.get(tmp_path / "." / "a.wav") is first
    assert len(calls) == 1
    assert len(cache) == 1
    assert first.frames("PCMU") is cache.get(path).frames("PCMU")  # shared, not copied
