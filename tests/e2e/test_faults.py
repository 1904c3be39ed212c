"""Faults end to end: a PBX that dies mid-call, a lossy SIP path, a vanished agent phone, SIGTERM and
kill -9 during calls, and a SIGHUP with a configuration the daemon cannot read.

Every test runs the real daemon against a real Kamailio with sipp phones on loopback, and judges by
what the phones saw, the call log and the daemon's own log.  Timers are short (keep-alives every
second, a 1 s media timeout) to keep the suite fast; the durations each test relies on are named
constants next to it.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
import tomllib
from collections.abc import Sequence
from typing import Any, Final

from sipcallhunt.records import AttemptEnd, ConfirmResult, DtmfMethod, Outcome
from tests.e2e.harness import RtpStream, TestBed, info_dtmf_requests, tone
from tests.e2e.harness.lossy import TO_INSIDE, TO_OUTSIDE, LossyForwarder
from tests.e2e.harness.ports import free_port, free_port_range, port_is_free, toml_dumps
from tests.e2e.test_hotline import (
    AGENT_HZ,
    CALLER_HZ,
    EXTRA_USERS,
    FAST_HOTLINE,
    Hotline,
    agent_pcap,
    assert_times_plausible,
    attempt_rows,
    audio_between,
    poll,
    start_hotline,
    talk,
    tone_share,
    write_prompts,
)


def _hotline_table(bed: TestBed, **extra: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"name": "support", "account": "pbx", **FAST_HOTLINE, **write_prompts(bed.workdir / "p")}
    table.update(extra)
    table["agent"] = [{"number": a} if isinstance(a, str) else dict(a) for a in table.get("agent", [])]
    return table


# === a lossy SIP path ============================================================================

LOSS: Final = 0.05
LOSSY_CALLS: Final = 12
LOSS_SEED: Final = 21
"""Seeds 21 (PBX → daemon) and 22 (daemon → PBX): drops at datagrams 10, 17, 22, 37, 60 and 2, 17, 40, 42 (5-6 % of
what a run carries each way), so both directions lose some within the first calls."""


def test_every_call_completes_through_five_percent_sip_loss(testbed: TestBed) -> None:
    """5 % of the SIP datagrams between Kamailio and the daemon are lost, each way (a seeded lossy
    forwarder: the daemon advertises the forwarder's address and uses it as its outbound proxy).
    Ten hotline calls one after another, each accepted by the agent with a 1 and bridged: every one
    is CONNECTED in the call log, and the forwarder dropped datagrams both ways that were then
    retransmitted."""
    bed = testbed
    bed.users = tuple(dict.fromkeys((*bed.users, *EXTRA_USERS)))
    pbx = bed.pbx
    inside, public = bed.address(), bed.address()
    sip_port = free_port(inside)
    rtp_first, rtp_last = free_port_range(inside, 20)
    media_ports = range(rtp_first, rtp_last + 1)
    assert pbx.port != sip_port and pbx.port not in media_ports and sip_port not in media_ports
    assert all(port_is_free(public, p, tcp=False) for p in (sip_port, pbx.port, *media_ports))
    forwarder = LossyForwarder(
        public,
        inside=(inside, sip_port),
        outside=pbx.address,
        sip_ports=(sip_port, pbx.port),
        media_ports=media_ports,
        loss=LOSS,
        seed=LOSS_SEED,
    ).start()
    try:
        calllog = bed.workdir / "calls.sqlite3"
        data = {
            "sip": {
                "listen": f"{inside}:{sip_port}",
                "public_address": public,
                "transports": ["udp"],
                "rtp_ports": [rtp_first, rtp_last],
                "keepalive_interval": 5.0,
            },
            "account": [
                {
                    "name": "pbx",
                    "registrar": f"sip:{pbx.host}:{pbx.port}",
                    "outbound_proxy": f"sip:{public}:{sip_port}",
                    "username": "hotline",
                    "password": bed.password("hotline"),
                }
            ],
            "hotline": [_hotline_table(bed, agent=[{"name": "Ann", "number": "agent1", "ring_timeout": 10.0}])],
            "calllog": {"path": str(calllog)},
            "logging": {"level": "DEBUG"},
            "metrics": {"listen": f"{inside}:{free_port(inside)}"},
        }
        config = bed.workdir / "sipcallhunt.toml"
        config.write_text(toml_dumps(data), encoding="utf-8")
        daemon = bed.daemon(config).start()
        contacts = daemon.wait_registered(pbx, "hotline", timeout=20)
        assert contacts == [f"sip:hotline@{public}:{sip_port}"]  # the PBX reaches it through the forwarder
        hotline = Hotline(bed, config, calllog, daemon)

        agent = bed.registered_sipp(
            "agent1",
            "uas_answer_dtmf",
            calls=LOSSY_CALLS,
            timeout=120,
            params={"pcap": agent_pcap(bed, "1", seconds=1.0), "call_ms": 600},
        )
        for n in range(LOSSY_CALLS):
            result = bed.caller("uac_call_quiet", to="hotline", params={"call_ms": 20000}).run(timeout=30)
            result.assert_ok()
            assert result.received_requests == ["BYE"], (n, result.ladder())
        agent.wait(timeout=30).assert_ok()
        calls = hotline.wait_calls(LOSSY_CALLS, timeout=20)
        metrics = daemon.metrics()
        daemon.stop_clean(timeout=15)  # un-registers through the forwarder too
        assert pbx.contacts("hotline") == []
    finally:
        forwarder.close()

    assert len(calls) == LOSSY_CALLS
    for call, attempts in calls:
        assert call.outcome is Outcome.CONNECTED, (call, attempts)
        assert attempt_rows(attempts)[-1][3:] == (
            AttemptEnd.AGENT_HUNG_UP,
            200,
            ConfirmResult.ACCEPTED,
            DtmfMethod.RFC4733,
        )
    stats = forwarder.snapshot()
    dropped = forwarder.dropped()
    print(
        f"{LOSSY_CALLS} calls connected; SIP datagrams daemon->PBX {stats[TO_OUTSIDE]}, "
        f"PBX->daemon {stats[TO_INSIDE]}; "
        f"dropped: {[f'{p.direction}: {p.first_line}' for p in dropped]}; RTP relayed {forwarder.media_packets}"
    )
    # The daemon's own view: every call connected; the PBX's retransmissions reached it.
    retransmitted = metrics.value("sipcallhunt_sip_ua_total", counter="retransmissions_received")
    print(f"the daemon received {retransmitted:g} retransmitted requests")
    assert metrics.value("sipcallhunt_calls_total", hotline="support", outcome="connected") == LOSSY_CALLS
    assert stats[TO_INSIDE].dropped > 0 and stats[TO_OUTSIDE].dropped > 0
    assert stats[TO_INSIDE].retransmissions + stats[TO_OUTSIDE].retransmissions > 0
    # Every dropped request that its sender must retransmit (not an ACK) came again and got through.
    requests = [p for p in dropped if not p.first_line.startswith(("SIP/2.0", "ACK "))]
    passages = forwarder.passages
    for lost in requests:
        assert any(q.digest == lost.digest and q.time > lost.time and not q.dropped for q in passages), lost


# === the PBX dies mid-call =======================================================================

KEEPALIVE: Final = 1.0
OUTAGE: Final = 3.0
REREGISTER_LIMIT: Final = 30.0  # what the requirement allows after the PBX's return
RTP_PER_SECOND: Final = 50


def _packets_between(received: Sequence[Any], start: float, end: float) -> int:
    return sum(1 for r in received if start <= r.time < end)


def test_bridged_call_survives_a_pbx_restart(testbed: TestBed) -> None:
    """Kamailio is killed while a hotline call is bridged: the caller's and the agent's RTP keep
    flowing both ways through the daemon during the outage; the daemon registers again within a few
    keep-alive intervals after the PBX is back; the caller's BYE (record-routed through the new
    Kamailio) ends the call cleanly; a new call afterwards is connected."""
    hotline = start_hotline(
        testbed,
        [_hotline_table(testbed, agent=[{"name": "Ann", "number": "agent1"}])],
        sip={"keepalive_interval": KEEPALIVE},
    )
    pbx, daemon = testbed.pbx, hotline.daemon
    agent_media, caller_media = testbed.media(), testbed.media()
    agent = testbed.registered_sipp(
        "agent1",
        "uas_answer_info",
        params={"info": info_dtmf_requests("1"), "info_after_ms": 300, "rtp_ip": agent_media.host,
                "rtp_port": agent_media.port},
    )  # fmt: skip
    caller = testbed.caller(
        "uac_call_quiet",
        to="hotline",
        params={"rtp_ip": caller_media.host, "rtp_port": caller_media.port, "call_ms": 12000},
    ).start()
    talk(caller_media, RtpStream().audio(tone(CALLER_HZ, 16.0)))
    talk(agent_media, RtpStream().audio(tone(AGENT_HZ, 16.0)))
    poll(lambda: any(c.bridged for c, _ in hotline.calls()), timeout=15, what="the call bridged", daemon=daemon)
    time.sleep(0.3)  # let the relayed audio settle before the outage

    pbx.kill()
    killed = time.monotonic()
    daemon.wait_for_log(r"registrar not answering keep-alives", timeout=KEEPALIVE + 5)
    time.sleep(max(0.0, killed + OUTAGE - time.monotonic()))  # the outage itself
    pbx.start()
    back = time.monotonic()
    daemon.wait_registered(pbx, "hotline", timeout=REREGISTER_LIMIT)
    reregistered = time.monotonic() - back
    print(f"re-registered {reregistered:.2f} s after Kamailio was back (keepalive_interval {KEEPALIVE:g} s)")
    assert reregistered < REREGISTER_LIMIT

    # While the PBX was down, the relay carried both ways: (nearly) every packet (80 % allows for a
    # busy machine stalling this process), the right voice.
    window = (killed + 0.2, killed + OUTAGE - 0.2)
    expected = (window[1] - window[0]) * RTP_PER_SECOND
    at_caller = _packets_between(caller_media.received, *window)
    at_agent = _packets_between(agent_media.received, *window)
    print(f"RTP during the outage: caller got {at_caller}, agent got {at_agent} of about {expected:.0f} each")
    assert at_caller >= 0.8 * expected and at_agent >= 0.8 * expected, (at_caller, at_agent, expected)
    assert tone_share(audio_between(caller_media, *window), AGENT_HZ) > 0.8
    assert tone_share(audio_between(agent_media, *window), CALLER_HZ) > 0.8

    caller_result = caller.wait(timeout=30).assert_ok()
    agent_result = agent.wait(timeout=20).assert_ok()
    assert caller_result.sent_requests[-1] == "BYE" and agent_result.received_requests[-1] == "BYE"
    call, attempts = hotline.wait_call(timeout=10)
    assert call.outcome is Outcome.CONNECTED and call.agent == "Ann"
    assert attempt_rows(attempts) == [
        (1, 1, "Ann", AttemptEnd.CALLER_HUNG_UP, 200, ConfirmResult.ACCEPTED, DtmfMethod.INFO)
    ]
    assert_times_plausible(call, attempts)

    # New calls work: Ann's phone registers with the new Kamailio and takes the next call.
    again = testbed.registered_sipp("agent1", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1", seconds=1.0),
                                                                       "call_ms": 600})  # fmt: skip
    second = testbed.caller("uac_call_quiet", to="hotline", params={"call_ms": 20000}).run(timeout=30).assert_ok()
    again.wait(timeout=20).assert_ok()
    assert second.received_requests == ["BYE"]
    calls = hotline.wait_calls(2, timeout=10)
    assert calls[1][0].outcome is Outcome.CONNECTED
    hotline.assert_clean_log()


# === an agent phone vanishes ========================================================================

MEDIA_TIMEOUT: Final = 1.0
AGENT_TALKS: Final = 1.5


def test_vanished_agent_phone_ends_the_call_by_media_timeout(testbed: TestBed) -> None:
    """The agent accepts (INFO 1), talks for a while, then its phone is gone: no more RTP, no BYE,
    nothing answers any more.  After ``media_timeout`` the hotline ends the call: the caller gets a
    BYE, the call log says why, and the attempt ended by media timeout."""
    hotline = start_hotline(
        testbed,
        [_hotline_table(testbed, agent=[{"name": "Ann", "number": "agent1"}])],
        sip={"media_timeout": MEDIA_TIMEOUT},
    )
    agent_media, caller_media = testbed.media(), testbed.media()
    agent = testbed.registered_sipp(
        "agent1",
        "uas_vanish",
        params={"info": info_dtmf_requests("1"), "info_after_ms": 300, "vanish_after_ms": 500,
                "rtp_ip": agent_media.host, "rtp_port": agent_media.port},
    )  # fmt: skip
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": caller_media.host, "rtp_port": caller_media.port}
    ).start()
    talk(caller_media, RtpStream().audio(tone(CALLER_HZ, 15.0)))
    talk(agent_media, RtpStream().audio(tone(AGENT_HZ, AGENT_TALKS)))  # then the phone is silent
    silent_from = time.time() + AGENT_TALKS  # the wall clock, as in the call log
    agent_result = agent.wait(timeout=20).assert_ok()
    caller_result = caller.wait(timeout=20).assert_ok()
    call, attempts = hotline.wait_call(timeout=15)

    assert agent_result.received_requests == ["INVITE", "ACK"] and agent_result.sent_requests == ["INFO"]
    assert caller_result.received_requests == ["BYE"] and "BYE" not in caller_result.sent_requests
    assert call.outcome is Outcome.CONNECTED and call.agent == "Ann"
    assert (call.end_reason or "").startswith("Ann's media stopped after "), call.end_reason
    assert attempt_rows(attempts) == [
        (1, 1, "Ann", AttemptEnd.MEDIA_TIMEOUT, 200, ConfirmResult.ACCEPTED, DtmfMethod.INFO)
    ]
    assert_times_plausible(call, attempts)
    # The agent's last packet, then media_timeout, noticed within the media engine's check interval
    # (0.5 s); the upper bound leaves room for a busy machine.
    assert call.ended is not None
    after = call.ended - silent_from
    print(f"the call ended {after:.2f} s after the agent's RTP stopped (media_timeout {MEDIA_TIMEOUT:g} s)")
    assert MEDIA_TIMEOUT - 0.2 <= after <= MEDIA_TIMEOUT + 0.5 + 1.0
    assert "media" in (attempts[0].end_reason or ""), attempts[0].end_reason
    hotline.assert_clean_log()


# === kill -9 during calls =======================================================================

DURABILITY: Final = 0.2
"""How long after a call's end the test kills the daemon.  The writer thread commits a call's final
record as soon as it is queued (measured: under 2 ms, tests/test_calllog.py); 0.2 s leaves room for
a busy machine."""


def test_kill_9_keeps_finished_calls_and_closes_the_interrupted_one(testbed: TestBed) -> None:
    """Three calls: A (support) finished long before, B (sales) bridged at the kill, C (support)
    finished just before it.  After kill -9 the database is intact and A and C are complete; the
    restarted daemon starts normally and closes B as failed ("interrupted"), with its attempt."""
    support = _hotline_table(testbed, agent=[{"name": "Ann", "number": "agent1"}])
    sales = _hotline_table(testbed, name="sales", account="pbx2", agent=[{"name": "Ben", "number": "agent2"}])
    hotline = start_hotline(testbed, [support, sales], accounts=[("pbx", "hotline"), ("pbx2", "hotline2")])
    daemon = hotline.daemon
    ann = testbed.registered_sipp(
        "agent1", "uas_answer_dtmf", calls=2, params={"pcap": agent_pcap(testbed, "1", seconds=1.0), "call_ms": 600}
    )
    ben = testbed.registered_sipp("agent2", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1", seconds=8.0)})
    testbed.caller("uac_call_quiet", to="hotline", params={"call_ms": 20000}).run(timeout=30).assert_ok()  # A
    b = testbed.caller("uac_call_quiet", user="caller2", to="hotline2", params={"call_ms": 30000}).start()
    poll(
        lambda: any(c.hotline == "sales" and c.bridged for c, _ in hotline.calls()),
        timeout=15,
        what="call B bridged",
        daemon=daemon,
    )
    c = testbed.caller("uac_call_quiet", to="hotline", params={"call_ms": 20000}).run(timeout=30).assert_ok()
    assert c.received_requests == ["BYE"]
    daemon.wait_for_log(r"(?s)call ended \(connected\).*call ended \(connected\)", timeout=5)  # A and C
    time.sleep(DURABILITY)
    daemon.kill()
    ann.wait(timeout=10).assert_ok()

    # The file as the killed daemon left it: intact, A and C complete, B still open.
    with sqlite3.connect(f"file:{hotline.calllog}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    logged = hotline.calls()
    finished = [(call, attempts) for call, attempts in logged if call.hotline == "support"]
    assert len(finished) == 2
    for call, attempts in finished:
        assert call.outcome is Outcome.CONNECTED and call.ended is not None, call
        assert attempt_rows(attempts) == [
            (1, 1, "Ann", AttemptEnd.AGENT_HUNG_UP, 200, ConfirmResult.ACCEPTED, DtmfMethod.RFC4733)
        ]
        assert_times_plausible(call, attempts)
    [interrupted] = [call for call, _ in logged if call.hotline == "sales"]
    assert interrupted.outcome is None and interrupted.ended is None and interrupted.bridged is not None

    # A new run: it starts normally, registers, and closes B.
    again = testbed.daemon(hotline.config).start()
    again.wait_for_log(r"account pbx2: .*registered for", timeout=15)
    again.wait_for_log(rf"call {interrupted.call_id} \(sales, from caller2\) had no end", timeout=5)
    restarted = Hotline(testbed, hotline.config, hotline.calllog, again)
    closed, closed_attempts = next((c, a) for c, a in restarted.calls() if c.call_id == interrupted.call_id)
    assert closed.outcome is Outcome.FAILED and closed.end_reason is not None
    assert closed.end_reason.startswith("interrupted: the daemon stopped during the call")
    assert closed.ended is not None and closed.bridged is not None and closed.ended >= closed.bridged
    assert attempt_rows(closed_attempts) == [
        (1, 1, "Ben", AttemptEnd.SHUTDOWN, 200, ConfirmResult.ACCEPTED, DtmfMethod.RFC4733)
    ]
    assert_times_plausible(closed, closed_attempts)
    assert [c for c, _ in restarted.calls() if c.outcome is None] == []
    assert restarted.cli_json()  # the CLI reads the log
    again.wait_reachable(testbed.pbx, "hotline", timeout=10)
    b.terminate()
    ben.terminate()
    assert "Traceback" not in again.log_text()


# === SIGTERM during calls ========================================================================


def test_sigterm_refuses_new_calls_while_ending_the_current_ones(testbed: TestBed) -> None:
    """SIGTERM while one call is bridged (support, Ann) and another rings an agent whose phone has
    vanished (sales, Ben: nothing answers the CANCEL).  Both callers get a BYE at once and Ann a BYE;
    Ben's leg keeps the daemon in its shutdown for up to its 5 s call-end timeout — and an INVITE
    arriving then is refused with 503.  The registrations are withdrawn, the daemon exits 0, and the
    call log holds both calls, complete."""
    support = _hotline_table(testbed, agent=[{"name": "Ann", "number": "agent1"}])
    sales = _hotline_table(testbed, name="sales", account="pbx2", agent=[{"name": "Ben", "number": "agent2"}])
    hotline = start_hotline(testbed, [support, sales], accounts=[("pbx", "hotline"), ("pbx2", "hotline2")])
    daemon = hotline.daemon
    ann = testbed.registered_sipp("agent1", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1")})
    ben = testbed.registered_sipp("agent2", "uas_ring_vanish")
    first = testbed.caller("uac_call_quiet", to="hotline", params={"call_ms": 30000}).start()
    second = testbed.caller("uac_call_quiet", user="caller2", to="hotline2", params={"call_ms": 30000}).start()

    def both_in_progress() -> bool:
        calls = {c.hotline: (c, a) for c, a in hotline.calls()}
        support, sales = calls.get("support"), calls.get("sales")
        return bool(support and support[0].bridged and sales and sales[1] and sales[1][0].ringing)

    poll(both_in_progress, timeout=15, what="one call bridged and one ringing", daemon=daemon)
    ben.wait(timeout=10).assert_ok()  # Ben's phone is gone

    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGTERM)
    daemon.wait_for_log(r"sipcallhunt.daemon: stopping", timeout=5)
    host, port = tomllib.loads(hotline.config.read_text(encoding="utf-8"))["sip"]["listen"].rsplit(":", 1)
    # Straight to the daemon from the PBX's address (a trusted peer), while it is shutting down.
    late = testbed.sipp(
        "uac_rejected", local_ip=testbed.pbx.host, remote=(host, int(port)), service="hotline",
        params={"status": 503}, timeout=10,
    ).run()  # fmt: skip
    late.assert_ok()
    daemon.stop_clean(timeout=15)
    refusal = [m for m in late.messages if m.direction == "received" and (m.status or 0) >= 200]
    assert [m.first_line for m in refusal] == ["SIP/2.0 503 Shutting Down"]
    assert re.search(r"refused a call from sip:caller@\S+: shutting down \(503\)", daemon.log_text())

    assert first.wait(timeout=10).assert_ok().received_requests == ["BYE"]
    assert second.wait(timeout=10).assert_ok().received_requests == ["BYE"]
    assert ann.wait(timeout=10).assert_ok().received_requests == ["INVITE", "ACK", "BYE"]
    for user in ("hotline", "hotline2"):
        assert testbed.pbx.contacts(user) == []
    calls = {c.hotline: (c, a) for c, a in hotline.calls()}
    assert sorted(calls) == ["sales", "support"]  # the refused INVITE is no call
    call, attempts = calls["support"]
    assert call.outcome is Outcome.CONNECTED and (call.end_reason or "").startswith("the daemon shut down after ")
    assert attempt_rows(attempts) == [
        (1, 1, "Ann", AttemptEnd.SHUTDOWN, 200, ConfirmResult.ACCEPTED, DtmfMethod.RFC4733)
    ]
    call, attempts = calls["sales"]
    assert call.outcome is Outcome.FAILED and call.end_reason == "the daemon shut down while Ben's phone was ringing"
    assert attempt_rows(attempts) == [(1, 1, "Ben", AttemptEnd.SHUTDOWN, None, None, None)]
    for call, attempts in calls.values():
        assert_times_plausible(call, attempts)
    assert "Traceback" not in daemon.log_text()


# === SIGHUP with a configuration the daemon cannot read ==========================================

RELOAD_FAILED: Final = r"reload of {path} failed; the running configuration stays in force"


def _hup_and_expect(hotline: Hotline, count: int, *patterns: str) -> str:
    """SIGHUP; wait for the ``count``-th failed reload and return what the daemon said about it
    (that line and the problem lines after it), checking it matches each of ``patterns``."""
    daemon = hotline.daemon
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGHUP)
    failed = RELOAD_FAILED.format(path=re.escape(str(hotline.config)))
    poll(
        lambda: len(re.findall(failed, daemon.log_text())) >= count,
        timeout=10,
        what=f"failed reload #{count}",
        daemon=daemon,
    )
    said = re.split(failed, daemon.log_text())[count]
    said = said.split("\n20", 1)[0]  # up to the next log line (they start with the date)
    for pattern in patterns:
        assert re.search(pattern, said), (pattern, said)
    return said


def test_sighup_with_an_unreadable_config_or_prompt_keeps_the_old_one(testbed: TestBed) -> None:
    """SIGHUP while the file is gone, while a directory stands in its place, and with a new file whose
    intro prompt cannot be read (a directory) and whose hold music does not exist: each time the
    daemon says which file or key is wrong and keeps the running configuration — the next call still
    goes to Ann with the old settings, not to Bea of the broken file.  A good file then reloads."""
    hotline = start_hotline(testbed, [_hotline_table(testbed, agent=[{"name": "Ann", "number": "agent1"}])])
    config, daemon = hotline.config, hotline.daemon
    good = config.read_text(encoding="utf-8")

    config.unlink()
    _hup_and_expect(hotline, 1, r"\(file\).*cannot read: No such file or directory")
    config.mkdir()
    _hup_and_expect(hotline, 2, r"\(file\).*cannot read: Is a directory")
    config.rmdir()
    broken = tomllib.loads(good)
    folder = testbed.workdir / "p"
    (folder / "unreadable.wav").mkdir()
    broken["hotline"][0].update(
        intro=str(folder / "unreadable.wav"),
        hold_music=str(folder / "missing.wav"),
        agent=[{"name": "Bea", "number": "agent2"}],
    )
    config.write_text(toml_dumps(broken), encoding="utf-8")
    said = _hup_and_expect(hotline, 3, r"hotline\[0\]\.intro", r"hotline\[0\]\.hold_music")
    assert "unreadable.wav' is a folder" in said and "missing.wav' does not exist" in said, said
    if os.geteuid() != 0:  # root reads a mode-000 file anyway
        config.write_text(good, encoding="utf-8")
        config.chmod(0)
        _hup_and_expect(hotline, 4, r"\(file\).*cannot read: Permission denied")
        config.chmod(0o644)
    assert daemon.is_running

    # The running configuration is the old one: Ann (busy) is called, never Bea.
    ann = testbed.registered_sipp("agent1", "uas_busy")
    testbed.caller("uac_call_quiet", to="hotline", params={"call_ms": 20000}).run(timeout=20).assert_ok()
    ann.wait(timeout=10).assert_ok()
    call, attempts = hotline.wait_call()
    assert call.outcome is Outcome.NO_AGENT
    assert [(a.agent, a.number, a.end, a.sip_status) for a in attempts] == [("Ann", "agent1", AttemptEnd.BUSY, 486)]

    config.write_text(good, encoding="utf-8")
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.wait_for_log(r"configuration reloaded from .*: 1 hotline", timeout=10)
    assert "Traceback" not in daemon.log_text()
