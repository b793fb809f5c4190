"""The HTTP front: WSGI servers side by side, against the earlier version, in one run.

    python bench/bench_front.py [--seconds 5] [--rounds 3] [--out section.md]

Each round starts every candidate in turn (the order rotates each round, so the load other
processes put on the machine falls on all alike) and measures, with wrk (2 threads):
- `GET /status` at 50 connections and at 1, and the log view's first load
  `GET /esp32/communication/log?since=0&limit=200` at 50 connections: requests/s and p99;
- threads and RSS of the server's processes after start and after the load;
- whether `GET /status` still answers (within 5 s) while 300 connections trickle headers.
Figures are medians over the rounds; ratios are against the earlier version (the seed's code
on Flask's development server, bench/seed_baseline.py) measured in the same rounds.
Candidates: bench/front_servers.py. Linux only (/proc); needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
BASELINE = "earlier version"
KINDS = ["ours", "ours-on-workers", "ours-through-flask", "waitress-before", "cheroot", "granian",
         "gunicorn", BASELINE]
LOG_PATH = "/esp32/communication/log?since=0&limit=200"
ROWS = [("status50", "/status", 50), ("log50", LOG_PATH, 50), ("status1", "/status", 1),
        ("cond50", "/status", 50)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def threads_and_rss(pid: int) -> tuple[int, float]:
    """Threads and RSS (MiB) summed over the server's process and its children."""
    threads, rss_kb = 0, 0
    for each in process_tree(pid):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        threads += int(re.search(r"Threads:\s+(\d+)", status).group(1))
        rss_kb += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return threads, rss_kb / 1024


def start(kind: str, port: int, data_dir: str) -> subprocess.Popen:
    if kind == BASELINE:
        argv = [sys.executable, str(HERE / "seed_baseline.py"), str(port)]
    else:
        argv = [sys.executable, str(HERE / "front_servers.py"), kind, str(port), data_dir]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"{kind} did not start")


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(5)


def wrk(port: int, path: str, connections: int, seconds: float,
        headers: tuple[str, ...] = ()) -> tuple[float, float]:
    """(requests/s, p99 seconds) from wrk --latency."""
    extra = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(
        ["wrk", "-t", str(min(2, connections)), "-c", str(connections),
         "-d", f"{max(1, round(seconds))}s", "--latency", *extra,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 60).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk on {path} printed no figures: {out}")
    rps = float(found.group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    p99 = float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    if "Non-2xx" in out:
        raise RuntimeError(f"errors from {path}: {out}")
    return rps, p99


def status_under_trickle(port: int, count: int = 300) -> float | None:
    """Seconds GET /status took while `count` connections trickle headers; None if over 5 s."""
    stop_flag = threading.Event()
    conns = []
    for _ in range(count):
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=2)
            conn.setblocking(False)
            conn.send(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            conns.append(conn)
        except OSError:
            pass

    def trickle() -> None:
        while not stop_flag.wait(1.0):
            for conn in conns:
                try:
                    conn.send(b"X")
                except OSError:
                    pass

    feeder = threading.Thread(target=trickle, name="bench-trickle", daemon=True)
    feeder.start()
    time.sleep(1.5)
    started = time.perf_counter()
    try:
        ok = requests.get(f"http://127.0.0.1:{port}/status", timeout=5).status_code == 200
        took = time.perf_counter() - started if ok else None
    except requests.RequestException:
        took = None
    stop_flag.set()
    feeder.join()
    for conn in conns:
        conn.close()
    return took


def fill_log(port: int) -> None:
    """About 200 log lines, as after a short while of use (the baseline starts with 300)."""
    session = requests.Session()
    for slot in range(70):
        session.post(f"http://127.0.0.1:{port}/vend/{slot % 5 + 1}?wait=5", timeout=10)


def measure(kind: str, seconds: float, trickle: bool) -> dict[str, float | None]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="front-bench-") as data_dir:
        process = start(kind, port, data_dir)
        try:
            time.sleep(0.5)
            figures: dict[str, float | None] = {}
            figures["threads_start"], figures["rss_start"] = threads_and_rss(process.pid)
            if kind != BASELINE:
                fill_log(port)
            for name, path, connections in ROWS:
                headers: tuple[str, ...] = ()
                if name == "cond50":  # a browser revalidating what it holds: If-None-Match
                    etag = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5).headers.get(
                        "ETag", '"none"')
                    headers = (f"If-None-Match: {etag}",)
                figures[f"{name}_rps"], figures[f"{name}_p99"] = wrk(port, path, connections,
                                                                     seconds, headers)
            figures["threads_load"], figures["rss_load"] = threads_and_rss(process.pid)
            if trickle:
                figures["trickle"] = status_under_trickle(port)
            return figures
        finally:
            stop(process)


