"""Hostile input end to end: a full daemon under attack while two legitimate hotline calls go on.

The daemon (UDP and TCP on one port) registers two extensions with Kamailio, each a hotline with
one agent; two callers call at once, each agent accepts with SIP INFO "1", and every phone's media
is an :class:`~tests.e2e.harness.RtpEndpoint` that records what the daemon sends.  Meanwhile an
attacker on another loopback address sends

* malformed SIP datagrams the daemon can answer (400, 505 for a SIP version it does not speak) and
  garbage it cannot (binary, HTTP, a TLS ClientHello): the answers are captured;
* oversized datagrams (beyond the daemon's datagram limit);
* truncated TCP streams (a Content-Length larger than what is sent, then FIN), a TCP message
  declaring more than the daemon takes, and a slow-loris peer trickling a request byte by byte;
* once the calls are bridged: garbage to every port of the RTP range, RTP from a foreign address
  to the four legs' ports, and garbage from a latched phone's own address.

Every legitimate call must complete (call log CONNECTED, the agent's audio heard by the caller
and the caller's by the agent), the foreign RTP must never reach the other party, every kind of
attack must move its counter (``GET /metrics``), and the daemon's log must have no traceback.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from typing import Final

import pytest

from sipcallhunt.records import ConfirmResult, DtmfMethod, Outcome
from sipcallhunt.sip.useragent import REFUSALS_LOGGED
from tests.e2e.harness import RtpStream, TestBed, assert_tones, info_dtmf_requests, tone
from tests.e2e.harness.metrics import Metrics
from tests.e2e.harness.rtp import ReceivedPacket, RtpPacket
from tests.e2e.test_hotline import (
    AGENT_HZ,
    CALLER_HZ,
    audio_between,
    first_packet_with,
    start_hotline,
    talk,
    write_prompts,
)
from tests.e2e.test_tollfraud import RawSip, listen_address

pytestmark = pytest.mark.e2e

ATTACK_SECONDS: Final = 20.0
"""The attacker's SIP loop stops by itself after this long (the calls take about 10 s)."""
SILENT_CONNECTIONS: Final = 40
"""TCP connections the flood opens and never uses (the daemon takes 32 from one address)."""
FOREIGN_PAYLOAD: Final = bytes([0x2A]) * 160
"""What the foreign RTP carries: 20 ms of a constant PCMU value no tone ever encodes to."""
FOREIGN_SSRC: Final = 0x0BADF00D


def malformed_requests(local: tuple[str, int], target: tuple[str, int]) -> list[tuple[str, bytes, int | None]]:
    """(name, datagram, expected status or None for no answer) for one round of attacks."""
    host, port = target

    def request(first_line: str, *lines: str, body: str = "", length: int | None = None) -> tuple[bytes, str]:
        branch = "z9hG4bK" + secrets.token_hex(6)
        head = [
            first_line,
            f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch={branch};rport",
            f"From: <sip:evil@{local[0]}>;tag={secrets.token_hex(3)}",
            f"To: <sip:hotline@{host}>",
            f"Call-ID: {secrets.token_hex(6)}@evil",
            *lines,
            f"Content-Length: {len(body) if length is None else length}",
        ]
        return ("\r\n".join(head) + "\r\n\r\n" + body).encode(), branch

    invite = f"INVITE sip:hotline@{host}:{port} SIP/2.0"
    options = f"OPTIONS sip:hotline@{host}:{port} SIP/2.0"
    cases = [
        (
            "Contact without '>'",
            *request(invite, "CSeq: 1 INVITE", "Contact: <sip:evil@192.0.2.1", "Max-Forwards: 70"),
            400,
        ),
        ("CSeq method differs", *request(options, "CSeq: 1 BYE", "Max-Forwards: 70"), 400),
        ("Max-Forwards not a number", *request(options, "CSeq: 1 OPTIONS", "Max-Forwards: lots"), 400),
        ("body shorter than Content-Length", *request(options, "CSeq: 1 OPTIONS", body="v=0\r\n", length=300), 400),
        ("header line without a colon", *request(options, "CSeq: 1 OPTIONS", "this is no header"), 400),
        ("CSeq not a number", *request(options, "CSeq: one OPTIONS"), 400),
        ("SIP/3.0", *request(f"OPTIONS sip:hotline@{host}:{port} SIP/3.0", "CSeq: 1 OPTIONS"), 505),
    ]
    out: list[tuple[str, bytes, int | None]] = [(name, data, status) for name, data, _, status in cases]
    out += [
        ("binary", os.urandom(300), None),
        ("HTTP", f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), None),
        ("TLS ClientHello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64), None),
        ("request line only", f"{invite}\r\n\r\n".encode(), None),
    ]
    return out


