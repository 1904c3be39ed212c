"""The registration state machine on a fake clock."""

from __future__ import annotations

import pytest

from sipcallhunt.sip.registration import (
    PING_PATIENCE,
    Registration,
    RegistrationAction,
    RegState,
    SendKeepalive,
    SendRegister,
    StateChanged,
    refresh_delay,
)


def sends(actions: list[RegistrationAction]) -> list[SendRegister]:
    return [a for a in actions if isinstance(a, SendRegister)]


def advance(reg: Registration, until: float) -> list[tuple[float, RegistrationAction]]:
    out: list[tuple[float, RegistrationAction]] = []
    while (deadline := reg.next_deadline()) is not None and deadline <= until:
        out += [(deadline, a) for a in reg.handle_timer(deadline)]
    return out


def registered(expires: int = 300, keepalive: float = 0.0) -> Registration:
    reg = Registration("main", expires, keepalive_interval=keepalive)
    assert sends(reg.start(0.0)) == [SendRegister(expires)]
    reg.register_response(200, 0.1, granted=expires)
    assert reg.state is RegState.REGISTERED
    return reg


def test_refresh_delay_is_well_before_expiry() -> None:
    assert refresh_delay(3600) == 3540
    assert refresh_delay(300) == 240
    assert refresh_delay(60) == 48
    assert refresh_delay(10) == 5
    assert refresh_delay(1) == 1.0


def test_honours_the_granted_expiry_and_refreshes() -> None:
    reg = Registration("main", 3600, keepalive_interval=0)
    reg.start(0.0)
    actions = reg.register_response(200, 0.5, granted=120)
    assert reg.granted == 120
    assert any(isinstance(a, StateChanged) and a.new is RegState.REGISTERED for a in actions)
    events = advance(reg, 1000.0)
    first_refresh = [t for t, a in events if isinstance(a, SendRegister)][0]
    assert first_refresh == pytest.approx(0.5 + 96)  # 120 - 24
    assert reg.state is RegState.REGISTERING


def test_reregister_interval_caps_the_refresh() -> None:
    """A registrar restart between keep-alives is not seen by them: the binding is refreshed at least
    every ``reregister_interval`` seconds, but never later than the expiry requires."""
    reg = Registration("main", 300, keepalive_interval=0, reregister_interval=25)
    reg.start(0.0)
    reg.register_response(200, 1.0, granted=300)
    refreshes = []
    for _ in range(3):
        events = advance(reg, refreshes[-1] + 100 if refreshes else 100.0)
        refreshes.append(next(t for t, a in events if isinstance(a, SendRegister)))
        reg.register_response(200, refreshes[-1] + 0.1, granted=300)
    assert refreshes == pytest.approx([26.0, 51.1, 76.2])
    short = Registration("main", 300, keepalive_interval=0, reregister_interval=25)
    short.start(0.0)
    short.register_response(200, 0.0, granted=20)  # the registrar grants less: its expiry rules
    assert [t for t, a in advance(short, 100.0) if isinstance(a, SendRegister)] == [pytest.approx(15.0)]


def test_routine_refreshes_are_marked_for_a_quiet_log() -> None:
    reg = Registration("main", 300, keepalive_interval=0, reregister_interval=25)
    first = [a for a in reg.start(0.0) + reg.register_response(200, 0.1, granted=300) if isinstance(a, StateChanged)]
    assert [a.routine for a in first] == [False, False]
    refresh = [a for _, a in advance(reg, 30.0) if isinstance(a, StateChanged)]
    refresh += [a for a in reg.register_response(200, 26.0, granted=300) if isinstance(a, StateChanged)]
    assert [(a.new, a.routine) for a in refresh] == [(RegState.REGISTERING, True), (RegState.REGISTERED, True)]
    advance(reg, 60.0)
    changed = [a for a in reg.register_response(200, 51.0, granted=120) if isinstance(a, StateChanged)]
    assert [a.routine for a in changed] == [False]  # the registrar changed its mind: worth INFO


def test_interval_too_brief_retries_with_min_expires() -> None:
    reg = Registration("main", 30, keepalive_interval=0)
    reg.start(0.0)
    actions = reg.register_response(423, 0.1, min_expires=60)
    assert sends(actions) == [SendRegister(60)]
    reg.register_response(200, 0.2, granted=60)
    assert reg.state is RegState.REGISTERED


def test_failures_back_off_exponentially_with_a_cap_forever() -> None:
    reg = Registration("main", 300, keepalive_interval=0, retry_max=16)
    reg.start(0.0)
    retry_times = []
    now = 0.0
    for _ in range(8):
        reg.register_response(403, now)
        assert reg.state is RegState.RETRY_WAIT
        deadline = reg.next_deadline()
        assert deadline is not None
        retry_times.append(round(deadline - now, 3))
        now = deadline
        assert sends(reg.handle_timer(now)) == [SendRegister(300)]
    assert retry_times == [1, 2, 4, 8, 16, 16, 16, 16]


def test_timeout_is_a_failure_and_success_resets_backoff() -> None:
    reg = Registration("main", 300, keepalive_interval=0)
    reg.start(0.0)
    reg.register_timeout(32.0)
    assert reg.state is RegState.RETRY_WAIT and reg.failures == 1
    advance(reg, 33.0)
    reg.register_response(200, 33.1, granted=300)
    assert reg.failures == 0


