"""A machine to sell from in tests: the app driving a simulated board on a real pty.

Sales tests use a serial board, not the in-process simulated device, because a vend the
simulated device serves dispensed nothing and must never count as a sale (issue 13).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask
from helpers import test_config, wait_until

from vending import create_app
from vending.sim.serial import SerialBoardSim

BOARD_ID = "ESP32_5CCF7F00B001"
# Short serial timeouts, as tests/serial/conftest.py uses, and no simulated device.
SHOP_CONFIG: dict[str, Any] = dict(
    simulator=False, serial_scan=False, serial_ack_timeout=0.15, serial_handshake_timeout=0.3,
    serial_rescan_interval=0.1, serial_ping_interval=0.5, vend_timeout=3.0,
    device_queue_limit=100,
)


@contextmanager
def shop(data_dir: Path, **overrides: Any) -> Iterator[tuple[Flask, SerialBoardSim]]:
    """An app with one serial board online; both stopped at the end."""
    board = SerialBoardSim(BOARD_ID, link=str(data_dir.parent / f"tty-{data_dir.name}"),
                           motor_time=0.0, seed=1).start()
    app = create_app(test_config(data_dir, serial_ports=[board.path],
                                 **{**SHOP_CONFIG, **overrides}))
    try:
        client = app.test_client()
        wait_until(lambda: any(d["device_id"] == BOARD_ID and d["status"] == "online"
                               for d in client.get("/esp32/devices/list").get_json()["devices"]),
                   message="the serial board online")
        yield app, board
    finally:
        app.extensions["vending"].stop()
        board.stop()


def ledger(app: Flask) -> list[dict[str, Any]]:
    """Every sale, read straight from the database (not through any report)."""
    store = app.extensions["vending"].store
    return [dict(row) for row in store.query("SELECT * FROM sales ORDER BY id")]
