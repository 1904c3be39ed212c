"""SIGHUP reloads the configuration: a broken file keeps the running one, a good one applies to new calls."""

from __future__ import annotations

import os
import signal
import tomllib
from pathlib import Path

from sipcallhunt.records import AttemptEnd, Outcome
from tests.e2e.harness.daemon import Daemon
from tests.e2e.harness.ports import toml_dumps
from tests.e2e.harness.testbed import TestBed
from tests.e2e.test_hotline import start_hotline, write_prompts


def rewrite(config: Path, change: dict[str, object]) -> None:
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data["hotline"][0].update(change)
    config.write_text(toml_dumps(data), encoding="utf-8")


def test_sighup_keeps_a_broken_config_out_and_applies_a_good_one(testbed: TestBed) -> None:
    prompts = write_prompts(testbed.workdir / "prompts")
    hotline = start_hotline(
        testbed,
        [{"name": "support", **prompts, "rounds": 1, "agent": [{"name": "Ann", "number": "agent1"}]}],
    )
    daemon = hotline.daemon

    # A broken file: the daemon says which key is wrong and keeps running with the old configuration.
    rewrite(hotline.config, {"confirm_key": "11"})
    _hup(daemon)
    daemon.wait_for_log(r"reload of .* failed; the running configuration stays in force", timeout=10)
    daemon.wait_for_log(r"hotline\[0\]\.confirm_key: must be one DTMF key", timeout=5)
    assert daemon.is_running

    # A good file: Bea replaces Ann for new calls.
    rewrite(hotline.config, {"confirm_key": "1", "agent": [{"name": "Bea", "number": "agent2"}]})
    _hup(daemon)
    daemon.wait_for_log(r"configuration reloaded from .*: 1 hotline", timeout=10)
    bea = testbed.registered_sipp("agent2", "uas_busy")
    media = testbed.media()
    caller = testbed.caller(
        "uac_call_quiet", to="hotline", params={"rtp_ip": media.host, "rtp_port": media.port, "call_ms": 8000}
    ).start()
    bea.wait(timeout=15).assert_ok()
    caller.wait(timeout=20)
    call, attempts = hotline.wait_call()
    assert call.outcome is Outcome.NO_AGENT
    assert [(a.agent, a.number, a.end, a.sip_status) for a in attempts] == [("Bea", "agent2", AttemptEnd.BUSY, 486)]
    assert "Traceback" not in daemon.log_text()


def _hup(daemon: Daemon) -> None:
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGHUP)
