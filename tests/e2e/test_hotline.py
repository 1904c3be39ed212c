"""The hotline end to end: the daemon against Kamailio, sipp and baresip, judged by what the peers
saw and by the call log the daemon wrote.

Every test starts its own daemon (``python -m sipcallhunt run``) registered with its own Kamailio;
callers and agents are real sipp/baresip processes calling through the PBX.  Phones whose audio is
judged use an :class:`~tests.e2e.harness.RtpEndpoint` as their media (``uac_call_quiet`` /
``uas_answer`` with ``rtp_ip``/``rtp_port``): it records every packet the daemon sends and talks
from the SDP's own address.  The prompts the tests replace are short pure tones, each at its own
frequency (:data:`PROMPT_TONES`), so that what a caller heard, and in which order, can be read
from the audio; the phones talk at 440 Hz (caller), 880 Hz (sipp agent) and 1000 Hz (baresip).
No frequency used is a DTMF frequency.

The helpers here are shared by the other ``test_hotline_*.py`` modules; :func:`start_hotline`
comes first in every test (it adds the subscribers the tests need to the PBX before it starts).
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs
import numpy as np
import pytest

from sipcallhunt.calllog import open_call_log
from sipcallhunt.records import AttemptEnd, AttemptRecord, CallRecord, ConfirmResult, DtmfMethod, Outcome, PinResult
from tests.e2e.harness import (
    Daemon,
    RtpEndpoint,
    RtpStream,
    SippResult,
    TestBed,
    assert_tones,
    dtmf_sequence,
    goertzel_power,
    info_dtmf_requests,
    tone,
    write_wav,
)
from tests.e2e.harness.audio import Samples, level_dbfs
from tests.e2e.harness.ports import free_port, free_port_range, toml_dumps
from tests.e2e.harness.rtp import ReceivedPacket, audio_from_packets

T = TypeVar("T")

EXTRA_USERS: Final = (
    ("agent5", "agent5pw"),
    ("agent6", "agent6pw"),
    ("hotline2", "hotline2pw"),
    ("caller2", "caller2pw"),
)
"""PBX subscribers the hotline tests need besides the test bed's default ones."""

PROMPT_TONES: Final[Mapping[str, int]] = {
    "intro": 300,
    "enter_pin": 350,
    "wrong_pin": 400,
    "goodbye": 500,
    "please_hold": 550,
    "hold_music": 600,
    "no_agent": 650,
    "forwarding": 1100,
    "whisper": 1150,
    "hotline_name": 1250,
    "pin_locked": 1400,
}
"""The frequency of the short tone that replaces each prompt (Hz)."""

PROMPT_SECONDS: Final[Mapping[str, float]] = {"hold_music": 1.0, "no_agent": 0.6, "goodbye": 0.4}
CALLER_HZ: Final = 440
AGENT_HZ: Final = 880
BARESIP_HZ: Final = 1000
PIN: Final = "2468"

FAST_HOTLINE: Final[Mapping[str, Any]] = {
    "rounds": 1,
    "pin_timeout": 1.0,
    "pin_attempts": 2,
    "confirm_timeout": 2.0,
    "intro_timeout": 10.0,
}
"""Hotline keys that keep the tests short (each test adds or overrides what it is about)."""


# --- prompts, config, daemon -------------------------------------------------------------------


def write_prompts(folder: Path, *, keep: Iterable[str] = ()) -> dict[str, str]:
    """A tone file per prompt of :data:`PROMPT_TONES` (config keys → paths), except those in ``keep``
    (they stay the bundled recordings)."""
    files = {}
    for name, hz in PROMPT_TONES.items():
        if name in keep:
            continue
        files[name] = str(write_wav(folder / f"{name}.wav", tone(hz, PROMPT_SECONDS.get(name, 0.3))))
    return files


@attrs.define(eq=False)
class Hotline:
    """A running daemon with its config and call log."""

    bed: TestBed
    config: Path
    calllog: Path
    daemon: Daemon

    def calls(self) -> list[tuple[CallRecord, list[AttemptRecord]]]:
        """Every call in the log (oldest first) with its attempts."""
        if not self.calllog.exists():
            return []
        with open_call_log(self.calllog, readonly=True) as log:
            calls = sorted(log.recent_calls(1000), key=lambda c: c.started)
            return [(call, log.attempts(call.call_id)) for call in calls]

    def wait_calls(self, count: int, *, timeout: float = 20.0) -> list[tuple[CallRecord, list[AttemptRecord]]]:
        """Poll the call log until ``count`` calls are over (outcome set, every attempt ended)."""

        def finished() -> list[tuple[CallRecord, list[AttemptRecord]]] | None:
            calls = self.calls()
            done = [c for c in calls if c[0].outcome is not None and all(a.ended is not None for a in c[1])]
            return calls if len(calls) >= count and len(done) == len(calls) else None

        return poll(finished, timeout=timeout, what=f"{count} finished call(s) in the call log", daemon=self.daemon)

    def wait_call(self, *, timeout: float = 20.0) -> tuple[CallRecord, list[AttemptRecord]]:
        calls = self.wait_calls(1, timeout=timeout)
        assert len(calls) == 1, calls
        return calls[0]

    def cli_json(self) -> list[dict[str, Any]]:
        """``sipcallhunt calls --json --attempts -c CONFIG``, parsed."""
        result = subprocess.run(
            [sys.executable, "-m", "sipcallhunt", "calls", "--json", "--attempts", "--utc", "-c", str(self.config)],
            capture_output=True,
            timeout=30,
            check=True,
            text=True,
        )
        data: list[dict[str, Any]] = json.loads(result.stdout)
        return data

    def assert_clean_log(self) -> None:
        """No error or traceback in the daemon's log."""
        text = self.daemon.log_text()
        bad = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]
        assert not bad, "\n".join(bad)


