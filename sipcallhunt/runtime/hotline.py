"""The glue between the SIP user agent, the media engine, the call log and the hotline call flow.

:class:`HotlineService` turns user-agent and media events into hotline events, feeds them to the
pure :class:`~sipcallhunt.hotline.call.HotlineCall` of their call, and carries out the actions the
call returns: answering, dialing agents, playing prompts, bridging, hanging up, storing records.

Each call is a :class:`CallSession`: its ``HotlineCall``, its SIP legs (the caller's and one per
agent attempt), its media legs, and one timer.  Events for a call go through the session's inbox,
so a call's state machine is never entered twice at once even though carrying out one action
(e.g. a CANCEL) can produce new events synchronously.  An exception while handling one call is
logged with the call's id, that call alone is torn down (every leg hung up, the record closed as
``failed``), and everything else goes on.

The service also keeps the internal stream of call-state events (:attr:`HotlineService.bus`) that
a dashboard, an API or metrics can subscribe to.
"""

from __future__ import annotations

__all__ = ["CallSession", "EventBus", "HotlineService", "PromptSet"]

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import attrs

from sipcallhunt.calllog import AsyncCallLog
from sipcallhunt.config import AccountConfig, HotlineConfig
from sipcallhunt.errors import MediaError
from sipcallhunt.hotline import actions as act
from sipcallhunt.hotline import events as ev
from sipcallhunt.hotline.call import HotlineCall
from sipcallhunt.hotline.pin import PinGuard
from sipcallhunt.media.prompt import Prompt
from sipcallhunt.records import Outcome
from sipcallhunt.runtime import media as rtmedia
from sipcallhunt.runtime.sip import SipEndpoint
from sipcallhunt.sip.events import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgress,
    IncomingCall,
    InfoDigit,
    MediaUpdate,
    RegistrationChanged,
    UaEvent,
)
from sipcallhunt.sip.uri import NameAddr
from sipcallhunt.sip.useragent import LocalMedia

log = logging.getLogger("sipcallhunt.hotline")

_LEVELS = {"TRACE": 5, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


@attrs.frozen
class PromptSet:
    """The prepared audio of one hotline, by prompt name (bundled or the operator's own)."""

    prompts: Mapping[str, Prompt]

    def resolve(self, names: tuple[str, ...]) -> list[Prompt]:
        return [self.prompts[name] for name in names if name in self.prompts]


@attrs.frozen
class BusEvent:
    """One item of the internal event stream: a record snapshot or a registration change."""

    kind: str  # "call", "attempt", "registration"
    data: Any


class EventBus:
    """Fan-out of call-state events to subscribers (bounded queues: a slow reader loses old items)."""

    def __init__(self, maxsize: int = 1000) -> None:
        self._queues: list[asyncio.Queue[BusEvent]] = []
        self.maxsize = maxsize

    def subscribe(self) -> asyncio.Queue[BusEvent]:
        queue: asyncio.Queue[BusEvent] = asyncio.Queue(self.maxsize)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[BusEvent]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def publish(self, event: BusEvent) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)


@attrs.frozen
class _Start:
    """The first input of a call: ``HotlineCall.start``."""


@attrs.define(eq=False)
class CallSession:
    call_id: str
    hotline: HotlineConfig
    account: AccountConfig
    call: HotlineCall
    caller_leg: str  # the user agent's leg id
    prompts: PromptSet
    media: dict[ev.LegId, rtmedia.MediaLeg] = attrs.field(factory=dict)
    agent_legs: dict[int, str] = attrs.field(factory=dict)  # attempt -> user agent leg id
    inbox: list[ev.Event | _Start | None] = attrs.field(factory=list)  # None = the timer fired
    busy: bool = False
    timer: asyncio.TimerHandle | None = None
    timer_at: float | None = None
    hung_up_by_us: set[str] = attrs.field(factory=set)
    bridged: ev.LegId | None = None
    done: bool = False


