"""The communication log: a bounded ring of what crossed the wire, read incrementally."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import Any

TX = "tx"  # controller -> board
RX = "rx"  # board -> controller
INFO = "info"  # the controller's own remark about a device (connected, timed out, ...)
ERROR = "error"
DIRECTIONS = (TX, RX, INFO, ERROR)


@dataclass(frozen=True)
class LogEntry:
    id: int
    time: float
    device_id: str
    transport: str
    direction: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "device_id": self.device_id,
                "transport": self.transport, "direction": self.direction,
                "message": self.message}

    @cached_property
    def json(self) -> str:
        """The entry as JSON, encoded once: every open log view asks for the same lines."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


class CommunicationLog:
    """Thread-safe ring buffer; ids only grow, so clients ask for `since=<last id>`."""

    MAX_MESSAGE = 1000

    def __init__(self, size: int = 1000) -> None:
        self._entries: deque[LogEntry] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._last_id = 0
        self._clears = 0

    def add(self, device_id: str, transport: str, direction: str, message: str) -> LogEntry:
        """Append one line; over-long messages are cut so one bad line cannot fill memory."""
        if len(message) > self.MAX_MESSAGE:
            message = f"{message[: self.MAX_MESSAGE]}... ({len(message)} chars)"
        with self._lock:
            self._last_id += 1
            entry = LogEntry(self._last_id, time.time(), device_id, transport, direction, message)
            self._entries.append(entry)
            return entry

    @property
    def last_id(self) -> int:
        return self._last_id

    @property
    def revision(self) -> tuple[int, int]:
        """Changes whenever what `since()` would answer can have changed."""
        return self._clears, self._last_id

    def since(
        self, since: int = 0, device_id: str | None = None, direction: str | None = None,
        limit: int = 500,
    ) -> tuple[list[LogEntry], bool]:
        """Up to `limit` entries newer than `since`, oldest first, and whether older ones were dropped."""
        with self._lock:
            entries = list(self._entries)
        truncated = bool(entries) and since < entries[0].id - 1
        selected = [
            e for e in entries
            if e.id > since
            and (device_id is None or e.device_id == device_id)
            and (direction is None or e.direction == direction)
        ]
        return selected[:limit], truncated

    def clear(self) -> None:
        """Drop every entry; ids keep growing so clients are not confused."""
        with self._lock:
            self._entries.clear()
            self._clears += 1
