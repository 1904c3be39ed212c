"""Hypothesis strategies for the hotline tests: hotline configurations and DTMF keys."""

from __future__ import annotations

from hypothesis import strategies as st

from sipcallhunt.config import AgentConfig, HotlineConfig

KEYS = "0123456789*#ABCD"
PIN_KEYS = "0123456789"

keys = st.sampled_from(KEYS)


@st.composite
def agents(draw: st.DrawFn) -> tuple[AgentConfig, ...]:
    names = draw(
        st.one_of(
            st.just([]),  # a hotline without agents: rare in configs, possible in code
            st.lists(st.sampled_from(["Alice", "Bob", "Carol", "Dave"]), min_size=1, max_size=3, unique=True),
            st.lists(st.sampled_from(["Alice", "Bob", "Carol", "Dave"]), min_size=1, max_size=3, unique=True),
        )
    )
    return tuple(
        AgentConfig(
            name=name,
            number=str(201 + index),
            ring_timeout=draw(st.floats(1.0, 40.0, allow_nan=False)),
        )
        for index, name in enumerate(names)
    )


@st.composite
def hotline_configs(draw: st.DrawFn) -> HotlineConfig:
    confirm_key, decline_key = draw(st.lists(keys, min_size=2, max_size=2, unique=True))
    return HotlineConfig(
        name="fuzz",
        account="pbx",
        pins=tuple(draw(st.lists(st.text(PIN_KEYS, min_size=3, max_size=6), max_size=2))),
        pin_attempts=draw(st.integers(1, 3)),
        pin_timeout=draw(st.floats(1.0, 20.0)),
        pin_lockout_failures=draw(st.integers(1, 3)),
        pin_lockout_time=draw(st.floats(10.0, 1000.0)),
        intro_timeout=draw(st.floats(5.0, 60.0)),
        rounds=draw(st.integers(1, 3)),
        confirm_key=confirm_key,
        decline_key=decline_key,
        confirm_timeout=draw(st.floats(1.0, 20.0)),
        on_no_agent=draw(st.sampled_from(["announce", "forward:0800123"])),
        caller_id=draw(st.sampled_from(["caller", "hotline"])),
        inband_dtmf=draw(st.booleans()),
        max_call_time=draw(st.floats(30.0, 3000.0)),
        agents=draw(agents()),
    )
