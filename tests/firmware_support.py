"""Build the firmware's host targets and drive the host board: shared by the firmware tests.

The host build (esp_code/Makefile, g++ -Wall -Wextra -Werror) makes `core_tests` (the C++
unit tests on the shared vectors) and `host_board` (the core behind a POSIX shell with a
fake motor, its outcome memory in a file). `ReferenceScript` replays the host board's
scripted mode through the Python reference model, BoardLogic, for differential tests.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from vending.protocol import (
    BoardLogic,
    HumanLine,
    LineFramer,
    Message,
    Persist,
    SendLine,
    StartMotor,
    format_line,
    parse_line,
)

ROOT = Path(__file__).resolve().parent.parent
ESP_CODE = ROOT / "esp_code"
BUILD = ESP_CODE / "build" / "host"
VECTORS = ROOT / "tests" / "vectors" / "protocol_v2.tsv"
WIFI_VECTORS = ROOT / "tests" / "vectors" / "wifi_v2.tsv"


@dataclass(frozen=True)
class FirmwareBuild:
    """Paths of the host binaries built from esp_code/."""

    core_tests: Path
    host_board: Path
    host_wifi_board: Path


@functools.lru_cache(maxsize=1)
def _build() -> FirmwareBuild | str:
    missing = [tool for tool in ("make", "g++") if shutil.which(tool) is None]
    if not Path("/usr/include/mbedtls/md.h").exists():
        missing.append("libmbedtls-dev (the core's crypto seam uses mbedTLS, as on the chip)")
    if missing:
        return f"the firmware host build needs {' and '.join(missing)} (./test.sh installs them)"
    result = subprocess.run(
        ["make", "-C", str(ESP_CODE), f"BUILD={BUILD}", "all"],
        capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"firmware host build failed:\n{result.stdout}\n{result.stderr}")
    return FirmwareBuild(BUILD / "core_tests", BUILD / "host_board", BUILD / "host_wifi_board")


def firmware_build() -> FirmwareBuild:
    """Build (incrementally, once per session) and return the host binaries, or skip."""
    built = _build()
    if isinstance(built, str):
        if os.environ.get("CI"):  # CI must run these, not skip them quietly
            raise AssertionError(built)
        pytest.skip(built)
    return built


def missing_or_skip(purpose: str, missing: list[str]) -> None:
    """Skip (or, under CI, fail) when tools test.sh installs are missing."""
    if not missing:
        return
    reason = f"the {purpose} needs {', '.join(missing)} (./test.sh installs them as root)"
    if os.environ.get("CI"):  # CI installs them through test.sh: a skip would hide a gap
        raise AssertionError(reason)
    pytest.skip(reason)


def python_module_runs(module: str) -> bool:
    """Whether `python -m module version` works in this interpreter (e.g. ziglang)."""
    try:
        return subprocess.run([sys.executable, "-m", module, "version"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# ----- scripted runs: the C++ board and the Python model on the same input ------------


@dataclass
class BoardOptions:
    """The fake hardware both sides simulate; times in milliseconds."""

    dev: str = "ESP32_6CC8404FE03C"
    fw: str = "2.0.0"
    boot: str = "5E1F0A3C"
    slots: int = 5
    motor_ms: int = 200
    max_run_ms: int = 1000
    sensor_ms: Optional[int] = None  # noqa: UP045 (get_type_hints on 3.9)
    jam: bool = False
    jam_ms: int = 500

    def args(self) -> list[str]:
        """The host_board flags for these options."""
        out = [
            "--dev", self.dev, "--fw", self.fw, "--boot", self.boot, "--slots", str(self.slots),
            "--motor-ms", str(self.motor_ms), "--max-run-ms", str(self.max_run_ms),
            "--jam-ms", str(self.jam_ms),
        ]
        if self.sensor_ms is not None:
            out += ["--sensor-ms", str(self.sensor_ms)]
        if self.jam:
            out.append("--jam")
        return out


def run_host_scripted(build: FirmwareBuild, script: bytes, options: BoardOptions,
                      workdir: Path) -> tuple[bytes, list[str]]:
    """Run the C++ host board in scripted mode; return its output and its motor journal."""
    memory, journal = workdir / "cpp-memory", workdir / "cpp-journal"
    for path in (memory, journal):
        path.unlink(missing_ok=True)
    result = subprocess.run(
        [str(build.host_board), "--scripted", "--memory", str(memory), "--journal", str(journal),
         *options.args()],
        input=script, capture_output=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    events = journal.read_text().splitlines() if journal.exists() else []
    return result.stdout, [e for e in events if e.startswith("start")]


@dataclass
class ReferenceScript:
    """The host board's scripted mode, re-done with BoardLogic and a fake motor in Python."""

    options: BoardOptions
    output: bytearray = field(default_factory=bytearray)
    starts: list[str] = field(default_factory=list)
    _snapshot: Optional[dict] = None  # noqa: UP045
    _now: int = 0
    _motor_slot: Optional[int] = None  # noqa: UP045
    _motor_started: int = 0

    def __post_init__(self) -> None:
        self._board = self._make(self.options.boot)
        self._framer = LineFramer()

    def _make(self, boot: str) -> BoardLogic:
        o = self.options
        return BoardLogic(o.dev, o.fw, o.slots, boot, snapshot=self._snapshot,
                          motor_timeout=o.max_run_ms)

    def _apply(self, actions: list) -> None:
        for action in actions:
            if isinstance(action, SendLine):
                self.output += action.data
            elif isinstance(action, Persist):
                self._snapshot = action.snapshot
            elif isinstance(action, StartMotor):
                self._motor_slot, self._motor_started = action.slot, self._now
                self.starts.append(f"start slot={action.slot}")
            else:  # StopMotor: the watchdog cut it
                self._motor_slot = None

    def _motor_step(self) -> None:
        o = self.options
        if self._motor_slot is None or not self._board.busy:
            self._motor_slot = None
            return
        elapsed = self._now - self._motor_started
        sensor = o.jam or o.sensor_ms is not None
        if sensor and not o.jam and elapsed >= (o.sensor_ms or 0):
            result: tuple[str, Optional[str]] = ("success", None)  # noqa: UP045
        elif sensor and elapsed >= o.jam_ms:
            result = ("failed", "jam")
        elif not sensor and elapsed >= o.motor_ms:
            result = ("success", None)
        else:
            return
        self._motor_slot = None
        self._apply(self._board.motor_finished(result[0], self._now, result[1]))

    def run(self, script: bytes) -> bytes:
        """Feed the script (same directives as host_board --scripted); return the output."""
        for line in script.splitlines(keepends=True):
            if line.startswith(b"@advance "):
                for _ in range(int(line[9:])):
                    self._now += 1
                    # The C++ engine checks the hard limit before the motor's own end.
                    self._apply(self._board.tick(self._now))
                    self._motor_step()
            elif line.startswith(b"@boot"):
                self._apply(self._board.boot(self._now))
            elif line.startswith(b"@reboot "):
                self._motor_slot = None
                self._board = self._make(line[8:16].decode())
                self._framer = LineFramer()
                self._apply(self._board.boot(self._now))
            else:
                for item in self._framer.feed(line):
                    self._apply(self._board.receive(item, self._now))
        return bytes(self.output)


