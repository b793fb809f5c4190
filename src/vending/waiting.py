"""Waiting with a deadline and a condition: one helper for the tests, bench/ and the doctor.

Standard library only, so `check_system.py` can use it before the requirements are installed.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """The condition stayed false until the deadline (an AssertionError, so a test fails)."""


def poll_until(condition: Callable[[], T], timeout: float, interval: float = 0.01) -> T:
    """The first truthy value of `condition` before the deadline, else its last (falsy) value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_until(condition: Callable[[], T], timeout: float = 5.0, interval: float = 0.01,
               message: str = "condition") -> T:
    """The first truthy value of `condition`; raise WaitTimeout naming `message` at the deadline."""
    value = poll_until(condition, timeout, interval)
    if not value:
        raise WaitTimeout(f"timed out after {timeout}s waiting for {message}")
    return value
