"""USB serial boards: one reader thread per port, protocol v2 (or legacy v1), hot-plug.

Layers, each with one job:
- `SerialConnection`: one open port. A `serial.threaded.ReaderThread` turns bytes into
  lines (LineFramer) and routes them; a session thread does the handshake, keep-alive
  pings and reconciliation. It knows nothing of transactions.
- `SerialDevice`: one board, keyed by the id it reports (from its MAC), never by port. It
  runs a vend over whichever connection the board is on now and remembers the request ids
  whose outcome is still unknown, to settle them when the board answers later.
- `SerialMonitor`: the part Runtime starts. It rescans ports, opens new ones, notices
  busy ones, and hands identified boards to the registry.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional, Union

import serial
import serial.threaded

from ..commlog import ERROR, INFO, RX, TX, CommunicationLog
from ..config import SerialSettings
from ..events import SERIAL_RECONNECT, EventBus
from ..protocol import (
    Ack,
    Done,
    Hello,
    HumanLine,
    Identity,
    LineFramer,
    LineTooLong,
    Message,
    Nak,
    Ping,
    Pong,
    ProtocolError,
    Query,
    State,
    V1DeviceId,
    V1Error,
    V1FirmwareVersion,
    V1Line,
    V1Separator,
    V1SlotsAvailable,
    V1VendSuccess,
    Vend,
    format_line,
    format_v1_command,
    parse_line,
    parse_v1_line,
)
from ..threads import Worker
from .base import (
    OFFLINE,
    ONLINE,
    OUTCOME_FAILED,
    OUTCOME_SUCCESS,
    OUTCOME_UNKNOWN,
    PORT_BUSY,
    SERIAL,
    Device,
    OnSent,
    VendOutcome,
    VendRequest,
)
from .registry import DeviceRegistry
from .serial_ports import PortBusy, SerialPortError, open_port, scan_ports

logger = logging.getLogger("vending.serial")

MAX_OUTSTANDING = 16  # the board remembers 16 ids; asking about older ones is pointless

# What the reader hands a waiting vend: a message for its id, or news about the link.
REBOOTED = "rebooted"
LOST = "lost"
WaitItem = Union[Message, str]


class _LineProtocol(serial.threaded.Protocol):
    """Bytes -> framed lines for one connection (runs on the reader thread)."""

    def __init__(self, connection: SerialConnection) -> None:
        self.connection = connection
        self.framer = LineFramer()

    def data_received(self, data: bytes) -> None:
        for item in self.framer.feed(data):
            self.connection._on_item(item)

    def connection_lost(self, exc: Optional[BaseException]) -> None:  # noqa: UP045
        self.connection._on_lost(exc)


class _Reader(serial.threaded.ReaderThread):
    """pyserial's reader thread, also ending the connection on a bare OSError.

    `in_waiting` on a device that vanished raises OSError (EIO), which the stock thread does
    not catch: it would die without `connection_lost`, and the board would look online
    until the next write failed.
    """

    def run(self) -> None:
        try:
            super().run()
        except OSError as exc:
            self.alive = False
            protocol = self.protocol
            if protocol is not None:
                protocol.connection_lost(exc)


@dataclass
class BoardFacts:
    """What the handshake learnt."""

    device_id: str
    protocol: int
    firmware: str | None
    slots: int | None
    boot: str | None = None


class SerialConnection:
    """One open port: reader thread, handshake, keep-alive, routing of lines to waiters."""

    def __init__(self, monitor: SerialMonitor, port: str, ser: serial.SerialBase) -> None:
        self.monitor = monitor
        self.port = port
        self.serial = ser
        self.settings = monitor.settings
        self.facts: BoardFacts | None = None
        self.boot: str | None = None
        self.device: SerialDevice | None = None
        self.lost = threading.Event()
        self.lost_detail = ""
        self._log = monitor.log
        self._closing = False
        self._write_lock = threading.Lock()
        self._waiters: dict[str, queue.Queue[WaitItem]] = {}
        self._waiters_lock = threading.Lock()
        self._identity: Identity | None = None
        self._identified = threading.Event()
        self._pongs: queue.Queue[Pong] = queue.Queue()
        self._v1_lines: queue.Queue[V1Line | str] = queue.Queue(maxsize=1000)
        self._tasks: queue.Queue[str] = queue.Queue()
        self._last_line: bytes | None = None
        self._resends = 0
        self._acked: set[str] = set()
        self._reader = _Reader(ser, lambda: _LineProtocol(self))
        self._reader.name = f"serial-{port}"
        self._session = threading.Thread(target=self._run_session, name=f"serial-session-{port}",
                                         daemon=True)

    # ----- life cycle ----------------------------------------------------------------

    @property
    def log_id(self) -> str:
        """The device id log lines carry: the board's once known, the port's before."""
        return self.facts.device_id if self.facts else f"serial:{self.port}"

    @property
    def protocol(self) -> int | None:
        """1 or 2 once the handshake is done, else None."""
        return self.facts.protocol if self.facts else None

    @property
    def usable(self) -> bool:
        """Identified and not lost."""
        return self.facts is not None and not self.lost.is_set()

    def start(self) -> None:
        """Start the reader and session threads."""
        self.log(INFO, f"opened {self.port}; waiting for the board to announce itself")
        self._reader.start()
        self._session.start()

    def close(self, why: str = "closed") -> None:
        """Stop both threads and close the port; safe to call twice and from either thread."""
        if self._closing:
            return
        self._closing = True
        if not self.lost_detail:
            self.lost_detail = why
        current = threading.current_thread()
        if current is not self._reader:
            self._reader.stop()
        with self._write_lock:
            try:
                self.serial.close()
            except Exception:  # closing a port that vanished may raise; it is closed anyway
                pass
        self._on_lost(None)
        self._tasks.put("stop")
        if current is not self._session and self._session.is_alive():
            self._session.join(5)

    def log(self, direction: str, message: str) -> None:
        """One communication log entry for this port's board."""
        self._log.add(self.log_id, SERIAL, direction, message)

    # ----- writing -------------------------------------------------------------------

    def send(self, msg: Message) -> bool:
        """Write one machine line; False when the port failed (the connection is then lost)."""
        data = format_line(msg)
        if not isinstance(msg, Nak):
            # A NAK is never the line to re-send: that would let both sides NAK forever.
            self._last_line = data
            self._resends = 0
        return self.write(data)

    def write(self, data: bytes) -> bool:
        """Write raw bytes (one line); False when the port failed."""
        if self.lost.is_set():
            return False
        try:
            with self._write_lock:
                # Logged before writing, so the board's answer never shows up first.
                self.log(TX, data.decode("utf-8", errors="replace").rstrip("\r\n"))
                self.serial.write(data)
        except (serial.SerialException, OSError) as exc:
            self.log(ERROR, f"the line above was not sent: {exc}")
            self._on_lost(exc)
            return False
        return True

    def mark_acked(self, request_id: str) -> None:
        """The board ACKed this id: from now on its VEND is never written again."""
        self._acked.add(request_id)

    # ----- waiting -------------------------------------------------------------------

    def watch(self, request_id: str) -> queue.Queue[WaitItem]:
        """Route every message about request_id (and reboots, loss) to the returned queue."""
        waiter: queue.Queue[WaitItem] = queue.Queue()
        with self._waiters_lock:
            self._waiters[request_id] = waiter
        if self.lost.is_set():
            waiter.put(LOST)
        return waiter

    def unwatch(self, request_id: str) -> None:
        """Stop routing messages about request_id."""
        with self._waiters_lock:
            self._waiters.pop(request_id, None)

    def _broadcast(self, item: str) -> None:
        with self._waiters_lock:
            waiters = list(self._waiters.values())
        for waiter in waiters:
            waiter.put(item)

    def drain_v1(self) -> None:
        """Forget v1 lines received so far (before a command whose answer we want)."""
        while True:
            try:
                self._v1_lines.get_nowait()
            except queue.Empty:
                return

    def next_v1(self, timeout: float) -> V1Line | str | None:
        """The next line from a v1 board (or LOST), or None after timeout."""
        if self.lost.is_set():
            return LOST
        try:
            return self._v1_lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    # ----- reading (reader thread) ---------------------------------------------------

    def _on_item(self, item: bytes | LineTooLong) -> None:
        if isinstance(item, LineTooLong):
            head = item.head.decode("utf-8", errors="replace")
            self.log(ERROR, f"ignored a {item.length}-byte line (limit 256), starting {head!r}")
            if item.head.startswith(b"$") and self.protocol != 1:
                self.send(Nak(reason=item.nak_reason))
            return
        text = item.decode("utf-8", errors="replace")
        try:
            parsed = parse_line(item)
        except ProtocolError as exc:
            self.log(ERROR, f"rejected {text!r}: {exc}")
            if self.protocol != 1:
                self.send(Nak(reason=exc.nak_reason))
            return
        self.log(RX, text)
        if self.device is not None:
            self.device.touch()
        if isinstance(parsed, HumanLine):
            if self.protocol != 2:
                line = parse_v1_line(parsed.text)
                try:
                    self._v1_lines.put_nowait(line)
                except queue.Full:
                    pass  # nobody is listening (a chatty v1 board between vends)
            return
        self._on_message(parsed)

    def _on_message(self, msg: Message) -> None:
        if isinstance(msg, Identity):
            self._on_identity(msg)
        elif isinstance(msg, (Ack, Done, State)):
            with self._waiters_lock:
                waiter = self._waiters.get(msg.id)
            if waiter is not None:
                waiter.put(msg)
            elif self.device is not None and isinstance(msg, (Done, State)):
                self.device.late_result(msg)
        elif isinstance(msg, Pong):
            self._check_boot(msg.boot)
            self._pongs.put(msg)
        elif isinstance(msg, Nak):
            self._resend_after_nak()

    def _on_identity(self, msg: Identity) -> None:
        if self._identity is None:
            self._identity = msg
            self.boot = msg.boot
            self._identified.set()
            return
        if msg.dev != self._identity.dev:
            self.log(ERROR, f"a different board ({msg.dev}) now answers on {self.port}; reconnecting")
            self._tasks.put("swap")
            return
        self._check_boot(msg.boot)

    def _check_boot(self, boot: str) -> None:
        if self.boot is not None and boot != self.boot:
            self.log(INFO, f"board rebooted (boot id {self.boot} -> {boot}); asking about open vends")
            self.boot = boot
            self._broadcast(REBOOTED)
            self._tasks.put("reconcile")
        self.boot = boot

    def _resend_after_nak(self) -> None:
        line = self._last_line
        if line is None or self._resends >= self.settings.max_retries:
            return
        verb_id = _vend_id(line)
        if verb_id is not None and verb_id in self._acked:
            return  # an ACKed VEND is never written again
        self._resends += 1
        self.write(line)

    def _on_lost(self, exc: BaseException | None) -> None:
        if self.lost.is_set():
            return
        if exc is not None:
            self.lost_detail = f"unplugged or port failed ({exc})"
        elif not self.lost_detail:
            self.lost_detail = "port closed"
        self.lost.set()
        self._broadcast(LOST)
        self._tasks.put("lost")
        self.log(INFO if self._closing else ERROR, f"{self.port}: {self.lost_detail}")
        device = self.device
        if device is not None and device.connection is self:
            state_detail = self.lost_detail if self._closing else (
                f"{self.port} {self.lost_detail}; plug it back in, it reconnects by itself")
            device.set_state(OFFLINE, state_detail)

    # ----- session thread ------------------------------------------------------------

    def _run_session(self) -> None:
        try:
            facts = self._handshake()
            if facts is None:
                if not self.lost.is_set():
                    self.monitor.handshake_failed(self)
                return
            self.facts = facts
            self.device = self.monitor.board_identified(self)
            self.device.reconcile(self)
            self._keep_alive()
        except Exception:
            logger.exception("serial session on %s crashed", self.port)
        finally:
            self.close(self.lost_detail or "session ended")
            self.monitor.connection_ended(self)

    def _handshake(self) -> BoardFacts | None:
        wait = self.settings.handshake_timeout
        for attempt in range(3):
            # The board may be rebooting because we opened the port: its unsolicited ID
            # comes when it is ready, and nothing is sent before that.
            if self._identified.wait(wait if attempt == 0 else 0) or self.lost.is_set():
                break
            if not self.send(Hello()):
                return None
            if self._identified.wait(wait) or self.lost.is_set():
                break
            facts = self._probe_v1(wait)
            if facts is not None or self.lost.is_set():
                return facts
        if self._identity is None or self.lost.is_set():
            return None
        ident = self._identity
        if ident.proto != 2:
            self.log(INFO, f"board speaks protocol {ident.proto}; driving it as protocol 2")
        return BoardFacts(ident.dev, 2, ident.fw, ident.slots, ident.boot)

    def _probe_v1(self, wait: float) -> BoardFacts | None:
        self.drain_v1()
        if not self.write(format_v1_command("IDENTIFY")):
            return None
        found: dict[str, Any] = {}
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not self._identified.is_set():
            line = self.next_v1(deadline - time.monotonic())
            if line is None or line == LOST:
                break
            if isinstance(line, V1DeviceId):
                found["device_id"] = line.device_id
            elif isinstance(line, V1FirmwareVersion):
                found["firmware"] = line.version
            elif isinstance(line, V1SlotsAvailable):
                found["slots"] = line.slots
            elif not isinstance(line, str) and line.text.strip().startswith("PROTOCOL:"):
                return None  # a v2 board whose machine lines do not get through; try again
            elif isinstance(line, V1Separator) and "device_id" in found:
                break
        if "device_id" not in found or self._identified.is_set():
            return None
        self.log(INFO, f"legacy v1 board {found['device_id']}: one try per vend, no retries")
        return BoardFacts(found["device_id"], 1, found.get("firmware"), found.get("slots"))

    def _keep_alive(self) -> None:
        while not self.lost.is_set():
            try:
                task = self._tasks.get(timeout=self.settings.ping_interval)
            except queue.Empty:
                task = "ping"
            if self.lost.is_set() or task in ("stop", "lost"):
                return
            if task == "swap":
                self.lost_detail = "another board answered on this port"
                return
            device = self.device
            if device is None:
                return
            if task == "reconcile":
                device.reconcile(self)
            elif task == "ping" and self.protocol == 2 and not device.vending:
                self._ping(device)
                if device.state == ONLINE and device.has_unanswered() and not device.vending:
                    # Answers to our QUERYs were lost while the board stayed up (it answers
                    # pings): ask again now rather than leave the vend `unknown` until its
                    # next reboot.
                    device.reconcile(self)
            device.settle_pending()

    def ping(self) -> Pong | None:
        """PING the board (v2), retrying; its PONG, or None if it stays silent."""
        while not self._pongs.empty():
            self._pongs.get_nowait()
        for _ in range(self.settings.max_retries + 1):
            if not self.send(Ping()):
                return None
            try:
                return self._pongs.get(timeout=self.settings.ack_timeout * 2)
            except queue.Empty:
                continue
        return None

    def v1_command(self, command: str, timeout: float) -> list[str]:
        """Send a v1 command (e.g. STATUS) and return the reply's lines up to its separator."""
        self.drain_v1()
        if not self.write(format_v1_command(command)):
            return []
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_v1(deadline - time.monotonic())
            if line is None or line == LOST or isinstance(line, V1Separator):
                return lines
            lines.append(line if isinstance(line, str) else line.text)

    def _ping(self, device: SerialDevice) -> None:
        if self.ping() is not None:
            if device.state == OFFLINE and device.connection is self:
                device.set_state(ONLINE, f"answering again on {self.port}")
            return
        if device.state == ONLINE and device.connection is self and not device.vending:
            device.set_state(OFFLINE, f"the board on {self.port} stopped answering; check its power")


