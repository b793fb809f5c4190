"""The MQTT outbox and the fleet: how fast events go through, and how fast a queue catches up.

Run: python bench/bench_fleet.py [--writes 300] [--vends 100] [--queued 10000] [--repeats 3]

Figures (medians over --repeats, each next to a baseline measured in the same run):
- outbox writes: a slot change committed with its event vs the same change with no outbox;
- vend to subscriber: from a vend's final state (the event's `time`) to a subscriber on the
  same host getting its event, broker up; baseline: a plain client's publish to the same
  subscriber through the same broker;
- catch-up: --queued events waiting in the outbox (as after an outage) until the broker has
  acknowledged every one and a subscriber has them all; events/s through the outbox.

Needs mosquitto (./test.sh installs it as root on Debian; else sudo apt install mosquitto).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from vending import Config, create_app
from vending.store import Store, outbox
from vending.waiting import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """A mosquitto on loopback for the run."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.access(binary, os.X_OK):
            raise SystemExit("mosquitto is not installed: sudo apt install mosquitto")
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\nmax_queued_messages 0\n")
        self.process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_until(self._listening, 10.0, message="mosquitto to listen")

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)


class Receiver:
    """A subscriber that notes when each message arrives."""

    def __init__(self, port: int, topic: str) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(subscribed.is_set, 10.0, message="the subscriber")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        now = time.time()
        with self._lock:
            self.arrivals.append((now, bytes(message.payload)))

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def clear(self) -> None:
        with self._lock:
            self.arrivals.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def config(data: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = dict(
        data_dir=data, host="127.0.0.1", port=0, serial_scan=False, discovery=False, mdns=False,
        sim_motor_time=0.0, log_level="WARNING", mqtt_reconnect_min=0.1, mqtt_reconnect_max=0.5)
    values.update(overrides)
    return Config(**values)


def outbox_writes(work: Path, writes: int, with_outbox: bool) -> float:
    """Seconds per committed slot change, with or without its outbox event."""
    store = Store(work / f"writes-{with_outbox}-{time.monotonic_ns()}.sqlite3",
                  outbox_events=with_outbox)
    try:
        store.ensure_slots(1)
        started = time.perf_counter()
        for index in range(writes):
            store.update_slot(1, stock=index)
        return (time.perf_counter() - started) / writes
    finally:
        store.close()


def vend_to_subscriber(work: Path, port: int, vends: int) -> list[float]:
    """Seconds from each vend's final state to its event at a subscriber."""
    app = create_app(config(work / f"latency-{time.monotonic_ns()}",
                            mqtt_url=f"mqtt://127.0.0.1:{port}/bench"))
    rt = app.extensions["vending"]
    receiver = Receiver(port, "bench/+/events/vend")
    try:
        client = app.test_client()
        for index in range(vends):
            client.post(f"/vend/{index % 5 + 1}")
        wait_until(lambda: receiver.count() >= vends, 30.0, message="every vend event")
        return [arrived - json.loads(payload)["time"] for arrived, payload in receiver.arrivals]
    finally:
        receiver.close()
        rt.stop()


def plain_publish(port: int, count: int) -> list[float]:
    """Baseline: a plain client's QoS 1 publish to a subscriber through the same broker."""
    receiver = Receiver(port, "bench/plain")
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    try:
        for _ in range(count):
            before = receiver.count()
            publisher.publish("bench/plain", json.dumps({"time": time.time()}), qos=1)
            wait_until(lambda n=before: receiver.count() > n, 10.0, message="the plain message")
        return [arrived - json.loads(payload)["time"] for arrived, payload in receiver.arrivals]
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        receiver.close()


def catch_up(work: Path, port: int, queued: int) -> tuple[float, float]:
    """Seconds until `queued` waiting events are all acknowledged, and all at a subscriber."""
    app = create_app(config(work / f"catchup-{time.monotonic_ns()}",
                            mqtt_url=f"mqtt://127.0.0.1:{port}/bench", start_threads=False,
                            simulator=False))
    rt = app.extensions["vending"]
    store = rt.store
    with store.write() as db:
        for index in range(queued):
            outbox.append(db, outbox.STOCK, {"slot": 1, "name": "Slot 1", "stock": index,
                                             "sold_out": False})
    receiver = Receiver(port, "bench/+/events/#")
    try:
        started = time.time()
        rt.start()
        wait_until(lambda: store.outbox_counts()["queued"] == 0, 300.0, interval=0.02,
                   message="every event acknowledged")
        acknowledged = time.time() - started
        wait_until(lambda: receiver.count() >= queued, 60.0, message="every event received")
        return acknowledged, max(arrived for arrived, _ in receiver.arrivals) - started
    finally:
        receiver.close()
        rt.stop()


def measure(writes: int = 300, vends: int = 100, queued: int = 10000,
            repeats: int = 3) -> dict[str, float]:
    """Every figure of this benchmark (seconds), each with its baseline from the same run."""
    work = tempfile.TemporaryDirectory()
    broker = Broker(Path(work.name))
    try:
        path = Path(work.name)
        plain = [outbox_writes(path, writes, False) for _ in range(repeats)]
        with_events = [outbox_writes(path, writes, True) for _ in range(repeats)]
        latencies: list[float] = []
        for _ in range(repeats):
            latencies += vend_to_subscriber(path, broker.port, vends)
        baseline = plain_publish(broker.port, vends * repeats)
        latencies.sort()
        baseline.sort()
        runs = [catch_up(path, broker.port, queued) for _ in range(repeats)]
        return {
            "writes": writes, "vends": len(latencies), "queued": queued, "repeats": repeats,
            "write_plain": statistics.median(plain),
            "write_event": statistics.median(with_events),
            "publish_median": statistics.median(baseline),
            "publish_p95": baseline[int(len(baseline) * 0.95)],
            "vend_median": statistics.median(latencies),
            "vend_p95": latencies[int(len(latencies) * 0.95)],
            "acked": statistics.median(run[0] for run in runs),
            "received": statistics.median(run[1] for run in runs),
        }
    finally:
        broker.stop()
        work.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--vends", type=int, default=100)
    parser.add_argument("--queued", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"bench_fleet on {platform.machine()} {platform.system()}, Python"
          f" {platform.python_version()}, {os.cpu_count()} CPUs")
    r = measure(args.writes, args.vends, args.queued, args.repeats)
    base, event = r["write_plain"], r["write_event"]
    print(f"outbox writes ({args.writes} slot changes, median of {args.repeats}):")
    print(f"  baseline, no outbox:   {base * 1000:.2f} ms per change ({1 / base:.0f}/s)")
    print(f"  with its event:        {event * 1000:.2f} ms per change ({1 / event:.0f}"
          f" events/s); ratio {event / base:.2f}")
    print(f"vend to subscriber, broker up ({r['vends']:.0f} vends):")
    print(f"  baseline, plain publish: median {r['publish_median'] * 1000:.2f} ms,"
          f" p95 {r['publish_p95'] * 1000:.2f} ms")
    print(f"  vend event via outbox:   median {r['vend_median'] * 1000:.2f} ms,"
          f" p95 {r['vend_p95'] * 1000:.2f} ms; ratio of medians"
          f" {r['vend_median'] / r['publish_median']:.2f}")
    print(f"catch-up of {args.queued} queued events (median of {args.repeats}):")
    print(f"  all acknowledged by the broker: {r['acked']:.2f} s ({args.queued / r['acked']:.0f}"
          f" events/s through the outbox)")
    print(f"  all at a subscriber:            {r['received']:.2f} s")


if __name__ == "__main__":
    main()
