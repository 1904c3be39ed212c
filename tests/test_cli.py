"""The command line: check, run on a bad configuration, the demo."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from sipcallhunt.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_check_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(ROOT / "examples" / "hotline.toml")]) == 0
    out = capsys.readouterr().out
    assert "configuration" in out and "OK" in out
    assert "hotline support" in out and "Alice: 201" in out


def test_check_warns_when_the_file_with_passwords_is_world_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hotline.toml"
    config.write_text(
        '[sip]\nlisten = "127.0.0.1:5060"\n[[account]]\nname = "main"\nregistrar = "sip:127.0.0.1"\n'
        'username = "u"\npassword = "secret"\n',
        encoding="utf-8",
    )
    config.chmod(0o644)
    assert main(["check", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {config}: readable by every user of this machine (mode 0644)" in out
    config.chmod(0o640)
    assert main(["check", "-c", str(config)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_check_names_file_and_key_of_each_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        """
[sip]
listen = "127.0.0.1:5060"
lisen = "typo"

[[account]]
name = "main"
registrar = "sip:127.0.0.1"
username = "u"
password = "p"

[[hotline]]
name = "h"
account = "nope"
confirm_key = "11"
intro = "missing.wav"

[[hotline.agent]]
number = "bad number!"
""",
        encoding="utf-8",
    )
    assert main(["check", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    for key in ("sip.lisen", "hotline[0].account", "hotline[0].confirm_key", "hotline[0].intro", "agent[0].number"):
        assert f"{config}: {key}" in err.replace("hotline[0].agent[0]", "agent[0]"), key


def test_check_reports_an_unreadable_prompt_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "intro.wav"
    garbage.write_bytes(b"this is not audio")
    config = tmp_path / "h.toml"
    config.write_text(
        f"""
[[account]]
name = "main"
registrar = "sip:127.0.0.1"
username = "u"
password = "p"

[[hotline]]
name = "h"
account = "main"
intro = "{garbage}"

[[hotline.agent]]
number = "201"
""",
        encoding="utf-8",
    )
    assert main(["check", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "hotline[0].intro" in err and str(garbage) in err


def test_run_with_a_broken_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[sip]\nlisten = 5060\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "sipcallhunt", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"{config}: sip.listen" in result.stderr
    assert f"{config}: account" in result.stderr


def test_run_with_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sipcallhunt", "run", "-c", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "nope.toml" in result.stderr


@pytest.mark.e2e
def test_demo_connects_the_agent_who_pressed_1() -> None:
    from sipcallhunt.demo import main as demo_main

    out = io.StringIO()
    assert demo_main([], out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "PIN accepted" in text
    assert "Alice did not answer" in text
    assert "Bob answered but pressed no key" in text
    assert "accepted (pressed 1 via rfc4733)" in text
    assert "hears Carol: dominant frequency 880 Hz" in text
    assert "hears the caller: dominant frequency 440 Hz" in text
    table = text.split("call log (sipcallhunt calls --attempts):")[1]
    assert "connected" in table and "Carol" in table
