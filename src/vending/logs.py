"""Log set-up: one event per line on stderr with level and component, secrets masked."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

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


class RefusalThrottle:
    """Which refused requests get a row of their own, minute by minute (not thread-safe)."""

    MAX_SOURCES = 256  # counted one by one; the rest as "other"

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._minute: int | None = None
        self._written: set[str] = set()
        self._suppressed: dict[str, int] = {}

    def roll(self, now: float) -> tuple[int, dict[str, int]] | None:
        """Start the minute `now` is in; the finished minute's (minute, suppressed counts)."""
        minute = int(now // 60)
        if minute == self._minute:
            return None
        finished = None
        if self._minute is not None and self._suppressed:
            finished = (self._minute, self._suppressed)
        self._minute, self._written, self._suppressed = minute, set(), {}
        return finished

    def admit(self, source: str) -> bool:
        """True when this refusal gets its own row; else it is counted for the summary."""
        if source not in self._written and len(self._written) < self.per_minute:
            self._written.add(source)
            return True
        key = source if source in self._suppressed or \
            len(self._suppressed) < self.MAX_SOURCES else "other"
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        return False


class RefusalLog:
    """Log lines about refused requests, which anyone on the network can cause at any rate.

    One line per source a minute, at most `per_minute` lines a minute in all; the others are
    counted and summed up in one line, written with the first refusal after their minute.
    Without this an attacker's flood became a flood of lines: journald then drops a
    service's messages past its rate limit, our ALERT lines among them.
    """

    def __init__(self, logger: logging.Logger, per_minute: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._logger = logger
        self._throttle = RefusalThrottle(per_minute)
        self._clock = clock
        self._lock = threading.Lock()

    def refused(self, source: str, message: str, *args: Any) -> bool:
        """Log `message % args` at INFO unless `source` or the minute had its share; True if
        it was logged."""
        with self._lock:
            summary = self._throttle.roll(self._clock())
            admitted = self._throttle.admit(source)
        if summary is not None:
            minute, counts = summary
            top = sorted(counts.items(), key=lambda item: -item[1])[:10]
            more = f" and {len(counts) - len(top)} more sources" if len(counts) > len(top) else ""
            self._logger.info(
                "%d more refused requests in the minute from %s UTC, not logged one by one: %s%s",
                sum(counts.values()), time.strftime("%H:%M", time.gmtime(minute * 60)),
                ", ".join(f"{source or '?'} x{count}" for source, count in top), more)
        if admitted:
            self._logger.info(message, *args)
        return admitted
