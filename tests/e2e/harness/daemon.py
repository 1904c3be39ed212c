"""The sipcallhunt daemon under test, as a child process: ``python -m sipcallhunt run -c FILE``.

The documented contract this relies on: ``run -c FILE`` runs until SIGTERM, un-registers, and
exits 0; a configuration it cannot use makes it exit 2 at once.

    config = write_sipcallhunt_config(tmp_path / "hotline.toml", listen=(ip, free_port(ip)), ...)
    daemon = Daemon(config, tmp_path).start()
    daemon.wait_registered(pbx, "hotline", timeout=10)   # Kamailio has its binding
    ... calls ...
    daemon.stop_clean()                                  # SIGTERM; asserts exit status 0
    pbx.wait_unregistered("hotline")

``wait_*`` fail at once, with the daemon's log tail, if the daemon exits while being waited for.
"""

from __future__ import annotations

__all__ = ["EXIT_BAD_CONFIG", "Daemon"]

import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import attrs

from ._proc import ManagedProcess, poll_until
from .kamailio import sip_options_ping
from .metrics import Metrics, scrape

if TYPE_CHECKING:
    from .kamailio import Kamailio

EXIT_BAD_CONFIG: Final = 2
T = TypeVar("T")


@attrs.define(eq=False)
class Daemon:
    """``sipcallhunt run -c config`` with stdout and stderr in ``workdir/sipcallhunt.log``."""

    config: Path
    workdir: Path
    python: str = sys.executable
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    _process: ManagedProcess | None = attrs.field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "sipcallhunt.log"

    def argv(self) -> list[str]:
        return [self.python, "-m", "sipcallhunt", "run", "-c", str(self.config), *self.extra_args]

    def start(self) -> Daemon:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process = ManagedProcess(self.argv(), self.log_path, env=self.env, cwd=self.workdir)
        self._process.start()
        return self

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.is_running

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def metrics_address(self) -> tuple[str, int]:
        """The ``[metrics] listen`` address of the config (which must have one)."""
        data = tomllib.loads(self.config.read_text(encoding="utf-8"))
        host, _, port = data["metrics"]["listen"].rpartition(":")
        return host, int(port)

    def metrics(self, *, timeout: float = 5.0) -> Metrics:
        """Scrape the running daemon's ``/metrics``."""
        host, port = self.metrics_address()
        return scrape(host, port, timeout=timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _while_running(self, check: T | None, what: str) -> T | None:
        if check is None or check is False:
            if not self.is_running:
                raise RuntimeError(
                    f"sipcallhunt exited with status {self.returncode} while waiting for {what}:\n{self.log_tail()}"
                )
            return None
        return check

    def wait_for_log(self, pattern: str, *, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a line of the daemon's output matches the regex ``pattern``."""
        regex = re.compile(pattern, re.MULTILINE)
        what = f"log line /{pattern}/"
        return poll_until(lambda: self._while_running(regex.search(self.log_text()), what), timeout=timeout, what=what)

    def wait_registered(self, pbx: Kamailio, user: str, *, timeout: float = 10.0) -> list[str]:
        """Wait until Kamailio holds a binding for ``user`` (the daemon's account); returns the contacts."""
        what = f"{user!r} to register at kamailio"
        contacts = poll_until(
            lambda: self._while_running(pbx.contacts(user) or None, what), timeout=timeout, interval=0.05, what=what
        )
        return contacts

    def wait_reachable(self, pbx: Kamailio, user: str, *, timeout: float = 10.0) -> int:
        """Wait until an OPTIONS to ``sip:user@pbx`` is routed to the daemon and answered by it
        (any status but 404/480/408 from the PBX); returns that status."""
        what = f"sip:{user}@{pbx.hostport} to be reachable"

        def probe() -> int | None:
            status = sip_options_ping(pbx.host, pbx.port, user=user, timeout=0.5)
            return status if status is not None and status not in (404, 408, 480) else None

        return poll_until(lambda: self._while_running(probe(), what), timeout=timeout, interval=0.1, what=what)

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the daemon to exit by itself (e.g. exit 2 on a bad config)."""
        if self._process is None:
            raise RuntimeError("the daemon was never started")
        return self._process.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by PID; SIGKILL if it is still running after ``timeout``. Returns the exit status."""
        return None if self._process is None else self._process.stop(timeout)

    def stop_clean(self, timeout: float = 10.0) -> None:
        """SIGTERM and assert a clean exit (status 0) within ``timeout``."""
        code = self.stop(timeout)
        if code != 0:
            raise AssertionError(f"sipcallhunt exited with status {code} after SIGTERM:\n{self.log_tail()}")

    def kill(self) -> int | None:
        """SIGKILL (a crash: no un-registration)."""
        return None if self._process is None else self._process.kill()
