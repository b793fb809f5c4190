"""Serial vend round trip over a pty (simulated v2 board, motor time 0), next to the wire time.

Run: PYTHONPATH=src python bench/bench_serial.py [--vends 200] [--repeats 5]   (POSIX: needs ptys)

Figures are medians over repeated runs. The "wire" figure is not measured: it is the time
the same bytes (VEND, ACK, DONE) take on a real 115200-baud 8N1 line (10 bits a byte),
the floor a real board cannot beat. The HTTP figures put the serial path next to a
baseline measured in the same run: the same POST /vend/1 on the in-process simulated board.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from vending import Config, create_app
from vending.commlog import CommunicationLog
from vending.config import SerialSettings
from vending.devices.base import VendRequest
from vending.devices.registry import DeviceRegistry
from vending.devices.serial_link import SerialMonitor
from vending.protocol import Ack, Done, Vend, format_line
from vending.serving import BackgroundServer
from vending.sim.serial import SerialBoardSim
from vending.waiting import wait_until

BAUD = 115200


def wire_ms() -> tuple[float, int]:
    """Milliseconds the lines of one vend take at 115200 8N1, and their byte count."""
    rid = "3F2A9C01B7E4"
    size = sum(len(format_line(m)) for m in (Vend(id=rid, slot=1), Ack(id=rid),
                                              Done(id=rid, result="success")))
    return size * 10 / BAUD * 1000, size


def device_latencies(board: SerialBoardSim, count: int) -> list[float]:
    """Seconds per vend straight on the SerialDevice: no HTTP, no database."""
    registry = DeviceRegistry()
    monitor = SerialMonitor(SerialSettings(handshake_timeout=0.2), registry, CommunicationLog(1000),
                            None, registry.events, [board.path])
    monitor.scan_once()
    wait_until(lambda: monitor.devices() and monitor.devices()[0].can_vend, 10,
               message="the simulated board to come online")
    device = monitor.devices()[0]
    latencies = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            outcome = device.run_vend(VendRequest(secrets.token_hex(6), 1, 10.0), lambda: None)
            latencies.append(time.perf_counter() - started)
            if outcome.state != "success":
                raise RuntimeError(f"vend answered {outcome.state}: {outcome.message}")
    finally:
        monitor.stop()
    return latencies


def http_latencies(port: int, count: int) -> list[float]:
    """Seconds per POST /vend/1 on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("POST", "/vend/1")
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"POST /vend/1 answered {response.status}")
    conn.close()
    return latencies


def serve(data_dir: str, **overrides: object):
    config = Config(data_dir=Path(data_dir), host="127.0.0.1", port=0, serial_scan=False,
                    discovery=False, sim_motor_time=0.0, device_queue_limit=1000,
                    serial_handshake_timeout=0.2, **overrides)
    app = create_app(config)
    return app, BackgroundServer(app).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vends", type=int, default=200, help="vends per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()},"
          f" {platform.machine()} {platform.system()}")
    wire, size = wire_ms()
    print(f"serial vend round trip, simulated v2 board on a pty, motor time 0,"
          f" {args.vends} vends x {args.repeats} repeats")

    with tempfile.TemporaryDirectory() as tmp:
        board = SerialBoardSim(motor_time=0.0, link=os.path.join(tmp, "tty"), boot_delay=0.0).start()
        try:
            device_ms = statistics.median(
                statistics.median(device_latencies(board, args.vends)) for _ in range(args.repeats)
            ) * 1000
            print(f"  device level (VEND -> ACK -> DONE) median {device_ms:7.3f} ms")
            print(f"  same {size} bytes on a 115200-baud wire   {wire:7.3f} ms  (computed)")
            print(f"  ratio pty/wire: {device_ms / wire:.2f}x")

            serial_app, serial_server = serve(os.path.join(tmp, "serial"), simulator=False,
                                              serial_ports=[board.path])
            sim_app, sim_server = serve(os.path.join(tmp, "sim"))
            try:
                runtime = serial_app.extensions["vending"]
                wait_until(lambda: any(d.can_vend for d in runtime.registry.devices()), 10,
                           message="the serial board to come online in the app")
                serial_medians, sim_medians = [], []
                for _ in range(args.repeats):
                    serial_medians.append(statistics.median(http_latencies(serial_server.port,
                                                                           args.vends)))
                    sim_medians.append(statistics.median(http_latencies(sim_server.port, args.vends)))
                serial_http = statistics.median(serial_medians) * 1000
                sim_http = statistics.median(sim_medians) * 1000
                print(f"  POST /vend/1, serial board        median {serial_http:7.3f} ms")
                print(f"  POST /vend/1, simulated board     median {sim_http:7.3f} ms  (baseline)")
                print(f"  ratio serial/baseline: {serial_http / sim_http:.2f}x")
            finally:
                for app, server in ((serial_app, serial_server), (sim_app, sim_server)):
                    server.stop()
                    app.extensions["vending"].stop()
        finally:
            board.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
