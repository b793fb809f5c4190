"""The fault campaign: many vends through every kind of board while faults are injected at random.

One driver, used by `tests/test_fault_campaign.py` (CI size) and `bench/fault_campaign.py`
(`--vends 10000`). The server runs as a subprocess (`python src/app.py`) on a temporary
data directory so it can be killed with SIGKILL and restarted; the boards are simulated
serial boards on ptys, simulated WiFi boards on 127.0.0.1 and, when it builds, the
host-built firmware board. Every board keeps a journal of motor runs by request id; at the
end the journals and the server's transaction rows are checked against each other (see
`find_violations`). POSIX only (ptys, /proc). What is checked: docs/fault-campaign.md.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests

from vending.sim.serial import SerialBoardSim
from vending.sim.wifi import WifiBoard

ROOT = Path(__file__).resolve().parents[1]

# `failed` reasons that say the motor never turned for the request (docs/protocol.md,
# docs/protocol-wifi.md and the server): the board refused it before the motor (not_ready,
# invalid_slot, busy), never recorded it (no_ack: QUERY answered unseen; not_received), or
# the server never sent it (offline, expired, shutdown, not_sent).
NO_MOTOR_REASONS = frozenset({"not_ready", "invalid_slot", "busy", "no_ack", "not_received",
                              "offline", "expired", "shutdown", "not_sent", "store_unavailable"})
# `failed` reasons reported after the motor turned and nothing fell: the journal may hold
# one run for the id, never a dispensing one.
MOTOR_RAN_REASONS = frozenset({"jam", "empty", "motor_fault"})

SERIAL_FAULTS = (
    "drop_ACK", "drop_DONE", "duplicate_ACK", "duplicate_DONE", "delay_ACK", "delay_DONE",
    "corrupt_ACK", "corrupt_DONE", "corrupt_received", "reboot_vend_received",
    "reboot_motor_started", "reboot_motor_finished", "reboot_now", "unplug", "forced_failure",
    "drop_STATE", "delay_STATE", "drop_PONG", "hang",
)
WIFI_FAULTS = ("lost_response", "network_drop", "wifi_reboot", "confirm_held")
FIRMWARE_FAULTS = ("power_cut",)
# Faults of the whole machine: the database locked by another program, the disk full, every
# real board offline at once (the server's simulator must not stand in).
SERVER_FAULTS = ("db_locked", "disk_full", "all_offline")
DEFAULT_FIRMWARE_DEV = "ESP32_6CC8404FE03C"


def free_port() -> int:
    """A port the OS hands out on 127.0.0.1 (kept for every restart of the server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class CampaignSettings:
    """How big the campaign is and what it runs."""

    vends: int = 300
    seed: int = 20261126
    serial_boards: int = 2
    wifi_boards: int = 2
    firmware_board: bool = True
    clients: int = 4
    fault_rate: float = 0.3  # chance of a fault after each finished vend
    kills: int = 2  # server SIGKILLs, all in the last third (after the steady phase)
    steady_share: float = 0.6  # share of vends in the steady phase (no kill, leaks sampled)
    lost_answer_rate: float = 0.05  # vends whose first HTTP answer the client drops
    settle: float = 30.0  # seconds allowed at the end for every vend to reach an end state
    motor_time: float = 0.02
    vend_timeout: float = 2.0
    # The server keeps its simulator: with real boards configured it must never vend.
    simulator: bool = True
    server_fault_share: float = 0.08  # share of faults that are SERVER_FAULTS
    second_servers: int = 2  # second servers started on the same data dir, mid-vends
    store_busy_timeout: float = 0.3  # so a short lock already makes writes fail
    disk_mb: int = 64  # the size-limited filesystem the data dir lives on (root only)


@dataclass
class FaultEvent:
    """A fault and when it could affect a vend; device "*" is the server itself."""

    kind: str
    device: str
    start: float
    end: float
    request_id: str | None = None


@dataclass
class Run:
    """One motor run from a board's journal."""

    board: str
    request_id: str | None
    result: str | None  # success | failed | interrupted | None (still turning)


@dataclass
class Sample:
    """The server process's resources at one moment."""

    label: str
    fds: int
    threads: int
    rss_kb: int


def sample_process(pid: int, label: str) -> Sample:
    """File descriptors, threads and RSS of a process, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        values[key] = rest.strip()
    return Sample(label, fds, int(values["Threads"]), int(values["VmRSS"].split()[0]))


class ServerProcess:
    """`python src/app.py` on a temporary data dir; started, SIGKILLed and restarted."""

    def __init__(self, workdir: Path, serial_links: list[str], settings: CampaignSettings,
                 data_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.data_dir = data_dir or workdir / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.serial_links = serial_links
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until /health answers."""
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VENDING_LOG_LEVEL": "WARNING",
               "VENDING_SERIAL_ACK_TIMEOUT": "0.15", "VENDING_SERIAL_HANDSHAKE_TIMEOUT": "0.3",
               "VENDING_SERIAL_RESCAN_INTERVAL": "0.1", "VENDING_SERIAL_PING_INTERVAL": "0.5",
               "VENDING_VEND_TIMEOUT": str(self.settings.vend_timeout),
               "VENDING_WIFI_OFFLINE_AFTER": "1.0", "VENDING_DEVICE_QUEUE_LIMIT": "20",
               "VENDING_STORE_BUSY_TIMEOUT": str(self.settings.store_busy_timeout)}
        args = self.command(self.port)
        self.starts += 1
        log = open(self.workdir / f"server-{self.starts}.log", "wb")  # noqa: SIM115 (the child owns it)
        try:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see"
                                   f" {self.workdir}/server-{self.starts}.log")
            try:
                if requests.get(self.url + "/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not become healthy in time")

    def command(self, port: int) -> list[str]:
        """The server's command line, on `port`."""
        args = [sys.executable, str(ROOT / "src" / "app.py"), "--host", "127.0.0.1",
                "--port", str(port), "--data-dir", str(self.data_dir), "--no-mdns",
                "--no-serial-scan", "--no-discovery", "--auto-approve-devices", "--threads", "32"]
        if not self.settings.simulator:
            args.append("--no-simulator")
        for link in self.serial_links:
            args += ["--serial-port", link]
        return args

    def kill(self) -> None:
        """SIGKILL: nothing gets to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a clean stop), or SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class CampaignResult:
    """What happened and what the checks found."""

    seed: int
    vends: int = 0
    accepted: int = 0
    faults: Counter = field(default_factory=Counter)  # faults that took effect
    injected: Counter = field(default_factory=Counter)  # faults asked for (some never fire)
    outcomes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    unknown_board_knows: Counter = field(default_factory=Counter)
    unknown_never_sent: int = 0
    runs: int = 0
    orphans: int = 0
    samples: list[Sample] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    boards: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The counts, one fact per line."""
        lines = [
            f"seed={self.seed} vends={self.vends} accepted={self.accepted} motor_runs={self.runs}"
            f" elapsed={self.elapsed:.1f}s boards={','.join(self.boards)}",
            "faults injected: " + " ".join(f"{k}={v}" for k, v in sorted(self.injected.items())),
            "faults that took effect: " + " ".join(f"{k}={v}" for k, v in sorted(self.faults.items())),
            "outcomes: " + " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items())),
            "reasons: " + " ".join(f"{k}={v}" for k, v in sorted(self.reasons.items())),
            "unknown though the board's journal has the outcome: "
            + (" ".join(f"{k}={v}" for k, v in sorted(self.unknown_board_knows.items())) or "none"),
            f"unknown though never sent to a board: {self.unknown_never_sent}",
            f"rows no client was answered with: {self.orphans}",
        ]
        for s in self.samples:
            lines.append(f"server {s.label}: fds={s.fds} threads={s.threads} rss={s.rss_kb}kB")
        lines.append(f"violations: {len(self.violations)}")
        lines += [f"  {v}" for v in self.violations[:50]]
        return "\n".join(lines)


