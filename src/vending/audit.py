"""The audit trail: every operator action, allowed or refused, with who, when and from where.

Anyone may record: `runtime.audit.record(action, who, source, outcome, detail)`. The web
layer has a helper that fills in who and where from the request (web/operations.py).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Iterable, Iterator

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
    """Writes and reads the audit table."""

    def __init__(self, ops: OperationsStore) -> None:
        self.ops = ops

    def record(self, action: str, who: str, source: str, outcome: str = OK,
               detail: str = "") -> AuditEntry:
        """Keep one operator action; `outcome` is ok, refused or failed."""
        detail = detail if len(detail) <= DETAIL_MAX else detail[:DETAIL_MAX - 3] + "..."
        entry = self.ops.add_audit(action, who or "anonymous", source or "", outcome, detail)
        logger.info("audit id=%d action=%s who=%s source=%s outcome=%s detail=%s", entry.id,
                    one_line(action), one_line(entry.who), one_line(entry.source), outcome,
                    one_line(detail))
        return entry

    def entries(self, since: int = 0, action: str | None = None, limit: int = 100,
                newest_first: bool = False) -> list[AuditEntry]:
        """Rows newer than id `since`."""
        return self.ops.audit(since, action, limit, newest_first)

    def iter_all(self, action: str | None = None) -> Iterator[AuditEntry]:
        return self.ops.iter_audit(action)


def to_csv(entries: Iterable[AuditEntry]) -> str:
    """The audit rows as CSV with ISO-8601 UTC times."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        row = entry.to_dict()
        row["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.time))
        writer.writerow([row[column] for column in CSV_COLUMNS])
    return buffer.getvalue()
