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


# Every C0 and C1 control character and DEL, escaped: a request path or a board's line
# with an ANSI escape or a newline must not recolour a terminal or forge a second record.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7f, 0xa0))}
_CONTROLS.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def escape_controls(text: str) -> str:
    """`text` with control characters written as escapes (ESC as \\x1b, newline as \\n)."""
    return text.translate(_CONTROLS)


class OneLineFormatter(logging.Formatter):
    """Keeps every event, traceback included, on one line (journald and grep see one record)."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(redact(super().format(record)))


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
