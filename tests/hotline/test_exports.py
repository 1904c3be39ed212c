"""sipcallhunt.hotline exports what it means to (its purity is scanned by tests/test_purity.py)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import sipcallhunt.hotline

PACKAGE_DIR = Path(sipcallhunt.hotline.__file__).parent


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
