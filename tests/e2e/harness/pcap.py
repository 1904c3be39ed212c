"""pcap files of RTP for sipp's ``play_pcap_audio``, and reading them back.

sipp replays the UDP payloads of a pcap (Ethernet/IPv4/UDP frames) with their recorded timing.
:class:`RtpStream` builds one RTP stream (one SSRC, 20 ms packets, timestamps that follow the
clock) out of audio, silence and RFC 4733 digits, and writes it:

    RtpStream("PCMU").audio(tone(440, 1.0)).digit("5").audio(tone(440, 0.5)).write_pcap(path)
    wav_to_pcap("prompt.wav", path, codec="PCMA")
    for time, packet in read_rtp_pcap(path): ...
"""

from __future__ import annotations

__all__ = [
    "PcapRecord",
    "RtpStream",
    "read_pcap",
    "read_rtp_pcap",
    "wav_to_pcap",
    "write_pcap",
    "write_rtp_pcap",
]

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import attrs
import numpy as np
import numpy.typing as npt

from .audio import RATE, Samples, encode, read_wav, silence
from .rtp import EVENT_KEYS, PAYLOAD_TYPES, PT_TELEPHONE_EVENT, RtpPacket, TelephoneEvent, audio_from_packets

PCAP_MAGIC: Final = 0xA1B2C3D4  # microsecond timestamps
LINKTYPE_ETHERNET: Final = 1
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_ETHERTYPE_IPV4: Final = 0x0800
_IPPROTO_UDP: Final = 17
DEFAULT_SOURCE: Final = ("127.0.0.1", 40000)
DEFAULT_DESTINATION: Final = ("127.0.0.1", 40002)


@attrs.frozen
class PcapRecord:
    """One captured UDP datagram."""

    time: float  # seconds since the epoch (or since the capture start)
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(record: PcapRecord, ident: int) -> bytes:
    src_ip = bytes(int(part) for part in record.source[0].split("."))
    dst_ip = bytes(int(part) for part in record.destination[0].split("."))
    udp = struct.pack("!HHHH", record.source[1], record.destination[1], 8 + len(record.payload), 0) + record.payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0x4000, 64, _IPPROTO_UDP, 0, src_ip, dst_ip
    )
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    ethernet = b"\0\0\0\0\0\2" + b"\0\0\0\0\0\1" + struct.pack("!H", _ETHERTYPE_IPV4)
    return ethernet + header + udp


