"""Logging for the daemon: a TRACE level for whole SIP messages and the call's id on every line.

Every log record carries ``call_id`` (``-`` when it belongs to no call); the shell passes it with
``extra={"call_id": ...}``.  Under systemd (``JOURNAL_STREAM`` set) lines go to stderr without a
timestamp and with ``<N>`` priority prefixes, which journald turns into its own fields.
"""

from __future__ import annotations

__all__ = ["TRACE", "CallIdFilter", "configure_logging"]

import logging
import os
import sys
from typing import Final, TextIO

from sipcallhunt.sip.events import TRACE

logging.addLevelName(TRACE, "TRACE")

_SYSLOG_PRIORITY: Final = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
    TRACE: 7,
}


class CallIdFilter(logging.Filter):
    """Give every record a ``call_id`` attribute (``-`` when none was passed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = "-"
        return True


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>" + super().format(record)


def configure_logging(level: str | int = "INFO", *, stream: TextIO | None = None) -> None:
    """Set up the root logger of the ``sipcallhunt`` package."""
    if isinstance(level, str):
        level = TRACE if level.upper() == "TRACE" else logging.getLevelName(level.upper())
    assert isinstance(level, int)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(CallIdFilter())
    if os.environ.get("JOURNAL_STREAM") and stream is None:
        handler.setFormatter(_JournalFormatter("[%(call_id)s] %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s [%(call_id)s] %(name)s: %(message)s"))
    logger = logging.getLogger("sipcallhunt")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
