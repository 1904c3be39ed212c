"""Toll fraud end to end: nobody but the configured hunt makes the daemon place a call.

A hotline daemon registered with Kamailio (one agent, ``agent1``) is probed the ways a fraudster
would: the SIP scanner sipvicious (``svmap`` finds it, ``svwar`` tries to enumerate extensions with
INVITE, REGISTER and OPTIONS), INVITEs straight from an untrusted address to external numbers and
to the hotline with headers that name another target (Refer-To, Diversion, History-Info,
P-Asserted-Identity, Route, Max-Forwards 0), a REFER, a REGISTER, over UDP and TCP; INVITEs for
an external number that the PBX itself routes to the daemon or that come from the PBX's address;
and hotline calls whose To and extra headers name an external number (one from the PBX's address,
hunted while the agent is away, one a phone places through the PBX, which connects).

A wire tap on the daemon's address (:class:`~tests.e2e.test_sip.SipTap`) sees every SIP message
it sends: the only INVITEs ever sent by the daemon must be the hunt's, to the configured agent,
through the PBX, carrying none of the steering.  Each refused attempt must be answered 403/404
(405/481 for REFER and REGISTER), logged with its source address and counted (``GET /metrics``),
and leave no call record; the daemon keeps working.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs
import pytest

from sipcallhunt.records import Outcome
from tests.e2e.harness import RtpStream, TestBed, tone
from tests.e2e.harness.ports import free_udp_port
from tests.e2e.test_hotline import CALLER_HZ, Hotline, agent_pcap, start_hotline, talk, write_prompts
from tests.e2e.test_sip import SipTap, WireMessage

pytestmark = pytest.mark.e2e

EXTERNAL: Final = "00491701234567"
"""The premium-rate style number every fraud attempt tries to reach."""

_STATUS_RE: Final = re.compile(rb"^SIP/2\.0 (\d{3}) ")


# --- a raw SIP peer -------------------------------------------------------------------------------


@attrs.define(eq=False)
class RawSip:
    """One UDP (or TCP) socket that sends hand-made requests and collects what comes back."""

    sock: socket.socket
    target: tuple[str, int]
    transport: str = "UDP"
    _buffer: bytes = b""

    @classmethod
    def udp(cls, local_ip: str, target: tuple[str, int]) -> RawSip:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((local_ip, 0))
        return cls(sock, target)

    @classmethod
    def tcp(cls, local_ip: str, target: tuple[str, int]) -> RawSip:
        sock = socket.create_connection(target, timeout=5.0, source_address=(local_ip, 0))
        return cls(sock, target, "TCP")

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        ruri: str,
        *,
        to: str | None = None,
        headers: Sequence[str] = (),
        body: str = "",
        call_id: str | None = None,
        from_tag: str | None = None,
        cseq: int = 1,
        cseq_method: str | None = None,
        branch: str | None = None,
        max_forwards: int = 70,
        from_: str | None = None,
    ) -> bytes:
        """A request from this socket's address (no Content-Length needed in ``headers``)."""
        host, port = self.local
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {host}:{port};branch={branch or 'z9hG4bK' + secrets.token_hex(8)};rport",
            f"Max-Forwards: {max_forwards}",
            f"From: {from_ or '<sip:fraud@' + host + '>'};tag={from_tag or secrets.token_hex(4)}",
            f"To: {to or '<' + ruri + '>'}",
            f"Call-ID: {call_id or secrets.token_hex(8) + '@' + host}",
            f"CSeq: {cseq} {cseq_method or method}",
            f"Contact: <sip:fraud@{host}:{port};transport={self.transport.lower()}>",
            "User-Agent: fraud-test",
            *headers,
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def send(self, data: bytes) -> None:
        if self.transport == "UDP":
            self.sock.sendto(data, self.target)
        else:
            self.sock.sendall(data)

    def receive(self, timeout: float) -> bytes | None:
        """The next message (None after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.transport == "TCP":
                message = self._framed()
                if message is not None:
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                return None
            if self.transport == "UDP":
                if data.strip(b"\r\n"):
                    return data
            elif not data:
                return None
            else:
                self._buffer += data

    def _framed(self) -> bytes | None:
        buffer = self._buffer.lstrip(b"\r\n")
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        match = re.search(rb"^(?:content-length|l)\s*:\s*(\d+)", buffer[:end], re.IGNORECASE | re.MULTILINE)
        size = end + 4 + (int(match.group(1)) if match else 0)
        if len(buffer) < size:
            return None
        self._buffer = buffer[size:]
        return buffer[:size]

    def final_status(self, request: bytes, *, timeout: float = 5.0) -> tuple[int | None, list[bytes]]:
        """Send ``request``; the first final status to it (None if none) and every response seen."""
        branch = re.search(rb";branch=([^;\s]+)", request)
        assert branch is not None
        self.send(request)
        seen = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            data = self.receive(left)
            if data is None:
                break
            seen.append(data)
            match = _STATUS_RE.match(data)
            if match and branch.group(1) in data and int(match.group(1)) >= 200:
                if request.startswith(b"INVITE "):
                    self.send(ack_for(request, data))
                return int(match.group(1)), seen
        return None, seen

    def call(self, invite: bytes, *, refer_to: str | None = None, timeout: float = 20.0) -> list[bytes]:
        """Place ``invite`` as a call the far end answers and then ends: ACK its 200 (then, with
        ``refer_to``, ask it in the dialog to transfer there: REFER), answer its BYE; returns
        every message received."""
        self.send(invite)
        seen: list[bytes] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            data = self.receive(left)
            if data is None:
                break
            seen.append(data)
            if data.startswith(b"SIP/2.0 200 ") and b" INVITE\r\n" in data:
                self.send(ack_2xx(invite, data))
                if refer_to is not None:
                    self.send(ack_2xx(invite, data, method="REFER", cseq=2, extra=f"Refer-To: <{refer_to}>\r\n"))
                    refer_to = None
            elif data.startswith(b"BYE "):
                self.send(ok_to(data))
                return seen
            elif (match := _STATUS_RE.match(data)) and int(match.group(1)) >= 300 and b" INVITE\r\n" in data:
                return seen
        raise AssertionError(f"the call did not end within {timeout} s: {seen}")


def ack_2xx(invite: bytes, ok: bytes, *, method: str = "ACK", cseq: int | None = None, extra: str = "") -> bytes:
    """The ACK of a 2xx (RFC 3261 §13.2.2.4): to the Contact, with the dialog's tags, a new branch;
    or another request in that dialog (``method``, ``cseq``, ``extra`` header lines)."""
    contact = (header(ok, "Contact") or "").strip("<>").split(">")[0]
    via = re.sub(r";branch=[^;]+", ";branch=z9hG4bK" + secrets.token_hex(8), header(invite, "Via") or "")
    number = cseq if cseq is not None else int((header(invite, "CSeq") or "1").split()[0])
    text = (
        f"{method} {contact} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {header(invite, 'From')}\r\n"
        f"To: {header(ok, 'To')}\r\nCall-ID: {header(invite, 'Call-ID')}\r\nCSeq: {number} {method}\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    )
    return text.encode()


def ok_to(request: bytes) -> bytes:
    """A 200 OK for ``request`` (its Vias, From, To, Call-ID and CSeq)."""
    head = request.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")[1:]
    keep = [line for line in head if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")]
    return ("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode()


def header(message: bytes, name: str) -> str | None:
    head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def ack_for(invite: bytes, response: bytes) -> bytes:
    """The ACK of a non-2xx final response (RFC 3261 §17.1.1.3): the INVITE's branch and CSeq number."""
    ruri = invite.split(b" ", 2)[1].decode()
    via, from_, call_id = (header(invite, n) for n in ("Via", "From", "Call-ID"))
    cseq = (header(invite, "CSeq") or "1").split()[0]
    text = (
        f"ACK {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from_}\r\nTo: {header(response, 'To')}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"
    )
    return text.encode()


