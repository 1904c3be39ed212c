"""In-band DTMF detection (ITU-T Q.23 tones, Q.24 receiver limits), batched over many streams.

Theory of operation
-------------------
The media engine hands :class:`InbandDetectorBank` one 20 ms frame (160 samples, int16, 8 kHz)
of every stream that needs detection, once per tick, as one ``(streams, 160)`` array.  All the
arithmetic runs on that array at once with numpy; no Python loop runs per stream unless a digit
is found.

1. **Sub-blocks and windows.**  Each frame is split into two 10 ms sub-blocks (80 samples); the
   last sub-block of the previous frame is kept per stream.  An analysis window is two
   consecutive sub-blocks (20 ms), one every 10 ms, so two windows per frame.  DFT coefficients
   are computed per sub-block by one matrix product and joined into windows with a phase twiddle:

   - a rectangular 20 ms DFT at the 8 DTMF frequencies (bins 50 Hz wide: fine enough to tell
     adjacent rows apart) and at their 8 second harmonics;
   - a Hann-windowed DFT of each 10 ms half at the 8 DTMF frequencies (little leakage from the
     other tone), giving each tone's amplitude and phase in each half;
   - the energy of every 5 ms quarter.

2. **Screen.**  A window can only pass the checks below if its strongest row and column bins in
   the rectangular spectrum hold at least ``NARROW_WIDE_MIN · PURITY`` of its energy and each at
   least ``NARROW_WIDE_MIN`` times the minimum level (both follow from the *purity*, *level* and
   *narrow/wide* checks).  Only that screen runs on every stream; streams with a window that
   passes it get the full analysis (about one window in eight passes on speech or music, none
   on silence or noise).

3. **Checks** for the strongest row ``r`` and strongest column ``c`` of each window; all must pass:

   - *level*: each tone, in each half, at least ``LEVEL_MIN_DBM0`` (Q.24: accept down to -25 dBm0,
     reject at -55 dBm0);
   - *twist*: high tone / low tone within ``TWIST_MIN_DB`` .. ``TWIST_MAX_DB`` (Q.24: accept
     -8 .. +4 dB);
   - *relative peak*: the chosen row (column) at least ``RELATIVE_PEAK_DB`` above every other row
     (column) in the 20 ms rectangular spectrum;
   - *purity*: the two tones hold at least ``PURITY`` of the energy of each half (speech and music
     spread their energy over many partials);
   - *second harmonic*: the power at 2f is at most ``HARMONIC_MAX_DB`` relative to f, for both
     tones (voices and instruments have harmonics, DTMF tones do not).  The limit is lenient
     because 2f of three rows lies within 75 Hz of a column, whose tone leaks into that bin;
   - *frequency*: the phase advance of each tone's Hann coefficient from one half to the other,
     less the nominal advance, measures its frequency offset ``Δf = Δφ · fs / (2π · 80)``; it must
     be within ``FREQUENCY_TOLERANCE`` of nominal (Q.24: accept ±1.5 %, reject ±3.5 %).  The phase
     is unambiguous only within ±50 Hz, so the *narrow/wide* check backs it: the power in the
     narrow (20 ms rectangular) bin must be at least ``NARROW_WIDE_MIN`` of the power in the wide
     (10 ms Hann) bins, which fails beyond about ±38 Hz;
   - *stability*: each tone's power differs by at most ``BALANCE_DB`` between the halves;
   - *coverage*: every 5 ms quarter holds at least ``COVERAGE_MIN`` of the window's mean energy, so
     that only windows the tone fills (to within about 3 ms) pass.  This makes durations crisp:
     a 40 ms tone always fills at least two consecutive windows, a 23 ms tone at most one.

4. **Debounce**: one small state machine per stream (all (state, input) pairs in
   :data:`_TRANSITIONS`, applied to all streams at once by table lookup).  A digit is reported
   when two consecutive windows show the same key with the same frequencies (each tone's offset
   moving by at most ``FREQUENCY_DRIFT_MAX`` between them: speech glides, DTMF does not), with
   the start of the first of them as the digit's start.  It stays on until four consecutive
   windows do not show it.  A 10 ms interruption spoils at most three windows, so it does not
   split a digit; a 40 ms pause spoils at least four, so the next press is a new digit.

Measured on this design (see ``tests/media/test_inband.py``): every Q.24 accept and reject case,
also through µ-law and A-law; no digit on English and German speech or on polyphonic music.

Pure module: no I/O, no clock; offsets are counted in samples fed to each stream.
"""

