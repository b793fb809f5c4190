"""Light on a Pi: idle CPU with 100 WiFi boards long-polling, and a steady vend soak.

    python bench/bench_soak.py [--boards 100] [--idle-seconds 30] [--soak-minutes 10]

idle  The real server (src/app.py, no simulated board) first alone, then with `--boards`
      simulated WiFi boards holding long-polls and two open pages polling as app.js does
      (the log every second with If-None-Match, the device list every 3 s, the mode every
      5 s, the slots every 10 s). Prints the server's CPU use as a share of one core over
      `--idle-seconds`, with the lone server as the baseline, and its threads and RSS.
soak  The real server with 5 simulated WiFi boards (motor time 0) and two pages, one vend
      every 0.2 s for `--soak-minutes`; threads, RSS and open descriptors are sampled every
      15 s. The ledger starts with `--history` finished vends, as a machine that has sold for
      a while: on an empty one SQLite's page cache (bounded by cache_size) is still filling
      as the database grows, which looks like growth and is not. The warm-up lasts
      `--warm-up` seconds (6 minutes: see WARM_UP) and until the communication log has
      written LOG_LINES lines (its ring filling, 0.6 MiB, would look like growth too); then
      `--soak-minutes` of steady soak follow, and growth is the last sample against the first
      of those. The RSS after the first 2 minutes of load is printed too, so the settling
      the warm-up leaves out stays in sight.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_wifi import boards_online, served  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
HISTORY = 10_000  # finished vends already in the ledger when the soak starts
# Seconds of load before growth is counted, at least. Under this load the interpreter's
# allocator settles for about 6 minutes: RSS rises 0.3 to 0.4 MiB, then stays flat (in the
# 12-minute runs measured, flat from 360-375 s on). tracemalloc showed what rises: 168-byte
# blocks (the size of a 16-item tuple; a transaction row has 16 columns) allocated where a
# row becomes a Transaction, no live object holding them, 2,000 of them at 530 s (the cap of
# CPython's free list for tuples of one size), and a gc.collect(1) in the server freed all
# of them. Bounded, then: a leak would go on growing after the warm-up.
WARM_UP = 360.0
EARLY = 120.0  # the RSS at this point of the load is printed too: the settling, in sight
# The communication log keeps this many lines (VENDING_LOG_SIZE), about 0.6 MiB when full:
# until it is full its filling looks like growth, so the warm-up lasts until the log has
# written this many lines too (at the soak's pace, about 2 lines a vend, in under 2 minutes).
LOG_LINES = 1000


@contextmanager
def removed_after(directory: str) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def seed_history(data_dir: str, vends: int) -> None:
    """A ledger holding `vends` finished vends, written through the store as the server would."""
    from vending.store import Store

    store = Store(Path(data_dir) / "vending.sqlite3")
    try:
        store.ensure_slots(5)
        for number in range(vends):
            txn, _ = store.create_transaction(number % 5 + 1, "ESP32_HISTORY00", "wifi")
            store.mark_sent(txn.id, "ESP32_HISTORY00", "wifi")
            store.finish(txn.id, "success", "dispensed")
    finally:
        store.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def figures(pid: int) -> tuple[int, float, int]:
    """(threads, RSS MiB, open descriptors) of the server process."""
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(status.split("Threads:")[1].split()[0])
    rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
    return threads, rss, len(os.listdir(f"/proc/{pid}/fd"))


def rss_parts(pid: int) -> tuple[float, float]:
    """(anonymous, file-backed and shared) resident MiB: the process's own memory, and pages
    of libraries and mapped files, which the kernel may drop and read again."""
    status = Path(f"/proc/{pid}/status").read_text()

    def kib(name: str) -> int:
        return int(status.split(f"{name}:")[1].split()[0]) if f"{name}:" in status else 0

    return kib("RssAnon") / 1024, (kib("RssFile") + kib("RssShmem")) / 1024


class Page(threading.Thread):
    """An open operator page, polling as app.js does; a browser revalidates with the ETag."""

    SCHEDULE = (("log", 1.0), ("/esp32/devices/list", 3.0), ("/esp32/communication/mode", 5.0),
                ("/slots", 10.0))

    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(name="bench-page", daemon=True)
        self.url, self.stop_event = url, stop
        self.requests = 0
        self.errors = 0

    def run(self) -> None:
        session = requests.Session()
        etags: dict[str, str] = {}
        last_id = 0
        due = {path: 0.0 for path, _ in self.SCHEDULE}
        while not self.stop_event.is_set():
            now = time.monotonic()
            for path, every in self.SCHEDULE:
                if now < due[path]:
                    continue
                due[path] = now + every
                target = f"/esp32/communication/log?since={last_id}&limit=200" \
                    if path == "log" else path
                headers = {"If-None-Match": etags[target]} if target in etags else {}
                try:
                    response = session.get(self.url + target, headers=headers, timeout=10)
                    self.requests += 1
                    if response.status_code == 200:
                        if "ETag" in response.headers:
                            etags[target] = response.headers["ETag"]
                        if path == "log":
                            last_id = response.json()["last_id"]
                    elif response.status_code != 304:
                        self.errors += 1
                except requests.RequestException:
                    self.errors += 1
            self.stop_event.wait(0.2)


def idle(boards: int, seconds: float) -> dict[str, float]:
    """CPU share of one core, threads and RSS: the lone server, then with boards and pages."""
    with served("idle", legacy=False) as (server, url):
        time.sleep(2)
        start = cpu_seconds(server.pid)
        time.sleep(seconds)
        alone = (cpu_seconds(server.pid) - start) / seconds
        threads_alone, rss_alone, _ = figures(server.pid)
        with boards_online(url, boards, legacy=False, motor=0.0):
            stop = threading.Event()
            pages = [Page(url, stop) for _ in range(2)]
            for page in pages:
                page.start()
            time.sleep(5)  # every board back in its long-poll, pages in their rhythm
            start = cpu_seconds(server.pid)
            time.sleep(seconds)
            busy = (cpu_seconds(server.pid) - start) / seconds
            threads, rss, fds = figures(server.pid)
            stop.set()
            for page in pages:
                page.join(5)
    return {"alone": alone, "threads_alone": threads_alone, "rss_alone": rss_alone,
            "busy": busy, "threads": threads, "rss": rss, "fds": fds, "boards": boards,
            "requests": sum(p.requests for p in pages), "errors": sum(p.errors for p in pages)}


def print_idle(r: dict[str, float]) -> None:
    print(f"idle CPU, server alone (baseline): {r['alone'] * 100:.2f}% of one core;"
          f" threads {r['threads_alone']:.0f}, RSS {r['rss_alone']:.1f} MiB")
    print(f"idle CPU, {r['boards']:.0f} boards long-polling + 2 pages: {r['busy'] * 100:.2f}%"
          f" of one core; threads {r['threads']:.0f}, RSS {r['rss']:.1f} MiB,"
          f" descriptors {r['fds']:.0f}; page requests {r['requests']:.0f},"
          f" errors {r['errors']:.0f}")


def soak(minutes: float, history: int = HISTORY, warm_up: float = WARM_UP) -> dict[str, object]:
    """Samples of (seconds, threads, RSS MiB, fds, anonymous MiB, file-backed MiB, log lines)
    over a steady vend load: `minutes` of it after the warm-up; and the counts."""
    samples: list[tuple[float, int, float, int, float, float, int]] = []
    steady_from: float | None = None
    vends = failed = 0
    data_dir = tempfile.mkdtemp(prefix="bench-soak-")
    seed_history(data_dir, history)
    env = {"VENDING_DEVICE_QUEUE_LIMIT": "100", "VENDING_DATA_DIR": data_dir,
           "VENDING_LOG_SIZE": str(LOG_LINES)}
    with removed_after(data_dir), served("soak", False, env) as (server, url), \
            boards_online(url, 5, legacy=False, motor=0.0, prefix="SK"):
        session = requests.Session()
        for slot in range(1, 6):  # stock not counted: the soak never sells out
            session.patch(f"{url}/slots/{slot}", json={"stock": None}, timeout=10)
        stop = threading.Event()
        pages = [Page(url, stop) for _ in range(2)]
        for page in pages:
            page.start()
        started = time.monotonic()
        next_sample = started
        while steady_from is None or time.monotonic() - started < steady_from + minutes * 60:
            if time.monotonic() >= next_sample:
                sample = take_sample(server.pid, session, url, started)
                samples.append(sample)
                if steady_from is None and (sample[0] >= warm_up and sample[6] >= LOG_LINES
                                            or sample[0] >= warm_up + 600):
                    steady_from = sample[0]
                next_sample += 15
            try:
                answer = session.post(f"{url}/vend/{vends % 5 + 1}?wait=10", timeout=20)
                ok = answer.status_code == 200
            except requests.RequestException:
                ok = False
            vends += 1
            failed += not ok
            time.sleep(0.2)
        samples.append(take_sample(server.pid, session, url, started))
        stop.set()
        for page in pages:
            page.join(5)
    return {"minutes": minutes, "vends": vends, "failed": failed, "samples": samples,
            "history": history, "warm_up": steady_from}


def take_sample(pid: int, session: requests.Session, url: str, started: float) -> tuple:
    """(seconds since `started`, threads, RSS MiB, fds, anonymous MiB, file-backed MiB,
    log lines) of the server now."""
    return (time.monotonic() - started, *figures(pid), *rss_parts(pid), log_lines(session, url))


def log_lines(session: requests.Session, url: str) -> int:
    """Lines the server's communication log has written so far (-1 if it did not answer)."""
    try:
        return int(session.get(f"{url}/status", timeout=10).json()["log_last_id"])
    except (requests.RequestException, ValueError, KeyError):
        return -1


