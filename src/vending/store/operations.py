"""Alerts, webhook deliveries, the audit trail and low-stock levels, on the store's database.

These share the Store's connection and lock, so every write is one committed transaction
like the vend rows, and nothing here can interleave with a vend's write.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import NotFound
from . import Store, outbox

DELIVERY_PENDING = "pending"
DELIVERY_DELIVERED = "delivered"
DELIVERY_FAILED = "failed"


@dataclass(frozen=True)
class Alert:
    """Something an operator must hear about."""

    id: int
    kind: str
    severity: str
    subject: str
    message: str
    data: dict[str, Any]
    created_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None

    @property
    def active(self) -> bool:
        return self.acknowledged_at is None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of an alert (API, webhooks, MQTT)."""
        return {**asdict(self), "time": self.created_at, "active": self.active}

    @classmethod
    def from_row(cls, row: Any) -> Alert:
        values = dict(row)
        try:
            values["data"] = json.loads(values["data"] or "{}")
        except ValueError:
            values["data"] = {}
        return cls(**values)


@dataclass(frozen=True)
class Delivery:
    """One alert still to be posted to one webhook URL."""

    alert_id: int
    url: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    delivered_at: float | None


@dataclass(frozen=True)
class AuditEntry:
    """One operator action, allowed or refused."""

    id: int
    time: float
    action: str
    who: str
    source: str
    outcome: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_machine_id(data_dir: Path) -> str:
    """This controller's id: made once, kept in the data directory, the same after restarts."""
    path = Path(data_dir) / "machine_id"
    try:
        value = path.read_text(encoding="ascii").strip()
        if value and value.isalnum():
            return value
    except (OSError, UnicodeDecodeError):
        pass
    value = secrets.token_hex(6)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value + "\n", encoding="ascii")
    os.replace(tmp, path)
    return value


@dataclass(frozen=True)
class Retention:
    """How long audit and alert rows are kept: by age and by count, whichever is less.

    Both bound the database: a year of normal use fits within the ages, and an attack
    that makes rows faster only pushes the oldest ones out (bench/bench_retention.py).
    """

    audit_days: float = 400.0
    audit_rows: int = 50_000
    alert_days: float = 400.0
    alert_rows: int = 20_000
    # Pruning runs once per this many new rows of a kind, so a write stays one INSERT.
    every: int = 100


