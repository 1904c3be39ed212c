"""``sipcallhunt demo``: the whole product on loopback, without a PBX, in about twenty seconds.

The real daemon code (:class:`~sipcallhunt.runtime.daemon.Daemon`) runs a hotline with a PIN and
three agents.  Simulated phones, built from sipcallhunt's own SIP user agent and RTP code, play the
other parts over real sockets on 127.0.0.0/8:

* a caller dials the hotline, types the PIN by RFC 4733 while the intro plays, waits on hold
  music, talks (a 440 Hz tone) once connected, then hangs up;
* Alice does not answer (the hotline cancels after her ring timeout);
* Bob answers but does not press 1 (a voicemail box would do the same): the hotline hangs up;
* Carol answers, presses 1 and talks (an 880 Hz tone).

The transcript shows what the hotline does and what each phone hears (the tone frequencies are
measured on the audio that arrived), and the call log is printed at the end.  The daemon's
account does not register: the agents' "switch" stands where a PBX would be.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import asyncio
import contextlib
import logging
import math
import random
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sipcallhunt.config import AccountConfig, load_config
from sipcallhunt.media import g711
from sipcallhunt.media.dtmf import rfc4733_packets
from sipcallhunt.media.rtp import RtpPacket
from sipcallhunt.runtime.sip import SipEndpoint
from sipcallhunt.sip.events import CallAnswered, CallConfirmed, CallEnded, IncomingCall, MediaUpdate, UaEvent
from sipcallhunt.sip.sdp import NegotiatedMedia
from sipcallhunt.sip.uri import SipUri
from sipcallhunt.sip.useragent import LocalMedia, UaSettings, UserAgent

DAEMON_HOST = "127.0.77.1"
SWITCH_HOST = "127.0.77.2"
CALLER_HOST = "127.0.77.3"
PIN = "2468"


def _free_port(host: str, kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _free_sip_port(host: str) -> int:
    for _ in range(50):
        port = _free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((host, port))
            except OSError:
                continue
        return port
    raise OSError(f"no free SIP port on {host}")


class Transcript:
    def __init__(self, out: Any) -> None:
        self.start = time.monotonic()
        self.out = out

    def say(self, who: str, text: str) -> None:
        print(f"{time.monotonic() - self.start:6.2f}s  {who:<8} {text}", file=self.out, flush=True)


class _TranscriptHandler(logging.Handler):
    """Shows the hotline's own INFO lines (the call flow explains itself) in the transcript."""

    def __init__(self, transcript: Transcript) -> None:
        super().__init__(logging.INFO)
        self.transcript = transcript

    def emit(self, record: logging.LogRecord) -> None:
        self.transcript.say("hotline", record.getMessage())


