"""The embedded SQLite store: the one owner of transactions, idempotency keys and slots."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import InvalidSlot, NotFound, SoldOut, StoreUnavailable
from ..protocol.states import FINAL_STATES, OPEN_STATES, VendState
from . import outbox

T = TypeVar("T")

SCHEMA_PATH = Path(__file__).with_name("schema.sql")
CACHE_KIB = 512  # SQLite's page cache per connection


def open_database(path: Path, schema: Path, busy_timeout: float) -> sqlite3.Connection:
    """One connection shared across threads (callers hold their own lock), in autocommit mode
    so transactions are explicit, WAL with synchronous=FULL (a vend row must survive a power
    cut before any byte reaches a board), and the schema applied."""
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                         timeout=busy_timeout)
    db.row_factory = sqlite3.Row
    # SQLite's default cache (2 MiB) keeps every page the connection writes until it is
    # full, so RSS crept up with the ledger for weeks (about 90 KiB a minute in the soak)
    # for pages the OS caches anyway; a vend touches a few dozen pages.
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema.read_text(encoding="utf-8"))
    return db

# A slot with its planogram entry; the price in force is the slot's own, else the product's.
SLOT_SELECT = (
    "SELECT s.number, s.name, s.stock, s.updated_at, p.product_id, pr.name AS product_name,"
    " COALESCE(p.price, pr.default_price) AS price, p.capacity, p.par"
    " FROM slots s LEFT JOIN planogram p ON p.slot = s.number"
    " LEFT JOIN products pr ON pr.id = p.product_id"
)
# A vend with the product and price it was asked at.
TRANSACTION_SELECT = (
    "SELECT t.*, v.product_id, v.product_name, v.price"
    " FROM transactions t LEFT JOIN vend_prices v ON v.transaction_id = t.id"
)

# Short names for the states, kept for the modules and tests that import them from here.
PENDING = VendState.PENDING
SENT = VendState.SENT
SUCCESS = VendState.SUCCESS
FAILED = VendState.FAILED
UNKNOWN = VendState.UNKNOWN
STATES = tuple(VendState)
# The `communication` of a vend served by the simulator: nothing was dispensed, so it is
# never a sale and never takes stock.
SIMULATED = "simulation"


@dataclass(frozen=True)
class Transaction:
    """One vend, as persisted."""

    id: str
    slot: int
    state: VendState
    device_id: str | None
    communication: str | None
    reason: str | None
    message: str
    idempotency_key: str | None
    created_at: float
    sent_at: float | None
    finished_at: float | None
    checked_at: float | None
    check_note: str | None
    # The product and price in force when the vend was asked for (table vend_prices).
    product_id: int | None = None
    product_name: str | None = None
    price: int | None = None

    def __post_init__(self) -> None:
        # Rows come back as plain strings; the enum is what the rest of the code compares.
        object.__setattr__(self, "state", VendState(self.state))

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def simulated(self) -> bool:
        """Served by the simulator: nothing was dispensed, whatever the state says."""
        return self.communication == SIMULATED

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of a transaction."""
        data = asdict(self)
        data["transaction_id"] = data.pop("id")
        data["status"] = self.state
        data["simulated"] = self.simulated
        return data


@dataclass(frozen=True)
class Slot:
    """One slot of the machine."""

    number: int
    name: str
    stock: int | None
    updated_at: float
    # The planogram (table planogram): price is the one in force, the slot's own or else
    # its product's default, in minor units; None when the slot has neither.
    product_id: int | None = None
    product_name: str | None = None
    price: int | None = None
    capacity: int | None = None
    par: int | None = None

    @property
    def sold_out(self) -> bool:
        return self.stock == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sold_out": self.sold_out}


def counts_as_sale(txn: Transaction) -> bool:
    """Whether a successful vend is a sale and takes an item off the stock.

    A vend the simulated board served dispensed nothing: it is never a sale and takes no stock.
    """
    return not txn.simulated


