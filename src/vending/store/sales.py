"""Products, the planogram, the sales ledger and collections, on the store's database.

These share the Store's connection and lock, so every write is one committed transaction
like the vend rows. A sale is written by the Store itself, in the transaction that records
the vend's success (Store._close); this module reads the ledger and never writes a sale.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import BadRequest, Conflict, NotFound
from . import FAILED, SLOT_SELECT, UNKNOWN, Slot, Store, outbox

GROUPS = ("slot", "product", "day", "hour")

# SQL for each report grouping: (key expression, label expression). Days and hours are the
# server's local time, as an operator reads a clock.
_GROUP_SQL = {
    "slot": ("CAST(slot AS TEXT)", "'Slot ' || slot"),
    "product": ("COALESCE(CAST(product_id AS TEXT), '')",
                "COALESCE(MAX(product_name), 'No product')"),
    "day": ("strftime('%Y-%m-%d', sold_at, 'unixepoch', 'localtime')",
            "strftime('%Y-%m-%d', MIN(sold_at), 'unixepoch', 'localtime')"),
    "hour": ("strftime('%H', sold_at, 'unixepoch', 'localtime')",
             "strftime('%H', MIN(sold_at), 'unixepoch', 'localtime') || ':00'"),
}


@dataclass(frozen=True)
class Product:
    """Something the machine sells; default_price in minor units."""

    id: int
    name: str
    sku: str | None
    default_price: int
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Collection:
    """A closed period: what was sold since the collection before it."""

    id: int
    time: float
    who: str
    note: str
    sales_count: int
    sales_value: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Totals:
    """Paid vends (count, value) and vends counted apart."""

    count: int
    value: int
    failed: int
    unknown: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


_UNSET: Any = object()


class SalesStore:
    """Reads and writes the business tables through the Store's connection."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # Products

    def products(self) -> list[Product]:
        rows = self.store.query("SELECT * FROM products ORDER BY name COLLATE NOCASE, id")
        return [Product(**dict(row)) for row in rows]

    def product(self, product_id: int) -> Product:
        rows = self.store.query("SELECT * FROM products WHERE id = ?", (product_id,))
        if not rows:
            raise NotFound(f"no product {product_id}; GET /products lists them")
        return Product(**dict(rows[0]))

    def add_product(self, name: str, default_price: int, sku: str | None = None) -> Product:
        now = time.time()
        with self.store.write() as db:
            cur = db.execute(
                "INSERT INTO products (name, sku, default_price, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)", (name, sku, default_price, now, now))
            product_id = cur.lastrowid
        return self.product(int(product_id))

    def update_product(self, product_id: int, name: Any = _UNSET, sku: Any = _UNSET,
                       default_price: Any = _UNSET) -> tuple[Product, Product]:
        """Change a product; returns (before, after)."""
        with self.store.write() as db:
            row = db.execute("SELECT * FROM products WHERE id = ?", (product_id,)).fetchone()
            if row is None:
                raise NotFound(f"no product {product_id}; GET /products lists them")
            before = Product(**dict(row))
            for column, value in (("name", name), ("sku", sku), ("default_price", default_price)):
                if value is not _UNSET:
                    db.execute(f"UPDATE products SET {column} = ? WHERE id = ?", (value, product_id))
            db.execute("UPDATE products SET updated_at = ? WHERE id = ?", (time.time(), product_id))
            after = Product(**dict(db.execute(
                "SELECT * FROM products WHERE id = ?", (product_id,)).fetchone()))
        return before, after

    def delete_product(self, product_id: int) -> Product:
        """Remove a product no slot holds; its past sales keep its name."""
        with self.store.write() as db:
            row = db.execute("SELECT * FROM products WHERE id = ?", (product_id,)).fetchone()
            if row is None:
                raise NotFound(f"no product {product_id}; GET /products lists them")
            slots = [r[0] for r in db.execute(
                "SELECT slot FROM planogram WHERE product_id = ? ORDER BY slot", (product_id,))]
            if slots:
                raise Conflict(
                    f"product {product_id} is in slot(s) {', '.join(map(str, slots))}; give those"
                    " slots another product (PATCH /slots/<n> with product_id) first",
                    slots=slots)
            db.execute("DELETE FROM products WHERE id = ?", (product_id,))
            return Product(**dict(row))

    # Planogram

    def set_planogram(self, number: int, changes: dict[str, Any]) -> None:
        """Set some of a slot's product_id, price, capacity and par (None clears one)."""
        allowed = {"product_id", "price", "capacity", "par"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"planogram changes must be among {sorted(allowed)}")
        with self.store.write() as db:
            if db.execute("SELECT 1 FROM slots WHERE number = ?", (number,)).fetchone() is None:
                raise NotFound(f"slot {number} does not exist")
            product_id = changes.get("product_id")
            if product_id is not None and db.execute(
                    "SELECT 1 FROM products WHERE id = ?", (product_id,)).fetchone() is None:
                raise NotFound(f"no product {product_id}; create it with POST /products first")
            db.execute("INSERT OR IGNORE INTO planogram (slot) VALUES (?)", (number,))
            for column, value in changes.items():
                db.execute(f"UPDATE planogram SET {column} = ? WHERE slot = ?", (value, number))
            row = db.execute("SELECT capacity, par FROM planogram WHERE slot = ?",
                             (number,)).fetchone()
            if row["capacity"] is not None and row["par"] is not None \
                    and row["par"] > row["capacity"]:
                # Raising rolls the whole change back.
                raise Conflict(f"par ({row['par']}) cannot be above capacity"
                                 f" ({row['capacity']}) for slot {number}")
            db.execute("UPDATE slots SET updated_at = ? WHERE number = ?", (time.time(), number))

    def refill(self, numbers: Iterable[int]) -> list[tuple[Slot, Slot]]:
        """Set each slot's stock to its capacity in one transaction; (before, after) each.

        All or nothing: a slot without a capacity refuses the whole refill. The stock is set
        by one UPDATE per slot inside the write lock, so a vend finishing meanwhile is either
        before (and refilled over) or after (and counted) - never lost in between.
        """
        wanted = sorted(set(numbers))
        with self.store.write() as db:
            before = {row["number"]: Slot(**dict(row)) for row in db.execute(
                f"{SLOT_SELECT} WHERE s.number IN ({','.join('?' * len(wanted))})", wanted)}
            missing = [n for n in wanted if n not in before]
            if missing:
                raise NotFound(f"slot(s) {', '.join(map(str, missing))} do not exist")
            no_capacity = [n for n in wanted if before[n].capacity is None]
            if no_capacity:
                raise Conflict(
                    f"slot(s) {', '.join(map(str, no_capacity))} have no capacity; set one with"
                    " PATCH /slots/<n> {\"capacity\": ...} first. Nothing was refilled.")
            now = time.time()
            for number in wanted:
                db.execute(
                    "UPDATE slots SET stock = (SELECT capacity FROM planogram WHERE slot = ?),"
                    " updated_at = ? WHERE number = ?", (number, now, number))
            after = {row["number"]: Slot(**dict(row)) for row in db.execute(
                f"{SLOT_SELECT} WHERE s.number IN ({','.join('?' * len(wanted))})", wanted)}
            for number in wanted:
                slot = after[number]
                self.store.emit(db, outbox.STOCK, {"slot": slot.number, "name": slot.name,
                                                   "stock": slot.stock, "sold_out": slot.sold_out})
        return [(before[n], after[n]) for n in wanted]

    # Collections

    def collect(self, who: str, note: str = "") -> Collection:
        """Close the current period: every uncollected sale now belongs to this collection."""
        now = time.time()
        with self.store.write() as db:
            row = db.execute("SELECT COUNT(*), COALESCE(SUM(price), 0) FROM sales"
                             " WHERE collection_id IS NULL").fetchone()
            cur = db.execute(
                "INSERT INTO collections (time, who, note, sales_count, sales_value)"
                " VALUES (?, ?, ?, ?, ?)", (now, who, note, row[0], row[1]))
            collection_id = cur.lastrowid
            db.execute("UPDATE sales SET collection_id = ? WHERE collection_id IS NULL",
                       (collection_id,))
            collection = Collection(**dict(db.execute(
                "SELECT * FROM collections WHERE id = ?", (collection_id,)).fetchone()))
            self.store.emit(db, outbox.COLLECTION, collection.to_dict(), now)
            return collection

    def collections(self, limit: int = 100) -> list[Collection]:
        rows = self.store.query("SELECT * FROM collections ORDER BY id DESC LIMIT ?", (limit,))
        return [Collection(**dict(row)) for row in rows]

    def last_collection(self) -> Collection | None:
        found = self.collections(1)
        return found[0] if found else None

    # The ledger, read

    def totals(self, since_collection: bool) -> Totals:
        """Paid vends and vends counted apart, since install or since the last collection."""
        # One transaction, so the figures are of one moment.
        with self.store.write() as db:
            last = db.execute("SELECT MAX(time) FROM collections").fetchone()[0]
            sale_filter = " WHERE collection_id IS NULL" if since_collection else ""
            count, value = db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(price), 0) FROM sales{sale_filter}").fetchone()
            failed, unknown = self._apart(db, after=last if since_collection else None)
        return Totals(count, value, failed, unknown)

    @staticmethod
    def _apart(db: Any, after: float | None = None, start: float | None = None,
               end: float | None = None) -> tuple[int, int]:
        """Failed and unknown vends finished after `after`, in [start, end): never sales."""
        where, params = ["state IN (?, ?)"], [FAILED, UNKNOWN]
        for clause, value in (("finished_at > ?", after), ("finished_at >= ?", start),
                              ("finished_at < ?", end)):
            if value is not None:
                where.append(clause)
                params.append(value)
        counts = dict.fromkeys((FAILED, UNKNOWN), 0)
        for row in db.execute(f"SELECT state, COUNT(*) FROM transactions WHERE {' AND '.join(where)}"
                              " GROUP BY state", params):
            counts[row[0]] = row[1]
        return counts[FAILED], counts[UNKNOWN]

    def sales(self, start: float | None = None, end: float | None = None) -> list[dict[str, Any]]:
        """Ledger rows with start <= sold_at < end, oldest first."""
        where, params = self._period(start, end)
        rows = self.store.query(f"SELECT * FROM sales{where} ORDER BY id", tuple(params))
        return [dict(row) for row in rows]

    @staticmethod
    def _period(start: float | None, end: float | None) -> tuple[str, list[float]]:
        where, params = [], []
        if start is not None:
            where.append("sold_at >= ?")
            params.append(start)
        if end is not None:
            where.append("sold_at < ?")
            params.append(end)
        return (f" WHERE {' AND '.join(where)}" if where else ""), params

    def report(self, group: str, start: float | None = None,
               end: float | None = None) -> tuple[list[dict[str, Any]], Totals]:
        """Sales grouped by slot, product, day or hour over [start, end); with the totals."""
        if group not in _GROUP_SQL:
            raise BadRequest(f"group must be one of {', '.join(GROUPS)}, got {group!r}")
        key, label = _GROUP_SQL[group]
        where, params = self._period(start, end)
        with self.store.write() as db:
            rows = [dict(row) for row in db.execute(
                f"SELECT {key} AS key, {label} AS label, COUNT(*) AS count,"
                f" SUM(price) AS value FROM sales{where} GROUP BY {key} ORDER BY {key}",
                params)]
            count, value = db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(price), 0) FROM sales{where}", params).fetchone()
            failed, unknown = self._apart(db, start=start, end=end)
        if group == "slot":
            for row in rows:
                row["key"] = int(row["key"])
            rows.sort(key=lambda row: row["key"])
        elif group == "product":
            for row in rows:
                row["key"] = int(row["key"]) if row["key"] else None
        return rows, Totals(count, value, failed, unknown)

    def per_slot(self, since_collection: bool = False, start: float | None = None,
                 ) -> dict[int, tuple[int, int]]:
        """Slot -> (count, value) of sales since install, the last collection or `start`."""
        where, params = self._period(start, None)
        if since_collection:
            where += (" AND" if where else " WHERE") + " collection_id IS NULL"
        rows = self.store.query(
            f"SELECT slot, COUNT(*), COALESCE(SUM(price), 0) FROM sales{where} GROUP BY slot",
            tuple(params))
        return {row[0]: (row[1], row[2]) for row in rows}

    def events(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest failed and unknown vends, newest first (for the DEX event records)."""
        rows = self.store.query(
            "SELECT id, slot, state, reason, finished_at FROM transactions WHERE state IN (?, ?)"
            " AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
            (FAILED, UNKNOWN, limit))
        return [dict(row) for row in rows]