class PhoneAudio(asyncio.DatagramProtocol):
    """A phone's RTP: sends a tone (or silence) paced at 20 ms, RFC 4733 digits, records what it hears."""

    def __init__(self, host: str, frequency: float | None) -> None:
        self.host = host
        self.frequency = frequency
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.media: NegotiatedMedia | None = None
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.phase = 0.0
        self.heard: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        self._task: asyncio.Task[None] | None = None
        self._digits: list[bytes] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(50):
            port = _free_port(self.host) & ~1
            try:
                self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, port))
            except OSError:
                continue
            self.port = port
            return
        raise OSError("no free RTP port")

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.media is None or len(data) < 12:
            return
        if data[1] & 0x7F == self.media.payload_type:
            self.heard.append(g711.decode(self.media.codec, data[12:]))

    def start(self, media: NegotiatedMedia) -> None:
        self.media = media
        self.remote = (media.remote_host, media.remote_port)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send_loop())

    def send_digits(self, keys: str) -> None:
        assert self.media is not None and self.media.dtmf_payload_type is not None
        for key in keys:
            packets = rfc4733_packets(
                key,
                payload_type=self.media.dtmf_payload_type,
                ssrc=self.ssrc,
                first_sequence=self.seq,
                timestamp=self.ts,
                duration_ms=120,
            )
            count = len({p.sequence for _, p in packets})
            self.seq = (self.seq + count) & 0xFFFF
            self.ts = (self.ts + 1600) & 0xFFFFFFFF  # 120 ms of tone + 80 ms pause
            self._digits += [bytes(p) for _, p in packets]
            self._digits += [b""] * 4  # a pause between keys

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while True:
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
            if self.transport is None or self.remote is None or self.media is None:
                continue
            if self._digits:
                digit_packet = self._digits.pop(0)
                if digit_packet:
                    self.transport.sendto(digit_packet, self.remote)
                continue
            if self.frequency is None:
                samples = np.zeros(160, dtype=np.int16)
            else:
                t = np.arange(160) / 8000.0
                samples = (8000 * np.sin(2 * math.pi * self.frequency * t + self.phase)).astype(np.int16)
                self.phase += 2 * math.pi * self.frequency * 160 / 8000.0
            payload = g711.encode(self.media.codec, samples)
            packet = RtpPacket(
                payload_type=self.media.payload_type,
                sequence=self.seq,
                timestamp=self.ts,
                ssrc=self.ssrc,
                payload=payload,
            )
            self.seq = (self.seq + 1) & 0xFFFF
            self.ts = (self.ts + 160) & 0xFFFFFFFF
            self.transport.sendto(bytes(packet), self.remote)

    def dominant(self, seconds: float = 1.0) -> float | None:
        """The strongest frequency in the last ``seconds`` of what this phone heard."""
        if not self.heard:
            return None
        samples = np.concatenate(self.heard)[-int(seconds * 8000) :].astype(np.float64)
        if len(samples) < 800 or np.abs(samples).max() < 50:
            return None
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        return float(np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))])

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.close()