def branch_of(data: bytes) -> bytes | None:
    start = data.find(b";branch=")
    if start < 0:
        return None
    end = start + 8
    while end < len(data) and data[end : end + 1] not in (b";", b"\r", b" ", b","):
        end += 1
    return data[start + 8 : end]


class Attacker:
    """The SIP side of the attack, in threads, bounded in time: rounds of malformed and oversized
    datagrams, TCP streams cut short or too large, and one slow-loris connection."""

    def __init__(self, local_ip: str, target: tuple[str, int], flood_ip: str, bystander_ip: str) -> None:
        self.local_ip = local_ip
        self.target = target
        self.flood_ip = flood_ip
        self.bystander_ip = bystander_ip
        self.flood: tuple[int, int] | None = None
        self.bystander_status: int | None = None
        self.stop = threading.Event()
        self.answers: dict[str, list[int | None]] = {}
        self.rounds = 0
        self.oversized = 0
        self.truncated = 0
        self.too_large_tcp = 0
        self.slow_loris_closed_after: float | None = None
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._guard(self._sip_rounds), name="attack-sip", daemon=True),
            threading.Thread(target=self._guard(self._slow_loris), name="attack-loris", daemon=True),
            threading.Thread(target=self._guard(self._silent_flood), name="attack-flood", daemon=True),
        ]

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001  # the test reports it
                self.errors.append(f"{fn.__name__}: {exc!r}")

        return run

    def start(self) -> Attacker:
        for thread in self._threads:
            thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(ATTACK_SECONDS + 5)
        assert not self.errors, self.errors

    def _sip_rounds(self) -> None:
        deadline = time.monotonic() + ATTACK_SECONDS
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.local_ip, 0))
            while not self.stop.is_set() and time.monotonic() < deadline:
                for name, data, expected in malformed_requests(sock.getsockname(), self.target):
                    sock.sendto(data, self.target)
                    self.answers.setdefault(name, []).append(self._answer(sock, data, expected))
                for size in (20_000, 65_000):  # both beyond the daemon's datagram limit
                    sock.sendto(oversized_options(sock.getsockname(), self.target, size), self.target)
                    self.oversized += 1
                self._truncated_tcp()
                self._too_large_tcp()
                self.rounds += 1
                self.stop.wait(0.3)

    def _answer(self, sock: socket.socket, data: bytes, expected: int | None) -> int | None:
        """The status of the answer to ``data`` (None: no answer within the wait)."""
        branch = branch_of(data) if expected is not None else None
        deadline = time.monotonic() + (2.0 if expected is not None else 0.2)
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                reply = sock.recv(65535)
            except TimeoutError:
                return None
            if reply.startswith(b"SIP/2.0 ") and (branch is None or branch in reply):
                return int(reply[8:11])
        return None

    def _truncated_tcp(self) -> None:
        """A whole head announcing a 400-byte body, 20 bytes of it, then FIN."""
        with socket.create_connection(self.target, timeout=5.0, source_address=(self.local_ip, 0)) as conn:
            host, port = conn.getsockname()
            conn.sendall(
                f"OPTIONS sip:hotline@{self.target[0]} SIP/2.0\r\nVia: SIP/2.0/TCP {host}:{port};branch=z9hG4bK"
                f"{secrets.token_hex(6)}\r\nFrom: <sip:evil@{host}>;tag=1\r\nTo: <sip:hotline@{self.target[0]}>\r\n"
                f"Call-ID: {secrets.token_hex(6)}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 400\r\n\r\n"
                "v=0\r\no=- 1 1 IN IP4 ".encode()
            )
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(5.0)
            assert conn.recv(65535) == b"", "the daemon answered a truncated message"
        self.truncated += 1

    def _too_large_tcp(self) -> None:
        """A head announcing a body beyond the daemon's message limit: it closes the connection."""
        with socket.create_connection(self.target, timeout=5.0, source_address=(self.local_ip, 0)) as conn:
            conn.sendall(
                f"MESSAGE sip:hotline@{self.target[0]} SIP/2.0\r\nCall-ID: x\r\n".encode()
                + b"Content-Length: 10000000\r\n\r\n"
                + b"A" * 1000
            )
            conn.settimeout(5.0)
            try:
                while conn.recv(65535):
                    pass
            except ConnectionResetError:
                pass
        self.too_large_tcp += 1

    def _silent_flood(self) -> None:
        """:data:`SILENT_CONNECTIONS` connections from one address that send nothing; meanwhile a
        request over TCP from another address.  ``flood``: (closed by the daemon at once, later)."""
        conns = []
        try:
            for _ in range(SILENT_CONNECTIONS):
                conns.append(socket.create_connection(self.target, timeout=5.0, source_address=(self.flood_ip, 0)))
            time.sleep(0.5)
            closed = [False] * len(conns)
            with RawSip.tcp(self.bystander_ip, self.target) as raw:
                self.bystander_status, _ = raw.final_status(raw.request("OPTIONS", f"sip:hotline@{self.target[0]}"))
            at_once = self._closed(conns, closed, time.monotonic() + 0.2)
            later = self._closed(conns, closed, time.monotonic() + ATTACK_SECONDS)
            self.flood = (at_once, later)
        finally:
            for conn in conns:
                conn.close()

    @staticmethod
    def _closed(conns: list[socket.socket], closed: list[bool], deadline: float) -> int:
        """How many of ``conns`` not yet ``closed`` the daemon closes before ``deadline``."""
        count = 0
        for i, conn in enumerate(conns):
            if closed[i]:
                continue
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                closed[i] = conn.recv(1) == b""
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed[i] = True
            count += closed[i]
        return count

    def _slow_loris(self) -> None:
        """One byte of a request every 0.2 s until the daemon closes the connection (bounded)."""
        message = (
            f"OPTIONS sip:hotline@{self.target[0]} SIP/2.0\r\nVia: SIP/2.0/TCP {self.local_ip}:5060;branch=z9hG4bKloris"
            + "\r\nX-Slow: "
            + "z" * 400
        ).encode()
        started = time.monotonic()
        with socket.create_connection(self.target, timeout=5.0, source_address=(self.local_ip, 0)) as conn:
            conn.settimeout(0.2)
            for i in range(len(message)):
                if time.monotonic() - started > ATTACK_SECONDS:
                    return
                try:
                    conn.send(message[i : i + 1])
                    if conn.recv(1) == b"":
                        break  # closed by the daemon
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
            else:
                return
        self.slow_loris_closed_after = time.monotonic() - started


