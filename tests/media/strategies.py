"""Hypothesis strategies for the media tests."""

from __future__ import annotations

from hypothesis import strategies as st

from sipcallhunt.media.rtp import RtpPacket

__all__ = ["DTMF_DIGITS", "digit_strings", "dtmf_digits", "rtp_packets", "u16", "u32"]

DTMF_DIGITS = "0123456789*#ABCD"
u16 = st.integers(min_value=0, max_value=0xFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
dtmf_digits = st.sampled_from(DTMF_DIGITS)
digit_strings = st.text(alphabet=DTMF_DIGITS, min_size=1, max_size=12)


@st.composite
def _padding(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(min_value=1, max_value=255))
    return draw(st.binary(min_size=count - 1, max_size=count - 1)) + bytes([count])


@st.composite
def rtp_packets(draw: st.DrawFn) -> RtpPacket:
    """Any encodable RTP packet, with and without CSRCs, header extension and padding."""
    extension = draw(
        st.none()
        | st.tuples(u16, st.integers(min_value=0, max_value=16).map(lambda words: b"\x5a" * (4 * words)))
        | st.tuples(u16, st.binary(max_size=64).map(lambda b: b[: len(b) // 4 * 4]))
    )
    padding_bytes = draw(st.just(b"") | _padding())
    return RtpPacket(
        payload_type=draw(st.integers(min_value=0, max_value=127)),
        sequence=draw(u16),
        timestamp=draw(u32),
        ssrc=draw(u32),
        payload=draw(st.binary(max_size=200)),
        marker=draw(st.booleans()),
        csrc=tuple(draw(st.lists(u32, max_size=15))),
        extension=extension,
        padding=bool(padding_bytes),
        padding_bytes=padding_bytes,
    )