def _vend_id(line: bytes) -> str | None:
    if not line.startswith(b"$VEND "):
        return None
    try:
        parsed = parse_line(line)
    except ProtocolError:
        return None
    return parsed.id if isinstance(parsed, Vend) else None


@dataclass
class _Outstanding:
    """A request id recorded `unknown` whose real outcome the board may still tell us."""

    acked: bool
    result: tuple[str, str, str | None] | None = None  # (state, message, reason) to settle with


class SerialDevice(Device):
    """A board on USB serial, known by the id it reports; its port may change."""

    transport = SERIAL

    def __init__(self, device_id: str, log: CommunicationLog, store: Any,
                 settings: SerialSettings) -> None:
        super().__init__(device_id, log)
        self.store = store
        self.settings = settings
        self.connection: SerialConnection | None = None
        self.vending = False
        self._outstanding: OrderedDict[str, _Outstanding] = OrderedDict()
        self._outstanding_lock = threading.Lock()

    def attach(self, connection: SerialConnection) -> None:
        """The board is (again) reachable over this connection."""
        facts = connection.facts
        assert facts is not None
        self.connection = connection
        self.facts.firmware_version = facts.firmware
        self.facts.protocol_version = facts.protocol
        self.facts.slots = facts.slots
        self.touch()
        self.set_state(ONLINE, f"on {connection.port}, protocol v{facts.protocol}")

    def info(self) -> dict[str, Any]:
        data = super().info()
        connection = self.connection
        data["port"] = connection.port if connection else None
        data["boot_id"] = connection.boot if connection else None
        with self._outstanding_lock:
            data["unresolved_vends"] = list(self._outstanding)
        return data

    def stop(self) -> None:
        connection = self.connection
        if connection is not None:
            connection.close("stopped")
        self.set_state(OFFLINE, "stopped")

    # ----- vending -------------------------------------------------------------------

    def vend(self, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        """Run one vend over the board's current connection (v2 with retries, or v1 once)."""
        connection = self.connection
        if connection is None or not connection.usable or not self.can_vend:
            return VendOutcome.not_sent("offline", f"{self.device_id} is offline; not dispensed")
        self.vending = True
        try:
            if connection.protocol == 1:
                return self._vend_v1(connection, request, on_sent)
            return self._vend_v2(connection, request, on_sent)
        finally:
            self.vending = False

    def _vend_v2(self, conn: SerialConnection, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        rid = request.transaction_id
        waiter = conn.watch(rid)
        try:
            on_sent()
            outcome, acked = self._drive_v2(conn, waiter, request)
        finally:
            conn.unwatch(rid)
        if outcome.state == OUTCOME_UNKNOWN and outcome.reason != "interrupted":
            self._remember(rid, acked)
        return outcome

    def _drive_v2(self, conn: SerialConnection, waiter: queue.Queue[WaitItem],
                  request: VendRequest) -> tuple[VendOutcome, bool]:
        """Send the VEND, retry it (same id) until ACKed, then wait for its outcome."""
        rid, s = request.transaction_id, self.settings
        command = Vend(id=rid, slot=request.slot)
        acked = False
        sends = 0
        reissued = False
        started = time.monotonic()
        outcome_deadline = started + request.timeout
        graced = False
        if not conn.send(command):
            return self._lost(conn, acked), acked
        sends = 1
        ack_deadline = time.monotonic() + s.ack_timeout
        while True:
            deadline = outcome_deadline if acked else min(ack_deadline, outcome_deadline)
            try:
                item = waiter.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item == LOST:
                return self._lost(conn, acked), acked
            if isinstance(item, Ack):
                acked = True
                conn.mark_acked(rid)
                continue
            if isinstance(item, Done):
                return self._from_done(item, request), True
            query = item == REBOOTED or isinstance(item, State)
            if item is None:
                now = time.monotonic()
                if not acked and sends <= s.max_retries and now < outcome_deadline:
                    conn.log(INFO, f"no ACK for {rid} within {s.ack_timeout:g}s; re-sending (same id)")
                    if not conn.send(command):
                        return self._lost(conn, acked), acked
                    sends += 1
                    ack_deadline = now + s.ack_timeout
                    continue
                query = True
            if not query:
                continue
            answer = item if isinstance(item, State) else self._query(conn, waiter, rid)
            if answer == LOST:
                return self._lost(conn, acked), acked
            if isinstance(answer, Done):
                return self._from_done(answer, request), True
            if answer is None:
                return VendOutcome(OUTCOME_UNKNOWN, "the board does not answer; check the machine",
                                   "no_answer"), acked
            assert isinstance(answer, State)
            if answer.state in ("success", "failed"):
                return self._from_state(answer, request), True
            if answer.state == "interrupted":
                return self._interrupted(request), True
            if answer.state == "running":
                acked = True
                conn.mark_acked(rid)
                if time.monotonic() >= outcome_deadline:
                    if graced:
                        return self._no_outcome(request), True
                    graced = True
                    outcome_deadline = time.monotonic() + s.vend_grace
                continue
            # unseen: the board has no record, so the motor never ran for this id.
            if acked:
                # It ACKed, so it recorded the id before: it forgot it. Never guess.
                return VendOutcome(OUTCOME_UNKNOWN, "the board no longer remembers this vend;"
                                   " check the machine", "forgotten"), acked
            if item == REBOOTED and not reissued and time.monotonic() < outcome_deadline:
                conn.log(INFO, f"board rebooted before recording {rid}; sending it again (same id)")
                reissued = True
                if not conn.send(command):
                    return self._lost(conn, acked), acked
                sends = 1
                ack_deadline = time.monotonic() + s.ack_timeout
                continue
            return VendOutcome(OUTCOME_FAILED, f"the board never received the vend ({sends} tries);"
                               " not dispensed", "no_ack"), False

    def _query(self, conn: SerialConnection, waiter: queue.Queue[WaitItem],
               rid: str) -> State | Done | str | None:
        """Ask the board about rid: its STATE (or a DONE), LOST, or None if it stays silent."""
        for _ in range(self.settings.max_retries + 1):
            if not conn.send(Query(id=rid)):
                return LOST
            deadline = time.monotonic() + self.settings.ack_timeout
            while True:
                try:
                    item = waiter.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item == LOST:
                    return LOST
                if isinstance(item, (State, Done)):
                    return item
        return None

    def _from_done(self, msg: Done, request: VendRequest) -> VendOutcome:
        if msg.result == "success":
            return VendOutcome(OUTCOME_SUCCESS, f"slot {request.slot} dispensed")
        return VendOutcome(OUTCOME_FAILED, f"the board reports {msg.reason}; not dispensed", msg.reason)

    def _from_state(self, msg: State, request: VendRequest) -> VendOutcome:
        if msg.state == "success":
            return VendOutcome(OUTCOME_SUCCESS, f"slot {request.slot} dispensed")
        return VendOutcome(OUTCOME_FAILED, f"the board reports {msg.reason}; not dispensed", msg.reason)

    @staticmethod
    def _interrupted(request: VendRequest) -> VendOutcome:
        return VendOutcome(OUTCOME_UNKNOWN, f"the board rebooted while the motor of slot {request.slot}"
                           " turned; check the machine (it is never re-dispensed)", "interrupted")

    @staticmethod
    def _no_outcome(request: VendRequest) -> VendOutcome:
        return VendOutcome(OUTCOME_UNKNOWN, f"no outcome from the board within {request.timeout:g}s;"
                           " check the machine", "timeout")

    @staticmethod
    def _lost(conn: SerialConnection, acked: bool) -> VendOutcome:
        what = "after it took the vend" if acked else "before it confirmed the vend"
        return VendOutcome(OUTCOME_UNKNOWN, f"the board went offline {what} ({conn.lost_detail});"
                           " check the machine", "disconnected")

    def _vend_v1(self, conn: SerialConnection, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        """v1 has no ids: send once, never retry; no VEND_SUCCESS in time means unknown."""
        conn.drain_v1()
        command = format_v1_command("VEND", request.slot)
        on_sent()
        if not conn.write(command):
            return self._lost(conn, False)
        deadline = time.monotonic() + request.timeout
        while True:
            line = conn.next_v1(deadline - time.monotonic())
            if line is None:
                return VendOutcome(OUTCOME_UNKNOWN, f"no VEND_SUCCESS:{request.slot} from the v1 board"
                                   f" within {request.timeout:g}s; check the machine", "timeout")
            if line == LOST:
                return self._lost(conn, True)
            if isinstance(line, V1VendSuccess) and line.slot == request.slot:
                return VendOutcome(OUTCOME_SUCCESS, f"slot {request.slot} dispensed")
            if isinstance(line, V1Error):
                return VendOutcome(OUTCOME_FAILED, f"the board answered: {line.message}; not dispensed",
                                   "board_error")

    # ----- reconciliation ------------------------------------------------------------

    def recall_unknown(self) -> None:
        """Add this board's recent `unknown` vends from the store (e.g. a server restart left
        them), so the board can be asked about them. Treated as ACKed: `unseen` settles nothing."""
        if self.store is None:
            return
        try:
            recent, _ = self.store.transactions(state="unknown", device_id=self.device_id,
                                                limit=MAX_OUTSTANDING)
        except Exception:
            logger.exception("could not read unknown vends of %s", self.device_id)
            return
        with self._outstanding_lock:
            for txn in reversed(recent):  # oldest first, as the board's memory is ordered
                if txn.reason != "interrupted" and txn.checked_at is None:
                    self._outstanding.setdefault(txn.id, _Outstanding(acked=True))

    def has_unanswered(self) -> bool:
        """True while a vend recorded `unknown` still waits for the board's answer."""
        with self._outstanding_lock:
            return any(entry.result is None for entry in self._outstanding.values())

    def _remember(self, rid: str, acked: bool) -> None:
        with self._outstanding_lock:
            self._outstanding[rid] = _Outstanding(acked)
            while len(self._outstanding) > MAX_OUTSTANDING:
                self._outstanding.popitem(last=False)

    def reconcile(self, conn: SerialConnection) -> None:
        """After a reboot or reconnect: ask the board about every unresolved vend (session thread)."""
        if conn.protocol != 2:
            return
        with self._outstanding_lock:
            pending = list(self._outstanding.items())
        for rid, entry in pending:
            if entry.result is not None:
                continue
            waiter = conn.watch(rid)
            try:
                answer = self._query(conn, waiter, rid)
            finally:
                conn.unwatch(rid)
            if answer == LOST:
                return
            if isinstance(answer, (State, Done)):
                self._apply_answer(rid, entry, answer)
        self.settle_pending()

    def late_result(self, msg: Done | State) -> None:
        """A DONE or STATE for an id no vend waits for any more (reader thread)."""
        with self._outstanding_lock:
            entry = self._outstanding.get(msg.id)
        if entry is None:
            self.log(INFO, f"ignored a repeat answer for {msg.id} (already settled)")
            return
        self._apply_answer(msg.id, entry, msg)
        self.settle_pending()

    def _apply_answer(self, rid: str, entry: _Outstanding, msg: State | Done) -> None:
        state = msg.result if isinstance(msg, Done) else msg.state
        if state == "success":
            entry.result = ("success", "the board confirmed it later: dispensed", None)
        elif state == "failed":
            entry.result = ("failed", f"the board reported {msg.reason} later; not dispensed", msg.reason)
        elif state == "unseen" and not entry.acked:
            entry.result = ("failed", "the board never received this vend; not dispensed", "no_ack")
        elif state in ("unseen", "interrupted"):
            # Unknown stays unknown: the motor may have turned, a person must look.
            self.log(ERROR, f"vend {rid} stays unknown: the board reports {state}; check the machine")
            with self._outstanding_lock:
                self._outstanding.pop(rid, None)

    def settle_pending(self) -> None:
        """Write outcomes learnt late to the store, once the vend is recorded `unknown`."""
        if self.store is None:  # esp32_serial.py drives boards without a store
            return
        with self._outstanding_lock:
            ready = [(rid, e.result) for rid, e in self._outstanding.items() if e.result is not None]
        for rid, result in ready:
            state, message, reason = result
            try:
                txn = self.store.settle_unknown(rid, state, message, reason)
            except Exception:
                logger.exception("could not settle vend %s", rid)
                continue
            if txn.state in ("pending", "sent"):
                continue  # the vend path has not recorded `unknown` yet; try on the next tick
            if txn.state == state:
                self.log(INFO, f"vend {rid} settled as {state}: {message}")
                logger.warning("vend %s settled after the fact as %s", rid, state)
            with self._outstanding_lock:
                self._outstanding.pop(rid, None)


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
                 store: Any, events: EventBus, ports: list[str] | tuple[str, ...] = (),
                 scan: bool = False) -> None:
        self.settings = settings
        self.registry = registry
        self.log = log
        self.store = store
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
            connection = SerialConnection(self, port, ser)
            self._connections[port] = connection
        connection.start()

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
                device = SerialDevice(facts.device_id, self.log, self.store, self.settings)
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
        connection.device = device
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
