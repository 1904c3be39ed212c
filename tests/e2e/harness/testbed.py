"""One test's whole bed: addresses, the PBX, phones, media endpoints, the daemon, and cleanup.

The ``testbed`` pytest fixture (tests/e2e/conftest.py) hands each test a fresh :class:`TestBed`;
everything it started is stopped by PID when the test ends, in reverse order.

    def test_agent_answers(testbed):
        agent = testbed.registered_sipp("agent1", "uas_answer", params={"call_ms": 2000})
        caller = testbed.sipp("uac_call", remote=testbed.pbx.address, service="agent1",
                              params={"pcap": testbed.pcap(RtpStream().audio(tone(440, 1)))})
        caller.run().assert_ok()
        agent.wait().assert_ok()

The PBX starts on first use of :attr:`TestBed.pbx` with :data:`DEFAULT_USERS`; requests from
:attr:`TestBed.gateway_ip` are routed without a challenge (a trusted trunk).
"""

from __future__ import annotations

__all__ = ["DEFAULT_USERS", "TestBed"]

import contextlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from .baresip import Baresip
from .daemon import Daemon
from .kamailio import Kamailio
from .pcap import RtpStream
from .ports import AddressLease, free_port, free_port_range, write_sipcallhunt_config
from .rtp import RtpEndpoint
from .sipp import RegisteredSipp, Sipp

DEFAULT_USERS: Final[tuple[tuple[str, str], ...]] = (
    ("hotline", "hotlinepw"),
    ("agent1", "agent1pw"),
    ("agent2", "agent2pw"),
    ("agent3", "agent3pw"),
    ("agent4", "agent4pw"),
    ("caller", "callerpw"),
)
"""Subscribers of the test PBX: (user, password)."""