def measure_all(kinds: list[str], seconds: float, rounds: int
                ) -> tuple[dict[str, list[dict[str, float | None]]], float, float]:
    """Every kind, `rounds` times in rotating order: (runs by kind, load at start, at end)."""
    load_start = os.getloadavg()[0]
    runs: dict[str, list[dict[str, float | None]]] = {kind: [] for kind in kinds}
    for round_no in range(rounds):
        order = kinds[round_no % len(kinds):] + kinds[:round_no % len(kinds)]
        for kind in order:
            runs[kind].append(measure(kind, seconds, trickle=round_no == 0))
            print(f"round {round_no + 1} {kind}: {runs[kind][-1]}", flush=True)
    return runs, load_start, os.getloadavg()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--out", help="also write the markdown table here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    runs, load_start, load_end = measure_all(args.kinds.split(","), args.seconds, args.rounds)
    table = "\n".join(render(runs, args.seconds, args.rounds, load_start, load_end)) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


def median(runs: list[dict[str, float | None]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def render(runs: dict[str, list[dict[str, float | None]]], seconds: float, rounds: int,
           load_start: float, load_end: float) -> list[str]:
    """The comparison as markdown lines."""
    base = {key: median(runs[BASELINE], key) for key in runs[BASELINE][0]} \
        if BASELINE in runs else {}

    def cell(kind: str, key: str, ms: bool = False, ratio: bool = True) -> str:
        value = median(runs[kind], key)
        if value is None:
            return "n/a"
        text = f"{value * 1000:.1f} ms" if ms else f"{value:.0f}"
        if ratio and base.get(key) and kind != BASELINE:
            text += f" ({value / base[key]:.2f}x)"
        return text

    lines = [
        f"Command: `python bench/bench_front.py --seconds {seconds:g} --rounds {rounds}`;"
        f" load average {load_start:.2f} at the start, {load_end:.2f} at the end"
        f" ({os.cpu_count()} cores, shared with other work).",
        "",
        "| server | /status req/s | /status p99 | log (200 entries) req/s | log p99 |"
        " /status p99 at 1 conn | /status with If-None-Match req/s | p99 |"
        " threads after start | RSS after start | threads after load |"
        " RSS after load | /status with 300 trickling conns |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in runs:
        trickle = runs[kind][0].get("trickle", None)
        trickled = "n/a" if "trickle" not in runs[kind][0] else (
            "no answer in 5 s" if trickle is None else f"{trickle * 1000:.0f} ms")
        lines.append(
            f"| {kind} | {cell(kind, 'status50_rps')} | {cell(kind, 'status50_p99', ms=True)} |"
            f" {cell(kind, 'log50_rps')} | {cell(kind, 'log50_p99', ms=True)} |"
            f" {cell(kind, 'status1_p99', ms=True)} | {cell(kind, 'cond50_rps')} |"
            f" {cell(kind, 'cond50_p99', ms=True)} | {cell(kind, 'threads_start', ratio=False)} |"
            f" {cell(kind, 'rss_start', ratio=False)} MiB | {cell(kind, 'threads_load', ratio=False)} |"
            f" {cell(kind, 'rss_load', ratio=False)} MiB | {trickled} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
