"""Finds, opens and re-opens serial ports, and hands identified boards to the registry.

The part Runtime starts. It joins each connection to its board: the connection calls back
(identified, handshake failed, ended), and the board is attached as the connection's listener.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ...commlog import ERROR, CommunicationLog
from ...events import SERIAL_RECONNECT, EventBus
from ...threads import Worker
from ..base import OFFLINE, PORT_BUSY, SERIAL, Device, OnSent, VendOutcome, VendRequest
from ..registry import DeviceRegistry
from ..serial_ports import PortBusy, SerialPortError, open_port, scan_ports
from .connection import SerialConnection
from .device import SerialDevice, VendLedger
from .settings import SerialSettings

logger = logging.getLogger("vending.serial")


class PortPlaceholder(Device):
    """A port we cannot use yet (busy) and whose board we have not met: shown, never chosen."""

    transport = SERIAL

    def __init__(self, port: str, log: CommunicationLog) -> None:
        super().__init__(f"serial:{port}", log)
        self.port = port

    def info(self) -> dict[str, Any]:
        data = super().info()
        data["port"] = self.port
        return data

    @property
    def can_vend(self) -> bool:
        return False

    def vend(self, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        """Never sends anything: the port is not usable."""
        return VendOutcome.not_sent("offline", f"{self.port} is not usable: {self.info()['status_detail']}")


class SerialMonitor:
    """Finds, opens and re-opens serial ports; the part Runtime starts and stops."""

    name = "serial"

    def __init__(self, settings: SerialSettings, registry: DeviceRegistry, log: CommunicationLog,
                 ledger: VendLedger | None, events: EventBus,
                 ports: list[str] | tuple[str, ...] = (), scan: bool = False) -> None:
        self.settings = settings
        self.registry = registry
        self.log = log
        self.ledger = ledger
        self.events = events
        self.ports = list(ports)
        self.scan = scan
        self._connections: dict[str, SerialConnection] = {}
        self._devices: dict[str, SerialDevice] = {}
        self._placeholders: dict[str, PortPlaceholder] = {}
        self._port_boards: dict[str, str] = {}  # port -> id of the board last seen there
        self._problems: dict[str, str] = {}  # port -> last open error told to the log
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}  # port -> handshakes failed in a row
        self._busy: dict[str, int] = {}  # port -> open attempts found busy in a row
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._worker = Worker("serial-monitor", self._run, wake=self._wake.set)
        self.scans = 0  # completed rescans, for tests and the status page

    def start(self) -> None:
        """Start the rescan thread (first scan at once)."""
        self._worker.start()

    def stop(self) -> None:
        """Stop rescanning and close every port; safe to call twice."""
        self._worker.stop()
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.close("stopped")

    def rescan_now(self) -> None:
        """Ask for a rescan without waiting for the interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._worker.stopping.is_set():
            try:
                self.scan_once()
            except Exception:
                logger.exception("serial rescan failed")
            self._wake.wait(self.settings.rescan_interval)
            self._wake.clear()

    def candidates(self) -> list[str]:
        """Ports to use: the explicit ones, then auto-detected ESP32 bridges."""
        ports = list(self.ports)
        if self.scan:
            try:
                found = scan_ports()
            except Exception as exc:
                logger.debug("listing serial ports failed: %s", exc)
                found = []
            ports += [c.path for c in found if c.taken and c.path not in ports]
        return ports

    def scan_once(self) -> None:
        """Open every candidate port that is not open yet."""
        now = time.monotonic()
        for port in self.candidates():
            if self._worker.stopping.is_set():
                return
            with self._lock:
                if port in self._connections or self._retry_at.get(port, 0.0) > now:
                    continue
            self._open(port)
        self.scans += 1

    def _open(self, port: str) -> None:
        try:
            ser = open_port(port, self.settings.baudrate)
        except PortBusy as exc:
            self._port_problem(port, PORT_BUSY, str(exc))
            return
        except SerialPortError as exc:
            self._port_problem(port, OFFLINE, str(exc))
            return
        with self._lock:
            self._problems.pop(port, None)
            self._busy.pop(port, None)
            connection = self.connection_for(port, ser)
            self._connections[port] = connection
        connection.start()

    def connection_for(self, port: str, ser: Any) -> SerialConnection:
        """A connection on an open port, wired to this monitor (not started)."""
        return SerialConnection(port, ser, self.settings, self.log,
                                on_identified=self.board_identified,
                                on_handshake_failed=self.handshake_failed,
                                on_ended=self.connection_ended)

    def _port_problem(self, port: str, state: str, detail: str) -> None:
        first = self._problems.get(port) != detail
        self._problems[port] = detail
        (logger.warning if first else logger.debug)("serial %s: %s", port, detail)
        if state == PORT_BUSY:
            # Every open attempt may pulse DTR/RTS and reset the board the other program
            # is talking to, so a busy port is retried less and less often (capped).
            with self._lock:
                count = self._busy.get(port, 0) + 1
                self._busy[port] = count
                delay = self.settings.rescan_interval * min(2 ** (count - 1), 5)
                self._retry_at[port] = time.monotonic() + delay
        with self._lock:
            board = self._devices.get(self._port_boards.get(port, ""))
        if board is not None:
            connection = board.connection
            if connection is None or connection.lost.is_set():
                board.set_state(state, detail)
            return
        if state != PORT_BUSY:
            return
        with self._lock:
            placeholder = self._placeholders.get(port)
            if placeholder is None:
                placeholder = PortPlaceholder(port, self.log)
                self._placeholders[port] = placeholder
                self.registry.add(placeholder)
        placeholder.set_state(PORT_BUSY, detail)

    def board_identified(self, connection: SerialConnection) -> SerialDevice:
        """A connection's handshake named its board: attach it and register it (session thread)."""
        facts = connection.facts
        assert facts is not None
        with self._lock:
            device = self._devices.get(facts.device_id)
            returning = device is not None
            if device is None:
                device = SerialDevice(facts.device_id, self.log, self.ledger, self.settings)
                self._devices[facts.device_id] = device
                if facts.protocol == 2:
                    device.recall_unknown()
            self._port_boards[connection.port] = facts.device_id
            self._failures.pop(connection.port, None)
            placeholder = self._placeholders.pop(connection.port, None)
        if placeholder is not None:
            self.registry.remove(placeholder.device_id)
        old = device.connection
        if old is not None and old is not connection and not old.lost.is_set():
            old.close(f"the board moved to {connection.port}")
        connection.listener = device
        device.attach(connection)
        if connection.lost.is_set():  # lost while we were attaching: say so
            device.set_state(OFFLINE, f"{connection.port} {connection.lost_detail}")
        if self.registry.get(device.device_id) is not device:
            self.registry.add(device)
        if returning:
            self.events.publish(SERIAL_RECONNECT, device_id=device.device_id, port=connection.port)
        logger.info("serial board %s on %s (protocol %d)", device.device_id, connection.port,
                    facts.protocol)
        return device

    def is_open(self, port: str) -> bool:
        """True while a connection on this port is open (handshaking or identified)."""
        with self._lock:
            return port in self._connections

    def problem(self, port: str) -> str | None:
        """Why this port is not in use, in a sentence for a person (None when nothing is wrong)."""
        return self._problems.get(port)

    def handshake_failed(self, connection: SerialConnection) -> None:
        """Nothing answered like a board: back off before trying this port again."""
        self._problems[connection.port] = (
            f"no vending board answered on {connection.port} (wrong port, or firmware not running?)")
        with self._lock:
            failures = self._failures.get(connection.port, 0) + 1
            self._failures[connection.port] = failures
            delay = min(60.0, self.settings.rescan_interval * 2 ** (failures - 1))
            self._retry_at[connection.port] = time.monotonic() + delay
        connection.log(ERROR, f"no vending board answered on {connection.port}; trying again in"
                       f" {delay:g}s")
        logger.warning("serial %s: no vending board answered (try %d)", connection.port, failures)

    def connection_ended(self, connection: SerialConnection) -> None:
        """A connection closed: the next rescan may open the port again."""
        with self._lock:
            if self._connections.get(connection.port) is connection:
                del self._connections[connection.port]
        if not self._worker.stopping.is_set():
            self._wake.set()

    def devices(self) -> list[SerialDevice]:
        """Every serial board met since start, online or not."""
        with self._lock:
            return list(self._devices.values())
