"""The controller's parts, built from one Config, started and stopped together."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .commlog import CommunicationLog
from .config import Config
from .devices.registry import DeviceRegistry
from .devices.simulator import SimulatedDevice
from .service import VendService, VendSettings
from .store import Store

logger = logging.getLogger("vending")


class Runtime:
    """Owns the store, the log, the registry, the vend service and every background part."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_at = time.time()
        self.log = CommunicationLog(config.log_size)
        self.store = Store(config.database_path)
        self.registry = DeviceRegistry()
        self.service = VendService(
            self.store, self.registry, self.log,
            VendSettings(
                slots=config.slots,
                vend_timeout=config.vend_timeout,
                max_age=config.vend_max_age,
                queue_limit=config.device_queue_limit,
                idempotency_retention=config.idempotency_retention_hours * 3600.0,
            ),
        )
        self.simulator: SimulatedDevice | None = None
        # Background parts (serial monitor, discovery, ...) register here to be started
        # and stopped with the runtime, in order.
        self._parts: list[Any] = []
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._started = False

        for txn in self.store.recover_interrupted():
            logger.warning(
                "vend %s (slot %d on %s) was still %s when the server stopped; recorded as"
                " unknown: check the machine", txn.id, txn.slot, txn.device_id, "open",
            )
        self.store.ensure_slots(config.slots)
        self.service.prune_keys()
        if config.simulator:
            self.simulator = SimulatedDevice(
                config.sim_device_id, self.log, motor_time=config.sim_motor_time,
                slots=config.slots,
            )
            self.registry.add(self.simulator)
            self.simulator.start()
        from .devices.wifi import build_wifi

        self.wifi, self.discovery = build_wifi(self)

    def add_part(self, part: Any) -> None:
        """A background part with start() and stop(); started now if the runtime runs."""
        self._parts.append(part)
        if self._started:
            part.start()

    @property
    def transports(self) -> list[str]:
        """Names of what is running, for the banner and /status."""
        names = [getattr(part, "name", type(part).__name__) for part in self._parts]
        if self.simulator is not None:
            names.append("simulation")
        return names

    def start(self) -> None:
        """Start the background parts."""
        self._started = True
        for part in self._parts:
            part.start()

    def stop(self) -> None:
        """Finish or record in-flight vends, stop every part, close the store; safe twice."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        logger.info("stopping: finishing in-flight vends (up to %gs)", self.config.shutdown_grace)
        self.service.stop(self.config.shutdown_grace)
        for part in reversed(self._parts):
            try:
                part.stop()
            except Exception:
                logger.exception("stopping %s failed", part)
        self.registry.stop()
        self.service.join()
        for txn in self.store.recover_interrupted():
            logger.warning("vend %s left open at shutdown; recorded as unknown", txn.id)
        self.store.close()
        logger.info("stopped")