class HotlineService:
    """Runs every hotline call of the daemon; see the module docstring."""

    def __init__(
        self,
        *,
        hotlines: tuple[HotlineConfig, ...],
        accounts: tuple[AccountConfig, ...],
        prompts: Mapping[str, PromptSet],
        engine: rtmedia.MediaEngine,
        calllog: AsyncCallLog,
        media_host: str,
        node: str = "",
    ) -> None:
        self.engine = engine
        self.calllog = calllog
        self.media_host = media_host
        self.node = node
        self.bus = EventBus()
        self.sip: SipEndpoint | None = None
        self.accepting = True
        self.sessions: dict[str, CallSession] = {}
        self._by_leg: dict[str, tuple[CallSession, ev.LegId]] = {}
        self._by_media: dict[str, tuple[CallSession, ev.LegId]] = {}
        self.calls_started = 0
        self.calls_failed = 0
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()  # (hotline, outcome) of ended calls
        self.configure(hotlines, accounts, prompts)

    def configure(
        self, hotlines: tuple[HotlineConfig, ...], accounts: tuple[AccountConfig, ...], prompts: Mapping[str, PromptSet]
    ) -> None:
        """Use these hotlines for new calls (running calls keep the configuration they started with)."""
        self._hotlines = {h.account: h for h in hotlines}
        self._accounts = {a.name: a for a in accounts}
        self._prompts = dict(prompts)
        old_guards: dict[str, PinGuard] = getattr(self, "_guards", {})
        self._guards: dict[str, PinGuard] = {h.name: _pin_guard(old_guards.get(h.name), h) for h in hotlines}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    @property
    def active_calls(self) -> int:
        return len(self.sessions)

    # == events from the user agent ================================================================
    def on_sip_event(self, event: UaEvent) -> None:
        if isinstance(event, IncomingCall):
            self._incoming(event)
            return
        if isinstance(event, RegistrationChanged):
            self.bus.publish(BusEvent("registration", event))
            return
        leg_id = getattr(event, "leg", None)
        if not isinstance(leg_id, str):
            return
        found = self._by_leg.get(leg_id)
        if found is None:
            return
        session, leg = found
        if isinstance(event, MediaUpdate):
            media_leg = session.media.get(leg)
            if media_leg is not None:
                m = event.media
                media_leg.set_remote(
                    m.remote_host, m.remote_port, m.codec, m.payload_type, m.dtmf_payload_type, m.ptime
                )
                # A peer holding the call (sendonly/inactive) sends no RTP: no media timeout then.
                media_leg.expect_media(m.direction.receives)
            return
        translated = self._translate_sip(session, leg, event)
        if isinstance(event, (CallEnded, CallFailed)):
            self._by_leg.pop(leg_id, None)
            self._close_media(session, leg)
        if translated is not None:
            self._feed(session, translated)

    def _translate_sip(self, session: CallSession, leg: ev.LegId, event: UaEvent) -> ev.Event | None:
        if leg is ev.CALLER:
            if isinstance(event, CallConfirmed):
                return ev.CallerConnected()
            if isinstance(event, CallEnded):
                if not event.by_remote and session.caller_leg in session.hung_up_by_us:
                    return None
                return ev.CallerHungUp()
            if isinstance(event, InfoDigit):
                return ev.Digit(leg, event.digit, event.method)
            return None
        assert isinstance(leg, int)
        if isinstance(event, CallProgress):
            return ev.AgentRinging(leg, early_media=event.early_media)
        if isinstance(event, CallAnswered):
            return ev.AgentAnswered(leg)
        if isinstance(event, CallFailed):
            return ev.AgentFailed(leg, event.status, event.reason)
        if isinstance(event, CallEnded):
            ua_leg = session.agent_legs.get(leg)
            if not event.by_remote and ua_leg in session.hung_up_by_us:
                return None
            if event.by_remote:
                return ev.AgentHungUp(leg)
            return ev.AgentFailed(leg, None, event.reason)
        if isinstance(event, InfoDigit):
            return ev.Digit(leg, event.digit, event.method)
        return None

    def _incoming(self, event: IncomingCall) -> None:
        assert self.sip is not None
        hotline = self._hotlines.get(event.account)
        if hotline is None:
            log.warning("call for account %s, which answers no hotline: 404", event.account)
            self.sip.call(self.sip.ua.reject, event.leg, 404)
            return
        if not self.accepting:
            log.info("refused a call from %s: shutting down (503)", _caller_identity(event.caller)[1])
            self.sip.call(self.sip.ua.reject, event.leg, 503, reason="Shutting Down")
            return
        call_id = secrets.token_hex(4)
        try:
            media_leg = self.engine.open_leg(f"{call_id}/caller")
        except MediaError as exc:
            log.error("no media port for a new call: %s", exc, extra={"call_id": call_id})
            self.sip.call(self.sip.ua.reject, event.leg, 503, reason="Out of Media Ports")
            return
        caller, caller_uri = _caller_identity(event.caller)
        now = self.loop.time()
        call = HotlineCall(
            config=hotline,
            call_id=call_id,
            caller=caller,
            caller_uri=caller_uri,
            sip_call_id=event.request.call_id,
            now=now,
            wall_offset=time.time() - now,
            pin_guard=self._guards[hotline.name],
            node=self.node,
        )
        session = CallSession(
            call_id=call_id,
            hotline=hotline,
            account=self._accounts[hotline.account],
            call=call,
            caller_leg=event.leg,
            prompts=self._prompts[hotline.name],
        )
        session.media[ev.CALLER] = media_leg
        self.sessions[call_id] = session
        self._by_leg[event.leg] = (session, ev.CALLER)
        self.sip.leg_labels[event.leg] = call_id
        self._by_media[f"{call_id}/caller"] = (session, ev.CALLER)
        self.calls_started += 1
        self._feed(session, _Start())

    # == events from the media engine ==============================================================
    def on_media_event(self, event: rtmedia.MediaEvent) -> None:
        leg_id = getattr(event, "leg_id", None)
        found = self._by_media.get(leg_id) if isinstance(leg_id, str) else None
        if found is None:
            return
        session, leg = found
        if isinstance(event, rtmedia.DigitReceived):
            self._feed(session, ev.Digit(leg, event.digit.digit, event.digit.method))
        elif isinstance(event, rtmedia.PlaybackFinished):
            if isinstance(event.token, int):
                self._feed(session, ev.PlaybackFinished(leg, event.token))
        elif isinstance(event, rtmedia.MediaTimeout):
            self._feed(session, ev.MediaTimeout(leg))
        elif isinstance(event, rtmedia.LegClosed):
            self._by_media.pop(leg_id, None)  # type: ignore[arg-type]

    # == running a call =============================================================================
    def _feed(self, session: CallSession, item: ev.Event | _Start | None) -> None:
        """Queue ``item`` (an event, ``None`` for the timer) and run the call unless it is running."""
        if session.done:
            return
        session.inbox.append(item)
        if session.busy:
            return  # carrying out an action produced this event: handled right after it
        session.busy = True
        try:
            while session.inbox and not session.done:
                self._step(session, session.inbox.pop(0))
        finally:
            session.busy = False
        if not session.done:
            self._arm(session)

    def _step(self, session: CallSession, item: ev.Event | _Start | None) -> None:
        """Advance the call by one input and carry out its actions; a failure ends this call only."""
        now = self.loop.time()
        try:
            if isinstance(item, _Start):
                actions = session.call.start(now)
            elif item is None:
                actions = session.call.handle_timer(now)
            else:
                actions = session.call.handle(item, now)
            for action in actions:
                self._execute(session, action)
        except Exception as exc:  # one call's bug never stops the daemon
            self.calls_failed += 1
            log.exception("internal error in this call; ending it", extra={"call_id": session.call_id})
            self._abort(session, f"internal error: {type(exc).__name__}: {exc}")
            return
        if session.call.finished:
            self._finish(session)

    def _arm(self, session: CallSession) -> None:
        deadline = session.call.next_deadline()
        if deadline == session.timer_at:
            return
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        session.timer_at = deadline
        if deadline is not None:
            session.timer = self.loop.call_at(deadline, self._on_timer, session)

    def _on_timer(self, session: CallSession) -> None:
        session.timer = None
        session.timer_at = None
        self._feed(session, None)

    def _execute(self, session: CallSession, action: act.Action) -> None:
        assert self.sip is not None
        sip = self.sip
        ua = sip.ua
        if isinstance(action, act.Play):
            media_leg = session.media.get(action.leg)
            if media_leg is not None:
                media_leg.play(session.prompts.resolve(action.prompts), loop=action.loop, token=action.token)
        elif isinstance(action, act.StopPlayback):
            media_leg = session.media.get(action.leg)
            if media_leg is not None:
                media_leg.stop_playback()
        elif isinstance(action, act.DetectDtmf):
            media_leg = session.media.get(action.leg)
            if media_leg is not None:
                media_leg.detect_inband(action.inband and session.hotline.inband_dtmf)
        elif isinstance(action, act.StoreCall):
            self.calllog.write_call(action.record)
            self.bus.publish(BusEvent("call", action.record))
        elif isinstance(action, act.StoreAttempt):
            self.calllog.write_attempt(action.record)
            self.bus.publish(BusEvent("attempt", action.record))
        elif isinstance(action, act.Log):
            log.log(
                _LEVELS.get(str(action.level), logging.INFO), "%s", action.message, extra={"call_id": session.call_id}
            )
        elif isinstance(action, act.AnswerCaller):
            media_leg = session.media[ev.CALLER]
            sip.call(ua.answer, session.caller_leg, LocalMedia(address=self.media_host, port=media_leg.local_port))
        elif isinstance(action, act.RejectCaller):
            session.hung_up_by_us.add(session.caller_leg)
            sip.call(ua.reject, session.caller_leg, action.status, reason=action.reason)
            self._close_media(session, ev.CALLER)
        elif isinstance(action, act.HangupCaller):
            session.hung_up_by_us.add(session.caller_leg)
            sip.call(ua.hangup, session.caller_leg, reason=action.reason)
            self._close_media(session, ev.CALLER)
        elif isinstance(action, act.Dial):
            self._dial(session, action)
        elif isinstance(action, act.HangupAgent):
            ua_leg = session.agent_legs.get(action.attempt)
            if ua_leg is not None:
                session.hung_up_by_us.add(ua_leg)
                sip.call(ua.hangup, ua_leg, reason=action.reason)
            self._close_media(session, action.attempt)
        elif isinstance(action, act.Bridge):
            caller_media = session.media.get(ev.CALLER)
            agent_media = session.media.get(action.attempt)
            if caller_media is None or agent_media is None:
                raise MediaError(f"cannot bridge attempt {action.attempt}: a media leg is gone")
            self.engine.bridge(caller_media, agent_media)
            session.bridged = action.attempt
        else:  # pragma: no cover - every action is handled above
            raise TypeError(f"unknown action {action!r}")

    def _dial(self, session: CallSession, action: act.Dial) -> None:
        assert self.sip is not None
        media_key = f"{session.call_id}/{action.attempt}"
        try:
            media_leg = self.engine.open_leg(media_key)
        except MediaError as exc:
            log.error("no media port for attempt %d: %s", action.attempt, exc, extra={"call_id": session.call_id})
            session.inbox.append(ev.AgentFailed(action.attempt, None, "no media port"))
            return
        session.media[action.attempt] = media_leg
        self._by_media[media_key] = (session, action.attempt)
        display, identity = None, None
        if action.caller_id:
            display = action.caller_id
            if _is_user_part(action.caller_id):
                identity = f"<sip:{action.caller_id}@{session.account.aor_domain}>"
        # Not ``sip.call``: its pump would hand over the leg's first events (a send that fails at
        # once ends the leg inside ``invite``) before we know the leg's id, and they would be lost.
        # Learn the id first, then pump.
        ua_leg = self.sip.ua.invite(
            session.account.name,
            action.number,
            LocalMedia(address=self.media_host, port=media_leg.local_port),
            self.loop.time(),
            display_name=display,
            asserted_identity=identity,
        )
        session.agent_legs[action.attempt] = ua_leg
        self._by_leg[ua_leg] = (session, action.attempt)
        self.sip.leg_labels[ua_leg] = f"{session.call_id}/{action.attempt}"
        self.sip.pump()

    def _close_media(self, session: CallSession, leg: ev.LegId) -> None:
        media_leg = session.media.pop(leg, None)
        if media_leg is None:
            return
        if session.bridged is not None and leg in (ev.CALLER, session.bridged):
            with contextlib.suppress(MediaError):
                self.engine.unbridge(media_leg)
            session.bridged = None
        media_leg.close()

    def _finish(self, session: CallSession) -> None:
        if session.done:
            return
        session.done = True
        outcome = session.call.record.outcome
        self.outcomes[session.hotline.name, outcome.value if outcome is not None else Outcome.FAILED.value] += 1
        if session.timer is not None:
            session.timer.cancel()
        for leg in list(session.media):
            self._close_media(session, leg)
        for ua_leg in [session.caller_leg, *session.agent_legs.values()]:
            self._by_leg.pop(ua_leg, None)
            if self.sip is not None:
                # Keep labels a little longer: the BYE transactions still log.
                self.loop.call_later(60.0, self.sip.leg_labels.pop, ua_leg, None)
        self.sessions.pop(session.call_id, None)

    def _abort(self, session: CallSession, reason: str) -> None:
        """Tear a broken call down: every SIP leg ended, the record closed as failed."""
        assert self.sip is not None
        for ua_leg in [session.caller_leg, *session.agent_legs.values()]:
            try:
                self.sip.call(self.sip.ua.hangup, ua_leg, reason=reason)
            except Exception:
                log.debug("hangup of %s failed during abort", ua_leg, exc_info=True)
        try:
            record = session.call.record
            now = time.time()
            final = attrs.evolve(
                record,
                ended=record.ended or now,
                outcome=record.outcome or Outcome.FAILED,
                end_reason=record.end_reason or reason,
            )
            self.calllog.write_call(final)
            self.bus.publish(BusEvent("call", final))
        except Exception:
            log.exception("could not close the record", extra={"call_id": session.call_id})
        self._finish(session)

    # == shutdown ====================================================================================
    async def shutdown(self, timeout: float = 5.0) -> None:
        """Refuse new calls, end the current ones cleanly, wait for them (at most ``timeout`` s)."""
        self.accepting = False
        for session in list(self.sessions.values()):
            self._feed(session, ev.Shutdown())
        deadline = self.loop.time() + timeout
        while self.sessions and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.sessions.values()):
            self._abort(session, "daemon stopped")


def _pin_guard(old: PinGuard | None, hotline: HotlineConfig) -> PinGuard:
    """A hotline's PIN guard: the one it had (what it remembers kept, its settings renewed) or a new one."""
    if old is None:
        return PinGuard.for_hotline(hotline)
    old.configure(hotline)
    return old


def _caller_identity(caller: NameAddr) -> tuple[str, str]:
    uri = caller.uri
    if uri is None:
        return "anonymous", "*"
    if uri.user:
        return uri.user, str(uri)
    if caller.display_name:
        return caller.display_name, str(uri)
    return str(uri), str(uri)


def _is_user_part(text: str) -> bool:
    return bool(text) and all(ch.isalnum() or ch in "+-_.*#" for ch in text)