def start_hotline(
    bed: TestBed,
    hotlines: Sequence[Mapping[str, Any]],
    *,
    accounts: Sequence[tuple[str, str]] = (("pbx", "hotline"),),
    sip: Mapping[str, Any] | None = None,
    metrics: bool = True,
) -> Hotline:
    """Write a config for ``hotlines`` (each on an account of ``accounts``: (name, PBX user)), start
    the daemon and wait until every account is registered with the PBX.

    A hotline without ``account`` answers the first account; the test defaults of
    :data:`FAST_HOTLINE` apply unless the hotline sets the key; agents may be given as numbers.
    Call it before anything else starts the PBX: it adds :data:`EXTRA_USERS` to its subscribers.
    ``metrics`` turns on the metrics endpoint (``hotline.daemon.metrics()`` scrapes it).
    """
    bed.users = tuple(dict.fromkeys((*bed.users, *EXTRA_USERS)))
    pbx = bed.pbx
    missing = [user for user, _ in EXTRA_USERS if user not in dict(pbx.users)]
    assert not missing, f"the PBX was started before start_hotline(): it lacks {missing}"
    host = bed.address()
    sip_table = {"listen": f"{host}:{free_port(host)}", "rtp_ports": list(free_port_range(host, 60)), **(sip or {})}
    account_tables = [
        {"name": name, "registrar": f"sip:{pbx.host}:{pbx.port}", "username": user, "password": bed.password(user)}
        for name, user in accounts
    ]
    hotline_tables = []
    for hotline in hotlines:
        table = {"account": accounts[0][0], **FAST_HOTLINE, **hotline}
        table["agent"] = [{"number": a} if isinstance(a, str) else dict(a) for a in table.pop("agent", [])]
        hotline_tables.append(table)
    calllog = bed.workdir / "calls.sqlite3"
    data = {
        "sip": sip_table,
        "account": account_tables,
        "hotline": hotline_tables,
        "calllog": {"path": str(calllog)},
        "logging": {"level": "DEBUG"},
    }
    if metrics:
        data["metrics"] = {"listen": f"{host}:{free_port(host)}"}
    config = bed.workdir / "sipcallhunt.toml"
    config.write_text(toml_dumps(data), encoding="utf-8")
    config.chmod(0o600)  # it holds passwords (the daemon warns otherwise)
    daemon = bed.daemon(config).start()
    for _, user in accounts:
        daemon.wait_registered(pbx, user, timeout=15)
    return Hotline(bed, config, calllog, daemon)


