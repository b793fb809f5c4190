"""Talk to ESP32 vending boards over USB serial, from a terminal or from Python.

    python esp32_serial.py --list                 candidate ports, VID:PID, why each is (not) used
    python esp32_serial.py PORT identify          who the board is (id, firmware, protocol, slots)
    python esp32_serial.py PORT status            is it ready (v2: PING/PONG; v1: STATUS)
    python esp32_serial.py PORT vend N            turn the motor of slot N once
    python esp32_serial.py PORT monitor           print every line in and out until Ctrl+C

PORT is a device (/dev/ttyUSB0, COM5), a pty, or a pyserial URL (socket://host:port).
From Python: `list_boards()`, and `with open_board(port) as board: board.vend(3)`.
It uses the controller's own serial code (vending.devices.serial_link), so it speaks
exactly what the server speaks: protocol v2 with request ids, or legacy v1. Stop the
controller first: a port can be open in one program at a time.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any

from vending.commlog import CommunicationLog
from vending.config import SerialSettings
from vending.devices.base import VendOutcome, VendRequest
from vending.devices.registry import DeviceRegistry
from vending.devices.serial_link import SerialDevice, SerialMonitor
from vending.devices.serial_ports import PortCandidate, scan_ports
from vending.events import EventBus

__all__ = ["Board", "BoardError", "list_boards", "open_board"]


class BoardError(Exception):
    """The board could not be reached; the message says what to do."""


def list_boards() -> list[PortCandidate]:
    """Every serial port the system lists, each with `taken` and `why`; opens nothing."""
    return scan_ports()


class Board:
    """One board on one port, driven by the controller's serial link (no web server, no store)."""

    def __init__(self, port: str, settings: SerialSettings | None = None) -> None:
        self.port = port
        self.log = CommunicationLog(5000)
        self.registry = DeviceRegistry(EventBus())
        self.monitor = SerialMonitor(settings or SerialSettings(), self.registry, self.log, None,
                                     self.registry.events, [port], scan=False)

    @property
    def device(self) -> SerialDevice | None:
        devices = self.monitor.devices()
        return devices[0] if devices else None

    def open(self, timeout: float = 10.0) -> Board:
        """Open the port and wait for the board's handshake; raise BoardError saying why not."""
        self.monitor.scan_once()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            device = self.device
            if device is not None and device.can_vend:
                return self
            problem = self.monitor.problem(self.port)
            if problem is not None and device is None and not self.monitor.is_open(self.port):
                self.close()
                raise BoardError(problem)
            time.sleep(0.05)
        self.close()
        raise BoardError(f"no vending board answered on {self.port} within {timeout:g}s")

    def identify(self) -> dict[str, Any]:
        """Who the board is: id, firmware, protocol, slots, port, boot id."""
        return self._require().info()

    def status(self) -> dict[str, Any]:
        """Ask the board whether it is ready."""
        device = self._require()
        connection = device.connection
        assert connection is not None
        started = time.monotonic()
        if connection.protocol == 2:
            pong = connection.ping()
            if pong is None:
                return {"device_id": device.device_id, "answered": False}
            return {"device_id": device.device_id, "answered": True, "state": pong.state,
                    "boot_id": pong.boot, "round_trip_ms": round((time.monotonic() - started) * 1000, 1)}
        lines = connection.v1_command("STATUS", 2.0)
        return {"device_id": device.device_id, "answered": bool(lines), "lines": lines}

    def vend(self, slot: int, timeout: float = 20.0, request_id: str | None = None) -> VendOutcome:
        """Turn the motor of `slot` once and wait for the board's outcome."""
        device = self._require()
        request = VendRequest(request_id or secrets.token_hex(6), slot, timeout)
        return device.run_vend(request, lambda: None)

    def lines(self, since: int = 0) -> list[dict[str, Any]]:
        """Communication log entries newer than `since` (every line in and out)."""
        entries, _ = self.log.since(since, limit=5000)
        return [entry.to_dict() for entry in entries]

    def close(self) -> None:
        """Close the port; safe to call twice."""
        self.monitor.stop()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require(self) -> SerialDevice:
        device = self.device
        if device is None or device.connection is None or not device.connection.usable:
            raise BoardError(f"the board on {self.port} is not connected")
        return device


def open_board(port: str, timeout: float = 10.0, settings: SerialSettings | None = None) -> Board:
    """Open `port` and wait until the board has identified itself."""
    return Board(port, settings).open(timeout)


def _print_list(as_json: bool) -> int:
    candidates = list_boards()
    if as_json:
        print(json.dumps([{**c.__dict__, "vid_pid": c.vid_pid} for c in candidates], indent=2))
        return 0
    if not candidates:
        print("No serial ports found. Plug the board in with a data (not charge-only) USB cable.")
        return 0
    for c in candidates:
        mark = "USE " if c.taken else "skip"
        print(f"{mark} {c.path:<40} {c.vid_pid:<9} {c.why}")
        if c.description and c.description != "n/a":
            print(f"     {'':<40} {'':<9} {c.description}")
    return 0


def _show(value: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(value, indent=2, default=str))
        return
    for key, item in value.items():
        print(f"{key}: {item}")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python esp32_serial.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list serial ports and exit")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the board")
    parser.add_argument("port", nargs="?", help="device path, pty or pyserial URL")
    parser.add_argument("action", nargs="?", choices=("identify", "status", "vend", "monitor"),
                        default="identify")
    parser.add_argument("slot", nargs="?", type=int, help="slot number for vend")
    args = parser.parse_args(argv)
    if args.list:
        return _print_list(args.json)
    if not args.port:
        parser.error("give a PORT (see --list) or --list")
    if args.action == "vend" and args.slot is None:
        parser.error("vend needs a slot number: python esp32_serial.py PORT vend 3")
    try:
        board = open_board(args.port, args.timeout)
    except BoardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with board:
        if args.action == "identify":
            _show(board.identify(), args.json)
        elif args.action == "status":
            status = board.status()
            _show(status, args.json)
            return 0 if status["answered"] else 1
        elif args.action == "vend":
            outcome = board.vend(args.slot, timeout=max(args.timeout, 20.0))
            _show({"status": outcome.state, "message": outcome.message, "reason": outcome.reason},
                  args.json)
            return 0 if outcome.state == "success" else 1
        else:
            return _monitor(board)
    return 0


def _monitor(board: Board) -> int:
    print(f"Lines in (rx) and out (tx) on {board.port}; Ctrl+C to stop.", file=sys.stderr)
    last = 0
    try:
        while True:
            for entry in board.lines(last):
                last = entry["id"]
                stamp = time.strftime("%H:%M:%S", time.localtime(entry["time"]))
                print(f"{stamp} {entry['direction']:>5} {entry['message']}", flush=True)
            time.sleep(0.1)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
