"""Fixtures and helpers for the serial tests: simulated boards on real ptys, apps that use them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Flask

from vending.sim.serial import SerialBoardSim

# The simulated boards live on POSIX pseudo-terminals.
collect_ignore_glob = [] if hasattr(os, "openpty") else ["test_*.py"]

# Short timeouts so a lost line or a reboot costs a fraction of a second.
FAST_SERIAL = dict(
    simulator=False, serial_scan=False, serial_ack_timeout=0.15, serial_handshake_timeout=0.3,
    serial_rescan_interval=0.1, serial_ping_interval=0.5, vend_timeout=3.0,
)


@pytest.fixture
def make_board(tmp_path: Path) -> Iterator[Callable[..., SerialBoardSim]]:
    """Start simulated boards, each behind a stable symlink in tmp_path; all unplugged at the end."""
    boards: list[SerialBoardSim] = []

    def build(device_id: str = "ESP32_5CCF7F000001", **options: Any) -> SerialBoardSim:
        options.setdefault("motor_time", 0.05)
        options.setdefault("seed", len(boards))
        link = str(tmp_path / f"tty-{device_id}")
        board = SerialBoardSim(device_id, link=link, **options).start()
        boards.append(board)
        return board

    yield build
    for board in boards:
        board.stop()


@pytest.fixture
def serial_app(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """An app driving the given ports, with short serial timeouts and no simulated board."""

    def build(*ports: str, **overrides: Any) -> Flask:
        values = {**FAST_SERIAL, **overrides}
        return make_app(serial_ports=list(ports), **values)

    return build
