"""Run every benchmark and write docs/benchmarks.md: one command for all the figures.

    PYTHONPATH=src python bench/run_all.py            # the full run (about 45 min on 2 cores)
    PYTHONPATH=src python bench/run_all.py --quick    # fewer and shorter runs (about 5 min)

Each figure is the median over repeated runs, next to a baseline measured in the same run
and the ratio between them. The figures come from the bench scripts' own functions, so each
can also be rerun alone (see the rerun section of the document written). POSIX only (the
serial figures need ptys; memory and threads are read from /proc on Linux).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

import bench_fleet  # noqa: E402
import bench_front  # noqa: E402
import bench_http  # noqa: E402
import bench_naive  # noqa: E402
import bench_serial  # noqa: E402
import bench_soak  # noqa: E402
import bench_startup  # noqa: E402
import bench_throughput  # noqa: E402
import bench_wifi  # noqa: E402

from vending.waiting import wait_until  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    """How many runs and how long each: --quick or the full run."""

    http_seconds: float
    http_repeats: int
    naive_vends: int
    naive_repeats: int
    serial_vends: int
    serial_repeats: int
    wifi_vends: int
    wifi_repeats: int
    wifi_boards: tuple[int, ...]
    throughput_seconds: float
    throughput_repeats: int
    startup_repeats: int
    front_seconds: float
    front_rounds: int
    idle_seconds: float
    soak_minutes: float
    fleet_queued: int
    fleet_repeats: int


FULL = Sizes(2.0, 5, 100, 5, 200, 5, 30, 3, (1, 10, 100), 15.0, 5, 7, 5.0, 3, 30.0, 10.0,
             10000, 3)
QUICK = Sizes(1.0, 3, 30, 3, 100, 3, 8, 2, (1, 10, 100), 5.0, 3, 3, 2.0, 1, 10.0, 2.0, 2000, 1)


def ms(seconds: float | None, digits: int = 1) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.{digits}f} ms"


def ratio(value: float | None, base: float | None) -> str:
    if not value or not base:
        return "n/a"
    if value / base < 0.01:
        return f"1/{base / value:.0f}"  # "0.00x" would hide how large the difference is
    return f"{value / base:.2f}x" if value / base < 100 else f"{value / base:.0f}x"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def http_section(sizes: Sizes) -> list[str]:
    results = bench_http.measure(sizes.http_seconds, sizes.http_repeats)
    base = results["GET /health (baseline)"]
    rows = []
    for label, by_clients in results.items():
        for clients, (rps, p99) in by_clients.items():
            rows.append([label, str(clients), f"{rps:.0f}", ms(p99, 2),
                         ratio(rps, base[clients][0]), ratio(p99, base[clients][1])])
    return [
        "## GET /status and the UI's poll endpoint",
        "",
        f"`bench/bench_http.py`: {sizes.http_repeats} runs of {sizes.http_seconds:g} s per row;"
        " clients are threads on keep-alive connections, in the same process as the server"
        " (waitress, 64 threads), so client and server share one interpreter. The UI poll is the"
        " log view's `GET /esp32/communication/log?since=<last id>`, its busiest poll."
        " Baseline: `GET /health`.",
        "",
        *table(["endpoint", "clients", "requests/s", "p99", "req/s vs baseline",
                "p99 vs baseline"], rows),
        "",
    ]


def naive_section(sizes: Sizes) -> list[str]:
    results = bench_naive.measure(sizes.naive_vends, sizes.naive_repeats)
    ours, naive = results["confirmed"], results["naive"]
    return [
        "## A vend answered after the board confirms, next to one answered before",
        "",
        f"`bench/bench_naive.py`: one WiFi board (long-poll, motor time 0), {sizes.naive_repeats}"
        f" runs of {sizes.naive_vends} vends. Baseline: the naive endpoint that answers as soon"
        " as the vend is queued (`?wait=0`), which cannot tell the caller whether anything was"
        " dispensed.",
        "",
        *table(["vend endpoint", "median", "p99", "median vs baseline"], [
            ["waits for the board's confirmation (ours)", ms(ours[0], 2), ms(ours[1], 2),
             ratio(ours[0], naive[0])],
            ["answers before the board confirms (baseline)", ms(naive[0], 2), ms(naive[1], 2),
             "1.00x"],
        ]),
        "",
    ]


def serial_section(sizes: Sizes) -> list[str]:
    wire, size = bench_serial.wire_ms()
    with tempfile.TemporaryDirectory() as tmp:
        board = bench_serial.SerialBoardSim(motor_time=0.0, link=os.path.join(tmp, "tty"),
                                            boot_delay=0.0).start()
        try:
            device = statistics.median(
                statistics.median(bench_serial.device_latencies(board, sizes.serial_vends))
                for _ in range(sizes.serial_repeats))
            serial_app, serial_server = bench_serial.serve(
                os.path.join(tmp, "serial"), simulator=False, serial_ports=[board.path])
            sim_app, sim_server = bench_serial.serve(os.path.join(tmp, "sim"))
            try:
                runtime = serial_app.extensions["vending"]
                wait_until(lambda: any(d.can_vend for d in runtime.registry.devices()), 10,
                           message="the serial board to come online in the app")
                serial_http, sim_http = [], []
                for _ in range(sizes.serial_repeats):
                    serial_http.append(statistics.median(
                        bench_serial.http_latencies(serial_server.port, sizes.serial_vends)))
                    sim_http.append(statistics.median(
                        bench_serial.http_latencies(sim_server.port, sizes.serial_vends)))
            finally:
                for app, server in ((serial_app, serial_server), (sim_app, sim_server)):
                    server.stop()
                    app.extensions["vending"].stop()
        finally:
            board.stop()
    http_serial, http_sim = statistics.median(serial_http), statistics.median(sim_http)
    return [
        "## Serial vend round trip over a pty, next to the 115200-baud wire time",
        "",
        f"`bench/bench_serial.py`: a simulated v2 board on a pty, motor time 0,"
        f" {sizes.serial_repeats} runs of {sizes.serial_vends} vends. The wire time is computed,"
        f" not measured: the {size} bytes of one vend (VEND, ACK, DONE) at 115200 baud 8N1, the"
        " floor a real board cannot beat. The HTTP rows compare POST /vend/1 through the serial"
        " board with the same request on the in-process simulated board.",
        "",
        *table(["figure", "median", "baseline", "ratio"], [
            ["device level VEND -> ACK -> DONE over the pty", ms(device, 3),
             f"{wire:.3f} ms on the wire", ratio(device * 1000, wire)],
            ["POST /vend/1 through the serial board", ms(http_serial, 3),
             f"{ms(http_sim, 3)} on the simulated board", ratio(http_serial, http_sim)],
        ]),
        "",
    ]


def wifi_section(sizes: Sizes) -> list[str]:
    keys = ("dispatch_median", "dispatch_p99", "total_median", "total_p99", "threads", "rss",
            "failed", "ui_median")
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for boards in sizes.wifi_boards:
        for name, legacy in (("baseline (2 s polling)", True), ("long-poll", False)):
            runs = [bench_wifi.run_scenario(name, legacy, boards, sizes.wifi_vends, 0.0,
                                            settle=2.0)
                    for _ in range(sizes.wifi_repeats)]
            results[(name, boards)] = {
                key: statistics.median(r[key] for r in runs if r[key] is not None)
                if key != "failed" else sum(r[key] for r in runs) for key in keys}
    latency_rows, footprint_rows = [], []
    for boards in sizes.wifi_boards:
        ours, base = results[("long-poll", boards)], results[("baseline (2 s polling)", boards)]
        for label, key in (("dispatch median", "dispatch_median"), ("dispatch p99", "dispatch_p99"),
                           ("round trip median", "total_median"), ("round trip p99", "total_p99")):
            latency_rows.append([str(boards), label, ms(ours[key]), ms(base[key]),
                                 ratio(ours[key], base[key])])
        footprint_rows.append([str(boards), f"{ours['rss']:.1f} MiB", f"{base['rss']:.1f} MiB",
                               ratio(ours["rss"], base["rss"]), f"{ours['threads']:.0f}",
                               f"{base['threads']:.0f}", ratio(ours["threads"], base["threads"])])
    failed = sum(r["failed"] for r in results.values())
    return [
        "## WiFi vend dispatch and round trip, long-poll against 2-second polling",
        "",
        f"`bench/bench_wifi.py`: the real server (`src/app.py`) in a subprocess, N simulated"
        f" boards (motor time 0), two UI clients polling every second, {sizes.wifi_vends} vends"
        f" to random boards per run, {sizes.wifi_repeats} runs per row. Dispatch is vend request"
        " -> the board has the command (the transaction's `sent_at - created_at`); round trip"
        " is vend request -> the board's confirmation recorded. Baseline: the same boards with"
        " the earlier firmware polling every 2 s, answered at once, as the original server"
        f" did. With {sizes.wifi_vends} samples a run's p99 is close to its maximum."
        f" Vends not confirmed across all runs: {failed}.",
        "",
        *table(["boards", "figure", "long-poll", "baseline (2 s polling)", "ratio"],
               latency_rows),
        "",
        "## Memory and threads with 1, 10 and 100 WiFi boards",
        "",
        "Same runs: the server process's RSS and thread count (Linux /proc) after the vends.",
        "The HTTP worker pool starts with 4 threads and grows as requests wait (up to"
        " `--threads`, 128 by default); a held long-poll is parked and occupies none while it"
        " waits (`bench/bench_wifi.py --parking` compares it with a thread per held poll); on"
        " top of the pool the server keeps one vend dispatcher thread per board that has had a"
        f" vend, which is why the count grows with the boards the {sizes.wifi_vends} random"
        " vends reached.",
        "",
        *table(["boards", "RSS long-poll", "RSS baseline", "ratio", "threads long-poll",
                "threads baseline", "ratio"], footprint_rows),
        "",
    ]


def throughput_section(sizes: Sizes) -> list[str]:
    results = bench_throughput.measure(10, sizes.throughput_seconds, sizes.throughput_repeats)
    ours, base = results["long-poll"], results["baseline (2 s polling)"]
    return [
        "## Vends per minute across 10 boards, motor time 0",
        "",
        f"`bench/bench_throughput.py`: the real server in a subprocess, 10 WiFi boards, 10 client"
        f" threads each selecting a board and vending on it, {sizes.throughput_repeats} runs of"
        f" {sizes.throughput_seconds:g} s. Only vends the board confirmed count. Baseline: the"
        " same with the earlier firmware polling every 2 s.",
        "",
        *table(["boards' firmware", "confirmed vends per minute", "boards that vended",
                "not confirmed", "ratio"], [
            ["long-poll (ours)", f"{ours['per_minute']:.0f}", f"{ours['boards_used']:.0f}",
             f"{ours['failed']:.0f}", ratio(ours["per_minute"], base["per_minute"])],
            ["2 s polling (baseline)", f"{base['per_minute']:.0f}", f"{base['boards_used']:.0f}",
             f"{base['failed']:.0f}", "1.00x"],
        ]),
        "",
    ]


def startup_section(sizes: Sizes) -> list[str]:
    results = bench_startup.measure(sizes.startup_repeats)
    ours, base = results["ours"], results["minimal Flask app (baseline)"]

    def mib(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f} MiB"

    return [
        "## Start-up time to ready",
        "",
        f"`bench/bench_startup.py`: from starting `python src/app.py` (simulated board, fresh"
        f" data directory, no serial scan, discovery or mDNS) to the first 200 from"
        f" `GET /health`, {sizes.startup_repeats} starts. Baseline: a one-route Flask app on"
        " waitress started the same way. Memory and threads are read 0.5 s after ready.",
        "",
        *table(["server", "ready after", "RSS", "threads", "ratio (time)"], [
            ["flask-vending-machine", ms(ours["seconds"], 0), mib(ours["rss"]),
             f"{ours['threads']:.0f}", ratio(ours["seconds"], base["seconds"])],
            ["minimal Flask app (baseline)", ms(base["seconds"], 0), mib(base["rss"]),
             f"{base['threads']:.0f}", "1.00x"],
        ]),
        "",
    ]


def front_section(sizes: Sizes) -> list[str]:
    runs, load_start, load_end = bench_front.measure_all(bench_front.KINDS, sizes.front_seconds,
                                                         sizes.front_rounds)
    return [
        "## The HTTP front: WSGI servers against the earlier version",
        "",
        "`bench/bench_front.py`: each candidate (bench/front_servers.py) serves the same app"
        " (simulated board, about 200 log lines) on 127.0.0.1 with at most 32 worker threads,"
        " except waitress-before (the project's previous settings: 128 threads, connection"
        " limit 256, select()); \"ours\" is src/vending/serving.py. The earlier version is the"
        " seed's code on Flask's development server (bench/seed_baseline.py). wrk, 2 threads;"
        f" the candidates alternate, rotating order each round; medians of {sizes.front_rounds}"
        " rounds; (ratio) against the earlier version in the same rounds. The log row is the"
        " log view's first load (`?since=0&limit=200`); the If-None-Match row is how a browser"
        " re-asks for a /status it holds (the earlier version has no ETag and answers 200).",
        "",
        *bench_front.render(runs, sizes.front_seconds, sizes.front_rounds, load_start,
                            load_end),
        "",
        *FRONT_CHOICE,
        "",
    ]


FRONT_CHOICE = [
    "\"ours-on-workers\" is the same server with every answer given on a worker thread:"
    " \"ours\" gives a poll whose answer is already built on its I/O thread, with no hand-off"
    " (src/vending/serving.py's answer_on_loop), which no other candidate can do (cheroot and"
    " gunicorn read requests on worker threads; granian hands every call to a Python thread)."
    " \"ours-through-flask\" is ours-on-workers with the polls' fast path taken out as well"
    " (src/vending/web/fastpath.py answers GET /status and the log below Flask; every candidate"
    " here serves the app with it, so the others' rows show what the server alone changes).",
    "",
    "Why waitress (hardened, src/vending/serving.py): granian runs the app in a worker process"
    " it spawns (about twice the RSS, and the controller's threads, serial ports and shutdown"
    " would have to move into that process), and a WSGI app on it still holds one of its"
    " threads per long-poll. cheroot and gunicorn's gthread read a request on a worker thread,"
    " so 300 trickling connections starve them (last column), and gunicorn does not run on"
    " Windows. waitress reads requests on its I/O thread and installs as one pure-Python wheel"
    " everywhere; on its extension points we added poll(), a request deadline, per-address"
    " caps, eviction at the limit, a pool that grows on demand, one send() per answer,"
    " keep-alive after a 304, ready polls answered on the I/O thread, and board long-polls"
    " parked without a thread"
    " (tests/test_http_front.py, tests/test_wifi_parking.py).",
]


def soak_section(sizes: Sizes) -> list[str]:
    idle = bench_soak.idle(100, sizes.idle_seconds)
    soak = bench_soak.soak(sizes.soak_minutes)
    first, last, rss_median = bench_soak.growth(soak)
    settling = bench_soak.early(soak)
    return [
        "## Idle CPU with 100 WiFi boards, and a steady vend soak",
        "",
        "`bench/bench_soak.py`: the real server (`src/app.py`). Idle: 100 simulated WiFi boards"
        " holding long-polls and two pages polling as app.js does (with If-None-Match), CPU"
        f" over {sizes.idle_seconds:g} s as a share of one core; baseline: the same server with"
        f" nothing connected. Soak: 5 WiFi boards, one vend every 0.2 s with two pages open,"
        f" sampled every 15 s, on a ledger that already holds {soak['history']:,} vends: a"
        f" warm-up of {soak['warm_up']:.0f} s (at least {bench_soak.WARM_UP:g} s, and until the"
        f" communication log's {bench_soak.LOG_LINES}-line ring had filled, so its filling is not"
        f" counted), then {sizes.soak_minutes:g} minutes of steady soak; growth is the last"
        " sample against the first of those. The warm-up leaves out the interpreter's allocator"
        " settling (CPython's free lists filling to their caps, garbage waiting for the"
        " collector; bounded, see WARM_UP in bench_soak.py): RSS was"
        f" {settling[2]:.1f} MiB after {settling[0]:.0f} s of load and {first[2]:.1f} MiB at the"
        " end of the warm-up.",
        "",
        *table(["figure", "with boards and pages", "baseline", "ratio"], [
            ["idle CPU (share of one core)", f"{idle['busy'] * 100:.2f}%",
             f"{idle['alone'] * 100:.2f}% (nothing connected)", ratio(idle["busy"], idle["alone"])],
            ["threads", f"{idle['threads']:.0f}", f"{idle['threads_alone']:.0f}",
             ratio(idle["threads"], idle["threads_alone"])],
            ["RSS", f"{idle['rss']:.1f} MiB", f"{idle['rss_alone']:.1f} MiB",
             ratio(idle["rss"], idle["rss_alone"])],
        ]),
        "",
        *table(["soak", "after warm-up", "at the end", "ratio"], [
            ["threads", f"{first[1]}", f"{last[1]}", ratio(last[1], first[1])],
            ["RSS", f"{first[2]:.1f} MiB", f"{last[2]:.1f} MiB (median {rss_median:.1f})",
             ratio(last[2], first[2])],
            ["of which anonymous (the process's own)", f"{first[4]:.1f} MiB",
             f"{last[4]:.1f} MiB", ratio(last[4], first[4])],
            ["of which file-backed (libraries, mapped files)", f"{first[5]:.1f} MiB",
             f"{last[5]:.1f} MiB", ratio(last[5], first[5])],
            ["open descriptors", f"{first[3]}", f"{last[3]}", ratio(last[3], first[3])],
        ]),
        "",
        f"{soak['vends']} vends, {soak['failed']} not answered 200.",
        "",
    ]


def fleet_section(sizes: Sizes) -> list[str]:
    r = bench_fleet.measure(queued=sizes.fleet_queued, repeats=sizes.fleet_repeats)
    return [
        "## The MQTT outbox and the fleet",
        "",
        "`bench/bench_fleet.py` (a mosquitto broker on 127.0.0.1): a slot change committed with"
        " its event in the outbox against the same change with no outbox; a vend's event from"
        " its final state to a subscriber, against a plain client's publish to the same"
        f" subscriber through the same broker; {r['queued']:.0f} events queued in the outbox"
        f" (as after an outage) until the broker has acknowledged them all. Medians of"
        f" {r['repeats']:.0f} runs.",
        "",
        *table(["figure", "ours", "baseline", "ratio"], [
            ["a slot change", ms(r["write_event"], 2) + " (with its event)",
             ms(r["write_plain"], 2) + " (no outbox)", ratio(r["write_event"], r["write_plain"])],
            ["vend to subscriber, median", ms(r["vend_median"], 2),
             ms(r["publish_median"], 2) + " (plain publish)",
             ratio(r["vend_median"], r["publish_median"])],
            ["vend to subscriber, p95", ms(r["vend_p95"], 2), ms(r["publish_p95"], 2),
             ratio(r["vend_p95"], r["publish_p95"])],
            [f"catch-up of {r['queued']:.0f} events", f"{r['acked']:.2f} s"
             f" ({r['queued'] / r['acked']:.0f} events/s)", "", ""],
        ]),
        "",
    ]


SECTIONS = [("http", http_section), ("naive", naive_section), ("serial", serial_section),
            ("wifi", wifi_section), ("throughput", throughput_section),
            ("startup", startup_section), ("front", front_section), ("soak", soak_section),
            ("fleet", fleet_section)]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = f", load average {os.getloadavg()[0]:.2f} at the start"
    except (AttributeError, OSError):
        load = ""
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()},"
            f" {platform.system()} {platform.release()} {platform.machine()}{load}")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    parser.add_argument("--only", action="append", choices=[name for name, _ in SECTIONS],
                        help="run only this section (repeatable); the document then has only it")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--soak-minutes", type=float,
                        help="a shorter soak than the full run's 10 minutes (say so when used)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.soak_minutes:
        sizes = dataclasses.replace(sizes, soak_minutes=args.soak_minutes)
    started = time.monotonic()
    body: list[str] = []
    for name, section in SECTIONS:
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", flush=True)
        section_started = time.monotonic()
        lines = section(sizes)
        print("\n".join(lines), flush=True)
        print(f"({name}: {time.monotonic() - section_started:.0f} s)", flush=True)
        body += lines
    mode = "quick" if args.quick else "full"
    header = [
        "# Benchmarks",
        "",
        "Written by `bench/run_all.py`; do not edit by hand, rerun it.",
        "",
        f"- Machine: {machine()}",
        f"- Run: {mode} mode (`python bench/run_all.py{' --quick' if args.quick else ''}"
        f"{f' --soak-minutes {args.soak_minutes:g}' if args.soak_minutes else ''}`),"
        f" {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit()},"
        f" {time.monotonic() - started:.0f} s in all",
        "- Every figure is the median over repeated runs, next to a baseline measured in the"
        " same run; the ratio is ours / baseline (for latency and memory lower is better, for"
        " requests and vends per second higher is better).",
        "- Everything runs on 127.0.0.1 with simulated boards; the bench process (clients and"
        " boards) shares the machine's cores with the server, so the absolute figures are lower"
        " bounds for a dedicated server, while the ratios compare like with like.",
        "",
    ]
    footer = [
        "## How to rerun",
        "",
        "From the repository root (Linux or macOS; the serial figures need ptys):",
        "",
        "```",
        "pip install -r requirements.txt -r tests/requirements.txt",
        "PYTHONPATH=src python bench/run_all.py           # everything, rewrites this file",
        "PYTHONPATH=src python bench/run_all.py --quick   # fewer, shorter runs",
        "PYTHONPATH=src python bench/run_all.py --only wifi --out /tmp/wifi.md   # one section",
        "```",
        "",
        "Each section's script also runs alone and prints its figures:"
        " `bench/bench_http.py`, `bench/bench_naive.py`, `bench/bench_serial.py`,"
        " `bench/bench_wifi.py --boards 100`, `bench/bench_throughput.py`,"
        " `bench/bench_startup.py`, `bench/bench_front.py` (needs wrk; the candidate servers"
        " come from `pip install granian cheroot gunicorn`), `bench/bench_soak.py`,"
        " `bench/bench_fleet.py` (needs mosquitto);"
        " `bench/bench_core.py` and `bench/bench_integrations.py` add"
        " the vend round trip on the simulated board and the cost of alerts, webhooks and MQTT."
        " Fuzzing: `bench/fuzz_codec.py --seconds 60` and `bench/fuzz_discovery.py --seconds 60`"
        " (atheris) print the executions and stop at the first finding.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + body + footer), encoding="utf-8")
    print(f"wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