def write_pcap(path: str | Path, records: Iterable[PcapRecord]) -> Path:
    """Write UDP datagrams as an Ethernet pcap (what sipp's ``play_pcap_audio`` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(_GLOBAL.pack(PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for ident, record in enumerate(records):
            frame = _frame(record, ident)
            seconds = int(record.time)
            micros = round((record.time - seconds) * 1_000_000)
            if micros >= 1_000_000:
                seconds, micros = seconds + 1, micros - 1_000_000
            out.write(_RECORD.pack(seconds, micros, len(frame), len(frame)))
            out.write(frame)
    return path


def read_pcap(path: str | Path) -> list[PcapRecord]:
    """The IPv4/UDP datagrams of a pcap (Ethernet or Linux cooked capture); other frames are skipped."""
    data = Path(path).read_bytes()
    if len(data) < _GLOBAL.size:
        raise ValueError(f"{path}: not a pcap file (too short)")
    magic = struct.unpack_from("<I", data)[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap file (magic {magic:#x})")
    divisor = 1e9 if magic in (0xA1B23C4D, 0x4D3CB2A1) else 1e6
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    link_header = {1: 14, 113: 16, 0: 4}.get(linktype)
    if link_header is None:
        raise ValueError(f"{path}: unsupported link type {linktype}")
    records = []
    offset = _GLOBAL.size
    while offset + _RECORD.size <= len(data):
        seconds, fraction, captured, _ = struct.unpack_from(endian + "IIII", data, offset)
        offset += _RECORD.size
        frame = data[offset : offset + captured]
        offset += captured
        if len(frame) < link_header + 28:
            continue
        ip = frame[link_header:]
        if ip[0] >> 4 != 4 or ip[9] != _IPPROTO_UDP:
            continue
        ihl = (ip[0] & 0x0F) * 4
        src_port, dst_port, length, _ = struct.unpack_from("!HHHH", ip, ihl)
        payload = bytes(ip[ihl + 8 : ihl + length])
        records.append(
            PcapRecord(
                time=seconds + fraction / divisor,
                source=(".".join(map(str, ip[12:16])), src_port),
                destination=(".".join(map(str, ip[16:20])), dst_port),
                payload=payload,
            )
        )
    return records


def read_rtp_pcap(path: str | Path) -> list[tuple[float, RtpPacket]]:
    """``(seconds since the first packet, RtpPacket)`` for each RTP datagram of a pcap."""
    out: list[tuple[float, RtpPacket]] = []
    records = read_pcap(path)
    start = records[0].time if records else 0.0
    for record in records:
        try:
            out.append((record.time - start, RtpPacket.from_bytes(record.payload)))
        except ValueError:
            continue
    return out


def write_rtp_pcap(
    path: str | Path,
    packets: Sequence[tuple[float, RtpPacket]],
    *,
    source: tuple[str, int] = DEFAULT_SOURCE,
    destination: tuple[str, int] = DEFAULT_DESTINATION,
) -> Path:
    """Write ``(offset seconds, packet)`` pairs as a pcap (sipp rewrites the addresses when replaying)."""
    return write_pcap(path, (PcapRecord(t, source, destination, p.to_bytes()) for t, p in packets))


@attrs.define(eq=False)
class RtpStream:
    """One RTP stream under construction: audio and RFC 4733 digits, in order, on one clock.

    Audio goes out in ``ptime`` packets; a digit replaces the audio for its duration with
    telephone-event packets (RFC 4733 §2.5): the first with the marker bit, one every ``ptime``
    with a growing duration, and the end packet sent three times (§2.5.1.4), by default with one
    sequence number as sipp's own DTMF pcaps do.  RTP timestamps advance with the clock, so audio
    after a digit resumes where the digit ended.
    """

    codec: str = "PCMU"
    ssrc: int = 0x5EED0001
    event_pt: int = PT_TELEPHONE_EVENT
    ptime: float = 0.020
    first_sequence: int = 1000
    first_timestamp: int = 160_000
    end_retransmissions_share_sequence: bool = True
    _packets: list[tuple[float, RtpPacket]] = attrs.field(factory=list, init=False)
    _clock: int = attrs.field(default=0, init=False)  # samples since the start
    _sequence: int = attrs.field(default=0, init=False)
    _marker: bool = attrs.field(default=True, init=False)

    @property
    def _frame(self) -> int:
        return round(self.ptime * RATE)

    @property
    def duration(self) -> float:
        """Seconds of stream time written so far."""
        return self._clock / RATE

    def _add(
        self, when: int, packet_type: int, timestamp: int, payload: bytes, *, marker: bool, advance: bool = True
    ) -> None:
        packet = RtpPacket(
            payload_type=packet_type,
            sequence=(self.first_sequence + self._sequence) & 0xFFFF,
            timestamp=(self.first_timestamp + timestamp) & 0xFFFFFFFF,
            ssrc=self.ssrc,
            marker=marker,
            payload=payload,
        )
        self._packets.append((when / RATE, packet))
        if advance:
            self._sequence += 1

    def audio(self, samples: npt.ArrayLike) -> RtpStream:
        """Append audio (int16 at 8 kHz); a last partial packet is padded with silence."""
        x = np.asarray(samples, dtype=np.int16)
        frame = self._frame
        if x.size % frame:
            x = np.concatenate([x, silence((frame - x.size % frame) / RATE)])
        pt = PAYLOAD_TYPES[self.codec.upper()]
        for start in range(0, x.size, frame):
            self._add(self._clock, pt, self._clock, encode(self.codec, x[start : start + frame]), marker=self._marker)
            self._marker = False
            self._clock += frame
        return self

    def silence(self, seconds: float) -> RtpStream:
        return self.audio(silence(seconds))

    def wav(self, path: str | Path) -> RtpStream:
        """Append a sound file (any rate/channels soundfile reads), resampled to 8 kHz mono."""
        return self.audio(read_wav(path))

    def digit(self, key: str, *, duration: float = 0.14, volume: int = 10) -> RtpStream:
        """Append one RFC 4733 event for ``key`` lasting ``duration`` seconds."""
        event = EVENT_KEYS.index(key.upper())
        frame = self._frame
        steps = max(1, round(duration / self.ptime))
        start = self._clock
        for step in range(1, steps + 1):
            last = step == steps
            payload = TelephoneEvent(event=event, end=last, volume=volume, duration=step * frame).to_bytes()
            self._add(start + (step - 1) * frame, self.event_pt, start, payload, marker=step == 1)
        # Two more copies of the end packet (RFC 4733 §2.5.1.4), one ptime apart.
        end_payload = self._packets[-1][1].payload
        for copy in range(1, 3):
            if self.end_retransmissions_share_sequence:
                self._sequence -= 1
            self._add(start + (steps - 1 + copy) * frame, self.event_pt, start, end_payload, marker=False)
        self._clock = start + (steps + 2) * frame
        return self

    def digits(self, keys: str, *, duration: float = 0.14, gap: float = 0.1, volume: int = 10) -> RtpStream:
        """Append one event per key, with ``gap`` seconds of silence after each."""
        for key in keys:
            self.digit(key, duration=duration, volume=volume)
            if gap > 0:
                self.silence(gap)
        return self

    def packets(self) -> list[tuple[float, RtpPacket]]:
        """``(offset seconds, packet)`` in sending order."""
        return list(self._packets)

    def samples(self) -> Samples:
        """The audio of the stream as a receiver decodes it (events become silence)."""
        return audio_from_packets(p for _, p in self._packets)

    def write_pcap(
        self,
        path: str | Path,
        *,
        source: tuple[str, int] = DEFAULT_SOURCE,
        destination: tuple[str, int] = DEFAULT_DESTINATION,
    ) -> Path:
        return write_rtp_pcap(path, self._packets, source=source, destination=destination)


def wav_to_pcap(wav: str | Path, path: str | Path, *, codec: str = "PCMU") -> Path:
    """A pcap of one RTP stream carrying the sound file ``wav``."""
    return RtpStream(codec).wav(wav).write_pcap(path)