def early(result: dict[str, object]) -> tuple:
    """The first sample at or after EARLY seconds of load: before the allocator settled."""
    samples = result["samples"]
    return next((s for s in samples if s[0] >= EARLY), samples[-1])


def growth(result: dict[str, object]) -> tuple[tuple, tuple, float]:
    """(first sample after the warm-up, last sample, median RSS after warm-up)."""
    samples = result["samples"]
    warm = [s for s in samples if s[0] >= result["warm_up"]] or samples
    return warm[0], warm[-1], statistics.median(s[2] for s in warm)


def print_soak(result: dict[str, object]) -> None:
    samples = result["samples"]
    print(f"soak: {result['minutes']:g} min, {result['vends']} vends ({result['failed']} not 200),"
          f" {len(samples)} samples; {result['history']} vends in the ledger before,"
          f" warm-up {result['warm_up']:.0f} s (until the log had {LOG_LINES} lines)")
    print("  t(s)  threads  RSS(MiB)  fds  anon(MiB)  file(MiB)  log lines")
    for t, threads, rss, fds, anon, mapped, lines in samples:
        print(f"  {t:5.0f}  {threads:7d}  {rss:8.1f}  {fds:4d}  {anon:9.1f}  {mapped:9.1f}"
              f"  {lines:9d}")
    first, last, rss_median = growth(result)
    print(f"soak growth after warm-up ({first[0]:.0f} s -> {last[0]:.0f} s): threads"
          f" {first[1]} -> {last[1]}, RSS {first[2]:.1f} -> {last[2]:.1f} MiB"
          f" (median {rss_median:.1f}; anonymous {first[4]:.1f} -> {last[4]:.1f},"
          f" file-backed {first[5]:.1f} -> {last[5]:.1f}), fds {first[3]} -> {last[3]}")
    settling = early(result)
    if settling[0] < first[0]:  # a warm-up shorter than EARLY leaves nothing out
        print(f"the allocator settling, left out: RSS {settling[2]:.1f} MiB at"
              f" {settling[0]:.0f} s -> {first[2]:.1f} MiB at {first[0]:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--history", type=int, default=HISTORY,
                        help="finished vends in the ledger before the soak (0: an empty one)")
    parser.add_argument("--warm-up", type=float, default=WARM_UP,
                        help="seconds of the soak before growth is counted")
    parser.add_argument("--only", choices=("idle", "soak"))
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)",
          flush=True)
    if args.only in (None, "idle"):
        print_idle(idle(args.boards, args.idle_seconds))
    if args.only in (None, "soak"):
        print_soak(soak(args.soak_minutes, args.history, args.warm_up))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
