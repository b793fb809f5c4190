"""Shared set-up for the WiFi tests: a served app with discovery, and simulated boards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Flask
from helpers import wait_until

from vending.runtime import Runtime
from vending.serving import BackgroundServer
from vending.sim.wifi import WifiBoard


@dataclass
class WifiEnv:
    """One served controller and the boards a test started against it."""

    app: Flask
    server: BackgroundServer
    boards: list[WifiBoard] = field(default_factory=list)

    @property
    def rt(self) -> Runtime:
        return self.app.extensions["vending"]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def discovery_port(self) -> int:
        assert self.rt.discovery is not None
        return self.rt.discovery.port

    def board(self, device_id: str | None = None, **options: Any) -> WifiBoard:
        """A simulated board that discovers this server on 127.0.0.1, started."""
        options.setdefault("discovery_target", ("127.0.0.1", self.discovery_port))
        options.setdefault("motor_time", 0.02)
        options.setdefault("poll_wait", 5.0)
        if options.get("legacy"):
            options.setdefault("http_port", int(self.server.port))
            options.setdefault("source_port", 0)
            options.setdefault("legacy_interval", 0.1)
        board = WifiBoard(device_id, **options)
        self.boards.append(board)
        return board.start()

    def device(self, device_id: str) -> Any:
        return self.rt.registry.get(device_id)

    def status(self, device_id: str) -> str | None:
        device = self.device(device_id)
        return device.status if device is not None else None

    def approve(self, device_id: str) -> dict[str, Any]:
        wait_until(lambda: self.device(device_id) is not None, message=f"{device_id} to appear")
        response = requests.post(f"{self.url}/esp32/devices/{device_id}/approve", timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def online(self, board: WifiBoard) -> WifiBoard:
        """Approve the board and wait until it polls."""
        self.approve(board.device_id)
        # Our firmware is online once a poll is held; the earlier one may poll without a hold.
        wait_until(lambda: self.status(board.device_id) == "online" and (
            board.legacy or self.device(board.device_id).polls_held > 0),
            message=f"{board.device_id} online and polling")
        return board

    def vend(self, slot: int, wait: float = 5.0) -> requests.Response:
        return requests.post(f"{self.url}/vend/{slot}?wait={wait:g}", timeout=wait + 5)

    def close(self) -> None:
        for board in self.boards:
            board.request_stop()
        self.rt.stop()  # ends held polls at once
        for board in self.boards:
            board.stop()
        self.server.stop()


def start_env(make_app: Any, **overrides: Any) -> WifiEnv:
    """Build and serve an app with UDP discovery on an ephemeral port and no simulated board."""
    values: dict[str, Any] = dict(simulator=False, discovery=True, discovery_port=0,
                                  wifi_offline_after=1.0)
    values.update(overrides)
    app = make_app(**values)
    server = BackgroundServer(app).start()
    rt = app.extensions["vending"]
    if rt.discovery is not None:
        rt.discovery.http_port = int(server.port)
    return WifiEnv(app, server)
