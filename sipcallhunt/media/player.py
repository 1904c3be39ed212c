"""One outgoing RTP stream per leg, paced on a fixed 20 ms grid (pure: ``now`` is an argument).

Theory of operation
-------------------
An :class:`OutboundStream` is everything we send on one leg for the whole call: one SSRC, one
sequence-number space and one timestamp clock (RFC 3550 §5.1, §8), all starting at random
values (RFC 3550 §5.1: "the initial value … SHOULD be random").

*Pacing.*  Slot ``n`` of the stream is due at ``start + n x 20 ms`` and carries RTP timestamp
``ts0 + 160·n`` — computed, never accumulated, so the stream does not drift however long it
runs.  The shell asks :meth:`next_due` when to wake up and calls :meth:`pop_due` with the time
it really woke; it returns the packets of every slot due by then.  *Late shell:* when up to
:data:`MAX_CATCHUP_SLOTS` slots are overdue they are all sent at once (a receiver's jitter
buffer absorbs a burst better than a hole); when more are overdue the stream skips to the
current slot: the skipped slots send nothing (the timestamp jumps, RFC 3550 §5.1) and the
audio resumes where it stopped, so no word of a prompt is lost.  ``late_skipped`` counts them.

*What a slot carries*, in order of precedence:
1. spliced packets (RFC 4733 telephone-events built elsewhere, :meth:`splice`) — audio is
   suppressed while an event lasts;
2. inserted audio frames (in-band DTMF tones, :meth:`insert_audio`);
3. the playlist (:meth:`play`): prompts one after the other, the whole list looped when asked
   (hold music, the agent whisper).  A one-prompt loop uses the prompt's seamless loop cut.
   :meth:`play` switches source at the next slot without touching SSRC, sequence or timestamp;
   when a non-looping playlist has sent its last frame, its token is reported by
   :meth:`take_finished` (a playlist replaced or stopped before its end reports nothing);
4. when idle, comfort silence (:attr:`IdleMode.SILENCE`) or nothing (:attr:`IdleMode.NOTHING`).

The marker bit is set on the first packet of each talkspurt (RFC 3551 §4.1): the stream's
first packet, the first after slots that sent nothing, and the first after a relay.

*Relaying.*  While the leg is bridged the other party's packets continue this stream:
:meth:`start_relay` returns the :class:`~sipcallhunt.media.relay.StreamPosition` the relay
continues from, and :meth:`stop_relay` takes the relay's final position back; the stream then
re-anchors its timestamp so that it keeps following the wall clock.
"""

from __future__ import annotations

__all__ = [
    "FRAME_SECONDS",
    "MAX_CATCHUP_SLOTS",
    "IdleMode",
    "OutboundStream",
]

import collections
import enum
import math
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import attrs

from sipcallhunt.errors import MediaError
from sipcallhunt.media import g711
from sipcallhunt.media.prompt import FRAME_SAMPLES, Prompt
from sipcallhunt.media.relay import StreamPosition

if TYPE_CHECKING:  # pragma: no cover
    import random

FRAME_SECONDS: Final = 0.020
SLOTS_PER_SECOND: Final = 50
MAX_CATCHUP_SLOTS: Final = 3  # up to 60 ms late: burst; later: skip to the current slot
_TS_MASK: Final = 0xFFFFFFFF
_SEQ_MASK: Final = 0xFFFF
_HEADER: Final = struct.Struct("!BBHII")  # RFC 3550 §5.1 fixed header
_V2: Final = 0x80
_MARKER: Final = 0x80
_EPSILON: Final = 1e-9


class IdleMode(enum.Enum):
    SILENCE = "silence"  # keep sending digital silence (keeps NATs, media timeouts and jitter buffers happy)
    NOTHING = "nothing"  # send nothing; the next audio starts a new talkspurt