def sdp(host: str, port: int) -> str:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )


# --- the daemon's side ------------------------------------------------------------------------------


def listen_address(hotline: Hotline) -> tuple[str, int]:
    host, port = tomllib.loads(hotline.config.read_text())["sip"]["listen"].rsplit(":", 1)
    return host, int(port)


def invites_sent_by(wire: SipTap, host: str) -> list[WireMessage]:
    return [m for m in wire.messages if m.is_request and m.method == "INVITE" and m.source[0] == host]


def sipvicious(tool: str, *args: str, timeout: float = 30.0) -> str:
    """Run ``sipvicious_<tool>`` (from the test extras) and return its output."""
    program = shutil.which(f"sipvicious_{tool}") or str(Path(sys.executable).parent / f"sipvicious_{tool}")
    result = subprocess.run([program, *args], capture_output=True, text=True, timeout=timeout, check=False)
    return result.stdout + result.stderr


# --- the test ---------------------------------------------------------------------------------------

STEERING: Final = (
    f"Refer-To: <sip:{EXTERNAL}@{{pbx}}>",
    f"Diversion: <sip:{EXTERNAL}@{{pbx}}>;reason=unconditional;counter=1",
    f"History-Info: <sip:{EXTERNAL}@{{pbx}}>;index=1, <sip:hotline@{{pbx}}>;index=1.1",
    f"P-Asserted-Identity: <sip:{EXTERNAL}@{{pbx}}>",
    f"Remote-Party-ID: <sip:{EXTERNAL}@{{pbx}}>;party=calling;screen=yes",
)
"""Headers that name another target than the hotline ({pbx}: the PBX's host:port)."""


