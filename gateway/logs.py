"""Process logging: one line per record on stderr, plain or logfmt (key=value).

``plain``::

    2026-01-31 12:00:00,123 INFO gateway.app: gateway ready

``logfmt`` (one record per line, values quoted when they need it, tracebacks
folded into the ``exc`` field so a record never spans lines)::

    time=2026-01-31T12:00:00.123Z level=info logger=gateway.app msg="gateway ready"
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Literal, TextIO

LogFormat = Literal["plain", "logfmt"]

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_LIBRARY_FLOORS = {
    "aiosqlite": logging.INFO,
    "asyncio": logging.INFO,
    "alembic.runtime.plugins": logging.WARNING,
}
"""Lowest level shown for libraries whose chatter drowns the gateway's own lines."""


def logfmt_value(value: object) -> str:
    """One logfmt value: bare when it is a plain token, else double-quoted and escaped."""
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\r\t'):
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """``time=... level=... logger=... msg=...`` with an ``exc`` field for tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = [
            ("time", f"{stamp}.{int(record.msecs):03d}Z"),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        if record.exc_info:
            fields.append(("exc", self.formatException(record.exc_info)))
        elif record.exc_text:
            fields.append(("exc", record.exc_text))
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields)


class _GatewayHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup_logging` installs (and replaces when called again)."""


def setup_logging(
    level: str = "INFO", log_format: LogFormat = "plain", stream: TextIO | None = None
) -> logging.Handler:
    """Send all records at ``level`` and above to ``stream`` (stderr) in ``log_format``."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        root.removeHandler(handler)
    handler = _GatewayHandler(stream if stream is not None else sys.stderr)
    if log_format == "logfmt":
        handler.setFormatter(LogfmtFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, floor in _LIBRARY_FLOORS.items():
        logging.getLogger(name).setLevel(max(numeric, floor))
    logging.captureWarnings(True)
    return handler
