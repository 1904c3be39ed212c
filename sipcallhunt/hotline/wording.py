"""Small pure helpers for the words a hotline call uses: durations, key prompt names, plurals.

``end_reason`` sentences in the call log are for people ("Alice accepted and hung up after
2 min 3 s"), so durations are rounded to whole seconds and written the way people say them.
"""

from __future__ import annotations

__all__ = [
    "digit_prompt",
    "format_duration",
    "plural",
]

from typing import Final

_KEY_NAMES: Final = {"*": "star", "#": "hash"}


def digit_prompt(key: str) -> str:
    """The prompt that speaks a DTMF key: ``digit_0`` … ``digit_9``, ``digit_star``, ``digit_hash``, ``digit_A`` …"""
    return "digit_" + _KEY_NAMES.get(key, key)


def format_duration(seconds: float) -> str:
    """``45 s``, ``2 min 3 s``, ``2 min``, ``1 h 5 min``: rounded to the second, for people."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def plural(count: int, word: str) -> str:
    """``1 round``, ``2 rounds``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