@attrs.define(eq=False)
class TestBed:
    """Factories for the peers of one test; :meth:`close` stops them all."""

    __test__ = False  # not a pytest test class

    workdir: Path
    lease: AddressLease
    users: Sequence[tuple[str, str]] = DEFAULT_USERS
    pbx_shm_mb: int = 64  # the PBX's shared memory (Kamailio -m), more for load tests
    _pbx: Kamailio | None = attrs.field(default=None, init=False)
    _gateway_ip: str | None = attrs.field(default=None, init=False)
    _cleanups: contextlib.ExitStack = attrs.field(factory=contextlib.ExitStack, init=False)
    _logs: list[tuple[str, Callable[[], str]]] = attrs.field(factory=list, init=False)
    _counter: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)

    def address(self) -> str:
        """A loopback address of this test's own (from the pool's network)."""
        return self.lease.address()

    # --- the PBX ------------------------------------------------------------------------------

    @property
    def gateway_ip(self) -> str:
        """An address the PBX trusts as a gateway: its INVITEs are routed without a challenge."""
        if self._gateway_ip is None:
            if self._pbx is not None:
                raise RuntimeError("ask for gateway_ip before the PBX starts (it is in its config)")
            self._gateway_ip = self.address()
        return self._gateway_ip

    @property
    def pbx(self) -> Kamailio:
        """The Kamailio of this test, started on first use."""
        if self._pbx is None:
            host = self.address()
            pbx = Kamailio(
                host=host,
                port=free_port(host),
                workdir=self.workdir / "pbx",
                users=tuple(self.users),
                gateways=(self.gateway_ip,),
                shm_mb=self.pbx_shm_mb,
            )
            self._cleanups.callback(pbx.stop)
            self._logs.append(("kamailio", pbx.log_tail))
            pbx.start()
            self._pbx = pbx
        return self._pbx

    def password(self, user: str) -> str:
        return dict(self.users)[user]

    # --- sipp ---------------------------------------------------------------------------------

    def sipp(self, scenario: str | Path, *, local_ip: str | None = None, **kwargs: Any) -> Sipp:
        """A :class:`Sipp` (not started) on a fresh address; ended at cleanup if still running."""
        process = Sipp(scenario, self.workdir, local_ip=local_ip or self.address(), **kwargs)
        self._cleanups.callback(lambda: process.terminate() if process.is_running else None)
        return process

    def caller(self, scenario: str = "uac_call", *, user: str = "caller", to: str, **kwargs: Any) -> Sipp:
        """A sipp UAC calling ``to`` through the PBX as the local user ``user`` (digest auth)."""
        params = {"from_user": user, "from_name": user, "from_domain": self.pbx.domain}
        params.update(kwargs.pop("params", {}))
        return self.sipp(
            scenario, remote=self.pbx.address, service=to, auth=(user, self.password(user)), params=params, **kwargs
        )

    def registered_sipp(
        self,
        user: str,
        scenario: str,
        *,
        params: Mapping[str, object] | None = None,
        transport: str = "udp",
        timeout: float = 30.0,
        calls: int = 1,
    ) -> RegisteredSipp:
        """A sipp UAS registered with the PBX as ``user`` (two processes), started."""
        agent = RegisteredSipp.create(
            self.pbx,
            user,
            scenario,
            self.workdir,
            local_ip=self.address(),
            params=params,
            transport=transport,
            timeout=timeout,
            calls=calls,
        )
        self._cleanups.callback(lambda: agent.terminate() if agent.registrar.pid is not None else None)
        return agent.start()

    def pcap(self, stream: RtpStream, name: str | None = None) -> Path:
        """Write ``stream`` as a pcap in the work dir; returns its path (for a ``pcap`` parameter)."""
        return stream.write_pcap(self.workdir / (name or f"stream-{next(self._counter)}.pcap"))

    # --- media, phones, daemon ----------------------------------------------------------------

    def media(self, host: str | None = None) -> RtpEndpoint:
        """A started :class:`RtpEndpoint` on a fresh address (or ``host``)."""
        endpoint = RtpEndpoint(host or self.address()).start()
        self._cleanups.callback(endpoint.close)
        return endpoint

    def phone(self, user: str, *, register: bool = True, **kwargs: Any) -> Baresip:
        """A started baresip for ``user``; registered with the PBX (and waited for) unless told not to."""
        name = f"phone-{user}-{next(self._counter)}"
        password = kwargs.pop("password", self.password(user) if register else None)
        registrar = self.pbx.address if register else None
        phone = Baresip(
            self.address(), self.workdir / name, user=user, password=password, registrar=registrar, **kwargs
        )
        self._cleanups.callback(phone.stop)
        self._logs.append((name, phone.log_tail))
        phone.start()
        if register:
            phone.wait_registered(timeout=5.0)
        return phone

    def sipcallhunt_config(
        self,
        *,
        user: str = "hotline",
        hotlines: Sequence[Mapping[str, Any]] = (),
        name: str = "sipcallhunt.toml",
        **kwargs: Any,
    ) -> Path:
        """A config for a daemon on a fresh address, registering as ``user`` with this PBX.

        ``metrics=True`` turns on the metrics endpoint on the daemon's address and a free port
        (read it with :meth:`Daemon.metrics`).
        """
        host = self.address()
        rtp = free_port_range(host, 40)
        if kwargs.get("metrics") is True:
            kwargs["metrics"] = (host, free_port(host))
        return write_sipcallhunt_config(
            self.workdir / name,
            listen=(host, free_port(host)),
            rtp_ports=rtp,
            registrar=self.pbx.address,
            username=user,
            password=self.password(user),
            hotlines=hotlines,
            **kwargs,
        )

    def daemon(self, config: Path, **kwargs: Any) -> Daemon:
        """A :class:`Daemon` (not started) for ``config``; stopped at cleanup."""
        daemon = Daemon(config, self.workdir / f"daemon-{next(self._counter)}", **kwargs)
        self._cleanups.callback(daemon.stop)
        self._logs.append(("sipcallhunt", daemon.log_tail))
        return daemon

    # --- the end ------------------------------------------------------------------------------

    def logs(self) -> str:
        """The log tails of the PBX, phones and daemon (for a failed test's report)."""
        return "\n".join(f"----- {name} -----\n{tail()}" for name, tail in self._logs)

    def close(self) -> None:
        """Stop everything this bed started, newest first (all of it, even if one stop fails);
        then release the addresses."""
        try:
            self._cleanups.close()
        finally:
            self.lease.release_all()
