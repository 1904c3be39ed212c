"""Self-tests of the end-to-end harness, against the real peers only (Kamailio, sipp, baresip,
and sox/tshark/multimon-ng as independent judges of what the harness writes).

No sipcallhunt code is exercised here except the config loader (to prove the config writer
writes what the daemon reads) and the daemon's command line (as far as it exists).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.harness import (
    EXIT_BAD_CONFIG,
    RtpStream,
    TestBed,
    assert_tones,
    dominant_frequency,
    dtmf_sequence,
    goertzel_power,
    info_dtmf_requests,
    read_rtp_pcap,
    read_wav,
    silence,
    sip_options_ping,
    tone,
    write_sipcallhunt_config,
    write_wav,
)
from tests.e2e.harness._proc import INSTALL_HINT, missing_binaries_message
from tests.e2e.harness.audio import alaw_decode, alaw_encode, concat, ulaw_decode, ulaw_encode
from tests.e2e.harness.pcap import wav_to_pcap
from tests.e2e.harness.ports import AddressLease, LoopbackPool, free_port, free_port_range, port_is_free
from tests.e2e.harness.rtp import PT_PCMU, PT_TELEPHONE_EVENT, TelephoneEvent, digits_from_packets
from tests.e2e.harness.sipp import SCENARIO_DIR, Scenario, parse_message_trace

pytestmark = pytest.mark.e2e


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=20, check=True, **kwargs)  # type: ignore[call-overload]


# --- signals, G.711, pcap: judged by sox, tshark and multimon-ng --------------------------------


def test_g711_decoding_matches_sox_and_encoding_agrees(tmp_path: Path) -> None:
    sweep = np.arange(-32768, 32768, dtype=np.int16)
    codes = bytes(range(256))
    (tmp_path / "sweep.raw").write_bytes(sweep.tobytes())
    (tmp_path / "codes.raw").write_bytes(codes)
    raw16 = ["-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1"]
    for law, encode, decode in (("u-law", ulaw_encode, ulaw_decode), ("a-law", alaw_encode, alaw_decode)):
        _run(["sox", "-D", *raw16, str(tmp_path / "sweep.raw"), "-t", "raw", "-e", law, str(tmp_path / "enc.raw")])
        _run(
            [
                "sox",
                "-D",
                "-t",
                "raw",
                "-r",
                "8000",
                "-e",
                law,
                "-c",
                "1",
                str(tmp_path / "codes.raw"),
                *raw16,
                str(tmp_path / "dec.raw"),
            ]
        )
        assert np.array_equal(decode(codes), np.frombuffer((tmp_path / "dec.raw").read_bytes(), dtype=np.int16))
        ours = decode(encode(sweep)).astype(np.int64)
        theirs = decode((tmp_path / "enc.raw").read_bytes()).astype(np.int64)
        differ = ours != theirs
        assert differ.mean() < 0.02, law
        # Where the two coders differ (rounding at segment edges), they pick neighbouring levels.
        levels = np.unique(decode(codes))
        apart = np.searchsorted(levels, ours[differ]) - np.searchsorted(levels, theirs[differ])
        assert np.all(np.abs(apart) == 1), law


def test_tone_analysis() -> None:
    signal = tone(440, 1.0, level_dbfs=-6)
    assert dominant_frequency(signal) == pytest.approx(440, abs=0.5)
    assert dominant_frequency(tone(1000, 0.5)) == pytest.approx(1000, abs=1)
    amplitude = 10 ** (-6 / 20)
    assert goertzel_power(signal, 440) == pytest.approx(amplitude**2 / 2, rel=0.01)
    assert goertzel_power(signal, 1000) < 1e-6
    mixed = concat(silence(1.0), tone(440, 0.5), silence(1.0))
    assert_tones(mixed, present=[440], absent=[1000])  # silence does not dilute the tone
    with pytest.raises(AssertionError, match="1000 Hz holds"):
        assert_tones(mixed, present=[1000])
    with pytest.raises(AssertionError, match="440 Hz holds"):
        assert_tones(mixed, absent=[440])
    with pytest.raises(AssertionError, match="silence"):
        assert_tones(silence(1.0), present=[440])
    dual = tone([697, 1209], 0.5)
    assert_tones(dual, present=[697, 1209], absent=[440], min_fraction=0.4)


def test_inband_dtmf_is_decoded_by_multimon(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "dtmf.wav", concat(silence(0.2), dtmf_sequence("159#", on=0.1, off=0.1)))
    result = _run(["multimon-ng", "-q", "-a", "DTMF", "-t", "wav", str(wav)])
    digits = "".join(line.split(":", 1)[1].strip() for line in result.stdout.decode().splitlines() if "DTMF" in line)
    assert digits == "159#"


def test_wav_roundtrip_through_sox(tmp_path: Path) -> None:
    original = write_wav(tmp_path / "tone.wav", tone(440, 0.5))
    _run(["sox", str(original), "-r", "16000", "-c", "2", str(tmp_path / "stereo16k.wav")])
    back = read_wav(tmp_path / "stereo16k.wav")  # mixed down and resampled to 8 kHz
    assert abs(back.size - 4000) <= 2
    assert dominant_frequency(back) == pytest.approx(440, abs=1)


def test_rtp_stream_pcap_structure(tmp_path: Path) -> None:
    path = (
        RtpStream("PCMU")
        .audio(tone(440, 0.2))
        .digit("5", duration=0.1)
        .audio(tone(440, 0.1))
        .write_pcap(tmp_path / "s.pcap")
    )
    packets = read_rtp_pcap(path)
    audio = [(t, p) for t, p in packets if p.payload_type == PT_PCMU]
    events = [(t, p) for t, p in packets if p.payload_type == PT_TELEPHONE_EVENT]
    assert len(audio) == 15 and all(len(p.payload) == 160 for _, p in audio)
    assert {p.ssrc for _, p in packets} == {packets[0][1].ssrc}
    assert audio[0][1].marker and not any(p.marker for _, p in audio[1:])
    # 20 ms apart, timestamps follow the clock (8000 Hz) across the digit.
    for (t1, p1), (t2, p2) in itertools.pairwise(audio):
        assert (p2.timestamp - p1.timestamp) == round((t2 - t1) * 8000)
    assert audio[1][0] - audio[0][0] == pytest.approx(0.020)
    # The event: marker on the first packet, one timestamp, growing duration, end sent three times.
    decoded = [TelephoneEvent.from_bytes(p.payload) for _, p in events]
    assert events[0][1].marker and len({p.timestamp for _, p in events}) == 1
    assert [e.duration for e in decoded] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in decoded][-3:] == [True, True, True] and not decoded[0].end
    assert events[0][1].timestamp == audio[9][1].timestamp + 160
    assert len({p.sequence for _, p in events[-3:]}) == 1  # like sipp's own pcaps
    assert digits_from_packets(p for _, p in packets) == "5"
    # sipp's shipped pcap reads the same way.
    shipped = read_rtp_pcap("/usr/share/sip-tester/dtmf_2833_5.pcap")
    assert digits_from_packets(p for _, p in shipped) == "5"


def test_pcap_is_valid_for_tshark(tmp_path: Path) -> None:
    path = RtpStream("PCMA").audio(tone(440, 0.1)).digit("9", duration=0.06).write_pcap(tmp_path / "s.pcap")
    result = _run(
        ["tshark", "-r", str(path), "-d", "udp.port==40002,rtp", "-T", "fields",
         "-e", "ip.checksum.status", "-e", "rtp.p_type", "-e", "rtp.seq", "-e", "rtpevent.event_id",
         "-o", "ip.check_checksum:TRUE", "-o", "rtpevent.event_payload_type_value:101"],
    )  # fmt: skip
    rows = [line.split("\t") for line in result.stdout.decode().splitlines()]
    assert len(rows) == 5 + 3 + 2
    assert all(row[0] == "1" for row in rows)  # IP header checksums verified "Good"
    assert [row[1] for row in rows[:5]] == ["8"] * 5
    assert {row[3] for row in rows[5:]} == {"9"}


def test_wav_to_pcap(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "prompt.wav", tone(1000, 0.4), rate=8000)
    packets = read_rtp_pcap(wav_to_pcap(wav, tmp_path / "p.pcap", codec="PCMA"))
    assert len(packets) == 20
    from tests.e2e.harness.rtp import audio_from_packets

    assert dominant_frequency(audio_from_packets(p for _, p in packets)) == pytest.approx(1000, abs=1)


def test_rtp_endpoint_sends_paced_and_records(loopback: AddressLease) -> None:
    from tests.e2e.harness import RtpEndpoint

    stream = RtpStream("PCMA").audio(tone(440, 0.4)).digits("42", duration=0.06, gap=0.04).audio(tone(440, 0.2))
    with RtpEndpoint(loopback.address()) as sender, RtpEndpoint(loopback.address()) as receiver:
        started = time.monotonic()
        sender.send(stream.packets(), to=receiver.address)
        receiver.wait_for_digits("42", timeout=5)
        receiver.wait_for_packets(len(stream.packets()), timeout=5)
        elapsed = time.monotonic() - started
        assert stream.duration - 0.05 <= elapsed < stream.duration + 1.0  # paced, not a burst
        assert receiver.sources() == {sender.address}
        assert receiver.digits() == "42"
        assert np.array_equal(receiver.audio(), stream.samples())
        assert_tones(receiver.audio(), present=[440], min_fraction=0.95)


# --- ports, addresses, config -------------------------------------------------------------------


def test_loopback_pool_locks_addresses_between_pools(tmp_path: Path) -> None:
    first = LoopbackPool("127.0.3.0/29", lock_dir=tmp_path)
    second = LoopbackPool("127.0.3.0/29", lock_dir=tmp_path)  # as another process would
    with first.lease() as lease_a:
        taken = {lease_a.address() for _ in range(4)}
        assert len(taken) == 4
        with second.lease() as lease_b:
            others = {lease_b.address() for _ in range(2)}
            assert not taken & others
            with pytest.raises(OSError, match="in use"):
                lease_b.address()
    with second.lease() as lease_c:  # released: all six usable again
        assert len({lease_c.address() for _ in range(6)}) == 6
    with pytest.raises(ValueError, match="loopback"):
        LoopbackPool("192.0.2.0/24")


def test_free_ports(loopback: AddressLease) -> None:
    host = loopback.address()
    port = free_port(host)
    assert port_is_free(host, port, udp=True, tcp=True)
    first, last = free_port_range(host, 10)
    assert last - first == 9 and first % 2 == 0
    assert all(port_is_free(host, p) for p in range(first, last + 1))
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((host, port))
        assert not port_is_free(host, port, tcp=False)


def test_sipcallhunt_config_is_what_the_daemon_reads(tmp_path: Path) -> None:
    from sipcallhunt.config import load_config

    path = write_sipcallhunt_config(
        tmp_path / "h.toml",
        listen=("127.0.3.9", 5999),
        rtp_ports=(30000, 30019),
        registrar=("127.0.3.8", 5062),
        username="hotline",
        password='pw"with\\quotes',
        hotlines=[{"name": "support", "pins": ["0815"], "agents": ["agent1", {"number": "agent2", "ring_timeout": 5}]}],
        sip={"trusted_peers": ["127.0.3.7"]},
    )
    config = load_config(path)
    assert (config.sip.listen_host, config.sip.listen_port) == ("127.0.3.9", 5999)
    assert (config.sip.rtp_port_min, config.sip.rtp_port_max) == (30000, 30019)
    assert config.sip.trusted_peers == ("127.0.3.7",)
    account = config.accounts[0]
    assert (account.registrar.host, account.registrar.port, account.username) == ("127.0.3.8", 5062, "hotline")
    assert account.password == 'pw"with\\quotes'
    hotline = config.hotlines[0]
    assert hotline.account == account.name and hotline.pins == ("0815",)
    assert [(a.number, a.ring_timeout) for a in hotline.agents] == [("agent1", 20.0), ("agent2", 5.0)]
    assert config.calllog.path == tmp_path / "calls.sqlite3"


def test_missing_program_names_the_install_script() -> None:
    message = missing_binaries_message(["sipp", "no-such-program-xyz"])
    assert message is not None and "no-such-program-xyz" in message and "sipp," not in message
    assert INSTALL_HINT in message and "scripts/install-test-deps.sh" in message
    assert missing_binaries_message(["sipp"]) is None


# --- scenarios ----------------------------------------------------------------------------------


def test_every_scenario_renders_and_checks_its_parameters(tmp_path: Path) -> None:
    names = sorted(p.stem for p in SCENARIO_DIR.glob("*.xml"))
    assert {"register", "uac_call", "uac_cancel", "uas_answer", "uas_noanswer", "uas_reject", "scanner"} <= set(names)
    for name in names:
        scenario = Scenario.load(name)
        required = {k: "x" for k, v in scenario.params.items() if v is None}
        text = scenario.render(required)
        assert "<scenario" in text
        for key in scenario.params:  # every declared parameter is used, none is left unfilled
            assert f"[{key}]" in scenario.template.split("-->", 1)[1], (name, key)
            assert f"[{key}]" not in text.split("-->", 1)[1], (name, key)
        with pytest.raises(ValueError, match="unknown parameter"):
            scenario.render({**required, "no_such_param": 1})
        if required:
            with pytest.raises(ValueError, match="missing required"):
                scenario.render({})


def test_message_trace_parsing() -> None:
    trace = (
        "----------------------------------------------- 2026-01-02 03:04:05.500000\n"
        "UDP message sent (100 bytes):\n\n"
        "INVITE sip:a@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP x\nCSeq: 1 INVITE\nContent-Length: 3\n\nabc\n\n"
        "----------------------------------------------- 2026-01-02 03:04:05.600000\n"
        "TCP message received [50] bytes :\n\n"
        'SIP/2.0 486 Busy Here\nCSeq: 1 INVITE\nWarning: 399 x\n  "folded"\n\n'
    )
    first, second = parse_message_trace(trace)
    assert (first.direction, first.transport, first.method, first.body.strip()) == ("sent", "UDP", "INVITE", "abc")
    assert (second.direction, second.transport, second.status, second.method) == ("received", "TCP", 486, "INVITE")
    assert second.header("warning") == '399 x "folded"' and second.header("cseq") == "1 INVITE"
    assert second.time - first.time == pytest.approx(0.1)


# --- Kamailio -----------------------------------------------------------------------------------


def test_kamailio_starts_fast_answers_options_and_stops(testbed: TestBed) -> None:
    started = time.monotonic()
    pbx = testbed.pbx
    assert time.monotonic() - started < 2.0  # ~0.1-0.3 s: readiness is polled, not slept
    assert pbx.is_running and sip_options_ping(pbx.host, pbx.port) == 200
    assert pbx.rpc("core.version").startswith("kamailio 5.")
    pid = pbx.pid
    pbx.kill()
    assert not pbx.is_running and pbx.pid == pid
    assert sip_options_ping(pbx.host, pbx.port, timeout=0.3) is None
    pbx.start()
    assert pbx.is_running and pbx.pid != pid
    assert pbx.stop() == 0 and not pbx.is_running
    assert "harness: start #2" in pbx.log_text()


def test_register_401_then_200_stay_then_unregister(testbed: TestBed) -> None:
    pbx = testbed.pbx
    reg = testbed.sipp(
        "register", remote=pbx.address, service="agent1", auth=("agent1", "agent1pw"), params={"hold_ms": 1500}
    ).start()
    contacts = pbx.wait_registered("agent1", timeout=5)
    assert contacts == [f"sip:agent1@{reg.local_ip}:{reg.local_port};transport=UDP"]
    pbx.wait_for_log(re.escape(f"registered sip:agent1@{pbx.host} contact <{contacts[0]}>"), timeout=2)
    result = reg.wait(timeout=10).assert_ok()
    assert result.received_responses == [401, 200, 401, 200]
    assert result.sent_requests == ["REGISTER"] * 4
    assert "Authorization: Digest" in result.messages[2].text
    assert not pbx.is_registered("agent1")


def test_register_with_wrong_password_is_refused(testbed: TestBed) -> None:
    pbx = testbed.pbx
    result = testbed.sipp("register", remote=pbx.address, service="agent1", auth=("agent1", "wrong")).run(timeout=10)
    assert not result.ok
    assert result.received_responses[:2] in ([401, 401], [401, 403])
    assert "while expecting '200'" in result.errors
    assert not pbx.is_registered("agent1")


@pytest.mark.parametrize(("caller_transport", "callee_transport"), [("udp", "udp"), ("tcp", "udp"), ("udp", "tcp")])
def test_call_through_pbx_carries_rtp(testbed: TestBed, caller_transport: str, callee_transport: str) -> None:
    media = testbed.media()
    agent = testbed.registered_sipp(
        "agent1",
        "uas_answer",
        params={"call_ms": 10000, "rtp_ip": media.host, "rtp_port": media.port},
        transport=callee_transport,
    )
    pcap = testbed.pcap(RtpStream("PCMU").audio(tone(440, 1.0)))
    caller = testbed.caller(to="agent1", params={"pcap": pcap, "call_ms": 1500}, transport=caller_transport).start()
    caller_result = caller.wait(timeout=15).assert_ok()
    agent_result = agent.wait(timeout=15).assert_ok()
    assert caller_result.received_responses[0] == 407  # "caller" is a local user: proxy auth
    assert caller_result.received_responses[-2:] == [200, 200]
    assert caller_result.sent_requests == ["INVITE", "ACK", "INVITE", "ACK", "BYE"]
    assert {m.transport for m in caller_result.messages} == {caller_transport.upper()}
    assert {m.transport for m in agent_result.messages} == {callee_transport.upper()}
    # record-routed: the BYE was sent along the route set, through the PBX
    proxy = f"<sip:{testbed.pbx.host}:{testbed.pbx.port}"
    record_route = agent_result.received("INVITE")[0].header("Record-Route") or ""
    assert record_route.startswith(proxy) and ";lr" in record_route
    bye = [m for m in caller_result.messages if m.direction == "sent" and m.method == "BYE"][0]
    assert (bye.header("Route") or "").startswith(proxy)
    assert agent_result.received_requests == ["INVITE", "ACK", "BYE"]
    # the pcap's RTP arrived, and it was the 440 Hz tone
    assert len(media.packets()) == 50
    assert_tones(media.audio(), present=[440], absent=[1000], min_fraction=0.95)


def test_far_end_hangs_up_first(testbed: TestBed) -> None:
    agent = testbed.registered_sipp("agent1", "uas_answer", params={"call_ms": 800})
    pcap = testbed.pcap(RtpStream().audio(tone(440, 0.2)))
    caller_result = testbed.caller(to="agent1", params={"pcap": pcap, "call_ms": 10000}).run(timeout=15).assert_ok()
    agent.wait(timeout=15).assert_ok()
    assert caller_result.received_requests == ["BYE"]
    assert "BYE" not in caller_result.sent_requests


def test_cancel_while_ringing_gives_487(testbed: TestBed) -> None:
    agent = testbed.registered_sipp("agent2", "uas_noanswer")
    caller_result = testbed.caller("uac_cancel", to="agent2", params={"ring_ms": 300}).run(timeout=15).assert_ok()
    agent_result = agent.wait(timeout=15).assert_ok()
    assert caller_result.received_responses[-3:] == [180, 200, 487]
    assert caller_result.sent_requests[-2:] == ["CANCEL", "ACK"]
    assert agent_result.received_requests == ["INVITE", "CANCEL", "ACK"]
    assert agent_result.sent_responses == [100, 180, 200, 487]


@pytest.mark.parametrize(("preset", "status"), [("uas_busy", 486), ("uas_decline", 603)])
def test_rejections_are_relayed(testbed: TestBed, preset: str, status: int) -> None:
    agent = testbed.registered_sipp("agent1", preset)
    caller_result = testbed.caller("uac_rejected", to="agent1", params={"status": status}).run(timeout=15).assert_ok()
    agent.wait(timeout=15).assert_ok()
    assert caller_result.received_responses[-1] == status
    assert testbed.pbx.contacts("agent1") == []  # the finished UAS's binding is gone


@pytest.mark.parametrize(("user", "status"), [("agent3", 480), ("nobody", 404)])
def test_unregistered_480_and_unknown_404(testbed: TestBed, user: str, status: int) -> None:
    ruri = f"sip:{user}@{testbed.pbx.hostport}"
    result = testbed.caller("uac_rejected", to=user, params={"status": status, "ruri": ruri}).run(timeout=10)
    result.assert_ok()
    assert result.received_responses[-1] == status


def test_info_reinvite_and_update_are_relayed_in_dialog(testbed: TestBed) -> None:
    pcap = testbed.pcap(RtpStream().audio(tone(440, 0.2)))
    agent = testbed.registered_sipp("agent1", "uas_answer")
    info = info_dtmf_requests("1#", pause_ms=50)
    testbed.caller("uac_call_info", to="agent1", params={"pcap": pcap, "info": info, "call_ms": 200}).run().assert_ok()
    agent_result = agent.wait(timeout=15).assert_ok()
    bodies = [m.body.split() for m in agent_result.received("INFO")]
    assert bodies == [["Signal=1", "Duration=160"], ["Signal=#", "Duration=160"]]
    assert all(m.header("Content-Type") == "application/dtmf-relay" for m in agent_result.received("INFO"))

    for scenario, method in (("uac_reinvite", "INVITE"), ("uac_update", "UPDATE")):
        agent = testbed.registered_sipp("agent1", "uas_answer")
        testbed.caller(scenario, to="agent1", params={"pcap": pcap, "call_ms": 200, "change_after_ms": 100}).run()
        agent_result = agent.wait(timeout=15).assert_ok()
        changes = agent_result.received(method)[-1]
        assert "a=sendonly" in changes.body and changes.header("Route") is None  # loose_route consumed it
        assert agent_result.received_requests[-1] == "BYE"


def test_callee_sends_info_and_rfc4733(testbed: TestBed) -> None:
    media = testbed.media()
    pcap = testbed.pcap(RtpStream().audio(tone(440, 0.2)))
    info = info_dtmf_requests("4*", content_type="application/dtmf", pause_ms=50)
    agent = testbed.registered_sipp("agent1", "uas_answer_info", params={"info": info, "call_ms": 1000})
    caller = testbed.caller(to="agent1", params={"pcap": pcap, "call_ms": 10000}).run(timeout=15).assert_ok()
    agent.wait(timeout=15).assert_ok()
    assert [m.body.strip() for m in caller.received("INFO")] == ["4", "*"]

    digits = testbed.pcap(RtpStream().digit("7").audio(tone(1000, 0.4)))
    agent = testbed.registered_sipp("agent1", "uas_answer_dtmf", params={"pcap": digits, "call_ms": 1200})
    call_params = {"pcap": pcap, "call_ms": 10000, "rtp_ip": media.host, "rtp_port": media.port}
    testbed.caller(to="agent1", params=call_params).run(timeout=15).assert_ok()
    agent.wait(timeout=15).assert_ok()
    assert media.digits() == "7"
    assert_tones(media.audio(), present=[1000], absent=[440])


def test_trusted_gateway_calls_without_challenge(testbed: TestBed) -> None:
    gateway = testbed.gateway_ip  # before the PBX starts: it goes into its config
    pcap = testbed.pcap(RtpStream().audio(tone(440, 0.2)))
    agent = testbed.registered_sipp("hotline", "uas_answer", params={"call_ms": 10000})
    params = {"pcap": pcap, "call_ms": 300, "from_user": "agent1", "from_domain": testbed.pbx.domain}
    trunk = testbed.sipp("uac_call", local_ip=gateway, remote=testbed.pbx.address, service="hotline", params=params)
    result = trunk.run(timeout=15).assert_ok()  # no -au/-ap: a challenge would fail it
    agent.wait(timeout=15).assert_ok()
    assert 407 not in result.received_responses and result.received_responses[-2:] == [200, 200]
    # the same From from any other address is challenged
    other = testbed.sipp("uac_call", remote=testbed.pbx.address, service="hotline", params=params, timeout=5)
    refused = other.run(timeout=15)
    assert not refused.ok and refused.received_responses[0] == 407


def test_scanner_invite(testbed: TestBed) -> None:
    to_pbx = testbed.sipp("scanner", remote=testbed.pbx.address, service="100", params={"status": 404}).run()
    assert to_pbx.assert_ok().received_responses == [404]
    assert "friendly-scanner" in (to_pbx.messages[0].header("User-Agent") or "")
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # a target that never answers
        silent.bind((testbed.address(), 0))
        started = time.monotonic()
        quiet = testbed.sipp("scanner", remote=silent.getsockname(), service="100", params={"wait_ms": 700}).run()
        assert quiet.assert_ok().received_responses == []
        assert time.monotonic() - started < 5
        assert silent.recv(4096).startswith(b"INVITE sip:100@")


def test_kamailio_restart_forgets_registrations(testbed: TestBed) -> None:
    pbx = testbed.pbx
    reg = testbed.sipp(
        "register", remote=pbx.address, service="agent1", auth=("agent1", "agent1pw"), params={"hold_ms": 20000}
    ).start()
    pbx.wait_registered("agent1", timeout=5)
    pbx.restart()
    assert pbx.is_running and pbx.contacts("agent1") == []
    result = testbed.caller("uac_rejected", to="agent1", params={"status": 480}).run(timeout=10)
    assert result.assert_ok().received_responses[-1] == 480
    reg.terminate()


async def test_sipp_waits_without_blocking_the_event_loop(testbed: TestBed) -> None:
    agent = testbed.registered_sipp("agent1", "uas_answer", params={"call_ms": 10000})
    pcap = testbed.pcap(RtpStream().audio(tone(440, 0.2)))
    caller = testbed.caller(to="agent1", params={"pcap": pcap, "call_ms": 600}).start()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        results = await asyncio.gather(caller.wait_async(timeout=15), agent.wait_async(timeout=15))
    finally:
        ticker.cancel()
    assert all(r.ok for r in results)
    assert ticks >= 8  # the loop kept running during the ~0.6 s call


def test_sipp_hard_timeout_and_terminate(testbed: TestBed) -> None:
    started = time.monotonic()
    idle = testbed.sipp("uas_answer", timeout=1.0).run()  # nobody calls
    assert not idle.ok and time.monotonic() - started < 6
    waiting = testbed.sipp("uas_answer", timeout=30).start()
    assert waiting.is_running
    result = waiting.terminate()
    assert not waiting.is_running and result.exit_code != 0


# --- baresip ------------------------------------------------------------------------------------


def test_baresip_answers_gets_rfc4733_and_records(testbed: TestBed) -> None:
    phone = testbed.phone("agent1", source=tone(1000, 3.0))
    assert testbed.pbx.contacts("agent1")  # registered: Kamailio has its binding
    media = testbed.media()
    stream = RtpStream().audio(tone(440, 0.6)).digit("5").audio(tone(440, 0.6))
    params = {"pcap": testbed.pcap(stream), "call_ms": 2500, "rtp_ip": media.host, "rtp_port": media.port}
    caller = testbed.caller(to="agent1", params=params).start()
    established = phone.wait_event("CALL_ESTABLISHED", timeout=5)
    assert established.data["direction"] == "incoming"
    assert phone.wait_event("CALL_DTMF_START", timeout=5).param == "5"
    phone.send_dtmf("9")
    caller.wait(timeout=15).assert_ok()
    assert phone.wait_event("CALL_CLOSED", timeout=5).call_id == established.call_id
    assert_tones(phone.received_audio(), present=[440], absent=[1000])
    assert media.digits() == "9"
    assert_tones(media.audio(), present=[1000], absent=[440])
    assert any(host == "127.0.0.1" for host, _ in media.sources())  # baresip's RTP source, not its SDP
    phone.stop()
    testbed.pbx.wait_unregistered("agent1", timeout=5)


def test_baresip_dials_and_hangs_up(testbed: TestBed) -> None:
    media = testbed.media()
    agent = testbed.registered_sipp(
        "agent2", "uas_answer", params={"call_ms": 10000, "rtp_ip": media.host, "rtp_port": media.port}
    )
    phone = testbed.phone("agent1", source=tone(1000, 2.0))
    phone.dial(testbed.pbx.uri("agent2"))
    phone.wait_event("CALL_ESTABLISHED", timeout=5)
    media.wait_for_packets(25, timeout=5)
    phone.hangup()
    phone.wait_event("CALL_CLOSED", timeout=5)
    result = agent.wait(timeout=10).assert_ok()
    assert result.received_requests[-1] == "BYE"
    assert_tones(media.audio(), present=[1000])


def test_baresip_manual_answer(testbed: TestBed) -> None:
    phone = testbed.phone("agent3", answermode="manual")
    pcap = testbed.pcap(RtpStream().audio(tone(440, 0.2)))
    caller = testbed.caller(to="agent3", params={"pcap": pcap, "call_ms": 300}).start()
    phone.wait_event("CALL_INCOMING", timeout=5)
    time.sleep(0.3)  # a deliberate ring time: nothing may be answered during it
    assert "CALL_ESTABLISHED" not in [e.type for e in phone.events]
    phone.answer()
    phone.wait_event("CALL_ESTABLISHED", timeout=5)
    assert caller.wait(timeout=15).assert_ok().received_responses[-2:] == [200, 200]


# --- the daemon ---------------------------------------------------------------------------------


def test_daemon_exits_2_on_a_bad_config(testbed: TestBed) -> None:
    config = testbed.sipcallhunt_config(hotlines=[{"name": "support", "agents": ["agent1"]}], sip={"rtp_ports": [5, 6]})
    daemon = testbed.daemon(config).start()
    with pytest.raises(RuntimeError, match="exited with status 2"):
        daemon.wait_for_log("never printed", timeout=15)
    assert daemon.wait_exit(timeout=15) == EXIT_BAD_CONFIG
    assert "sip.rtp_ports" in daemon.log_text()


def test_daemon_registers_and_stops_cleanly(testbed: TestBed) -> None:
    config = testbed.sipcallhunt_config(hotlines=[{"name": "support", "agents": ["agent1"]}])
    daemon = testbed.daemon(config).start()
    contacts = daemon.wait_registered(testbed.pbx, "hotline", timeout=15)
    listen = config.read_text().split('listen = "', 1)[1].split('"', 1)[0]
    assert any(f"@{listen}" in contact for contact in contacts), contacts
    assert daemon.wait_reachable(testbed.pbx, "hotline", timeout=5) == 200  # OPTIONS routed to it
    daemon.stop_clean(timeout=10)
    testbed.pbx.wait_unregistered("hotline", timeout=5)


def test_daemon_killed_leaves_its_binding(testbed: TestBed) -> None:
    config = testbed.sipcallhunt_config(hotlines=[{"name": "support", "agents": ["agent1"]}])
    daemon = testbed.daemon(config).start()
    daemon.wait_registered(testbed.pbx, "hotline", timeout=15)
    assert daemon.kill() == -9 and not daemon.is_running
    assert testbed.pbx.contacts("hotline")  # no un-registration after SIGKILL


def test_tools_exist_for_captures() -> None:
    for program in ("tshark", "sox", "multimon-ng", "espeak-ng"):
        assert shutil.which(program), f"{program} missing; run scripts/install-test-deps.sh"
