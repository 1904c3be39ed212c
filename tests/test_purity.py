"""The sans-IO cores stay pure: no sockets, clocks, threads, files, randomness or logging imports.

SIP (messages, transactions, dialogs, registration, digest, SDP, the user-agent core), the media
rules (RTP, RTCP, G.711, DTMF, the in-band detector, the player, the relay rules) and the hotline
call flow take bytes/events and ``now`` and return actions; only ``sipcallhunt.runtime`` (and the
file loaders) do I/O.  This scan of every import keeps it so.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sipcallhunt"

PURE_FILES = sorted(
    [
        *(PACKAGE / "sip").glob("*.py"),
        *(PACKAGE / "hotline").glob("*.py"),
        *(PACKAGE / "media" / "relay").glob("__init__.py"),
        *(PACKAGE / "media" / name for name in ("g711.py", "rtp.py", "rtcp.py", "dtmf.py", "inband.py", "player.py")),
        PACKAGE / "records.py",
        PACKAGE / "errors.py",
    ]
)

FORBIDDEN = frozenset(
    {
        "asyncio", "socket", "selectors", "select", "time", "datetime", "threading", "multiprocessing",
        "concurrent", "subprocess", "os", "io", "pathlib", "shutil", "tempfile", "random", "secrets",
        "logging", "signal", "uvloop", "sqlite3", "soundfile", "soxr", "sipcallhunt.runtime",
        "sipcallhunt.calllog", "sipcallhunt.cli",
    }
)  # fmt: skip


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever (functions too), except under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            type_only.update(id(child) for child in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names.add("__import__")
    return names


def test_the_cores_are_all_scanned() -> None:
    names = {str(p.relative_to(PACKAGE)) for p in PURE_FILES}
    assert {"sip/useragent.py", "sip/transaction.py", "hotline/call.py", "media/relay/__init__.py"} <= names
    assert all(p.is_file() for p in PURE_FILES)


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_imports_nothing_impure(path: Path) -> None:
    for name in imported_modules(path):
        forbidden = {name, name.split(".")[0], ".".join(name.split(".")[:2])} & FORBIDDEN
        assert not forbidden, f"{path.relative_to(PACKAGE)} imports {name}"
        assert name != "__import__", f"{path.relative_to(PACKAGE)} imports dynamically"


def test_the_scan_would_catch_an_impure_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import time\nfrom asyncio import sleep\nimport os.path\ndef f():\n    import socket\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlite3\n",
        encoding="utf-8",
    )
    assert imported_modules(bad) == {"time", "asyncio", "os.path", "socket", "typing"}
