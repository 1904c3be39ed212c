"""A wrong PIN tells the caller nothing about how many of its keys were right.

On a fake clock, a call that types wrong entries with 0, 1, 2 … all-but-one right leading keys
must do exactly the same things at exactly the same times afterwards: the same actions (prompts,
logs, records, hang-up) in the same order, the same timer deadlines, the same end.  The entry
itself must end after the same number of keys whatever its right prefix (also with PINs of
different lengths on one hotline), and every comparison must be a ``compare_digest`` of two
inputs of equal length, the same number of them for every entry.
"""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcallhunt.hotline import pin as pin_module
from sipcallhunt.hotline.actions import Action, Log, StoreCall
from sipcallhunt.hotline.call import CallState
from sipcallhunt.hotline.pin import EntryResult, PinEntry, PinGuard, pin_matches
from sipcallhunt.records import Outcome, PinResult
from tests.hotline.helpers import Driver, make_config

PIN = "4711"
MIXED = ("1234", "987654")  # PINs of different lengths on one hotline
KEY_GAP = 0.25  # seconds between the keys of an entry


def wrong_entries(pin: str, length: int) -> list[str]:
    """Wrong entries of ``length`` keys with 0, 1, … len(pin) - 1 right leading keys of ``pin``."""
    entries = []
    for right in range(len(pin)):
        wrong_key = "0" if pin[right] != "0" else "9"
        entries.append((pin[:right] + wrong_key).ljust(length, wrong_key))
    return entries


def trace(pins: tuple[str, ...], entries: list[str], *, barge_in: bool) -> list[tuple[float, str, float | None]]:
    """What a call does from its first PIN key to its end, with the time of each action and the
    next deadline after it: ``(seconds since the first key, action, deadline - now)``."""
    d = Driver(
        make_config(pins=pins, pin_attempts=len(entries), pin_timeout=5.0), guard=PinGuard(3, 900.0, rate_limit=10)
    )
    d.connect()
    if not barge_in:
        d.played("enter_pin", after=1.0)
    first_key_at = d.now
    steps: list[tuple[float, str, float | None]] = []

    def note(actions: list[Action]) -> None:
        deadline = d.call.next_deadline()
        for action in actions:
            steps.append((round(d.now - first_key_at, 9), repr(action), None))
        steps.append((round(d.now - first_key_at, 9), "deadline", None if deadline is None else deadline - d.now))

    for index, entry in enumerate(entries):
        for position, key in enumerate(entry):
            note(d.key(key))
            if position < len(entry) - 1:
                note(d.wait(KEY_GAP))
        assert d.call.state in (CallState.PIN_PROMPT, CallState.ENDING)  # the entry ended with its last key
        if index < len(entries) - 1:
            if barge_in:
                note(d.wait(0.1))  # the next entry's first key stops wrong_pin + enter_pin
            else:
                note(d.wait(0.7))
                note(d.played("wrong_pin", "enter_pin"))
                note(d.wait(0.3))
    note(d.wait(0.4))
    note(d.played("goodbye"))
    assert d.call.finished and d.record.outcome is Outcome.PIN_FAILED and d.record.pin_result is PinResult.FAILED
    # Nothing in the trace may carry a key: compare it as the caller and the log would see it.
    assert not [a for a in d.actions if isinstance(a, Log) and any(e in a.message for e in entries)]
    assert not [a for a in d.actions if isinstance(a, StoreCall) and a.record.pin_result is PinResult.OK]
    return steps


def differing(traces: dict[str, list[tuple[float, str, float | None]]]) -> list[str]:
    """The entries whose trace differs from the first one's (all, for a readable failure)."""
    (_, first), *rest = traces.items()
    return [entry for entry, steps in rest if steps != first]


@pytest.mark.parametrize("barge_in", [False, True], ids=["after-prompt", "barge-in"])
def test_wrong_pins_with_more_right_keys_do_the_same_things_at_the_same_times(barge_in: bool) -> None:
    entries = wrong_entries(PIN, len(PIN))
    assert entries == ["0000", "4000", "4700", "4710"]
    # One call per entry: pin_attempts entries, all with the same number of right keys.
    traces = {entry: trace((PIN,), [entry] * 3, barge_in=barge_in) for entry in entries}
    assert differing(traces) == []
    steps = traces["0000"]
    assert any("wrong_pin" in text for _, text, _ in steps) and any("goodbye" in text for _, text, _ in steps)


def test_wrong_pins_of_mixed_right_prefixes_in_one_call_do_the_same_as_all_wrong() -> None:
    entries = wrong_entries(PIN, len(PIN))
    traces = {
        "all wrong": trace((PIN,), ["0000"] * 4, barge_in=False),
        "more and more right": trace((PIN,), entries, barge_in=False),
        "less and less right": trace((PIN,), entries[::-1], barge_in=False),
    }
    assert differing(traces) == []


def test_pins_of_different_lengths_leak_neither_right_keys_nor_which_pin() -> None:
    # Wrong entries of six keys, right-prefixed towards the long PIN and towards the short one
    # (a right short PIN ends the entry at its fourth key: that is a right PIN, not a leak).
    towards_long = wrong_entries(MIXED[1], 6)
    towards_short = wrong_entries(MIXED[0], 6)
    assert towards_long[-1] == "987650" and towards_short[-1] == "123000"
    traces = {entry: trace(MIXED, [entry] * 2, barge_in=False) for entry in ["000000", *towards_long, *towards_short]}
    assert differing(traces) == []


def test_a_wrong_entry_ends_after_the_same_number_of_keys_whatever_its_right_prefix() -> None:
    for pins in ((PIN,), MIXED, ("123", "4567", "89012")):
        longest = max(len(p) for p in pins)
        for pin in pins:
            for entry in wrong_entries(pin, longest):
                if any(entry.startswith(p) for p in pins):
                    continue  # a right PIN at its start: the entry is right, not wrong
                entry_state = PinEntry(pins)
                results = [entry_state.add(k) for k in entry]
                assert results == [EntryResult.INCOMPLETE] * (longest - 1) + [EntryResult.WRONG], (pins, entry)


@given(st.lists(st.text("0123456789", min_size=3, max_size=8), min_size=1, max_size=3), st.data())
def test_every_comparison_is_between_equal_lengths_and_as_many_for_every_entry(
    pins: list[str], data: st.DataObject
) -> None:
    entries = data.draw(st.lists(st.text("0123456789*", min_size=1, max_size=10), min_size=1, max_size=5))
    real = hmac.compare_digest
    calls: list[tuple[int, int]] = []

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    for entry in entries:
        calls.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pin_module.hmac, "compare_digest", recording)
            matched = pin_matches(entry, pins)
        assert matched == (entry in pins)
        width = 4 + max(len(entry), *(len(p) for p in pins))
        assert calls == [(width, width)] * len(pins)  # one whole comparison per PIN, equal lengths
