"""Child processes of the test bed: started with their output in a log file, ended by PID.

Every peer (Kamailio, sipp, baresip, the daemon) runs as a :class:`ManagedProcess`:

* stdout and stderr go to one log file (never a pipe that could fill up and block the child);
* the child gets SIGTERM when the test process dies (``setpriv --pdeathsig``), so a crashed test
  run leaves nothing behind;
* the child leads a new process group (its PID is the group ID), which holds whatever it forks
  (Kamailio's workers, sipp under timeout(1)); signals go to that group, so no worker outlives
  its master, not even after SIGKILL;
* ``stop()`` sends SIGTERM, waits, then SIGKILL; ``kill()`` is SIGKILL at once.

Nothing here looks processes up by name.
"""

from __future__ import annotations

__all__ = ["ManagedProcess", "find_binary", "missing_binaries_message", "poll_until"]

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

import attrs

INSTALL_HINT = "run scripts/install-test-deps.sh (as root) to install the test bed"
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

T = TypeVar("T")


def find_binary(name: str) -> str | None:
    """Path of the executable ``name`` (also looked up in the sbin directories), or None."""
    found = shutil.which(name)
    if found is None:
        found = shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))
    return found


def missing_binaries_message(names: Sequence[str]) -> str | None:
    """A failure message naming the missing programs and the install script, or None if all exist."""
    missing = [name for name in names if find_binary(name) is None]
    if not missing:
        return None
    return f"test bed program(s) not installed: {', '.join(missing)}; {INSTALL_HINT}"


def _with_pdeathsig(argv: Sequence[str]) -> list[str]:
    """``argv`` run through setpriv(1) so that the child gets SIGTERM when the test process dies
    (PR_SET_PDEATHSIG survives the exec; no Python runs between fork and exec)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)


def poll_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Call ``check`` until it returns something other than None/False; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


@attrs.define(eq=False)
class ManagedProcess:
    """One child process with its output in ``log_path``."""

    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    _popen: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)
    _log: IO[bytes] | None = attrs.field(default=None, init=False)

    def start(self) -> None:
        if self.is_running:
            raise RuntimeError(f"{self.argv[0]} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        env = dict(os.environ if self.env is None else self.env)
        try:
            self._popen = subprocess.Popen(
                _with_pdeathsig(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        self._log = log

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def wait(self, timeout: float) -> int:
        """Wait for the exit; TimeoutError (the process keeps running) after ``timeout`` seconds."""
        if self._popen is None:
            raise RuntimeError("process was never started")
        try:
            code = self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.argv[0]} (pid {self.pid}) still running after {timeout:.1f} s") from None
        self._close_log()
        return code

    async def wait_async(self, timeout: float) -> int:
        """Like :meth:`wait`, without blocking the event loop."""
        if self._popen is None:
            raise RuntimeError("process was never started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._popen.poll() is None:
            if loop.time() >= deadline:
                raise TimeoutError(f"{self.argv[0]} (pid {self.pid}) still running after {timeout:.1f} s")
            await asyncio.sleep(0.02)
        self._close_log()
        return self._popen.returncode

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child's process group (only while the child runs)."""
        if self._popen is not None and self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signum)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit status (None if never started)."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self._popen.wait(5.0)
        self._close_log()
        return self._popen.returncode

    def kill(self) -> int | None:
        """SIGKILL at once (a crash, as far as the peers can tell)."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self.signal(signal.SIGKILL)
            self._popen.wait(5.0)
        self._close_log()
        return self._popen.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()
