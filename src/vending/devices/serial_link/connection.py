"""One open port's session: handshake, keep-alive, and routing of the board's lines.

It knows nothing of vends or of the registry. The monitor hears of it through the callbacks
it is built with; the board it serves (a `LinkListener`) is attached once the handshake named
it. Its state is one `LinkState`, changed only in `_set_state`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Protocol, Union

import serial

from ...commlog import ERROR, INFO, RX, TX, CommunicationLog
from ...protocol import (
    Ack,
    Done,
    Hello,
    HumanLine,
    Identity,
    LineTooLong,
    Message,
    Nak,
    Ping,
    Pong,
    ProtocolError,
    State,
    V1DeviceId,
    V1FirmwareVersion,
    V1Line,
    V1Separator,
    V1SlotsAvailable,
    Vend,
    format_line,
    format_v1_command,
    parse_line,
    parse_v1_line,
)
from ..base import SERIAL
from .settings import SerialSettings
from .transport import SerialTransport

logger = logging.getLogger("vending.serial")

# What the reader hands a waiting vend: a message for its id, or news about the link.
REBOOTED = "rebooted"
LOST = "lost"
WaitItem = Union[Message, str]


class LinkState(Enum):
    """Where one port's session stands."""

    HANDSHAKING = "handshaking"  # open; waiting for the board to say who it is
    READY = "ready"  # the board is identified: vends may run
    LOST = "lost"  # unplugged, failed or closed: never usable again (a new one is opened)


@dataclass
class BoardFacts:
    """What the handshake learnt."""

    device_id: str
    protocol: int
    firmware: str | None
    slots: int | None
    boot: str | None = None


class LinkListener(Protocol):
    """The board a connection serves; called on the reader or session thread."""

    def heard(self) -> None:
        """A line came from the board."""

    def late_result(self, msg: Done | State) -> None:
        """A DONE or STATE for an id no vend waits for any more."""

    def link_lost(self, connection: SerialConnection) -> None:
        """The connection ended."""

    def reconcile(self, connection: SerialConnection) -> None:
        """The board is (back) on this connection, or rebooted: ask about open vends."""

    def keep_alive(self, connection: SerialConnection) -> None:
        """Nothing happened for a ping interval: check the board answers."""


class SerialConnection:
    """One open port: transport, handshake, keep-alive, routing of lines to waiters."""

    def __init__(self, port: str, ser: serial.SerialBase, settings: SerialSettings,
                 log: CommunicationLog,
                 on_identified: Callable[[SerialConnection], None] | None = None,
                 on_handshake_failed: Callable[[SerialConnection], None] | None = None,
                 on_ended: Callable[[SerialConnection], None] | None = None) -> None:
        self.port = port
        self.settings = settings
        self.state = LinkState.HANDSHAKING
        self.facts: BoardFacts | None = None
        self.boot: str | None = None
        self.listener: LinkListener | None = None
        self.lost = threading.Event()  # set with LinkState.LOST, for waiting on it
        self.lost_detail = ""
        self.closing = False  # we closed it (stop, a board that moved): not a failure
        self._log = log
        self._on_identified = on_identified
        self._on_handshake_failed = on_handshake_failed
        self._on_ended = on_ended
        self._state_lock = threading.Lock()
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
        self.transport = SerialTransport(port, ser, self._on_item, self._on_lost)
        self._session = threading.Thread(target=self._run_session, name=f"serial-session-{port}",
                                         daemon=True)

    # ----- state ---------------------------------------------------------------------

    def _set_state(self, state: LinkState, facts: BoardFacts | None = None) -> bool:
        """The one place the link state changes; False if it was lost already (final)."""
        with self._state_lock:
            if self.state is LinkState.LOST:
                return False
            self.state = state
            if facts is not None:
                self.facts = facts
            if state is LinkState.LOST:
                self.lost.set()
            return True

    @property
    def usable(self) -> bool:
        """Identified and not lost."""
        return self.state is LinkState.READY

    @property
    def log_id(self) -> str:
        """The device id log lines carry: the board's once known, the port's before."""
        return self.facts.device_id if self.facts else f"serial:{self.port}"

    @property
    def protocol(self) -> int | None:
        """1 or 2 once the handshake is done, else None."""
        return self.facts.protocol if self.facts else None

    @property
    def serial(self) -> serial.SerialBase:
        """The open pyserial port."""
        return self.transport.serial

    # ----- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start the reader and session threads."""
        self.log(INFO, f"opened {self.port}; waiting for the board to announce itself")
        self.transport.start()
        self._session.start()

    def close(self, why: str = "closed") -> None:
        """Stop both threads and close the port; safe to call twice and from either thread."""
        if self.closing:
            return
        self.closing = True
        if not self.lost_detail:
            self.lost_detail = why
        self.transport.close()
        self._on_lost(None)
        self._tasks.put("stop")
        if threading.current_thread() is not self._session and self._session.is_alive():
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
            # Logged before writing, so the board's answer never shows up first.
            self.transport.write(data, lambda: self.log(
                TX, data.decode("utf-8", errors="replace").rstrip("\r\n")))
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
        listener = self.listener
        if listener is not None:
            listener.heard()
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
            listener = self.listener
            if waiter is not None:
                waiter.put(msg)
            elif listener is not None and isinstance(msg, (Done, State)):
                listener.late_result(msg)
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
        if exc is not None and not self.lost.is_set():
            self.lost_detail = f"unplugged or port failed ({exc})"
        elif not self.lost_detail:
            self.lost_detail = "port closed"
        if not self._set_state(LinkState.LOST):
            return
        self._broadcast(LOST)
        self._tasks.put("lost")
        self.log(INFO if self.closing else ERROR, f"{self.port}: {self.lost_detail}")
        listener = self.listener
        if listener is not None:
            listener.link_lost(self)

    # ----- session thread ------------------------------------------------------------

    def _run_session(self) -> None:
        try:
            facts = self._handshake()
            if facts is None:
                if not self.lost.is_set() and self._on_handshake_failed is not None:
                    self._on_handshake_failed(self)
                return
            if not self._set_state(LinkState.READY, facts):
                return
            if self._on_identified is not None:
                self._on_identified(self)
            listener = self.listener
            if listener is not None:
                listener.reconcile(self)
            self._keep_alive()
        except Exception:
            logger.exception("serial session on %s crashed", self.port)
        finally:
            self.close(self.lost_detail or "session ended")
            if self._on_ended is not None:
                self._on_ended(self)

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
            listener = self.listener
            if listener is None:
                return
            if task == "reconcile":
                listener.reconcile(self)
            elif task == "ping":
                listener.keep_alive(self)

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


def _vend_id(line: bytes) -> str | None:
    if not line.startswith(b"$VEND "):
        return None
    try:
        parsed = parse_line(line)
    except ProtocolError:
        return None
    return parsed.id if isinstance(parsed, Vend) else None