class Phones:
    """The caller and the three agents, each a SIP user agent of our own with scripted behaviour."""

    def __init__(self, transcript: Transcript, daemon_port: int) -> None:
        self.t = transcript
        self.daemon_port = daemon_port
        self.switch_port = _free_sip_port(SWITCH_HOST)
        self.caller_port = _free_sip_port(CALLER_HOST)
        self.audio: dict[str, PhoneAudio] = {}
        self.legs: dict[str, str] = {}  # user agent leg -> phone name
        self.caller_leg: str | None = None
        self.caller_ended = asyncio.Event()
        self.caller_answered = asyncio.Event()
        self.carol_connected = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.switch: SipEndpoint | None = None
        self.caller: SipEndpoint | None = None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        daemon = SipUri.parse(f"sip:{DAEMON_HOST}:{self.daemon_port}")
        agents = [
            AccountConfig(name=name, registrar=daemon, username=name, password="-", register=False)
            for name in ("alice", "bob", "carol")
        ]
        switch_ua = UserAgent(
            UaSettings(host=SWITCH_HOST, port=self.switch_port, trusted_hosts=frozenset({DAEMON_HOST})),
            agents,
            token=secrets.token_hex,
        )
        self.switch = SipEndpoint(
            switch_ua, host=SWITCH_HOST, port=self.switch_port, transports=("udp",), on_event=self._on_switch
        )
        await self.switch.start()
        caller_account = AccountConfig(
            name="caller", registrar=daemon, username="01715550123", password="-", register=False
        )
        caller_ua = UserAgent(
            UaSettings(host=CALLER_HOST, port=self.caller_port, trusted_hosts=frozenset({DAEMON_HOST})),
            [caller_account],
            token=secrets.token_hex,
        )
        self.caller = SipEndpoint(
            caller_ua, host=CALLER_HOST, port=self.caller_port, transports=("udp",), on_event=self._on_caller
        )
        await self.caller.start()
        for name, host, freq in (
            ("caller", CALLER_HOST, 440.0),
            ("alice", SWITCH_HOST, None),
            ("bob", SWITCH_HOST, None),
            ("carol", SWITCH_HOST, 880.0),
        ):
            audio = PhoneAudio(host, freq)
            await audio.open()
            self.audio[name] = audio

    # -- the caller -----------------------------------------------------------------------------------
    def dial(self) -> None:
        assert self.caller is not None
        audio = self.audio["caller"]
        self.t.say("caller", "dials the hotline")
        self.caller_leg = self.caller.call(
            self.caller.ua.invite, "caller", "hotline", LocalMedia(address=CALLER_HOST, port=audio.port)
        )

    def _on_caller(self, event: UaEvent) -> None:
        if isinstance(event, MediaUpdate):
            self.audio["caller"].start(event.media)
        elif isinstance(event, CallAnswered):
            self.t.say("caller", "is answered and hears the intro")
            self.caller_answered.set()
            self._spawn(self._type_pin())
        elif isinstance(event, CallEnded):
            self.t.say("caller", f"call ended ({event.reason})")
            self.caller_ended.set()

    async def _type_pin(self) -> None:
        await asyncio.sleep(0.8)
        self.t.say("caller", f"types the PIN {PIN}# (RFC 4733) without waiting for the intro to end")
        self.audio["caller"].send_digits(PIN + "#")

    def hang_up_caller(self) -> None:
        assert self.caller is not None and self.caller_leg is not None
        self.t.say("caller", "hangs up")
        self.caller.call(self.caller.ua.hangup, self.caller_leg)

    # -- the agents -----------------------------------------------------------------------------------
    def _on_switch(self, event: UaEvent) -> None:
        assert self.switch is not None
        if isinstance(event, IncomingCall):
            name = event.account
            self.legs[event.leg] = name
            self.switch.call(self.switch.ua.ring, event.leg)
            if name == "alice":
                self.t.say("alice", "phone rings … nobody picks up")
                return
            self.t.say(name, "phone rings")
            self._spawn(self._answer(event.leg, name))
            return
        name = self.legs.get(getattr(event, "leg", ""), "")
        if isinstance(event, MediaUpdate) and name:
            self.audio[name].start(event.media)
        elif isinstance(event, CallConfirmed) and name == "bob":
            self.t.say("bob", "answers, hears 'press 1 to accept' … and does nothing (like a voicemail box)")
        elif isinstance(event, CallConfirmed) and name == "carol":
            self.t.say("carol", "answers and hears 'press 1 to accept'")
            self._spawn(self._carol_accepts())
        elif isinstance(event, CallEnded) and name:
            self.t.say(name, f"call ended ({event.reason})")

    async def _answer(self, leg: str, name: str) -> None:
        assert self.switch is not None
        await asyncio.sleep(0.8)
        self.switch.call(self.switch.ua.answer, leg, LocalMedia(address=SWITCH_HOST, port=self.audio[name].port))

    async def _carol_accepts(self) -> None:
        await asyncio.sleep(1.5)
        self.t.say("carol", "presses 1")
        self.audio["carol"].send_digits("1")
        self.carol_connected.set()

    async def close(self) -> None:
        for audio in self.audio.values():
            audio.close()
        for task in list(self._tasks):
            task.cancel()
        for endpoint in (self.switch, self.caller):
            if endpoint is not None:
                await endpoint.close()


def _write_config(folder: Path, daemon_port: int, switch_port: int, rtp: int) -> Path:
    path = folder / "demo.toml"
    path.write_text(
        f"""
[sip]
listen = "{DAEMON_HOST}:{daemon_port}"
rtp_ports = [{rtp}, {rtp + 99}]
trusted_peers = ["{SWITCH_HOST}", "{CALLER_HOST}"]
media_timeout = 10

[[account]]
name = "demo"
registrar = "sip:{SWITCH_HOST}:{switch_port}"
username = "hotline"
password = "unused"
register = false

[[hotline]]
name = "Demo Support"
account = "demo"
pins = ["{PIN}"]
rounds = 1
confirm_timeout = 4
caller_id = "caller"

[[hotline.agent]]
name = "Alice"
number = "alice"
ring_timeout = 3

[[hotline.agent]]
name = "Bob"
number = "bob"
ring_timeout = 10

[[hotline.agent]]
name = "Carol"
number = "carol"
ring_timeout = 10

[calllog]
path = "{folder / "demo-calls.sqlite3"}"

[logging]
level = "WARNING"
""",
        encoding="utf-8",
    )
    return path


