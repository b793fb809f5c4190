"""The controller's parts, built from one Config, started and stopped together."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .alerts import AlertCenter
from .audit import AuditLog
from .clock import SYSTEM_CLOCK, Clock
from .commlog import CommunicationLog
from .config import Config
from .devices.registry import DeviceRegistry
from .devices.simulator import SimulatedDevice
from .errors import StoreUnavailable
from .events import SERIAL_RECONNECT, VEND_FINISHED, EventBus
from .mdns import MdnsAdvertiser, advertised_addresses, advertised_interfaces
from .money import Currency
from .reports import Business
from .service import VendService
from .store import Store
from .store.datadir import DataDirLock
from .store.operations import OperationsStore, Retention, load_machine_id
from .store.sales import SalesStore

logger = logging.getLogger("vending")


class Runtime:
    """Owns the store, the log, the registry, the vend service and every background part."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SYSTEM_CLOCK
        self.started_at = time.time()
        self.log = CommunicationLog(config.log_size)
        self.events = EventBus()
        # Before the database is opened: a second server must never run crash recovery on it.
        self.datadir_lock = DataDirLock(config.data_dir)
        self.datadir_lock.acquire(config.host, config.port)
        self.store = Store(config.database_path, outbox_events=bool(config.mqtt_url),
                           currency=config.currency, busy_timeout=config.store_busy_timeout,
                           wall=self.clock.wall)
        self.machine_id = load_machine_id(config.data_dir)
        self.operations = OperationsStore(self.store, Retention(
            audit_days=config.audit_retention_days, audit_rows=config.audit_max_rows,
            alert_days=config.alert_retention_days, alert_rows=config.alert_max_rows))
        self.operations.prune()
        self.audit = AuditLog(self.operations, config.audit_refusals_per_minute)
        self.store.ensure_slots(config.slots)
        self.currency = Currency(config.currency, config.currency_decimals)
        self.sales = SalesStore(self.store)
        self.business = Business(self.store, self.sales, self.currency, config.slots,
                                 self.machine_id, config.machine_serial)
        # Built before the boards so it hears their first state changes.
        self.alerts = AlertCenter(
            self.store, self.operations, self.events,
            config.alerts, config.slots, self.machine_id, self.clock.wall,
        )
        # Explicit serial ports mean a real machine: the simulator never vends unasked there.
        self.registry = DeviceRegistry(self.events, simulator_fallback=not config.serial_ports)
        self.metrics: Any = None  # vending.metrics.Metrics when config.metrics is on
        if config.metrics:
            from .metrics import Metrics

            self.metrics = Metrics(self.registry.devices)
            self.events.subscribe(self.metrics.vend_finished, {VEND_FINISHED})
            self.events.subscribe(self.metrics.serial_reconnect, {SERIAL_RECONNECT})
        self.service = VendService(
            self.store, self.registry, self.log,
            config.vend, config.slots, self.events, self.clock,
        )
        self.simulator: SimulatedDevice | None = None
        self.serial: Any = None  # the SerialMonitor, when serial ports are used
        # Background parts (serial monitor, discovery, ...) register here to be started
        # and stopped with the runtime, in order.
        self._parts: list[Any] = []
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._started = False
        # Not a transport, so kept out of _parts (whose names /status lists). Only a real
        # port can be advertised; tests that use port 0 get none.
        self.mdns: MdnsAdvertiser | None = None
        if config.mdns and config.port:
            from . import __version__

            self.mdns = MdnsAdvertiser(
                config.mdns_name, config.port, config.discovery_port if config.discovery else None,
                advertised_addresses(config.host), version=__version__,
                # Listening on one address: advertise there only (127.0.0.1 stays on the host).
                interfaces=advertised_interfaces(config.host),
            )

        # The alerts centre queues the events this publishes until it starts.
        self.service.recover_interrupted()
        self.store.ensure_slots(config.slots)
        self.service.prune_keys()
        if config.serial_ports or config.serial_scan:
            from .devices.serial_link import SerialMonitor

            self.serial = SerialMonitor(config.serial, self.registry, self.log,
                                        self.service, self.events, config.serial_ports,
                                        config.serial_scan)
            self.add_part(self.serial)
        if config.simulator:
            self.simulator = SimulatedDevice(
                config.sim_device_id, self.log, motor_time=config.sim_motor_time,
                slots=config.slots,
            )
            self.registry.add(self.simulator)
            self.simulator.start()
        if config.mqtt_url:
            from .mqtt import MqttBridge
            from .view import MachineView

            self.add_part(MqttBridge(
                config.mqtt, events=self.events,
                view=MachineView(self.registry, self.store, self.operations, config.slots,
                                 self.business),
                vend=self.service.request_vend, audit_log=self.audit, machine_id=self.machine_id,
                outbox=self.store, public_url=config.public_url,
            ))
            if self.metrics is not None:
                self.metrics.watch_outbox(self.store.outbox_counts)
        self.fleet: Any = None
        if config.fleet_url:
            from .fleet import FleetView

            self.fleet = FleetView(
                config.fleet_url, config.data_dir / "fleet.sqlite3",
                client_id=f"vending-fleet-{self.machine_id}", keepalive=config.mqtt_keepalive,
                reconnect_min=config.mqtt_reconnect_min, reconnect_max=config.mqtt_reconnect_max,
            )
            self.add_part(self.fleet)
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
        self.alerts.start()
        for part in self._parts:
            part.start()
        if self.mdns is not None:
            self.mdns.start()

    def stop(self) -> None:
        """Finish or record in-flight vends, stop every part, close the store; safe twice."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self.alerts.shutting_down()
        logger.info("stopping: finishing in-flight vends (up to %gs)", self.config.shutdown_grace)
        self.service.stop(self.config.shutdown_grace)
        if self.mdns is not None:
            self.mdns.stop()
        for part in reversed(self._parts):
            try:
                part.stop()
            except Exception:
                logger.exception("stopping %s failed", part)
        self.registry.stop()
        self.service.join()
        # Before the alerts stop, so the events of what it closes become alerts.
        try:
            self.service.recover_interrupted()
        except StoreUnavailable as exc:
            logger.error("open vends stay open until the next start (then unknown): %s", exc)
        self.alerts.stop()
        self.audit.flush()
        self.store.close()
        self.datadir_lock.release()
        logger.info("stopped")
