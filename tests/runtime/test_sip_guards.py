"""The SIP shell's guards against hostile peers, over real loopback sockets: an oversized datagram
is dropped unparsed and counted, a TCP peer that leaves in the middle of a message is counted,
silent TCP connections are closed and one address cannot hold them all, and the well-formed
requests around them are answered as usual.

Loopback only, on ports the kernel picks; the host can be moved with ``SIPCALLHUNT_TEST_HOST``.
"""

from __future__ import annotations

import asyncio
import os
import secrets

import pytest

from sipcallhunt.runtime import sip as sip_shell
from sipcallhunt.runtime.sip import MAX_DATAGRAM, SipEndpoint
from sipcallhunt.sip.useragent import UaSettings, UserAgent

HOST = os.environ.get("SIPCALLHUNT_TEST_HOST", "127.0.0.2")


def options(port: int, local_port: int, transport: str, *, pad: int = 0) -> bytes:
    return (
        f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {HOST}:{local_port};branch=z9hG4bK{secrets.token_hex(4)};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@example.invalid>;tag=p1\r\n"
        f"To: <sip:{HOST}>\r\nCall-ID: {secrets.token_hex(6)}\r\nCSeq: 1 OPTIONS\r\n"
        f"X-Padding: {'p' * pad}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.put_nowait(data)


def test_oversized_datagram_is_dropped_and_counted() -> None:
    async def main() -> None:
        ua = UserAgent(UaSettings(host=HOST, port=0, keepalive_interval=0), [], token=secrets.token_hex)
        endpoint = SipEndpoint(ua, host=HOST, port=0, transports=("udp",), on_event=lambda e: None)
        await endpoint.start()
        loop = asyncio.get_running_loop()
        transport, client = await loop.create_datagram_endpoint(_Client, local_addr=(HOST, 0))
        try:
            local_port = transport.get_extra_info("sockname")[1]
            big = options(endpoint.port, local_port, "UDP", pad=MAX_DATAGRAM)
            assert MAX_DATAGRAM < len(big) < 65507  # a datagram the kernel carries
            transport.sendto(big, (HOST, endpoint.port))
            transport.sendto(options(endpoint.port, local_port, "UDP", pad=1000), (HOST, endpoint.port))
            answer = await asyncio.wait_for(client.received.get(), 5)
            assert answer.startswith(b"SIP/2.0 200 ") and b"X-Padding" not in answer
            await asyncio.sleep(0.1)
            assert client.received.empty()  # the big one was never answered
            assert endpoint.counters["oversized"] == 1 and endpoint.counters["udp_in"] == 2
            assert ua.counters["malformed"] == 0  # dropped before the parser
        finally:
            transport.close()
            await endpoint.close()

    asyncio.run(main())


def test_tcp_peer_leaving_mid_message_is_counted() -> None:
    async def main() -> None:
        ua = UserAgent(UaSettings(host=HOST, port=0, keepalive_interval=0), [], token=secrets.token_hex)
        endpoint = SipEndpoint(ua, host=HOST, port=0, transports=("tcp",), on_event=lambda e: None)
        await endpoint.start()
        assert endpoint._tcp_server is not None
        port = endpoint._tcp_server.sockets[0].getsockname()[1]
        try:
            # A whole message, then FIN: answered, nothing counted.
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(options(port, writer.get_extra_info("sockname")[1], "TCP"))
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"SIP/2.0 200 ")
            writer.close()
            # A head that announces a body, part of the body, then FIN: no answer, counted.
            reader, writer = await asyncio.open_connection(HOST, port)
            head = options(port, writer.get_extra_info("sockname")[1], "TCP").replace(
                b"Content-Length: 0", b"Content-Length: 400"
            )
            writer.write(head + b"v=0\r\n")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            for _ in range(100):
                if endpoint.tcp_connections == 0:
                    break
                await asyncio.sleep(0.01)
            assert endpoint.counters["tcp_truncated"] == 1
            assert endpoint.counters["tcp_in"] == 1 and endpoint.counters["tcp_framing_errors"] == 0
        finally:
            await endpoint.close()

    asyncio.run(main())


def test_silent_tcp_connections_are_closed_and_one_address_cannot_take_every_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connections that never send a message are closed like a slow peer's; an untrusted address
    gets TCP_MAX_PER_HOST of them at most, a trusted peer (the PBX) is not limited."""
    monkeypatch.setattr(sip_shell, "TCP_MESSAGE_TIMEOUT", 0.3)
    monkeypatch.setattr(sip_shell, "TCP_MAX_PER_HOST", 3)
    stranger, pbx = "127.0.0.3", "127.0.0.4"

    async def main() -> None:
        settings = UaSettings(host=HOST, port=0, keepalive_interval=0, trusted_hosts=frozenset({pbx}))
        ua = UserAgent(settings, [], token=secrets.token_hex)
        endpoint = SipEndpoint(ua, host=HOST, port=0, transports=("tcp",), on_event=lambda e: None)
        await endpoint.start()
        assert endpoint._tcp_server is not None
        port = endpoint._tcp_server.sockets[0].getsockname()[1]
        opened = []
        try:
            for source in [stranger] * 4 + [pbx] * 4:
                opened.append(await asyncio.open_connection(HOST, port, local_addr=(source, 0)))
            refused = opened[3][0]
            assert await asyncio.wait_for(refused.read(), 2) == b""  # the 4th from the stranger
            assert endpoint.counters["tcp_refused"] == 1
            assert endpoint.tcp_connections == 7
            # a connection that sends a whole message stays; the silent ones are closed
            reader, writer = opened[4]
            writer.write(options(port, writer.get_extra_info("sockname")[1], "TCP"))
            assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"SIP/2.0 200 ")
            for i, (reader, _) in enumerate(opened):
                if i not in (3, 4):
                    assert await asyncio.wait_for(reader.read(), 3) == b"", i
            assert endpoint.counters["tcp_slow_peers"] == 6
            assert endpoint.tcp_connections == 1
        finally:
            for _, writer in opened:
                writer.close()
            await endpoint.close()

    asyncio.run(main())


def test_trace_log_never_shows_info_dtmf_keys() -> None:
    """At TRACE every SIP message is logged in full, except the keys of SIP INFO DTMF bodies."""
    from sipcallhunt.runtime.sip import redact_dtmf

    relay = (
        "INFO sip:h@x SIP/2.0\r\nContent-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\n"
        "Signal=7\r\nDuration=160\r\n"
    )
    assert redact_dtmf(relay).endswith("\r\n\r\nSignal=*\r\nDuration=160\r\n")
    plain = "INFO sip:h@x SIP/2.0\r\nc: application/dtmf\r\nContent-Length: 1\r\n\r\n5"
    assert redact_dtmf(plain).endswith("\r\n\r\n*") and "5" not in redact_dtmf(plain).split("\r\n\r\n")[1]
    invite = "INVITE sip:h@x SIP/2.0\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
    assert redact_dtmf(invite) == invite
