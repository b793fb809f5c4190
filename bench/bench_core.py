"""Core figures: vend round trip through the simulated board, and GET /status throughput.

Run: python bench/bench_core.py [--vends 200] [--seconds 2] [--repeats 5]

Every figure is a median over repeated runs, printed next to a baseline measured in the
same run: GET /health, the cheapest request the server answers.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from vending import Config, create_app
from vending.serving import BackgroundServer


def request_latencies(port: int, method: str, path: str, count: int) -> list[float]:
    """Seconds per request, one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status >= 400:
            raise RuntimeError(f"{method} {path} answered {response.status}")
    conn.close()
    return latencies


def throughput(port: int, path: str, clients: int, seconds: float) -> float:
    """Requests per second with `clients` threads each on its own keep-alive connection."""
    stop_at = time.perf_counter() + seconds
    counts = [0] * clients

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.perf_counter() < stop_at:
            conn.request("GET", path)
            conn.getresponse().read()
            counts[index] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vends", type=int, default=200, help="vends per repeat")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per throughput run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        config = Config(data_dir=Path(data_dir), host="127.0.0.1", port=0, serial_scan=False,
                        discovery=False, sim_motor_time=0.0, threads=64,
                        device_queue_limit=1000)
        app = create_app(config)
        server = BackgroundServer(app, threads=64).start()
        try:
            print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()},"
                  f" {platform.machine()} {platform.system()}")
            print(f"vend round trip, simulated board, motor time 0, {args.vends} vends x"
                  f" {args.repeats} repeats")
            vend_medians, health_medians = [], []
            for _ in range(args.repeats):
                health_medians.append(statistics.median(
                    request_latencies(server.port, "GET", "/health", args.vends)))
                vend_medians.append(statistics.median(
                    request_latencies(server.port, "POST", "/vend/1", args.vends)))
            vend_ms = statistics.median(vend_medians) * 1000
            health_ms = statistics.median(health_medians) * 1000
            print(f"  POST /vend/1   median {vend_ms:7.2f} ms")
            print(f"  GET /health    median {health_ms:7.2f} ms  (baseline)")
            print(f"  ratio vend/baseline: {vend_ms / health_ms:.1f}x")
            print()
            print(f"GET /status requests per second, median of {args.repeats} runs of"
                  f" {args.seconds:g}s")
            print(f"  {'clients':>7} {'/status':>10} {'/health':>10} {'ratio':>7}")
            for clients in (1, 10, 50):
                status_rps = statistics.median(
                    throughput(server.port, "/status", clients, args.seconds)
                    for _ in range(args.repeats))
                health_rps = statistics.median(
                    throughput(server.port, "/health", clients, args.seconds)
                    for _ in range(args.repeats))
                print(f"  {clients:>7} {status_rps:>10.0f} {health_rps:>10.0f}"
                      f" {status_rps / health_rps:>6.2f}x")
        finally:
            server.stop()
            app.extensions["vending"].stop()


if __name__ == "__main__":
    sys.exit(main())