def poll(check: Callable[[], T | None], *, timeout: float, what: str, daemon: Daemon | None = None) -> T:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if daemon is not None and not daemon.is_running:
            raise AssertionError(f"the daemon exited while waiting for {what}:\n{daemon.log_tail()}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


# --- phones ------------------------------------------------------------------------------------


def agent_pcap(bed: TestBed, key: str | None = None, *, inband: bool = False, seconds: float = 6.0) -> Path:
    """What a sipp agent sends after answering: ``key`` (RFC 4733, or as tones), then its voice."""
    stream = RtpStream()
    if key is not None:
        stream.silence(0.1)
        if inband:
            stream.audio(dtmf_sequence(key, on=0.12, off=0.08))
        else:
            stream.digit(key)
    return bed.pcap(stream.audio(tone(AGENT_HZ, seconds)))


def talk(media: RtpEndpoint, stream: RtpStream, *, timeout: float = 10.0) -> tuple[str, int]:
    """Once the daemon's first packet arrives at ``media``, send ``stream`` back to where it came
    from (symmetric RTP); returns the daemon's RTP address."""
    media.wait_for_packets(1, timeout=timeout)
    peer = media.received[0].source
    media.send(stream.packets(), to=peer)
    return peer


def audio_between(media: RtpEndpoint, start: float | None = None, end: float | None = None) -> Samples:
    """The audio ``media`` received between two ``time.monotonic()`` instants."""
    packets = [r.packet for r in media.received if (start is None or r.time >= start) and (end is None or r.time < end)]
    return audio_from_packets(packets)


def tone_share(samples: Samples, hz: float) -> float:
    """The share of ``samples``' power at ``hz`` (about 1 for a pure tone of that frequency; tones
    50 Hz apart, like the prompts', stay below 0.05 of each other in one 20 ms packet)."""
    power = float(np.mean((samples.astype(np.float64) / 32768.0) ** 2))
    return goertzel_power(samples, hz) / power if power > 0 else 0.0


def heard(received: Sequence[ReceivedPacket]) -> Samples:
    """The audio of these packets, in sequence order (events and gaps as silence)."""
    return audio_from_packets(r.packet for r in received)


def frame_tones(samples: Samples, candidates: Mapping[str, float]) -> list[str]:
    """What each 20 ms of ``samples`` carries: the name of the candidate tone holding most of its
    power ("silence" below -50 dBFS, "other" when no candidate holds half of it)."""
    labels = []
    for frame in samples[: samples.size - samples.size % 160].reshape(-1, 160):
        if level_dbfs(frame) < -50:
            labels.append("silence")
            continue
        shares = {name: tone_share(frame, hz) for name, hz in candidates.items()}
        best = max(shares, key=lambda name: shares[name])
        labels.append(best if shares[best] > 0.5 else "other")
    return labels


def first_packet_with(received: Sequence[ReceivedPacket], hz: float) -> ReceivedPacket:
    """The first received packet whose audio is mostly the tone ``hz``."""
    for item in received:
        frame = audio_from_packets([item.packet])
        if level_dbfs(frame) > -50 and tone_share(frame, hz) > 0.5:
            return item
    raise AssertionError(f"no packet carries {hz} Hz")


def runs(labels: Sequence[str], *, min_frames: int = 3) -> list[str]:
    """The order of what was heard: consecutive equal labels collapsed, short blips and silence dropped."""
    order = []
    for label, group in itertools.groupby(labels):
        if label != "silence" and len(list(group)) >= min_frames and (not order or order[-1] != label):
            order.append(label)
    return order


def assert_one_continuous_stream(received: Sequence[ReceivedPacket]) -> None:
    """The daemon's packets to one phone form one RTP stream: one SSRC, sequence numbers without a
    gap or repeat, timestamps advancing with the clock (RFC 3550 §5.1)."""
    assert received, "no RTP"
    packets = [r.packet for r in received]
    assert {p.ssrc for p in packets} == {packets[0].ssrc}, "more than one SSRC"
    for a, b in itertools.pairwise(packets):
        step = (b.sequence - a.sequence) & 0xFFFF
        # A relayed RFC 4733 end packet sent three times under one number (as sipp and many phones
        # do) keeps that number: the relay maps the source's numbering, it does not renumber.
        repeated_end = step == 0 and a.payload_type == b.payload_type != 0 and a.payload == b.payload
        assert step == 1 or repeated_end, f"sequence number {a.sequence} followed by {b.sequence}"
    audio = [(r.time, r.packet.timestamp) for r in received if r.packet.payload_type in (0, 8)]
    ts_steps = [(b - a) & 0xFFFFFFFF for (_, a), (_, b) in itertools.pairwise(audio)]
    assert all(0 < s < 0x80000000 for s in ts_steps), "timestamps go backwards"
    assert np.median(ts_steps) == 160
    # Timestamps follow the wall clock over the whole call (no jump, no lost time at a switch).
    (t0, ts0), (t1, ts1) = audio[0], audio[-1]
    elapsed_rtp = ((ts1 - ts0) & 0xFFFFFFFF) / 8000
    assert elapsed_rtp == pytest.approx(t1 - t0, abs=0.25), (elapsed_rtp, t1 - t0)


def sip_gap(sent_by: SippResult, method_sent: str, received_by: SippResult, method_received: str) -> float:
    """Seconds from ``sent_by``'s (last) ``method_sent`` request to ``received_by``'s first
    ``method_received`` request after it, from the sipp message traces (one machine, one clock)."""
    sent = [m for m in sent_by.messages if m.direction == "sent" and m.is_request and m.method == method_sent]
    assert sent, f"{sent_by.name} sent no {method_sent}"
    at = sent[-1].time
    got = [m.time for m in received_by.received(method_received) if m.time >= at - 0.001]
    assert got, f"{received_by.name} received no {method_received} after {method_sent}"
    return got[0] - at


def attempt_rows(attempts: Sequence[AttemptRecord]) -> list[tuple[Any, ...]]:
    """(seq, round, agent, end, sip_status, confirm, dtmf_method) of each attempt."""
    return [(a.seq, a.round, a.agent, a.end, a.sip_status, a.confirm, a.dtmf_method) for a in attempts]


def assert_times_plausible(call: CallRecord, attempts: Sequence[AttemptRecord]) -> None:
    """Record times in order and consistent with each other."""
    assert call.answered is not None and call.ended is not None
    assert call.started <= call.answered <= call.ended
    if call.bridged is not None:
        assert call.answered <= call.bridged <= call.ended
        assert call.wait_time == pytest.approx(call.bridged - call.answered, abs=0.01)
        assert call.talk_time == pytest.approx(call.ended - call.bridged, abs=0.01)
    else:
        assert call.talk_time is None
        assert call.wait_time == pytest.approx(call.ended - call.answered, abs=0.01)
    previous_end = call.answered
    for attempt in attempts:
        assert attempt.ended is not None
        assert previous_end - 0.01 <= attempt.started <= attempt.ended <= call.ended + 0.01
        for moment in (attempt.ringing, attempt.answered):
            if moment is not None:
                assert attempt.started <= moment <= attempt.ended
        previous_end = attempt.ended


def assert_cli_shows(hotline: Hotline, calls: Sequence[tuple[CallRecord, Sequence[AttemptRecord]]]) -> None:
    """``sipcallhunt calls --json`` lists these calls with their attempts, as the call log holds them."""
    shown = {c["call_id"]: c for c in hotline.cli_json()}
    for call, attempts in calls:
        row = shown[call.call_id]
        for field in ("hotline", "caller", "outcome", "pin_result", "agent", "end_reason"):
            value = getattr(call, field)
            assert row[field] == (None if value is None else str(value)), field
        for field in ("wait_time", "talk_time"):
            value = getattr(call, field)
            assert row[field] == (None if value is None else pytest.approx(value, abs=0.001)), field
        assert [
            (a["seq"], a["round"], a["agent"], a["end"], a["sip_status"], a["confirm"], a["dtmf_method"])
            for a in row["attempts"]
        ] == [
            tuple(None if v is None else (v if isinstance(v, int) else str(v)) for v in r)
            for r in attempt_rows(attempts)
        ]


# === the hunt ===================================================================================


def test_hunt_in_order_with_rounds(testbed: TestBed) -> None:
    """One hunt over six agents, two rounds: no answer (CANCEL, 487), busy (486), answered without
    a key (confirm timeout, BYE), declined by key (in-band 2, BYE), declined by 603, and an agent
    busy in round 1 who accepts with RFC 4733 in round 2.  The caller hears please_hold, then the
    bundled hold music without a break through all eleven attempts, on one RTP stream."""
    prompts = write_prompts(testbed.workdir / "prompts", keep=("hold_music",))
    agents = [
        {"name": "Ann", "number": "agent1", "ring_timeout": 1.0},
        {"name": "Ben", "number": "agent2"},
        {"name": "Cid", "number": "agent3"},
        {"name": "Dee", "number": "agent4"},
        {"name": "Eve", "number": "agent5"},
        {"name": "Fay", "number": "agent6"},
    ]
    hotline = start_hotline(
        testbed, [{"name": "support", "rounds": 2, "confirm_timeout": 1.0, **prompts, "agent": agents}]
    )
    ann = testbed.registered_sipp("agent1", "uas_noanswer", calls=2)
    ben = testbed.registered_sipp("agent2", "uas_busy", calls=2)
    cid = testbed.registered_sipp("agent3", "uas_answer", calls=2, params={"call_ms": 20000})
    dee = testbed.registered_sipp(
        "agent4", "uas_answer_dtmf", calls=2, params={"pcap": agent_pcap(testbed, "2", inband=True), "call_ms": 20000}
    )
    eve = testbed.registered_sipp("agent5", "uas_decline", calls=2)
    fay = testbed.registered_sipp(
        "agent6",
        "uas_reject_first",
        calls=2,
        params={"status": 486, "reason": "Busy Here", "pcap": agent_pcap(testbed, "1"), "call_ms": 1500},
    )
    media = testbed.media()
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": media.host, "rtp_port": media.port, "call_ms": 30000}
    ).start()
    talk(media, RtpStream().audio(tone(CALLER_HZ, 15.0)))

    caller_result = caller.wait(timeout=40).assert_ok()
    call, attempts = hotline.wait_call()
    results = {name: agent.wait(timeout=20) for name, agent in
               {"Ann": ann, "Ben": ben, "Cid": cid, "Dee": dee, "Eve": eve, "Fay": fay}.items()}  # fmt: skip
    for result in results.values():
        result.assert_ok()

    # The call log: every attempt in order, with its round, how it ended and why.
    rfc, inband = DtmfMethod.RFC4733, DtmfMethod.INBAND
    no_answer, busy, timeout_, declined = (
        AttemptEnd.NO_ANSWER,
        AttemptEnd.BUSY,
        AttemptEnd.CONFIRM_TIMEOUT,
        AttemptEnd.DECLINED,
    )
    round_ = [
        ("Ann", no_answer, None, None, None),
        ("Ben", busy, 486, None, None),
        ("Cid", timeout_, 200, ConfirmResult.TIMEOUT, None),
        ("Dee", declined, 200, ConfirmResult.DECLINED, inband),
        ("Eve", declined, 603, None, None),
    ]
    expected = [(i + 1, 1, *row[:1], *row[1:]) for i, row in enumerate([*round_, ("Fay", busy, 486, None, None)])]
    expected += [(i + 7, 2, *row) for i, row in enumerate(round_)]
    expected += [(12, 2, "Fay", AttemptEnd.AGENT_HUNG_UP, 200, ConfirmResult.ACCEPTED, rfc)]
    assert attempt_rows(attempts) == expected
    assert call.outcome is Outcome.CONNECTED and call.agent == "Fay" and call.agent_number == "agent6"
    assert call.pin_result is PinResult.NOT_REQUIRED
    assert re.fullmatch(r"Fay accepted and hung up after [12] s", call.end_reason or ""), call.end_reason
    assert_times_plausible(call, attempts)
    assert attempts[0].ended - attempts[0].started == pytest.approx(1.0, abs=0.2)  # Ann's ring timeout
    assert attempts[2].ended - attempts[2].answered == pytest.approx(1.0, abs=0.2)  # Cid's confirm timeout
    assert call.talk_time == pytest.approx(1.5, abs=0.5)
    assert call.wait_time > 2 * (1.0 + 1.0)  # two rounds of ring and confirm timeouts at least

    # What each agent's phone saw.
    assert results["Ann"].received_requests == ["INVITE", "CANCEL", "ACK"] * 2
    assert results["Ann"].sent_responses == [100, 180, 200, 487] * 2
    assert results["Ben"].sent_responses == [100, 486] * 2
    assert results["Eve"].sent_responses == [100, 603] * 2
    for name in ("Cid", "Dee"):  # hung up by the hotline: BYE after the confirm timeout / the decline key
        assert results[name].received_requests == ["INVITE", "ACK", "BYE"] * 2
    assert results["Fay"].sent_responses[:2] == [100, 486]
    assert results["Fay"].received_requests == ["INVITE", "ACK", "INVITE", "ACK"]
    assert results["Fay"].sent_requests == ["BYE"]
    assert caller_result.received_requests == ["BYE"]

    # What the caller heard: please_hold, then music without a gap until the bridge, then Fay.
    received = media.received
    assert_one_continuous_stream(received)
    bridged_at = first_packet_with(received, AGENT_HZ).time
    waiting = [r for r in received if r.time < bridged_at]
    labels = frame_tones(heard(waiting), {k: PROMPT_TONES[k] for k in ("intro", "please_hold")})
    order = runs(labels)
    assert order[:2] == ["intro", "please_hold"], order
    hold_start = max(i for i, label in enumerate(labels) if label == "please_hold") + 1
    music = heard(waiting)[hold_start * 160 :]
    assert music.size / 8000 > 3.5  # the whole hunt
    windows = music[: music.size - music.size % 800].reshape(-1, 800)  # 100 ms each
    quiet = [i for i, w in enumerate(windows) if level_dbfs(w) < -45]
    assert not quiet, f"the hold music was silent at {[i / 10 for i in quiet]} s"
    assert_tones(music, absent=[AGENT_HZ, PROMPT_TONES["whisper"]], max_fraction=0.02)  # no agent leaks in
    assert_tones(audio_between(media, bridged_at + 0.1), present=[AGENT_HZ], min_fraction=0.8)

    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()