def steering(pbx: str) -> list[str]:
    return [h.format(pbx=pbx) for h in STEERING]


def test_toll_fraud_attempts_never_make_the_daemon_call_out(testbed: TestBed) -> None:
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed, [{"name": "support", **prompts, "agent": [{"name": "Ann", "number": "agent1", "ring_timeout": 5}]}]
    )
    pbx = testbed.pbx
    host, port = listen_address(hotline)
    daemon = (host, port)
    pbx_hostport = f"{pbx.host}:{pbx.port}"
    attacker = testbed.address()
    with SipTap(host) as wire:
        # --- a SIP scanner: svmap finds the daemon, svwar enumerates nothing ------------------------
        svmap = sipvicious("svmap", "-b", attacker, "-p", str(port), host)
        assert re.search(rf"{re.escape(host)}:{port}\s*\|\s*sipcallhunt\s*\|", svmap), svmap
        scanner_port = free_udp_port("0.0.0.0")
        dictionary = testbed.workdir / "extensions.txt"
        dictionary.write_text("\n".join(["100", "admin", "agent1", "hotline", "support", EXTERNAL, "700"]) + "\n")
        for method, force in (("INVITE", ()), ("INVITE", ("--force",)), ("REGISTER", ()), ("OPTIONS", ())):
            # svwar 0.3.8 ignores -b: it binds the wildcard address and sends from 127.0.0.1.
            svwar = sipvicious(
                "svwar", "-P", str(scanner_port), "-m", method, "-d", str(dictionary), *force,
                "-t", "0.02", "--maximumtime", "3", f"udp://{host}:{port}",
            )  # fmt: skip
            assert "found nothing" in svwar, (method, svwar)
        scanned = [m for m in wire.messages if m.source[0] == "127.0.0.1" and m.is_request]
        answers = {m.status for m in wire.messages if m.destination[0] == "127.0.0.1" and not m.is_request}
        assert {m.method for m in scanned} >= {"INVITE", "REGISTER", "OPTIONS"}, wire.ladder(scanned)
        # the real extension looked like any other: OPTIONS 200 for all, INVITE 403, REGISTER 405
        assert answers == {100, 200, 403, 405}, answers
        scanner_invites = sum(1 for m in scanned if m.method == "INVITE")

        # --- straight from an untrusted address ----------------------------------------------------
        with RawSip.udp(attacker, daemon) as raw:
            to_external = raw.request("INVITE", f"sip:{EXTERNAL}@{host}:{port}", body=sdp(attacker, 4000))
            via_pbx = raw.request("INVITE", f"sip:{EXTERNAL}@{pbx_hostport}", body=sdp(attacker, 4000))
            steered = raw.request(
                "INVITE",
                f"sip:hotline@{host}:{port}",
                to=f"<sip:{EXTERNAL}@{pbx_hostport}>",
                headers=[*steering(pbx_hostport), f"Route: <sip:{EXTERNAL}@{pbx_hostport};lr>"],
                body=sdp(attacker, 4000),
            )
            spent = raw.request("INVITE", f"sip:hotline@{host}:{port}", max_forwards=0, body=sdp(attacker, 4000))
            refer = raw.request(
                "REFER",
                f"sip:hotline@{host}:{port}",
                headers=[f"Refer-To: <sip:{EXTERNAL}@{pbx_hostport}>", f"Referred-By: <sip:hotline@{pbx_hostport}>"],
            )
            refer_in_dialog = raw.request(
                "REFER", f"sip:hotline@{host}:{port}", to=f"<sip:hotline@{host}>;tag=guessed",
                headers=[f"Refer-To: <sip:{EXTERNAL}@{pbx_hostport}>"],
            )  # fmt: skip
            register = raw.request("REGISTER", f"sip:{host}:{port}", to=f"<sip:hotline@{host}>")
            for name, request, expected in (
                ("INVITE to an external number", to_external, 403),
                ("INVITE for the PBX to relay", via_pbx, 403),
                ("INVITE with steering headers and a Route", steered, 403),
                ("INVITE with Max-Forwards 0", spent, 403),
                ("REFER (a transfer)", refer, 405),
                ("REFER in a made-up dialog", refer_in_dialog, 481),
                ("REGISTER", register, 405),
            ):
                status, seen = raw.final_status(request)
                assert status == expected, (name, status, seen)
        with RawSip.tcp(attacker, daemon) as raw:
            status, seen = raw.final_status(
                raw.request(
                    "INVITE", f"sip:{EXTERNAL}@{host}:{port}", headers=steering(pbx_hostport), body=sdp(attacker, 4000)
                )
            )
            assert status == 403, seen

        # --- from the PBX's own address: unknown extensions → 404 -------------------------------------
        with RawSip.udp(pbx.host, daemon) as raw:
            for ruri, to in (
                (f"sip:{EXTERNAL}@{host}:{port}", f"<sip:{EXTERNAL}@{pbx_hostport}>"),
                (f"sip:+{EXTERNAL[2:]}@{host}:{port};user=phone", f"<sip:+{EXTERNAL[2:]}@{pbx_hostport};user=phone>"),
                (f"sip:agent1@{host}:{port}", f"<sip:agent1@{pbx_hostport}>"),
            ):
                status, seen = raw.final_status(raw.request("INVITE", ruri, to=to, body=sdp(pbx.host, 4000)))
                assert status == 404, (ruri, seen)
        # ... and one the PBX itself routes: a local user dials the external number at the daemon.
        rejected = testbed.caller(
            "uac_rejected", to=EXTERNAL, params={"ruri": f"sip:{EXTERNAL}@{host}:{port}", "status": 404}
        ).run(timeout=20)
        rejected.assert_ok()

        # --- calls from the PBX's address to the hotline (Request-URI) with an external number in To
        # and steering headers.  A caller URI with a header part (a Route to smuggle) is refused 400
        # (RFC 3261 §19.1.1: no headers in From); the other is answered, hunted to agent1 only (not
        # registered yet: 480), refused its REFER to the external number (405), hears "no agent",
        # and is hung up.
        steered_media = testbed.media()
        with RawSip.udp(pbx.host, daemon) as raw:

            def steered_from(from_: str) -> bytes:
                return raw.request(
                    "INVITE",
                    f"sip:hotline@{host}:{port}",
                    to=f"<sip:{EXTERNAL}@{pbx_hostport}>",
                    from_=from_,
                    headers=steering(pbx_hostport),
                    body=sdp(*steered_media.address),
                )

            smuggled = f'"fraud" <sip:fraud@{pbx_hostport}?Route=%3Csip:{EXTERNAL}@{pbx_hostport};lr%3E>'
            assert raw.final_status(steered_from(smuggled))[0] == 400
            seen = raw.call(
                steered_from(f'"fraud" <sip:fraud@{pbx_hostport}>'), refer_to=f"sip:{EXTERNAL}@{pbx_hostport}"
            )
        first_lines = [m.split(b"\r\n", 1)[0] for m in seen]
        assert b"SIP/2.0 200 OK" in first_lines and first_lines[-1].startswith(b"BYE "), first_lines
        # the transfer asked for in the dialog is refused
        assert [header(m, "CSeq") for m in seen if m.startswith(b"SIP/2.0 405 ")] == ["2 REFER"], first_lines

        # --- the hotline reached (Request-URI) with an external number in To and steering headers:
        # it hunts its own agent, nobody else
        agent = testbed.registered_sipp(
            "agent1", "uas_answer_dtmf", params={"pcap": agent_pcap(testbed, "1", seconds=2.0), "call_ms": 1500}
        )
        media = testbed.media()
        headers = "\r\n".join(steering(pbx_hostport))
        caller = testbed.caller(
            "uac_call_headers",
            to="hotline",
            params={
                "headers": headers,
                "to_user": EXTERNAL,
                "rtp_ip": media.host,
                "rtp_port": media.port,
                "call_ms": 20000,
            },
        ).start()
        talk(media, RtpStream().audio(tone(CALLER_HZ, 8.0)))
        caller.wait(timeout=30).assert_ok()
        agent_result = agent.wait(timeout=20).assert_ok()
        call, _ = hotline.wait_calls(2)[-1]

    # --- what the daemon did: one call placed, to its agent, through the PBX -------------------------
    assert call.outcome is Outcome.CONNECTED and call.agent_number == "agent1", call
    # one call record for each answered call, none for a refused attempt
    assert [(c.caller, c.outcome) for c, _ in hotline.calls()] == [
        ("fraud", Outcome.NO_AGENT),
        ("caller", Outcome.CONNECTED),
    ]
    assert [(a.agent, a.sip_status) for c, attempts in hotline.calls() for a in attempts] == [
        ("Ann", 480),
        ("Ann", 200),
    ]
    placed = invites_sent_by(wire, host)
    assert placed and all(m.first_line.startswith(f"INVITE sip:agent1@{pbx.host}") for m in placed), wire.ladder(placed)
    assert {m.destination for m in placed} == {(pbx.host, pbx.port)}
    # (the daemon's in-dialog BYE to the caller carries the caller's To, as RFC 3261 §12.2.1.1 wants)
    assert not [m for m in placed if EXTERNAL[2:] in m.text], wire.ladder(placed)
    assert re.findall(r"INVITE sip:hotline@\S+ -> sip:(\S+?)@", pbx.log_text()) == ["agent1"]
    assert not [m for m in placed if m.header("Route")], wire.ladder(placed)
    # the agent saw none of the steering headers, and the caller as the caller
    invite = agent_result.received("INVITE")[0]
    assert EXTERNAL[2:] not in invite.text, invite.text
    assert (invite.header("P-Asserted-Identity") or "").startswith("<sip:caller@")

    # --- each attempt logged with its source, and counted ------------------------------------------------
    log = hotline.daemon.log_text()
    untrusted = re.findall(r"403: INVITE from untrusted (\w+):([\d.]+):\d+ ", log)
    assert untrusted.count(("udp", attacker)) == 4 and untrusted.count(("tcp", attacker)) == 1, untrusted
    assert untrusted.count(("udp", "127.0.0.1")) == scanner_invites  # svwar's
    unknown = re.findall(rf"404: INVITE for unknown user sip:(\S+)@{re.escape(host)}:{port}\S* from udp:([\d.]+):", log)
    assert unknown == [(EXTERNAL, pbx.host), ("+" + EXTERNAL[2:], pbx.host), ("agent1", pbx.host), (EXTERNAL, pbx.host)]
    assert re.search(rf"405: REFER from udp:{re.escape(attacker)}:\d+ \(R-URI sip:hotline@", log), log
    assert re.search(rf"481: REFER for no dialog of ours from udp:{re.escape(attacker)}:", log), log
    assert re.search(rf"405: REFER in the call from udp:{re.escape(pbx.host)}:\d+ \(Refer-To <sip:{EXTERNAL}@", log)
    assert len(re.findall(rf"405: REGISTER from udp:(?:{re.escape(attacker)}|127\.0\.0\.1):", log)) >= 2
    metrics = hotline.daemon.metrics()
    names = ("untrusted_requests", "unknown_user", "method_not_allowed", "no_dialog")
    ua = {name: metrics.value("sipcallhunt_sip_ua_total", counter=name) for name in names}
    assert ua["untrusted_requests"] == 5 + scanner_invites and ua["unknown_user"] == 4, ua
    assert ua["method_not_allowed"] >= 3 and ua["no_dialog"] == 1, ua
    assert metrics.value("sipcallhunt_calls_total", hotline="support", outcome="connected") == 1
    hotline.assert_clean_log()
