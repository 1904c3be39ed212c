"""Trusted peers given by name: INVITEs are trusted by their source address, so names are resolved."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from sipcallhunt.runtime.daemon import resolve_trusted


def test_names_are_resolved_and_addresses_kept() -> None:
    hosts = asyncio.run(resolve_trusted(frozenset({"localhost", "192.0.2.7", "2001:db8::1"})))
    assert {"localhost", "192.0.2.7", "2001:db8::1"} <= hosts
    assert "127.0.0.1" in hosts or "::1" in hosts  # what the source address of a local PBX would be


def test_a_name_that_does_not_resolve_matches_nothing_but_does_not_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    def unknown(host: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)  # no resolver is asked
    hosts = asyncio.run(resolve_trusted(frozenset({"no-such-host.invalid", "192.0.2.7"})))
    assert hosts == frozenset({"no-such-host.invalid", "192.0.2.7"})
