"""The metrics endpoint of a running daemon, read as Prometheus would, before and after a call."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from sipcallhunt.records import Outcome
from tests.e2e.harness import Daemon, Metrics, RtpStream, TestBed, tone
from tests.e2e.test_hotline import CALLER_HZ, agent_pcap, poll, start_hotline, write_prompts


def metrics_when(daemon: Daemon, check: Callable[[Metrics], bool], what: str) -> Metrics:
    """Scrape until ``check`` holds."""

    def once() -> Metrics | None:
        metrics = daemon.metrics()
        return metrics if check(metrics) else None

    return poll(once, timeout=10, what=what, daemon=daemon)


def test_metrics_follow_a_call(testbed: TestBed) -> None:
    """Registered, then one connected call: the call, the relayed RTP and the SIP traffic are counted,
    and nothing is left open afterwards."""
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(testbed, [{"name": "support", **prompts, "agent": ["agent1"]}])
    daemon = hotline.daemon
    before = metrics_when(daemon, lambda m: m.value("sipcallhunt_registered", account="pbx") == 1, "registered")
    assert before.value("sipcallhunt_calls_active", hotline="support") == 0
    assert before.total("sipcallhunt_calls_total") == 0
    assert before.value("process_open_fds") > 0 and before.value("process_resident_memory_bytes") > 10e6

    ann = testbed.registered_sipp(
        "agent1", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1"), "call_ms": 1500}
    )
    stream = RtpStream().audio(tone(CALLER_HZ, 4.0))
    testbed.caller(to="hotline", params={"pcap": testbed.pcap(stream)}).run(timeout=20).assert_ok()
    ann.wait(timeout=20).assert_ok()
    call, _ = hotline.wait_call()
    assert call.outcome is Outcome.CONNECTED

    after = metrics_when(daemon, lambda m: m.value("sipcallhunt_media_legs") == 0, "every media leg closed")
    assert after.value("sipcallhunt_calls_total", hotline="support", outcome="connected") == 1
    assert after.value("sipcallhunt_calls_active", hotline="support") == 0
    assert after.value("sipcallhunt_rtp_relayed_total") > 20  # caller and agent talked through the bridge
    assert after.value("sipcallhunt_rtp_packets_total", direction="in") > 100
    assert after.value("sipcallhunt_sip_transport_total", counter="udp_in") > before.value(
        "sipcallhunt_sip_transport_total", counter="udp_in"
    )
    assert after.value("sipcallhunt_calllog_pending") == 0
    assert after.value("sipcallhunt_calllog_errors_total") == 0
    hotline.assert_clean_log()


def test_metrics_http_answers_and_survives_junk(testbed: TestBed) -> None:
    """/healthz while registered, 404 and 405 for other requests, a junk client and a silent one do not
    stop the endpoint."""
    hotline = start_hotline(
        testbed, [{"name": "support", **write_prompts(testbed.workdir / "prompts"), "agent": ["agent1"]}]
    )
    host, port = hotline.daemon.metrics_address()
    base = f"http://{host}:{port}"
    poll(
        lambda: urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200 or None,
        timeout=10,
        what="healthz 200",
    )
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/nothing", timeout=5)
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as post:
        urllib.request.urlopen(urllib.request.Request(f"{base}/metrics", data=b"x", method="POST"), timeout=5)
    assert post.value.code == 405
    with socket.create_connection((host, port), timeout=5) as junk:
        junk.sendall(b"\x00\xff garbage\r\n\r\n")
        assert junk.recv(100).startswith(b"HTTP/1.1 400")
    silent = socket.create_connection((host, port), timeout=5)  # says nothing; must not block others
    try:
        assert hotline.daemon.metrics().value("sipcallhunt_registered", account="pbx") == 1
    finally:
        silent.close()
    hotline.assert_clean_log()
