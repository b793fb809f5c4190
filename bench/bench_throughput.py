"""Vends per minute the server sustains across 10 WiFi boards with motor time 0.

Run: PYTHONPATH=src python bench/bench_throughput.py [--boards 10] [--seconds 10] [--repeats 3]

The real server runs in a subprocess (bench_wifi.served); 10 client threads each pick a board
(POST /esp32/devices/select) and vend on it, waiting for the board's confirmation, for a set
time. Only confirmed vends count. Long-poll boards (our firmware) are measured next to the
baseline measured in the same run: the same boards with the earlier firmware polling every
2 s, answered at once (the original server's behaviour).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter

import requests
from bench_wifi import boards_online, served


def sustained(url: str, device_ids: list[str], seconds: float, clients: int = 10
              ) -> tuple[float, int, int]:
    """(confirmed vends per minute, vends not confirmed, boards that ran a vend)."""
    stop_at = time.monotonic() + seconds
    done: Counter[str] = Counter()
    failed = [0]
    lock = threading.Lock()

    def client(index: int) -> None:
        session = requests.Session()
        device_id = device_ids[index % len(device_ids)]
        slot = index % 5 + 1
        while time.monotonic() < stop_at:
            session.post(url + "/esp32/devices/select", json={"device_id": device_id},
                         timeout=10)
            response = session.post(url + f"/vend/{slot}?wait=30", timeout=40)
            body = response.json()
            with lock:
                if body.get("status") == "success":
                    done[body["device_id"]] += 1
                elif response.status_code != 429:  # a full queue is back-pressure, not a loss
                    failed[0] += 1

    threads = [threading.Thread(target=client, args=(i,), name=f"bench-vender-{i}")
               for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return sum(done.values()) * 60.0 / elapsed, failed[0], len(done)


def measure(boards: int, seconds: float, repeats: int) -> dict[str, dict[str, float]]:
    """{'long-poll': {...}, 'baseline (2 s polling)': {...}}: medians over `repeats` runs."""
    results = {}
    for name, legacy in (("baseline (2 s polling)", True), ("long-poll", False)):
        with served(name, legacy) as (_server, url), \
                boards_online(url, boards, legacy, 0.0) as sims:
            time.sleep(2.5)  # every board in its polling rhythm
            runs = [sustained(url, [b.device_id for b in sims], seconds) for _ in range(repeats)]
        results[name] = {"per_minute": statistics.median(r[0] for r in runs),
                         "failed": sum(r[1] for r in runs),
                         "boards_used": min(r[2] for r in runs)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = measure(args.boards, args.seconds, args.repeats)
    for name, r in results.items():
        print(f"{name:24} {r['per_minute']:8.0f} vends/min  (boards used {r['boards_used']},"
              f" not confirmed {r['failed']})")
    base, ours = results["baseline (2 s polling)"], results["long-poll"]
    print(f"ratio long-poll/baseline: {ours['per_minute'] / base['per_minute']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
