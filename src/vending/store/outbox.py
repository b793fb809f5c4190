"""The outbox: every event the MQTT bridge publishes, numbered and kept until the broker has it.

Rows are written by the store inside the write transaction of the change they report
(`Store._emit`), so an event exists exactly when its change does, even across a power cut.
The bridge reads them in `seq` order, publishes them with QoS 1 and marks them delivered on
the broker's PUBACK; delivered rows are pruned after a retention period.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

# Event names and the topic (under <prefix>/<machine-id>/) each is published on.
VEND = "vend"
ALERT = "alert"
ALERT_ACKNOWLEDGED = "alert_acknowledged"
STOCK = "stock"
DEVICE = "device"
# A collection closed a period (issue 16); the fleet counts sales since the latest one.
COLLECTION = "collection"
TOPICS = {
    VEND: "events/vend",
    # Alerts kept the topic they had before the outbox existed.
    ALERT: "alerts",
    ALERT_ACKNOWLEDGED: "events/alert_acknowledged",
    STOCK: "events/stock",
    DEVICE: "events/device",
}


def topic_for(event: str) -> str:
    """The topic (relative to the machine's base) an event is published on."""
    return TOPICS.get(event, f"events/{event}")


@dataclass(frozen=True)
class OutboxEvent:
    """One event as queued: its number, name, topic, body and the time of the change."""

    seq: int
    event: str
    topic: str
    body: dict[str, Any]
    created_at: float
    delivered_at: float | None

    def envelope(self, machine_id: str) -> dict[str, Any]:
        """The published JSON: the body plus what a consumer de-duplicates and orders by."""
        return {**self.body, "machine_id": machine_id, "seq": self.seq, "event": self.event,
                "time": self.created_at}

    @classmethod
    def from_row(cls, row: Any) -> OutboxEvent:
        values = dict(row)
        values["body"] = json.loads(values["body"])
        return cls(**values)


def append(db: sqlite3.Connection, event: str, body: dict[str, Any],
           at: float | None = None) -> int:
    """Queue one event inside the caller's write transaction; returns its seq."""
    cur = db.execute(
        "INSERT INTO outbox (event, topic, body, created_at) VALUES (?, ?, ?, ?)",
        (event, topic_for(event), json.dumps(body, separators=(",", ":"), default=str),
         time.time() if at is None else at),
    )
    return int(cur.lastrowid or 0)


def pending(db: sqlite3.Connection, after: int, limit: int) -> list[OutboxEvent]:
    """Undelivered events with seq above `after`, oldest first."""
    rows = db.execute(
        "SELECT * FROM outbox WHERE delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    ).fetchall()
    return [OutboxEvent.from_row(row) for row in rows]


def mark_delivered(db: sqlite3.Connection, seqs: list[int], at: float) -> None:
    """Record the broker's PUBACK for these events."""
    db.executemany("UPDATE outbox SET delivered_at = ? WHERE seq = ? AND delivered_at IS NULL",
                   [(at, seq) for seq in seqs])


def prune(db: sqlite3.Connection, delivered_before: float) -> int:
    """Forget events the broker acknowledged before `delivered_before`."""
    return db.execute("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                      (delivered_before,)).rowcount


def counts(db: sqlite3.Connection) -> dict[str, Any]:
    """Queued and kept events, and the oldest queued one's time (None when all delivered)."""
    row = db.execute(
        "SELECT COUNT(*) AS total, SUM(delivered_at IS NULL) AS queued,"
        " MIN(CASE WHEN delivered_at IS NULL THEN created_at END) AS oldest_queued,"
        " MAX(seq) AS last_seq FROM outbox"
    ).fetchone()
    return {"queued": row["queued"] or 0, "kept": row["total"] or 0,
            "oldest_queued_at": row["oldest_queued"], "last_seq": row["last_seq"] or 0}