# === audio ======================================================================================


def test_bridged_audio_both_ways_and_one_stream_per_leg(testbed: TestBed) -> None:
    """The agent accepts with SIP INFO; from then on the caller's 440 Hz reaches the agent and the
    agent's 880 Hz the caller, and neither before: the caller hears intro, please_hold and hold
    music, the agent the announcement.  The caller talks PCMU, the agent's phone answered PCMA:
    the relay transcodes.  Each leg's RTP is one stream across prompts and relay."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(testbed, [{"name": "support", **prompts, "agent": [{"name": "Ann", "number": "agent1"}]}])
    agent_media = testbed.media()
    agent = testbed.registered_sipp(
        "agent1",
        "uas_answer_info",
        params={
            "info": info_dtmf_requests("1"),
            "info_after_ms": 600,
            "call_ms": 2500,
            "rtp_ip": agent_media.host,
            "rtp_port": agent_media.port,
            "codec": "PCMA",
            "codec_pt": 8,
        },
    )
    caller_media = testbed.media()
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": caller_media.host, "rtp_port": caller_media.port}
    ).start()
    talk(caller_media, RtpStream().audio(tone(CALLER_HZ, 8.0)))
    talk(agent_media, RtpStream("PCMA").audio(tone(AGENT_HZ, 8.0)))  # talks from the answer on, heard once bridged

    caller_result = caller.wait(timeout=20).assert_ok()
    agent_result = agent.wait(timeout=20).assert_ok()
    call, attempts = hotline.wait_call()

    assert call.outcome is Outcome.CONNECTED and call.agent == "Ann" and call.agent_number == "agent1"
    assert call.end_reason is not None and call.end_reason.startswith("Ann accepted and hung up after ")
    assert attempt_rows(attempts) == [
        (1, 1, "Ann", AttemptEnd.AGENT_HUNG_UP, 200, ConfirmResult.ACCEPTED, DtmfMethod.INFO)
    ]
    assert_times_plausible(call, attempts)
    assert call.talk_time == pytest.approx(2.5, abs=0.5)
    assert agent_result.sent_requests == ["INFO", "BYE"] and caller_result.received_requests == ["BYE"]

    # The caller: intro, please_hold, music until the bridge, then the agent and nothing else.
    at_caller = caller_media.received
    assert_one_continuous_stream(at_caller)
    bridged = first_packet_with(at_caller, AGENT_HZ).time
    before = [r for r in at_caller if r.time < bridged]
    order = runs(
        frame_tones(heard(before), {k: PROMPT_TONES[k] for k in ("intro", "please_hold", "hold_music", "whisper")})
    )
    assert order == ["intro", "please_hold", "hold_music"], order
    assert_tones(audio_between(caller_media, bridged), present=[AGENT_HZ], absent=[CALLER_HZ], min_fraction=0.9)

    assert {r.packet.payload_type for r in at_caller} == {0}
    # The agent: the hotline's name and the announcement, then the caller; never the music.
    at_agent = agent_media.received
    assert {r.packet.payload_type for r in at_agent} == {8}
    assert_one_continuous_stream(at_agent)
    connected = first_packet_with(at_agent, CALLER_HZ).time
    announcement = [r for r in at_agent if r.time < connected]
    order = runs(
        frame_tones(heard(announcement), {k: PROMPT_TONES[k] for k in ("hotline_name", "whisper", "hold_music")})
    )
    assert order[:2] == ["hotline_name", "whisper"] and "hold_music" not in order, order
    assert_tones(audio_between(agent_media, connected), present=[CALLER_HZ], absent=[AGENT_HZ], min_fraction=0.9)
    # Bridged both ways at once (one step of the daemon), and the agent's INFO key is not relayed.
    assert abs(connected - bridged) < 0.1
    assert caller_media.digits() == ""
    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()


def test_agent_confirm_key_is_not_relayed_to_the_caller(testbed: TestBed) -> None:
    hotline = start_hotline(testbed, [{"name": "support", **write_prompts(testbed.workdir / "prompts"),
                                       "agent": [{"name": "Ann", "number": "agent1"}]}])  # fmt: skip
    agent = testbed.registered_sipp(
        "agent1", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1", seconds=1.0), "call_ms": 1200}
    )
    caller_media = testbed.media()
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": caller_media.host, "rtp_port": caller_media.port}
    ).start()
    talk(caller_media, RtpStream().audio(tone(CALLER_HZ, 4.0)))
    caller.wait(timeout=20).assert_ok()
    agent.wait(timeout=20).assert_ok()
    call, attempts = hotline.wait_call()
    assert call.outcome is Outcome.CONNECTED and attempts[0].dtmf_method is DtmfMethod.RFC4733
    first_packet_with(caller_media.received, AGENT_HZ)  # bridged
    assert [p.payload_type for p in caller_media.packets() if p.payload_type not in (0, 8)] == []
    assert caller_media.digits() == ""


# === nobody there ===============================================================================


def test_no_agent_announces_and_hangs_up(testbed: TestBed) -> None:
    """Ann does not answer, Ben is not registered (the PBX answers 480), Cid answers and hangs up
    without a key: the caller hears the hold music, then the no_agent prompt to its end, then the
    hotline's BYE."""
    prompts = write_prompts(testbed.workdir / "prompts")
    agents = [
        {"name": "Ann", "number": "agent1", "ring_timeout": 1.0},
        {"name": "Ben", "number": "agent2"},
        {"name": "Cid", "number": "agent3"},
    ]
    hotline = start_hotline(testbed, [{"name": "support", **prompts, "agent": agents}])
    ann = testbed.registered_sipp("agent1", "uas_noanswer")
    cid = testbed.registered_sipp("agent3", "uas_answer", params={"call_ms": 300})  # hangs up before a key
    media = testbed.media()
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": media.host, "rtp_port": media.port}
    ).start()
    talk(media, RtpStream().audio(tone(CALLER_HZ, 5.0)))
    caller_result = caller.wait(timeout=20).assert_ok()
    ann.wait(timeout=10).assert_ok()
    assert cid.wait(timeout=10).assert_ok().sent_requests == ["BYE"]
    call, attempts = hotline.wait_call()

    assert caller_result.received_requests == ["BYE"] and "BYE" not in caller_result.sent_requests
    assert call.outcome is Outcome.NO_AGENT and call.agent is None and call.bridged is None
    assert call.end_reason == "no agent pressed 1 in 1 round"
    assert attempt_rows(attempts) == [
        (1, 1, "Ann", AttemptEnd.NO_ANSWER, None, None, None),
        (2, 1, "Ben", AttemptEnd.UNAVAILABLE, 480, None, None),
        (3, 1, "Cid", AttemptEnd.AGENT_HUNG_UP, 200, ConfirmResult.HUNG_UP, None),
    ]
    assert attempts[2].end_reason == "Cid hung up without pressing a key"
    assert_times_plausible(call, attempts)
    assert call.wait_time == pytest.approx(0.3 + 1.0 + 0.3 + PROMPT_SECONDS["no_agent"], abs=0.4)
    prompts_heard = {k: PROMPT_TONES[k] for k in ("intro", "please_hold", "hold_music", "no_agent")}
    labels = frame_tones(heard(media.received), prompts_heard)
    assert runs(labels) == ["intro", "please_hold", "hold_music", "no_agent"], runs(labels)
    played = labels.count("no_agent") * 0.020
    assert played == pytest.approx(PROMPT_SECONDS["no_agent"], abs=0.06)  # to its end, then BYE
    assert_one_continuous_stream(media.received)
    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()


