"""PIN entry rules, the whole-entry comparison and the PinGuard lockout."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcallhunt.hotline import pin as pin_module
from sipcallhunt.hotline.pin import EntryResult, PinEntry, PinGuard, pin_matches
from tests.hotline.helpers import make_config

KEYS = "0123456789*ABCD"


def type_keys(entry: PinEntry, keys: str) -> list[EntryResult]:
    return [entry.add(key) for key in keys]


def test_entry_of_pins_of_one_length_ends_at_that_length() -> None:
    entry = PinEntry(("1234", "5678"))
    assert type_keys(entry, "567") == [EntryResult.INCOMPLETE] * 3
    assert entry.add("8") is EntryResult.RIGHT
    assert type_keys(entry, "123") == [EntryResult.INCOMPLETE] * 3
    assert entry.add("5") is EntryResult.WRONG  # four keys, no match: over without '#'
    assert len(entry) == 0


def test_hash_ends_an_entry_early_and_an_empty_hash_is_ignored() -> None:
    entry = PinEntry(("1234",))
    assert entry.add("#") is EntryResult.INCOMPLETE
    assert len(entry) == 0
    assert type_keys(entry, "12#") == [EntryResult.INCOMPLETE, EntryResult.INCOMPLETE, EntryResult.WRONG]
    assert type_keys(entry, "1234") == [EntryResult.INCOMPLETE] * 3 + [EntryResult.RIGHT]


def test_entry_with_pins_of_different_lengths() -> None:
    pins = ("1234", "987654")
    entry = PinEntry(pins)
    assert entry.max_length == 6
    # The short PIN ends the entry at once, without '#'.
    assert type_keys(entry, "1234")[-1] is EntryResult.RIGHT
    # The long PIN ends at its sixth key; its first four keys match no PIN so the entry goes on.
    assert type_keys(entry, "987654") == [EntryResult.INCOMPLETE] * 5 + [EntryResult.RIGHT]
    # A wrong entry needs '#' or the longest length.
    assert type_keys(entry, "5555") == [EntryResult.INCOMPLETE] * 4
    assert entry.add("#") is EntryResult.WRONG
    assert type_keys(entry, "555555")[-1] is EntryResult.WRONG
    # A long PIN whose start is another valid PIN is accepted at the shorter one: both are valid.
    entry = PinEntry(("123", "123456"))
    assert type_keys(entry, "123")[-1] is EntryResult.RIGHT


def test_pin_keys_may_include_star_and_letters() -> None:
    entry = PinEntry(("*1A9",))
    assert type_keys(entry, "*1A9")[-1] is EntryResult.RIGHT


def test_entry_without_pins_is_always_wrong() -> None:
    assert PinEntry(()).add("1") is EntryResult.WRONG


def test_pin_matches_compares_every_pin_whole_without_early_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(pin_module.hmac, "compare_digest", counting)
    pins = ("1111", "2222", "3333")
    assert pin_matches("1111", pins)  # the first PIN matches: the others are still compared
    assert [(a[4:], b[4:]) for a, b in calls] == [(b"1111", b"1111"), (b"1111", b"2222"), (b"1111", b"3333")]
    calls.clear()
    assert not pin_matches("1112", pins)  # a right prefix: still whole comparisons only
    assert [a[4:] for a, _ in calls] == [b"1112"] * 3


@given(st.lists(st.text(KEYS, min_size=3, max_size=8), min_size=1, max_size=4), st.text(KEYS + "#", max_size=20))
def test_entry_result_is_right_exactly_when_the_typed_keys_equal_a_pin(pins: list[str], keys: str) -> None:
    entry = PinEntry(tuple(pins))
    typed = ""
    for key in keys:
        result = entry.add(key)
        if key != "#":
            typed += key
        if result is EntryResult.INCOMPLETE:
            assert len(typed) < entry.max_length
            assert typed not in pins
            continue
        assert (result is EntryResult.RIGHT) == (typed in pins)
        assert typed, "an empty entry never ends"
        typed = ""


def test_guard_locks_after_failures_within_the_window_and_unlocks_after_lockout_time() -> None:
    guard = PinGuard(failures=3, lockout_time=900.0)
    assert not guard.failed("030", 0.0)
    assert not guard.failed("030", 100.0)
    assert not guard.is_locked("030", 100.0)
    assert guard.failed("030", 200.0)  # the third failure within 900 s locks
    assert guard.is_locked("030", 200.0)
    assert guard.locked_until("030", 500.0) == 1100.0
    assert guard.is_locked("030", 1099.9)
    assert not guard.is_locked("030", 1100.0)  # locked for lockout_time from the locking failure
    assert not guard.is_locked("040", 300.0)  # other numbers are unaffected


def test_guard_forgets_failures_older_than_the_window() -> None:
    guard = PinGuard(failures=3, lockout_time=900.0)
    guard.failed("030", 0.0)
    guard.failed("030", 500.0)
    assert not guard.failed("030", 950.0)  # the failure at 0 is out of the window
    assert guard.failed("030", 1000.0)  # 500, 950, 1000


def test_guard_success_resets_failures() -> None:
    guard = PinGuard(failures=2, lockout_time=900.0)
    guard.failed("030", 0.0)
    guard.succeeded("030", 10.0)
    assert not guard.failed("030", 20.0)
    assert guard.failed("030", 30.0)


def test_guard_memory_is_bounded_and_expired_numbers_are_dropped() -> None:
    guard = PinGuard(failures=5, lockout_time=60.0, max_numbers=100)
    for i in range(1000):
        guard.failed(f"n{i}", float(i) / 100)
        assert guard.tracked <= 100
    assert guard.is_locked("n999", 10.0) is False
    guard.is_locked("anything", 1000.0)  # every entry has expired by now
    assert guard.tracked == 0


def test_guard_keeps_the_most_recent_numbers_when_full() -> None:
    guard = PinGuard(failures=1, lockout_time=1000.0, max_numbers=3)
    for i, number in enumerate("abcd"):
        guard.failed(number, float(i))
    assert not guard.is_locked("a", 5.0)  # the least recently touched was forgotten
    assert all(guard.is_locked(n, 5.0) for n in "bcd")


def test_guard_for_hotline_uses_its_settings() -> None:
    guard = PinGuard.for_hotline(make_config(pin_lockout_failures=4, pin_lockout_time=60.0))
    assert (guard.failures, guard.lockout_time) == (4, 60.0)
