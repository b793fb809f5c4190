"""The knobs of the WiFi path, taken from Config when the hub is built."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class WifiSettings:
    """Poll holds, liveness, and the bounds of the approval waiting list."""

    poll_hold: float = 25.0
    legacy_hold: float = 1.0
    offline_after: float = 10.0
    auto_approve: bool = False
    max_held_polls: int = 100
    busy_poll_again_ms: int = 2000
    max_pending: int = 64
    max_pending_per_source: int = 4
    pending_expiry: float = 900.0
