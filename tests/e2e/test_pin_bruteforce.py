"""PIN brute force end to end: a guesser who dials the hotline again and again typing sequential PINs
by RFC 4733, one who changes his From number for every call, and what the timing of the answers
to wrong PINs gives away (nothing about how many keys were right).

Helpers come from :mod:`tests.e2e.test_hotline`.  The agent (``agent1``) is never registered: a
caller who gets past the PIN is seen in the call log (PIN ``ok``, one attempt, 480), which is all
these tests need.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Final

import numpy as np
import pytest

from sipcallhunt.records import AttemptEnd, Outcome, PinResult
from tests.e2e.harness import RtpEndpoint, RtpStream, SippResult, TestBed, tone
from tests.e2e.harness.audio import level_dbfs
from tests.e2e.harness.rtp import audio_from_packets
from tests.e2e.test_hotline import (
    CALLER_HZ,
    PIN,
    PROMPT_TONES,
    assert_cli_shows,
    attempt_rows,
    start_hotline,
    tone_share,
    write_prompts,
)

pytestmark = pytest.mark.e2e

ANN: Final = {"name": "Ann", "number": "agent1"}
KEY_SECONDS: Final = 0.06  # a short but ordinary RFC 4733 key press ...
KEY_GAP: Final = 0.04  # ... and the pause after it
LOCKOUT: Final = 8.0  # pin_lockout_time of the brute-force test (seconds)


def guess_stream(entries: Sequence[str]) -> RtpStream:
    """A caller typing ``entries`` by RFC 4733 (the first during the intro), then talking."""
    stream = RtpStream().silence(0.2)
    for entry in entries:
        stream.digits(entry, duration=KEY_SECONDS, gap=KEY_GAP).silence(0.3)
    return stream.audio(tone(CALLER_HZ, 4.0))


def guess(bed: TestBed, entries: Sequence[str], *, user: str = "caller", **params: object) -> SippResult:
    """One call typing ``entries``; the hotline must hang up on it (BYE)."""
    pcap = bed.pcap(guess_stream(entries))
    result = bed.caller(user=user, to="hotline", params={"pcap": pcap, **params}).run(timeout=20).assert_ok()
    assert result.received_requests == ["BYE"], result.received_requests
    return result


def refused(bed: TestBed, *, user: str = "caller", **params: object) -> SippResult:
    """One call that must be refused with 403 before anything is answered or played."""
    with RtpEndpoint(bed.address()) as media:
        result = bed.caller(
            "uac_rejected",
            user=user,
            to="hotline",
            params={"status": 403, "rtp_ip": media.host, "rtp_port": media.port, **params},
        ).run(timeout=20)
        result.assert_ok()
        time.sleep(0.2)
        assert media.received == [], "a refused caller heard something"
    assert 200 not in result.received_responses and result.received_responses[-1] == 403
    return result


def sequential(start: int, count: int) -> list[str]:
    return [f"{n:04d}" for n in range(start, start + count)]


def test_sequential_guesses_from_one_number_lock_it_out_and_nobody_else(testbed: TestBed) -> None:
    """pin_attempts = 2, pin_lockout_failures = 2, pin_lockout_time = 8 s: the guesser's first two
    calls (0000 0001, 0002 0003) each end with BYE after two wrong entries, the second locks his
    number out.  During the lockout his calls - with a wrong PIN or with the right one - get 403
    and hear nothing, while another number gets in with the right PIN.  Once the lockout is over,
    the guesser's number is answered again."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [
            {
                "name": "support",
                "pins": [PIN],
                "pin_attempts": 2,
                "pin_lockout_failures": 2,
                "pin_lockout_time": LOCKOUT,
                "pin_rate_limit": 0,
                **prompts,
                "agent": [ANN],
            }
        ],
    )
    guess(testbed, sequential(0, 2))
    guess(testbed, sequential(2, 2))
    locking = hotline.wait_calls(2)[1][0]
    assert locking.ended is not None
    refused(testbed)  # the next guess: 403 at once
    ok = guess(testbed, [PIN], user="caller2")  # another number is not locked out
    refused(testbed)  # the locked-out number with the right PIN: still 403
    during = hotline.wait_calls(5)
    assert time.time() < locking.ended + LOCKOUT, "the test was too slow to see the lockout hold"

    time.sleep(max(0.0, locking.ended + LOCKOUT + 0.3 - time.time()))
    guess(testbed, [PIN])  # the lockout is over: the right PIN gets in
    calls = hotline.wait_calls(6)

    rows = [(c.caller, c.outcome, c.pin_result, c.answered is not None, len(a)) for c, a in calls]
    assert rows == [
        ("caller", Outcome.PIN_FAILED, PinResult.FAILED, True, 0),
        ("caller", Outcome.PIN_FAILED, PinResult.LOCKED_OUT, True, 0),
        ("caller", Outcome.REJECTED, PinResult.LOCKED_OUT, False, 0),
        ("caller2", Outcome.NO_AGENT, PinResult.OK, True, 1),
        ("caller", Outcome.REJECTED, PinResult.LOCKED_OUT, False, 0),
        ("caller", Outcome.NO_AGENT, PinResult.OK, True, 1),
    ]
    assert calls[0][0].end_reason == "no valid PIN in 2 attempts"
    assert calls[1][0].end_reason == "no valid PIN in 2 attempts; caller is now locked out for 8 s"
    for call, _ in (during[2], during[4]):
        assert (call.end_reason or "").startswith("caller is locked out after too many wrong PIN entries")
    assert attempt_rows(calls[3][1]) == [(1, 1, "Ann", AttemptEnd.UNAVAILABLE, 480, None, None)]
    assert ok.received_requests == ["BYE"]
    log = hotline.daemon.log_text()
    assert log.count("wrong PIN (attempt 1 of 2)") == 2 and log.count("PIN accepted") == 2
    assert PIN not in log  # keys are never logged
    assert_cli_shows(hotline, calls)
    hotline.assert_clean_log()


