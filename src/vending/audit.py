"""The audit trail: every operator action, allowed or refused, with who, when and from where.

Anyone may record: `runtime.audit.record(action, who, source, outcome, detail)`. The web
layer has a helper that fills in who and where from the request (web/operations.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import exports
from .logs import RefusalThrottle
from .store.operations import AuditEntry, OperationsStore

logger = logging.getLogger("vending.audit")

# Outcomes.
OK = "ok"
REFUSED = "refused"
FAILED = "failed"

# Actions recorded today; others may add their own names (e.g. "sign_in", "approve_device").
SELECT_DEVICE = "select_device"
AUTO_SELECT = "auto_select"
CLEAR_LOG = "clear_log"
RESTOCK = "restock"
CHANGE_SLOT = "change_slot"
CHECK_TRANSACTION = "check_transaction"
ACK_ALERT = "ack_alert"
SET_LOW_STOCK_LEVEL = "set_low_stock_level"
MQTT_VEND = "mqtt_vend"
SIGN_IN = "sign_in"
APPROVE_DEVICE = "approve_device"
REVOKE_DEVICE = "revoke_device"
REJECT_DEVICE = "reject_device"
SIMULATE_FAULT = "simulate_fault"
REFUSALS_SUMMARY = "refused_requests"
ADD_PRODUCT = "add_product"
CHANGE_PRODUCT = "change_product"
DELETE_PRODUCT = "delete_product"
REFILL = "refill"
COLLECT = "collect"

CSV_COLUMNS = ("id", "time", "action", "who", "source", "outcome", "detail")
DETAIL_MAX = 1000


def one_line(text: str) -> str:
    """Text safe for a one-event-per-line log: control characters escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class AuditLog:
    """Writes and reads the audit table; refused requests are written at a bounded rate."""

    def __init__(self, ops: OperationsStore, refusals_per_minute: int = 20,
                 clock: Callable[[], float] = time.time) -> None:
        self.ops = ops
        self.refusals = RefusalThrottle(refusals_per_minute)
        self._clock = clock
        self._lock = threading.Lock()

    def refused(self, action: str, who: str, source: str, detail: str = "") -> AuditEntry | None:
        """Keep a refused request: one row per source and minute, at most `refusals_per_minute`
        rows a minute in all; the rest are counted into one summary row per minute."""
        now = self._clock()
        with self._lock:
            summary = self.refusals.roll(now)
            write = self.refusals.admit(source)
        if summary:
            self._write_summary(*summary)
        if not write:
            return None
        return self.record(action, who, source, REFUSED, detail, now=now)

    def flush(self) -> None:
        """Write the summary of a minute that is over (readers call it; so does shutdown)."""
        with self._lock:
            summary = self.refusals.roll(self._clock())
        if summary:
            self._write_summary(*summary)

    def _write_summary(self, minute: int, counts: dict[str, int]) -> None:
        total = sum(counts.values())
        top = sorted(counts.items(), key=lambda item: -item[1])[:10]
        listed = ", ".join(f"{source or '?'} x{count}" for source, count in top)
        more = f" and {len(counts) - len(top)} more sources" if len(counts) > len(top) else ""
        when = time.strftime("%H:%M", time.gmtime(minute * 60))
        self.record(REFUSALS_SUMMARY, "anonymous", "", REFUSED,
                    f"{total} more refused requests in the minute from {when} UTC, not kept one"
                    f" by one: {listed}{more}", now=(minute + 1) * 60.0)

    def record(self, action: str, who: str, source: str, outcome: str = OK,
               detail: str = "", now: float | None = None) -> AuditEntry:
        """Keep one operator action; `outcome` is ok, refused or failed."""
        detail = detail if len(detail) <= DETAIL_MAX else detail[:DETAIL_MAX - 3] + "..."
        entry = self.ops.add_audit(action, who or "anonymous", source or "", outcome, detail,
                                   now=now)
        logger.info("audit id=%d action=%s who=%s source=%s outcome=%s detail=%s", entry.id,
                    one_line(action), one_line(entry.who), one_line(entry.source), outcome,
                    one_line(detail))
        return entry

    def entries(self, since: int = 0, action: str | None = None, limit: int = 100,
                newest_first: bool = False) -> list[AuditEntry]:
        """Rows newer than id `since`."""
        self.flush()
        return self.ops.audit(since, action, limit, newest_first)

    def iter_all(self, action: str | None = None) -> Iterator[AuditEntry]:
        self.flush()
        return self.ops.iter_audit(action)


def to_csv(entries: Iterable[AuditEntry]) -> str:
    """The audit rows as CSV with ISO-8601 UTC times."""
    def rows() -> Iterator[list[Any]]:
        for entry in entries:
            row = entry.to_dict()
            row["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.time))
            yield [row[column] for column in CSV_COLUMNS]

    return exports.to_csv(CSV_COLUMNS, rows())