class OperationsStore:
    """Small queries over the alerts, webhook_deliveries, audit and slot_alert_levels tables."""

    def __init__(self, store: Store, retention: Retention | None = None) -> None:
        self.store = store
        self.retention = retention or Retention()
        self._audit_writes = 0
        self._alert_writes = 0

    # Retention

    def prune(self, now: float | None = None) -> tuple[int, int]:
        """Delete audit and alert rows past their age or count; (audit rows, alerts) deleted."""
        now = time.time() if now is None else now
        keep = self.retention
        with self.store.write() as db:
            audit = db.execute("DELETE FROM audit WHERE time < ?",
                               (now - keep.audit_days * 86400,)).rowcount
            audit += db.execute(
                "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?",
                (keep.audit_rows,)).rowcount
            oldest_kept = db.execute(
                "SELECT MIN(id) FROM (SELECT id FROM alerts WHERE created_at >= ?"
                " ORDER BY id DESC LIMIT ?)",
                (now - keep.alert_days * 86400, keep.alert_rows)).fetchone()[0]
            bound = oldest_kept if oldest_kept is not None else \
                (db.execute("SELECT MAX(id) FROM alerts").fetchone()[0] or 0) + 1
            db.execute("DELETE FROM webhook_deliveries WHERE alert_id < ?", (bound,))
            alerts = db.execute("DELETE FROM alerts WHERE id < ?", (bound,)).rowcount
        return audit, alerts

    def _count_write(self, kind: str) -> None:
        if kind == "audit":
            self._audit_writes += 1
            due = self._audit_writes % self.retention.every == 0
        else:
            self._alert_writes += 1
            due = self._alert_writes % self.retention.every == 0
        if due:
            self.prune()

    # Alerts

    def add_alert(self, kind: str, severity: str, subject: str, message: str,
                  data: dict[str, Any], webhook_urls: list[str] | tuple[str, ...] = (),
                  now: float | None = None) -> Alert:
        """Persist an alert and, in the same transaction, its pending webhook deliveries."""
        now = time.time() if now is None else now
        with self.store.write() as db:
            cur = db.execute(
                "INSERT INTO alerts (kind, severity, subject, message, data, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (kind, severity, subject, message, json.dumps(data, default=str), now),
            )
            alert_id = cur.lastrowid
            for url in webhook_urls:
                db.execute(
                    "INSERT INTO webhook_deliveries (alert_id, url, state, next_attempt_at)"
                    " VALUES (?, ?, ?, ?)",
                    (alert_id, url, DELIVERY_PENDING, now),
                )
            row = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            alert = Alert.from_row(row)
            self.store.emit(db, outbox.ALERT, alert.to_dict(), alert.created_at)
        self._count_write("alert")
        return alert

    def alert(self, alert_id: int) -> Alert:
        rows = self.store.query("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        if not rows:
            raise NotFound(f"no alert {alert_id}; GET /alerts lists them")
        return Alert.from_row(rows[0])

    def alerts(self, since: int = 0, active_only: bool = False, limit: int = 100) -> list[Alert]:
        """Alerts newer than id `since`, oldest first; only unacknowledged ones if asked."""
        clause = " AND acknowledged_at IS NULL" if active_only else ""
        rows = self.store.query(
            f"SELECT * FROM alerts WHERE id > ?{clause} ORDER BY id LIMIT ?", (since, limit)
        )
        return [Alert.from_row(row) for row in rows]

    def has_active_alert(self, kind: str, subject: str) -> bool:
        rows = self.store.query(
            "SELECT 1 FROM alerts WHERE kind = ? AND subject = ? AND acknowledged_at IS NULL LIMIT 1",
            (kind, subject),
        )
        return bool(rows)

    def active_alerts(self, kind: str, subject: str) -> list[Alert]:
        """Unacknowledged alerts of one kind about one subject, oldest first."""
        rows = self.store.query(
            "SELECT * FROM alerts WHERE kind = ? AND subject = ? AND acknowledged_at IS NULL"
            " ORDER BY id", (kind, subject),
        )
        return [Alert.from_row(row) for row in rows]

    def active_alert_count(self) -> int:
        return self.store.query("SELECT COUNT(*) FROM alerts WHERE acknowledged_at IS NULL")[0][0]

    def last_alert_id(self) -> int:
        return self.store.query("SELECT COALESCE(MAX(id), 0) FROM alerts")[0][0]

    def acknowledge(self, alert_id: int, who: str) -> Alert:
        """Mark an alert as seen; acknowledging twice keeps the first time and person."""
        if not 0 < alert_id < 2**63:
            # SQLite integers stop at 2^63-1; a bigger id from the URL would raise OverflowError.
            raise NotFound(f"no alert {alert_id}; GET /alerts lists them")
        with self.store.write() as db:
            cur = db.execute(
                "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?"
                " WHERE id = ? AND acknowledged_at IS NULL",
                (time.time(), who, alert_id),
            )
            if cur.rowcount == 0 and db.execute(
                    "SELECT 1 FROM alerts WHERE id = ?", (alert_id,)).fetchone() is None:
                raise NotFound(f"no alert {alert_id}; GET /alerts lists them")
            if cur.rowcount:
                alert = Alert.from_row(db.execute("SELECT * FROM alerts WHERE id = ?",
                                                  (alert_id,)).fetchone())
                self.store.emit(db, outbox.ALERT_ACKNOWLEDGED, alert.to_dict(),
                                 alert.acknowledged_at)
        return self.alert(alert_id)

    # Webhook deliveries

    def due_deliveries(self, now: float, longest_wait: float, limit: int = 50) -> list[Delivery]:
        """Pending deliveries due at `now`, and those due more than `longest_wait` from now:
        no retry is ever scheduled that far ahead, so the clock was set back since."""
        rows = self.store.query(
            "SELECT * FROM webhook_deliveries WHERE state = ?"
            " AND (next_attempt_at <= ? OR next_attempt_at > ?)"
            " ORDER BY next_attempt_at, alert_id LIMIT ?",
            (DELIVERY_PENDING, now, now + longest_wait, limit),
        )
        return [Delivery(**dict(row)) for row in rows]

    def next_delivery_time(self) -> float | None:
        """When the earliest pending delivery is due, or None when nothing is pending."""
        value = self.store.query(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = ?",
            (DELIVERY_PENDING,),
        )[0][0]
        return value

    def delivery_done(self, alert_id: int, url: str) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1,"
                " delivered_at = ?, last_error = NULL WHERE alert_id = ? AND url = ?",
                (DELIVERY_DELIVERED, time.time(), alert_id, url),
            )

    def delivery_retry(self, alert_id: int, url: str, error: str, next_attempt_at: float | None) -> None:
        """Record a failed attempt; None for `next_attempt_at` gives up on this delivery."""
        state = DELIVERY_FAILED if next_attempt_at is None else DELIVERY_PENDING
        with self.store.write() as db:
            db.execute(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = COALESCE(?, next_attempt_at) WHERE alert_id = ? AND url = ?",
                (state, error[:500], next_attempt_at, alert_id, url),
            )

    def drop_deliveries_except(self, urls: list[str]) -> int:
        """Give up pending posts to URLs no longer configured; returns how many."""
        marks = ", ".join("?" for _ in urls) or "NULL"
        with self.store.write() as db:
            return db.execute(
                f"UPDATE webhook_deliveries SET state = ?, last_error = ?"
                f" WHERE state = ? AND url NOT IN ({marks})",
                (DELIVERY_FAILED, "URL no longer configured", DELIVERY_PENDING, *urls),
            ).rowcount

    def deliveries(self, alert_id: int) -> list[Delivery]:
        rows = self.store.query(
            "SELECT * FROM webhook_deliveries WHERE alert_id = ? ORDER BY url", (alert_id,)
        )
        return [Delivery(**dict(row)) for row in rows]

    # Audit

    def add_audit(self, action: str, who: str, source: str, outcome: str, detail: str,
                  now: float | None = None) -> AuditEntry:
        now = time.time() if now is None else now
        with self.store.write() as db:
            cur = db.execute(
                "INSERT INTO audit (time, action, who, source, outcome, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (now, action, who, source, outcome, detail),
            )
            entry = AuditEntry(cur.lastrowid or 0, now, action, who, source, outcome, detail)
        self._count_write("audit")
        return entry

    def audit(self, since: int = 0, action: str | None = None, limit: int = 100,
              newest_first: bool = False) -> list[AuditEntry]:
        """Audit rows newer than id `since`, optionally of one action."""
        where, params = ["id > ?"], [since]
        if action is not None:
            where.append("action = ?")
            params.append(action)
        order = "DESC" if newest_first else "ASC"
        rows = self.store.query(
            f"SELECT * FROM audit WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?",
            (*params, limit),
        )
        return [AuditEntry(**dict(row)) for row in rows]

    def iter_audit(self, action: str | None = None) -> Iterator[AuditEntry]:
        """Every audit row, oldest first, a page at a time (for CSV export)."""
        since = 0
        while True:
            page = self.audit(since, action, limit=500)
            yield from page
            if len(page) < 500:
                return
            since = page[-1].id

    # Low-stock levels

    def low_stock_levels(self) -> dict[int, int]:
        rows = self.store.query("SELECT slot, low_stock_level FROM slot_alert_levels")
        return {row["slot"]: row["low_stock_level"] for row in rows}

    def set_low_stock_level(self, slot: int, level: int | None) -> None:
        """A slot's own level, or None to use the default again."""
        with self.store.write() as db:
            if level is None:
                db.execute("DELETE FROM slot_alert_levels WHERE slot = ?", (slot,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO slot_alert_levels (slot, low_stock_level) VALUES (?, ?)",
                    (slot, level),
                )
