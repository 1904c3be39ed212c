"""The metrics exposition and its tiny HTTP server; the ``[metrics]`` config table."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sipcallhunt.config import MetricsConfig, parse_config
from sipcallhunt.errors import ConfigError
from sipcallhunt.runtime.metrics import Family, MetricsServer, process_families, render
from tests.e2e.harness.metrics import parse_metrics

BASE = """
[sip]
listen = "127.0.0.1:5070"
[[account]]
name = "pbx"
registrar = "sip:127.0.0.1"
username = "hotline"
password = "pw"
"""


def test_render_is_prometheus_text() -> None:
    text = render(
        [
            Family("x_total", "counter", "Things.", (({"counter": 'a"b\\c\nd'}, 3.0), ({"counter": "e"}, 0.5))),
            Family("y", "gauge", "One.", (({}, 7),)),
        ]
    )
    assert text.splitlines()[:2] == ["# HELP x_total Things.", "# TYPE x_total counter"]
    assert 'x_total{counter="a\\"b\\\\c\\nd"} 3' in text and "y 7\n" in text
    parsed = parse_metrics(text)
    assert parsed.value("x_total", counter='a"b\\c\nd') == 3 and parsed.value("x_total", counter="e") == 0.5
    assert parsed.value("y") == 7 and parsed.value("x_total", counter="absent") == 0


def test_process_families_read_this_process() -> None:
    parsed = parse_metrics(render(process_families()))
    assert parsed.value("process_resident_memory_bytes") > 1_000_000
    assert parsed.value("process_open_fds") >= 3
    assert parsed.value("process_cpu_seconds_total") > 0


async def _get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def test_server_answers_and_refuses() -> None:
    healthy = [True]
    server = MetricsServer(lambda: [Family("z", "gauge", "Z.", (({}, 1),))], lambda: healthy[0])
    await server.start("127.0.0.1", 0)
    try:
        ok = await _get(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK") and b"version=0.0.4" in ok and ok.endswith(b"z 1\n")
        assert (await _get(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")).endswith(b"ok\n")
        healthy[0] = False
        assert (await _get(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 503")
        assert (await _get(server.port, b"GET /x HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await _get(server.port, b"DELETE /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await _get(server.port, b"\x16\x03\x01 tls?\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert await _get(server.port, b"GET /" + b"a" * 10_000) == b""  # head too long: closed
        assert server.bad_requests == 2
    finally:
        await server.close()


def test_config_metrics_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    assert parse_config(BASE, path).metrics == MetricsConfig()
    config = parse_config(BASE + '[metrics]\nlisten = "127.0.0.1:9100"\n', path)
    assert config.metrics == MetricsConfig(listen_host="127.0.0.1", listen_port=9100)
    for bad in ('listen = "127.0.0.1"', 'listen = "nowhere:99999"', "listen = 9100", 'port = "9100"'):
        with pytest.raises(ConfigError, match=r"metrics\."):
            parse_config(BASE + f"[metrics]\n{bad}\n", path)
