"""PIN entry and the per-hotline PIN guard (lockout of numbers that keep failing).

Theory of operation
-------------------
:class:`PinEntry` collects the keys a caller types for one PIN entry and says when the entry is
over and whether it was right.  The entry ends

* at ``#`` (the ``#`` itself is not part of the entry; a ``#`` with nothing typed is ignored), or
* as soon as the digits typed equal one of the configured PINs, or
* when it is as long as the longest configured PIN.

With PINs of one length (the usual case) this means: the entry ends when that many keys have been
typed, and ``#`` only helps to give up early.  With PINs of different lengths, say ``1234`` and
``987654``: typing ``1234`` ends the entry at once (right), ``987654`` ends it at its sixth key
(right), a wrong ``5555`` needs ``#`` or two more keys (``555555``, wrong).  Callers with a
shorter PIN never have to press ``#``; pressing it anyway is harmless (the entry ended already and
the ``#`` falls into the next phase, where it is ignored).

An entry is compared only as a whole, with :func:`hmac.compare_digest` against *every*
configured PIN (no early exit on the first match, none on a wrong prefix), so neither the time
taken nor the moment the entry ends depends on how many leading keys were right.  The caller
learns nothing but "right" or "wrong" for a whole entry.  Keys are never logged.

:class:`PinGuard` is shared by all calls of one hotline and keyed by the caller's number:
``failures`` failed calls within ``lockout_time`` seconds lock the number out for
``lockout_time`` seconds (counted from the failure that locked it); a successful PIN clears the
number's failures.  A call counts as failed when it ended without the right PIN after at least
one wrong or timed-out entry, including a caller who hangs up after wrong entries (or hanging up
before the last attempt would dodge the lockout).  Anonymous callers share the key they arrive
with (e.g. ``anonymous``) and so share one lockout.  Memory is bounded: entries are kept in the
order they were last touched, expired ones are dropped from the front on every use, and when
``max_numbers`` are tracked the least recently touched one is forgotten.

The number a caller arrives with is whatever the PBX put in the From header, and a caller coming
in through a trunk may choose it freely: a guesser who changes it for every call is never locked
out.  So the guard also limits the whole hotline: with ``rate_limit`` set, at most that many
failed calls (from all numbers together) within :data:`RATE_WINDOW` seconds; while the limit is
reached, :meth:`PinGuard.throttled_until` says until when, and the call flow refuses new calls of
the hotline with 403 — the price is that callers who know the PIN are refused too, until the
window has room again.

Pure: ``now`` is a parameter (the daemon's monotonic clock); nothing here reads a clock.
"""

from __future__ import annotations

__all__ = [
    "DTMF_KEYS",
    "RATE_WINDOW",
    "EntryResult",
    "PinEntry",
    "PinGuard",
    "pin_matches",
]

import enum
import hmac
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Final

import attrs

from sipcallhunt.config import HotlineConfig

DTMF_KEYS: Final = frozenset("0123456789*#ABCD")
"""The sixteen DTMF keys (ITU-T Q.23)."""

END_KEY: Final = "#"
"""Ends a PIN entry early."""

RATE_WINDOW: Final = 60.0
"""The window of the hotline-wide limit (``pin_rate_limit`` failed calls per this many seconds)."""


def pin_matches(entry: str, pins: Sequence[str]) -> bool:
    """True when ``entry`` equals one of ``pins``.

    Every PIN is compared, each as a whole with :func:`hmac.compare_digest`, and the results are
    combined without short-circuit: the time taken does not depend on which PIN matched or on how
    many leading keys of the entry were right.  Both sides of every comparison have the same
    length (the length of each, then its keys padded to the longest of them all), so that PINs of
    different lengths on one hotline take no shortcut either: ``compare_digest`` promises constant
    time only for inputs of equal length.
    """
    typed = entry.encode("ascii", "replace")
    encoded = [pin.encode("ascii", "replace") for pin in pins]
    width = max([len(typed), *(len(pin) for pin in encoded)])
    probe = _fixed_width(typed, width)
    found = False
    for pin in encoded:
        found |= hmac.compare_digest(probe, _fixed_width(pin, width))
    return found


def _fixed_width(keys: bytes, width: int) -> bytes:
    """``keys`` as 4 + ``width`` bytes: its length, then the keys padded with NUL (never a key)."""
    return len(keys).to_bytes(4, "big") + keys.ljust(width, b"\0")


class EntryResult(enum.Enum):
    """What one key did to a PIN entry."""

    INCOMPLETE = "incomplete"  # the entry goes on
    RIGHT = "right"  # the entry ended and equals a configured PIN
    WRONG = "wrong"  # the entry ended and equals none


