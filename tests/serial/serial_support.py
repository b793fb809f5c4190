"""Helpers for the serial tests: read a board's entry in the device list, wait for a status."""

from __future__ import annotations

from typing import Any

from flask import Flask
from helpers import wait_until


def device_info(app: Flask, device_id: str) -> dict[str, Any] | None:
    """The board's entry in /esp32/devices/list, or None."""
    body = app.test_client().get("/esp32/devices/list").get_json()
    return next((d for d in body["devices"] if d["device_id"] == device_id), None)


def wait_online(app: Flask, device_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """Wait until the board is listed online and return its entry."""
    return wait_until(
        lambda: (info := device_info(app, device_id)) and info["status"] == "online" and info,
        timeout=timeout, message=f"{device_id} online",
    )


def wait_status(app: Flask, device_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
    return wait_until(
        lambda: (info := device_info(app, device_id)) and info["status"] == status and info,
        timeout=timeout, message=f"{device_id} {status}",
    )
