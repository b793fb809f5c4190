"""How big the database gets from audit and alert rows: a year of normal use, an hour of
attack, and the ceiling the retention limits allow.

Run: python bench/bench_retention.py [--rate 660] [--minutes 60]

Time is simulated (rows carry the time they would have had), so the year and the hour
take seconds; sizes are the SQLite file's pages in use after the retention prune. The
"before" figure is what the same attack wrote before refusals were throttled: one synced
audit row per refused request, measured on a sample and scaled.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from vending.audit import AuditLog
from vending.store import Store
from vending.store.operations import OperationsStore, Retention

DAY = 86400.0
YEAR_START = 1_767_225_600.0  # 2026-01-01 UTC


def open_store(directory: Path, name: str, retention: Retention) -> tuple[Store, OperationsStore]:
    store = Store(directory / name)
    # Size, not durability, is measured here: skip the per-row fsync so a year takes seconds.
    store._db.execute("PRAGMA synchronous=OFF")
    return store, OperationsStore(store, retention)


def size_of(store: Store) -> int:
    """Bytes of pages in use (the file never shrinks below its high-water mark either)."""
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    free = store._db.execute("PRAGMA freelist_count").fetchone()[0]
    page = store._db.execute("PRAGMA page_size").fetchone()[0]
    return (pages - free) * page


def file_size(store: Store) -> int:
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(store.path)


def rows(store: Store, table: str) -> int:
    return store._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def normal_year(directory: Path, retention: Retention, per_day: int, alerts_per_day: int) -> None:
    store, ops = open_store(directory, "year.db", retention)
    log = AuditLog(ops)
    for day in range(365):
        for i in range(per_day):
            now = YEAR_START + day * DAY + i * (DAY / per_day)
            log.record("restock" if i % 3 else "approve_device", "operator", "192.168.1.20",
                       "ok", f"number={i % 10 + 1} quantity=12 note=weekly restock by the"
                       " route driver", now=now)
        for i in range(alerts_per_day):
            ops.add_alert("low_stock", "warning", f"slot {i % 10 + 1}",
                          f"slot {i % 10 + 1} (Cola) has 2 left (low-stock level 2); restock soon",
                          {"slot": i % 10 + 1, "stock": 2, "low_stock_level": 2},
                          now=YEAR_START + day * DAY + i * 600)
    ops.prune(now=YEAR_START + 365 * DAY)
    print(f"a year of normal use ({per_day} audit rows and {alerts_per_day} alerts a day):"
          f" {rows(store, 'audit')} audit rows, {rows(store, 'alerts')} alerts,"
          f" {size_of(store) / 1e6:.2f} MB in use, file {file_size(store) / 1e6:.2f} MB")
    store.close()


def attack_hour(directory: Path, retention: Retention, rate: int, minutes: int) -> float:
    clock = [YEAR_START]
    store, ops = open_store(directory, "attack.db", retention)
    log = AuditLog(ops, clock=lambda: clock[0])
    started = time.perf_counter()
    total = rate * minutes * 60
    for n in range(total):
        clock[0] = YEAR_START + n / rate
        # A thousand addresses in turn, as a /22 of a guest WiFi could.
        source = f"10.0.{(n // 250) % 4}.{n % 250}"
        log.refused("vend", "anonymous", source, "401 POST /vend/1")
    clock[0] += 60
    log.flush()
    elapsed = time.perf_counter() - started
    audit_rows = rows(store, "audit")
    in_use = size_of(store)
    print(f"an hour of attack ({rate} refused requests/s from 1000 addresses, {total} requests):"
          f" {audit_rows} audit rows, {in_use / 1e6:.2f} MB in use"
          f" ({total / elapsed:,.0f} refusals/s through the throttle)")
    store.close()
    return in_use


def unthrottled(directory: Path, rate: int, minutes: int) -> None:
    store, ops = open_store(directory, "before.db", Retention(audit_rows=10**9, every=10**9))
    sample = 20_000
    for n in range(sample):
        ops.add_audit("vend", "anonymous", f"10.0.{(n // 250) % 4}.{n % 250}", "refused",
                      "401 POST /vend/1", now=YEAR_START + n / rate)
    per_row = size_of(store) / sample
    total = rate * minutes * 60
    print(f"before (one row per refused request): {per_row:.0f} bytes a row, so"
          f" {total:,} rows = {per_row * total / 1e6:,.0f} MB for the same hour, never pruned")
    store.close()


def ceiling(directory: Path, retention: Retention) -> None:
    """Both tables full to their row limits with the longest detail a row may hold."""
    store, ops = open_store(directory, "ceiling.db", Retention(
        audit_rows=retention.audit_rows, alert_rows=retention.alert_rows, every=1000))
    now = YEAR_START
    detail = "x" * 1000
    for n in range(retention.audit_rows + 1000):
        ops.add_audit("sign_in", "anonymous", f"2001:db8::{n:x}", "refused", detail, now=now)
    for n in range(retention.alert_rows + 1000):
        ops.add_alert("sign_in_failures", "warning", f"2001:db8::{n:x}", "m" * 200,
                      {"source": f"2001:db8::{n:x}", "failures": 5}, now=now)
    ops.prune(now=now)
    print(f"ceiling ({retention.audit_rows} audit rows of 1000-character detail,"
          f" {retention.alert_rows} alerts): {size_of(store) / 1e6:.1f} MB in use,"
          f" file {file_size(store) / 1e6:.1f} MB")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=660, help="refused requests per second")
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--per-day", type=int, default=40, help="operator actions a day")
    parser.add_argument("--alerts-per-day", type=int, default=10)
    parser.add_argument("--skip-ceiling", action="store_true")
    opts = parser.parse_args()
    retention = Retention()
    print(f"retention: audit {retention.audit_days:g} days / {retention.audit_rows} rows,"
          f" alerts {retention.alert_days:g} days / {retention.alert_rows} rows;"
          " refusals: 20 rows a minute plus one summary")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        normal_year(directory, retention, opts.per_day, opts.alerts_per_day)
        attack_hour(directory, retention, opts.rate, opts.minutes)
        unthrottled(directory, opts.rate, opts.minutes)
        if not opts.skip_ceiling:
            ceiling(directory, retention)


if __name__ == "__main__":
    main()