def test_changing_from_numbers_meet_the_hotline_wide_limit(testbed: TestBed) -> None:
    """A guesser whose calls come in with a new From number each time (a trunk lets him choose it)
    is never locked out by number; pin_rate_limit = 2 refuses every new call of the hotline once two
    failed PIN calls came within a minute - from a third new number, and also from a caller with
    the right PIN (the price of the limit, until the minute has room again)."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [{"name": "support", "pins": [PIN], "pin_attempts": 1, "pin_rate_limit": 2, **prompts, "agent": [ANN]}],
    )
    foreign = {"from_domain": "trunk.invalid"}  # unchallenged by the PBX, routed to the hotline
    guess(testbed, ["0000"], from_user="+493012340001", from_name="+493012340001", **foreign)
    guess(testbed, ["0001"], from_user="+493012340002", from_name="+493012340002", **foreign)
    refused(testbed, from_user="+493012340003", from_name="+493012340003", **foreign)
    refused(testbed, user="caller2")
    calls = hotline.wait_calls(4)

    rows = [(c.caller, c.outcome, c.pin_result, c.answered is not None) for c, _ in calls]
    assert rows == [
        ("+493012340001", Outcome.PIN_FAILED, PinResult.FAILED, True),
        ("+493012340002", Outcome.PIN_FAILED, PinResult.FAILED, True),
        ("+493012340003", Outcome.REJECTED, PinResult.RATE_LIMITED, False),
        ("caller2", Outcome.REJECTED, PinResult.RATE_LIMITED, False),
    ]
    for call, _ in calls[2:]:
        assert (call.end_reason or "").startswith("the hotline refuses calls after 2 failed PIN calls within a minute")
    log = hotline.daemon.log_text()
    assert "hotline 'support' had 2 failed PIN calls within a minute: new calls are refused for" in log
    assert_cli_shows(hotline, calls)
    hotline.assert_clean_log()


# --- timing ------------------------------------------------------------------------------------


def first_tone_after(media: RtpEndpoint, hz: float, since: float, *, timeout: float = 5.0) -> float:
    """The arrival time of the first packet after ``since`` whose audio is mostly ``hz``."""
    deadline = time.monotonic() + timeout
    checked = 0
    while time.monotonic() < deadline:
        received = media.received
        for item in received[checked:]:
            if item.time < since or item.packet.payload_type not in (0, 8):
                continue
            frame = audio_from_packets([item.packet])
            if level_dbfs(frame) > -50 and tone_share(frame, hz) > 0.5:
                return item.time
        checked = len(received)
        time.sleep(0.005)
    raise AssertionError(f"no {hz} Hz packet within {timeout} s")


def timed_guessing(bed: TestBed, media: RtpEndpoint, entries: Sequence[str]) -> list[tuple[str, str, float]]:
    """One call typing ``entries`` (the last one ends it): for each, the seconds from the first
    packet of its last key to the first packet of the prompt that answers it."""
    caller = bed.caller("uac_call_quiet", to="hotline", params={"rtp_ip": media.host, "rtp_port": media.port})
    caller.start()
    media.wait_for_packets(1, timeout=10)
    peer = media.received[0].source
    first_tone_after(media, PROMPT_TONES["enter_pin"], 0.0)
    begin = time.monotonic()
    sequence, measured = 2000, []
    for index, entry in enumerate(entries):
        timestamp = (160_000 + int((time.monotonic() - begin) * 8000) // 160 * 160) & 0xFFFFFFFF
        stream = RtpStream(first_sequence=sequence, first_timestamp=timestamp)
        for position, key in enumerate(entry):
            stream.digit(key, duration=KEY_SECONDS)
            if position < len(entry) - 1:
                stream.silence(KEY_GAP)
        packets = stream.packets()
        sequence = (packets[-1][1].sequence + 1) & 0xFFFF
        last_key = max(offset for offset, packet in packets if packet.marker and packet.payload_type != 0)
        started = time.monotonic()
        media.send(packets, to=peer).join(5.0)
        last_key_at = started + last_key  # the sender starts at once; never later than the real send
        prompt = "goodbye" if index == len(entries) - 1 else "wrong_pin"
        answered_at = first_tone_after(media, PROMPT_TONES[prompt], last_key_at)
        measured.append((entry, prompt, answered_at - last_key_at))
    result = caller.wait(timeout=20).assert_ok()
    assert result.received_requests == ["BYE"]
    return measured


def test_wrong_pin_answer_time_does_not_depend_on_how_many_keys_were_right(testbed: TestBed) -> None:
    """Two calls of ten wrong entries each, alternating 0000 (no key right) and 2460 (three of four
    right): the time from the last key to the first packet of wrong_pin (and, for the tenth, of
    goodbye) is the same for both kinds - the medians differ by far less than the delays spread,
    and no answer comes before the last key (the entry never ends early)."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [
            {
                "name": "support",
                "pins": [PIN],
                "pin_attempts": 10,
                "pin_timeout": 3.0,
                "pin_lockout_failures": 10,
                "pin_rate_limit": 0,
                **prompts,
                "agent": [ANN],
            }
        ],
    )
    none_right, three_right = "0000", PIN[:3] + "0"
    assert three_right != PIN and none_right[0] != PIN[0]
    measured: list[tuple[str, str, float]] = []
    measured += timed_guessing(testbed, testbed.media(), [none_right, three_right] * 5)
    measured += timed_guessing(testbed, testbed.media(), [three_right, none_right] * 5)

    def delays(entry: str, prompt: str) -> list[float]:
        return [d for e, p, d in measured if e == entry and p == prompt]

    early, late = delays(none_right, "wrong_pin"), delays(three_right, "wrong_pin")
    assert len(early) == len(late) == 9
    every = [d for _, _, d in measured]
    q1, q3 = np.percentile(early + late, [25, 75])
    spread = float(q3 - q1)
    difference = statistics.median(late) - statistics.median(early)
    print(
        f"\nwrong_pin after the last key, 0 right: median {statistics.median(early) * 1000:.1f} ms, "
        f"3 right: median {statistics.median(late) * 1000:.1f} ms, difference {difference * 1000:+.1f} ms, "
        f"IQR of both {spread * 1000:.1f} ms, range {min(every) * 1000:.1f}-{max(every) * 1000:.1f} ms; "
        f"goodbye: 0 right {delays(none_right, 'goodbye')[0] * 1000:.1f} ms, "
        f"3 right {delays(three_right, 'goodbye')[0] * 1000:.1f} ms"
    )
    assert min(every) > 0.0, "a prompt answered an entry before its last key"
    assert abs(difference) <= max(0.03, 2 * spread), (difference, spread, measured)
    calls = hotline.wait_calls(2)
    assert [(c.outcome, c.pin_result) for c, _ in calls] == [(Outcome.PIN_FAILED, PinResult.FAILED)] * 2
    hotline.assert_clean_log()