class Store:
    """SQLite in WAL mode; every write is one committed, fully synced transaction."""

    def __init__(self, path: Path | str, outbox_events: bool = False, currency: str = "",
                 busy_timeout: float = 10.0, wall: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        # The ledger's times are for people: wall-clock seconds (injectable for tests).
        self._wall = wall
        # The ISO 4217 code prices are in, named in the events that carry a price.
        self.currency = currency
        # When set (MQTT is configured), every reported change also queues an outbox event.
        self.outbox_events = outbox_events
        self._outbox_listeners: list[Callable[[], None]] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Why the last write failed, until one commits again; read without the lock.
        self.unavailable: str | None = None
        self._db = open_database(self.path, SCHEMA_PATH, busy_timeout)
        self._db.execute("PRAGMA foreign_keys=ON")
        self._closed = False

    def close(self) -> None:
        """Close the database; safe to call twice."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def write(self) -> WriteTransaction:
        """`with store.write() as db:` runs its statements as one committed, synced transaction
        (BEGIN IMMEDIATE), or none of them if the block raises."""
        return WriteTransaction(self)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """The rows of one read-only statement."""
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise _unavailable(exc) from exc

    def read_unless_held(self, read: Callable[[], T], patience: float) -> T | None:
        """`read()` (this store's queries), or None if a write holds the database for longer
        than `patience` seconds.

        For answers that may show what was read a moment ago rather than wait: a write
        takes milliseconds, but can hold the database for the whole busy timeout while
        another program has the file locked."""
        if not self._lock.acquire(timeout=patience):
            return None
        try:
            return read()
        finally:
            self._lock.release()

    @property
    def revision(self) -> int:
        """Grows with every row written: what was read before is stale once it has moved."""
        return self._db.total_changes

    # Outbox (see store/outbox.py)

    def emit(self, db: sqlite3.Connection, event: str, body: dict[str, Any],
              at: float | None = None) -> None:
        """Queue an event in the caller's write transaction, when the outbox is on."""
        if not self.outbox_events:
            return
        outbox.append(db, event, body, at)
        for listener in self._outbox_listeners:
            listener()

    def on_outbox(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (quick, no store calls) whenever an event is queued."""
        self._outbox_listeners.append(listener)

    def record_event(self, event: str, body: dict[str, Any]) -> None:
        """Queue an event for a change that is not in the database (a board's state)."""
        if self.outbox_events:
            with self.write() as db:
                self.emit(db, event, body)

    def outbox_pending(self, after: int = 0, limit: int = 100) -> list[outbox.OutboxEvent]:
        """Undelivered events after seq `after`, oldest first."""
        with self._lock:
            return outbox.pending(self._db, after, limit)

    def outbox_delivered(self, seqs: list[int]) -> None:
        """The broker acknowledged these events."""
        if seqs:
            with self.write() as db:
                outbox.mark_delivered(db, seqs, time.time())

    def outbox_prune(self, delivered_before: float) -> int:
        """Forget delivered events older than `delivered_before` (epoch seconds)."""
        with self.write() as db:
            return outbox.prune(db, delivered_before)

    def outbox_counts(self) -> dict[str, Any]:
        with self._lock:
            return outbox.counts(self._db)

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            self.query("SELECT 1")
            return True
        except StoreUnavailable:
            return False

    def probe(self) -> None:
        """Commit one small write, or raise StoreUnavailable: can vends be recorded again?"""
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO store_probe (id, at) VALUES (1, ?)", (self._wall(),))

    # Slots

    def ensure_slots(self, count: int) -> None:
        """Create slots 1..count that do not exist yet."""
        now = self._wall()
        with self.write() as db:
            for number in range(1, count + 1):
                db.execute(
                    "INSERT OR IGNORE INTO slots (number, name, stock, updated_at) VALUES (?, ?, NULL, ?)",
                    (number, f"Slot {number}", now),
                )

    def slots(self, count: int) -> list[Slot]:
        """The configured slots 1..count, in order."""
        rows = self.query(f"{SLOT_SELECT} WHERE s.number <= ? ORDER BY s.number", (count,))
        return [Slot(**dict(row)) for row in rows]

    def slot(self, number: int) -> Slot:
        rows = self.query(f"{SLOT_SELECT} WHERE s.number = ?", (number,))
        if not rows:
            raise InvalidSlot(f"slot {number} does not exist")
        return Slot(**dict(rows[0]))

    _UNSET: Any = object()

    def update_slot(self, number: int, name: Any = _UNSET, stock: Any = _UNSET) -> Slot:
        """Change a slot's name and/or stock (None = not counted)."""
        with self.write() as db:
            if db.execute("SELECT 1 FROM slots WHERE number = ?", (number,)).fetchone() is None:
                raise NotFound(f"slot {number} does not exist")
            if name is not self._UNSET:
                db.execute("UPDATE slots SET name = ? WHERE number = ?", (name, number))
            if stock is not self._UNSET:
                db.execute("UPDATE slots SET stock = ? WHERE number = ?", (stock, number))
            db.execute("UPDATE slots SET updated_at = ? WHERE number = ?", (self._wall(), number))
            slot = self._slot(db, number)
            self._emit_stock(db, slot)
        return slot

    def _emit_stock(self, db: sqlite3.Connection, slot: Slot) -> None:
        self.emit(db, outbox.STOCK, {"slot": slot.number, "name": slot.name,
                                      "stock": slot.stock, "sold_out": slot.sold_out})

    def restock(self, number: int, quantity: int) -> tuple[Slot, Slot]:
        """Add `quantity` items to a slot in one write; returns (before, after).

        One UPDATE inside one transaction, so parallel restocks and vends never lose an
        item (a read here and a write later would drop every change made in between).
        """
        with self.write() as db:
            before = self._slot(db, number)
            db.execute(
                "UPDATE slots SET stock = COALESCE(stock, 0) + ?, updated_at = ? WHERE number = ?",
                (quantity, self._wall(), number),
            )
            after = self._slot(db, number)
            self._emit_stock(db, after)
            return before, after

    @staticmethod
    def _slot(db: sqlite3.Connection, number: int) -> Slot:
        row = db.execute(f"{SLOT_SELECT} WHERE s.number = ?", (number,)).fetchone()
        if row is None:
            raise NotFound(f"slot {number} does not exist")
        return Slot(**dict(row))

    # Transactions

    def create_transaction(
        self, slot: int, device_id: str | None, communication: str | None,
        idempotency_key: str | None = None,
    ) -> tuple[Transaction, bool]:
        """Persist a new pending vend, or return the one already made for this key.

        Returns (transaction, created). The stock check counts vends still open for the
        slot, so two customers cannot both be promised the last item.
        """
        now = self._wall()
        with self.write() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT transaction_id FROM idempotency_keys WHERE key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    return self._get(db, row["transaction_id"]), False
            slot_row = db.execute("SELECT stock FROM slots WHERE number = ?", (slot,)).fetchone()
            if slot_row is None:
                raise InvalidSlot(f"slot {slot} does not exist")
            if slot_row["stock"] is not None:
                open_vends = db.execute(
                    "SELECT COUNT(*) FROM transactions WHERE slot = ? AND state IN (?, ?)",
                    (slot, *OPEN_STATES),
                ).fetchone()[0]
                if slot_row["stock"] - open_vends <= 0:
                    raise SoldOut(f"slot {slot} is sold out", slot=slot)
            txn_id = self._new_id(db)
            db.execute(
                "INSERT INTO transactions (id, slot, state, device_id, communication, message,"
                " idempotency_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (txn_id, slot, PENDING, device_id, communication, "queued", idempotency_key, now),
            )
            # The price is fixed when the customer asks: a slot without one sells at 0.
            db.execute(
                "INSERT INTO vend_prices (transaction_id, product_id, product_name, price)"
                " SELECT ?, product_id, product_name, COALESCE(price, 0)"
                f" FROM ({SLOT_SELECT} WHERE s.number = ?)",
                (txn_id, slot),
            )
            if idempotency_key is not None:
                db.execute(
                    "INSERT INTO idempotency_keys (key, slot, transaction_id, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (idempotency_key, slot, txn_id, now),
                )
            return self._get(db, txn_id), True

    @staticmethod
    def _new_id(db: sqlite3.Connection) -> str:
        while True:
            txn_id = secrets.token_hex(6)
            if db.execute("SELECT 1 FROM transactions WHERE id = ?", (txn_id,)).fetchone() is None:
                return txn_id

    def mark_sent(self, txn_id: str, device_id: str, communication: str) -> Transaction:
        """Record that the command is about to reach a board; committed before it does."""
        with self.write() as db:
            cur = db.execute(
                "UPDATE transactions SET state = ?, device_id = ?, communication = ?, sent_at = ?,"
                " message = ? WHERE id = ? AND state = ?",
                (SENT, device_id, communication, self._wall(), "sent to device", txn_id, PENDING),
            )
            if cur.rowcount != 1:
                raise NotFound(f"transaction {txn_id} is not pending")
            return self._get(db, txn_id)

    def reassign(self, txn_id: str, device_id: str, communication: str) -> Transaction:
        """Move a still-pending vend to another device (fail-over before anything was sent)."""
        with self.write() as db:
            db.execute(
                "UPDATE transactions SET device_id = ?, communication = ? WHERE id = ? AND state = ?",
                (device_id, communication, txn_id, PENDING),
            )
            return self._get(db, txn_id)

    def finish(self, txn_id: str, state: str, message: str, reason: str | None = None) -> Transaction:
        """Close an open vend; a success takes one item off the slot's stock."""
        if state not in FINAL_STATES:
            raise ValueError(f"{state!r} is not a final state")
        with self.write() as db:
            txn = self._get(db, txn_id)
            if txn.is_final:
                return txn
            return self._close(db, txn, state, message, reason)

    def settle_unknown(self, txn_id: str, state: str, message: str,
                       reason: str | None = None) -> tuple[Transaction, bool]:
        """Replace an `unknown` outcome with what the board later reported; (row, changed)."""
        with self.write() as db:
            txn = self._get(db, txn_id)
            if txn.state != UNKNOWN or state not in (SUCCESS, FAILED):
                return txn, False
            return self._close(db, txn, state, message, reason), True

    def _close(self, db: sqlite3.Connection, txn: Transaction, state: str, message: str,
               reason: str | None) -> Transaction:
        """Write a final state; a success takes one item off the slot's stock."""
        now = self._wall()
        db.execute(
            "UPDATE transactions SET state = ?, message = ?, reason = ?, finished_at = ? WHERE id = ?",
            (state, message, reason, now, txn.id),
        )
        if state == SUCCESS and counts_as_sale(txn):
            db.execute(
                "UPDATE slots SET stock = stock - 1, updated_at = ? WHERE number = ? AND stock > 0",
                (now, txn.slot),
            )
            # The sale goes into the ledger in this same database transaction as the success,
            # at the price the vend was asked at: never one without the other.
            db.execute(
                "INSERT OR IGNORE INTO sales (transaction_id, slot, product_id, product_name,"
                " price, sold_at) SELECT t.id, t.slot, v.product_id, v.product_name,"
                " COALESCE(v.price, 0), ? FROM transactions t"
                " LEFT JOIN vend_prices v ON v.transaction_id = t.id WHERE t.id = ?",
                (now, txn.id),
            )
        closed = self._get(db, txn.id)
        self._emit_vend(db, closed, txn.state)
        return closed

    def _emit_vend(self, db: sqlite3.Connection, txn: Transaction, previous: str) -> None:
        """The outbox event for a vend that reached a final state (or was settled later)."""
        if not self.outbox_events:
            return
        row = db.execute("SELECT stock FROM slots WHERE number = ?", (txn.slot,)).fetchone()
        self.emit(db, outbox.VEND, {
            "transaction_id": txn.id, "slot": txn.slot, "status": txn.state,
            "reason": txn.reason, "message": txn.message, "device_id": txn.device_id,
            "communication": txn.communication, "created_at": txn.created_at,
            "finished_at": txn.finished_at,
            # The product and price the vend was asked at (minor units of `currency`).
            "product": txn.product_name, "product_id": txn.product_id,
            "product_name": txn.product_name, "price": txn.price, "currency": self.currency,
            # Whether this vend is a sale (what a fleet counts): in the ledger, as a sale.
            "sale": txn.state == SUCCESS and counts_as_sale(txn),
            "simulated": txn.simulated,
            "stock": row["stock"] if row is not None else None,
            "previous_status": previous, "settled": previous == UNKNOWN,
            **({"settled_from": previous} if previous == UNKNOWN else {}),
        }, txn.finished_at)

    def recover_interrupted(self) -> list[Transaction]:
        """Close the vends a crash left open; only the vend service calls this.

        A `sent` row may have reached a board: `unknown` (go and look). A `pending` row never
        left the server (`sent` is committed before any byte leaves): `failed`, not dispensed.
        """
        now = self._wall()
        with self.write() as db:
            rows = db.execute(
                "SELECT id FROM transactions WHERE state IN (?, ?)", OPEN_STATES
            ).fetchall()
            db.execute(
                "UPDATE transactions SET state = ?, finished_at = ?, reason = ?, message = ?"
                " WHERE state = ?",
                (UNKNOWN, now, "server_restart",
                 "the server stopped before the board confirmed; check the machine", SENT),
            )
            db.execute(
                "UPDATE transactions SET state = ?, finished_at = ?, reason = ?, message = ?"
                " WHERE state = ?",
                (FAILED, now, "not_sent",
                 "the server stopped before this vend was sent to a board; not dispensed",
                 PENDING),
            )
            recovered = [self._get(db, row["id"]) for row in rows]
            for txn in recovered:
                self._emit_vend(db, txn, SENT if txn.reason == "server_restart" else PENDING)
            return recovered

    def mark_checked(self, txn_id: str, note: str) -> Transaction:
        """An operator looked at the machine for this vend."""
        with self.write() as db:
            self._get(db, txn_id)
            db.execute(
                "UPDATE transactions SET checked_at = ?, check_note = ? WHERE id = ?",
                (self._wall(), note, txn_id),
            )
            return self._get(db, txn_id)

    def find_by_idempotency_key(self, key: str) -> Transaction | None:
        """The transaction an idempotency key was first used for, if remembered."""
        rows = self.query("SELECT transaction_id FROM idempotency_keys WHERE key = ?", (key,))
        return self.get(rows[0]["transaction_id"]) if rows else None

    def get(self, txn_id: str) -> Transaction:
        with self._lock:
            try:
                return self._get(self._db, txn_id)
            except sqlite3.OperationalError as exc:
                raise _unavailable(exc) from exc

    @staticmethod
    def _get(db: sqlite3.Connection, txn_id: str) -> Transaction:
        row = db.execute(f"{TRANSACTION_SELECT} WHERE t.id = ?", (txn_id,)).fetchone()
        if row is None:
            raise NotFound(f"no transaction {txn_id}")
        return Transaction(**dict(row))

    def transactions(
        self, state: str | None = None, slot: int | None = None, device_id: str | None = None,
        limit: int = 50, offset: int = 0,
    ) -> tuple[list[Transaction], int]:
        """Newest first, filtered; returns (page, total matching)."""
        where, params = [], []
        for column, value in (("state", state), ("slot", slot), ("device_id", device_id)):
            if value is not None:
                where.append(f"t.{column} = ?")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total = self.query(f"SELECT COUNT(*) FROM transactions t{clause}", tuple(params))[0][0]
        rows = self.query(
            f"{TRANSACTION_SELECT}{clause} ORDER BY t.created_at DESC, t.rowid DESC"
            " LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [Transaction(**dict(row)) for row in rows], total

    def iter_transactions(self, **filters: Any) -> Iterator[Transaction]:
        """Every matching transaction, newest first, a page at a time (for CSV export)."""
        offset = 0
        while True:
            page, _ = self.transactions(limit=500, offset=offset, **filters)
            yield from page
            if len(page) < 500:
                return
            offset += len(page)

    def counts(self) -> dict[str, int]:
        """Number of transactions in each state."""
        counts = dict.fromkeys(STATES, 0)
        for row in self.query("SELECT state, COUNT(*) AS n FROM transactions GROUP BY state"):
            counts[row["state"]] = row["n"]
        return counts

    def newest_transaction_time(self) -> float | None:
        """When the newest vend was created (wall clock), or None with no vends."""
        return self.query("SELECT MAX(created_at) FROM transactions")[0][0]

    def prune_idempotency_keys(self, older_than: float) -> int:
        """Forget keys created before `older_than` (epoch seconds)."""
        with self.write() as db:
            return db.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?", (older_than,)
            ).rowcount


def _unavailable(exc: sqlite3.OperationalError) -> StoreUnavailable:
    return StoreUnavailable(
        f"the database cannot record anything ({exc}): free disk space, or close the program"
        " holding the database (e.g. a sqlite3 shell); nothing was dispensed for this request"
    )


class WriteTransaction:
    """`with store.write() as db:` — one BEGIN IMMEDIATE ... COMMIT under the store lock.

    A write the database refuses (locked past the busy timeout, disk full, I/O error) is
    rolled back and raised as StoreUnavailable, and `store.unavailable` says why until a
    write commits again.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store._db
        self._lock = store._lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self._lock.release()
            self._store.unavailable = str(exc)
            raise _unavailable(exc) from exc
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._db.execute("COMMIT")
                self._store.unavailable = None
            elif self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            self._store.unavailable = str(error)
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise _unavailable(error) from error
        finally:
            self._lock.release()
        if isinstance(exc, sqlite3.OperationalError):
            self._store.unavailable = str(exc)
            raise _unavailable(exc) from exc