def _rtp_base() -> int:
    for _ in range(50):
        base = random.randrange(42000, 60000, 2)
        ok = True
        for port in range(base, base + 100, 25):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((DAEMON_HOST, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    return 44000


async def _demo(out: Any, folder: Path) -> int:
    from sipcallhunt.calls_cli import main as calls_main
    from sipcallhunt.logsetup import configure_logging
    from sipcallhunt.runtime.daemon import Daemon

    configure_logging("WARNING")
    transcript = Transcript(out)
    hotline_log = logging.getLogger("sipcallhunt.hotline")
    handler = _TranscriptHandler(transcript)
    handler.addFilter(lambda r: r.levelno == logging.INFO and "->" not in r.getMessage())
    hotline_log.addHandler(handler)
    hotline_log.setLevel(logging.INFO)
    hotline_log.propagate = False  # the transcript shows these; warnings still reach stderr below
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    hotline_log.addHandler(warnings)

    daemon_port = _free_sip_port(DAEMON_HOST)
    phones = Phones(transcript, daemon_port)
    config = load_config(_write_config(folder, daemon_port, phones.switch_port, _rtp_base()))
    daemon = Daemon(config)
    await daemon.start()
    await phones.start()
    result = 1
    try:
        print(f"sipcallhunt demo — hotline at sip:hotline@{DAEMON_HOST}:{daemon_port}, PIN {PIN}", file=out)
        print("agents: Alice (does not answer), Bob (answers, never presses 1), Carol (presses 1)\n", file=out)
        phones.dial()
        await asyncio.wait_for(phones.carol_connected.wait(), 25)
        await asyncio.sleep(2.5)  # caller and Carol talk
        heard_by_caller = phones.audio["caller"].dominant()
        heard_by_carol = phones.audio["carol"].dominant()
        ok = (
            heard_by_caller is not None
            and abs(heard_by_caller - 880) < 20
            and heard_by_carol is not None
            and abs(heard_by_carol - 440) < 20
        )
        transcript.say("caller", f"hears Carol: dominant frequency {_hz(heard_by_caller)} (Carol sends 880 Hz)")
        transcript.say("carol", f"hears the caller: dominant frequency {_hz(heard_by_carol)} (caller sends 440 Hz)")
        phones.hang_up_caller()
        await asyncio.wait_for(phones.caller_ended.wait(), 5)
        await asyncio.sleep(0.5)
        result = 0 if ok else 1
    except TimeoutError:
        transcript.say("demo", "the call did not reach Carol in time — see the log above")
    finally:
        hotline_log.removeHandler(handler)
        hotline_log.removeHandler(warnings)
        hotline_log.propagate = True
        await phones.close()
        await daemon.stop()
    print("\ncall log (sipcallhunt calls --attempts):", file=out)
    with contextlib.redirect_stdout(out):
        calls_main(["--db", str(config.calllog.path), "--attempts"])
    print(
        "\ndemo "
        + (
            "finished: the caller was connected to the agent who pressed 1, audio flowed both ways."
            if result == 0
            else "FAILED"
        ),
        file=out,
    )
    return result


def _hz(value: float | None) -> str:
    return "none" if value is None else f"{value:.0f} Hz"


def main(argv: list[str] | None = None, *, out: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="sipcallhunt demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="keep the demo's config and call log in DIR")
    args = parser.parse_args(argv or [])
    out = out or sys.stdout
    if args.keep:
        folder = Path(args.keep)
        folder.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(out, folder))
    with tempfile.TemporaryDirectory(prefix="sipcallhunt-demo-") as tmp:
        return asyncio.run(_demo(out, Path(tmp)))