from __future__ import annotations

__all__ = [
    "BALANCE_DB",
    "COLUMNS",
    "COVERAGE_MIN",
    "DBM0_AMPLITUDE",
    "FRAME_SAMPLES",
    "FREQUENCY_DRIFT_MAX",
    "FREQUENCY_TOLERANCE",
    "HARMONIC_MAX_DB",
    "KEYPAD",
    "LEVEL_MIN_DBM0",
    "NARROW_WIDE_MIN",
    "PURITY",
    "RATE",
    "RELATIVE_PEAK_DB",
    "ROWS",
    "TWIST_MAX_DB",
    "TWIST_MIN_DB",
    "InbandDetector",
    "InbandDetectorBank",
    "dtmf_frequencies",
]

import enum
from collections.abc import Hashable, Sequence
from typing import Final

import attrs
import numpy as np
import numpy.typing as npt

from sipcallhunt.errors import MediaError

RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # one 20 ms frame per stream per tick
_BLOCK: Final = 80  # 10 ms sub-block; a window is two of them
_QUARTER: Final = 40  # 5 ms, for the coverage check

ROWS: Final = (697.0, 770.0, 852.0, 941.0)  # ITU-T Q.23 low group
COLUMNS: Final = (1209.0, 1336.0, 1477.0, 1633.0)  # ITU-T Q.23 high group
KEYPAD: Final = ("123A", "456B", "789C", "*0#D")  # KEYPAD[row][column]

DBM0_AMPLITUDE: Final = 32768.0 * 10 ** (-3.17 / 20)
"""Peak int16 amplitude of a 0 dBm0 sine (G.711: a full-scale sine is +3.17 dBm0)."""

LEVEL_MIN_DBM0: Final = -36.0  # per tone; Q.24 accepts down to -25 dBm0 and rejects at -55 dBm0
TWIST_MIN_DB: Final = -11.0  # high tone below the low tone; Q.24 accepts down to -8 dB
TWIST_MAX_DB: Final = 7.0  # high tone above the low tone; Q.24 accepts up to +4 dB
RELATIVE_PEAK_DB: Final = 8.0  # DTMF measured: at least 9 dB
PURITY: Final = 0.75  # DTMF measured: at least 0.82 (two tones clipped at 0 dBm0 each)
HARMONIC_MAX_DB: Final = -6.0  # DTMF measured: at most -8 dB (leakage from the column tone)
FREQUENCY_TOLERANCE: Final = 0.025  # Q.24: accept ±1.5 %, reject ±3.5 %
NARROW_WIDE_MIN: Final = 0.2  # DTMF measured: at least 0.37 (a 1633 Hz tone 1.5 % off)
FREQUENCY_DRIFT_MAX: Final = 0.004  # relative, between consecutive windows; DTMF measured: < 0.0025
BALANCE_DB: Final = 3.0  # DTMF measured: < 0.8 dB
COVERAGE_MIN: Final = 0.5  # DTMF measured: at least 0.76 in windows the tone fills (beats)


def dtmf_frequencies(digit: str) -> tuple[float, float]:
    """``(row, column)`` frequencies of a key, for tests and tone generators."""
    for row, keys in enumerate(KEYPAD):
        column = keys.find(digit)
        if len(digit) == 1 and column >= 0:
            return ROWS[row], COLUMNS[column]
    raise MediaError(f"{digit!r} is not a DTMF digit")


# -- the analysis basis ---------------------------------------------------------------------

_FUNDAMENTALS: Final = np.array(ROWS + COLUMNS)
_RECT_FREQS: Final = np.concatenate([_FUNDAMENTALS, 2 * _FUNDAMENTALS])
_N_FUND: Final = len(_FUNDAMENTALS)  # 8
_N_RECT: Final = len(_RECT_FREQS)  # 16: rectangular bins (fundamentals, then harmonics)
_N_COEF: Final = _N_RECT + _N_FUND  # 24 complex coefficients per sub-block: rectangular, then Hann


