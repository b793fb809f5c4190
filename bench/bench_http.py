"""GET /status and the UI's poll endpoint under load: requests per second and p99 latency.

Run: PYTHONPATH=src python bench/bench_http.py [--seconds 2] [--repeats 3]

The server is the app on waitress in this process (BackgroundServer, 64 threads), with the
simulated board and a communication log holding a few hundred lines, as after a day's use.
The UI's poll endpoint is the log view's `GET /esp32/communication/log?since=<last id>`,
polled every second by an open page (the busiest of its polls). The baseline, measured in the
same run, is GET /health: the cheapest request the server answers. Each figure is the median
over repeated runs of `clients` threads, each on its own keep-alive connection.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vending import Config, create_app
from vending.serving import BackgroundServer

CLIENTS = (1, 10, 50)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (q=0.99: p99)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def load(port: int, path: str, clients: int, seconds: float) -> tuple[float, float]:
    """(requests per second, p99 seconds) with `clients` threads on keep-alive connections."""
    stop_at = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = latencies[index]
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                errors.append(f"GET {path} answered {response.status}")
                break
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), name=f"bench-client-{i}")
               for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(errors[0])
    every = [t for mine in latencies for t in mine]
    return len(every) / elapsed, percentile(every, 0.99)


@contextmanager
def demo_server() -> Iterator[BackgroundServer]:
    """The app with the simulated board, a few vends done and a filled log, on waitress."""
    with tempfile.TemporaryDirectory() as data_dir:
        config = Config(data_dir=Path(data_dir), host="127.0.0.1", port=0, serial_scan=False,
                        discovery=False, mdns=False, sim_motor_time=0.0, threads=64,
                        device_queue_limit=1000)
        app = create_app(config)
        server = BackgroundServer(app, threads=64).start()
        try:
            client = app.test_client()
            for slot in range(1, 51):
                client.post(f"/vend/{slot % 5 + 1}?wait=5")
            yield server
        finally:
            server.stop()
            app.extensions["vending"].stop()


def poll_path(port: int) -> str:
    """The log view's poll as the page sends it after its first load: nothing new since."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/esp32/communication/log?since=0&limit=200")
    last_id = json.loads(conn.getresponse().read())["last_id"]
    conn.close()
    return f"/esp32/communication/log?since={last_id}&limit=200"


def measure(seconds: float, repeats: int) -> dict[str, dict[int, tuple[float, float]]]:
    """{label: {clients: (median rps, median p99 s)}} for /status, the UI poll and /health."""
    results: dict[str, dict[int, tuple[float, float]]] = {}
    with demo_server() as server:
        paths = {"GET /status": "/status", "UI poll (log since last id)": poll_path(server.port),
                 "GET /health (baseline)": "/health"}
        for label in paths:
            results[label] = {}
        for clients in CLIENTS:
            runs: dict[str, list[tuple[float, float]]] = {label: [] for label in paths}
            for _ in range(repeats):
                for label, path in paths.items():  # interleaved, so drift hits all alike
                    runs[label].append(load(server.port, path, clients, seconds))
            for label in paths:
                results[label][clients] = (statistics.median(r[0] for r in runs[label]),
                                           statistics.median(r[1] for r in runs[label]))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}")
    results = measure(args.seconds, args.repeats)
    base = results["GET /health (baseline)"]
    print(f"{'endpoint':30} {'clients':>7} {'req/s':>8} {'p99 ms':>8} {'rps ratio':>9}")
    for label, by_clients in results.items():
        for clients, (rps, p99) in by_clients.items():
            print(f"{label:30} {clients:>7} {rps:>8.0f} {p99 * 1000:>8.2f}"
                  f" {rps / base[clients][0]:>8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
