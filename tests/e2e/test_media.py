"""End-to-end proofs of the media engine against the real peers: DTMF by every method, and audio
relayed between the legs of a bridged call, judged by its content.

DTMF is observed through the hotline, the way it matters: a caller enters the PIN by one method
(the call log row says ``pin_result = ok``, and the daemon's DEBUG log shows exactly one "PIN key
received" line per key), and the agent accepts the call by pressing 1 the same way (the attempt
row records ``dtmf_method``).  Each key must count exactly once: RFC 4733 end packets come three
times, tones last many frames, and a key counted twice would spoil the PIN.

Audio: the phones' media are :class:`~tests.e2e.harness.RtpEndpoint` sockets (sipp only does the
signalling; it would play its pcap from a port of its own, see the harness README) or baresip,
which sends from another address than its SDP says — so the relay must latch onto the address
packets really come from.  A 440 Hz tone from the caller must reach the agent and an 880 Hz tone
from the agent must reach the caller, also when the legs use different codecs (PCMU ↔ PCMA).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest

from tests.e2e.harness import (
    RtpEndpoint,
    RtpStream,
    TestBed,
    dtmf_sequence,
    dtmf_tone,
    info_dtmf_requests,
    tone,
    tone_fraction,
)
from tests.e2e.harness.pcap import write_pcap
from tests.e2e.harness.rtp import PT_PCMA, PT_PCMU, ReceivedPacket, audio_from_packets
from tests.e2e.test_sip import PROMPT_HZ, Running, SipTap, audio_answer, hotline_table, start_daemon

pytestmark = pytest.mark.e2e

PIN: Final = "2580"
CALLER_HZ: Final = 440
AGENT_HZ: Final = 880
PAYLOAD_TYPE: Final = {"PCMU": PT_PCMU, "PCMA": PT_PCMA}
MEDIA_TIMEOUT: Final = 1.5  # seconds without RTP before the daemon ends a call (ends these tests' calls)


def no_media_pcap(testbed: TestBed) -> Path:
    """A pcap without packets: sipp's ``play_pcap_audio`` then sends nothing (the test's own
    RtpEndpoint is the phone's media)."""
    return write_pcap(testbed.workdir / "no-media.pcap", [])


def recent_audio(endpoint: RtpEndpoint, seconds: float) -> np.ndarray[Any, Any]:
    """The audio of the packets that arrived within the last ``seconds``."""
    now = time.monotonic()
    packets = [r.packet for r in endpoint.received if r.time >= now - seconds and r.packet.payload_type in (0, 8)]
    return audio_from_packets(packets)


def wait_for_tone(endpoint: RtpEndpoint, frequency: float, *, timeout: float, share: float = 0.9) -> None:
    """Wait until the last 0.5 s of audio arriving at ``endpoint`` is (mostly) ``frequency``."""

    def heard(_: list[ReceivedPacket]) -> bool:
        recent = recent_audio(endpoint, 0.5)
        return recent.size >= 3200 and tone_fraction(recent, frequency) >= share

    endpoint.wait_until(heard, timeout=timeout, what=f"{frequency:g} Hz")


def first_source(endpoint: RtpEndpoint, *, timeout: float) -> tuple[str, int]:
    """Where the first RTP packet to ``endpoint`` came from (the daemon's RTP port for that leg)."""
    endpoint.wait_for_packets(1, timeout=timeout)
    return endpoint.received[0].source


def pin_keys(running: Running) -> list[str]:
    """The DTMF methods of the 'PIN key received' lines of the daemon's log, in order."""
    return re.findall(r"PIN key received \((\w+)\)", running.daemon.log_text())


# --- audio through the relay ----------------------------------------------------------------------


