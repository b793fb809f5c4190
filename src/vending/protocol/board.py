"""BoardLogic: a pure reference model of a v2 board. No I/O; time is passed in.

The pty board simulator and the fault-campaign tests drive it; the firmware's plain-C++
core implements the same rules. Every method returns the actions the board takes, in
order: lines to write, motor starts and stops, and snapshots to persist (NVS on the
ESP32) *before* the actions that follow them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .codec import format_line, parse_line
from .errors import LineTooLong, ProtocolError
from .framer import FramedItem
from .messages import (
    PROTOCOL_VERSION,
    Ack,
    Done,
    Hello,
    HumanLine,
    Identity,
    Message,
    Nak,
    Ping,
    Pong,
    Query,
    State,
    Vend,
)

SEPARATOR = "----------"
SNAPSHOT_VERSION = 1
FINISHED = ("success", "failed")


@dataclass(frozen=True)
class SendLine:
    """Write this line (terminator included) to the serial port."""

    data: bytes


@dataclass(frozen=True)
class StartMotor:
    """Start turning the motor of slot; report the end with motor_finished."""

    slot: int


@dataclass(frozen=True)
class StopMotor:
    """Cut the motor (the watchdog fired)."""


@dataclass(frozen=True)
class Persist:
    """Write snapshot to persistent storage before performing the next action."""

    snapshot: dict = field(compare=True)


BoardAction = Union[SendLine, StartMotor, StopMotor, Persist]


@dataclass
class _Entry:
    slot: int
    state: str  # running | success | failed | interrupted
    reason: Optional[str] = None  # noqa: UP045 (get_type_hints on 3.9)


class BoardLogic:
    """The v2 board's rules: exactly-once vends by request id, NAK, QUERY, PING, busy."""

    def __init__(
        self,
        device_id: str,
        firmware: str,
        slots: int,
        boot_id: str,
        snapshot: dict[str, Any] | None = None,
        motor_timeout: float = 15.0,
        memory_size: int = 16,
        max_resends: int = 3,
    ) -> None:
        self.device_id = device_id
        self.firmware = firmware
        self.slots = slots
        self.boot_id = boot_id
        self.motor_timeout = motor_timeout
        self.memory_size = memory_size
        self.max_resends = max_resends
        self.ready = False
        self._memory: OrderedDict[str, _Entry] = OrderedDict()
        self._running_id: str | None = None  # request id of the running vend
        self._running_slot: int | None = None  # set for any running vend, human ones too
        self._motor_started: float = 0.0
        self._last_machine_line: bytes | None = None
        self._resends = 0
        self._restored_interrupted = False
        if snapshot:
            self._restore(snapshot)

    # ----- state ---------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a motor is turning."""
        return self._running_slot is not None

    @property
    def running_id(self) -> str | None:
        """The request id whose motor is turning, if any."""
        return self._running_id

    def state_of(self, request_id: str) -> tuple[str, str | None]:
        """Return (state, reason) the board would report for request_id in STATE."""
        entry = self._memory.get(request_id)
        if entry is None:
            return ("unseen", None)
        return (entry.state, entry.reason)

    def snapshot(self) -> dict[str, Any]:
        """Return the exactly-once memory as a JSON-able dict, oldest entry first."""
        return {
            "version": SNAPSHOT_VERSION,
            "entries": [
                {"id": rid, "slot": e.slot, "state": e.state, "reason": e.reason}
                for rid, e in self._memory.items()
            ],
        }

    def _restore(self, snapshot: dict[str, Any]) -> None:
        # A vend still marked running was cut by the reboot: nobody knows whether the
        # item fell, so it becomes `interrupted` and is never re-run.
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {snapshot.get('version')!r}")
        for item in snapshot.get("entries", []):
            state = item["state"]
            if state == "running":
                state = "interrupted"
                self._restored_interrupted = True
            self._memory[item["id"]] = _Entry(int(item["slot"]), state, item.get("reason"))
        self._trim()

    # ----- events --------------------------------------------------------------------

    def boot(self, now: float) -> list[BoardAction]:
        """Finish booting: persist interrupted vends, print the banner, send ID unsolicited."""
        out: list[BoardAction] = []
        if self._restored_interrupted:
            out.append(Persist(self.snapshot()))
            self._restored_interrupted = False
        out += self._human(
            f"VENDING BOARD fw={self.firmware} proto={PROTOCOL_VERSION} "
            f"dev={self.device_id} boot={self.boot_id} slots={self.slots}",
            "Type HELP for commands.",
        )
        self.ready = True
        out.append(self._send(self._identity()))
        return out

    def receive(self, item: FramedItem, now: float) -> list[BoardAction]:
        """Handle one item from LineFramer.feed: a line, or an over-long line's report."""
        if isinstance(item, ProtocolError):
            return self.receive_error(item, now)
        return self.receive_line(item, now)

    def receive_line(self, line: bytes, now: float) -> list[BoardAction]:
        """Handle one received line (as the LineFramer yields it)."""
        try:
            parsed = parse_line(line)
        except ProtocolError as error:
            return self.receive_error(error, now)
        if isinstance(parsed, HumanLine):
            return self._human_command(parsed.text, now)
        return self._machine(parsed, now)

    def receive_error(self, error: ProtocolError, now: float) -> list[BoardAction]:
        """Answer a line that failed its check with NAK (human over-long lines excepted)."""
        if isinstance(error, LineTooLong) and not error.head.startswith(b"$"):
            return []
        # A NAK is never remembered as the last line: re-sending it would ping-pong.
        return [SendLine(format_line(Nak(reason=error.nak_reason)))]

    def motor_finished(
        self, result: str, now: float, reason: str | None = None
    ) -> list[BoardAction]:
        """The motor stopped: result is "success" or "failed" (then reason says why)."""
        if self._running_slot is None:
            return []
        if result != "success" and reason is None:
            reason = "motor_fault"
        result = "success" if result == "success" else "failed"
        slot, rid = self._running_slot, self._running_id
        self._running_slot = self._running_id = None
        if rid is None:  # a vend typed by hand: no id, nothing to remember
            if result == "success":
                return self._human(f"VEND_SUCCESS:{slot}", SEPARATOR)
            return self._human(f"ERROR: VEND_FAILED:{slot} {reason}", SEPARATOR)
        entry = self._memory[rid]
        entry.state, entry.reason = result, reason if result == "failed" else None
        return [Persist(self.snapshot()), self._send(self._done(rid, entry))]

    def tick(self, now: float) -> list[BoardAction]:
        """Let time pass: the watchdog stops a motor that ran longer than motor_timeout."""
        if self._running_slot is not None and now - self._motor_started >= self.motor_timeout:
            return [StopMotor(), *self.motor_finished("failed", now, "motor_fault")]
        return []

    # ----- machine lines -------------------------------------------------------------

    def _machine(self, msg: Message, now: float) -> list[BoardAction]:
        if isinstance(msg, Vend):
            return self._vend(msg, now)
        if isinstance(msg, Query):
            state, reason = self.state_of(msg.id)
            return [self._send(State(id=msg.id, state=state, reason=reason))]
        if isinstance(msg, Ping):
            state = "busy" if self.busy else "ready"
            return [self._send(Pong(boot=self.boot_id, state=state))]
        if isinstance(msg, Hello):
            return [self._send(self._identity())]
        if isinstance(msg, Nak):
            return self._resend()
        return []  # a board-to-server verb (an echo?): nothing to do

    def _vend(self, msg: Vend, now: float) -> list[BoardAction]:
        entry = self._memory.get(msg.id)
        if entry is not None:  # a repeat: never run the motor again
            out: list[BoardAction] = [self._send(Ack(id=msg.id))]
            if entry.state in FINISHED:
                out.append(self._send(self._done(msg.id, entry)))
            elif entry.state == "interrupted":
                out.append(self._send(State(id=msg.id, state="interrupted")))
            return out
        refusal = None
        if not self.ready:
            refusal = "not_ready"
        elif not 1 <= msg.slot <= self.slots:
            refusal = "invalid_slot"
        elif self.busy:
            refusal = "busy"
        if refusal is not None:
            entry = self._remember(msg.id, _Entry(msg.slot, "failed", refusal))
            return [
                Persist(self.snapshot()),
                self._send(Ack(id=msg.id)),
                self._send(self._done(msg.id, entry)),
            ]
        # Persist before ACK and motor: an ACKed id is always in the memory, and a
        # reboot while the motor turns finds it `running` and reports `interrupted`.
        self._remember(msg.id, _Entry(msg.slot, "running"))
        self._running_id, self._running_slot, self._motor_started = msg.id, msg.slot, now
        return [Persist(self.snapshot()), self._send(Ack(id=msg.id)), StartMotor(msg.slot)]

    def _remember(self, rid: str, entry: _Entry) -> _Entry:
        self._memory[rid] = entry
        self._trim()
        return entry

    def _trim(self) -> None:
        # Forget the oldest ids first, but never the one whose motor is turning.
        while len(self._memory) > self.memory_size:
            victim = next((rid for rid, e in self._memory.items() if e.state != "running"), None)
            if victim is None:
                return
            del self._memory[victim]

    def _resend(self) -> list[BoardAction]:
        if self._last_machine_line is None or self._resends >= self.max_resends:
            return []
        self._resends += 1
        return [SendLine(self._last_machine_line)]

    def _send(self, msg: Message) -> SendLine:
        data = format_line(msg)
        self._last_machine_line = data
        self._resends = 0
        return SendLine(data)

    def _identity(self) -> Identity:
        return Identity(
            dev=self.device_id,
            fw=self.firmware,
            proto=PROTOCOL_VERSION,
            slots=self.slots,
            boot=self.boot_id,
        )

    @staticmethod
    def _done(rid: str, entry: _Entry) -> Done:
        return Done(id=rid, result=entry.state, reason=entry.reason)

    # ----- human lines ---------------------------------------------------------------

    @staticmethod
    def _human(*texts: str) -> list[BoardAction]:
        return [SendLine(text.encode("utf-8") + b"\n") for text in texts]

    def _human_command(self, text: str, now: float) -> list[BoardAction]:
        command = text.strip()
        # Upper-case ASCII only, as the firmware does: "ıdentıfy" must not become IDENTIFY.
        command = command.upper() if command.isascii() else command
        if not command:
            return []
        if command == "HELP":
            return self._human(
                "Commands: HELP, IDENTIFY, STATUS, VEND:<slot>",
                f"Slots 1..{self.slots}. Lines starting with $ are the machine protocol v2.",
                SEPARATOR,
            )
        if command in ("IDENTIFY", "DISCOVER"):
            return self._human(
                f"DEVICE_ID:{self.device_id}",
                f"FIRMWARE_VERSION:{self.firmware}",
                f"SLOTS_AVAILABLE:{self.slots}",
                f"PROTOCOL:{PROTOCOL_VERSION}",
                f"BOOT_ID:{self.boot_id}",
                SEPARATOR,
            )
        if command in ("STATUS", "PING"):
            status = f"BUSY slot={self._running_slot}" if self.busy else "READY"
            return self._human(f"STATUS:{status}", SEPARATOR)
        if command.startswith("VEND:"):
            return self._human_vend(command[5:].strip(), now)
        return self._human("ERROR: Unknown command (type HELP)", SEPARATOR)

    def _human_vend(self, arg: str, now: float) -> list[BoardAction]:
        if not (arg.isascii() and arg.isdigit()) or not 1 <= int(arg) <= self.slots:
            return self._human(f"ERROR: invalid slot (1..{self.slots})", SEPARATOR)
        if not self.ready:
            return self._human("ERROR: not ready", SEPARATOR)
        if self.busy:
            return self._human("ERROR: busy", SEPARATOR)
        slot = int(arg)
        self._running_slot, self._running_id, self._motor_started = slot, None, now
        return [*self._human(f"VENDING:{slot}"), StartMotor(slot)]