def _build_basis() -> npt.NDArray[np.float32]:
    """``(80, 48)``: (cos, -sin) column pairs, so that ``blocks @ basis`` viewed as complex64 is the DFT.

    Scaled so that a sine of amplitude ``a`` (in units of :data:`DBM0_AMPLITUDE`) at a bin's exact
    frequency gives ``|X| = a`` for a 20 ms rectangular window (two sub-blocks joined) and
    ``|C| = a`` for one Hann-windowed sub-block.
    """
    n = np.arange(_BLOCK)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / _BLOCK)
    columns = []
    for freq in _RECT_FREQS:
        phase = 2 * np.pi * freq * n / RATE
        columns += [np.cos(phase) / (_BLOCK * DBM0_AMPLITUDE), -np.sin(phase) / (_BLOCK * DBM0_AMPLITUDE)]
    scale = 2 / (hann.sum() * DBM0_AMPLITUDE)
    for freq in _FUNDAMENTALS:
        phase = 2 * np.pi * freq * n / RATE
        columns += [hann * np.cos(phase) * scale, -hann * np.sin(phase) * scale]
    return np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)


_BASIS: Final = _build_basis()
_SCREEN_BASIS: Final = np.ascontiguousarray(_BASIS[:, : 2 * _N_FUND])  # rectangular fundamentals only
# Joining two sub-blocks into one window: e^{-jωn} over n = 80..159 is e^{-jω·80} times the basis
# over n = 0..79, so X = C(first) + e^{-jω·80}·C(second).
_TWIDDLE: Final = np.exp(-2j * np.pi * _RECT_FREQS * _BLOCK / RATE).astype(np.complex64)
_SCREEN_TWIDDLE: Final = np.ascontiguousarray(_TWIDDLE[:_N_FUND])
# Undo the nominal phase advance of a Hann coefficient from one half to the next.
_ROTATION: Final = np.exp(-2j * np.pi * _FUNDAMENTALS * _BLOCK / RATE).astype(np.complex64)
# Phase advance (radians) to relative frequency offset: Δf/f = Δφ · fs / (2π · 80 · f).
_OFFSET_SCALE: Final = (RATE / (2 * np.pi * _BLOCK * _FUNDAMENTALS)).astype(np.float32)
# Energy of a 5 ms quarter in units where a sine of amplitude a gives a**2.
_ENERGY_SCALE: Final = np.float32(2.0 / (_QUARTER * DBM0_AMPLITUDE**2))

_LEVEL_MIN: Final = np.float32(10 ** (LEVEL_MIN_DBM0 / 10))
_TWIST_MIN: Final = np.float32(10 ** (TWIST_MIN_DB / 10))
_TWIST_MAX: Final = np.float32(10 ** (TWIST_MAX_DB / 10))
_RELATIVE_PEAK: Final = np.float32(10 ** (RELATIVE_PEAK_DB / 10))
_HARMONIC_MAX: Final = np.float32(10 ** (HARMONIC_MAX_DB / 10))
_BALANCE: Final = np.float32(10 ** (BALANCE_DB / 10))
# The screen: implied by purity and narrow/wide (narrow ≥ NW·wide/2 ≥ NW·PURITY·energy) and by
# level and narrow/wide (narrow ≥ NW·LEVEL_MIN).
_SCREEN_ENERGY: Final = np.float32(NARROW_WIDE_MIN * PURITY * 0.999)
_SCREEN_LEVEL: Final = np.float32(NARROW_WIDE_MIN * 10 ** (LEVEL_MIN_DBM0 / 10) * 0.999)


# -- the debounce state machine --------------------------------------------------------------


class _State(enum.IntEnum):
    IDLE = 0  # no digit
    PENDING = 1  # one window showed the stored key
    ON = 2  # the stored key was reported and is still there
    MISS1 = 3  # the reported key is missing from 1, 2, 3 consecutive windows
    MISS2 = 4
    MISS3 = 5


class _Input(enum.IntEnum):
    NONE = 0  # the window shows no key
    MATCH = 1  # the window shows the stored key (in PENDING: with the same frequencies)
    OTHER = 2  # the window shows another key


class _Action(enum.IntEnum):
    NOTHING = 0
    STORE = 1  # remember this window's key and start
    REPORT = 2  # report the stored key at its stored start