def oversized_options(local: tuple[str, int], target: tuple[str, int], size: int) -> bytes:
    """A well-formed OPTIONS padded to ``size`` bytes (it would be answered 200 if it were taken)."""
    head = (
        f"OPTIONS sip:hotline@{target[0]}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
        f"From: <sip:evil@{local[0]}>;tag=big\r\nTo: <sip:hotline@{target[0]}>\r\nCall-ID: {secrets.token_hex(6)}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nX-Padding: "
    )
    tail = "\r\nContent-Length: 0\r\n\r\n"
    return (head + "p" * (size - len(head) - len(tail)) + tail).encode()


def rtp_attack(attacker_ip: str, rtp_range: tuple[int, int], legs: list[tuple[str, int]]) -> tuple[int, int]:
    """Garbage to every port of the range, then 1 s of foreign RTP to each leg's port; returns
    (garbage datagrams to the legs' RTP ports, foreign RTP packets sent)."""
    garbage = [b"", b"\x80", b"\x00" * 11, b"\x40" + os.urandom(40), os.urandom(200)]
    to_legs = 0
    foreign = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((attacker_ip, 0))
        host = legs[0][0]
        for port in range(rtp_range[0], rtp_range[1] + 1):
            for junk in garbage:
                sock.sendto(junk, (host, port))
                to_legs += (host, port) in legs and junk != b""
        start = time.monotonic()
        for n in range(50):
            time.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
            packet = RtpPacket(
                payload_type=0, sequence=1000 + n, timestamp=160 * n, ssrc=FOREIGN_SSRC, payload=FOREIGN_PAYLOAD
            ).to_bytes()
            for leg in legs:
                sock.sendto(packet, leg)
                foreign += 1
    return to_legs, foreign


