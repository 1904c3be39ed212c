"""sipcallhunt.hotline stays pure: no I/O, clock, thread or randomness imports; exports are deliberate."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import sipcallhunt.hotline

FORBIDDEN = {
    "asyncio",
    "socket",
    "selectors",
    "select",
    "time",
    "datetime",
    "threading",
    "multiprocessing",
    "concurrent",
    "subprocess",
    "os",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "random",
    "secrets",
    "logging",
    "signal",
    "uvloop",
    "sqlite3",
    "sipcallhunt.runtime",
}

PACKAGE_DIR = Path(sipcallhunt.hotline.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names.add("__import__")
    return names


def test_hotline_modules_import_nothing_impure() -> None:
    files = sorted(PACKAGE_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"events.py", "actions.py", "pin.py", "attempt.py", "call.py"}
    for path in files:
        for name in imported_modules(path):
            top = name.split(".")[0]
            assert name not in FORBIDDEN and top not in FORBIDDEN, f"{path.name} imports {name}"
            assert not name.startswith("sipcallhunt.runtime"), f"{path.name} imports {name}"
            assert name != "__import__", f"{path.name} imports dynamically"


def test_the_scan_would_catch_an_impure_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\nimport os.path\n", encoding="utf-8")
    assert {"time", "asyncio", "os.path"} <= imported_modules(bad)


def test_every_public_module_declares_all_and_its_names_exist() -> None:
    for info in pkgutil.iter_modules([str(PACKAGE_DIR)]):
        module = importlib.import_module(f"sipcallhunt.hotline.{info.name}")
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"
        assert module.__doc__ and len(module.__doc__) > 100, f"{info.name} needs a theory-of-operation docstring"


def test_package_exports() -> None:
    exported = set(sipcallhunt.hotline.__all__)
    assert {
        "HotlineCall",
        "PinGuard",
        "CALLER",
        "Play",
        "Dial",
        "Bridge",
        "HangupAgent",
        "Digit",
        "Shutdown",
    } <= exported
    for name in exported:
        assert getattr(sipcallhunt.hotline, name) is not None
