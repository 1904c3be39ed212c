"""Registration of one account with its registrar (RFC 3261 §10), kept alive for ever.

Theory of operation
-------------------
:class:`Registration` decides *when* to send REGISTER (and keep-alive OPTIONS) and what to make
of the outcome; the user-agent core builds the messages, runs the transactions and answers
digest challenges, and reports back the final status of each REGISTER and whether each
keep-alive was answered.  Everything is driven by ``now``:

* ``start`` → REGISTERING.  A 2xx → REGISTERED with the expiry the registrar granted; the
  refresh is due well before it runs out (:func:`refresh_delay`).
* 423 Interval Too Brief → retry at once with the registrar's Min-Expires.
* Any other failure or a timeout → RETRY_WAIT with capped exponential back-off
  (1, 2, 4 … ``retry_max`` seconds), for ever.
* Keep-alive: while REGISTERED or waiting to retry, an OPTIONS ping every
  ``keepalive_interval`` seconds.  A ping that is not answered within :data:`PING_PATIENCE`
  marks the registrar *unreachable*; the first answer after that means the registrar came back
  (and may have forgotten us after a restart), so REGISTER is sent at once.
* A registrar that restarts between two keep-alives is not noticed by them, and many forget
  their bindings on a restart (Asterisk, Kamailio without a database).  So the binding is also
  refreshed at least every ``reregister_interval`` seconds (0: only as the expiry requires),
  which bounds how long such a restart leaves the account unreachable.
* ``stop`` → UNREGISTERING (REGISTER with Expires 0) → STOPPED.

Each change of state is reported with a :class:`StateChanged` action for the log.  The
transitions live in ``_TRANSITIONS``.
"""

from __future__ import annotations

__all__ = [
    "PING_PATIENCE",
    "RegState",
    "Registration",
    "RegistrationAction",
    "SendKeepalive",
    "SendRegister",
    "StateChanged",
    "refresh_delay",
]

import enum
from typing import Final

import attrs

PING_PATIENCE: Final = 2.0
"""Seconds a keep-alive may go unanswered before the registrar counts as unreachable."""


class RegState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    RETRY_WAIT = "retry_wait"
    UNREGISTERING = "unregistering"
    STOPPED = "stopped"


class _In(enum.Enum):
    START = "start"
    SUCCESS = "success"
    TOO_BRIEF = "too_brief"
    FAILURE = "failure"
    REFRESH_DUE = "refresh_due"
    RETRY_DUE = "retry_due"
    REGISTRAR_BACK = "registrar_back"
    STOP = "stop"
    UNREGISTERED = "unregistered"


_TRANSITIONS: dict[tuple[RegState, _In], RegState] = {
    (RegState.IDLE, _In.START): RegState.REGISTERING,
    (RegState.REGISTERING, _In.SUCCESS): RegState.REGISTERED,
    (RegState.REGISTERING, _In.TOO_BRIEF): RegState.REGISTERING,
    (RegState.REGISTERING, _In.FAILURE): RegState.RETRY_WAIT,
    (RegState.REGISTERED, _In.REFRESH_DUE): RegState.REGISTERING,
    (RegState.REGISTERED, _In.REGISTRAR_BACK): RegState.REGISTERING,
    (RegState.RETRY_WAIT, _In.RETRY_DUE): RegState.REGISTERING,
    (RegState.RETRY_WAIT, _In.REGISTRAR_BACK): RegState.REGISTERING,
    (RegState.IDLE, _In.STOP): RegState.STOPPED,
    (RegState.REGISTERING, _In.STOP): RegState.UNREGISTERING,
    (RegState.REGISTERED, _In.STOP): RegState.UNREGISTERING,
    (RegState.RETRY_WAIT, _In.STOP): RegState.STOPPED,
    (RegState.UNREGISTERING, _In.UNREGISTERED): RegState.STOPPED,
}


@attrs.frozen
class SendRegister:
    """Send REGISTER with this Expires (0 to un-register)."""

    expires: int


@attrs.frozen
class SendKeepalive:
    """Send a keep-alive OPTIONS to the registrar; report it with ``keepalive_answered``."""

    ping: int


@attrs.frozen
class StateChanged:
    account: str
    old: RegState
    new: RegState
    detail: str
    routine: bool = False  # a scheduled refresh that changed nothing: worth a DEBUG line, not INFO


RegistrationAction = SendRegister | SendKeepalive | StateChanged


def refresh_delay(granted: int) -> float:
    """When to refresh a registration that the registrar granted for ``granted`` seconds.

    Well before expiry: 80 % of the interval but at least 5 s and at most 60 s early.
    """
    margin = min(60.0, max(5.0, granted * 0.2))
    return max(1.0, granted - margin)


