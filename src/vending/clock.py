"""Where the controller reads the time: the wall clock for people, the monotonic one for durations.

A Pi without a real-time clock jumps its wall clock at NTP sync, so every wait, expiry and
retry is measured on the monotonic clock; the wall clock only stamps the ledger. Tests pass
their own Clock to make the wall clock jump without touching the system's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Clock:
    """The two clocks, injectable as one seam."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic


SYSTEM_CLOCK = Clock()
