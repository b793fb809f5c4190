"""Reports on a big ledger: how long the sales reports, DEX and the Reports page take.

Run: python bench/bench_business.py [--sales 100000] [--requests 30]

The ledger is filled with `--sales` sales spread over the last 365 days (about 270 a day for
100,000: a busy office machine), written straight into the database, then each report is
asked for `--requests` times over HTTP. Medians, with GET /health as the baseline measured in
the same run.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_core import request_latencies

from vending import Config, create_app
from vending.serving import BackgroundServer

SLOTS = 10
DAY = 86400.0


def fill(store, sales: int, seed: int = 7) -> None:
    """`sales` successful vends with their sales rows over the last year, a few collections."""
    rng = random.Random(seed)
    now = time.time()
    with store.write() as db:
        for index in range(1, SLOTS + 1):
            db.execute("INSERT INTO products (name, default_price, created_at, updated_at)"
                       " VALUES (?, ?, ?, ?)", (f"Product {index}", 100 + 10 * index, now, now))
            db.execute("INSERT OR REPLACE INTO planogram (slot, product_id, capacity, par)"
                       " VALUES (?, ?, 20, 5)", (index, index))
            db.execute("UPDATE slots SET stock = ? WHERE number = ?", (rng.randint(0, 20), index))
    batch = 5000
    for start in range(0, sales, batch):
        with store.write() as db:
            for number in range(start, min(sales, start + batch)):
                at = now - 365 * DAY * (1 - number / sales) + rng.random()
                slot = rng.randint(1, SLOTS)
                txn = f"b{number:011x}"
                db.execute("INSERT INTO transactions (id, slot, state, device_id, communication,"
                           " message, created_at, finished_at) VALUES (?, ?, 'success', 'BENCH',"
                           " 'serial', 'dispensed', ?, ?)", (txn, slot, at, at))
                price = 100 + 10 * slot
                db.execute("INSERT INTO vend_prices VALUES (?, ?, ?, ?)",
                           (txn, slot, f"Product {slot}", price))
                db.execute("INSERT INTO sales (transaction_id, slot, product_id, product_name,"
                           " price, sold_at) VALUES (?, ?, ?, ?, ?, ?)",
                           (txn, slot, slot, f"Product {slot}", price, at))
    with store.write() as db:  # most of the year collected, the last weeks not
        cutoff = now - 20 * DAY
        db.execute("INSERT INTO collections (time, who, note, sales_count, sales_value)"
                   " SELECT ?, 'bench', '', COUNT(*), SUM(price) FROM sales WHERE sold_at < ?",
                   (cutoff, cutoff))
        db.execute("UPDATE sales SET collection_id = last_insert_rowid() WHERE sold_at < ?",
                   (cutoff,))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    month_ago = time.strftime("%Y-%m-%d", time.localtime(time.time() - 30 * DAY))
    paths = [
        "/health",
        "/reports/sales?group=slot",
        "/reports/sales?group=product",
        f"/reports/sales?group=hour&from={month_ago}",
        "/reports/sales?group=day&format=csv",
        "/collections",
        "/reports/restock",
        "/reports/dex",
        "/reports?period=today",
        "/reports?period=30d",
    ]
    with tempfile.TemporaryDirectory(prefix="vending-bench-") as data:
        app = create_app(Config(data_dir=Path(data), host="127.0.0.1", port=0, slots=SLOTS,
                                serial_scan=False, discovery=False, mdns=False))
        runtime = app.extensions["vending"]
        started = time.perf_counter()
        fill(runtime.store, args.sales)
        filled = time.perf_counter() - started
        server = BackgroundServer(app).start()
        try:
            medians = {}
            for path in paths:
                request_latencies(server.port, "GET", path, 2)  # warm up
                medians[path] = statistics.median(
                    request_latencies(server.port, "GET", path, args.requests))
        finally:
            server.stop()
            runtime.stop()
    print(f"# {platform.machine()} {platform.python_version()}, {args.sales} sales over 365 days"
          f" (filled in {filled:.1f} s), {args.requests} requests each")
    print(f"{'request':48} {'median ms':>10} {'x /health':>10}")
    for path, median in medians.items():
        print(f"{path:48} {median * 1000:10.2f} {median / medians['/health']:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
