"""Prompts and music: audio files pre-encoded once into 20 ms G.711 frames shared by all calls.

A :class:`Prompt` holds the audio as 160-byte payloads (20 ms at 8 kHz, RFC 3551 §4.5.14) for
both PCMU and PCMA, in two cuts:

* ``frames(codec)`` — played once: the last frame is padded with digital silence;
* ``loop_frames(codec)`` — played in a loop (hold music): the end of the audio is crossfaded
  into its beginning and the loop body is cut to a whole number of frames, so that the frames
  repeat without a gap or a click.

The frames are computed by the pure function :func:`make_prompt` (samples in, prompt out);
:func:`load_prompt` reads a file (anything libsndfile reads; resampled to 8 kHz with soxr,
which band-limits, so a 6 kHz tone in a 44.1 kHz file does not alias into the telephone band)
and :class:`PromptCache` loads each path once.  Only those two touch files.
"""

from __future__ import annotations

__all__ = [
    "FRAME_MS",
    "FRAME_SAMPLES",
    "LOOP_CROSSFADE_SAMPLES",
    "Prompt",
    "PromptCache",
    "load_prompt",
    "make_prompt",
]

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs
import numpy as np
import numpy.typing as npt

from sipcallhunt.errors import AudioFileError
from sipcallhunt.media import g711
from sipcallhunt.media.audiofile import RATE, load_audio, normalize, to_int16

FRAME_MS: Final = 20  # RFC 3551 §4.5: the default packetisation of G.711
FRAME_SAMPLES: Final = RATE * FRAME_MS // 1000
LOOP_CROSSFADE_SAMPLES: Final = 400  # 50 ms: long enough to hide the seam, short enough to keep rhythm
_PEAK_DBFS: Final = -3.0


def _frames(payload: bytes) -> tuple[bytes, ...]:
    return tuple(payload[i : i + FRAME_SAMPLES] for i in range(0, len(payload), FRAME_SAMPLES))


@attrs.frozen(kw_only=True)
class Prompt:
    """One announcement or piece of music, ready to send (see the module docstring)."""

    name: str
    source: str
    samples: npt.NDArray[np.int16] = attrs.field(eq=False, repr=False)
    _once: dict[str, tuple[bytes, ...]] = attrs.field(eq=False, repr=False, alias="once")
    _loop: dict[str, tuple[bytes, ...]] = attrs.field(eq=False, repr=False, alias="loop")

    @property
    def duration(self) -> float:
        """Seconds of audio (before padding)."""
        return len(self.samples) / RATE

    def frames(self, codec: str) -> Sequence[bytes]:
        """160-byte payloads in ``codec`` ("PCMU"/"PCMA"), the last padded with silence."""
        try:
            return self._once[codec]
        except KeyError:
            raise ValueError(f"unsupported codec {codec!r}") from None

    def loop_frames(self, codec: str) -> Sequence[bytes]:
        """160-byte payloads that loop seamlessly (end crossfaded into the beginning)."""
        try:
            return self._loop[codec]
        except KeyError:
            raise ValueError(f"unsupported codec {codec!r}") from None


def _loop_body(samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A whole number of frames that loop without a seam.

    The body is ``samples[:L-C]`` with its first C samples replaced by a crossfade of the head
    (fading in) with the tail ``samples[L-C:]`` (fading out): played in a loop, the last body
    sample ``samples[L-C-1]`` is followed by ``samples[L-C]`` + 0·head, which is exactly how the
    original continues.  C is at most 50 ms, chosen so that ``L-C`` is a multiple of 160 samples."""
    length = len(samples)
    if length < 2 * FRAME_SAMPLES:
        # Too short to crossfade: pad to one frame (a short sound repeated with a pause).
        body = np.zeros(max(FRAME_SAMPLES, -(-length // FRAME_SAMPLES) * FRAME_SAMPLES))
        body[:length] = samples
        return body
    # the body: the shortest whole number of frames that leaves at most 50 ms (or half) to fade
    wanted = min(LOOP_CROSSFADE_SAMPLES, length // 2)
    body_length = -(-(length - wanted) // FRAME_SAMPLES) * FRAME_SAMPLES  # <= length as length >= 320
    fade = length - body_length  # <= wanted <= body_length
    body = samples[: length - fade].copy()
    if fade:
        ramp = (np.arange(fade) + 0.5) / fade
        # equal-power crossfade: music is mostly uncorrelated at the two ends
        fade_in = np.sin(ramp * np.pi / 2)
        fade_out = np.cos(ramp * np.pi / 2)
        body[:fade] = samples[:fade] * fade_in + samples[length - fade :] * fade_out
    return body


def make_prompt(
    name: str,
    samples: npt.NDArray[np.float64] | npt.NDArray[np.int16],
    *,
    source: str = "",
    normalize_level: bool = True,
) -> Prompt:
    """Build a prompt from mono 8 kHz samples (float in [-1, 1], or int16)."""
    raw = np.asarray(samples)
    audio: npt.NDArray[np.float64] = (
        raw.astype(np.float64) / 32768.0 if raw.dtype == np.int16 else np.asarray(raw, dtype=np.float64)
    )
    if audio.ndim != 1 or audio.size == 0:
        raise AudioFileError(source or name, "the audio must be non-empty mono samples")
    if normalize_level:
        audio = normalize(audio, peak_dbfs=_PEAK_DBFS)
    pcm = to_int16(audio)
    padded = np.zeros(-(-len(pcm) // FRAME_SAMPLES) * FRAME_SAMPLES, dtype=np.int16)
    padded[: len(pcm)] = pcm
    looped = to_int16(_loop_body(pcm.astype(np.float64) / 32767.0))
    once = {codec: _frames(g711.encode(codec, padded)) for codec in g711.CODECS}
    loop = {codec: _frames(g711.encode(codec, looped)) for codec in g711.CODECS}
    return Prompt(name=name, source=source, samples=pcm, once=once, loop=loop)


def load_prompt(path: str | Path, *, name: str | None = None, normalize: bool = True) -> Prompt:
    """Read ``path`` (any libsndfile format, any rate, mono or more channels) into a prompt.

    Raises :class:`~sipcallhunt.errors.AudioFileError` naming the file when it cannot be read or
    holds no audio."""
    source = str(path)
    samples = load_audio(source)
    return make_prompt(
        name if name is not None else Path(source).stem, samples, source=source, normalize_level=normalize
    )


@attrs.define(eq=False)
class PromptCache:
    """Loads each file once; every call shares the same :class:`Prompt`."""

    normalize: bool = True
    _prompts: dict[str, Prompt] = attrs.field(factory=dict, init=False)

    def get(self, path: str | Path, *, name: str | None = None) -> Prompt:
        key = str(Path(path).resolve())
        prompt = self._prompts.get(key)
        if prompt is None:
            prompt = load_prompt(path, name=name, normalize=self.normalize)
            self._prompts[key] = prompt
        return prompt

    def __len__(self) -> int:
        return len(self._prompts)
