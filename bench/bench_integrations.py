"""Do alerts, webhooks and MQTT slow a vend down? Vend round trips with and without them.

Run: python bench/bench_integrations.py [--vends 100] [--repeats 5]

Every vend is made to fail (a simulated jam) so each one raises an alert. The baseline is
the same failing vend with no webhook and no broker, measured in the same run. The
integrated run posts every alert to a webhook receiver that takes 200 ms to answer and, when
mosquitto is installed, publishes everything to a local broker with commands allowed.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from vending import Config, create_app
from vending.serving import BackgroundServer
from vending.waiting import wait_until


class SlowReceiver(BaseHTTPRequestHandler):
    """A webhook receiver that takes 200 ms per post."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(0.2)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vend_latencies(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        conn.request("POST", f"/vend/{index % 5 + 1}")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - started)
    conn.close()
    return latencies


def run(label: str, count: int, repeats: int, **overrides: Any) -> float:
    medians = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as data_dir:
            config = Config(data_dir=Path(data_dir), host="127.0.0.1", port=0, serial_scan=False,
                            discovery=False, sim_motor_time=0.0, device_queue_limit=1000,
                            **overrides)
            app = create_app(config)
            runtime = app.extensions["vending"]
            runtime.simulator.inject_fault("jam", count)
            server = BackgroundServer(app).start()
            try:
                medians.append(statistics.median(vend_latencies(server.port, count)))
            finally:
                server.stop()
                runtime.stop()
    value = statistics.median(medians)
    print(f"  {label:<44} median {value * 1000:7.2f} ms")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vends", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()},"
          f" {platform.machine()} {platform.system()}")
    print(f"failing vend round trip (each raises an alert), {args.vends} vends x {args.repeats}:")

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), SlowReceiver)
    receiver.daemon_threads = True
    threading.Thread(target=receiver.serve_forever, name="bench-webhook", daemon=True).start()
    webhook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"

    broker = None
    mosquitto = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    extra: dict[str, Any] = {}
    work = tempfile.TemporaryDirectory()
    if mosquitto:
        port = free_port()
        conf = Path(work.name) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        broker = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_until(lambda: _accepts(port), 10, interval=0.05, message="mosquitto to listen")
        extra = dict(mqtt_url=f"mqtt://127.0.0.1:{port}/bench", mqtt_commands=True)
    try:
        baseline = run("baseline: alerts only (always on)", args.vends, args.repeats)
        integrated = run("webhook (200 ms receiver)" + (" + MQTT" if broker else ""),
                         args.vends, args.repeats, webhook_urls=[webhook], **extra)
        print(f"  ratio integrated / baseline: {integrated / baseline:.2f}")
        if broker is None:
            print("  (mosquitto not installed: MQTT not measured)")
    finally:
        receiver.shutdown()
        if broker is not None:
            broker.terminate()
            broker.wait(5)
        work.cleanup()


if __name__ == "__main__":
    main()
