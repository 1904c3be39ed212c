"""The hotline call flow: pure state machines driven by events and ``now``, emitting actions.

* :mod:`~sipcallhunt.hotline.events` — the inputs (``CallerConnected``, ``Digit``, ``AgentAnswered`` …)
* :mod:`~sipcallhunt.hotline.actions` — the outputs (``AnswerCaller``, ``Play``, ``Dial``, ``Bridge`` …)
* :mod:`~sipcallhunt.hotline.call` — :class:`HotlineCall`, one per call
* :mod:`~sipcallhunt.hotline.attempt` — :class:`AgentAttempt`, one per agent leg
* :mod:`~sipcallhunt.hotline.pin` — PIN entry rules and the per-hotline :class:`PinGuard`

Nothing in this package does I/O, reads a clock or starts a thread; the shell in
``sipcallhunt.runtime`` turns the actions into SIP and media operations.
"""

from __future__ import annotations

__all__ = [
    "CALLER",
    "Action",
    "AgentAnswered",
    "AgentAttempt",
    "AgentFailed",
    "AgentHungUp",
    "AgentRinging",
    "AnswerCaller",
    "Bridge",
    "CallState",
    "CallerConnected",
    "CallerHungUp",
    "CallerLeg",
    "DetectDtmf",
    "Dial",
    "Digit",
    "Event",
    "HangupAgent",
    "HangupCaller",
    "HotlineCall",
    "LegId",
    "Log",
    "LogLevel",
    "MediaTimeout",
    "PinGuard",
    "Play",
    "PlaybackFinished",
    "RejectCaller",
    "Shutdown",
    "StopPlayback",
    "StoreAttempt",
    "StoreCall",
]

from sipcallhunt.hotline.actions import (
    Action,
    AnswerCaller,
    Bridge,
    DetectDtmf,
    Dial,
    HangupAgent,
    HangupCaller,
    Log,
    LogLevel,
    Play,
    RejectCaller,
    StopPlayback,
    StoreAttempt,
    StoreCall,
)
from sipcallhunt.hotline.attempt import AgentAttempt
from sipcallhunt.hotline.call import CallState, HotlineCall
from sipcallhunt.hotline.events import (
    CALLER,
    AgentAnswered,
    AgentFailed,
    AgentHungUp,
    AgentRinging,
    CallerConnected,
    CallerHungUp,
    CallerLeg,
    Digit,
    Event,
    LegId,
    MediaTimeout,
    PlaybackFinished,
    Shutdown,
)
from sipcallhunt.hotline.pin import PinGuard
