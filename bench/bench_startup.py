"""Start-up time to ready, and the idle server's memory and threads.

Run: PYTHONPATH=src python bench/bench_startup.py [--repeats 5]

"Ready" is the first 200 from GET /health, timed from starting `python src/app.py` (simulated
board, no serial scan, no discovery, no mDNS, a fresh data directory each time). The baseline,
measured in the same run, is the least any Flask app served by waitress takes: a one-route
app started the same way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_wifi import free_port, proc_figures, wait_ready

ROOT = Path(__file__).resolve().parents[1]
MINIMAL_APP = """
import sys
from flask import Flask
from waitress import serve
app = Flask("minimal")
app.add_url_rule("/health", "health", lambda: {"status": "ok"})
serve(app, host="127.0.0.1", port=int(sys.argv[1]), _quiet=True)
"""


def time_to_ready(command: list[str], port: int, env: dict[str, str]
                  ) -> tuple[float, int | None, float | None]:
    """(seconds to the first 200 from /health, threads, RSS MiB once ready)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, 30)
        elapsed = time.perf_counter() - started
        time.sleep(0.5)  # let start-up threads settle before counting
        threads, rss = proc_figures(process.pid)
        return elapsed, threads, rss
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def measure(repeats: int) -> dict[str, dict[str, float | None]]:
    """{'ours': {...}, 'minimal Flask app (baseline)': {...}}: medians of `repeats` starts."""
    runs: dict[str, list[tuple[float, int | None, float | None]]] = {
        "ours": [], "minimal Flask app (baseline)": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as data_dir:
            port = free_port()
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VENDING_DATA_DIR": data_dir}
            runs["ours"].append(time_to_ready(
                [sys.executable, str(ROOT / "src" / "app.py"), "--host", "127.0.0.1", "--port",
                 str(port), "--no-serial-scan", "--no-discovery", "--no-mdns"], port, env))
        port = free_port()
        runs["minimal Flask app (baseline)"].append(time_to_ready(
            [sys.executable, "-c", MINIMAL_APP, str(port)], port, dict(os.environ)))

    def med(values: list) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    return {label: {"seconds": med([r[0] for r in rs]), "threads": med([r[1] for r in rs]),
                    "rss": med([r[2] for r in rs])} for label, rs in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = measure(args.repeats)
    for label, r in results.items():
        print(f"{label:30} ready in {r['seconds'] * 1000:7.0f} ms, threads {r['threads']},"
              f" RSS {r['rss']} MiB")
    ours, base = results["ours"], results["minimal Flask app (baseline)"]
    print(f"ratio start-up ours/baseline: {ours['seconds'] / base['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
