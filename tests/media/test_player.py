"""The paced outbound stream, on a fake clock."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipcallhunt.errors import MediaError
from sipcallhunt.media import g711
from sipcallhunt.media.dtmf import rfc4733_packets
from sipcallhunt.media.player import MAX_CATCHUP_SLOTS, IdleMode, OutboundStream
from sipcallhunt.media.prompt import FRAME_SAMPLES, Prompt, make_prompt
from sipcallhunt.media.relay import RelayPath
from sipcallhunt.media.rtp import RtpPacket, seq_diff, ts_diff

START = 1000.0
SILENCE = g711.silence("PCMU", FRAME_SAMPLES)


def tone_prompt(name: str, freq: float, seconds: float) -> Prompt:
    t = np.arange(int(8000 * seconds)) / 8000
    return make_prompt(name, 0.5 * np.sin(2 * np.pi * freq * t))


def new_stream(idle: IdleMode = IdleMode.SILENCE, seed: int = 7) -> OutboundStream:
    return OutboundStream.create("PCMU", 0, start=START, rng=random.Random(seed), idle=idle)


def run(stream: OutboundStream, until: float) -> list[tuple[float, RtpPacket]]:
    """Drive the stream like the shell does, exactly on time; return (send time, packet)."""
    out = []
    for _ in range(1_000_000):
        due = stream.next_due()
        if due is None or due > until:
            break
        out.extend((due, RtpPacket.parse(p)) for p in stream.pop_due(due))
    return out


def assert_continuous(packets: list[RtpPacket]) -> None:
    assert len({p.ssrc for p in packets}) == 1
    for a, b in itertools.pairwise(packets):
        assert seq_diff(b.sequence, a.sequence) == 1
        assert ts_diff(b.timestamp, a.timestamp) > 0


def test_packet_n_is_due_at_start_plus_n_frames_without_drift() -> None:
    stream = new_stream()
    sent = run(stream, START + 600.0)  # ten minutes of comfort silence
    assert len(sent) == 30001
    first = sent[0][1]
    for n, (due, packet) in enumerate(sent):
        assert due == START + n * 0.020  # computed, not accumulated
        assert packet.timestamp == (first.timestamp + 160 * n) & 0xFFFFFFFF
        assert packet.sequence == (first.sequence + n) & 0xFFFF
    assert_continuous([p for _, p in sent])
    assert stream.next_due() == START + 30001 * 0.020


def test_random_initial_values() -> None:
    a, b = new_stream(seed=1), new_stream(seed=2)
    pa, pb = RtpPacket.parse(a.pop_due(START)[0]), RtpPacket.parse(b.pop_due(START)[0])
    assert (pa.ssrc, pa.sequence, pa.timestamp) != (pb.ssrc, pb.sequence, pb.timestamp)


def test_prompt_music_silence_relay_prompt_is_one_stream() -> None:
    hello = tone_prompt("hello", 500, 0.1)  # 5 frames
    music = tone_prompt("music", 700, 0.33)
    stream = new_stream()
    stream.play([hello], token="hello", now=START)
    sent = run(stream, START + 0.08)
    assert [p.payload for _, p in sent] == list(hello.frames("PCMU"))
    assert stream.take_finished() == ["hello"]
    stream.play([music], loop=True, token="music", now=START + 0.09)
    sent += run(stream, START + 1.0)
    assert stream.take_finished() == []  # looping music never finishes
    stream.stop()
    sent += run(stream, START + 1.2)
    assert sent[-1][1].payload == SILENCE
    # the other party's audio continues the same stream
    position = stream.start_relay(START + 1.21)
    assert stream.next_due() is None
    path = RelayPath.create(
        position, in_codec="PCMA", in_audio_pt=8, in_event_pt=None, out_codec="PCMU", out_audio_pt=0, out_event_pt=None
    )
    relayed = []
    for i in range(10):
        now = START + 1.225 + i * 0.02
        stream.pop_due(now)
        pkt = RtpPacket(payload_type=8, sequence=5000 + i, timestamp=777 + 160 * i, ssrc=42, payload=b"\xd5" * 160)
        buf = bytearray(pkt.serialize())
        n = path.forward(buf, len(buf), now)
        relayed.append((now, RtpPacket.parse(bytes(buf[:n]))))
    stream.stop_relay(path.position(START + 1.43), START + 1.43)
    stream.play([hello], token="again", now=START + 1.43)
    after = run(stream, START + 1.6)
    everything = [p for _, p in sent + relayed + after]
    assert_continuous(everything)
    # marker: first packet, first relayed packet, first packet after the relay — nowhere else
    markers = [i for i, p in enumerate(everything) if p.marker]
    assert markers == [0, len(sent), len(sent) + len(relayed)]
    assert relayed[0][1].payload == (b"\xd5" * 160).translate(g711.ALAW_TO_ULAW)  # transcoded
    # timestamps follow the wall clock across the switches (within one frame)
    t0, p0 = sent[0][0], sent[0][1]
    for t, p in sent + relayed + after:
        assert ts_diff(p.timestamp, p0.timestamp) == pytest.approx((t - t0) * 8000, abs=160)


def test_source_switch_mid_prompt_is_seamless() -> None:
    long = tone_prompt("long", 500, 1.0)
    other = tone_prompt("other", 900, 1.0)
    stream = new_stream()
    stream.play([long], token="long", now=START)
    sent = run(stream, START + 0.1)
    stream.play([other], token="other", now=START + 0.105)
    sent += run(stream, START + 0.2)
    payloads = [p.payload for _, p in sent]
    assert payloads[:6] == list(long.frames("PCMU")[:6])
    assert payloads[6:11] == list(other.frames("PCMU")[:5])
    assert stream.take_finished() == []  # the replaced playlist reports nothing
    assert_continuous([p for _, p in sent])
    assert [p.marker for _, p in sent].count(True) == 1


def test_loop_whole_list_and_single_prompt_loop_cut() -> None:
    a, b = tone_prompt("a", 500, 0.04), tone_prompt("b", 600, 0.06)
    stream = new_stream()
    stream.play([a, b], loop=True, token="whisper", now=START)
    payloads = [p.payload for _, p in run(stream, START + 0.02 * 14)]
    cycle = list(a.frames("PCMU")) + list(b.frames("PCMU"))
    assert payloads == (cycle * 3)[:15]
    music = tone_prompt("music", 440, 0.5)
    stream.play([music], loop=True, now=START + 0.3)
    n = len(music.loop_frames("PCMU"))
    payloads = [p.payload for _, p in run(stream, START + 0.3 + 0.02 * (2 * n + 3))]
    assert payloads[: 2 * n] == list(music.loop_frames("PCMU")) * 2


def test_playlist_finishes_once_with_its_token() -> None:
    stream = new_stream(IdleMode.NOTHING)
    a, b = tone_prompt("a", 500, 0.05), tone_prompt("b", 600, 0.05)
    stream.play([a, b], token=("call", 1), now=START)
    sent = run(stream, START + 5)
    assert len(sent) == len(a.frames("PCMU")) + len(b.frames("PCMU"))
    assert stream.take_finished() == [("call", 1)]
    assert stream.take_finished() == []
    assert stream.next_due() is None  # idle NOTHING: nothing more to send


def test_idle_nothing_starts_a_new_talkspurt_on_the_grid() -> None:
    stream = new_stream(IdleMode.NOTHING)
    assert stream.next_due() is None
    beep = tone_prompt("beep", 1000, 0.04)
    stream.play([beep], now=START + 0.5)
    first = run(stream, START + 0.6)
    stream.play([beep], now=START + 3.013)
    second = run(stream, START + 3.2)
    assert first[0][0] == START + 0.5
    assert second[0][0] == pytest.approx(START + 3.02)  # the next grid slot
    assert first[0][1].marker and second[0][1].marker
    assert not first[1][1].marker
    # sequence numbers count packets sent; timestamps count time
    assert seq_diff(second[0][1].sequence, first[-1][1].sequence) == 1
    assert ts_diff(second[0][1].timestamp, first[0][1].timestamp) == round(2.52 * 8000)


def test_late_shell_catches_up_then_skips() -> None:
    stream = new_stream()
    stream.pop_due(START)
    burst = stream.pop_due(START + 0.02 * MAX_CATCHUP_SLOTS + 0.001)  # three slots overdue: all sent
    assert len(burst) == MAX_CATCHUP_SLOTS
    assert stream.late_skipped == 0
    late = stream.pop_due(START + 0.02 * 20 + 0.001)  # 16 slots overdue: skip to the current one
    assert len(late) == 1
    assert stream.late_skipped == 20 - MAX_CATCHUP_SLOTS - 1
    packets = [RtpPacket.parse(p) for p in burst + late]
    assert seq_diff(packets[-1].sequence, packets[-2].sequence) == 1
    assert ts_diff(packets[-1].timestamp, packets[-2].timestamp) == 160 * (20 - MAX_CATCHUP_SLOTS)
    assert packets[-1].marker
    assert stream.pop_due(START + 0.02 * 20 + 0.002) == []


def test_late_shell_does_not_lose_prompt_audio() -> None:
    prompt = tone_prompt("p", 500, 0.2)
    stream = new_stream()
    stream.play([prompt], now=START)
    got = stream.pop_due(START) + stream.pop_due(START + 1.0)  # stalled for a second
    assert stream.late_skipped > 0
    got += [p.serialize() for _, p in run(stream, START + 2)]
    payloads = [RtpPacket.parse(p).payload for p in got][: len(prompt.frames("PCMU"))]
    assert payloads == list(prompt.frames("PCMU"))


def test_rfc4733_splice_pauses_audio_and_continues_the_sequence() -> None:
    stream = new_stream()
    run(stream, START + 0.1)
    position = stream.next_position(START + 0.105)
    packets = rfc4733_packets(
        "5", payload_type=101, ssrc=position.ssrc, first_sequence=position.next_seq, timestamp=position.timestamp
    )
    stream.splice(position, [(o, p.serialize()) for o, p in packets], next_seq=position.next_seq + 8)
    sent = run(stream, START + 0.6)
    kinds = [p.payload_type for _, p in sent]
    first_event = kinds.index(101)
    assert sent[first_event][0] == position.time
    assert kinds[first_event : first_event + len(packets)] == [101] * len(packets)
    assert all(k == 0 for k in kinds[first_event + len(packets) :])
    audio_after = sent[first_event + len(packets)][1]
    assert audio_after.sequence == (position.next_seq + 8) & 0xFFFF
    assert audio_after.marker
    assert {p.ssrc for _, p in sent} == {position.ssrc}


def test_splice_into_a_relayed_stream_is_refused() -> None:
    stream = new_stream()
    position = stream.start_relay(START)
    with pytest.raises(MediaError):
        stream.splice(position, [], next_seq=0)


def test_codec_change_keeps_the_stream() -> None:
    stream = new_stream()
    prompt = tone_prompt("p", 500, 0.2)
    stream.play([prompt], now=START)
    a = run(stream, START + 0.04)
    stream.set_format("PCMA", 8)
    b = run(stream, START + 0.1)
    assert [p.payload_type for _, p in a] == [0, 0, 0]
    assert {p.payload_type for _, p in b} == {8}
    assert b[0][1].payload == prompt.frames("PCMA")[3]
    assert_continuous([p for _, p in a + b])


def test_insert_audio_goes_before_the_playlist() -> None:
    stream = new_stream()
    prompt = tone_prompt("p", 500, 0.1)
    stream.play([prompt], now=START)
    stream.insert_audio([b"\x01" * 160, b"\x02" * 160], now=START)
    payloads = [p.payload for _, p in run(stream, START + 0.2)]
    assert payloads[:2] == [b"\x01" * 160, b"\x02" * 160]
    assert payloads[2:7] == list(prompt.frames("PCMU"))


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["play", "loop", "stop", "relay", "dtmf", "tone", "late", "wait"]),
            st.floats(min_value=0.0, max_value=0.5),
        ),
        max_size=25,
    ),
    idle=st.sampled_from(list(IdleMode)),
)
def test_any_sequence_of_operations_keeps_one_continuous_stream(ops: list[tuple[str, float]], idle: IdleMode) -> None:
    prompts = [tone_prompt("a", 500, 0.06), tone_prompt("b", 700, 0.11)]
    stream = new_stream(idle)
    now = START
    sent: list[tuple[float, RtpPacket]] = []
    path: RelayPath | None = None
    in_seq = 0

    def drive(until: float) -> None:
        nonlocal in_seq
        if path is not None:
            t = now
            while t <= until:  # the other party's packets every 20 ms
                stream.pop_due(t)
                pkt = RtpPacket(
                    payload_type=0, sequence=in_seq & 0xFFFF, timestamp=160 * in_seq, ssrc=5, payload=SILENCE
                )
                in_seq += 1
                buf = bytearray(pkt.serialize())
                n = path.forward(buf, len(buf), t)
                sent.append((t, RtpPacket.parse(bytes(buf[:n]))))
                t += 0.02
            return
        for _ in range(100_000):
            due = stream.next_due()
            if due is None or due > until:
                break
            sent.extend((due, RtpPacket.parse(p)) for p in stream.pop_due(due))

    for op, dt in ops:
        if op == "late":  # the shell stalls, then serves everything due at once
            now += dt
            sent.extend((now, RtpPacket.parse(p)) for p in stream.pop_due(now))
            continue
        drive(now + dt)
        now += dt
        if op == "relay":
            if path is None:
                path = RelayPath.create(
                    stream.start_relay(now), in_codec="PCMU", in_audio_pt=0, in_event_pt=None,
                    out_codec="PCMU", out_audio_pt=0, out_event_pt=None,
                )  # fmt: skip
            else:
                stream.stop_relay(path.position(now), now)
                path = None
        elif path is not None:
            continue  # the other operations wait for the bridge to end
        elif op in ("play", "loop"):
            stream.play(prompts, loop=op == "loop", token=op, now=now)
        elif op == "stop":
            stream.stop()
        elif op == "dtmf":
            position = stream.next_position(now)
            packets = rfc4733_packets(
                "1", payload_type=101, ssrc=position.ssrc, first_sequence=position.next_seq,
                timestamp=position.timestamp,
            )  # fmt: skip
            stream.splice(position, [(o, p.serialize()) for o, p in packets], next_seq=position.next_seq + 8)
        elif op == "tone":
            stream.insert_audio([SILENCE] * 3, now=now)
    drive(now + 0.5)
    packets = [p for _, p in sent]
    assert len({p.ssrc for p in packets}) <= 1
    audio = [p for p in packets if p.payload_type == 0]
    for a, b in itertools.pairwise(audio):
        assert ts_diff(b.timestamp, a.timestamp) > 0  # audio time only moves forward
    seqs = sorted({p.sequence for p in packets}, key=lambda s: seq_diff(s, packets[0].sequence) if packets else 0)
    if packets:
        # every sequence number from the first to the last was used (RFC 4733 end packets share one)
        assert seq_diff(seqs[-1], seqs[0]) == len(seqs) - 1
    for (t1, _), (t2, _) in itertools.pairwise(sent):
        assert t2 >= t1 - 1e-9