@attrs.define(eq=False)
class PinEntry:
    """The keys of one PIN entry; see the module docstring for when an entry ends."""

    pins: tuple[str, ...]
    _keys: list[str] = attrs.field(init=False, factory=list)

    @property
    def max_length(self) -> int:
        """The longest PIN: an entry this long always ends (0 without PINs: every key is wrong)."""
        return max((len(pin) for pin in self.pins), default=0)

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        """Start a new entry."""
        self._keys.clear()

    def add(self, key: str) -> EntryResult:
        """Add one key; the result says whether the entry ended, and how.

        After ``RIGHT`` or ``WRONG`` the entry is cleared, ready for the next one.
        """
        if key == END_KEY:
            if not self._keys:
                return EntryResult.INCOMPLETE
            return self._finish()
        self._keys.append(key)
        typed = "".join(self._keys)
        if pin_matches(typed, self.pins):
            self._keys.clear()
            return EntryResult.RIGHT
        if len(self._keys) >= self.max_length:
            self._keys.clear()
            return EntryResult.WRONG
        return EntryResult.INCOMPLETE

    def _finish(self) -> EntryResult:
        typed = "".join(self._keys)
        self._keys.clear()
        return EntryResult.RIGHT if pin_matches(typed, self.pins) else EntryResult.WRONG


@attrs.define(eq=False)
class _Number:
    """What the guard remembers about one caller number."""

    failures: list[float] = attrs.field(factory=list)  # times of failed calls within the window
    locked_until: float | None = None
    touched: float = 0.0  # the last failure; everything about the number expires at touched + lockout_time


@attrs.define(eq=False)
class PinGuard:
    """Locks out caller numbers after repeated failed PIN calls (one guard per hotline)."""

    failures: int
    lockout_time: float
    max_numbers: int = 10_000
    rate_limit: int = 0  # failed calls of all numbers per RATE_WINDOW; 0: no hotline-wide limit
    _numbers: OrderedDict[str, _Number] = attrs.field(init=False, factory=OrderedDict)
    _recent: deque[float] = attrs.field(init=False, factory=deque)  # the last failures, oldest first

    @classmethod
    def for_hotline(cls, config: HotlineConfig, max_numbers: int = 10_000) -> PinGuard:
        """A guard with the hotline's ``pin_lockout_failures``, ``pin_lockout_time`` and ``pin_rate_limit``."""
        return cls(
            failures=config.pin_lockout_failures,
            lockout_time=config.pin_lockout_time,
            max_numbers=max_numbers,
            rate_limit=config.pin_rate_limit,
        )

    def configure(self, config: HotlineConfig) -> None:
        """Take the settings of a reloaded ``config``; what the guard remembers stays."""
        self.failures = config.pin_lockout_failures
        self.lockout_time = config.pin_lockout_time
        self.rate_limit = config.pin_rate_limit

    def throttled_until(self, now: float) -> float | None:
        """When the hotline-wide limit lets calls in again, or None when it does not hold at ``now``.

        It holds while ``rate_limit`` failed calls lie within the last :data:`RATE_WINDOW` seconds,
        until the oldest of them leaves the window.
        """
        while self._recent and self._recent[0] + RATE_WINDOW <= now:  # the same sum as returned below
            self._recent.popleft()
        if not self.rate_limit or len(self._recent) < self.rate_limit:
            return None
        return self._recent[-self.rate_limit] + RATE_WINDOW

    @property
    def tracked(self) -> int:
        """How many numbers are remembered (for statistics; a guard is never falsy)."""
        return len(self._numbers)

    def locked_until(self, number: str, now: float) -> float | None:
        """When the lockout of ``number`` ends, or None when it is not locked out at ``now``."""
        self._expire(now)
        entry = self._numbers.get(number)
        if entry is None or entry.locked_until is None or entry.locked_until <= now:
            return None
        return entry.locked_until

    def is_locked(self, number: str, now: float) -> bool:
        return self.locked_until(number, now) is not None

    def failed(self, number: str, now: float) -> bool:
        """Count a failed call from ``number``; True when this failure locked the number out."""
        self._expire(now)
        entry = self._numbers.pop(number, None) or _Number()
        window_start = now - self.lockout_time
        entry.failures = [t for t in entry.failures if t > window_start]
        entry.failures.append(now)
        entry.touched = now
        self._recent.append(now)
        while len(self._recent) > max(self.rate_limit, 1):  # only the last rate_limit failures matter
            self._recent.popleft()
        locked = False
        if len(entry.failures) >= self.failures:
            entry.locked_until = now + self.lockout_time
            entry.failures = []
            locked = True
        self._numbers[number] = entry  # most recently touched last
        while len(self._numbers) > self.max_numbers:
            self._numbers.popitem(last=False)
        return locked

    def succeeded(self, number: str, now: float) -> None:
        """The right PIN came from ``number``: forget its failures."""
        self._expire(now)
        self._numbers.pop(number, None)

    def _expire(self, now: float) -> None:
        # Entries are ordered by ``touched``; all they hold ends by touched + lockout_time.
        while self._numbers:
            first = next(iter(self._numbers.values()))
            if first.touched + self.lockout_time > now:
                break
            self._numbers.popitem(last=False)
