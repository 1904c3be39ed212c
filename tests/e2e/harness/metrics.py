"""Reading the daemon's ``GET /metrics`` (Prometheus text format) in tests.

    metrics = scrape(host, port)
    assert metrics.value("sipcallhunt_sip_ua_total", counter="malformed") >= 3
    assert metrics.value("sipcallhunt_calls_active", hotline="support") == 0

The parser is independent of the daemon's renderer on purpose: it reads the exposition format as
Prometheus does (one sample per line, labels in braces, comments skipped).
"""

from __future__ import annotations

__all__ = ["Metrics", "parse_metrics", "scrape"]

import re
import urllib.request
from collections.abc import Mapping

import attrs

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@attrs.frozen
class Metrics:
    """Samples by (name, sorted labels)."""

    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0.0 when absent (a counter not yet moved)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        """The sum over every sample of ``name`` (all label values)."""
        return sum(v for (n, _), v in self.samples.items() if n == name)

    def labels(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def parse_metrics(text: str) -> Metrics:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"not a metrics sample: {line!r}")
        name, label_text, value = match.groups()
        labels = tuple(
            sorted(
                (key, val.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                for key, val in _LABEL.findall(label_text or "")
            )
        )
        samples[name, labels] = float(value)
    return Metrics(samples)


def scrape(host: str, port: int, *, timeout: float = 5.0) -> Metrics:
    """GET http://host:port/metrics and parse it."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as response:
        return parse_metrics(response.read().decode())