def test_unregister_on_stop() -> None:
    reg = registered()
    actions = reg.stop(5.0)
    assert sends(actions) == [SendRegister(0)]
    assert reg.state is RegState.UNREGISTERING
    reg.register_response(200, 5.1)
    assert reg.state is RegState.STOPPED
    assert reg.next_deadline() is None


def test_stop_while_waiting_to_retry_sends_nothing() -> None:
    reg = Registration("main", 300, keepalive_interval=0)
    reg.start(0.0)
    reg.register_response(500, 0.1)
    assert sends(reg.stop(0.2)) == []
    assert reg.state is RegState.STOPPED


def test_keepalive_pings_while_registered() -> None:
    reg = registered(keepalive=10.0)
    events = advance(reg, 35.0)
    pings = [(t, a) for t, a in events if isinstance(a, SendKeepalive)]
    assert [t for t, _ in pings] == pytest.approx([10.1, 20.1, 30.1])
    for t, ping in pings:
        assert isinstance(ping, SendKeepalive)
        reg.keepalive_answered(ping.ping, t + 0.01)
    assert reg.reachable


def test_registrar_restart_is_noticed_and_we_register_at_once() -> None:
    """A ping unanswered → unreachable; the first answer afterwards → REGISTER immediately."""
    reg = registered(keepalive=5.0)
    events = advance(reg, 5.1)
    ping = [a for _, a in events if isinstance(a, SendKeepalive)][0]
    # No answer within PING_PATIENCE: the registrar is gone.
    events = advance(reg, 5.1 + PING_PATIENCE + 0.01)
    assert not reg.reachable
    assert any(isinstance(a, StateChanged) and "not answering" in a.detail for _, a in events)
    # Keep-alives keep going while it is down.
    events = advance(reg, 20.0)
    later = [a for _, a in events if isinstance(a, SendKeepalive)]
    assert later
    for p in [ping, *later]:
        assert isinstance(p, SendKeepalive)
        reg.keepalive_failed(p.ping, 20.0)
    # It comes back: the next ping is answered and we re-register at once.
    events = advance(reg, 26.0)
    back = [a for _, a in events if isinstance(a, SendKeepalive)][0]
    assert isinstance(back, SendKeepalive)
    actions = reg.keepalive_answered(back.ping, 26.0)
    assert sends(actions) == [SendRegister(300)]
    assert reg.state is RegState.REGISTERING


def test_late_answer_to_an_old_ping_also_counts() -> None:
    reg = registered(keepalive=5.0)
    events = advance(reg, 5.1)
    ping = [a for _, a in events if isinstance(a, SendKeepalive)][0]
    assert isinstance(ping, SendKeepalive)
    advance(reg, 8.0)
    assert not reg.reachable
    # The UDP retransmission of that same ping is answered by the restarted registrar.
    assert sends(reg.keepalive_answered(ping.ping, 9.0)) == [SendRegister(300)]


def test_register_failure_then_keepalive_answer_skips_the_backoff() -> None:
    reg = Registration("main", 300, keepalive_interval=5.0, retry_max=60)
    now = 0.0
    reg.start(now)
    for i in range(6):
        reg.register_timeout(now)
        assert reg.state is RegState.RETRY_WAIT
        retry_at = now + 2**i
        advance(reg, retry_at)
        assert reg.state is RegState.REGISTERING
        now = retry_at
    reg.register_timeout(now)  # the 7th failure: the next retry is 60 s away
    assert reg.next_deadline() is not None
    events = advance(reg, now + 6.0)
    pings = [a for _, a in events if isinstance(a, SendKeepalive)]
    assert pings and reg.state is RegState.RETRY_WAIT
    ping = pings[-1]
    assert isinstance(ping, SendKeepalive)
    assert sends(reg.keepalive_answered(ping.ping, now + 6.0)) == [SendRegister(300)]
    assert reg.state is RegState.REGISTERING


def test_zero_grant_is_a_failure() -> None:
    reg = Registration("main", 300, keepalive_interval=0)
    reg.start(0.0)
    reg.register_response(200, 0.1, granted=0)
    assert reg.state is RegState.RETRY_WAIT


def test_outage_is_noticed_when_pings_come_faster_than_the_patience() -> None:
    """keepalive_interval below PING_PATIENCE: each new ping must not restart the patience of the
    unanswered ones before it (or the outage, and a PBX restart, would never be noticed)."""
    reg = registered(keepalive=PING_PATIENCE / 2)
    events = advance(reg, 0.1 + 4 * PING_PATIENCE)
    assert not reg.reachable
    noticed = [t for t, a in events if isinstance(a, StateChanged) and "not answering" in a.detail]
    first_ping = min(t for t, a in events if isinstance(a, SendKeepalive))
    assert noticed == pytest.approx([first_ping + PING_PATIENCE])
    # Back: an answer to any ping (here a retransmission of the oldest one) re-registers once.
    oldest = next(a for _, a in events if isinstance(a, SendKeepalive))
    assert isinstance(oldest, SendKeepalive)
    assert sends(reg.keepalive_answered(oldest.ping, 10.0)) == [SendRegister(300)]
    reg.register_response(200, 10.01, granted=300)
    changes = []
    while (deadline := reg.next_deadline()) is not None and deadline <= 10.0 + 3 * PING_PATIENCE:
        for action in reg.handle_timer(deadline):
            if isinstance(action, SendKeepalive):
                changes += reg.keepalive_answered(action.ping, deadline + 0.001)
            changes.append(action)
    assert reg.reachable and reg.state is RegState.REGISTERED
    assert not [a for a in changes if isinstance(a, StateChanged | SendRegister)]