_S, _I, _A = _State, _Input, _Action
_TRANSITIONS: Final[dict[tuple[_State, _Input], tuple[_Action, _State]]] = {
    (_S.IDLE, _I.NONE): (_A.NOTHING, _S.IDLE),
    (_S.IDLE, _I.MATCH): (_A.STORE, _S.PENDING),
    (_S.IDLE, _I.OTHER): (_A.STORE, _S.PENDING),
    (_S.PENDING, _I.NONE): (_A.NOTHING, _S.IDLE),
    (_S.PENDING, _I.MATCH): (_A.REPORT, _S.ON),
    (_S.PENDING, _I.OTHER): (_A.STORE, _S.PENDING),
    (_S.ON, _I.NONE): (_A.NOTHING, _S.MISS1),
    (_S.ON, _I.MATCH): (_A.NOTHING, _S.ON),
    (_S.ON, _I.OTHER): (_A.NOTHING, _S.MISS1),
    (_S.MISS1, _I.NONE): (_A.NOTHING, _S.MISS2),
    (_S.MISS1, _I.MATCH): (_A.NOTHING, _S.ON),
    (_S.MISS1, _I.OTHER): (_A.NOTHING, _S.MISS2),
    (_S.MISS2, _I.NONE): (_A.NOTHING, _S.MISS3),
    (_S.MISS2, _I.MATCH): (_A.NOTHING, _S.ON),
    (_S.MISS2, _I.OTHER): (_A.NOTHING, _S.MISS3),
    (_S.MISS3, _I.NONE): (_A.NOTHING, _S.IDLE),
    (_S.MISS3, _I.MATCH): (_A.NOTHING, _S.ON),
    (_S.MISS3, _I.OTHER): (_A.STORE, _S.PENDING),
}
"""Every (state, input) pair of the per-stream debounce machine → (action, next state)."""


def _tables() -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    next_state = np.zeros(len(_State) * len(_Input), dtype=np.int8)
    action = np.zeros_like(next_state)
    for (state, inp), (act, nxt) in _TRANSITIONS.items():
        next_state[state * len(_Input) + inp] = nxt
        action[state * len(_Input) + inp] = act
    return next_state, action


_NEXT_STATE, _ACTION = _tables()
_DIGITS: Final = tuple(KEYPAD[r][c] for r in range(4) for c in range(4))  # key index = 4 * row + column


# -- the analysis ----------------------------------------------------------------------------


