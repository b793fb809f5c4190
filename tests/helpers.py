"""Helpers shared by the tests: a test Config and waiting with a deadline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from vending import Config


def test_config(data_dir: Path, **overrides: Any) -> Config:
    """A Config for tests: temporary data, no scanning, no discovery, a fast simulated motor."""
    values: dict[str, Any] = dict(
        data_dir=data_dir, host="127.0.0.1", port=0, serial_scan=False, discovery=False,
        sim_motor_time=0.05, vend_timeout=3.0, shutdown_grace=1.0,
    )
    values.update(overrides)
    return Config(**values)


test_config.__test__ = False  # type: ignore[attr-defined]


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01,
               message: str = "condition") -> Any:
    """Poll `condition` until it is truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
