"""decode_file and the ``sipcallhunt dtmf`` command on generated audio files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from sipcallhunt.media import dtmf_file
from sipcallhunt.media.dtmf_file import decode_file, main
from tests.media.strategies import dtmf_signal

DIGITS = "0123456789*#ABCD"


@pytest.fixture(scope="module")
def tones() -> tuple[np.ndarray, list[float]]:
    signal, starts = dtmf_signal(DIGITS, rng=np.random.default_rng(4733), on_ms=80.0, off_ms=70.0)
    return signal, starts


def check(found: list[tuple[str, float]], starts: list[float]) -> None:
    assert "".join(digit for digit, _ in found) == DIGITS
    for (_, offset), start in zip(found, starts, strict=True):
        assert offset == pytest.approx(start, abs=0.012)


def test_exports() -> None:
    assert dtmf_file.__all__ == ["decode_file", "main"]


def test_wav_8k(tmp_path: Path, tones: tuple[np.ndarray, list[float]]) -> None:
    signal, starts = tones
    path = tmp_path / "tones.wav"
    soundfile.write(path, signal, 8000, subtype="PCM_16")
    check(decode_file(path), starts)


def test_flac_44k1_stereo_resampled(tmp_path: Path, tones: tuple[np.ndarray, list[float]]) -> None:
    signal, starts = tones
    wide = soxr.resample(signal.astype(np.float64) / 32768, 8000, 44100)
    stereo = np.stack([wide, wide * 0.5], axis=1)  # mixed down to mono: 3/4 of the level
    path = tmp_path / "tones.flac"
    soundfile.write(path, stereo, 44100, subtype="PCM_24")
    check(decode_file(path), starts)


def test_silence_has_no_digits(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(8000, np.int16), 8000)
    assert decode_file(path) == []


def test_cli_one_file(
    tmp_path: Path, tones: tuple[np.ndarray, list[float]], capsys: pytest.CaptureFixture[str]
) -> None:
    signal, starts = tones
    path = tmp_path / "one.wav"
    soundfile.write(path, signal, 8000, subtype="PCM_16")
    assert main([str(path)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == ""
    assert [line[0] for line in lines] == list(DIGITS)
    for line, start in zip(lines, starts, strict=True):
        digit, offset, unit = line.split()
        assert unit == "s" and float(offset) == pytest.approx(start, abs=0.012)
        assert line == f"{digit}  {float(offset):.3f} s"


def test_cli_several_files_and_an_unreadable_one(
    tmp_path: Path, tones: tuple[np.ndarray, list[float]], capsys: pytest.CaptureFixture[str]
) -> None:
    signal, _ = tones
    good = tmp_path / "good.wav"
    soundfile.write(good, signal, 8000, subtype="PCM_16")
    quiet = tmp_path / "quiet.flac"
    soundfile.write(quiet, np.zeros(4000, np.int16), 8000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    missing = tmp_path / "missing.wav"
    assert main([str(good), str(broken), str(quiet), str(missing)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"# {good}"
    assert "".join(line[0] for line in lines[1:17]) == DIGITS
    assert lines[17:] == [f"# {quiet}"]
    errors = err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"sipcallhunt dtmf: {broken}: ")
    assert errors[1].startswith(f"sipcallhunt dtmf: {missing}: ")


def test_cli_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "sipcallhunt dtmf" in capsys.readouterr().err
