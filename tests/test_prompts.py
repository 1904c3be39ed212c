"""The bundled prompts and hold music, and sipcallhunt.prompts that finds them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from sipcallhunt import prompts
from sipcallhunt.config import PROMPT_NAMES
from sipcallhunt.errors import AudioFileError, ConfigError
from sipcallhunt.media.audiofile import load_audio
from sipcallhunt.prompts import (
    BUNDLED_NAMES,
    LANGUAGES,
    audio_dir,
    bundled_music,
    bundled_prompt,
    key_prompt_name,
    whisper_playlist,
)

ROOT = Path(__file__).resolve().parent.parent
DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_prompts", ROOT / "scripts" / "make_prompts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path) -> tuple[npt.NDArray[np.int16], Any]:
    info = soundfile.info(str(path))
    data, _ = soundfile.read(str(path), dtype="int16", always_2d=True)
    return data[:, 0], info


# --------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_every_bundled_prompt_is_usable(language: str, name: str) -> None:
    path = bundled_prompt(language, name)
    assert path == audio_dir() / language / f"{name}.wav"
    samples, info = _read(path)
    assert (info.samplerate, info.channels, info.format, info.subtype) == (8000, 1, "WAV", "PCM_16")
    assert 0.3 <= info.duration <= 8.0, info.duration
    peak = int(np.max(np.abs(samples.astype(np.int32))))
    assert 0.25 * 32767 < peak < 0.95 * 32767  # audible, and not clipped
    # Same loudness for every prompt: the active speech level is the script's target (-19 dBFS RMS).
    x = samples.astype(np.float64) / 32767
    frames = x[: len(x) // 80 * 80].reshape(-1, 80)
    levels = np.sqrt(np.mean(frames**2, axis=1))
    active = levels[levels > levels.max() * 0.01]
    rms_db = 20 * np.log10(np.sqrt(np.mean(active**2)))
    assert -21.0 < rms_db < -17.0
    # Trimmed and faded: starts and ends quietly, with no long silence at either end.
    assert abs(int(samples[0])) < 300 and abs(int(samples[-1])) < 300
    loud = np.flatnonzero(np.abs(samples) > 0.05 * peak)
    assert loud[0] < 0.15 * 8000 and len(samples) - loud[-1] < 0.3 * 8000


def test_prompt_folders_hold_exactly_the_bundled_names() -> None:
    for language in LANGUAGES:
        names = sorted(p.stem for p in (audio_dir() / language).iterdir())
        assert names == sorted(BUNDLED_NAMES)


def test_the_script_speaks_exactly_the_bundled_names() -> None:
    script = _script()
    assert set(script.TEXTS) == set(LANGUAGES)
    for language in LANGUAGES:
        assert list(script.TEXTS[language]) == list(BUNDLED_NAMES)
        assert all(text.strip() for text in script.TEXTS[language].values())
    # The README lists every text.
    readme = (audio_dir() / "README.md").read_text(encoding="utf-8")
    for language in LANGUAGES:
        for text in script.TEXTS[language].values():
            assert text in readme


def test_replaceable_prompts_have_a_bundled_default() -> None:
    # hold_music is bundled_music(); a hotline's name exists only as the operator's own recording.
    assert set(PROMPT_NAMES) - {"hold_music", "hotline_name"} <= set(BUNDLED_NAMES)


def test_prompts_load_through_the_media_loader() -> None:
    x = load_audio(bundled_prompt("de", "enter_pin"))
    assert x.dtype == np.float64 and len(x) > 8000


def test_unknown_language_and_name_raise_audio_file_error() -> None:
    with pytest.raises(AudioFileError, match=r"no bundled prompts in language 'fr'.*en, de") as info:
        bundled_prompt("fr", "intro")
    assert info.value.path.endswith(os.path.join("fr", "intro.wav"))
    with pytest.raises(AudioFileError, match="no bundled prompt named 'hello'") as info:
        bundled_prompt("en", "hello")
    assert info.value.path.endswith(os.path.join("en", "hello.wav"))
    with pytest.raises(AudioFileError):
        bundled_prompt("en", "../music/hold")


def test_missing_audio_folder_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(prompts, "_PACKAGE_AUDIO", tmp_path / "a")
    monkeypatch.setattr(prompts, "_SOURCE_AUDIO", tmp_path / "b")
    with pytest.raises(AudioFileError, match="bundled prompts are missing"):
        bundled_prompt("en", "intro")


def test_package_folder_is_preferred(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "hold.flac").write_bytes(b"")
    monkeypatch.setattr(prompts, "_PACKAGE_AUDIO", tmp_path)
    assert bundled_music() == tmp_path / "music" / "hold.flac"
    with pytest.raises(AudioFileError, match="missing from the installation"):
        bundled_prompt("en", "intro")


@pytest.mark.parametrize(
    ("key", "name"),
    [
        *((d, f"digit_{d}") for d in "0123456789"),
        ("*", "digit_star"),
        ("#", "digit_hash"),
        *((k, f"digit_{k}") for k in "ABCD"),
    ],
)
def test_key_prompt_name(key: str, name: str) -> None:
    assert key_prompt_name(key) == name
    assert name in BUNDLED_NAMES


@pytest.mark.parametrize("key", ["", "11", "E", "a", "x", " "])
def test_key_prompt_name_rejects_non_keys(key: str) -> None:
    with pytest.raises(ConfigError, match="not a DTMF key"):
        key_prompt_name(key)


def test_whisper_playlist() -> None:
    assert whisper_playlist("1", "2") == [
        "whisper",
        "press",
        "digit_1",
        "to_accept",
        "press",
        "digit_2",
        "to_decline",
    ]
    playlist = whisper_playlist("#", "*")
    assert playlist[2] == "digit_hash" and playlist[5] == "digit_star"
    assert set(playlist) <= set(BUNDLED_NAMES)


# ------------------------------------------------------------------------------------------- hold music


def _music() -> npt.NDArray[np.float64]:
    samples, info = _read(bundled_music())
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    return samples.astype(np.float64) / 32768


def test_music_length_and_level() -> None:
    x = _music()
    assert 30.0 <= len(x) / 8000 <= 60.0
    assert np.max(np.abs(x)) < 0.5  # far from clipping
    rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)))
    assert -30.0 < rms_db < -18.0
    # Never a silent gap: every half second carries sound.
    halves = x[: len(x) // 4000 * 4000].reshape(-1, 4000)
    assert np.min(np.sqrt(np.mean(halves**2, axis=1))) > 10 ** (-40 / 20)


def test_music_loop_point_is_seamless() -> None:
    x = _music()
    steps = np.abs(np.diff(x))
    jump = abs(x[0] - x[-1])
    assert jump <= np.percentile(steps, 99.9)
    # The sound around the loop point is like the sound anywhere else: compare the energy of the second
    # difference (which a click would blow up) across the seam with the file's typical one.
    seam = np.concatenate([x[-400:], x[:400]])
    seam_energy = np.mean(np.diff(seam, 2) ** 2)
    typical = np.mean(np.diff(x, 2) ** 2)
    assert seam_energy < 4 * typical


def test_music_is_music_not_a_beep() -> None:
    x = _music()
    second = x[: len(x) // 8000 * 8000].reshape(-1, 8000)
    spectrum = np.abs(np.fft.rfft(second * np.hanning(8000), axis=1))
    dominant = {int(np.argmax(row)) for row in spectrum}  # 1 Hz bins
    assert len(dominant) >= 6
    # Several notes sound at once (a chord), not one tone.
    strong = spectrum > 0.2 * spectrum.max(axis=1, keepdims=True)
    assert np.median(strong.sum(axis=1)) >= 3


def _goertzel(frames: npt.NDArray[np.float64], freq: float) -> npt.NDArray[np.float64]:
    n = frames.shape[1]
    w = np.exp(-2j * np.pi * freq * np.arange(n) / 8000)
    return np.asarray(np.abs(frames @ w) ** 2 / n, dtype=np.float64)


def _dtmf_like_frames(x: npt.NDArray[np.float64], n: int = 205) -> int:
    """Frames where one low-group and one high-group DTMF tone carry most of the energy."""
    window = np.hanning(n)
    frames = x[: len(x) // n * n].reshape(-1, n) * window
    energy = np.sum(frames**2, axis=1) + 1e-12
    low = np.max([_goertzel(frames, f) for f in DTMF_LOW], axis=0)
    high = np.max([_goertzel(frames, f) for f in DTMF_HIGH], axis=0)
    # Scale so that a frame holding one pure tone at a probed frequency has share 1.
    pure = window * np.sin(2 * np.pi * 1000.0 * np.arange(n) / 8000)
    scale = float(np.sum(pure**2)) / _goertzel(pure[None, :], 1000.0)[0]
    share = (low + high) / energy * scale
    twist_ok = np.minimum(low, high) > 0.1 * np.maximum(low, high)
    return int(np.sum((share > 0.5) & twist_ok))


def test_dtmf_check_finds_a_real_dtmf_tone() -> None:
    t = np.arange(8000) / 8000
    tone = 0.2 * np.sin(2 * np.pi * 770 * t) + 0.2 * np.sin(2 * np.pi * 1336 * t)  # the key 5
    assert _dtmf_like_frames(tone) >= 30
    assert _dtmf_like_frames(0.3 * np.sin(2 * np.pi * 440 * t)) == 0


def test_music_cannot_be_taken_for_dtmf() -> None:
    assert _dtmf_like_frames(_music()) == 0


def test_music_matches_the_generator() -> None:
    generated = _script().make_hold_music().astype(np.int32)
    committed, _ = _read(bundled_music())
    assert generated.shape == committed.shape
    assert int(np.max(np.abs(generated - committed.astype(np.int32)))) <= 1


# ---------------------------------------------------------------------------------------------- the wheel


def test_wheel_contains_the_audio(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path / "dist")]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")  # no package index needed
    subprocess.run(command, check=True, timeout=240, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("sipcallhunt-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for language in LANGUAGES:
        for name in BUNDLED_NAMES:
            assert f"sipcallhunt/audio/{language}/{name}.wav" in names
    assert "sipcallhunt/audio/music/hold.flac" in names
    assert "sipcallhunt/audio/README.md" in names
    # Installed from the wheel, the package finds its own copy (not the source checkout's).
    probe = "from sipcallhunt.prompts import bundled_prompt; print(bundled_prompt('de', 'goodbye'))"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, timeout=60, capture_output=True, text=True, env=env, cwd=tmp_path
    ).stdout.strip()
    assert Path(out) == tmp_path / "site" / "sipcallhunt" / "audio" / "de" / "goodbye.wav"
