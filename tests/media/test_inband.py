"""In-band DTMF detector: the Q.24 accept/reject set, talk-off on speech and music, the batched bank."""

from __future__ import annotations

import zlib
from collections.abc import Hashable

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from sipcallhunt.errors import MediaError
from sipcallhunt.media import g711, inband
from sipcallhunt.media.inband import (
    _TRANSITIONS,
    FRAME_SAMPLES,
    InbandDetector,
    InbandDetectorBank,
    _Input,
    _screen,
    _State,
    _window_keys,
    dtmf_frequencies,
)
from tests.media.fixtures import FIXTURES
from tests.media.strategies import ALL_KEYS, Q24_ACCEPT, Q24_REJECT, dtmf_signal, q24_signal, synthetic_music

CODECS = [None, "PCMU", "PCMA"]
START_TOLERANCE = 0.012  # seconds: a digit's reported start vs. the tone's real start


def through(codec: str | None, samples: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """The samples as the far end hears them over a G.711 channel (or unchanged)."""
    return samples if codec is None else g711.decode(codec, g711.encode(codec, samples))


def detect(samples: npt.NDArray[np.int16]) -> list[tuple[str, float]]:
    detector = InbandDetector()
    return detector.feed(samples) + detector.flush()


def seed(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def test_exports() -> None:
    for name in inband.__all__:
        assert hasattr(inband, name)


def test_dtmf_frequencies() -> None:
    assert dtmf_frequencies("1") == (697.0, 1209.0)
    assert dtmf_frequencies("0") == (941.0, 1336.0)
    assert dtmf_frequencies("D") == (941.0, 1633.0)
    with pytest.raises(MediaError):
        dtmf_frequencies("E")


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("case", list(Q24_ACCEPT))
def test_q24_accept(case: str, codec: str | None) -> None:
    signal, starts, digits = q24_signal(Q24_ACCEPT[case], seed(case, codec))
    found = detect(through(codec, signal))
    assert "".join(digit for digit, _ in found) == digits
    for (_, offset), start in zip(found, starts, strict=True):
        assert abs(offset - start) <= START_TOLERANCE


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("case", list(Q24_REJECT))
def test_q24_reject(case: str, codec: str | None) -> None:
    signal, _, _ = q24_signal(Q24_REJECT[case], seed(case, codec))
    assert detect(through(codec, signal)) == []


def test_key_held_long_is_one_digit() -> None:
    signal, starts = dtmf_signal("5", rng=seed("held"), on_ms=3000.0)
    assert detect(signal) == [("5", pytest.approx(starts[0], abs=START_TOLERANCE))]


@pytest.mark.parametrize("gap_ms", [5.0, 10.0])
def test_short_interruptions_bridged(gap_ms: float) -> None:
    signal, _ = dtmf_signal("1234567890", rng=seed("gap", gap_ms), on_ms=100.0, gap_ms=gap_ms)
    assert "".join(d for d, _ in detect(signal)) == "1234567890"


def test_white_noise_at_30_db_snr_still_detected() -> None:
    rng = seed("noise")
    signal, _ = dtmf_signal(ALL_KEYS, rng=rng, level_dbm0=-20.0)
    noise = rng.normal(0, 32768 * 10 ** (-53.17 / 20), len(signal))  # -50 dBm0 white noise
    noisy = np.clip(signal + noise, -32768, 32767).astype(np.int16)
    assert "".join(d for d, _ in detect(noisy)) == ALL_KEYS


SPEECH = sorted(FIXTURES.glob("speech_*.wav"))


def test_speech_fixtures_present() -> None:
    names = {path.name for path in SPEECH}
    assert any("_en_" in name for name in names) and any("_de_" in name for name in names)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("gain_db", [0.0, -15.0])
@pytest.mark.parametrize("path", SPEECH, ids=[path.stem for path in SPEECH])
def test_no_digit_on_speech(path: object, gain_db: float, codec: str | None) -> None:
    samples, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000 and len(samples) > 8000 * 4
    scaled = np.round(samples * 10 ** (gain_db / 20)).astype(np.int16)
    assert detect(through(codec, scaled)) == []


@pytest.mark.parametrize(("music_seed", "codec"), [(0, None), (1, "PCMU"), (2, "PCMA"), (3, None)])
def test_no_digit_on_music(music_seed: int, codec: str | None) -> None:
    music = synthetic_music(45.0, music_seed)
    for peak in (0.9, 0.1):
        samples = np.round(music * peak * 32767).astype(np.int16)
        assert detect(through(codec, samples)) == []


def test_screen_never_hides_a_window_the_full_checks_pass() -> None:
    """The cheap screen must be implied by the full checks, or it would change results."""
    signals = [
        dtmf_signal(ALL_KEYS, rng=seed("screen", i), **case)[0]
        for i, case in enumerate(Q24_ACCEPT.values())
        if "digits" not in case
    ]
    signals += [soundfile.read(path, dtype="int16")[0] for path in SPEECH]
    signals.append(np.round(synthetic_music(10.0, 7) * 30000).astype(np.int16))
    passed = 0
    for signal in signals:
        blocks = signal[: len(signal) // 80 * 80].astype(np.float32).reshape(-1, inband._BLOCK)
        coef = (blocks @ inband._BASIS).view(np.complex64)
        quarters = np.einsum("nk,nk->n", blocks.reshape(-1, 40), blocks.reshape(-1, 40)) * inband._ENERGY_SCALE
        count = len(blocks) - 2
        three = np.stack([coef[i : i + count] for i in range(3)], axis=1)  # windows k and k+1
        six = np.concatenate([quarters[2 * i : 2 * i + 2 * count].reshape(count, 2) for i in range(3)], axis=1)
        keys, _ = _window_keys(three, six)
        screened = _screen(np.ascontiguousarray(three[..., : inband._N_FUND]), six)
        assert not np.any((keys >= 0) & ~screened)
        passed += int(np.count_nonzero(keys >= 0))
    assert passed > 1000  # the DTMF signals did exercise the full checks


def test_debounce_table_is_complete() -> None:
    assert set(_TRANSITIONS) == {(state, inp) for state in _State for inp in _Input}


def test_bank_matches_single_detectors_in_any_order() -> None:
    """Streams fed together, in shuffled order, some skipping ticks, give what each gives alone."""
    rng = seed("bank")
    streams: dict[Hashable, npt.NDArray[np.int16]] = {}
    for index, (name, case) in enumerate([*Q24_ACCEPT.items(), *Q24_REJECT.items()]):
        for codec in CODECS:
            signal, _, _ = q24_signal(case, seed(name, codec, "bank"))
            signal = through(codec, signal)
            streams[(name, codec, index)] = np.concatenate(
                [signal, np.zeros(-len(signal) % FRAME_SAMPLES + 2 * FRAME_SAMPLES, np.int16)]
            )
    expected = {key: detect(samples) for key, samples in streams.items()}

    bank = InbandDetectorBank()
    position = dict.fromkeys(streams, 0)
    got: dict[Hashable, list[tuple[str, float]]] = {key: [] for key in streams}
    for key in streams:
        bank.add(key)
    for _tick in range(100_000):  # bounded: every tick feeds at least one frame
        pending = [key for key in streams if position[key] < len(streams[key])]
        if not pending:
            break
        order = rng.permutation(len(pending))
        keys = [pending[i] for i in order if rng.random() < 0.8] or [pending[order[0]]]
        frames = np.stack([streams[key][position[key] : position[key] + FRAME_SAMPLES] for key in keys])
        for key in keys:
            position[key] += FRAME_SAMPLES
        for key, digit, offset in bank.process(keys, frames):
            got[key].append((digit, offset))
    assert got == expected
    assert sum(len(v) for v in got.values()) > 900


def test_bank_same_keys_every_tick_and_contiguous_fast_path() -> None:
    bank = InbandDetectorBank()
    keys = [f"leg{i}" for i in range(40)]
    for key in keys:
        bank.add(key)
    signal, _ = dtmf_signal("159#", rng=seed("contiguous"))
    signal = np.concatenate([signal, np.zeros(-len(signal) % FRAME_SAMPLES, np.int16)])
    frames = signal.reshape(-1, FRAME_SAMPLES)
    found = []
    for frame in frames:
        found += bank.process(keys, np.repeat(frame[None], len(keys), axis=0))
    assert len(found) == 4 * len(keys)
    assert {key for key, _, _ in found} == set(keys)
    assert [d for key, d, _ in found if key == "leg7"] == list("159#")


def test_bank_add_remove_and_errors() -> None:
    bank = InbandDetectorBank()
    assert bank.process([], np.zeros((0, FRAME_SAMPLES), np.int16)) == []
    bank.add("a")
    bank.add("b")
    assert len(bank) == 2 and "a" in bank
    with pytest.raises(MediaError, match="not added"):
        bank.process(["c"], np.zeros((1, FRAME_SAMPLES), np.int16))
    with pytest.raises(MediaError, match="twice"):
        bank.process(["a", "a"], np.zeros((2, FRAME_SAMPLES), np.int16))
    with pytest.raises(MediaError, match="shape"):
        bank.process(["a"], np.zeros((1, 80), np.int16))
    bank.remove("a")
    bank.remove("a")  # unknown keys are ignored
    assert "a" not in bank and len(bank) == 1
    for i in range(100):  # grows past its first capacity, reusing the freed slot
        bank.add(i)
    assert len(bank) == 101


def test_re_adding_a_stream_resets_it() -> None:
    bank = InbandDetectorBank()
    bank.add("x")
    signal, _ = dtmf_signal("7", rng=seed("reset"), on_ms=200.0)
    frames = signal[: len(signal) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, 1, FRAME_SAMPLES)
    first = [r for frame in frames for r in bank.process(["x"], frame)]
    bank.add("x")
    second = [r for frame in frames for r in bank.process(["x"], frame)]
    assert [d for _, d, _ in first] == ["7"]
    assert first == second  # same digit at the same offset: the sample count restarted too


def test_detector_accepts_chunks_of_any_size() -> None:
    signal, _ = dtmf_signal("2468", rng=seed("chunks"))
    whole = detect(signal)
    detector = InbandDetector()
    pieces = []
    rng = seed("chunk sizes")
    position = 0
    while position < len(signal):
        size = int(rng.integers(1, 500))
        pieces += detector.feed(signal[position : position + size])
        position += size
    assert pieces + detector.flush() == whole
    assert [d for d, _ in whole] == list("2468")


def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import dtmf as benchmark

    assert benchmark.main(["--smoke"]) == 0  # non-zero when a Q.24 case fails
    out = capsys.readouterr().out
    assert "# machine:" in out and "Q.24 accept" in out and "µs per call-frame" in out
    assert "ours 0 false digits" in out