@attrs.define(eq=False)
class OutboundStream:
    """The stream we send on one leg (see the module docstring)."""

    codec: str
    payload_type: int
    ssrc: int
    start: float
    ts0: int
    seq: int
    idle: IdleMode = IdleMode.SILENCE
    packets_sent: int = 0
    octets_sent: int = 0
    late_skipped: int = 0
    _index: int = attrs.field(default=0, alias="index")
    _marker: bool = attrs.field(default=True, init=False)
    _playlist: tuple[Prompt, ...] = attrs.field(default=(), init=False)
    _loop: bool = attrs.field(default=False, init=False)
    _token: object = attrs.field(default=None, init=False)
    _item: int = attrs.field(default=0, init=False)
    _frame: int = attrs.field(default=0, init=False)
    _frames: Sequence[bytes] = attrs.field(default=(), init=False)
    _inserted: collections.deque[bytes] = attrs.field(factory=collections.deque, init=False)
    _spliced: collections.deque[tuple[int, bytes]] = attrs.field(factory=collections.deque, init=False)
    _event_until: int = attrs.field(default=-1, init=False)
    _relaying: bool = attrs.field(default=False, init=False)
    _finished: list[object] = attrs.field(factory=list, init=False)
    _silence: bytes = attrs.field(default=b"", init=False)

    def __attrs_post_init__(self) -> None:
        self._silence = g711.silence(self.codec, FRAME_SAMPLES)

    @classmethod
    def create(
        cls,
        codec: str,
        payload_type: int,
        *,
        start: float,
        rng: random.Random,
        idle: IdleMode = IdleMode.SILENCE,
    ) -> OutboundStream:
        """A stream with random SSRC, sequence number and timestamp (RFC 3550 §5.1), whose slot 0
        is due at ``start``."""
        return cls(
            codec=codec,
            payload_type=payload_type,
            ssrc=rng.getrandbits(32),
            start=start,
            ts0=rng.getrandbits(32),
            seq=rng.getrandbits(16),
            idle=idle,
        )

    # -- time ------------------------------------------------------------------------------

    def slot_time(self, index: int) -> float:
        return self.start + index * FRAME_SECONDS

    def timestamp_at(self, now: float) -> int:
        """The RTP timestamp of the sampling instant ``now`` (for RTCP sender reports)."""
        return (self.ts0 + round((now - self.start) * 8000)) & _TS_MASK

    def _slot_at_or_after(self, now: float) -> int:
        return max(0, math.ceil((now - self.start) * SLOTS_PER_SECOND - _EPSILON))

    def _last_due_slot(self, now: float) -> int:
        return math.floor((now - self.start) * SLOTS_PER_SECOND + _EPSILON)

    @property
    def next_index(self) -> int:
        """The next slot that has not been popped."""
        return self._index

    @property
    def playing(self) -> bool:
        return bool(self._playlist)

    @property
    def relaying(self) -> bool:
        return self._relaying

    def _has_work(self) -> bool:
        return bool(self._spliced or self._inserted or self._playlist) or self.idle is IdleMode.SILENCE

    def next_due(self) -> float | None:
        """When the next packet is due, or None when nothing will be sent until told."""
        if self._relaying and not self._spliced:
            return None
        if not self._has_work():
            return None
        return self.slot_time(self._index)

    def _wake(self, now: float) -> None:
        # After a time of sending nothing, don't "catch up" on the silent slots.
        if not self._has_work() or self._relaying:
            index = self._slot_at_or_after(now)
            if index > self._index:
                self._index = index
                self._marker = True

    # -- control ---------------------------------------------------------------------------

    def play(self, prompts: Sequence[Prompt], *, loop: bool = False, token: object = None, now: float) -> None:
        """Play ``prompts`` from the next slot on, replacing whatever played."""
        self._wake(now)
        self._playlist = tuple(prompts)
        self._loop = loop and bool(self._playlist)
        self._token = token
        self._item = 0
        self._frame = 0
        self._select_frames()
        if self._playlist and not any(self._frames_of(p) for p in self._playlist):
            self._playlist = ()

    def stop(self) -> None:
        """Stop the playlist (no finished signal); the stream goes idle."""
        self._playlist = ()
        self._frames = ()

    def set_format(self, codec: str, payload_type: int) -> None:
        """The leg renegotiated its codec: continue the same stream in the new format."""
        self.codec = codec
        self.payload_type = payload_type
        self._silence = g711.silence(codec, FRAME_SAMPLES)
        self._select_frames()

    def take_finished(self) -> list[object]:
        """Tokens of playlists that have finished since the last call."""
        done, self._finished = self._finished, []
        return done

    def insert_audio(self, frames: Sequence[bytes], *, now: float) -> None:
        """Send these 160-sample payloads before the playlist continues (in-band DTMF)."""
        self._wake(now)
        self._inserted.extend(frames)

    def next_position(self, now: float) -> StreamPosition:
        """SSRC, next sequence number and the timestamp/time of the first free slot at or after
        ``now`` (after any spliced packets still queued)."""
        index = max(self._index, self._slot_at_or_after(now), self._event_until + 1)
        return StreamPosition(self.ssrc, self.seq, (self.ts0 + index * FRAME_SAMPLES) & _TS_MASK, self.slot_time(index))

    def splice(self, position: StreamPosition, packets: Sequence[tuple[float, bytes]], *, next_seq: int) -> None:
        """Send ready-made RTP ``packets`` (RFC 4733 events built for ``position``) at
        ``position.time + offset``; audio pauses meanwhile.  ``next_seq`` is the first sequence
        number after them."""
        if self._relaying:
            raise MediaError("cannot splice packets into a stream that is being relayed")
        self._wake(position.time)
        first = self._slot_at_or_after(position.time)
        for offset, packet in packets:
            index = first + max(0, round(offset * SLOTS_PER_SECOND))
            self._spliced.append((index, packet))
            self._event_until = max(self._event_until, index)
        self.seq = next_seq & _SEQ_MASK

    # -- relaying --------------------------------------------------------------------------

    def start_relay(self, now: float) -> StreamPosition:
        """The other party's audio continues this stream from the next free slot on."""
        if self._spliced:
            # events not sent yet are dropped: give their sequence numbers back (RFC 3550 §5.1:
            # the sequence number counts packets sent)
            self.seq = int.from_bytes(self._spliced[0][1][2:4], "big")
            self._spliced.clear()
        self._event_until = -1
        self._inserted.clear()
        position = self.next_position(now)
        self._relaying = True
        return position

    def stop_relay(self, position: StreamPosition, now: float) -> None:
        """The relay ended at ``position`` (its :meth:`RelayPath.position`): continue from it."""
        self._relaying = False
        self.seq = position.next_seq & _SEQ_MASK
        # Re-anchor so that slot i carries position.timestamp + 8000 · (slot_time(i) - position.time).
        self.ts0 = (position.timestamp - round((position.time - self.start) * 8000)) & _TS_MASK
        self._index = max(self._index, self._slot_at_or_after(now))
        self._marker = True

    # -- pacing ----------------------------------------------------------------------------

    def pop_due(self, now: float) -> list[bytes]:
        """The packets of every slot due at ``now`` (see the module docstring on lateness)."""
        last = self._last_due_slot(now)
        if last < self._index:
            return []
        if self._relaying:
            self._index = last + 1
            return []
        overdue = last - self._index
        if overdue > MAX_CATCHUP_SLOTS:
            self.late_skipped += overdue
            self._skip_to(last)
        out: list[bytes] = []
        for index in range(self._index, last + 1):
            self._slot(index, out)
        self._index = last + 1
        return out

    def _skip_to(self, index: int) -> None:
        # Spliced packets keep their relative timing: shift them with the skip.
        shift = index - self._index
        if self._spliced:
            self._spliced = collections.deque((i + shift, p) for i, p in self._spliced)
            self._event_until += shift
        self._index = index
        self._marker = True

    def _slot(self, index: int, out: list[bytes]) -> None:
        spliced = self._spliced
        sent = False
        while spliced and spliced[0][0] <= index:
            packet = spliced.popleft()[1]
            out.append(packet)
            self.packets_sent += 1
            self.octets_sent += len(packet)
            sent = True
        if sent or index <= self._event_until:
            self._marker = True  # audio after an event starts a new talkspurt
            return
        if self._inserted:
            payload: bytes | None = self._inserted.popleft()
        elif self._playlist:
            payload = self._next_frame()
        elif self.idle is IdleMode.SILENCE:
            payload = self._silence
        else:
            payload = None
        if payload is None:
            self._marker = True
            return
        marker = _MARKER if self._marker else 0
        self._marker = False
        ts = (self.ts0 + index * FRAME_SAMPLES) & _TS_MASK
        packet = _HEADER.pack(_V2, marker | self.payload_type, self.seq, ts, self.ssrc) + payload
        self.seq = (self.seq + 1) & _SEQ_MASK
        self.packets_sent += 1
        self.octets_sent += len(packet)
        out.append(packet)

    def _frames_of(self, prompt: Prompt) -> Sequence[bytes]:
        if self._loop and len(self._playlist) == 1:
            return prompt.loop_frames(self.codec)
        return prompt.frames(self.codec)

    def _select_frames(self) -> None:
        self._frames = self._frames_of(self._playlist[self._item]) if self._playlist else ()

    def _next_frame(self) -> bytes | None:
        while self._frame >= len(self._frames):  # an empty prompt in the list: skip it
            if not self._advance():
                return None
        payload = self._frames[self._frame]
        self._frame += 1
        if self._frame >= len(self._frames) and self._item == len(self._playlist) - 1 and not self._loop:
            self._finished.append(self._token)
            self._playlist = ()
            self._frames = ()
        return payload

    def _advance(self) -> bool:
        self._item += 1
        self._frame = 0
        if self._item >= len(self._playlist):
            if not self._loop:
                self._finished.append(self._token)
                self._playlist = ()
                self._frames = ()
                return False
            self._item = 0
        self._select_frames()
        return True