def test_forward_when_no_agent_accepts(testbed: TestBed) -> None:
    """Nobody accepts, the hotline forwards to agent3 (round 0), who is bridged as soon as it
    answers, without the announcement or a key; the caller hangs up after a while."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [
            {
                "name": "support",
                **prompts,
                "on_no_agent": "forward:agent3",
                "agent": [{"name": "Ann", "number": "agent1"}],
            }
        ],
    )
    ann = testbed.registered_sipp("agent1", "uas_busy")
    forward_media = testbed.media()
    forward = testbed.registered_sipp(
        "agent3", "uas_answer", params={"rtp_ip": forward_media.host, "rtp_port": forward_media.port, "ring_ms": 300}
    )
    media = testbed.media()
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": media.host, "rtp_port": media.port, "call_ms": 3000}
    ).start()
    talk(media, RtpStream().audio(tone(CALLER_HZ, 6.0)))
    talk(forward_media, RtpStream().audio(tone(AGENT_HZ, 6.0)))
    caller_result = caller.wait(timeout=20).assert_ok()
    forward_result = forward.wait(timeout=20).assert_ok()
    ann.wait(timeout=10).assert_ok()
    call, attempts = hotline.wait_call()

    assert caller_result.sent_requests[-1] == "BYE" and forward_result.received_requests == ["INVITE", "ACK", "BYE"]
    assert call.outcome is Outcome.FORWARDED and call.agent == "forward" and call.agent_number == "agent3"
    assert call.end_reason is not None and call.end_reason.startswith("forwarded to agent3; the caller hung up after")
    assert attempt_rows(attempts) == [
        (1, 1, "Ann", AttemptEnd.BUSY, 486, None, None),
        (2, 0, "forward", AttemptEnd.CALLER_HUNG_UP, 200, ConfirmResult.NOT_REQUIRED, None),
    ]
    assert_times_plausible(call, attempts)
    order = runs(frame_tones(heard(media.received), {"forwarding": PROMPT_TONES["forwarding"], "agent": AGENT_HZ}))
    assert order[-2:] == ["forwarding", "agent"], order
    at_forward = forward_media.received
    assert runs(frame_tones(heard(at_forward), {"whisper": PROMPT_TONES["whisper"], "caller": CALLER_HZ})) == ["caller"]
    assert_tones(audio_between(forward_media), present=[CALLER_HZ], min_fraction=0.9)
    assert_one_continuous_stream(media.received)
    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()


# === the caller hangs up ========================================================================


@pytest.mark.parametrize("agent_state", ["ringing", "confirming"])
def test_caller_hangs_up_mid_hunt(testbed: TestBed, agent_state: str) -> None:
    """The caller hangs up while Ann's phone rings (she gets a CANCEL) or while she is being asked
    to accept (she gets a BYE) - within 100 ms of the caller's BYE, measured in the sipp traces."""
    prompts = write_prompts(testbed.workdir / "prompts")
    agents = [{"name": "Ann", "number": "agent1", "ring_timeout": 10.0}, {"name": "Ben", "number": "agent2"}]
    hotline = start_hotline(testbed, [{"name": "support", **prompts, "confirm_timeout": 10.0, "agent": agents}])
    if agent_state == "ringing":
        ann = testbed.registered_sipp("agent1", "uas_noanswer")
    else:
        ann = testbed.registered_sipp("agent1", "uas_answer")
    pcap = testbed.pcap(RtpStream().audio(tone(CALLER_HZ, 1.0)))
    caller_result = testbed.caller(to="hotline", params={"pcap": pcap, "call_ms": 1200}).run(timeout=20).assert_ok()
    ann_result = ann.wait(timeout=20).assert_ok()
    call, attempts = hotline.wait_call()

    assert caller_result.sent_requests[-1] == "BYE"
    if agent_state == "ringing":
        assert ann_result.received_requests == ["INVITE", "CANCEL", "ACK"]
        gap = sip_gap(caller_result, "BYE", ann_result, "CANCEL")
        expected = (1, 1, "Ann", AttemptEnd.CALLER_HUNG_UP, None, None, None)
        situation = "while Ann's phone was ringing"
    else:
        assert ann_result.received_requests == ["INVITE", "ACK", "BYE"]
        gap = sip_gap(caller_result, "BYE", ann_result, "BYE")
        expected = (1, 1, "Ann", AttemptEnd.CALLER_HUNG_UP, 200, ConfirmResult.CANCELLED, None)
        situation = "while Ann was being asked to accept the call"
    print(f"caller's BYE -> Ann's {'CANCEL' if agent_state == 'ringing' else 'BYE'}: {gap * 1000:.1f} ms")
    assert 0 <= gap < 0.100
    assert attempt_rows(attempts) == [expected]  # Ben is never called
    assert call.outcome is Outcome.CALLER_HUNG_UP and call.end_reason == f"caller hung up {situation}"
    assert attempts[0].end_reason == f"the caller hung up {situation}"
    assert_times_plausible(call, attempts)
    assert call.wait_time == pytest.approx(1.2, abs=0.3)
    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()


