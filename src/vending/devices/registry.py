"""The device registry: the one owner of every board the controller knows."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from ..errors import DeviceNotReady, DeviceOffline, NotFound
from ..events import (
    DEVICE_ADDED,
    DEVICE_PENDING_APPROVAL,
    DEVICE_REMOVED,
    DEVICE_STATE,
    EventBus,
)
from .base import OFFLINE, PENDING_APPROVAL, SIMULATION, TRANSPORT_PRIORITY, Device

logger = logging.getLogger("vending.devices")

class DeviceRegistry:
    """Boards by id, the operator's choice of active board, and automatic selection."""

    def __init__(self, events: EventBus | None = None, simulator_fallback: bool = True) -> None:
        # Copy-on-write: replaced whole under _lock, never changed in place, so readers (every
        # status poll, every vend's choice) take no lock. A lock every poll took, on a thread
        # that then waited for the GIL, made all the others queue behind it: /status fell
        # from 5,000 to 130 answers a second for seconds at a time (bench/bench_front.py).
        self._devices: dict[str, Device] = {}
        self._ordered: tuple[Device, ...] = ()
        self._active_id: str | None = None
        self._lock = threading.RLock()
        self.events = events or EventBus()
        # The simulator vends unasked only on a machine with no real board: none configured
        # (simulator_fallback) and none seen since start. It is never a fail-over target,
        # so an unplugged board gives "not dispensed", never a simulated "success".
        self._simulator_fallback = simulator_fallback
        self._real_seen = False

    def _state_changed(self, device: Device, previous: str) -> None:
        if self.get(device.device_id) is device:
            self.events.publish(DEVICE_STATE, device_id=device.device_id,
                                transport=device.transport, state=device.state,
                                previous=previous, detail=device.info().get("status_detail", ""))
            if device.state == PENDING_APPROVAL:
                self.events.publish(DEVICE_PENDING_APPROVAL, device_id=device.device_id,
                                    address=device.info().get("ip_address"))

    def add(self, device: Device) -> Device:
        """Register a board; a board that comes back under the same id replaces its old entry."""
        with self._lock:
            old = self._devices.get(device.device_id)
            self._publish({**self._devices, device.device_id: device})
            if device.transport != SIMULATION:
                self._real_seen = True
        device.on_state_change = self._state_changed
        if old is not None and old is not device:
            old.on_state_change = None
            old.stop()
        logger.info("device added: %s (%s)", device.device_id, device.transport)
        self.events.publish(DEVICE_ADDED, device=device.info())
        return device

    def remove(self, device_id: str) -> None:
        """Forget a board and stop it."""
        with self._lock:
            remaining = dict(self._devices)
            device = remaining.pop(device_id, None)
            self._publish(remaining)
            if self._active_id == device_id:
                self._active_id = None
        if device is not None:
            device.on_state_change = None
            device.stop()
            self.events.publish(DEVICE_REMOVED, device_id=device_id)

    def _publish(self, devices: dict[str, Device]) -> None:
        """Under _lock: make `devices` the registry's boards, for readers without the lock."""
        self._devices = devices
        self._ordered = tuple(sorted(
            devices.values(), key=lambda d: (TRANSPORT_PRIORITY.get(d.transport, 9), d.created_at)))

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def require(self, device_id: str) -> Device:
        device = self.get(device_id)
        if device is None:
            raise NotFound(f"no device {device_id!r}; GET /esp32/devices/list shows the known ones")
        return device

    def devices(self) -> list[Device]:
        """Every board, preferred first: serial, then WiFi, then simulation."""
        return list(self._ordered)

    # Selection

    @property
    def active_device_id(self) -> str | None:
        """The board the operator chose, or None for automatic selection."""
        return self._active_id

    def select(self, device_id: str) -> Device:
        """Make one board the active one; it must be known and able to vend."""
        device = self.require(device_id)
        if device.state == OFFLINE:
            raise DeviceOffline(f"device {device_id} is offline; plug it in or pick another")
        if not device.can_vend:
            raise DeviceNotReady(f"device {device_id} cannot vend now ({device.status})")
        with self._lock:
            self._active_id = device_id
        logger.info("active device selected: %s", device_id)
        return device

    def auto_select(self) -> None:
        """Go back to choosing the board automatically."""
        with self._lock:
            self._active_id = None
        logger.info("active device: automatic selection")

    @property
    def simulator_may_stand_in(self) -> bool:
        """True while the simulator may vend without being selected: no real board configured or seen."""
        return self._simulator_fallback and not self._real_seen

    @property
    def real_board_expected(self) -> bool:
        """A real board is configured or has been seen since start."""
        return not self.simulator_may_stand_in

    def choose(self, exclude: Iterable[str] = ()) -> Device | None:
        """The board the next vend goes to: the chosen one if it can vend, else the best other.

        The simulator is chosen only when selected, or while `simulator_may_stand_in`.
        """
        excluded = set(exclude)
        active_id = self._active_id
        active = self._devices.get(active_id) if active_id else None
        if active is not None and active.can_vend and active.device_id not in excluded:
            return active
        for device in self.devices():
            if device.transport == SIMULATION and not self.simulator_may_stand_in:
                continue
            if device.can_vend and device.device_id not in excluded:
                return device
        return None

    def communication_mode(self) -> dict[str, Any]:
        """What a vend would use right now."""
        device = self.choose()
        return {
            "mode": device.transport if device else "none",
            "selection": "manual" if self._active_id else "auto",
            "active_device": device.device_id if device else None,
            "selected_device": self._active_id,
        }

    def stop(self) -> None:
        """Stop every board."""
        for device in self.devices():
            device.stop()
