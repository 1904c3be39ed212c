"""The hotline's PIN end to end: right, wrong and timed-out entries by RFC 4733, SIP INFO and
in-band DTMF, pin_attempts exhausted (goodbye, BYE) and the per-number lockout (403).

Helpers come from :mod:`tests.e2e.test_hotline`.
"""

from __future__ import annotations

import pytest

from sipcallhunt.records import AttemptEnd, ConfirmResult, DtmfMethod, Outcome, PinResult
from tests.e2e.harness import RtpStream, TestBed, dtmf_sequence, info_dtmf_requests, silence, tone
from tests.e2e.harness.audio import concat
from tests.e2e.test_hotline import (
    CALLER_HZ,
    PIN,
    PROMPT_SECONDS,
    PROMPT_TONES,
    agent_pcap,
    assert_cli_shows,
    assert_times_plausible,
    attempt_rows,
    frame_tones,
    heard,
    runs,
    start_hotline,
    talk,
    write_prompts,
)

ANN = {"name": "Ann", "number": "agent1"}


def test_pin_right_by_rfc4733_then_connected(testbed: TestBed) -> None:
    """The caller types the PIN by RFC 4733 after the prompt; the hunt starts, Ann accepts."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(testbed, [{"name": "support", "pins": [PIN, "97531"], **prompts, "agent": [ANN]}])
    ann = testbed.registered_sipp(
        "agent1", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1"), "call_ms": 1000}
    )
    stream = RtpStream().silence(0.8).digits(PIN).audio(tone(CALLER_HZ, 4.0))
    caller_result = testbed.caller(to="hotline", params={"pcap": testbed.pcap(stream)}).run(timeout=20).assert_ok()
    ann.wait(timeout=20).assert_ok()
    call, attempts = hotline.wait_call()

    assert caller_result.received_requests == ["BYE"]
    assert call.pin_result is PinResult.OK and call.outcome is Outcome.CONNECTED and call.agent == "Ann"
    assert attempt_rows(attempts) == [
        (1, 1, "Ann", AttemptEnd.AGENT_HUNG_UP, 200, ConfirmResult.ACCEPTED, DtmfMethod.RFC4733)
    ]
    assert_times_plausible(call, attempts)
    assert call.wait_time > 0.8 + 0.8  # the PIN took its time
    assert attempts[0].started - call.answered > 0.8 + 0.8  # no agent is called before the PIN is right
    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()


def test_pin_wrong_then_right_by_sip_info(testbed: TestBed) -> None:
    """A wrong entry by SIP INFO, then the right one (typed into the wrong_pin prompt): connected."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(testbed, [{"name": "support", "pins": [PIN], **prompts, "agent": [ANN]}])
    ann = testbed.registered_sipp(
        "agent1", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1"), "call_ms": 1000}
    )
    info = info_dtmf_requests("9999" + PIN, pause_ms=60)
    params = {"pcap": testbed.pcap(RtpStream().audio(tone(CALLER_HZ, 4.0))), "info": info, "info_after_ms": 700}
    caller_result = testbed.caller("uac_call_info", to="hotline", params=params).run(timeout=20).assert_ok()
    ann.wait(timeout=20).assert_ok()
    call, attempts = hotline.wait_call()

    assert caller_result.sent_requests.count("INFO") == 8 and caller_result.received_requests == ["BYE"]
    assert call.pin_result is PinResult.OK and call.outcome is Outcome.CONNECTED
    assert [a.confirm for a in attempts] == [ConfirmResult.ACCEPTED]
    log = hotline.daemon.log_text()
    assert "wrong PIN (attempt 1 of 2)" in log and "PIN accepted" in log
    assert PIN not in log and "9999" not in log  # keys are never logged
    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()


