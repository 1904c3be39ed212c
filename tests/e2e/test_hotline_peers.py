"""The hotline end to end with more than one of something: two hotlines (two accounts) in one
daemon taking calls at the same time, and a real softphone (baresip) as the agent.

Helpers come from :mod:`tests.e2e.test_hotline`.
"""

from __future__ import annotations

import re

import pytest

from sipcallhunt.records import AttemptEnd, ConfirmResult, DtmfMethod, Outcome, PinResult
from tests.e2e.harness import RtpStream, TestBed, assert_tones, tone
from tests.e2e.test_hotline import (
    AGENT_HZ,
    BARESIP_HZ,
    CALLER_HZ,
    PROMPT_TONES,
    agent_pcap,
    assert_cli_shows,
    assert_one_continuous_stream,
    assert_times_plausible,
    attempt_rows,
    audio_between,
    first_packet_with,
    frame_tones,
    runs,
    start_hotline,
    talk,
    write_prompts,
)


def test_two_hotlines_in_one_daemon_take_calls_at_once(testbed: TestBed) -> None:
    """The hotline "support" answers the PBX user hotline and hunts agent1 (key 1, the caller's number shown);
    "sales" answers hotline2 and hunts agent2 (key 5, the hotline's own identity shown).  Two
    callers call one each at the same time; each call reaches its own hotline's agent."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [
            {"name": "support", "account": "pbx", **prompts, "agent": [{"name": "Ann", "number": "agent1"}]},
            {
                "name": "sales",
                "account": "pbx2",
                **prompts,
                "confirm_key": "5",
                "decline_key": "6",
                "caller_id": "hotline",
                "agent": [{"name": "Bob", "number": "agent2"}],
            },
        ],
        accounts=[("pbx", "hotline"), ("pbx2", "hotline2")],
    )
    ann = testbed.registered_sipp(
        "agent1", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1"), "call_ms": 2000}
    )
    bob = testbed.registered_sipp(
        "agent2", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "5"), "call_ms": 2000}
    )
    pcap = testbed.pcap(RtpStream().audio(tone(CALLER_HZ, 5.0)))
    first = testbed.caller(user="caller", to="hotline", params={"pcap": pcap}).start()
    second = testbed.caller(user="caller2", to="hotline2", params={"pcap": pcap}).start()
    for caller in (first, second):
        caller.wait(timeout=20).assert_ok()
    ann_result, bob_result = ann.wait(timeout=20).assert_ok(), bob.wait(timeout=20).assert_ok()
    calls = {c.hotline: (c, a) for c, a in hotline.wait_calls(2)}

    support, support_attempts = calls["support"]
    sales, sales_attempts = calls["sales"]
    assert (support.caller, support.outcome, support.agent) == ("caller", Outcome.CONNECTED, "Ann")
    assert (sales.caller, sales.outcome, sales.agent) == ("caller2", Outcome.CONNECTED, "Bob")
    accepted = (AttemptEnd.AGENT_HUNG_UP, 200, ConfirmResult.ACCEPTED, DtmfMethod.RFC4733)
    assert attempt_rows(support_attempts) == [(1, 1, "Ann", *accepted)]
    assert attempt_rows(sales_attempts) == [(1, 1, "Bob", *accepted)]
    for call, attempts in calls.values():
        assert call.pin_result is PinResult.NOT_REQUIRED
        assert_times_plausible(call, attempts)
    assert support.bridged is not None and sales.bridged is not None and support.ended and sales.ended
    assert max(support.bridged, sales.bridged) < min(support.ended, sales.ended)  # both talked at once

    # Each agent got one call, from its own hotline's account, with that hotline's caller ID.
    ann_invite, bob_invite = ann_result.received("INVITE"), bob_result.received("INVITE")
    assert len(ann_invite) == len(bob_invite) == 1
    assert re.match(r'"caller" <sip:hotline@', ann_invite[0].header("From") or "")
    assert "sip:caller@" in (ann_invite[0].header("P-Asserted-Identity") or "")
    assert "caller2" not in bob_invite[0].text and "<sip:hotline2@" in (bob_invite[0].header("From") or "")
    assert_cli_shows(hotline, list(calls.values()))
    hotline.assert_clean_log()
    hotline.daemon.stop_clean()
    for user in ("hotline", "hotline2"):
        testbed.pbx.wait_unregistered(user, timeout=5)


def test_baresip_agent_accepts_with_sndcode(testbed: TestBed) -> None:
    """baresip answers automatically, hears the announcement and presses 1 (RFC 4733, ``sndcode``);
    its recording holds the caller's 440 Hz once bridged, and the caller hears its 1000 Hz."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(testbed, [{"name": "support", **prompts, "agent": [{"name": "Ann", "number": "agent1"}]}])
    phone = testbed.phone("agent1", source=tone(BARESIP_HZ, 8.0))
    media = testbed.media()
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": media.host, "rtp_port": media.port, "call_ms": 3500}
    ).start()
    talk(media, RtpStream().audio(tone(CALLER_HZ, 8.0)))
    established = phone.wait_event("CALL_ESTABLISHED", timeout=10)
    assert established.data["direction"] == "incoming"
    phone.send_dtmf("1")
    caller_result = caller.wait(timeout=20).assert_ok()
    assert phone.wait_event("CALL_CLOSED", timeout=10).call_id == established.call_id
    call, attempts = hotline.wait_call()

    assert caller_result.sent_requests[-1] == "BYE"
    assert call.outcome is Outcome.CONNECTED and call.agent == "Ann"
    assert call.end_reason is not None and call.end_reason.startswith("the caller hung up after ")
    assert attempt_rows(attempts) == [
        (1, 1, "Ann", AttemptEnd.CALLER_HUNG_UP, 200, ConfirmResult.ACCEPTED, DtmfMethod.RFC4733)
    ]
    assert_times_plausible(call, attempts)
    assert call.talk_time == pytest.approx(3.5 - call.wait_time, abs=0.6)

    # The caller: music while baresip was asked, then baresip's tone.
    bridged = first_packet_with(media.received, BARESIP_HZ).time
    assert_tones(audio_between(media, bridged + 0.1), present=[BARESIP_HZ], absent=[AGENT_HZ], min_fraction=0.9)
    assert_one_continuous_stream(media.received)
    # baresip's recording: the hotline's name and the announcement first, the caller at the end.
    recording = phone.received_audio()
    assert recording.size / 8000 > 2.0
    candidates = {**{k: PROMPT_TONES[k] for k in ("hotline_name", "whisper", "hold_music")}, "caller": CALLER_HZ}
    labels = [label for label in frame_tones(recording, candidates) if label != "silence"]
    assert labels[0] == "hotline_name" and "hold_music" not in labels, labels[:10]
    assert runs(labels)[-1] == "caller", runs(labels)
    assert_tones(recording[-8000:], present=[CALLER_HZ], absent=[BARESIP_HZ, PROMPT_TONES["whisper"]], min_fraction=0.9)
    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()
