"""The end-to-end test bed: Kamailio as the PBX, sipp and baresip as phones, RTP tools.

See README.md in this folder for the API with examples; the pytest fixtures are in
tests/e2e/conftest.py (``testbed``, ``loopback``).
"""

from .audio import (
    DTMF_FREQUENCIES,
    assert_tones,
    band_fraction,
    dominant_frequency,
    dtmf_sequence,
    dtmf_tone,
    goertzel_power,
    read_wav,
    silence,
    tone,
    tone_fraction,
    write_wav,
)
from .baresip import Baresip, BaresipEvent
from .daemon import EXIT_BAD_CONFIG, Daemon
from .kamailio import Kamailio, sip_options_ping
from .metrics import Metrics, parse_metrics, scrape
from .pcap import RtpStream, read_pcap, read_rtp_pcap, wav_to_pcap, write_pcap
from .ports import LoopbackPool, free_port, free_port_range, write_sipcallhunt_config
from .rtp import RtpEndpoint, RtpPacket, TelephoneEvent
from .sipp import RegisteredSipp, Sipp, SippResult, info_dtmf_requests
from .testbed import DEFAULT_USERS, TestBed

__all__ = [
    "Metrics",
    "parse_metrics",
    "scrape",
    "DEFAULT_USERS",
    "DTMF_FREQUENCIES",
    "EXIT_BAD_CONFIG",
    "Baresip",
    "BaresipEvent",
    "Daemon",
    "Kamailio",
    "LoopbackPool",
    "RegisteredSipp",
    "RtpEndpoint",
    "RtpPacket",
    "RtpStream",
    "Sipp",
    "SippResult",
    "TelephoneEvent",
    "TestBed",
    "assert_tones",
    "band_fraction",
    "dominant_frequency",
    "dtmf_sequence",
    "dtmf_tone",
    "free_port",
    "free_port_range",
    "goertzel_power",
    "info_dtmf_requests",
    "read_pcap",
    "read_rtp_pcap",
    "read_wav",
    "silence",
    "sip_options_ping",
    "tone",
    "tone_fraction",
    "wav_to_pcap",
    "write_pcap",
    "write_sipcallhunt_config",
    "write_wav",
]
