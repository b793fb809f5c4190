"""WiFi at scale: N simulated boards against one server, long-poll vs 2-second polling.

Runs the real server (`python src/app.py`) in a subprocess on 127.0.0.1 twice:

  baseline   N boards with the earlier firmware, polling every 2 s, answered at once
             (VENDING_WIFI_LEGACY_HOLD=0, as the original server did);
  long-poll  N boards with our firmware holding a long-poll each.

In both, two UI clients poll /status and the communication log every second while vends
go to a random board each. Prints vend dispatch latency (queued -> taken by the board,
from the transaction's created_at/sent_at), end-to-end vend time, UI request time, the
server's thread count and RSS (Linux /proc), and the ratios long-poll / baseline.

With --parking, it instead runs the long-poll scenario with held polls parked (the default)
and with a worker thread per held poll (VENDING_PARK_POLLS=0, as before), alternating,
--runs times, and prints the server's threads and RSS with the boards polling (idle) and
after the vends, each the median of the runs.

    PYTHONPATH=src python bench/bench_wifi.py [--boards 100] [--vends 30]
    PYTHONPATH=src python bench/bench_wifi.py --parking [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]

from vending.sim.wifi import WifiBoard  # noqa: E402
from vending.waiting import wait_until  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_figures(pid: int) -> tuple[int | None, float | None]:
    """(threads, RSS MiB) of a process, from /proc where there is one."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    threads = int(values["Threads"].strip())
    rss_kib = int(values["VmRSS"].strip().split()[0])
    return threads, rss_kib / 1024.0


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used, from /proc where there is one."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class UiPoller(threading.Thread):
    """An operator's page: /status and the log every second."""

    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(name="bench-ui", daemon=True)
        self.url = url
        self.stop_event = stop
        self.times: list[float] = []
        self.errors = 0

    def run(self) -> None:
        session = requests.Session()
        since = 0
        while not self.stop_event.is_set():
            for path in ("/status", f"/esp32/communication/log?since={since}"):
                started = time.perf_counter()
                try:
                    response = session.get(self.url + path, timeout=10)
                    response.raise_for_status()
                    if "last_id" in response.json():
                        since = response.json()["last_id"]
                    self.times.append(time.perf_counter() - started)
                except requests.RequestException:
                    self.errors += 1
            self.stop_event.wait(1.0)


def wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Until GET /health answers 200; fails at once if the server process ended."""
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
        try:
            return requests.get(url + "/health", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(ready, timeout, message=f"{url} to answer /health")


@contextmanager
def served(name: str, legacy: bool, extra_env: dict[str, str] | None = None
           ) -> Iterator[tuple[subprocess.Popen, str]]:
    """The real server (src/app.py) in a subprocess on 127.0.0.1, ready; (process, base URL).

    `legacy` answers the earlier firmware's polls at once (VENDING_WIFI_LEGACY_HOLD=0), as the
    original server did: the 2-second polling baseline.
    """
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix=f"bench-wifi-{name.split()[0]}-")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VENDING_DATA_DIR": data_dir,
           "VENDING_AUTO_APPROVE_DEVICES": "1", "VENDING_VEND_TIMEOUT": "10",
           **(extra_env or {})}
    if legacy:
        env["VENDING_WIFI_LEGACY_HOLD"] = "0"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "app.py"), "--host", "127.0.0.1", "--port", str(port),
         "--no-simulator", "--no-serial-scan", "--no-discovery", "--no-mdns"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, 20)
        yield server, url
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


@contextmanager
def boards_online(url: str, count: int, legacy: bool, motor: float,
                  prefix: str = "BE") -> Iterator[list[WifiBoard]]:
    """`count` simulated boards started against `url`, staggered, and seen online."""
    port = int(url.rsplit(":", 1)[1])
    sims: list[WifiBoard] = []
    try:
        for index in range(count):
            board = WifiBoard(f"ESP32_{prefix}{index:010X}", server=("127.0.0.1", port),
                              legacy=legacy, motor_time=motor, legacy_interval=2.0,
                              poll_wait=None)
            sims.append(board.start())
            time.sleep(2.0 / max(count, 1))  # real boards do not poll in step
        def all_online() -> bool:
            listed = requests.get(url + "/esp32/devices/list", timeout=10).json()["devices"]
            return sum(d["status"] in ("online", "busy") for d in listed) >= count

        wait_until(all_online, 60, interval=0.2, message=f"{count} boards to come online")
        yield sims
    finally:
        for board in sims:
            board.request_stop()
        for board in sims:
            board.stop()


def run_scenario(name: str, legacy: bool, boards: int, vends: int, motor: float,
                 settle: float = 3.0, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """One server, `boards` boards, two UI pollers and `vends` vends to random boards."""
    stop = threading.Event()
    with served(name, legacy, extra_env) as (server, url), \
            boards_online(url, boards, legacy, motor) as sims:
        cpu_before = proc_cpu_seconds(server.pid)
        time.sleep(settle)  # let every board settle into its polling rhythm
        cpu_after = proc_cpu_seconds(server.pid)
        cpu_idle = (100.0 * (cpu_after - cpu_before) / settle
                    if cpu_before is not None and cpu_after is not None else float("nan"))
        threads_idle, rss_idle = proc_figures(server.pid)
        pollers = [UiPoller(url, stop) for _ in range(2)]
        for poller in pollers:
            poller.start()
        threads, rss = proc_figures(server.pid)
        dispatch, total, failed = [], [], 0
        rng = random.Random(4)
        session = requests.Session()
        try:
            for _ in range(vends):
                time.sleep(rng.uniform(0.0, 0.5))
                board = rng.choice(sims)
                session.post(url + "/esp32/devices/select", json={"device_id": board.device_id},
                             timeout=10).raise_for_status()
                txn = session.post(url + f"/vend/{rng.randint(1, 5)}?wait=15", timeout=30).json()
                if txn.get("status") != "success":
                    print(f"  {name}: vend on {board.device_id} ended {txn.get('status')}:"
                          f" {txn.get('message') or txn.get('detail')}", file=sys.stderr)
                    failed += 1
                    continue
                dispatch.append(txn["sent_at"] - txn["created_at"])
                total.append(txn["finished_at"] - txn["created_at"])
        finally:
            stop.set()
            for poller in pollers:
                poller.join(5)
        threads_after, rss_after = proc_figures(server.pid)
        ui = [t for poller in pollers for t in poller.times]
        return {
            "name": name, "boards": boards, "vends": vends, "failed": failed,
            "dispatch_median": statistics.median(dispatch), "dispatch_p99": percentile(dispatch, 0.99),
            "total_median": statistics.median(total), "total_p99": percentile(total, 0.99),
            "ui_median": statistics.median(ui) if ui else float("nan"),
            "ui_p99": percentile(ui, 0.99) if ui else float("nan"),
            "ui_errors": sum(p.errors for p in pollers),
            "threads": threads_after or threads, "rss": rss_after or rss,
            "threads_idle": threads_idle, "rss_idle": rss_idle, "cpu_idle": cpu_idle,
        }


def compare_parking(boards: int, vends: int, motor: float, runs: int, settle: float) -> int:
    """Held polls parked vs one worker thread each: threads and RSS, medians of `runs`."""
    modes = [("thread per poll", {"VENDING_PARK_POLLS": "0"}),
             ("parked", {"VENDING_PARK_POLLS": "1"})]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in modes}
    for run in range(runs):
        for name, env in (modes if run % 2 == 0 else modes[::-1]):
            result = run_scenario(f"long-poll {name}", False, boards, vends, motor,
                                  settle=settle, extra_env=env)
            results[name].append(result)
            print(f"  run {run + 1} {name:16} threads idle {result['threads_idle']}"
                  f" after {result['threads']}, RSS idle {result['rss_idle']:.1f}"
                  f" after {result['rss']:.1f} MiB, CPU idle {result['cpu_idle']:.1f}%,"
                  f" failed {result['failed'] + result['ui_errors']}",
                  file=sys.stderr)
    print(f"{boards} boards long-polling (our firmware); idle: {settle:g} s with only the boards"
          f" polling; after: 2 UI clients polling every 1 s and {vends} vends; medians of {runs}"
          " runs, alternating")
    print(f"{'held polls':18} {'CPU idle':>8} {'threads idle':>12} {'threads after':>13}"
          f" {'RSS idle MiB':>12} {'RSS after MiB':>13} {'dispatch med':>12} {'failed':>6}")
    medians = {}
    for name, _ in modes:
        rows = results[name]
        m = {key: statistics.median(r[key] for r in rows)
             for key in ("cpu_idle", "threads_idle", "threads", "rss_idle", "rss",
                         "dispatch_median")}
        medians[name] = m
        failed = sum(r["failed"] + r["ui_errors"] for r in rows)
        print(f"{name:18} {m['cpu_idle']:7.1f}% {m['threads_idle']:12.0f} {m['threads']:13.0f}"
              f" {m['rss_idle']:12.1f} {m['rss']:13.1f} {m['dispatch_median'] * 1000:10.1f}ms {failed:>6}")
    before, after = medians["thread per poll"], medians["parked"]
    print(f"ratio parked/thread per poll: threads idle {after['threads_idle'] / before['threads_idle']:.2f},"
          f" RSS after load {after['rss'] / before['rss']:.2f},"
          f" dispatch median {after['dispatch_median'] / before['dispatch_median']:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=100)
    parser.add_argument("--vends", type=int, default=30)
    parser.add_argument("--motor-time", type=float, default=0.05)
    parser.add_argument("--parking", action="store_true",
                        help="compare parked held polls with a thread per held poll")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode with --parking")
    parser.add_argument("--idle", type=float, default=30.0,
                        help="seconds of boards-only polling measured with --parking (over 25 s)")
    args = parser.parse_args()
    if args.parking:
        return compare_parking(args.boards, args.vends, args.motor_time, args.runs, args.idle)
    results = [
        run_scenario("baseline (2 s polling)", True, args.boards, args.vends, args.motor_time),
        run_scenario("long-poll", False, args.boards, args.vends, args.motor_time),
    ]
    print(f"{args.boards} boards, {args.vends} vends each run, 2 UI clients polling every 1 s;"
          f" motor {args.motor_time * 1000:.0f} ms; p99 of {args.vends} samples is near the max")
    header = (f"{'scenario':24} {'dispatch med':>12} {'dispatch p99':>12} {'vend med':>9}"
              f" {'vend p99':>9} {'UI med':>8} {'UI p99':>8} {'threads':>7} {'RSS MiB':>8} {'failed':>6}")
    print(header)
    for r in results:
        print(f"{r['name']:24} {r['dispatch_median'] * 1000:10.1f}ms {r['dispatch_p99'] * 1000:10.1f}ms"
              f" {r['total_median'] * 1000:7.0f}ms {r['total_p99'] * 1000:7.0f}ms"
              f" {r['ui_median'] * 1000:6.1f}ms {r['ui_p99'] * 1000:6.1f}ms {r['threads']!s:>7}"
              f" {r['rss']:8.1f} {r['failed'] + r['ui_errors']:>6}")
    base, long_poll = results
    ratio = long_poll["dispatch_median"] / base["dispatch_median"]
    print(f"ratio long-poll/baseline: dispatch median {ratio:.4f},"
          f" vend median {long_poll['total_median'] / base['total_median']:.3f},"
          f" UI median {long_poll['ui_median'] / base['ui_median']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
