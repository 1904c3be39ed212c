"""A key typed by SIP INFO never reaches the log below TRACE (it may be part of a PIN)."""

from __future__ import annotations

from sipcallhunt.sip.events import TRACE, InfoDigit, LogLine
from tests.sip.test_useragent import Harness, ack_for, answered_call, in_dialog


def test_info_digit_is_logged_without_the_key() -> None:
    h = Harness()
    _, ok = answered_call(h)
    h.deliver(ack_for(ok))
    h.events.clear()
    h.deliver(
        in_dialog(
            ok, "INFO", 11, branch="z9hG4bKi1", body=b"Signal=7\r\nDuration=160\r\n", ctype="application/dtmf-relay"
        )
    )
    digit = h.last(InfoDigit)
    assert isinstance(digit, InfoDigit) and digit.digit == "7"
    lines = [e.message for e in h.events if isinstance(e, LogLine) and e.level > TRACE]
    assert "a DTMF key by SIP INFO" in lines
    assert not [line for line in lines if "7" in line.replace("z9hG4bK", "")], lines