def test_pin_wrong_then_timeout_by_inband_says_goodbye(testbed: TestBed) -> None:
    """In-band tones: one wrong entry, then nothing until pin_timeout: with pin_attempts = 2 that
    is the end - goodbye plays, then the hotline hangs up (outcome pin_failed).  The caller hears
    intro, enter_pin, wrong_pin, enter_pin, goodbye, in that order."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(testbed, [{"name": "support", "pins": [PIN], **prompts, "agent": [ANN]}])
    media = testbed.media()
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": media.host, "rtp_port": media.port}
    ).start()
    talk(media, RtpStream().audio(concat(silence(0.8), dtmf_sequence("1357", on=0.1, off=0.1), silence(4.0))))
    caller_result = caller.wait(timeout=20).assert_ok()
    call, attempts = hotline.wait_call()

    assert caller_result.received_requests == ["BYE"]
    assert call.outcome is Outcome.PIN_FAILED and call.pin_result is PinResult.FAILED and attempts == []
    assert call.end_reason == "no valid PIN in 2 attempts"
    assert_times_plausible(call, attempts)
    labels = frame_tones(
        heard(media.received), {k: PROMPT_TONES[k] for k in ("intro", "enter_pin", "wrong_pin", "goodbye")}
    )
    assert runs(labels) == ["intro", "enter_pin", "wrong_pin", "enter_pin", "goodbye"], runs(labels)
    assert labels.count("goodbye") * 0.020 == pytest.approx(PROMPT_SECONDS["goodbye"], abs=0.06)
    # intro + prompt + 4 keys, wrong_pin + prompt, the timeout, goodbye
    assert call.wait_time == pytest.approx(0.8 + 0.8 + 0.6 + 1.0 + 0.4, abs=0.5)
    log = hotline.daemon.log_text()
    assert "wrong PIN (attempt 1 of 2)" in log and "PIN key received (inband)" in log
    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()


def test_pin_lockout_rejects_the_number_with_403(testbed: TestBed) -> None:
    """pin_lockout_failures = 2: a wrong PIN (RFC 4733), then a timeout, lock the caller's number
    out; its next call is refused with 403 (outcome rejected) without being answered.  Another
    number still gets in (right PIN by in-band tones from sipp)."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [{"name": "support", "pins": [PIN], "pin_attempts": 1, "pin_lockout_failures": 2, **prompts, "agent": [ANN]}],
    )
    wrong = testbed.pcap(RtpStream().silence(0.3).digits("1111").audio(tone(CALLER_HZ, 3.0)))
    first = testbed.caller(to="hotline", params={"pcap": wrong}).run(timeout=20).assert_ok()
    nothing = testbed.pcap(RtpStream().audio(tone(CALLER_HZ, 3.0)))
    second = testbed.caller(to="hotline", params={"pcap": nothing}).run(timeout=20).assert_ok()
    third = testbed.caller("uac_rejected", to="hotline", params={"status": 403}).run(timeout=20).assert_ok()
    inband = testbed.pcap(RtpStream().audio(concat(silence(0.3), dtmf_sequence(PIN), tone(CALLER_HZ, 3.0))))
    other = testbed.caller(user="caller2", to="hotline", params={"pcap": inband}).run(timeout=20).assert_ok()
    calls = hotline.wait_calls(4)

    for result in (first, second, other):
        assert result.received_requests == ["BYE"]  # the hotline hung up
    assert 200 not in third.received_responses and third.received_responses[-1] == 403
    rows = [(c.caller, c.outcome, c.pin_result, c.answered is not None, len(a)) for c, a in calls]
    assert rows == [
        ("caller", Outcome.PIN_FAILED, PinResult.FAILED, True, 0),
        ("caller", Outcome.PIN_FAILED, PinResult.LOCKED_OUT, True, 0),
        ("caller", Outcome.REJECTED, PinResult.LOCKED_OUT, False, 0),
        ("caller2", Outcome.NO_AGENT, PinResult.OK, True, 1),
    ]
    assert calls[0][0].end_reason == "no valid PIN in 1 attempt"
    assert calls[1][0].end_reason == "no valid PIN in 1 attempt; caller is now locked out for 15 min"
    assert calls[2][0].end_reason is not None and calls[2][0].end_reason.startswith(
        "caller is locked out after too many wrong PIN entries"
    )
    assert attempt_rows(calls[3][1]) == [(1, 1, "Ann", AttemptEnd.UNAVAILABLE, 480, None, None)]
    for call, attempts in calls:
        if call.answered is not None:
            assert_times_plausible(call, attempts)
    assert_cli_shows(hotline, calls)
    hotline.assert_clean_log()
    hotline.daemon.stop_clean()
