"""The hotline glue (:class:`~sipcallhunt.runtime.hotline.HotlineService`) with the real user agent
and SIP shell, a fake media engine and an in-memory call log.

The SIP shell is never started, so it has no socket: every message it is asked to send fails at
once and the user agent hears of it (``transport_error``) inside the same pump - the quickest
kind of failure there is, the one that tests the order in which the glue learns about a leg.
Inbound messages are handed to the shell as if they had arrived.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from sipcallhunt.config import AccountConfig, AgentConfig, HotlineConfig
from sipcallhunt.errors import MediaError
from sipcallhunt.media.prompt import Prompt
from sipcallhunt.records import AttemptEnd, AttemptRecord, CallRecord
from sipcallhunt.runtime import media as rtmedia
from sipcallhunt.runtime.hotline import HotlineService, PromptSet
from sipcallhunt.runtime.sip import SipEndpoint
from sipcallhunt.sip.uri import SipUri
from sipcallhunt.sip.useragent import UaSettings, UserAgent

HOST = "192.0.2.10"  # the daemon
PBX = ("192.0.2.1", 5060)


@attrs.define(eq=False)
class FakeMediaLeg:
    leg_id: str
    local_port: int
    plays: list[tuple[tuple[Prompt, ...], bool, object]] = attrs.field(factory=list)
    closed: bool = False

    def set_remote(self, *args: Any) -> None:
        pass

    def play(self, prompts: Sequence[Prompt], *, loop: bool = False, token: object = None) -> None:
        self.plays.append((tuple(prompts), loop, token))

    def stop_playback(self) -> None:
        pass

    def detect_inband(self, on: bool) -> None:
        pass

    def close(self) -> None:
        self.closed = True


@attrs.define(eq=False)
class FakeEngine:
    legs: dict[str, FakeMediaLeg] = attrs.field(factory=dict)

    def open_leg(self, leg_id: str) -> FakeMediaLeg:
        if leg_id in self.legs:
            raise MediaError(f"leg {leg_id} opened twice")
        leg = FakeMediaLeg(leg_id, 40000 + 2 * len(self.legs))
        self.legs[leg_id] = leg
        return leg

    def bridge(self, a: FakeMediaLeg, b: FakeMediaLeg) -> None:
        pass

    def unbridge(self, a: FakeMediaLeg) -> None:
        pass


@attrs.define(eq=False)
class FakeCallLog:
    calls: dict[str, CallRecord] = attrs.field(factory=dict)
    attempts: dict[tuple[str, int], AttemptRecord] = attrs.field(factory=dict)

    def write_call(self, record: CallRecord) -> None:
        self.calls[record.call_id] = record

    def write_attempt(self, record: AttemptRecord) -> None:
        self.attempts[(record.call_id, record.seq)] = record


def invite(call_id: str) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        "m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    return (
        f"INVITE sip:hotline@{HOST}:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PBX[0]}:{PBX[1]};branch=z9hG4bK-{call_id}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:0301234@192.0.2.1>;tag=caller1\r\n"
        f"To: <sip:hotline@{HOST}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:0301234@{PBX[0]}:{PBX[1]}>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    ).encode()


def ack(call_id: str, to_tag: str) -> bytes:
    return (
        f"ACK sip:hotline@{HOST}:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PBX[0]}:{PBX[1]};branch=z9hG4bK-{call_id}-ack\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:0301234@192.0.2.1>;tag=caller1\r\n"
        f"To: <sip:hotline@{HOST}>;tag={to_tag}\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_an_agent_leg_that_fails_while_being_dialed_is_not_lost() -> None:
    """A new agent leg whose INVITE cannot even be sent fails inside ``invite()``'s own pump,
    before the glue knew the leg's id: that failure must still reach the call (the attempt
    ends ``failed`` at once and the hunt goes on), not be dropped (the attempt waited for its
    ring timeout and was logged as ``no_answer``)."""
    account = AccountConfig(name="pbx", registrar=SipUri.parse(f"sip:{PBX[0]}:{PBX[1]}"), username="hotline",
                            password="pw")  # fmt: skip
    agents = (AgentConfig(name="Ann", number="201", ring_timeout=60.0),
              AgentConfig(name="Ben", number="202", ring_timeout=60.0))  # fmt: skip
    hotline = HotlineConfig(name="support", account="pbx", rounds=1, agents=agents)
    ua = UserAgent(
        UaSettings(host=HOST, port=5060, trusted_hosts=frozenset({PBX[0]})), (account,), token=secrets.token_hex
    )
    engine, calllog = FakeEngine(), FakeCallLog()
    service = HotlineService(
        hotlines=(hotline,),
        accounts=(account,),
        prompts={"support": PromptSet({})},
        engine=engine,  # type: ignore[arg-type]
        calllog=calllog,  # type: ignore[arg-type]
        media_host=HOST,
    )
    sip = SipEndpoint(ua, host=HOST, port=5060, on_event=service.on_sip_event)  # never started: no socket
    service.sip = sip
    try:
        sip._datagram(invite("call-1"), PBX)
        (session,) = service.sessions.values()
        to_tag = ua._legs[session.caller_leg].local_tag  # the tag of our 200 OK
        sip._datagram(ack("call-1", to_tag), PBX)
        caller_media = engine.legs[f"{session.call_id}/caller"]
        (_, _, intro_token), *_ = caller_media.plays
        service.on_media_event(rtmedia.PlaybackFinished(f"{session.call_id}/caller", intro_token))  # hunt

        attempts = [calllog.attempts.get((session.call_id, seq)) for seq in (1, 2)]
        assert all(a is not None for a in attempts), "the hunt did not go on to Ben"
        for attempt in attempts:
            assert attempt is not None
            # RFC 3261 §8.1.3.1: a transport failure counts as a 503 from the next hop.
            assert attempt.end is AttemptEnd.FAILED and attempt.sip_status == 503
            assert attempt.ended is not None and attempt.ended - attempt.started < 1.0  # not a ring timeout
    finally:
        for s in list(service.sessions.values()):
            if s.timer is not None:
                s.timer.cancel()
        await sip.close()
        await asyncio.sleep(0)


async def test_a_call_during_shutdown_is_refused_503_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    account = AccountConfig(name="pbx", registrar=SipUri.parse(f"sip:{PBX[0]}:{PBX[1]}"), username="hotline",
                            password="pw")  # fmt: skip
    hotline = HotlineConfig(name="support", account="pbx", rounds=1, agents=(AgentConfig(name="Ann", number="201"),))
    ua = UserAgent(
        UaSettings(host=HOST, port=5060, trusted_hosts=frozenset({PBX[0]})), (account,), token=secrets.token_hex
    )
    engine, calllog = FakeEngine(), FakeCallLog()
    service = HotlineService(
        hotlines=(hotline,),
        accounts=(account,),
        prompts={"support": PromptSet({})},
        engine=engine,  # type: ignore[arg-type]
        calllog=calllog,  # type: ignore[arg-type]
        media_host=HOST,
    )
    sip = SipEndpoint(ua, host=HOST, port=5060, on_event=service.on_sip_event)  # never started: no socket
    service.sip = sip
    try:
        await service.shutdown(timeout=0.1)
        with caplog.at_level(logging.INFO, logger="sipcallhunt"):
            sip._datagram(invite("call-late"), PBX)
        assert not service.sessions and not engine.legs and not calllog.calls
        assert "refused a call from sip:0301234@192.0.2.1: shutting down (503)" in caplog.text
    finally:
        await sip.close()
        await asyncio.sleep(0)