def hears(received: Sequence[ReceivedPacket], hz: float) -> bool:
    """Whether the last packets carry the tone ``hz``."""
    try:
        first_packet_with(received[-10:], hz)
    except AssertionError:
        return False
    return True


def delta(after: Metrics, before: Metrics, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def test_hostile_input_while_two_calls_complete(testbed: TestBed) -> None:
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [
            {"name": "support", "account": "pbx", **prompts, "agent": [{"name": "Ann", "number": "agent1"}]},
            {"name": "sales", "account": "pbx2", **prompts, "agent": [{"name": "Bob", "number": "agent2"}]},
        ],
        accounts=(("pbx", "hotline"), ("pbx2", "hotline2")),
        sip={"transports": ["udp", "tcp"]},
    )
    target = listen_address(hotline)
    first, last = tomllib.loads(hotline.config.read_text())["sip"]["rtp_ports"]
    before = hotline.daemon.metrics()
    attacker_ip = testbed.address()
    attacker = Attacker(attacker_ip, target, testbed.address(), testbed.address()).start()

    calls = []
    for caller_user, extension, agent_user in (("caller", "hotline", "agent1"), ("caller2", "hotline2", "agent2")):
        agent_media = testbed.media()
        agent = testbed.registered_sipp(
            agent_user,
            "uas_answer_info",
            params={"info": info_dtmf_requests("1"), "info_after_ms": 600, "call_ms": 7000,
                    "rtp_ip": agent_media.host, "rtp_port": agent_media.port},
        )  # fmt: skip
        caller_media = testbed.media()
        caller = testbed.caller(
            "uac_call_quiet",
            user=caller_user,
            to=extension,
            params={"rtp_ip": caller_media.host, "rtp_port": caller_media.port, "call_ms": 30000},
        ).start()
        calls.append((caller, agent, caller_media, agent_media))
    legs = []
    for _, _, caller_media, agent_media in calls:
        legs.append(talk(caller_media, RtpStream().audio(tone(CALLER_HZ, 12.0)), timeout=15))
        legs.append(talk(agent_media, RtpStream().audio(tone(AGENT_HZ, 12.0)), timeout=15))
    for _, _, caller_media, _ in calls:  # both calls bridged: the callers hear their agents
        caller_media.wait_until(lambda r: hears(r, AGENT_HZ), timeout=15, what="the agent's voice")

    # The RTP attack: garbage everywhere, foreign RTP to the four latched legs, garbage from a phone.
    garbage_to_legs, foreign = rtp_attack(attacker_ip, (first, last), legs)
    caller_media = calls[0][2]
    latched_garbage = 0
    for junk in (b"\x80\x00", b"\x00" * 40, b"\x8f" + bytes(30)):  # too short / version 0 / 15 CSRCs
        caller_media._sock.sendto(junk, legs[0])  # type: ignore[union-attr]  # from the latched address itself
        latched_garbage += 1

    for caller, agent, _, _ in calls:
        caller.wait(timeout=30).assert_ok()
        agent.wait(timeout=30).assert_ok()
    attacker.finish()
    records = hotline.wait_calls(2, timeout=20)
    after = hotline.daemon.metrics()

    # --- the legitimate calls: connected, audio both ways, no foreign packet relayed ----------------
    assert sorted((c.hotline, c.outcome, c.agent) for c, _ in records) == [
        ("sales", Outcome.CONNECTED, "Bob"),
        ("support", Outcome.CONNECTED, "Ann"),
    ]
    for _, attempts in records:
        assert [(a.confirm, a.dtmf_method) for a in attempts] == [(ConfirmResult.ACCEPTED, DtmfMethod.INFO)]
    for _, _, caller_media, agent_media in calls:
        at_caller = first_packet_with(caller_media.received, AGENT_HZ).time
        assert_tones(audio_between(caller_media, at_caller + 0.1), present=[AGENT_HZ], min_fraction=0.8)
        at_agent = first_packet_with(agent_media.received, CALLER_HZ).time
        assert_tones(audio_between(agent_media, at_agent + 0.1), present=[CALLER_HZ], min_fraction=0.8)
        for media in (caller_media, agent_media):
            assert not [r for r in media.received if r.packet.payload == FOREIGN_PAYLOAD], "foreign RTP relayed"
            assert media.malformed == 0  # no garbage relayed either
            assert {r.source for r in media.received} == {media.received[0].source}

    # --- the SIP attacks: answered or dropped, and counted -----------------------------------------
    assert attacker.rounds >= 3
    expected = {name: status for name, _, status in malformed_requests(("0.0.0.0", 0), target)}
    for name, statuses in attacker.answers.items():
        assert set(statuses) == {expected[name]}, (name, statuses)
    assert attacker.slow_loris_closed_after is not None, "the slow-loris peer was never cut off"
    answerable = sum(1 for s in expected.values() if s is not None)
    sip_ua = "sipcallhunt_sip_ua_total"
    transport = "sipcallhunt_sip_transport_total"
    assert delta(after, before, sip_ua, counter="malformed") >= attacker.rounds * len(expected), after.labels(sip_ua)
    assert delta(after, before, transport, counter="oversized") == attacker.oversized
    assert delta(after, before, transport, counter="tcp_truncated") == attacker.truncated
    assert delta(after, before, transport, counter="tcp_framing_errors") >= attacker.too_large_tcp
    # 32 silent connections from one address taken, and closed after a while; 8 refused at once;
    # meanwhile another address's request over TCP was answered
    assert attacker.flood == (SILENT_CONNECTIONS - 32, 32)
    assert attacker.bystander_status == 200
    assert delta(after, before, transport, counter="tcp_refused") == SILENT_CONNECTIONS - 32
    assert delta(after, before, transport, counter="tcp_slow_peers") == 1 + 32  # the slow-loris, the silent ones
    log = hotline.daemon.log_text()
    answered = re.findall(rf"(\d{{3}}) to malformed \w+ from udp:{re.escape(attacker_ip)}:\d+", log)
    # logged ten times a minute per address (then one line saying so), counted every time
    assert answered == ["400"] * 6 + ["505", "400", "400", "400"], answered
    assert f"more than {REFUSALS_LOGGED} refused requests from {attacker_ip} within" in log
    not_logged = delta(after, before, sip_ua, counter="refusals_not_logged")
    assert not_logged == answerable * attacker.rounds - REFUSALS_LOGGED
    assert f"closing TCP connection from tcp:{attacker_ip}:" in log  # the slow-loris, by its address
    assert re.search(rf"TCP connection from tcp:{re.escape(attacker_ip)}:\d+ closed with \d+ bytes of a message", log)

    # --- the RTP attacks: dropped and counted ---------------------------------------------------------
    dropped = "sipcallhunt_rtp_dropped_total"
    assert delta(after, before, dropped, reason="foreign_source") >= foreign + garbage_to_legs, after.labels(dropped)
    assert delta(after, before, dropped, reason="malformed") >= latched_garbage, after.labels(dropped)
    assert delta(after, before, dropped, reason="malformed_rtcp") > 0, after.labels(dropped)
    hotline.assert_clean_log()
