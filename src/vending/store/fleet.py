"""The fleet view's own SQLite copy: machines, their events once each, and what follows.

Built only from MQTT messages (events, availability, status), so it keeps the history of
every machine across its own restarts. Events are keyed by (machine_id, seq): a message the
broker delivers twice is stored once, and a hole in a machine's seq numbers is a gap to show.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..money import ISO_4217, Currency
from . import open_database

SCHEMA_PATH = Path(__file__).with_name("fleet.sql")


@dataclass(frozen=True)
class Received:
    """One message for the store: an event envelope, an availability or a status."""

    kind: str  # "event", "availability", "status" or "slot" (retained state)
    machine_id: str
    data: Any
    at: float


def start_of_today(now: float | None = None) -> float:
    """Local midnight before `now`, as epoch seconds."""
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class FleetStore:
    """SQLite in WAL mode, one connection behind a lock; writes come in batches."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = open_database(self.path, SCHEMA_PATH, busy_timeout=10.0)
        self._closed = False

    def close(self) -> None:
        """Close the database; safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # Writing (the fleet's writer thread)

    def record(self, batch: list[Received]) -> list[tuple[str, int]]:
        """Store a batch in one transaction; returns the (machine_id, seq) that were new."""
        new: list[tuple[str, int]] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for item in batch:
                    db.execute("INSERT OR IGNORE INTO machines (machine_id, first_seen)"
                               " VALUES (?, ?)", (item.machine_id, item.at))
                    if item.kind == "availability":
                        db.execute("UPDATE machines SET availability = ?, availability_at = ?"
                                   " WHERE machine_id = ?", (item.data, item.at, item.machine_id))
                    elif item.kind == "status":
                        db.execute("UPDATE machines SET status = ?, status_at = ?"
                                   " WHERE machine_id = ?",
                                   (json.dumps(item.data), item.at, item.machine_id))
                    elif item.kind == "slot":
                        # A machine's retained slot state fills in slots no event has told
                        # about yet (stock set before the fleet view listened); events,
                        # ordered by seq, decide after that.
                        db.execute("INSERT OR IGNORE INTO slots (machine_id, slot, name, stock,"
                                   " seq) VALUES (?, ?, ?, ?, 0)",
                                   (item.machine_id, item.data["number"], item.data.get("name"),
                                    item.data.get("stock")))
                    elif self._event(db, item.machine_id, item.data, item.at):
                        new.append((item.machine_id, int(item.data["seq"])))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return new

    @staticmethod
    def _event(db: sqlite3.Connection, machine_id: str, body: dict[str, Any], at: float) -> bool:
        seq, event = int(body["seq"]), str(body["event"])
        cur = db.execute(
            "INSERT OR IGNORE INTO events (machine_id, seq, event, time, body, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (machine_id, seq, event, float(body.get("time") or at), json.dumps(body), at),
        )
        if cur.rowcount == 0:
            return False
        slot = body.get("slot")
        if event in ("vend", "stock") and isinstance(slot, int) and "stock" in body:
            db.execute(
                "INSERT INTO slots (machine_id, slot, name, stock, seq) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (machine_id, slot) DO UPDATE SET stock = excluded.stock,"
                " name = COALESCE(excluded.name, slots.name), seq = excluded.seq"
                " WHERE excluded.seq > slots.seq",
                (machine_id, slot, body.get("name"), body.get("stock"), seq),
            )
        return True

    # Reading

    def highest_seqs(self) -> dict[str, int]:
        """Each machine's highest event number received."""
        rows = self._query("SELECT machine_id, MAX(seq) AS seq FROM events GROUP BY machine_id")
        return {row["machine_id"]: row["seq"] for row in rows}

    def gaps(self, machine_id: str) -> list[tuple[int, int]]:
        """Missing seq ranges (first, last) up to the newest event received.

        A machine numbers its events from 1, so events before the first one received are
        missing too (sent before the fleet view subscribed, or lost with a broker's queue).
        """
        rows = self._query(
            "SELECT seq + 1 AS first, next - 1 AS last FROM (SELECT 0 AS seq, MIN(seq) AS next"
            " FROM events WHERE machine_id = ? UNION ALL SELECT seq, LEAD(seq) OVER"
            " (ORDER BY seq) FROM events WHERE machine_id = ?) WHERE next > seq + 1"
            " ORDER BY first", (machine_id, machine_id),
        )
        return [(row["first"], row["last"]) for row in rows]

    def events(self, machine_id: str, after: int = 0, limit: int = 100,
               event: str | None = None) -> list[dict[str, Any]]:
        """A machine's events after seq `after`, oldest first."""
        clause, params = "", [machine_id, after]
        if event is not None:
            clause = " AND event = ?"
            params.append(event)
        rows = self._query(
            f"SELECT body FROM events WHERE machine_id = ? AND seq > ?{clause} ORDER BY seq"
            " LIMIT ?", (*params, limit))
        return [json.loads(row["body"]) for row in rows]

    def machine_ids(self) -> list[str]:
        return [row["machine_id"] for row in
                self._query("SELECT machine_id FROM machines ORDER BY machine_id")]

    def machines(self, now: float | None = None) -> list[dict[str, Any]]:
        """A summary of every machine heard of."""
        return [self.machine(machine_id, now) for machine_id in self.machine_ids()]

    def machine(self, machine_id: str, now: float | None = None) -> dict[str, Any]:
        """What the fleet page shows for one machine."""
        rows = self._query("SELECT * FROM machines WHERE machine_id = ?", (machine_id,))
        if not rows:
            raise KeyError(machine_id)
        row = rows[0]
        status = json.loads(row["status"] or "{}")
        slots = [dict(r) for r in self._query(
            "SELECT slot, name, stock FROM slots WHERE machine_id = ? ORDER BY slot",
            (machine_id,))]
        counts = self._query(
            "SELECT COUNT(*) AS events, MIN(seq) AS first, MAX(seq) AS last FROM events"
            " WHERE machine_id = ?", (machine_id,))[0]
        last_vend = self._query(
            "SELECT body FROM events WHERE machine_id = ? AND event = 'vend'"
            " ORDER BY seq DESC LIMIT 1", (machine_id,))
        collected = self._query(
            "SELECT MAX(time) FROM events WHERE machine_id = ? AND event = 'collection'",
            (machine_id,))[0][0]
        gaps = self.gaps(machine_id)
        return {
            "machine_id": machine_id,
            "online": row["availability"] == "online",
            "availability": row["availability"] or "unknown",
            "availability_at": row["availability_at"],
            "url": status.get("url"),
            "version": status.get("version"),
            "active_device": status.get("active_device"),
            "transport": status.get("mode"),
            "devices_online": status.get("devices_online"),
            "devices": self._devices(machine_id),
            "slots": slots,
            "stock": sum(s["stock"] for s in slots if s["stock"] is not None),
            "empty_slots": [s["slot"] for s in slots if s["stock"] == 0],
            "sales_today": self._sales(machine_id, start_of_today(now)),
            "sales_since_collection": self._sales(machine_id, collected or 0.0),
            "last_collection_at": collected,
            "open_alerts": self._open_alerts(machine_id),
            "last_vend": json.loads(last_vend[0]["body"]) if last_vend else None,
            "events": counts["events"],
            "first_seq": counts["first"],
            "last_seq": counts["last"],
            "missing": sum(last - first + 1 for first, last in gaps),
            "gaps": [{"first": first, "last": last} for first, last in gaps],
        }

    def _sales(self, machine_id: str, since: float) -> dict[str, Any]:
        # A vend counts once, by transaction, whether it succeeded at once or was settled
        # later; `sale` says whether the machine counts it (older events: a success).
        row = self._query(
            "SELECT COUNT(DISTINCT json_extract(body, '$.transaction_id')) AS vends,"
            " SUM(json_extract(body, '$.price')) AS amount,"
            " SUM(json_extract(body, '$.price') IS NULL) AS unpriced,"
            " MAX(json_extract(body, '$.currency')) AS currency FROM events"
            " WHERE machine_id = ? AND event = 'vend' AND time >= ?"
            " AND COALESCE(json_extract(body, '$.sale'), json_extract(body, '$.status') ="
            " 'success')", (machine_id, since))[0]
        # Prices are whole minor units of the machine's currency (cents for EUR).
        amount, code = row["amount"], row["currency"]
        text = None
        if amount is not None and code:
            text = Currency(code, ISO_4217.get(code, (0, 2))[1]).format(int(amount))
        return {"vends": row["vends"], "amount": amount, "currency": code, "amount_text": text,
                "unpriced": row["unpriced"] or 0}

    def _open_alerts(self, machine_id: str) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT body FROM events AS raised WHERE machine_id = ? AND event = 'alert'"
            " AND NOT EXISTS (SELECT 1 FROM events AS ack WHERE ack.machine_id ="
            " raised.machine_id AND ack.event = 'alert_acknowledged' AND"
            " json_extract(ack.body, '$.id') = json_extract(raised.body, '$.id'))"
            " ORDER BY seq", (machine_id,))
        return [json.loads(row["body"]) for row in rows]

    def _devices(self, machine_id: str) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT body FROM events WHERE machine_id = ? AND event = 'device' AND seq IN"
            " (SELECT MAX(seq) FROM events WHERE machine_id = ? AND event = 'device'"
            " GROUP BY json_extract(body, '$.device_id')) ORDER BY seq",
            (machine_id, machine_id))
        devices = [json.loads(row["body"]) for row in rows]
        return [{k: d.get(k) for k in ("device_id", "transport", "state", "detail")}
                for d in devices if d.get("state") != "removed"]