# === shutdown ===================================================================================


def test_shutdown_ends_every_call_cleanly(testbed: TestBed) -> None:
    """SIGTERM while one call is bridged (support) and another rings an agent (sales): both callers
    get a BYE, the bridged agent a BYE, the ringing one a CANCEL; the records are closed; the
    daemon un-registers both accounts and exits 0."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [
            {"name": "support", "account": "pbx", **prompts, "agent": [{"name": "Ann", "number": "agent1"}]},
            {"name": "sales", "account": "pbx2", **prompts, "agent": [{"name": "Ben", "number": "agent2"}]},
        ],
        accounts=[("pbx", "hotline"), ("pbx2", "hotline2")],
    )
    ann = testbed.registered_sipp("agent1", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1")})
    ben = testbed.registered_sipp("agent2", "uas_noanswer")
    pcap = testbed.pcap(RtpStream().audio(tone(CALLER_HZ, 10.0)))
    first = testbed.caller(to="hotline", params={"pcap": pcap}).start()
    second = testbed.caller(user="caller2", to="hotline2", params={"pcap": pcap}).start()

    def both_in_progress() -> bool:
        calls = {c.hotline: (c, a) for c, a in hotline.calls()}
        support, sales = calls.get("support"), calls.get("sales")
        return bool(support and support[0].bridged and sales and sales[1] and sales[1][0].ringing)

    poll(both_in_progress, timeout=15, what="one call bridged and one ringing", daemon=hotline.daemon)
    hotline.daemon.stop_clean(timeout=15)
    first_result, second_result = first.wait(timeout=15).assert_ok(), second.wait(timeout=15).assert_ok()
    ann_result, ben_result = ann.wait(timeout=15).assert_ok(), ben.wait(timeout=15).assert_ok()

    assert first_result.received_requests == ["BYE"] and second_result.received_requests == ["BYE"]
    assert ann_result.received_requests == ["INVITE", "ACK", "BYE"]
    assert ben_result.received_requests == ["INVITE", "CANCEL", "ACK"]
    for user in ("hotline", "hotline2"):
        assert testbed.pbx.contacts(user) == []
    calls = {c.hotline: (c, a) for c, a in hotline.calls()}
    support, support_attempts = calls["support"]
    sales, sales_attempts = calls["sales"]
    assert support.outcome is Outcome.CONNECTED and support.agent == "Ann"
    assert (support.end_reason or "").startswith("the daemon shut down after ")
    assert attempt_rows(support_attempts) == [
        (1, 1, "Ann", AttemptEnd.SHUTDOWN, 200, ConfirmResult.ACCEPTED, DtmfMethod.RFC4733)
    ]
    assert sales.outcome is Outcome.FAILED and sales.end_reason == "the daemon shut down while Ben's phone was ringing"
    assert attempt_rows(sales_attempts) == [(1, 1, "Ben", AttemptEnd.SHUTDOWN, None, None, None)]
    for call, attempts in calls.values():
        assert_times_plausible(call, attempts)
    assert_cli_shows(hotline, list(calls.values()))


def test_caller_media_stops_while_bridged(testbed: TestBed) -> None:
    """A caller's phone that vanishes without a BYE: its RTP stops while bridged, and after
    sip.media_timeout the hotline ends the call - a BYE to both phones."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [{"name": "support", **prompts, "agent": [{"name": "Ann", "number": "agent1"}]}],
        sip={"media_timeout": 1.0},
    )
    agent_media = testbed.media()
    agent = testbed.registered_sipp(
        "agent1",
        "uas_answer_info",
        params={"info": info_dtmf_requests("1"), "info_after_ms": 300, "rtp_ip": agent_media.host,
                "rtp_port": agent_media.port},
    )  # fmt: skip
    caller_media = testbed.media()
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": caller_media.host, "rtp_port": caller_media.port}
    ).start()
    talk(caller_media, RtpStream().audio(tone(CALLER_HZ, 2.0)))  # then silence on the wire
    talk(agent_media, RtpStream().audio(tone(AGENT_HZ, 10.0)))
    caller_result = caller.wait(timeout=20).assert_ok()
    agent_result = agent.wait(timeout=20).assert_ok()
    call, attempts = hotline.wait_call()

    assert caller_result.received_requests == ["BYE"] and agent_result.received_requests[-1] == "BYE"
    assert call.outcome is Outcome.CONNECTED and call.bridged is not None
    assert (call.end_reason or "").startswith("the caller's media stopped after ")
    assert attempt_rows(attempts) == [
        (1, 1, "Ann", AttemptEnd.MEDIA_TIMEOUT, 200, ConfirmResult.ACCEPTED, DtmfMethod.INFO)
    ]
    assert_times_plausible(call, attempts)
    assert call.ended is not None and call.answered is not None
    # 2 s of RTP, then the 1 s timeout, noticed within 0.5 s (the media engine looks at each leg
    # that often), plus scheduling on a busy machine.
    assert 2.0 + 1.0 - 0.1 <= call.ended - call.answered <= 2.0 + 1.0 + 0.5 + 0.5
    assert_cli_shows(hotline, [(call, attempts)])
    hotline.assert_clean_log()