class Campaign:
    """Runs one seeded campaign in `workdir`; `run()` returns the checked result."""

    def __init__(self, workdir: Path, settings: CampaignSettings,
                 firmware: Any | None = None, log: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.settings = settings
        self.firmware = firmware  # a tests.firmware_support.FirmwareBuild, or None
        self.say = log
        self.rng = random.Random(settings.seed)
        self.result = CampaignResult(settings.seed)
        self.events: list[FaultEvent] = []
        self.sent: dict[str, float] = {}  # request id -> when the driver learnt it
        self.keys: dict[str, str | None] = {}  # Idempotency-Key -> the transaction it got
        self._lock = threading.Lock()
        self._issued = 0
        self._finished = 0
        self._server_up = threading.Event()
        self._go = threading.Event()  # clients may start new vends
        self._go.set()
        self._faults_on = threading.Event()
        self._stop_faults = threading.Event()
        self._out: set[str] = set()  # boards in a fault that lasts (unplugged, cut off)
        self._timed: list[threading.Thread] = []
        self.serial: list[SerialBoardSim] = []
        self.wifi: list[WifiBoard] = []
        self.fw: Any = None
        self.server: ServerProcess | None = None
        # Held by a server-wide store fault and by a server kill, so a restart never meets a
        # full disk or a locked database and a second server never meets a restart.
        self._server_lock = threading.Lock()
        self.disk: Path | None = None  # the size-limited filesystem, when one could be mounted

    # ----- set-up -------------------------------------------------------------------

    def _start_boards(self) -> list[str]:
        s = self.settings
        links = []
        for i in range(s.serial_boards):
            link = str(self.workdir / f"tty-sim{i}")
            board = SerialBoardSim(f"ESP32_5CCF7F0000{i + 1:02X}", link=link,
                                   motor_time=s.motor_time, seed=s.seed + i).start()
            self.serial.append(board)
            links.append(link)
        if self.firmware is not None:
            from firmware_support import BoardOptions, HostBoardProcess

            fw_dir = self.workdir / "fw"
            fw_dir.mkdir()
            link = fw_dir / "ttyFW"
            options = BoardOptions(dev=DEFAULT_FIRMWARE_DEV, motor_ms=max(1, int(s.motor_time * 1000)),
                                   max_run_ms=5000, boot=self._boot_id())
            self.fw = HostBoardProcess(self.firmware, fw_dir, options, link=link).start()
            links.append(str(link))
        return links

    def _boot_id(self) -> str:
        return f"{self.rng.getrandbits(32):08X}"

    def _start_wifi(self) -> None:
        assert self.server is not None
        for i in range(self.settings.wifi_boards):
            board = WifiBoard(f"ESP32_246F2800{i + 1:04X}", server=("127.0.0.1", self.server.port),
                              motor_time=self.settings.motor_time, poll_wait=2.0,
                              state_file=self.workdir / f"wifi{i}.json").start()
            self.wifi.append(board)

    def _devices(self) -> dict[str, dict[str, Any]]:
        assert self.server is not None
        body = requests.get(self.server.url + "/esp32/devices/list", timeout=5).json()
        return {d["device_id"]: d for d in body["devices"]}

    def board_ids(self) -> list[str]:
        ids = [b.device_id for b in self.serial] + [b.device_id for b in self.wifi]
        if self.fw is not None:
            ids.append(DEFAULT_FIRMWARE_DEV)
        return ids

    def _wait_all_online(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                devices = self._devices()
                missing = [d for d in self.board_ids()
                           if devices.get(d, {}).get("status") != "online"]
            except requests.RequestException as exc:
                missing = [str(exc)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"boards not online after {timeout}s: {missing}")
            time.sleep(0.05)

    # ----- the vends ------------------------------------------------------------------

    def _take(self) -> bool:
        while True:
            self._go.wait()
            with self._lock:
                if self._issued >= self.settings.vends:
                    return False
                if self._go.is_set():
                    self._issued += 1
                    return True

    def _client(self, index: int) -> None:
        """Vend with an Idempotency-Key until answered; a lost answer is asked again, same key."""
        rng = random.Random(self.settings.seed * 1000 + index)
        count = 0
        while self._take():
            count += 1
            key = f"campaign-{self.settings.seed}-{index}-{count}"
            lose = rng.random() < self.settings.lost_answer_rate
            body = self._vend_until_answered(key, rng.randint(1, 5), lose, rng)
            with self._lock:
                self._finished += 1
                self.result.vends += 1
                self.keys[key] = body.get("transaction_id") if body else None
                if body and "transaction_id" in body:
                    self.sent[body["transaction_id"]] = time.time()
                    self.result.accepted += 1

    def _vend_until_answered(self, key: str, slot: int, lose: bool,
                             rng: random.Random) -> dict[str, Any] | None:
        assert self.server is not None
        first = True
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            self._server_up.wait(60)
            # A lost answer: the client gives up on its first try before the server answers.
            timeout = rng.uniform(0.005, 0.06) if lose and first else 30.0
            try:
                response = requests.post(f"{self.server.url}/vend/{slot}?wait=8", timeout=timeout,
                                         headers={"Idempotency-Key": key, "Connection": "close"})
            except requests.RequestException:
                if lose and first:
                    self._record("lost_http_answer", "client", time.time())
                first = False
                time.sleep(0.05)  # back-off before asking again (a killed server restarts)
                continue
            first = False
            # 409: that key's vend is still running; 429/503: no board free right now.
            if response.status_code in (409, 429, 503):
                time.sleep(0.05)
                continue
            try:
                return response.json()
            except ValueError:
                return {"error": response.text}
        return None

    # ----- faults ---------------------------------------------------------------------

    def _record(self, kind: str, device: str, start: float, end: float | None = None,
                request_id: str | None = None) -> None:
        with self._lock:
            self.events.append(FaultEvent(kind, device, start, end if end is not None else start,
                                          request_id))
            self.result.faults[kind] += 1

    def _inject(self, rng: random.Random) -> None:
        # First the kind of board (so the one firmware board gets its share), then the fault.
        share = self.settings.server_fault_share
        groups = [(0.6, self.serial, SERIAL_FAULTS), (0.25, self.wifi, WIFI_FAULTS),
                  (0.15, [self.fw] if self.fw is not None else [], FIRMWARE_FAULTS),
                  (share / (1 - share) if share < 1 else 1.0, ["*"], SERVER_FAULTS)]
        groups = [g for g in groups if g[1] and g[0] > 0]
        _, boards, faults = rng.choices(groups, weights=[g[0] for g in groups])[0]
        kind, board = rng.choice(faults), rng.choice(boards)
        if board == "*":
            self._server_fault(kind, rng)
            return
        device_id = board.device_id if board is not self.fw else DEFAULT_FIRMWARE_DEV
        with self._lock:
            if device_id in self._out:
                return  # this board is unplugged, cut off or without power already
            self.result.injected[kind] += 1
        if isinstance(board, SerialBoardSim):
            self._serial_fault(kind, board, rng)
        elif isinstance(board, WifiBoard):
            self._wifi_fault(kind, board, rng)
        else:
            self._firmware_fault(rng)

    def _serial_fault(self, kind: str, board: SerialBoardSim, rng: random.Random) -> None:
        what, _, verb = kind.partition("_")
        if kind == "unplug":
            board.unplug()
            self._later(kind, board.device_id, rng.uniform(0.05, 0.8), board.plug)
        elif kind == "hang":
            board.hang(True)
            self._later(kind, board.device_id, rng.uniform(0.1, 2.0), lambda: board.hang(False))
        elif kind == "reboot_now":
            board.reboot()
            self._record(kind, board.device_id, time.time() - 0.1, time.time() + 1.0)
        elif what == "drop":
            board.drop_next(verb, rng.randint(1, 4))
        elif what == "duplicate":
            board.duplicate_next(verb)
        elif what == "delay":
            board.delay_next(verb, rng.uniform(0.05, 3.0))
        elif what == "corrupt" and verb != "received":
            board.corrupt_next(verb, rng.choice(["flip", "swap"]))
        elif kind == "corrupt_received":
            board.corrupt_next_received(rng.choice(["flip", "swap"]))
        elif what == "reboot":
            board.reboot_when(verb)
        else:
            board.next_result("failed", rng.choice(sorted(MOTOR_RAN_REASONS)))
        # Armed hooks are recorded when they fire (board.faults_fired), not here.

    def _wifi_fault(self, kind: str, board: WifiBoard, rng: random.Random) -> None:
        if kind == "lost_response":
            board.drop_responses += 1
            self._record(kind, board.device_id, time.time(), time.time())
        elif kind == "network_drop":
            board.drop_network()
            self._later(kind, board.device_id, rng.uniform(0.1, 3.0), board.restore_network)
        elif kind == "confirm_held":
            board.confirm_gate.clear()
            self._later(kind, board.device_id, rng.uniform(0.1, 3.0), board.confirm_gate.set)
        else:
            start = time.time()
            board.reboot()
            self._record(kind, board.device_id, start, time.time() + 1.0)

    def _firmware_fault(self, rng: random.Random) -> None:
        # A power cut at whatever moment the board is in: before, during or after a motor run.
        self.fw.kill()
        if self.fw.link is not None and os.path.islink(self.fw.link):
            os.unlink(self.fw.link)  # the USB device is gone with its power (see SerialBoardSim.unplug)
        boot = self._boot_id()
        self._later("power_cut", DEFAULT_FIRMWARE_DEV, rng.uniform(0.02, 0.5),
                    lambda: self.fw.start(boot=boot))

    def _server_fault(self, kind: str, rng: random.Random) -> None:
        """A fault of the whole machine; skipped while another one (or a kill) is under way."""
        if kind == "disk_full" and self.disk is None:
            return  # no size-limited filesystem here (needs root)
        if not self._server_lock.acquire(blocking=False):
            return
        seconds = rng.uniform(0.2, 2.0)
        try:
            restore = self._start_server_fault(kind, seconds)
        except BaseException:
            self._server_lock.release()
            raise
        if restore is None:
            self._server_lock.release()
            return
        with self._lock:
            self.result.injected[kind] += 1

        def end() -> None:
            try:
                restore()
            finally:
                self._server_lock.release()

        # Held outcomes are written with back-off after the store recovers: a wider window.
        self._later(kind, "*", seconds, end, grace=6.0)

    def _start_server_fault(self, kind: str, seconds: float) -> Callable[[], None] | None:
        assert self.server is not None
        if kind == "db_locked":
            # Another program (this driver) holds the database, as a sqlite3 shell would.
            # Released by the thread that ends the fault.
            db = sqlite3.connect(str(self.server.data_dir / "vending.sqlite3"), timeout=5,
                                 isolation_level=None, check_same_thread=False)
            try:
                db.execute("BEGIN EXCLUSIVE")
            except sqlite3.OperationalError:
                db.close()
                return None

            def unlock() -> None:
                db.execute("COMMIT")
                db.close()
            return unlock
        if kind == "disk_full":
            assert self.disk is not None
            filler = fill_disk(self.disk)
            return lambda: filler.unlink(missing_ok=True)
        # all_offline: every real board at once; the simulator must not take over.
        with self._lock:
            if self._out - {"*"}:
                return None
        restores: list[Callable[[], None]] = []
        for board in self.serial:
            board.unplug()
            restores.append(board.plug)
        for wifi in self.wifi:
            wifi.drop_network()
            restores.append(wifi.restore_network)
        if self.fw is not None:
            self.fw.kill()
            if self.fw.link is not None and os.path.islink(self.fw.link):
                os.unlink(self.fw.link)
            boot = self._boot_id()
            restores.append(lambda: self.fw.start(boot=boot))
        with self._lock:
            self._out.update(self.board_ids())

        def back() -> None:
            for restore in restores:
                restore()
            start = time.time() - seconds
            for device_id in self.board_ids():
                self._record("all_offline", device_id, start, time.time() + 1.5)
                with self._lock:
                    self._out.discard(device_id)
        return back

    def _second_server(self) -> None:
        """Start a second server on the live data dir: it must refuse and touch nothing."""
        assert self.server is not None
        with self._server_lock:
            start = time.time()
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VENDING_LOG_LEVEL": "WARNING"}
            proc = subprocess.Popen(self.server.command(free_port()), env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                out, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            self._record("second_server", "*", start, time.time() + 1.0)
        if proc.returncode != 1 or "another server" not in out:
            with self._lock:
                self.result.violations.append(
                    f"a second server on the same data dir did not refuse (exit {proc.returncode}):"
                    f" {out[-300:]!r}")

    def _later(self, kind: str, device_id: str, seconds: float, restore: Callable[[], None],
               grace: float = 1.5) -> None:
        """End a fault after `seconds` on a thread of its own, so the faults keep coming."""
        start = time.time()

        def end() -> None:
            time.sleep(seconds)  # the fault's duration, not a wait for a condition
            try:
                restore()
            finally:
                # The board needs a moment to be back (handshake, poll) after the fault ends.
                if kind != "all_offline":  # recorded per board by its restore
                    self._record(kind, device_id, start, time.time() + grace)
                with self._lock:
                    self._out.discard(device_id)

        with self._lock:
            self._out.add(device_id)
        thread = threading.Thread(target=end, name=f"campaign-{kind}-{device_id}", daemon=True)
        self._timed.append(thread)
        thread.start()

    def _join_timed(self) -> None:
        for thread in self._timed:
            thread.join(30)
        self._timed.clear()

    def _select_loop(self) -> None:
        """Spread the vends: the server sends each to the selected board (others on fail-over)."""
        rng = random.Random(self.settings.seed + 11)
        ids = self.board_ids()
        assert self.server is not None
        while not self._stop_faults.wait(rng.uniform(0.05, 0.3)):
            if not self._server_up.is_set():
                continue
            try:
                requests.post(self.server.url + "/esp32/devices/select", json={"device_id": rng.choice(ids)},
                              headers={"Connection": "close"}, timeout=5)
            except requests.RequestException:
                pass

    def _fault_loop(self) -> None:
        rng = random.Random(self.settings.seed + 7)
        seen = 0
        while not self._stop_faults.is_set():
            with self._lock:
                finished = self._finished
            if not self._faults_on.is_set():
                seen = finished  # vends while faults are off earn no fault later
                self._stop_faults.wait(0.02)
                continue
            if finished == seen:
                self._stop_faults.wait(0.005)
                continue
            for _ in range(finished - seen):
                if rng.random() < self.settings.fault_rate and self._faults_on.is_set():
                    self._inject(rng)
            seen = finished

    def _pause(self) -> None:
        """Let no new vend start, and wait for the clients' vends to finish."""
        self._go.clear()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self._lock:
                if self._finished >= self._issued:
                    return
            time.sleep(0.02)

    def _quiesce(self) -> None:
        """No faults armed, every board plugged and online, no vend open."""
        self._faults_on.clear()
        self._pause()
        self._join_timed()
        for board in self.serial:
            board.disarm()
        for board in self.wifi:
            board.drop_responses = 0
            board.restore_network()
        deadline = time.monotonic() + 30
        while any(b.faults_armed() for b in self.serial) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._wait_all_online()
        self._wait_no_open(20.0)

    def _warm_up(self) -> None:
        """One vend on every board, so what the server makes on first use exists before sampling."""
        assert self.server is not None
        for device_id in self.board_ids():
            requests.post(self.server.url + "/esp32/devices/select", json={"device_id": device_id},
                          timeout=5).raise_for_status()
            body = requests.post(self.server.url + "/vend/1?wait=10", timeout=30).json()
            if body.get("device_id") != device_id or body.get("status") != "success":
                raise AssertionError(f"warm-up vend on {device_id} went wrong: {body}")
            self.sent[body["transaction_id"]] = time.time()

    def _open_count(self) -> int:
        return len(self._rows(states=("pending", "sent")))

    def _wait_no_open(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._open_count():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _kill_server(self) -> None:
        assert self.server is not None
        with self._server_lock:
            start = time.time()
            self._server_up.clear()
            self.server.kill()
            self.server.start()
            self._server_up.set()
            self._record("server_sigkill", "*", start, time.time() + 2.0)

    def _probe_boards(self) -> None:
        """After the faults: every board still takes and finishes a vend (no queue stopped)."""
        assert self.server is not None
        self._wait_all_online()
        for device_id in self.board_ids():
            requests.post(self.server.url + "/esp32/devices/select", json={"device_id": device_id},
                          timeout=5).raise_for_status()
            key = f"campaign-{self.settings.seed}-probe-{device_id}"
            body = requests.post(self.server.url + "/vend/2?wait=15", timeout=30,
                                 headers={"Idempotency-Key": key}).json()
            if "transaction_id" in body:
                self.sent[body["transaction_id"]] = time.time()
                self.keys[key] = body["transaction_id"]
            if body.get("device_id") != device_id or body.get("status") != "success":
                self.result.violations.append(
                    f"{device_id}: its queue stopped moving; a vend after the faults got {body}")

    # ----- the store and the journals -------------------------------------------------

    def _rows(self, states: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        assert self.server is not None
        path = self.server.data_dir / "vending.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            db.row_factory = sqlite3.Row
            if states:
                marks = ",".join("?" * len(states))
                rows = db.execute(f"SELECT * FROM transactions WHERE state IN ({marks})", states)
            else:
                rows = db.execute("SELECT * FROM transactions")
            return [dict(r) for r in rows.fetchall()]
        finally:
            db.close()

    def journal_runs(self) -> list[Run]:
        """Every board's motor runs, by request id."""
        runs = [Run(b.device_id, r.request_id, r.result) for b in self.serial for r in b.motor_runs]
        # The WiFi simulator's motor always dispenses once it starts.
        runs += [Run(b.device_id, r.request_id, "success") for b in self.wifi for r in b.motor_runs]
        if self.fw is not None:
            runs += firmware_runs(self.fw.journal, DEFAULT_FIRMWARE_DEV)
        return runs

    def _fired_events(self) -> None:
        for board in self.serial:
            for when, kind in board.faults_fired:
                # A held-back line or a reboot takes effect a little later than it fires.
                self.events.append(FaultEvent(kind, board.device_id, when, when + 3.5))
                self.result.faults[kind] += 1
        for board in self.wifi:
            for text in board.events:
                if text.startswith("dropped the response carrying "):
                    rid = text.rsplit(" ", 1)[-1]
                    self.events.append(FaultEvent("lost_response", board.device_id, 0, 0, rid))

    # ----- the run ----------------------------------------------------------------------

    def run(self) -> CampaignResult:
        """Set up, drive the vends with faults, settle, check; always tears down."""
        s = self.settings
        started = time.monotonic()
        self.say(f"fault campaign: seed={s.seed} vends={s.vends} (rerun with this seed to repeat)")
        clients: list[threading.Thread] = []
        fault_thread = threading.Thread(target=self._fault_loop, name="campaign-faults", daemon=True)
        select_thread = threading.Thread(target=self._select_loop, name="campaign-select", daemon=True)
        try:
            links = self._start_boards()
            self.disk = mount_small_disk(self.workdir / "disk", s.disk_mb)
            if self.disk is None:
                self.say("  no size-limited filesystem (needs root and tmpfs): no disk_full faults")
            data_dir = self.disk / "data" if self.disk is not None else None
            self.server = ServerProcess(self.workdir, links, s, data_dir)
            self.server.start()
            self._server_up.set()
            self._start_wifi()
            self._wait_all_online()
            self.result.boards = self.board_ids()
            self._warm_up()
            steady_end = int(s.vends * s.steady_share)
            warm = min(10, max(1, steady_end // 10))
            third = warm + (steady_end - warm) // 3
            # Kills well before the last vend, so the clients are still there to see them.
            kill_range = range(steady_end + 1, max(steady_end + 2, s.vends - 4 * s.clients))
            kill_points = sorted(self.rng.sample(kill_range, min(s.kills, len(kill_range))))
            # Second servers while vends run, in the steady and the chaos phases.
            second_range = range(third, max(third + 1, s.vends - 4 * s.clients))
            second_points = sorted(self.rng.sample(second_range, min(s.second_servers, len(second_range))))
            fault_thread.start()
            select_thread.start()
            clients = [threading.Thread(target=self._client, args=(i,), name=f"campaign-client-{i}",
                                        daemon=True) for i in range(s.clients)]
            for thread in clients:
                thread.start()
            phase = "warm-up"
            step = max(1, s.vends // 10)
            reported = 0
            while any(t.is_alive() for t in clients):
                with self._lock:
                    done = self._finished
                if done >= reported + step:
                    reported = done - done % step
                    self.say(f"  {reported} vends, {time.monotonic() - started:.0f}s")
                if phase == "warm-up" and done >= warm:
                    # Every board has had vends (threads made on first use exist): start sampling.
                    self._quiesce()
                    self.result.samples.append(sample_process(self.server.pid, "steady start"))
                    self._faults_on.set()
                    self._go.set()
                    phase = "steady"
                if phase == "steady" and done >= third:
                    self.result.samples.append(sample_process(self.server.pid, "steady 1/3 (rss)"))
                    phase = "steady-2"
                if phase == "steady-2" and done >= steady_end:
                    self._quiesce()
                    self.result.samples.append(sample_process(self.server.pid, "steady end"))
                    check_resources(self.result.samples, self.result.violations)
                    self._faults_on.set()
                    self._go.set()
                    phase = "chaos"
                if phase == "chaos" and kill_points and done >= kill_points[0]:
                    kill_points.pop(0)
                    self._kill_server()
                if phase in ("steady-2", "chaos") and second_points and done >= second_points[0]:
                    second_points.pop(0)
                    thread = threading.Thread(target=self._second_server, name="campaign-second-server",
                                              daemon=True)
                    self._timed.append(thread)
                    thread.start()
                time.sleep(0.01)
            self._stop_faults.set()
            fault_thread.join(30)
            select_thread.join(10)
            self._faults_on.clear()
            self._settle()
            self._probe_boards()
            self._fired_events()
            self.check()
        finally:
            self._stop_faults.set()
            self._teardown()
            self.result.elapsed = time.monotonic() - started
        return self.result

    def _settle(self) -> None:
        self._join_timed()
        for board in self.serial:
            board.disarm()
            if not board.plugged:
                board.plug()
        for board in self.wifi:
            board.drop_responses = 0
            board.restore_network()
        if self.fw is not None and (self.fw.proc is None or self.fw.proc.poll() is not None):
            self.fw.start(boot=self._boot_id())
        if not self._wait_no_open(self.settings.settle):
            self.result.violations.append(
                f"vends still open after the {self.settings.settle:g}s settle period")
        # Outcomes learnt late (a delayed DONE, a WiFi outbox) get a moment to arrive.
        deadline = time.monotonic() + min(10.0, self.settings.settle)
        while time.monotonic() < deadline:
            if not any(b.outbox for b in self.wifi) and not any(b._delayed for b in self.serial):
                break
            time.sleep(0.05)
        time.sleep(0.5)

    def _teardown(self) -> None:
        for board in self.wifi:
            board.request_stop()
        if self.server is not None:
            self.server.stop()
        for board in self.wifi:
            board.stop()
        for board in self.serial:
            board.stop()
        if self.fw is not None:
            self.fw.stop()
        if self.disk is not None:
            subprocess.run(["umount", "-l", str(self.disk)], check=False)

    # ----- the checks -------------------------------------------------------------------

    def check(self) -> None:
        """Every invariant of the campaign; violations are collected, not raised."""
        rows = {r["id"]: r for r in self._rows()}
        runs = self.journal_runs()
        self.result.runs = len(runs)
        verdict = find_violations(rows, runs, self.events, told=set(self.sent), keys=self.keys,
                                  real_boards=True)
        self.result.violations += verdict.violations
        self.result.outcomes.update(verdict.outcomes)
        self.result.reasons.update(verdict.reasons)
        self.result.unknown_board_knows.update(verdict.unknown_board_knows)
        self.result.unknown_never_sent = verdict.unknown_never_sent
        # Asking again with the same key answers every vend, even one a server kill cut off.
        self.result.orphans = len(set(rows) - set(self.sent))
        if self.result.orphans:
            self.result.violations.append(f"{self.result.orphans} rows no client was told about")
        unanswered = [k for k, v in self.keys.items() if v is None]
        if unanswered:
            self.result.violations.append(f"{len(unanswered)} vends never answered, e.g. {unanswered[:3]}")


@dataclass
class Verdict:
    """What the invariant check found."""

    violations: list[str] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    # `unknown` rows whose board journal shows a finished run: safe, but a person is asked
    # to look at a vend the board could have told the server about.
    unknown_board_knows: Counter = field(default_factory=Counter)
    # `unknown` rows never marked sent: no board can have had them (the server commits `sent`
    # before a command leaves), yet a server restart records them as unknown.
    unknown_never_sent: int = 0


def touched(row: dict[str, Any], events: list[FaultEvent], now: float | None = None) -> list[str]:
    """The faults that could have hidden this vend's outcome (by id, or by board and time)."""
    begin = row["created_at"] - 0.2
    end = (row["finished_at"] or now or time.time()) + 0.2
    return [e.kind for e in events
            if (e.request_id == row["id"])
            or (e.request_id is None and e.device in ("*", row["device_id"])
                and e.start <= end and e.end >= begin)]


def find_violations(rows: dict[str, dict[str, Any]], runs: list[Run], events: list[FaultEvent],
                    told: set[str] | None = None, final: bool = True,
                    keys: dict[str, str | None] | None = None, real_boards: bool = False) -> Verdict:
    """Check transaction rows against the boards' motor journals.

    - no request id ran a motor twice, and no motor ran for an id with no row;
    - `success` has exactly one finished (dispensing) run, on the board the row names;
    - `failed` for a reason in NO_MOTOR_REASONS has no run; for a reason in
      MOTOR_RAN_REASONS no dispensing run; any other reason is reported (unclassified);
    - `unknown` only where a fault touched the vend (see `touched`), and never because the
      server's vend thread raised (`internal_error`);
    - with `final`, every row has an end state; every id in `told` has a row;
    - one row per Idempotency-Key, the one the key's client was answered with (`keys`);
    - with `real_boards` (real boards configured), no vend served by the simulator.
    """
    verdict = Verdict()
    out = verdict.violations
    by_id: dict[str, list[Run]] = {}
    for run in runs:
        if run.request_id is None:
            out.append(f"{run.board}: a motor run with no request id")
            continue
        by_id.setdefault(run.request_id, []).append(run)
    for rid, its_runs in by_id.items():
        if len(its_runs) > 1:
            out.append(f"{rid}: motor ran {len(its_runs)} times: {its_runs}")
        if rid not in rows:
            out.append(f"{rid}: a motor ran for a request id the server has no row for")
    for rid in told or ():
        if rid not in rows:
            out.append(f"{rid}: the server answered with this id but has no row (lost)")
    by_key: dict[str, list[str]] = {}
    for rid, row in rows.items():
        if row.get("idempotency_key"):
            by_key.setdefault(row["idempotency_key"], []).append(rid)
    for key, ids in by_key.items():
        if len(ids) > 1:
            out.append(f"Idempotency-Key {key}: {len(ids)} vends {ids}")
        elif keys is not None and keys.get(key) not in (None, ids[0]):
            out.append(f"Idempotency-Key {key}: answered {keys[key]}, stored {ids[0]}")
    for rid, row in rows.items():
        state, reason = row["state"], row["reason"]
        verdict.outcomes[state] += 1
        verdict.reasons[f"{state}:{reason}"] += 1
        its_runs = by_id.get(rid, [])
        if real_boards and row.get("communication") == "simulation":
            out.append(f"{rid}: {state} served by the simulator while real boards are configured")
        if state == "success":
            if [r.result for r in its_runs] != ["success"] or its_runs[0].board != row["device_id"]:
                out.append(f"{rid}: success but the journal shows {its_runs} (device {row['device_id']})")
        elif state == "failed":
            if reason in NO_MOTOR_REASONS:
                if its_runs:
                    out.append(f"{rid}: failed ({reason}: no motor) but the motor ran: {its_runs}")
            elif reason in MOTOR_RAN_REASONS:
                if any(r.result == "success" for r in its_runs):
                    out.append(f"{rid}: failed ({reason}) but the journal says dispensed: {its_runs}")
            else:
                out.append(f"{rid}: failed with a reason the campaign does not classify: {reason}")
        elif state == "unknown":
            if reason == "internal_error":
                out.append(f"{rid}: unknown because the vend thread raised (internal_error): a bug")
            if not touched(row, events):
                out.append(f"{rid}: unknown ({reason}) with no fault near it; journal {its_runs}")
            finished = [r for r in its_runs if r.result in ("success", "failed")]
            if finished:
                # The host board journals `stop` before it writes the outcome to its memory, so
                # a power cut in between leaves the board answering `interrupted`: for it this
                # count may include vends the board itself cannot tell.
                verdict.unknown_board_knows[f"{finished[0].board}:{reason}"] += 1
            if row.get("sent_at") is None:
                verdict.unknown_never_sent += 1
        elif final:
            out.append(f"{rid}: no end state after settling: {state}")
    return verdict


def firmware_runs(journal: Path, device_id: str) -> list[Run]:
    """Motor runs from the host board's journal (`run id=` before `start`, `stop` ends one)."""
    runs: list[Run] = []
    current: Run | None = None
    if not journal.exists():
        return runs
    for line in journal.read_text().splitlines():
        if line.startswith("run id="):
            current = Run(device_id, line.split()[1][3:], None)
            runs.append(current)
        elif line.startswith("stop") and current is not None and current.result is None:
            # No sensor and no jam on the campaign's host board: a stopped motor dispensed.
            current.result = "success"
        elif line == "alloff" and current is not None and current.result is None:
            current.result = "interrupted"  # power cut mid-run, then the boot's all-off
    return runs


def check_resources(samples: list[Sample], out: list[str]) -> None:
    """No leaked threads or fds across the steady phase; memory flat within a generous bound."""
    by = {s.label: s for s in samples}
    start, third, end = by.get("steady start"), by.get("steady 1/3 (rss)"), by.get("steady end")
    if start is None or end is None or third is None:
        out.append("resource samples missing")
        return
    # The HTTP worker pool grows on demand (trimmed after 30 s of surplus): on a busy machine
    # a few more workers start during the phase. A leak grows with the vends (hundreds here).
    if end.threads > start.threads + 8:
        out.append(f"threads grew over the steady phase: {start.threads} -> {end.threads}")
    if end.fds > start.fds + 4:
        out.append(f"file descriptors grew over the steady phase: {start.fds} -> {end.fds}")
    if end.rss_kb > 2 * third.rss_kb + 8 * 1024:
        out.append(f"RSS grew over the steady phase: {third.rss_kb} kB -> {end.rss_kb} kB")


def mount_small_disk(path: Path, megabytes: int) -> Path | None:
    """A size-limited filesystem (tmpfs) for the data dir, so the disk can really fill; None if not root."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
                          capture_output=True, text=True)
    return path if done.returncode == 0 else None


def fill_disk(disk: Path) -> Path:
    """Write a file until the filesystem is full; deleting it frees the space."""
    filler = disk / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "ab", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 4096:
                    return filler
                chunk = chunk[:4096]
