"""G.711 tables: every input and every code against the reference coder (stdlib audioop)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from sipcallhunt.media import g711

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))
REFERENCE_FILE = Path(__file__).parent / "fixtures" / "g711_reference.npz"


class _StoredReference:
    """The reference coder's output for every input, stored from ``audioop`` (gone in Python 3.13)."""

    def __init__(self, path: Path) -> None:
        self.tables = dict(np.load(path))

    def lin2ulaw(self, data: bytes, width: int) -> bytes:
        return bytes(self.tables["lin2ulaw"][np.frombuffer(data, dtype=np.int16).astype(np.int32) + 32768].tobytes())

    def lin2alaw(self, data: bytes, width: int) -> bytes:
        return bytes(self.tables["lin2alaw"][np.frombuffer(data, dtype=np.int16).astype(np.int32) + 32768].tobytes())

    def ulaw2lin(self, data: bytes, width: int) -> bytes:
        return bytes(self.tables["ulaw2lin"][np.frombuffer(data, dtype=np.uint8)].tobytes())

    def alaw2lin(self, data: bytes, width: int) -> bytes:
        return bytes(self.tables["alaw2lin"][np.frombuffer(data, dtype=np.uint8)].tobytes())


try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the reference G.711 coder; in the standard library up to Python 3.12
except ImportError:  # Python 3.13+: the same tables, stored from audioop by an earlier Python
    audioop = _StoredReference(REFERENCE_FILE)  # type: ignore[assignment]


def test_stored_reference_matches_audioop() -> None:
    """The stored tables (used where audioop is gone) are audioop's own output."""
    stored = _StoredReference(REFERENCE_FILE)
    raw = ALL_SAMPLES.tobytes()
    assert stored.lin2ulaw(raw, 2) == audioop.lin2ulaw(raw, 2)
    assert stored.lin2alaw(raw, 2) == audioop.lin2alaw(raw, 2)
    assert stored.ulaw2lin(ALL_CODES, 2) == audioop.ulaw2lin(ALL_CODES, 2)
    assert stored.alaw2lin(ALL_CODES, 2) == audioop.alaw2lin(ALL_CODES, 2)


def test_ulaw_encode_every_sample() -> None:
    assert g711.encode_ulaw(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2)


def test_alaw_encode_every_sample() -> None:
    assert g711.encode_alaw(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2)


def test_ulaw_decode_every_code() -> None:
    reference = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16)
    assert np.array_equal(g711.decode_ulaw(ALL_CODES), reference)


def test_alaw_decode_every_code() -> None:
    reference = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype=np.int16)
    assert np.array_equal(g711.decode_alaw(ALL_CODES), reference)


def test_known_values_from_the_standard() -> None:
    ulaw = g711.decode_ulaw(bytes([0x00, 0x80, 0xFF, 0x7F]))
    alaw = g711.decode_alaw(bytes([0xAA, 0x2A, 0xD5, 0x55]))
    assert ulaw.tolist() == [-32124, 32124, 0, 0]
    assert alaw.tolist() == [32256, -32256, 8, -8]


def test_translate_tables_match_decode_then_encode() -> None:
    ulaw_as_alaw = audioop.lin2alaw(audioop.ulaw2lin(ALL_CODES, 2), 2)
    alaw_as_ulaw = audioop.lin2ulaw(audioop.alaw2lin(ALL_CODES, 2), 2)
    assert ALL_CODES.translate(g711.ULAW_TO_ALAW) == ulaw_as_alaw
    assert ALL_CODES.translate(g711.ALAW_TO_ULAW) == alaw_as_ulaw
    assert g711.encode_alaw(g711.decode_ulaw(ALL_CODES)) == g711.ULAW_TO_ALAW
    assert g711.encode_ulaw(g711.decode_alaw(ALL_CODES)) == g711.ALAW_TO_ULAW


def test_translate_round_trip_stays_within_one_step() -> None:
    for forward, back, decode in (
        (g711.ULAW_TO_ALAW, g711.ALAW_TO_ULAW, g711.decode_ulaw),
        (g711.ALAW_TO_ULAW, g711.ULAW_TO_ALAW, g711.decode_alaw),
    ):
        original = decode(ALL_CODES).astype(np.int32)
        twice = decode(ALL_CODES.translate(forward).translate(back)).astype(np.int32)
        step = np.maximum(16, np.abs(original) // 16)  # both laws: at most 1/16 of the value (and 16)
        assert np.all(np.abs(twice - original) <= step)


def test_codes_survive_decode_encode() -> None:
    assert g711.encode_alaw(g711.decode_alaw(ALL_CODES)) == ALL_CODES
    ulaw = g711.encode_ulaw(g711.decode_ulaw(ALL_CODES))
    assert ulaw == ALL_CODES.replace(b"\x7f", b"\xff")  # µ-law's negative zero comes back positive


@pytest.mark.parametrize("codec", g711.CODECS)
def test_named_codec_functions(codec: str) -> None:
    samples = (np.sin(np.arange(160) / 5) * 20000).astype(np.int16)
    payload = g711.encode(codec, samples)
    assert len(payload) == 160
    decoded = g711.decode(codec, payload)
    assert decoded.dtype == np.int16
    assert np.max(np.abs(decoded.astype(np.int32) - samples)) <= 1024
    assert np.all(g711.decode(codec, g711.silence(codec, 160)) == (0 if codec == "PCMU" else 8))


def test_unknown_codec() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        g711.encode("G722", np.zeros(1, np.int16))
    with pytest.raises(ValueError, match="unsupported"):
        g711.decode("G722", b"\x00")


def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import g711 as benchmark

    assert benchmark.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "# machine:" in out and "encode PCMU" in out and "transcode PCMA→PCMU translate" in out
