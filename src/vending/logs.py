"""Log set-up: one event per line on stderr with level and component, secrets masked."""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# `name=value` / `name: value` / `"name": "value"` where the value must never reach a log.
_SECRET = re.compile(
    r"""(?ix)
    (\b(?:password|passwd|psk|secret|token|api[_-]?key|auth[_-]?key|hmac|signature|authorization)
     ["']?\s*[=:]\s*["']?)
    ((?:bearer\s+|basic\s+)?[^\s"',;&]+)
    """
)


def redact(text: str) -> str:
    """`text` with the values of password=, token=, secret=... replaced by ***."""
    return _SECRET.sub(lambda m: m.group(1) + "***", text)


class OneLineFormatter(logging.Formatter):
    """Keeps every event, traceback included, on one line (journald and grep see one record)."""

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        return text.replace("\r", "\\r").replace("\n", "\\n")


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records to `stream` (stderr) at `level`; safe to call again."""
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_vending", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(OneLineFormatter(FORMAT))
    handler._vending = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(name)
    return handler