def _screen(coef: npt.NDArray[np.complex64], quarters: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
    """``(n, 2)``: which windows may pass :func:`_window_keys` (a cheap necessary condition).

    ``coef``: ``(n, 3, 8)`` rectangular coefficients of three consecutive sub-blocks at the DTMF
    frequencies; ``quarters``: ``(n, 6)`` the quarter energies of those sub-blocks.
    """
    narrow = coef[:, 0:2] + _SCREEN_TWIDDLE * coef[:, 1:3]
    power = narrow.real**2 + narrow.imag**2  # (n, 2, 8)
    row = np.maximum(np.maximum(power[..., 0], power[..., 1]), np.maximum(power[..., 2], power[..., 3]))
    col = np.maximum(np.maximum(power[..., 4], power[..., 5]), np.maximum(power[..., 6], power[..., 7]))
    middle = quarters[:, 2] + quarters[:, 3]
    energy = np.stack([quarters[:, 0] + quarters[:, 1] + middle, middle + quarters[:, 4] + quarters[:, 5]], axis=-1)
    result: npt.NDArray[np.bool_] = (
        (row + col >= _SCREEN_ENERGY * 0.25 * energy) & (row >= _SCREEN_LEVEL) & (col >= _SCREEN_LEVEL)
    )
    return result


def _window_keys(
    coef: npt.NDArray[np.complex64], quarters: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]:
    """Every check of every window: the key index (0..15) each window shows, or -1.

    ``coef``: ``(m, 3, 24)`` sub-block coefficients (:data:`_BASIS`) of three consecutive
    sub-blocks; ``quarters``: ``(m, 6)`` their quarter energies.  Returns the keys ``(m, 2)``
    and the relative frequency offsets of the two tones of each window ``(m, 2, 2)``.
    """
    m = coef.shape[0]
    first, second = coef[:, 0:2], coef[:, 1:3]
    narrow = first[..., :_N_RECT] + _TWIDDLE * second[..., :_N_RECT]
    power = (narrow.real**2 + narrow.imag**2).reshape(m * 2, _N_RECT)  # one row per window
    row = power[:, 0:4].argmax(axis=-1)
    col = power[:, 4:8].argmax(axis=-1) + 4
    pick = np.stack([row, col], axis=-1)  # (2m, 2): the two tones of each window, as bin numbers
    window = np.arange(2 * m)[:, None]
    tone = power[window, pick]  # (2m, 2) narrow power of each tone
    harmonic = power[window, pick + _N_FUND]
    # Hann coefficients of each tone in the first and second half of each window
    flat = coef.reshape(m * 3, _N_COEF)
    half = (window // 2) * 3 + window % 2  # sub-block of the first half of each window
    za = flat[half, pick + _N_RECT]
    zb = flat[half + 1, pick + _N_RECT]
    pa = za.real**2 + za.imag**2
    pb = zb.real**2 + zb.imag**2
    wide = pa + pb
    offset = np.angle(zb * za.conj() * _ROTATION[pick]) * _OFFSET_SCALE[pick]  # (2m, 2)
    # checks of each tone: level, second harmonic, narrow/wide, balance, frequency
    tone_ok = (
        (np.minimum(pa, pb) >= _LEVEL_MIN)
        & (harmonic <= _HARMONIC_MAX * tone)
        & (tone * 2 >= NARROW_WIDE_MIN * wide)
        & (pa <= _BALANCE * pb)
        & (pb <= _BALANCE * pa)
        & (np.abs(offset) <= FREQUENCY_TOLERANCE)
    )
    # relative peak: the runner-up row (column) with the chosen one masked out
    runner_up = power[:, 0:8].copy()
    runner_up[window, pick] = 0
    second_row = np.maximum(np.maximum(runner_up[:, 0], runner_up[:, 1]), np.maximum(runner_up[:, 2], runner_up[:, 3]))
    second_col = np.maximum(np.maximum(runner_up[:, 4], runner_up[:, 5]), np.maximum(runner_up[:, 6], runner_up[:, 7]))
    # quarters of each window: 0-3 for the first, 2-5 for the second
    q = np.stack([quarters[:, 0:4], quarters[:, 2:6]], axis=1).reshape(m * 2, 4)
    energy_a = (q[:, 0] + q[:, 1]) * 0.5
    energy_b = (q[:, 2] + q[:, 3]) * 0.5
    lowest = np.minimum(np.minimum(q[:, 0], q[:, 1]), np.minimum(q[:, 2], q[:, 3]))
    ok = (
        tone_ok[:, 0]
        & tone_ok[:, 1]
        & (second_row * _RELATIVE_PEAK <= tone[:, 0])
        & (second_col * _RELATIVE_PEAK <= tone[:, 1])
        & (wide[:, 1] >= _TWIST_MIN * wide[:, 0])
        & (wide[:, 1] <= _TWIST_MAX * wide[:, 0])
        & (pa[:, 0] + pa[:, 1] >= PURITY * energy_a)
        & (pb[:, 0] + pb[:, 1] >= PURITY * energy_b)
        & (lowest >= COVERAGE_MIN * 0.5 * (energy_a + energy_b))
        & (tone[:, 0] > 0)
        & (tone[:, 1] > 0)
    )
    key = np.where(ok, pick[:, 0] * 4 + pick[:, 1] - 4, -1).astype(np.int8)
    return key.reshape(m, 2), offset.astype(np.float32).reshape(m, 2, 2)


# -- the bank --------------------------------------------------------------------------------

_Selection = slice | npt.NDArray[np.intp]


@attrs.define(eq=False)
class InbandDetectorBank:
    """In-band DTMF detectors for many streams, run together once per 20 ms tick.

    ``add(key)`` a stream, then call :meth:`process` every tick with the keys of the streams that
    have a frame and their frames (any subset, in any order; the same list object or an equal
    list from tick to tick is fastest).  Each digit is reported once, as ``(key, digit, offset)``
    where ``offset`` is the digit's start in seconds, counting the samples fed for that stream.
    """

    _slots: dict[Hashable, int] = attrs.field(factory=dict, init=False)
    _free: list[int] = attrs.field(factory=list, init=False)
    _capacity: int = attrs.field(default=0, init=False)
    # per slot: the last sub-block (samples, its rectangular coefficients, its two quarter energies)
    _tail: npt.NDArray[np.float32] = attrs.field(factory=lambda: np.zeros((0, _BLOCK), np.float32), init=False)
    _tail_coef: npt.NDArray[np.complex64] = attrs.field(
        factory=lambda: np.zeros((0, _N_FUND), np.complex64), init=False
    )
    _tail_quarters: npt.NDArray[np.float32] = attrs.field(factory=lambda: np.zeros((0, 2), np.float32), init=False)
    # per slot: samples fed so far, and the debounce machine (state, stored key, its start, offsets)
    _fed: npt.NDArray[np.int64] = attrs.field(factory=lambda: np.zeros(0, np.int64), init=False)
    _state: npt.NDArray[np.int8] = attrs.field(factory=lambda: np.zeros(0, np.int8), init=False)
    _stored: npt.NDArray[np.int8] = attrs.field(factory=lambda: np.zeros(0, np.int8), init=False)
    _start: npt.NDArray[np.int64] = attrs.field(factory=lambda: np.zeros(0, np.int64), init=False)
    _offsets: npt.NDArray[np.float32] = attrs.field(factory=lambda: np.zeros((0, 2), np.float32), init=False)
    _last_keys: list[Hashable] | None = attrs.field(default=None, init=False)
    _last_selection: _Selection = attrs.field(factory=lambda: slice(0, 0), init=False)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._slots

    def add(self, key: Hashable) -> None:
        """Start detecting on a stream with fresh state; adding a known key resets it."""
        slot = self._slots.get(key)
        if slot is None:
            if not self._free:
                self._grow()
            slot = self._free.pop()
            self._slots[key] = slot
            self._last_keys = None
        self._tail[slot] = 0
        self._tail_coef[slot] = 0
        self._tail_quarters[slot] = 0
        self._fed[slot] = 0
        self._state[slot] = _State.IDLE
        self._stored[slot] = -1
        self._start[slot] = 0
        self._offsets[slot] = 0

    def remove(self, key: Hashable) -> None:
        """Stop detecting on a stream; an unknown key is ignored."""
        slot = self._slots.pop(key, None)
        if slot is not None:
            self._free.append(slot)
            self._last_keys = None

    def _grow(self) -> None:
        old, new = self._capacity, max(16, 2 * self._capacity)
        for name in ("_tail", "_tail_coef", "_tail_quarters", "_fed", "_state", "_stored", "_start", "_offsets"):
            array = getattr(self, name)
            grown = np.zeros((new, *array.shape[1:]), dtype=array.dtype)
            grown[:old] = array
            setattr(self, name, grown)
        self._free.extend(range(new - 1, old - 1, -1))  # lowest slots first: contiguous selections
        self._capacity = new

    def _select(self, keys: Sequence[Hashable]) -> _Selection:
        if self._last_keys is not None and len(keys) == len(self._last_keys) and list(keys) == self._last_keys:
            return self._last_selection
        try:
            index = np.fromiter((self._slots[key] for key in keys), dtype=np.intp, count=len(keys))
        except KeyError as exc:
            raise MediaError(f"in-band DTMF: stream {exc.args[0]!r} was not added") from None
        if len(np.unique(index)) != len(index):
            raise MediaError("in-band DTMF: a stream appears twice in one tick")
        selection: _Selection = index
        if np.array_equal(index, np.arange(index[0], index[0] + len(index))):
            selection = slice(int(index[0]), int(index[0]) + len(index))
        self._last_keys = list(keys)
        self._last_selection = selection
        return selection

    def process(self, keys: Sequence[Hashable], frames: npt.NDArray[np.int16]) -> list[tuple[Hashable, str, float]]:
        """Feed one 20 ms frame per stream (``frames[i]``, 160 samples, belongs to ``keys[i]``).

        Returns ``(key, digit, offset in seconds)`` for each digit found in this frame.
        """
        count = len(keys)
        if frames.shape != (count, FRAME_SAMPLES):
            raise MediaError(f"in-band DTMF: frames of shape {frames.shape}, expected ({count}, {FRAME_SAMPLES})")
        if count == 0:
            return []
        sel = self._select(keys)
        samples = np.asarray(frames, dtype=np.float32)
        coef = (samples.reshape(2 * count, _BLOCK) @ _SCREEN_BASIS).view(np.complex64).reshape(count, 2, _N_FUND)
        quarters = samples.reshape(count, 4, _QUARTER)
        quarters = np.einsum("nqk,nqk->nq", quarters, quarters) * _ENERGY_SCALE
        all_coef = np.concatenate([self._tail_coef[sel][:, None, :], coef], axis=1)
        all_quarters = np.concatenate([self._tail_quarters[sel], quarters], axis=1)
        candidates = np.flatnonzero(_screen(all_coef, all_quarters).any(axis=1))

        seen = np.full((count, 2), -1, dtype=np.int8)
        seen_offsets = np.zeros((count, 2, 2), dtype=np.float32)
        if len(candidates):
            tails = self._tail[sel][candidates]
            blocks = np.concatenate([tails, samples[candidates]], axis=1).reshape(3 * len(candidates), _BLOCK)
            full = (blocks @ _BASIS).view(np.complex64).reshape(len(candidates), 3, _N_COEF)
            seen[candidates], seen_offsets[candidates] = _window_keys(full, all_quarters[candidates])

        self._tail[sel] = samples[:, _BLOCK:]
        self._tail_coef[sel] = coef[:, 1]
        self._tail_quarters[sel] = quarters[:, 2:4]
        fed = self._fed[sel].copy()
        self._fed[sel] = fed + FRAME_SAMPLES

        state = self._state[sel]
        active = np.flatnonzero((state != _State.IDLE) | (seen >= 0).any(axis=1))
        if not len(active):
            return []
        return self._debounce(keys, sel, active, fed=fed[active], seen=seen[active], seen_offsets=seen_offsets[active])

    def _debounce(
        self,
        keys: Sequence[Hashable],
        sel: _Selection,
        active: npt.NDArray[np.intp],
        *,
        fed: npt.NDArray[np.int64],
        seen: npt.NDArray[np.int8],
        seen_offsets: npt.NDArray[np.float32],
    ) -> list[tuple[Hashable, str, float]]:
        """Run the two windows of this frame through the machine of each ``active`` stream."""
        slots = np.arange(self._capacity)[sel][active]
        state = self._state[slots]
        stored = self._stored[slots]
        start = self._start[slots]
        offsets = self._offsets[slots]
        reports: list[tuple[Hashable, str, float]] = []
        for window in range(2):
            key, key_offsets = seen[:, window], seen_offsets[:, window]
            steady = np.abs(key_offsets - offsets).max(axis=-1) <= FREQUENCY_DRIFT_MAX
            match = (key == stored) & ((state != _State.PENDING) | steady)
            inp = np.where(key < 0, _Input.NONE, np.where(match, _Input.MATCH, _Input.OTHER))
            flat = state.astype(np.intp) * len(_Input) + inp
            action = _ACTION[flat]
            state = _NEXT_STATE[flat]
            for i in np.flatnonzero(action == _Action.REPORT):
                reports.append((keys[active[i]], _DIGITS[stored[i]], max(0, int(start[i])) / RATE))
            store = action == _Action.STORE
            stored = np.where(store, key, stored)
            start = np.where(store, fed + (window - 1) * _BLOCK, start)
            offsets = np.where((key >= 0)[:, None], key_offsets, offsets)
        self._state[slots] = state
        self._stored[slots] = stored
        self._start[slots] = start
        self._offsets[slots] = offsets
        return reports


@attrs.define(eq=False)
class InbandDetector:
    """The production detector for one stream of any length (a bank of one), e.g. for files.

    :meth:`feed` takes int16 samples in chunks of any size and returns ``(digit, offset)`` for
    each digit found; :meth:`flush` completes the last partial frame with silence.
    """

    _bank: InbandDetectorBank = attrs.field(factory=InbandDetectorBank, init=False)
    _pending: npt.NDArray[np.int16] = attrs.field(factory=lambda: np.zeros(0, np.int16), init=False)

    def __attrs_post_init__(self) -> None:
        self._bank.add(0)

    def feed(self, samples: npt.NDArray[np.int16]) -> list[tuple[str, float]]:
        data = np.concatenate([self._pending, np.asarray(samples, dtype=np.int16).ravel()])
        whole = len(data) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = data[whole:]
        keys = [0]
        out: list[tuple[str, float]] = []
        for frame in data[:whole].reshape(-1, 1, FRAME_SAMPLES):
            out += [(digit, offset) for _, digit, offset in self._bank.process(keys, frame)]
        return out

    def flush(self) -> list[tuple[str, float]]:
        """End of the stream: pad the partial frame and add one frame of silence to settle."""
        return self.feed(np.zeros(2 * FRAME_SAMPLES - len(self._pending), dtype=np.int16))
