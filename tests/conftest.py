"""Fixtures that build real objects on temporary directories, ports and sockets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Flask
from helpers import test_config, wait_until
from wifi_fixtures import WifiEnv, start_env

from vending import create_app
from vending.serving import BackgroundServer


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps on this test's temporary directory; each is stopped at the end."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = create_app(test_config(tmp_path / "data", **overrides))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["vending"].stop()


@pytest.fixture
def board_app(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Apps vending through a simulated serial board on a real pty (a real board to the server:
    its vends take stock, unlike the simulator's); the simulator stays on and never stands in."""
    if not hasattr(os, "openpty"):
        pytest.skip("simulated serial boards need POSIX ptys")
    from vending.sim.serial import SerialBoardSim

    boards: list[SerialBoardSim] = []

    def build(motor_time: float = 0.05, **overrides: Any) -> Flask:
        board = SerialBoardSim("ESP32_5CCF7F00B0A1", link=str(tmp_path / "tty-board"),
                               motor_time=motor_time, seed=0).start()
        boards.append(board)
        values = dict(serial_ports=[board.link], serial_ack_timeout=0.15,
                      serial_handshake_timeout=0.3, serial_rescan_interval=0.1)
        values.update(overrides)
        app = make_app(**values)
        wait_until(lambda: any(d["device_id"] == board.device_id and d["status"] == "online"
                               for d in app.test_client().get("/esp32/devices/list").get_json()["devices"]),
                   message="the board to be online")
        return app

    yield build
    for board in boards:
        board.stop()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def live_server(app: Flask) -> Iterator[BackgroundServer]:
    """The app served by waitress on an ephemeral port of 127.0.0.1."""
    server = BackgroundServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def wifi(make_app: Callable[..., Any]) -> Iterator[Callable[..., WifiEnv]]:
    """Apps serving the WiFi board endpoints on loopback (wifi_fixtures.start_env); each is
    closed at the end."""
    envs: list[WifiEnv] = []

    def build(**overrides: Any) -> WifiEnv:
        env = start_env(make_app, **overrides)
        envs.append(env)
        return env

    yield build
    for env in envs:
        env.close()
