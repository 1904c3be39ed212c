"""The asyncio SIP shell over TCP, on both event loops the daemon may run on (asyncio and uvloop).

uvloop's TCP transport implements the asyncio transport interface without subclassing
``asyncio.Transport``; the shell must accept it for inbound and outbound connections alike
(before the fix every TCP connection under uvloop died in ``connection_made``).

Outbound connections start from the address the endpoint listens on (the one it advertises in
Via and Contact), not from the address the kernel would pick for the route; the tests listen on
127.0.0.2 so that the kernel's choice (127.0.0.1) would show.

Loopback only, on ports the kernel picks; the host can be moved with ``SIPCALLHUNT_TEST_HOST``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from sipcallhunt.config import AccountConfig
from sipcallhunt.runtime.sip import SipEndpoint
from sipcallhunt.sip.events import RegistrationChanged, UaEvent
from sipcallhunt.sip.message import SipRequest, StreamFramer
from sipcallhunt.sip.uri import SipUri
from sipcallhunt.sip.useragent import UaSettings, UserAgent

HOST = os.environ.get("SIPCALLHUNT_TEST_HOST", "127.0.0.2")
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run_on(loop_name: str, coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = LOOPS[loop_name]()
    try:
        loop.run_until_complete(asyncio.wait_for(coro(), 10))
    finally:
        loop.close()


async def read_message(reader: asyncio.StreamReader, framer: StreamFramer) -> Any:
    while True:
        data = await reader.read(65536)
        assert data, "connection closed before a whole message arrived"
        items = [m for m in framer.feed(data) if hasattr(m, "headers")]
        if items:
            return items[0]


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_outbound_tcp_registration(loop_name: str) -> None:
    async def main() -> None:
        requests: asyncio.Queue[SipRequest] = asyncio.Queue()
        peers: list[str] = []

        async def registrar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peers.append(writer.get_extra_info("peername")[0])
            framer = StreamFramer()
            request = await read_message(reader, framer)
            await requests.put(request)
            headers = "".join(
                f"{name}: {request.headers.get(name)}\r\n" for name in ("Via", "From", "To", "Call-ID", "CSeq")
            )
            contact = request.headers.get("Contact")
            writer.write(f"SIP/2.0 200 OK\r\n{headers}Contact: {contact}\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.5)
            writer.close()

        server = await asyncio.start_server(registrar, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        account = AccountConfig(
            name="main",
            registrar=SipUri.parse(f"sip:{HOST}:{port};transport=tcp"),
            username="hotline",
            password="pw",
            expires=300,
        )
        ua = UserAgent(UaSettings(host=HOST, port=0, keepalive_interval=0), [account], token=secrets.token_hex)
        events: list[UaEvent] = []
        endpoint = SipEndpoint(ua, host=HOST, port=0, transports=("tcp",), on_event=events.append)
        await endpoint.start()
        try:
            endpoint.call(ua.start)
            request = await requests.get()
            assert request.method == "REGISTER" and request.top_via.transport == "TCP"
            assert peers == [HOST]  # connected from the address in our Via and Contact
            for _ in range(100):
                if any(isinstance(e, RegistrationChanged) and e.registered for e in events):
                    break
                await asyncio.sleep(0.02)
            assert [e.registered for e in events if isinstance(e, RegistrationChanged)] == [False, True]
            assert endpoint.tcp_connections == 1
        finally:
            await endpoint.close()
            server.close()
            await server.wait_closed()

    run_on(loop_name, main)


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_inbound_tcp_request_is_answered_on_its_connection(loop_name: str) -> None:
    async def main() -> None:
        ua = UserAgent(UaSettings(host=HOST, port=0, keepalive_interval=0), [], token=secrets.token_hex)
        endpoint = SipEndpoint(ua, host=HOST, port=0, transports=("tcp",), on_event=lambda e: None)
        await endpoint.start()
        try:
            assert endpoint._tcp_server is not None
            port = endpoint._tcp_server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(HOST, port)
            local_port = writer.get_extra_info("sockname")[1]
            writer.write(
                (
                    f"OPTIONS sip:{HOST}:{port};transport=tcp SIP/2.0\r\n"
                    f"Via: SIP/2.0/TCP {HOST}:{local_port};branch=z9hG4bKtcp1\r\n"
                    "Max-Forwards: 70\r\nFrom: <sip:probe@example.invalid>;tag=p1\r\n"
                    f"To: <sip:{HOST}>\r\nCall-ID: tcp-options-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                ).encode()
            )
            response = await read_message(reader, StreamFramer())
            assert response.status == 200 and response.call_id == "tcp-options-1"
            assert "INVITE" in (response.headers.get("Allow") or "")
            writer.close()
        finally:
            await endpoint.close()

    run_on(loop_name, main)
