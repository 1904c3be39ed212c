"""G.711 µ-law (PCMU) and A-law (PCMA) with numpy lookup tables (ITU-T G.711).

Encoding indexes a 65,536-entry table with the int16 samples reinterpreted as uint16; decoding
indexes a 256-entry table with the code bytes.  Transcoding PCMU↔PCMA is one ``bytes.translate``
with :data:`ULAW_TO_ALAW` / :data:`ALAW_TO_ULAW`, which is what the relay uses on its fast path.
The tables are built once at import from the G.711 segment rules and are bit-exact with the
ITU tables (the tests compare all inputs with the reference implementation).
"""

from __future__ import annotations

__all__ = [
    "ALAW_TO_ULAW",
    "CODECS",
    "ULAW_TO_ALAW",
    "decode",
    "decode_alaw",
    "decode_ulaw",
    "encode",
    "encode_alaw",
    "encode_ulaw",
    "silence",
]

from typing import Final

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]

CODECS: Final = ("PCMU", "PCMA")

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _segment(value: npt.NDArray[np.int32], ends: tuple[int, ...]) -> npt.NDArray[np.int32]:
    seg = np.zeros(value.shape, dtype=np.int32)
    for end in ends:
        seg += (value > end).astype(np.int32)
    return seg


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    # Same rules as the reference G.711 coder working on 14-bit magnitudes (linear >> 2).
    pcm = np.arange(65536, dtype=np.int32)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.where(pcm < 0, -pcm, pcm)
    pcm = np.minimum(pcm, 8159) + (_ULAW_BIAS >> 2)
    seg = _segment(pcm, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    uval = (seg << 4) | ((pcm >> (seg + 1)) & 0x0F)
    out = np.where(seg >= 8, 0x7F ^ mask, uval ^ mask)
    return (out & 0xFF).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    # Reference coder on 13-bit magnitudes (linear >> 3).
    pcm = np.arange(65536, dtype=np.int32)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    pcm = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(pcm, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    aval = seg << 4
    aval = aval | np.where(seg < 2, (pcm >> 1) & 0x0F, (pcm >> np.maximum(seg, 1)) & 0x0F)
    out = np.where(seg >= 8, 0x7F ^ mask, aval ^ mask)
    return (out & 0xFF).astype(np.uint8)


_ULAW_DECODE: Final = _build_ulaw_decode()
_ALAW_DECODE: Final = _build_alaw_decode()
_ULAW_ENCODE: Final = _build_ulaw_encode()
_ALAW_ENCODE: Final = _build_alaw_encode()

ULAW_TO_ALAW: Final[bytes] = _ALAW_ENCODE[_ULAW_DECODE.view(np.uint16)].tobytes()
"""``payload.translate(ULAW_TO_ALAW)`` turns a PCMU payload into PCMA."""
ALAW_TO_ULAW: Final[bytes] = _ULAW_ENCODE[_ALAW_DECODE.view(np.uint16)].tobytes()
"""``payload.translate(ALAW_TO_ULAW)`` turns a PCMA payload into PCMU."""


def encode_ulaw(samples: Samples) -> bytes:
    return bytes(_ULAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes())


def encode_alaw(samples: Samples) -> bytes:
    return bytes(_ALAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes())


def decode_ulaw(payload: bytes) -> Samples:
    return _ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def decode_alaw(payload: bytes) -> Samples:
    return _ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def encode(codec: str, samples: Samples) -> bytes:
    """Encode int16 samples with ``codec`` ("PCMU" or "PCMA")."""
    if codec == "PCMU":
        return encode_ulaw(samples)
    if codec == "PCMA":
        return encode_alaw(samples)
    raise ValueError(f"unsupported codec {codec!r}")


def decode(codec: str, payload: bytes) -> Samples:
    """Decode a ``codec`` payload into int16 samples."""
    if codec == "PCMU":
        return decode_ulaw(payload)
    if codec == "PCMA":
        return decode_alaw(payload)
    raise ValueError(f"unsupported codec {codec!r}")


def silence(codec: str, samples: int) -> bytes:
    """``samples`` of digital silence in ``codec``."""
    return (b"\xff" if codec == "PCMU" else b"\xd5") * samples