@pytest.mark.parametrize(("caller_codec", "agent_codec"), [("PCMU", "PCMU"), ("PCMU", "PCMA"), ("PCMA", "PCMU")])
def test_audio_is_relayed_both_ways(testbed: TestBed, caller_codec: str, agent_codec: str) -> None:
    caller_media, agent_media = testbed.media(), testbed.media()
    agent = testbed.registered_sipp(
        "agent1",
        "uas_answer",
        params={
            "rtp_ip": agent_media.host,
            "rtp_port": agent_media.port,
            "codec": agent_codec,
            "codec_pt": PAYLOAD_TYPE[agent_codec],
        },
    )
    running = start_daemon(testbed, [hotline_table(testbed, ["agent1"])], sip={"media_timeout": MEDIA_TIMEOUT})
    caller_params = {
        "pcap": no_media_pcap(testbed),
        "call_ms": 20000,
        "rtp_ip": caller_media.host,
        "rtp_port": caller_media.port,
        "codec": caller_codec,
        "codec_pt": PAYLOAD_TYPE[caller_codec],
    }
    caller = testbed.caller(to="hotline", params=caller_params).start()

    # The caller's phone talks (440 Hz) as soon as it hears the hotline; the daemon latches onto it.
    hotline_side = first_source(caller_media, timeout=10)
    assert hotline_side[0] == running.host
    caller_media.send(RtpStream(caller_codec, ssrc=0xCA11E4).audio(tone(CALLER_HZ, 12.0)).packets(), to=hotline_side)
    # The agent's phone hears the whisper, presses 1 (RFC 4733) and talks (880 Hz).
    agent_side = first_source(agent_media, timeout=10)
    assert agent_side[0] == running.host and agent_side != hotline_side
    pressing = RtpStream(agent_codec, ssrc=0xA6E471).silence(0.2).digit("1").audio(tone(AGENT_HZ, 10.0))
    agent_media.send(pressing.packets(), to=agent_side)

    wait_for_tone(agent_media, CALLER_HZ, timeout=10)
    wait_for_tone(caller_media, AGENT_HZ, timeout=10)
    # Once bridged, each side hears the other one alone (no prompt, not itself), in its own codec:
    # judged on the next second of audio each receives.
    marks = {id(e): len(e.received) for e in (agent_media, caller_media)}
    for endpoint in (agent_media, caller_media):
        endpoint.wait_for_packets(marks[id(endpoint)] + 50, timeout=5)
    for endpoint, codec, own, other in (
        (agent_media, agent_codec, AGENT_HZ, CALLER_HZ),
        (caller_media, caller_codec, CALLER_HZ, AGENT_HZ),
    ):
        bridged = audio_from_packets(r.packet for r in endpoint.received[marks[id(endpoint)] :])
        assert tone_fraction(bridged, other) > 0.98
        assert tone_fraction(bridged, own) < 0.01 and tone_fraction(bridged, PROMPT_HZ) < 0.01
        assert {r.packet.payload_type for r in endpoint.received if r.packet.payload_type < 96} == {PAYLOAD_TYPE[codec]}
        assert {r.source for r in endpoint.received} == {agent_side if endpoint is agent_media else hotline_side}

    # The caller's phone goes silent (no more RTP): after media_timeout the daemon ends the call,
    # with a BYE to each phone.
    caller_media.close()
    caller_result = caller.wait(timeout=15).assert_ok()
    agent_result = agent.wait(timeout=15).assert_ok()
    assert caller_result.received_requests == ["BYE"] and agent_result.received_requests == ["INVITE", "ACK", "BYE"]
    row = running.wait_call_ended()
    assert row["outcome"] == "connected" and row["talk_time"] > 0
    attempt = running.attempts()[0]
    assert (attempt["confirm"], attempt["dtmf_method"]) == ("accepted", "rfc4733")


# --- DTMF, by every method ------------------------------------------------------------------------

DTMF_METHODS: Final = ("rfc4733", "info-dtmf-relay", "info-dtmf", "inband")


def _caller_dtmf(testbed: TestBed, method: str) -> tuple[str, dict[str, object]]:
    """(scenario, params) of a caller that types :data:`PIN` by ``method``, starting 0.4 s after the ACK."""
    if method == "rfc4733":
        stream = RtpStream().silence(0.4).digits(PIN, gap=0.1).silence(0.5)
        return "uac_call", {"pcap": testbed.pcap(stream)}
    if method == "inband":
        stream = RtpStream().silence(0.4).audio(dtmf_sequence(PIN, on=0.1, off=0.1)).silence(0.5)
        return "uac_call", {"pcap": testbed.pcap(stream)}
    content_type = "application/" + method.removeprefix("info-")
    info = info_dtmf_requests(PIN, content_type=content_type, pause_ms=150)
    return "uac_call_info", {"pcap": testbed.pcap(RtpStream().silence(0.2)), "info": info, "info_after_ms": 400}


def _agent_dtmf(testbed: TestBed, method: str) -> tuple[str, dict[str, object]]:
    """(scenario, params) of an agent that answers and presses 1 by ``method`` 0.3 s after the ACK."""
    if method == "rfc4733":
        return "uas_answer_dtmf", {"pcap": testbed.pcap(RtpStream().silence(0.3).digit("1").silence(0.5))}
    if method == "inband":
        stream = RtpStream().silence(0.3).audio(dtmf_tone("1", 0.2)).silence(0.5)
        return "uas_answer_dtmf", {"pcap": testbed.pcap(stream)}
    content_type = "application/" + method.removeprefix("info-")
    return "uas_answer_info", {"info": info_dtmf_requests("1", content_type=content_type), "info_after_ms": 300}


