"""What waiting for the board's confirmation costs: our vend next to a naive vend endpoint.

Run: PYTHONPATH=src python bench/bench_naive.py [--vends 50] [--repeats 3]

A naive implementation answers the vend request as soon as the command is queued, before
the board confirms, so its answer cannot say whether anything was dispensed. The same server
does that with `POST /vend/<slot>?wait=0` (202, the vend still runs): that is the baseline,
measured in the same run. Ours is `POST /vend/<slot>` waiting for the board's confirmation.
One WiFi board with our firmware (long-poll), motor time 0; the server in a subprocess.
After each naive answer the bench waits, untimed, for that vend to finish, so both sides
start every vend with an idle board.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import requests
from bench_wifi import boards_online, percentile, served

from vending.waiting import wait_until


def vend_times(url: str, count: int, wait: float) -> list[float]:
    """Seconds from sending POST /vend to its answer, `count` vends one after another."""
    session = requests.Session()
    times = []
    for index in range(count):
        started = time.perf_counter()
        response = session.post(url + f"/vend/{index % 5 + 1}?wait={wait:g}", timeout=30)
        times.append(time.perf_counter() - started)
        body = response.json()
        if wait == 0:
            txn = body["transaction_id"]

            def finished(txn: str = txn) -> dict | None:
                found = session.get(url + f"/vend/{txn}", timeout=10).json()
                return found if found.get("status") in ("success", "failed", "unknown") else None

            body = wait_until(finished, 10, interval=0.002, message=f"vend {txn} to finish")
        if body.get("status") != "success":
            raise RuntimeError(f"vend ended {body.get('status')}: {body.get('detail')}")
    return times


def measure(vends: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{label: (median s, p99 s)}, medians over `repeats` runs of `vends` vends."""
    runs: dict[str, list[list[float]]] = {"confirmed": [], "naive": []}
    with served("naive", False) as (_server, url), boards_online(url, 1, False, 0.0):
        time.sleep(1.0)
        vend_times(url, 5, 15)  # warm-up
        for _ in range(repeats):
            runs["confirmed"].append(vend_times(url, vends, 15))
            runs["naive"].append(vend_times(url, vends, 0))
    return {label: (statistics.median(statistics.median(r) for r in rs),
                    statistics.median(percentile(r, 0.99) for r in rs))
            for label, rs in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vends", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = measure(args.vends, args.repeats)
    for label, (median, p99) in results.items():
        print(f"{label:10} median {median * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms")
    ratio = results["confirmed"][0] / results["naive"][0]
    print(f"ratio confirmed/naive (median): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
