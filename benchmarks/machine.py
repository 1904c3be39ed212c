"""Describe the machine a benchmark ran on, so that figures can be compared fairly."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

__all__ = ["describe", "print_header"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def describe() -> str:
    """One line: CPU model, cores, load average, Python and platform."""
    python = f"Python {sys.version.split()[0]} ({platform.python_implementation()})"
    system = f"{platform.system()} {platform.release()}"
    return f"{_cpu_model()}, {os.cpu_count()} cores, load {_loadavg()}, {python}, {system}"


def print_header(title: str) -> None:
    print(f"# {title}")
    print(f"# machine: {describe()}")