@attrs.define(eq=False)
class Registration:
    account: str
    expires: int
    keepalive_interval: float = 30.0
    reregister_interval: float = 0.0  # refresh at least this often (0: as the expiry requires)
    retry_base: float = 1.0
    retry_max: float = 60.0
    state: RegState = RegState.IDLE
    granted: int | None = None
    failures: int = 0
    reachable: bool = True
    _requested: int = attrs.field(init=False, default=0)
    _too_brief: int = attrs.field(init=False, default=0)
    _due: float | None = attrs.field(init=False, default=None)  # refresh or retry
    _ping_due: float | None = attrs.field(init=False, default=None)
    _ping_id: int = attrs.field(init=False, default=0)
    _ping_sent: float | None = attrs.field(init=False, default=None)  # the unanswered ping
    _refreshing: bool = attrs.field(init=False, default=False)  # the REGISTER in flight is a refresh

    def __attrs_post_init__(self) -> None:
        self._requested = self.expires

    # -- inputs ---------------------------------------------------------------------------------
    def start(self, now: float) -> list[RegistrationAction]:
        return self._go(_In.START, now, "registering") + [SendRegister(self._requested)]

    def stop(self, now: float) -> list[RegistrationAction]:
        if self.state in (RegState.STOPPED, RegState.UNREGISTERING):
            return []
        send_unregister = self.state in (RegState.REGISTERED, RegState.REGISTERING)
        actions = self._go(_In.STOP, now, "un-registering" if send_unregister else "stopped")
        self._due = self._ping_due = None
        self._ping_sent = None
        if send_unregister:
            actions.append(SendRegister(0))
        return actions

    def register_response(
        self, status: int, now: float, *, granted: int | None = None, min_expires: int | None = None
    ) -> list[RegistrationAction]:
        """The final status of a REGISTER (after any digest challenge was answered)."""
        self._mark_reachable()
        if self.state is RegState.UNREGISTERING:
            return self._go(_In.UNREGISTERED, now, f"un-registered ({status})")
        if self.state is not RegState.REGISTERING:
            return []
        if 200 <= status < 300:
            if granted is None:
                granted = self._requested
            if granted <= 0:
                return self._fail(now, "registrar granted no binding (expires 0)")
            routine = self._refreshing and granted == self.granted
            self._refreshing = False
            self.granted = granted
            self.failures = 0
            self._too_brief = 0
            delay = refresh_delay(granted)
            if self.reregister_interval > 0:
                delay = min(delay, self.reregister_interval)
            self._due = now + delay
            self._arm_ping(now)
            return self._go(_In.SUCCESS, now, f"registered for {granted} s", routine=routine)
        if status == 423 and min_expires is not None and self._too_brief < 3:
            self._too_brief += 1
            self._requested = max(self._requested, min_expires)
            return self._go(_In.TOO_BRIEF, now, f"423 Interval Too Brief: retrying with {self._requested} s") + [
                SendRegister(self._requested)
            ]
        return self._fail(now, f"registration failed with {status}")

    def register_timeout(self, now: float, reason: str = "no answer") -> list[RegistrationAction]:
        self.reachable = False
        if self.state is RegState.UNREGISTERING:
            return self._go(_In.UNREGISTERED, now, f"un-register not answered ({reason})")
        if self.state is not RegState.REGISTERING:
            return []
        return self._fail(now, f"registrar did not answer ({reason})")

    def keepalive_answered(self, ping: int, now: float) -> list[RegistrationAction]:
        """Any response to keep-alive ``ping``: the registrar is there (the patience clock restarts
        with the next ping, whichever ping this answers)."""
        self._ping_sent = None
        was_unreachable = not self.reachable
        self._mark_reachable()
        if was_unreachable and self.state in (RegState.REGISTERED, RegState.RETRY_WAIT):
            self._due = None
            return self._go(_In.REGISTRAR_BACK, now, "registrar answers again: re-registering") + [
                SendRegister(self._requested)
            ]
        return []

    def keepalive_failed(self, ping: int, now: float) -> list[RegistrationAction]:
        """Keep-alive ``ping`` timed out or could not be sent."""
        if ping == self._ping_id:
            self._ping_sent = None
        return self._unreachable(now)

    # -- timers ---------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        times = [t for t in (self._due, self._ping_due) if t is not None]
        if self._ping_sent is not None:
            times.append(self._ping_sent + PING_PATIENCE)
        return min(times) if times else None

    def handle_timer(self, now: float) -> list[RegistrationAction]:
        actions: list[RegistrationAction] = []
        if self._ping_sent is not None and now >= self._ping_sent + PING_PATIENCE:
            self._ping_sent = None
            actions += self._unreachable(now)
        if self._due is not None and now >= self._due:
            self._due = None
            if self.state is RegState.REGISTERED:
                self._refreshing = True
                actions += self._go(_In.REFRESH_DUE, now, "refreshing registration", routine=True)
                actions.append(SendRegister(self._requested))
            elif self.state is RegState.RETRY_WAIT:
                actions += self._go(_In.RETRY_DUE, now, f"retrying (attempt {self.failures + 1})")
                actions.append(SendRegister(self._requested))
        if self._ping_due is not None and now >= self._ping_due:
            self._ping_due = None
            if self.state in (RegState.REGISTERED, RegState.RETRY_WAIT, RegState.REGISTERING):
                self._ping_id += 1
                if self._ping_sent is None:  # patience runs from the oldest unanswered ping
                    self._ping_sent = now
                actions.append(SendKeepalive(self._ping_id))
                self._arm_ping(now)
        return actions

    # -- helpers --------------------------------------------------------------------------------
    def _arm_ping(self, now: float) -> None:
        if self.keepalive_interval > 0:
            self._ping_due = now + self.keepalive_interval

    def _mark_reachable(self) -> None:
        self.reachable = True

    def _unreachable(self, now: float) -> list[RegistrationAction]:
        if not self.reachable:
            return []
        self.reachable = False
        return [StateChanged(self.account, self.state, self.state, "registrar not answering keep-alives")]

    def _fail(self, now: float, detail: str) -> list[RegistrationAction]:
        self.failures += 1
        self.granted = None
        delay = min(self.retry_max, self.retry_base * 2 ** (self.failures - 1))
        self._due = now + delay
        if self._ping_due is None:
            self._arm_ping(now)
        return self._go(_In.FAILURE, now, f"{detail}; retry in {delay:g} s")

    def _go(self, event: _In, now: float, detail: str, *, routine: bool = False) -> list[RegistrationAction]:
        new = _TRANSITIONS.get((self.state, event))
        if new is None:
            return []
        if event is not _In.REFRESH_DUE:
            self._refreshing = False
        old, self.state = self.state, new
        return [StateChanged(self.account, old, new, detail, routine)]