@pytest.mark.parametrize("method", DTMF_METHODS)
def test_dtmf_from_caller_and_agent_counts_once(testbed: TestBed, method: str) -> None:
    recorded = "info" if method.startswith("info") else method
    scenario, params = _agent_dtmf(testbed, method)
    agent = testbed.registered_sipp("agent1", scenario, params=params)
    running = start_daemon(testbed, [hotline_table(testbed, ["agent1"], pins=[PIN])])
    scenario, params = _caller_dtmf(testbed, method)
    caller = testbed.caller(scenario, to="hotline", params={**params, "call_ms": 5000}).run(timeout=25)
    caller.assert_ok()
    agent_result = agent.wait(timeout=15).assert_ok()
    assert agent_result.received_requests[-1] == "BYE"  # bridged, and ended when the caller hung up

    row = running.wait_call_ended()
    assert (row["pin_result"], row["outcome"]) == ("ok", "connected"), row
    # one "PIN key received" line per key, all by this method: no key lost, none counted twice
    assert pin_keys(running) == [recorded] * len(PIN), running.daemon.log_text()
    attempt = running.attempts()[0]
    assert (attempt["confirm"], attempt["dtmf_method"]) == ("accepted", recorded)
    log = running.daemon.log_text()
    assert len(re.findall(r"accepted \(pressed 1 via \w+\)", log)) == 1
    info_lines = re.findall(r"a DTMF key by SIP INFO", log)  # never the key: it may be part of a PIN
    if recorded == "info":
        assert len(info_lines) == len(PIN) + 1  # what the user agent reported
        assert [m.status for m in caller.messages if not m.is_request and m.method == "INFO"] == [200] * len(PIN)
        assert [m.status for m in agent_result.messages if not m.is_request and m.method == "INFO"] == [200]
    else:
        assert info_lines == []


def longest_tone_run(samples: np.ndarray[Any, Any], frequency: float, *, window: float = 0.1) -> float:
    """Seconds of the longest stretch of consecutive ``window``s that are (>= 90 %) ``frequency``."""
    step = round(window * 8000)
    best = run = 0
    for start in range(0, samples.size - step + 1, step):
        if tone_fraction(samples[start : start + step], frequency, bandwidth=30) >= 0.9:
            run += 1
            best = max(best, run)
        else:
            run = 0
    return best * window


def test_baresip_agent_presses_1_and_talks(testbed: TestBed) -> None:
    """A real softphone as the agent: it answers, presses 1 (``sndcode``, RFC 4733) and talks.

    baresip sends its RTP from 127.0.0.1 although its SDP names its own address, so its 880 Hz
    reaches the caller only if the daemon latched onto the address the packets come from.
    """
    caller_media = testbed.media()
    phone = testbed.phone("agent1", source=tone(AGENT_HZ, 30.0))
    running = start_daemon(testbed, [hotline_table(testbed, ["agent1"])], sip={"media_timeout": MEDIA_TIMEOUT})
    caller_params = {
        "pcap": no_media_pcap(testbed),
        "call_ms": 30000,
        "rtp_ip": caller_media.host,
        "rtp_port": caller_media.port,
    }
    with SipTap(running.host) as wire:  # RTP to and from the daemon's address
        caller = testbed.caller(to="hotline", params=caller_params).start()
        hotline_side = first_source(caller_media, timeout=10)
        caller_media.send(RtpStream().audio(tone(CALLER_HZ, 20.0)).packets(), to=hotline_side)

        established = phone.wait_event("CALL_ESTABLISHED", timeout=10)
        assert established.data["direction"] == "incoming"
        assert phone.host != "127.0.0.1"  # its SDP names this address; its RTP comes from 127.0.0.1
        phone.send_dtmf("1")
        wait_for_tone(caller_media, AGENT_HZ, timeout=10)
        mark = len(caller_media.received)
        caller_media.wait_for_packets(mark + 100, timeout=5)  # two seconds of the bridged call
        bridged = audio_from_packets(r.packet for r in caller_media.received[mark:])
        assert tone_fraction(bridged, AGENT_HZ) > 0.98 and tone_fraction(bridged, CALLER_HZ) < 0.01
        # Latching on the wire: the phone's RTP came from 127.0.0.1, not from the address in its SDP,
        # and once it had come, everything the daemon sent to the phone went back to that source.
        offer = next(m for m in wire.messages if m.is_request and m.method == "INVITE" and m.source[0] == running.host)
        _, leg_port, _, _ = audio_answer(offer.body)
        leg = (running.host, leg_port)
        from_phone = [(when, source) for when, source, destination in wire.datagrams if destination == leg]
        assert from_phone and {source[0] for _, source in from_phone} == {"127.0.0.1"}
        latched_at, phone_source = from_phone[0]
        to_phone = {
            destination for when, source, destination in wire.datagrams if source == leg and when > latched_at + 0.1
        }
        assert to_phone == {phone_source}

        caller_media.close()  # the caller goes silent: media_timeout ends the call, BYE to both phones
        assert caller.wait(timeout=15).assert_ok().received_requests == ["BYE"]
        closed = phone.wait_event("CALL_CLOSED", timeout=10)
        assert closed.call_id == established.call_id
        heard = phone.received_audio()
        assert longest_tone_run(heard, CALLER_HZ) >= 1.5, "the agent never heard the caller for long"
        assert longest_tone_run(heard, AGENT_HZ) == 0.0  # never its own voice back
        assert running.wait_call_ended()["outcome"] == "connected"
        attempt = running.attempts()[0]
        assert (attempt["confirm"], attempt["dtmf_method"]) == ("accepted", "rfc4733")
