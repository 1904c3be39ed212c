"""DTMF in SIP INFO bodies: application/dtmf-relay and application/dtmf."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcallhunt.errors import RemoteProtocolError
from sipcallhunt.media.dtmf import DTMF_DIGITS, DtmfDigit, parse_info_dtmf
from sipcallhunt.records import DtmfMethod


def info(digit: str, duration: float | None = None) -> DtmfDigit:
    return DtmfDigit(digit, DtmfMethod.INFO, duration)


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", info("5", 0.16)),
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160", info("5", 0.16)),
        ("application/dtmf-relay", b"Signal=*\nDuration=250\n", info("*", 0.25)),
        ("application/dtmf-relay", b"Signal=#\r\n", info("#")),
        ("application/dtmf-relay", b"Signal=10\r\nDuration=100\r\n", info("*", 0.1)),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=100\r\n", info("#", 0.1)),
        ("application/dtmf-relay", b"Signal=12\r\n", info("A")),
        ("application/dtmf-relay", b"Signal=d\r\n", info("D")),
        ("application/dtmf-relay", b"signal = 7 \r\nduration = 80\r\n", info("7", 0.08)),
        ("Application/DTMF-Relay; charset=utf-8", b"Signal=0\r\n", info("0")),
        ("application/dtmf-relay", b"\r\nSignal=9\r\nFoo=bar\r\n\r\n", info("9")),
        ("application/dtmf", b"3", info("3")),
        ("application/dtmf", b"#\r\n", info("#")),
        ("application/dtmf", b"11", info("#")),
        ("application/dtmf", b"b", info("B")),
    ],
)
def test_parse(content_type: str, body: bytes, expected: DtmfDigit) -> None:
    assert parse_info_dtmf(content_type, body) == expected


@given(st.sampled_from(DTMF_DIGITS), st.integers(min_value=0, max_value=10_000))
def test_every_key_both_types(digit: str, millis: int) -> None:
    body = f"Signal={digit}\r\nDuration={millis}\r\n".encode()
    assert parse_info_dtmf("application/dtmf-relay", body) == info(digit, millis / 1000)
    assert parse_info_dtmf("application/dtmf", digit.encode()) == info(digit)


@pytest.mark.parametrize(
    "content_type", [None, "application/sdp", "text/plain", "application/dtmf-relayx", "application/media_control+xml"]
)
def test_other_content_types_are_not_dtmf(content_type: str | None) -> None:
    assert parse_info_dtmf(content_type, b"Signal=5\r\n") is None


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/dtmf-relay", b""),
        ("application/dtmf-relay", b"Duration=160\r\n"),
        ("application/dtmf-relay", b"Signal=\r\n"),
        ("application/dtmf-relay", b"Signal=E\r\n"),
        ("application/dtmf-relay", b"Signal=16\r\n"),
        ("application/dtmf-relay", b"Signal=55\r\n"),
        ("application/dtmf-relay", b"Signal=5\r\nSignal=6\r\n"),
        ("application/dtmf-relay", b"Signal=5\r\nDuration=long\r\n"),
        ("application/dtmf-relay", b"Signal=5\r\nDuration=-1\r\n"),
        ("application/dtmf-relay", b"hello\r\n"),
        ("application/dtmf-relay", b"Signal=\xff\r\n"),
        ("application/dtmf", b""),
        ("application/dtmf", b"12345"),
        ("application/dtmf", b"x"),
    ],
)
def test_garbage_raises_remote_protocol_error_400(content_type: str, body: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info_:
        parse_info_dtmf(content_type, body)
    assert info_.value.status == 400


@given(st.binary(max_size=64), st.sampled_from(["application/dtmf-relay", "application/dtmf"]))
def test_arbitrary_bodies_parse_or_raise_remote_error(body: bytes, content_type: str) -> None:
    try:
        digit = parse_info_dtmf(content_type, body)
    except RemoteProtocolError:
        return
    assert digit is not None and digit.digit in DTMF_DIGITS and digit.method is DtmfMethod.INFO