# ----- the live host board over a pty -------------------------------------------------


class _HostProcess:
    """A host-built board process: stopping it like a power cut or politely."""

    proc: subprocess.Popen | None = None

    def kill(self) -> None:
        """SIGKILL: a power cut, nothing gets to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._release()

    def stop(self) -> None:
        """Stop politely (SIGTERM; it also ends a held poll at once), or kill when it does not go."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._release()

    def _release(self) -> None:
        """Close what the process left open (pipes, reader threads)."""


class HostBoardProcess(_HostProcess):
    """One host_board process serving a pty; its memory and journal files outlive it."""

    def __init__(self, build: FirmwareBuild, workdir: Path, options: BoardOptions,
                 link: Path | None = None) -> None:
        self.build, self.workdir, self.options, self.link = build, workdir, options, link
        self.memory = workdir / "memory"
        self.journal = workdir / "journal"
        self.proc: subprocess.Popen | None = None
        self.pty_path = ""

    def start(self, boot: str | None = None) -> HostBoardProcess:
        """Start the process (optionally with a new boot id) and wait for its pty path."""
        if boot is not None:
            self.options.boot = boot
        args = [str(self.build.host_board), "--pty", "--memory", str(self.memory),
                "--journal", str(self.journal), *self.options.args()]
        if self.link is not None:
            args += ["--link", str(self.link)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().decode().strip()
        assert first.startswith("PTY "), f"host_board said {first!r}"
        self.pty_path = first[4:]
        return self

    def _release(self) -> None:
        if self.proc is not None:
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()

    def motor_starts(self) -> list[str]:
        """The `start slot=N` lines of the motor journal, across every run."""
        if not self.journal.exists():
            return []
        return [line for line in self.journal.read_text().splitlines() if line.startswith("start")]


class PtyClient:
    """The server's side of the wire, opened raw on the board's pty (no pyserial needed)."""

    def __init__(self, path: str) -> None:
        import termios
        import tty

        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)
        self.framer = LineFramer()
        self.lines: list[bytes] = []

    def close(self) -> None:
        """Close the pty side."""
        os.close(self.fd)

    def send(self, data: bytes) -> None:
        """Write raw bytes (a whole line, terminator included)."""
        os.write(self.fd, data)

    def send_msg(self, msg: Message) -> None:
        """Write one machine line."""
        self.send(format_line(msg))

    def _pump(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        for item in self.framer.feed(data):
            assert isinstance(item, bytes), item
            self.lines.append(item)

    def wait_for(self, predicate, timeout: float = 5.0, what: str = "a line"):
        """Read until a parsed line satisfies predicate; return it. Lines before it are kept."""
        import select

        deadline = time.monotonic() + timeout
        index = 0
        while True:
            while index < len(self.lines):
                parsed = parse_line(self.lines[index])
                index += 1
                if predicate(parsed):
                    del self.lines[:index]
                    return parsed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; got {self.lines!r}")
            ready, _, _ = select.select([self.fd], [], [], min(remaining, 0.1))
            if ready:
                self._pump()

    def drain(self, quiet: float = 0.2) -> list[bytes]:
        """Collect what arrives until the line has been quiet for `quiet` seconds."""
        import select

        while True:
            ready, _, _ = select.select([self.fd], [], [], quiet)
            if not ready:
                break
            self._pump()
        lines, self.lines = self.lines, []
        return lines


def is_human(parsed: object) -> bool:
    """True for a human line."""
    return isinstance(parsed, HumanLine)


# ----- the host WiFi board: the core's WifiBoard over UDP and HTTP on 127.0.0.1 ---------


class HostWifiBoardProcess(_HostProcess):
    """One host_wifi_board process; its NVS files and motor log in `state_dir` outlive it."""

    def __init__(self, build: FirmwareBuild, state_dir: Path, discover: tuple[str, int],
                 dev: str = "ESP32_246F28A1B2C3", motor_ms: int = 50, max_run_ms: int = 15000,
                 poll_wait: int = 2) -> None:
        self.build, self.state_dir, self.discover, self.dev = build, state_dir, discover, dev
        self.motor_ms, self.max_run_ms, self.poll_wait = motor_ms, max_run_ms, poll_wait
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []  # console output of the current run
        self._reader: threading.Thread | None = None

    def start(self) -> HostWifiBoardProcess:
        """Power on: start the process and collect its console lines on a named thread."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        args = [str(self.build.host_wifi_board), "--state-dir", str(self.state_dir),
                "--discover", f"{self.discover[0]}:{self.discover[1]}", "--dev", self.dev,
                "--motor-ms", str(self.motor_ms), "--max-run-ms", str(self.max_run_ms),
                "--poll-wait", str(self.poll_wait), "--retry-ms", "100"]
        self.lines = []
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        lines, out = self.lines, self.proc.stdout
        assert out is not None

        def read() -> None:
            for line in out:
                lines.append(line.rstrip("\n"))

        self._reader = threading.Thread(target=read, name=f"host-wifi-board-{self.dev}",
                                        daemon=True)
        self._reader.start()
        return self

    def saw(self, text: str) -> str | None:
        """The first console line of this run containing `text`, or None."""
        return next((line for line in list(self.lines) if text in line), None)

    def _release(self) -> None:
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def motor_starts(self) -> list[str]:
        """The `start slot=N` lines of the motor log, across every run."""
        log = self.state_dir / "motor.log"
        if not log.exists():
            return []
        return [line for line in log.read_text().splitlines() if line.startswith("start")]

    def stored_secret(self) -> str | None:
        """The secret the board keeps in its NVS file (hex), or None."""
        nvs = self.state_dir / "nvs"
        if not nvs.exists():
            return None
        for line in nvs.read_text().splitlines():
            if line.startswith("secret "):
                return line[7:]
        return None

    def boot_count(self) -> int:
        nvs = self.state_dir / "nvs"
        for line in nvs.read_text().splitlines() if nvs.exists() else []:
            if line.startswith("boot "):
                return int(line[5:])
        return 0
