"""A simulated ESP32 board on a pseudo-terminal: v2 firmware (BoardLogic) or legacy v1.

`python -m vending.sim serial` prints the pty path to give the controller with
`--serial-port`. Tests build `SerialBoardSim` directly, inject faults (lost or corrupted
lines, reboots at chosen moments, unplugging) and read its journal of motor runs.
POSIX only: it needs `os.openpty`.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import select
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..protocol import (
    BoardLogic,
    LineFramer,
    LineTooLong,
    Persist,
    SendLine,
    StartMotor,
    StopMotor,
    parse_line,
)
from ..protocol.messages import Message

SEPARATOR_V1 = "----------"
# Moments a test can ask the board to reboot at (power cut), see reboot_when().
REBOOT_MOMENTS = ("vend_received", "motor_started", "motor_finished")


@dataclass
class MotorRun:
    """One run of a motor: the journal tests check for "never two motor runs"."""

    request_id: str | None
    slot: int
    started: float
    finished: float | None = None
    result: str | None = None  # success | failed | interrupted


def damage(line: bytes, how: str, rng: random.Random | None = None) -> bytes:
    """Corrupt a line the way a noisy wire does: `flip` one bit of a byte, or `swap` two adjacent bytes."""
    body = bytearray(line.rstrip(b"\n"))
    # Damage inside the line (not the "$" or the newline), so it is still framed.
    pos = (rng or random).randrange(1, max(2, len(body) - 2))
    if how == "flip":
        body[pos] ^= 0x20 if chr(body[pos]).isalpha() else 0x01
    elif how == "swap":
        while body[pos] == body[pos + 1]:
            pos = (pos % (len(body) - 2)) + 1
        body[pos], body[pos + 1] = body[pos + 1], body[pos]
    else:
        raise ValueError(f"unknown damage {how!r}; use flip or swap")
    return bytes(body) + b"\n"


class _V1Logic:
    """The earlier firmware: chatty, no ids, no checksums."""

    def __init__(self, device_id: str, firmware: str, slots: int,
                 announces_slots: bool = True) -> None:
        self.device_id = device_id
        self.firmware = firmware
        self.slots = slots
        self.announces_slots = announces_slots
        self.running_slot: int | None = None

    @staticmethod
    def _lines(*texts: str) -> list[Any]:
        return [SendLine(text.encode("utf-8") + b"\n") for text in texts]

    def boot(self) -> list[Any]:
        return self._lines("", "=== ESP32 Vending Machine ===", f"Firmware v{self.firmware}",
                           "\U0001F680 Ready! Type HELP for commands.", SEPARATOR_V1)

    def receive_line(self, line: bytes) -> list[Any]:
        command = line.decode("utf-8", errors="replace").strip().upper()
        if not command:
            return []
        if command == "HELP":
            return self._lines("Commands: VEND:<1-5>, IDENTIFY, DISCOVER, STATUS, PING, HELP, RESET",
                               SEPARATOR_V1)
        if command in ("IDENTIFY", "DISCOVER"):
            slots = [f"SLOTS_AVAILABLE:{self.slots}"] if self.announces_slots else []
            return self._lines(f"DEVICE_ID:{self.device_id}", f"FIRMWARE_VERSION:{self.firmware}",
                               *slots, SEPARATOR_V1)
        if command in ("STATUS", "PING"):
            state = "BUSY" if self.running_slot else "READY"
            return self._lines(f"STATUS:{state}", SEPARATOR_V1)
        if command == "RESET":
            return [*self._lines("Restarting..."), "reboot"]
        if command.startswith("VEND:"):
            arg = command[5:].strip()
            if not arg.isdigit() or not 1 <= int(arg) <= self.slots:
                # The earlier firmware's own words, mixed case and all.
                return self._lines(f"\u274C Error: Invalid slot number. Must be 1-{self.slots}",
                                   SEPARATOR_V1)
            if self.running_slot is not None:
                return self._lines("\u274C ERROR: Busy", SEPARATOR_V1)
            self.running_slot = int(arg)
            return [*self._lines(f"\U0001F504 Vending from slot {arg}..."), StartMotor(int(arg))]
        return self._lines("\u274C ERROR: Unknown command", SEPARATOR_V1)

    def motor_finished(self, result: str, reason: str | None) -> list[Any]:
        slot, self.running_slot = self.running_slot, None
        if result == "success":
            return self._lines(f"\u2705 VEND_SUCCESS:{slot}", SEPARATOR_V1)
        return self._lines(f"\u274C ERROR: VEND_FAILED:{slot} {reason}", SEPARATOR_V1)


class SerialBoardSim:
    """One simulated board behind a pty, run by a named thread; power-cycle, unplug and fault hooks."""

    def __init__(
        self,
        device_id: str = "ESP32_5CCF7F000001",
        slots: int = 5,
        firmware: str | None = None,
        motor_time: float = 0.2,
        fail_rate: float = 0.0,
        jam_rate: float = 0.0,
        reboot_on_open: bool = False,
        legacy: bool = False,
        announces_slots: bool = True,
        link: str | None = None,
        boot_delay: float = 0.05,
        seed: int | None = None,
    ) -> None:
        self.device_id = device_id
        self.slots = slots
        self.legacy = legacy
        self.announces_slots = announces_slots  # v1 only: False leaves SLOTS_AVAILABLE out
        self.firmware = firmware or ("1.1" if legacy else "2.0.0")
        self.motor_time = motor_time
        self.fail_rate = fail_rate
        self.jam_rate = jam_rate
        self.reboot_on_open = reboot_on_open
        self.link = link
        self.boot_delay = boot_delay
        self.rng = random.Random(seed)
        self.nvs: dict[str, Any] | None = None  # the exactly-once memory, across reboots
        self.motor_runs: list[MotorRun] = []
        self.received: list[bytes] = []  # every line the board got, for tests
        self.sent: list[bytes] = []  # every line the board wrote (after faults)
        self.boots = 0
        self.boot_id = ""
        self._lock = threading.RLock()
        self._master: int | None = None
        self._pty_path = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._logic: Any = None
        self._framer = LineFramer()
        self._booting_until: float | None = None
        self._motor: tuple[float, MotorRun] | None = None  # (finish time, run)
        self._port_open = False
        self._drop: dict[str, int] = {}
        self._corrupt_out: list[tuple[str, str]] = []
        self._corrupt_in: list[str] = []
        self._reboot_at: set[str] = set()
        self._results: list[tuple[str, str | None]] = []
        self._duplicate: dict[str, int] = {}
        self._delay: list[tuple[str, float]] = []
        self._delayed: list[tuple[float, bytes]] = []  # (due, line) held back on the wire
        self._pending_reboot: float | None = None
        # (time.time(), kind) of every injected fault when it took effect, for campaigns.
        self.faults_fired: list[tuple[float, str]] = []
        self._hung = False

    # ----- life cycle ------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The path to give the controller: the stable link if any, else the pty itself."""
        return self.link or self._pty_path

    @property
    def pty_path(self) -> str:
        return self._pty_path

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def start(self) -> SerialBoardSim:
        """Plug the board in (create the pty) and power it on."""
        self.plug()
        return self

    def plug(self) -> None:
        """Plug in: a fresh pty (re-pointing the link), and a boot, since USB powers the board."""
        import tty

        with self._lock:
            if self._master is not None:
                return
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line editing: a UART, not a terminal
            self._pty_path = os.ttyname(slave)
            os.close(slave)  # held open, the pty would never report the controller's close
            os.set_blocking(master, False)
            self._master = master
            self._port_open = False
            if self.link:
                tmp = f"{self.link}.tmp{os.getpid()}"
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                os.symlink(self._pty_path, tmp)
                os.replace(tmp, self.link)
            self._power_on()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"sim-serial-{self.device_id}",
                                        daemon=True)
        self._thread.start()

    def unplug(self) -> None:
        """Pull the USB cable: the pty disappears and the board loses power (a running motor is cut)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None
        with self._lock:
            self._cut_power()
            if self._master is not None:
                os.close(self._master)
                self._master = None
            # As udev removes /dev/serial/by-id/...: a link left behind would point at a pty
            # number the system may hand to another board (or another test) next.
            if self.link and os.path.islink(self.link) and os.readlink(self.link) == self._pty_path:
                os.unlink(self.link)

    def stop(self) -> None:
        """Unplug and remove the link; safe to call twice."""
        self.unplug()
        if self.link and os.path.islink(self.link):
            os.unlink(self.link)

    def reboot(self) -> None:
        """Power-cycle the board now (a brown-out or the reset button)."""
        with self._lock:
            self._cut_power()
            self._power_on()

    # ----- fault hooks -----------------------------------------------------------------

    def drop_next(self, verb: str, count: int = 1) -> None:
        """Lose the next `count` lines the board sends with this verb (e.g. "ACK")."""
        with self._lock:
            self._drop[verb] = self._drop.get(verb, 0) + count

    def corrupt_next(self, verb: str, how: str = "flip") -> None:
        """Damage the next line the board sends with this verb (`flip` or `swap`)."""
        with self._lock:
            self._corrupt_out.append((verb, how))

    def corrupt_next_received(self, how: str = "flip") -> None:
        """Damage the next machine line the board receives, as if the wire had."""
        with self._lock:
            self._corrupt_in.append(how)

    def reboot_when(self, moment: str) -> None:
        """Power-cycle once at `moment` (vend_received, motor_started, or motor_finished before DONE)."""
        if moment not in REBOOT_MOMENTS:
            raise ValueError(f"moment must be one of {', '.join(REBOOT_MOMENTS)}")
        with self._lock:
            self._reboot_at.add(moment)

    def duplicate_next(self, verb: str, count: int = 1) -> None:
        """Send the next `count` lines with this verb twice each (a repeat on the wire)."""
        with self._lock:
            self._duplicate[verb] = self._duplicate.get(verb, 0) + count

    def delay_next(self, verb: str, seconds: float) -> None:
        """Hold the next line with this verb back for `seconds` (later lines may overtake it)."""
        with self._lock:
            self._delay.append((verb, seconds))

    def faults_armed(self) -> bool:
        """True while an injected fault waits for its moment."""
        with self._lock:
            return bool(any(self._drop.values()) or self._corrupt_out or self._corrupt_in
                        or self._reboot_at or self._results or any(self._duplicate.values())
                        or self._delay or self._delayed)

    def disarm(self) -> None:
        """Forget every fault still waiting for its moment (lines already held back stay)."""
        with self._lock:
            self._drop.clear()
            self._corrupt_out.clear()
            self._corrupt_in.clear()
            self._reboot_at.clear()
            self._results.clear()
            self._duplicate.clear()
            self._delay.clear()

    def next_result(self, result: str, reason: str | None = None) -> None:
        """Force the outcome of the next motor run ("success", or "failed" with a reason)."""
        with self._lock:
            self._results.append((result, reason))

    def hang(self, hung: bool = True) -> None:
        """Stop answering anything (a hung firmware) while the port stays open, or recover."""
        with self._lock:
            self._hung = hung

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (garbage, a huge line, invalid UTF-8)."""
        with self._lock:
            self._write(data)

    def runs_for(self, request_id: str) -> list[MotorRun]:
        """The motor runs the board made for one request id."""
        with self._lock:
            return [run for run in self.motor_runs if run.request_id == request_id]

    # ----- the board's loop --------------------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        master = self._master
        if master is None:
            return
        poller.register(master, select.POLLIN)
        while not self._stop.is_set():
            events = poller.poll(self._poll_timeout_ms())
            hung_up = any(ev & select.POLLHUP for _, ev in events)
            data = b""
            if any(ev & select.POLLIN for _, ev in events):
                try:
                    data = os.read(master, 4096)
                except (BlockingIOError, InterruptedError):
                    data = b""
                except OSError:  # EIO: nobody has the port open
                    hung_up = True
            with self._lock:
                if hung_up and self._port_open:
                    self._port_open = False
                elif not hung_up and not self._port_open:
                    self._port_open = True
                    if self.reboot_on_open:
                        self._cut_power()
                        self._power_on()
                if data:
                    self._feed(data)
                self._timers()
            if hung_up:
                self._stop.wait(0.01)  # POLLHUP is level-triggered: do not spin

    def _poll_timeout_ms(self) -> int:
        deadlines = [t for t in (self._booting_until, self._pending_reboot) if t is not None]
        deadlines += [due for due, _ in self._delayed]
        if self._motor is not None:
            deadlines.append(self._motor[0])
        if not deadlines:
            return 100
        return max(0, min(100, int((min(deadlines) - time.monotonic()) * 1000) + 1))

    def _timers(self) -> None:
        now = time.monotonic()
        if self._delayed:
            due = [line for when, line in self._delayed if when <= now]
            self._delayed = [(when, line) for when, line in self._delayed if when > now]
            for line in due:
                self._write(line)
        if self._booting_until is not None and now >= self._booting_until:
            self._booting_until = None
            self._apply(self._logic.boot() if self.legacy else self._logic.boot(now))
        if self._pending_reboot is not None and now >= self._pending_reboot:
            self._pending_reboot = None
            self._cut_power()
            self._power_on()
            return
        if self._motor is not None and now >= self._motor[0]:
            run = self._motor[1]
            self._motor = None
            result, reason = self._pick_result()
            run.finished, run.result = now, result
            if self.legacy:
                self._apply(self._logic.motor_finished(result, reason))
                return
            actions = self._logic.motor_finished(result, now, reason)
            if "motor_finished" in self._reboot_at:
                self._reboot_at.discard("motor_finished")
                self._fired("reboot_motor_finished")
                # The outcome reaches NVS, then the power goes before DONE is sent.
                self._apply([a for a in actions if isinstance(a, Persist)])
                self._cut_power()
                self._power_on()
                return
            self._apply(actions)

    def _pick_result(self) -> tuple[str, str | None]:
        if self._results:
            self._fired("forced_result")
            return self._results.pop(0)
        roll = self.rng.random()
        if roll < self.jam_rate:
            return ("failed", "jam")
        if roll < self.jam_rate + self.fail_rate:
            return ("failed", "motor_fault")
        return ("success", None)

    def _feed(self, data: bytes) -> None:
        if self._logic is None or self._booting_until is not None or self._hung:
            return  # booting: the UART is not read yet, bytes are lost
        for item in self._framer.feed(data):
            if isinstance(item, LineTooLong):
                self.received.append(item.head)
                if not self.legacy:
                    self._apply(self._logic.receive(item, time.monotonic()))
                continue
            if item.startswith(b"$") and self._corrupt_in:
                item = damage(item, self._corrupt_in.pop(0), self.rng).rstrip(b"\n")
                self._fired("corrupt_received")
            self.received.append(item)
            if self.legacy:
                self._apply(self._logic.receive_line(item))
                continue
            if "vend_received" in self._reboot_at and _verb(item) == "VEND":
                self._reboot_at.discard("vend_received")
                self._fired("reboot_vend_received")
                self._cut_power()
                self._power_on()
                return
            self._apply(self._logic.receive(item, time.monotonic()))

    def _apply(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Persist):
                self.nvs = copy.deepcopy(action.snapshot)
            elif isinstance(action, SendLine):
                self._send(action.data)
            elif isinstance(action, StartMotor):
                rid = None if self.legacy else self._logic.running_id
                run = MotorRun(rid, action.slot, time.monotonic())
                self.motor_runs.append(run)
                self._motor = (time.monotonic() + self.motor_time, run)
                if "motor_started" in self._reboot_at:
                    self._reboot_at.discard("motor_started")
                    self._fired("reboot_motor_started")
                    self._pending_reboot = time.monotonic() + self.motor_time / 2
            elif isinstance(action, StopMotor):
                self._motor = None
            elif action == "reboot":
                self._pending_reboot = time.monotonic()

    def _send(self, data: bytes) -> None:
        verb = _verb(data)
        if verb and self._drop.get(verb):
            self._drop[verb] -= 1
            self._fired(f"drop_{verb}")
            return
        for i, (want, how) in enumerate(self._corrupt_out):
            if want == verb:
                del self._corrupt_out[i]
                data = damage(data, how, self.rng)
                self._fired(f"corrupt_{verb}")
                break
        for i, (want, seconds) in enumerate(self._delay):
            if want == verb:
                del self._delay[i]
                self._delayed.append((time.monotonic() + seconds, data))
                self._fired(f"delay_{verb}")
                return
        self._write(data)
        if verb and self._duplicate.get(verb):
            self._duplicate[verb] -= 1
            self._fired(f"duplicate_{verb}")
            self._write(data)

    def _fired(self, kind: str) -> None:
        self.faults_fired.append((time.time(), kind))

    def _write(self, data: bytes) -> None:
        self.sent.append(data)
        if self._master is None:
            return
        view = memoryview(data)
        deadline = time.monotonic() + 2.0
        while view and time.monotonic() < deadline:
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                select.select([], [self._master], [], 0.05)
            except OSError:
                return  # nobody has the port open: a UART's bytes are lost too

    def _cut_power(self) -> None:
        if self._motor is not None:
            run = self._motor[1]
            run.finished, run.result = time.monotonic(), "interrupted"
        self._motor = None
        self._logic = None
        self._booting_until = None
        self._pending_reboot = None

    def _power_on(self) -> None:
        self.boots += 1
        self.boot_id = f"{self.rng.getrandbits(32):08X}"
        if self.legacy:
            self._logic = _V1Logic(self.device_id, self.firmware, self.slots, self.announces_slots)
        else:
            self._logic = BoardLogic(self.device_id, self.firmware, self.slots, self.boot_id,
                                     snapshot=self.nvs)
        self._framer.reset()
        self._booting_until = time.monotonic() + self.boot_delay


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _verb(line: bytes) -> str:
    if not line.startswith(b"$"):
        return ""
    try:
        parsed = parse_line(line)
    except Exception:
        return ""
    return parsed.VERB if isinstance(parsed, Message) else ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m vending.sim serial`."""
    parser.add_argument("--device-id", default=None,
                        help="board id (default ESP32_5CCF7F000001, or ESP32_USB_5CCF7F000001 with --v1)")
    parser.add_argument("--slots", type=int, default=5)
    parser.add_argument("--motor-time", type=float, default=1.0, help="seconds a vend takes")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of vends with a motor fault")
    parser.add_argument("--jam-rate", type=float, default=0.0, help="share of vends that jam")
    parser.add_argument("--reboot-on-open", action="store_true",
                        help="reboot when the controller opens the port, like an ESP32 with auto-reset")
    parser.add_argument("--v1", action="store_true", help="behave like the legacy v1 firmware")
    parser.add_argument("--link", help="also make this symlink to the pty (a stable path)")
    parser.add_argument("--seed", type=int, help="random seed for failures and boot ids")


def main(args: argparse.Namespace, wait: Callable[[], None] | None = None) -> int:
    """Run one simulated board until Ctrl+C."""
    device_id = args.device_id or ("ESP32_USB_5CCF7F000001" if args.v1 else "ESP32_5CCF7F000001")
    sim = SerialBoardSim(device_id, slots=args.slots, motor_time=args.motor_time,
                         fail_rate=args.fail_rate, jam_rate=args.jam_rate,
                         reboot_on_open=args.reboot_on_open, legacy=args.v1, link=args.link,
                         seed=args.seed).start()
    print(f"Simulated {'v1' if args.v1 else 'v2'} board {device_id} on {sim.path}", flush=True)
    print(f"Start the controller with:  python src/app.py --serial-port {sim.path}", flush=True)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)  # clean up the link on `kill` too
    try:
        if wait is not None:
            wait()
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


__all__ = ["MotorRun", "SerialBoardSim", "damage"]
