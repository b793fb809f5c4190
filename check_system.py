#!/usr/bin/env python3
"""System check for the vending machine controller: `python check_system.py --help`.

Runs five tests (system, Python environment, ESP32 module, Flask application, server
connection) and prints, for every problem, what to run or change. It must work when
dependencies are missing, so only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import platform
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import traceback
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent
MIN_PYTHON = (3, 9)
REQUIRED_FILES = ("src/app.py", "requirements.txt", "src/vending/__init__.py",
                  "src/vending/store/schema.sql")
# Distribution name in requirements.txt -> module to import.
IMPORT_NAMES = {"flask": "flask", "pyserial": "serial", "waitress": "waitress",
                "requests": "requests", "prometheus-client": "prometheus_client",
                "prometheus_client": "prometheus_client", "zeroconf": "zeroconf",
                "paho-mqtt": "paho.mqtt"}
# USB-serial bridges found on ESP32 boards, by (VID, PID); None matches any PID.
ESP32_BRIDGES = {
    (0x10C4, 0xEA60): "Silicon Labs CP210x",
    (0x1A86, 0x7523): "WCH CH340",
    (0x1A86, 0x55D4): "WCH CH9102",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x0403, 0x6010): "FTDI FT2232",
    (0x0403, 0x6015): "FTDI FT231X",
    (0x303A, None): "Espressif native USB",
}
OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MARKS = {OK: "\u2705", WARN: "\u26a0\ufe0f ", FAIL: "\u274c", SKIP: "\u23ed\ufe0f "}
ASCII_MARKS = {OK: "[OK]  ", WARN: "[WARN]", FAIL: "[FAIL]", SKIP: "[SKIP]"}
IS_WINDOWS = os.name == "nt"
VENV_PIP = r"venv\Scripts\pip" if IS_WINDOWS else "venv/bin/pip"
PIP_FIX = f"{VENV_PIP} install -r requirements.txt"


@dataclass
class Check:
    """One line of the report: what was checked, how it went, and what to do about it."""

    status: str
    name: str
    detail: str = ""
    recommendation: str = ""


@dataclass
class TestResult:
    """One of the five tests and its checks."""

    name: str
    checks: list[Check] = field(default_factory=list)

    def add(self, status: str, name: str, detail: str = "", recommendation: str = "") -> Check:
        check = Check(status, name, detail, recommendation)
        self.checks.append(check)
        return check

    @property
    def status(self) -> str:
        states = {c.status for c in self.checks}
        return FAIL if FAIL in states else WARN if WARN in states else OK


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _bridge_name(vid: int | None, pid: int | None) -> str | None:
    if vid is None:
        return None
    return ESP32_BRIDGES.get((vid, pid)) or ESP32_BRIDGES.get((vid, None))


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# 1. System requirements

def check_system(opts: argparse.Namespace) -> TestResult:
    """OS, Python version, project files, data directory, free disk."""
    result = TestResult("System Requirements")
    result.add(OK, "Operating system", f"{platform.system()} {platform.release()} ({platform.machine()})")
    version = ".".join(map(str, sys.version_info[:3]))
    minimum = ".".join(map(str, MIN_PYTHON))
    if sys.version_info[:2] >= MIN_PYTHON:
        result.add(OK, "Python version", f"{version} (minimum {minimum})")
    else:
        result.add(FAIL, "Python version", f"{version} is older than the minimum {minimum}",
                   f"install Python {minimum} or newer (Raspberry Pi OS: sudo apt install python3;"
                   " Windows: https://www.python.org/downloads/) and recreate the venv")
    missing = [name for name in REQUIRED_FILES if not (ROOT / name).is_file()]
    if missing:
        result.add(FAIL, "Project files", f"missing: {', '.join(missing)}",
                   "run from a complete checkout: git status / git checkout -- . in " + str(ROOT))
    else:
        result.add(OK, "Project files", f"all present in {ROOT}")
    if not (ROOT / "esp32_serial.py").is_file():
        result.add(WARN, "esp32_serial.py", "not found (USB serial helpers unavailable)",
                   "update the checkout: git pull")
    _check_data_dir(result, opts.data_dir)
    return result


def _check_data_dir(result: TestResult, data_dir: Path) -> None:
    fix_owner = (f"sudo chown -R $USER {data_dir}" if not IS_WINDOWS
                 else "give your user write access to the folder, or use --data-dir")
    if data_dir.exists() and not data_dir.is_dir():
        result.add(FAIL, "Data directory", f"{data_dir} exists but is not a directory",
                   "move that file away or choose another place: --data-dir / VENDING_DATA_DIR")
        return
    target = data_dir if data_dir.is_dir() else _nearest_existing(data_dir)
    if not target.is_dir():
        result.add(FAIL, "Data directory", f"{data_dir} cannot be created: {target} is not a directory",
                   "choose another place: --data-dir / VENDING_DATA_DIR")
        return
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".check_system-"):
            pass
    except OSError as exc:
        where = "" if target == data_dir else f" (it would be created in {target})"
        result.add(FAIL, "Data directory", f"{data_dir} is not writable{where}: {exc.strerror}",
                   f"{fix_owner}, or choose another place: --data-dir / VENDING_DATA_DIR")
        return
    state = "writable" if target == data_dir else f"will be created in {target}"
    result.add(OK, "Data directory", f"{data_dir} {state}")
    free_mb = shutil.disk_usage(target).free / 2**20
    if free_mb < 10:
        result.add(FAIL, "Free disk", f"{free_mb:.0f} MB free in {target}",
                   "free some space: the database cannot grow (sudo apt clean, delete old logs)")
    elif free_mb < 200:
        result.add(WARN, "Free disk", f"only {free_mb:.0f} MB free in {target}",
                   "free some space soon (sudo apt clean, journalctl --vacuum-size=50M)")
    else:
        result.add(OK, "Free disk", f"{free_mb / 1024:.1f} GB free")


# 2. Python environment

_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*([^;#]*)")


def parse_requirements(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """(distribution, [(operator, version), ...]) for each plain line of requirements.txt."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _SPEC.match(line)
        if not match:
            continue
        specs = re.findall(r"(==|!=|<=|>=|<|>|~=)\s*([0-9][0-9A-Za-z.*+\-]*)", match.group(2))
        entries.append((match.group(1), specs))
    return entries


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def version_satisfies(version: str, specs: list[tuple[str, str]]) -> bool:
    """Whether `version` meets every (operator, bound); release numbers only, enough here."""
    have = _version_key(version)
    for op, bound in specs:
        want = _version_key(bound)
        ok = {"==": have == want, "!=": have != want, "<=": have <= want, ">=": have >= want,
              "<": have < want, ">": have > want,
              "~=": have >= want and have[:max(1, len(want) - 1)] == want[:max(1, len(want) - 1)],
              }[op]
        if not ok:
            return False
    return True


def check_environment(opts: argparse.Namespace) -> TestResult:
    """Every requirement importable at a matching version; inside the venv or not."""
    result = TestResult("Python Environment")
    from importlib import metadata

    try:
        requirements = parse_requirements(ROOT / "requirements.txt")
    except OSError as exc:
        result.add(FAIL, "requirements.txt", _error_text(exc), "restore it: git checkout -- requirements.txt")
        requirements = []
    for dist, specs in requirements:
        module = IMPORT_NAMES.get(dist.lower(), dist.lower().replace("-", "_"))
        wanted = ",".join(op + v for op, v in specs)
        try:
            importlib.import_module(module)
        except Exception as exc:
            result.add(FAIL, dist, f"cannot import {module}: {_error_text(exc)}", PIP_FIX)
            continue
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            result.add(WARN, dist, f"{module} imports but its version is unknown",
                       f"{VENV_PIP} install --force-reinstall '{dist}{wanted}'")
            continue
        if version_satisfies(version, specs):
            result.add(OK, dist, f"{version} (wanted {wanted or 'any'})")
        else:
            result.add(FAIL, dist, f"{version} does not satisfy {wanted}",
                       f"{VENV_PIP} install '{dist}{wanted}'  (or {PIP_FIX})")
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    activate = r"venv\Scripts\activate" if IS_WINDOWS else "source venv/bin/activate"
    if not in_venv:
        result.add(WARN, "Virtual environment", f"not in a virtual environment ({sys.executable})",
                   f"create and use one: python3 -m venv venv && {activate} && pip install -r"
                   " requirements.txt (or run setup.bat / start.sh)")
    elif Path(sys.prefix).resolve() == (ROOT / "venv").resolve():
        result.add(OK, "Virtual environment", f"the project's venv ({sys.prefix})")
    else:
        result.add(OK, "Virtual environment", f"{sys.prefix}")
    return result


# 3. ESP32 module

def _port_holders(device: str) -> list[str]:
    """Processes that have `device` open (Linux /proc); never opens the port itself."""
    holders = []
    try:
        target = os.path.realpath(device)
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            fd_dir = f"/proc/{pid}/fd"
            try:
                links = [os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)]
            except OSError:
                continue
            if target in links:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    command = "?"
                holders.append(f"pid {pid}: {command[:80]}")
    except OSError:
        pass
    return holders


def _dialout_hint() -> str:
    return "sudo usermod -a -G dialout $USER, then log out and back in"


def check_esp32(opts: argparse.Namespace) -> TestResult:
    """esp32_serial imports; ports listed with VID:PID; permissions, holders, explicit ports."""
    result = TestResult("ESP32 Module")
    if (ROOT / "esp32_serial.py").is_file():
        try:
            module = importlib.import_module("esp32_serial")
            result.add(OK, "esp32_serial", "imports")
            if hasattr(module, "list_boards"):
                boards = list(module.list_boards())
                result.add(OK, "esp32_serial.list_boards()", f"{len(boards)} board(s)")
        except Exception as exc:
            result.add(FAIL, "esp32_serial", f"does not import: {_error_text(exc)}", PIP_FIX)
    try:
        from serial.tools import list_ports
    except Exception as exc:
        result.add(FAIL, "pyserial", f"cannot list serial ports: {_error_text(exc)}", PIP_FIX)
        return result

    ports = sorted(list_ports.comports(), key=lambda p: p.device)
    bridges = []
    for port in ports:
        ids = f"{port.vid:04X}:{port.pid:04X}" if port.vid is not None else "no USB id"
        bridge = _bridge_name(port.vid, port.pid)
        if bridge:
            bridges.append(port)
            result.add(OK, port.device, f"{ids} {bridge}: looks like an ESP32 ({port.description})")
        else:
            result.add(OK, port.device, f"{ids}: not an ESP32 bridge, left alone ({port.description})")
    if not bridges:
        result.add(WARN, "ESP32 boards", "no USB serial ESP32 bridge found",
                   "plug the board in with a data USB cable, or use a WiFi board; the simulator"
                   " works without hardware")
    if sys.platform.startswith("linux"):
        _check_linux_access(result, [p.device for p in bridges])
    for name in opts.port:
        _try_port(result, name)
    return result


def _check_linux_access(result: TestResult, devices: list[str]) -> None:
    try:
        import grp

        dialout = grp.getgrnam("dialout").gr_gid
    except (ImportError, KeyError):
        dialout = None
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if dialout is not None and not is_root and dialout not in os.getgroups():
        result.add(WARN, "dialout group", "your user is not in the dialout group", _dialout_hint())
    for device in devices:
        if not os.access(device, os.R_OK | os.W_OK):
            result.add(FAIL, f"{device} access", "permission denied", _dialout_hint())
        holders = _port_holders(device)
        others = [h for h in holders if "app.py" not in h]
        if others:
            result.add(FAIL, f"{device} in use", f"held by {', '.join(others)}",
                       "close the Arduino IDE Serial Monitor or the other program using the port,"
                       " then restart the server")
        elif holders:
            result.add(OK, f"{device} in use", f"held by the vending server ({', '.join(holders)})")


def _try_port(result: TestResult, name: str) -> None:
    """Open a port the operator named, without resetting the board, and close it again."""
    try:
        import serial
    except Exception as exc:
        result.add(FAIL, f"{name} open", _error_text(exc), PIP_FIX)
        return
    try:
        port = serial.serial_for_url(name, baudrate=115200, do_not_open=True)
        port.dtr = False
        port.rts = False
        if hasattr(port, "exclusive") and not IS_WINDOWS:
            port.exclusive = True
        port.open()
        port.close()
    except (serial.SerialException, OSError, ValueError) as exc:
        text = str(exc)
        if "Permission denied" in text or getattr(exc, "errno", None) == errno.EACCES:
            fix = _dialout_hint()
        elif "busy" in text.lower() or "lock" in text.lower() or "denied" in text.lower():
            fix = "close the Arduino IDE Serial Monitor or the other program using the port"
        else:
            fix = "check the name (Linux /dev/ttyUSB0 or /dev/ttyACM0, Windows COM3) and the cable"
        result.add(FAIL, f"{name} open", text, fix)
        return
    result.add(OK, f"{name} open", "opens and closes")


# 4. Flask application

def _use_this_checkout() -> None:
    """Import `vending` (and esp32_serial's imports of it) from this checkout's src/."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


def _import_app():
    _use_this_checkout()
    vending = importlib.import_module("vending")
    return vending.create_app, vending.Config


def check_flask(opts: argparse.Namespace) -> TestResult:
    """Build the app in-process, call its main routes; the HTTP and discovery ports."""
    result = TestResult("Flask Application")
    try:
        create_app, config_class = _import_app()
    except Exception as exc:
        result.add(FAIL, "Import", f"the app does not import: {_error_text(exc)}", PIP_FIX)
    else:
        _exercise_app(result, create_app, config_class)
    _check_ports(result, opts)
    return result


def _exercise_app(result: TestResult, create_app: Callable[..., Any], config_class: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="vending-check-") as tmp:
        try:
            config = config_class(data_dir=Path(tmp), host="127.0.0.1", port=0, serial_scan=False,
                                  discovery=False, simulator=True, sim_motor_time=0.05,
                                  vend_timeout=5.0)
            app = create_app(config)
        except Exception as exc:
            result.add(FAIL, "Create app", _error_text(exc),
                       f"{PIP_FIX}; if it persists, report this: {traceback.format_exc(limit=-1).strip()}")
            return
        try:
            client = app.test_client()
            for path in ("/", "/status", "/health", "/esp32/devices/list", "/openapi.json"):
                response = client.get(path)
                if response.status_code == 200:
                    result.add(OK, f"GET {path}", "200")
                else:
                    result.add(FAIL, f"GET {path}", f"answered {response.status_code}",
                               "the app is broken: git status, then reinstall: " + PIP_FIX)
            response = client.post("/vend/1?wait=5")
            body = response.get_json(silent=True) or {}
            if response.status_code == 200 and body.get("success"):
                result.add(OK, "Vend on the simulated board", f"transaction {body.get('transaction_id')}")
            else:
                result.add(FAIL, "Vend on the simulated board",
                           f"{response.status_code}: {body.get('detail') or body.get('message')}",
                           "the vend path is broken: run the tests (./test.sh) to see where")
        finally:
            app.extensions["vending"].stop()


def _port_in_use(kind: int, port: int) -> OSError | None:
    """The error from binding `port` on every address and on loopback, or None if it is free."""
    for host in ("", "127.0.0.1"):
        sock = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM and not IS_WINDOWS:
                # As the server does: a port left in TIME_WAIT by a stopped server is free.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(1)
        except OSError as exc:
            return exc
        finally:
            sock.close()
    return None


def _our_server_status(port: int) -> dict[str, Any] | None:
    """/status of the vending server on localhost:port, or None if something else is there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
            body = json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and body.get("service") == "flask-vending-machine" else None


def _check_ports(result: TestResult, opts: argparse.Namespace) -> None:
    http, udp = opts.http_port, opts.discovery_port
    finder = ("netstat -ano | findstr :{port}" if IS_WINDOWS
              else "sudo ss -{flag}lnp 'sport = :{port}'")
    error = _port_in_use(socket.SOCK_STREAM, http)
    ours = None
    if error is None:
        result.add(OK, f"TCP port {http}", "free for the web server")
    else:
        ours = _our_server_status(http)
        if ours is not None:
            result.add(OK, f"TCP port {http}", "held by this vending server (it is running)")
        else:
            result.add(FAIL, f"TCP port {http}", f"used by another program ({error.strerror})",
                       f"find it with {finder.format(flag='t', port=http)} and stop it, or start the"
                       f" server with --port {http + 1}")
    error = _port_in_use(socket.SOCK_DGRAM, udp)
    if error is None:
        result.add(OK, f"UDP port {udp}", "free for WiFi discovery")
    elif ours is not None:
        result.add(OK, f"UDP port {udp}", "held, presumably by the running vending server's discovery")
    else:
        result.add(FAIL, f"UDP port {udp}", f"used by another program ({error.strerror})",
                   f"find it with {finder.format(flag='u', port=udp)} and stop it; WiFi boards look"
                   f" for the server on UDP {udp}")


# 5. Server connection

def check_server(opts: argparse.Namespace) -> TestResult:
    """A running server at --url answers /status with its devices and communication mode."""
    result = TestResult("Server Connection")
    url = opts.url.rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/status", timeout=opts.timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        result.add(FAIL, "GET /status", f"{url} answered {exc.code}",
                   "is that the vending server? Check --url and the server's log"
                   " (journalctl -u vending-machine)")
        return result
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        result.add(FAIL, "GET /status", f"no server answers at {url} ({reason})",
                   "start it: python src/app.py (Windows: start.bat; Pi service: sudo systemctl"
                   " start vending-machine), or point --url at it")
        return result
    if not isinstance(body, dict) or "devices" not in body:
        result.add(FAIL, "GET /status", f"{url} answered, but not like the vending server",
                   "check --url: another program answers there")
        return result
    result.add(OK, "GET /status", f"{url} version {body.get('version', '?')}, up {body.get('uptime', '?')} s")
    devices = body.get("devices") or []
    mode = body.get("communication_mode", "?")
    result.add(OK if mode != "none" else WARN, "Communication mode", f"{mode}",
               "" if mode != "none" else "connect a board, approve a WiFi board, or enable the simulator")
    for device in devices:
        status = device.get("status", "?")
        result.add(OK if status in ("online", "busy") else WARN,
                   f"Device {device.get('device_id', '?')}", f"{device.get('type', '?')}, {status}",
                   "" if status in ("online", "busy") else "see the board's log on the web page")
    if not devices:
        result.add(WARN, "Devices", "the server has no device",
                   "plug a board in, power a WiFi board, or start without --no-simulator")
    return result


# 6. End-to-end self-test (--e2e)

E2E_STEP_TIMEOUT = 20.0  # seconds any one step may take before it is reported as failed
E2E_SERIAL_ID = "ESP32_5CCF7F0E2E01"
E2E_FIX = "run the tests to see where it breaks: ./test.sh (Windows: python -m pytest -q)"


@dataclass
class E2EReport:
    """What the self-test did: its checks, each vend, and whether the serial part ran."""

    result: TestResult
    vends: list[dict[str, Any]] = field(default_factory=list)
    serial: str = "ran"
    serial_skip_reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"vends": self.vends, "serial": self.serial,
                "serial_skip_reason": self.serial_skip_reason or None}


class _Api:
    """The running server's REST API as an operator's script uses it: bearer token, JSON."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body: Any = None,
             timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            parsed = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            parsed = {"detail": raw[:200].decode("utf-8", "replace")}
        return status, parsed if isinstance(parsed, dict) else {"body": parsed}

    def device(self, device_id: str) -> dict[str, Any] | None:
        _, body = self.call("GET", "/esp32/devices/list")
        return next((d for d in body.get("devices", []) if d.get("device_id") == device_id), None)


def _wait_for(condition: Callable[[], Any], timeout: float | None = None) -> Any:
    """The first truthy value of `condition` before the deadline, else the last (falsy) one."""
    import time

    deadline = time.monotonic() + (E2E_STEP_TIMEOUT if timeout is None else timeout)
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def run_e2e(opts: argparse.Namespace) -> E2EReport:
    """Serve the app on 127.0.0.1, attach a serial board on a pty and a WiFi board, vend through each."""
    report = E2EReport(TestResult("End-to-End Self-Test"))
    result = report.result
    try:
        _use_this_checkout()
        from vending import Config, create_app
        from vending.serving import BackgroundServer
        from vending.sim.wifi import WifiBoard
    except Exception as exc:
        result.add(FAIL, "Import", f"the app or its simulators do not import: {_error_text(exc)}",
                   PIP_FIX)
        return report

    before = set(threading.enumerate())
    proxy_settings = _bypass_proxies_for_loopback()
    tmp = Path(tempfile.mkdtemp(prefix="vending-e2e-"))
    serial_board: Any = None
    wifi_board: Any = None
    app: Any = None
    server: Any = None
    try:
        result.add(OK, "Temporary data directory", str(tmp))
        if hasattr(os, "openpty"):
            from vending.sim.serial import SerialBoardSim

            serial_board = SerialBoardSim(E2E_SERIAL_ID, motor_time=0.05, seed=1).start()
            result.add(OK, "Serial board on a pty", f"{E2E_SERIAL_ID} on {serial_board.path}")
        else:
            report.serial = "skipped"
            report.serial_skip_reason = ("this system has no pseudo-terminals (os.openpty), so the"
                                         " serial board cannot be simulated; the WiFi part still runs")
            result.add(SKIP, "Serial board on a pty", f"skipped: {report.serial_skip_reason}")

        token = secrets.token_urlsafe(24)
        # Loopback only, nothing scanned but our own pty, nothing advertised, a throw-away
        # data directory: the self-test must not touch the shop's network or real boards.
        config = Config(
            data_dir=tmp, host="127.0.0.1", port=0, simulator=False,
            serial_ports=[serial_board.path] if serial_board else [], serial_scan=False,
            serial_handshake_timeout=1.0, serial_rescan_interval=0.2,
            discovery=True, discovery_port=0, mdns=False, mqtt_url="", webhook_urls=[],
            trust_localhost=False, admin_token=token, auto_approve_devices=False,
            threads=32, vend_timeout=10.0, shutdown_grace=1.0,
        )
        app = create_app(config)
        runtime = app.extensions["vending"]
        server = BackgroundServer(app, host="127.0.0.1", port=0, threads=config.threads).start()
        port = int(server.port)
        discovery = runtime.discovery
        if discovery is None or not discovery.port:
            result.add(FAIL, "Server started", "UDP discovery did not start on 127.0.0.1",
                       "see the error logged above; " + E2E_FIX)
            return report
        # The discovery reply must name the port the server really got.
        discovery.http_port = port
        api = _Api(f"http://127.0.0.1:{port}", token)
        result.add(OK, "Server started", f"http://127.0.0.1:{port}, UDP discovery on"
                   f" 127.0.0.1:{discovery.port}, operator token required")

        boards: list[tuple[str, str, Any]] = []
        if serial_board is not None:
            info = _wait_for(lambda: (d := api.device(E2E_SERIAL_ID)) and d.get("status") == "online" and d)
            if info:
                result.add(OK, "Serial board identified",
                           f"{E2E_SERIAL_ID} online over {info.get('transport')}, protocol"
                           f" {info.get('protocol')}, firmware {info.get('firmware_version')}")
                boards.append(("serial", E2E_SERIAL_ID, serial_board))
            else:
                result.add(FAIL, "Serial board identified",
                           f"{E2E_SERIAL_ID} not online after {E2E_STEP_TIMEOUT:g} s"
                           f" ({(api.device(E2E_SERIAL_ID) or {}).get('status', 'not listed')})",
                           E2E_FIX)

        wifi_board = WifiBoard(discovery_target=("127.0.0.1", discovery.port), motor_time=0.05,
                               poll_wait=2.0).start()
        wifi_id = wifi_board.device_id
        if _wifi_online(result, api, wifi_board, discovery.port):
            boards.append(("wifi", wifi_id, wifi_board))

        for slot, (transport, device_id, board) in enumerate(boards, start=1):
            _vend_through(report, api, transport, device_id, board, slot)
        if report.vends:
            _check_recorded(result, api, report.vends)
    except Exception as exc:
        result.add(FAIL, "Self-test crashed", _error_text(exc),
                   f"{E2E_FIX}; if it persists report: {traceback.format_exc(limit=-2).strip()}")
    finally:
        _e2e_cleanup(result, before, tmp, serial_board, wifi_board, app, server)
        for name, value in proxy_settings.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return report


def _bypass_proxies_for_loopback() -> dict[str, str | None]:
    """Keep the self-test's HTTP on 127.0.0.1 even when http_proxy is set; returns the old values."""
    saved = {name: os.environ.get(name) for name in ("no_proxy", "NO_PROXY")}
    # urllib and requests (the WiFi board) both read no_proxy on every request.
    for name, current in saved.items():
        os.environ[name] = ",".join(filter(None, [current, "127.0.0.1", "localhost"]))
    return saved


def _wifi_online(result: TestResult, api: _Api, board: Any, discovery_port: int) -> bool:
    """Discovery, pairing request, operator approval, first held poll; a check for each."""
    device_id = board.device_id
    pending = _wait_for(lambda: (d := api.device(device_id)) and d.get("status") == "pending_approval")
    found = next((e for e in board.events if e.startswith("discovered server")), None)
    if not pending or found is None:
        result.add(FAIL, "WiFi board found the server by discovery",
                   f"{device_id} sent discovery to 127.0.0.1:{discovery_port} but"
                   f" {'got no answer' if found is None else 'did not ask to pair'}"
                   f" within {E2E_STEP_TIMEOUT:g} s (board: {'; '.join(board.events[-3:]) or 'no events'})",
                   "a firewall may block UDP on 127.0.0.1; " + E2E_FIX)
        return False
    result.add(OK, "WiFi board found the server by discovery",
               f"{device_id}: {found}; asked to pair, waiting for approval")
    status, body = api.call("POST", f"/esp32/devices/{device_id}/approve")
    if status != 200:
        result.add(FAIL, "WiFi board approved", f"approve answered {status}: {body.get('detail')}",
                   E2E_FIX)
        return False
    result.add(OK, "WiFi board approved", f"POST /esp32/devices/{device_id}/approve with the operator token")
    info = _wait_for(lambda: (d := api.device(device_id)) and d.get("status") == "online"
                     and d.get("authenticated") and d)
    if not info:
        result.add(FAIL, "WiFi board paired and polling",
                   f"{device_id} not online after approval ({'; '.join(board.events[-3:])})", E2E_FIX)
        return False
    result.add(OK, "WiFi board paired and polling",
               f"{device_id} online over wifi, protocol {info.get('protocol')}, signed requests")
    return True


def _vend_through(report: E2EReport, api: _Api, transport: str, device_id: str, board: Any,
                  slot: int) -> None:
    """Select one board, vend, and check the answer against the board's own motor journal."""
    import time

    name = f"Vend over {transport}"
    result = report.result
    status, body = api.call("POST", "/esp32/devices/select", {"device_id": device_id})
    if status != 200:
        result.add(FAIL, name, f"selecting {device_id} answered {status}: {body.get('detail')}", E2E_FIX)
        return
    started = time.monotonic()
    status, body = api.call("POST", f"/vend/{slot}?wait=10", timeout=20.0)
    elapsed_ms = (time.monotonic() - started) * 1000
    txn = body.get("transaction_id")
    runs = [r for r in board.motor_runs if r.request_id == txn]
    vend = {"transport": transport, "device_id": body.get("device_id"), "slot": slot,
            "transaction_id": txn, "status": body.get("status"), "http_status": status,
            "communication": body.get("communication"), "motor_runs": len(runs),
            "milliseconds": round(elapsed_ms)}
    report.vends.append(vend)
    problems = []
    if status != 200 or body.get("status") != "success":
        why = body.get("detail") or body.get("message")
        problems.append(f"answered {status} {body.get('status')}: {why}")
    if body.get("communication") != transport or body.get("device_id") != device_id:
        problems.append(f"went to {body.get('device_id')} over {body.get('communication')}")
    if [r.slot for r in runs] != [slot]:
        problems.append(f"the board ran its motor {len(runs)} time(s) for it")
    vend["ok"] = not problems
    if problems:
        result.add(FAIL, name, f"slot {slot} on {device_id}: {'; '.join(problems)}", E2E_FIX)
        return
    result.add(OK, name, f"slot {slot} on {device_id}: success in {elapsed_ms:.0f} ms,"
               f" transaction {txn}, the motor ran once")


def _check_recorded(result: TestResult, api: _Api, vends: list[dict[str, Any]]) -> None:
    """Each vend is in the database with the outcome the API answered."""
    status, body = api.call("GET", "/transactions?limit=50")
    stored = {t.get("transaction_id"): t.get("status") for t in body.get("transactions", [])}
    wrong = [f"{v['transaction_id']} ({stored.get(v['transaction_id'], 'missing')})"
             for v in vends if stored.get(v["transaction_id"]) != v["status"]]
    if status != 200 or wrong:
        result.add(FAIL, "Transactions recorded", f"GET /transactions answered {status};"
                   f" not as answered: {', '.join(wrong) or '-'}", E2E_FIX)
    else:
        result.add(OK, "Transactions recorded", f"{len(vends)} vend(s) in the database as answered")


def _e2e_cleanup(result: TestResult, before: set[threading.Thread], tmp: Path, serial_board: Any,
                 wifi_board: Any, app: Any, server: Any) -> None:
    """Stop everything the self-test started, then say whether anything was left behind."""
    problems = []
    steps: list[tuple[str, Callable[[], None]]] = []
    if wifi_board is not None:
        steps.append(("WiFi board", wifi_board.request_stop))
    if app is not None:
        steps.append(("controller", app.extensions["vending"].stop))  # ends held polls at once
    if wifi_board is not None:
        steps.append(("WiFi board", wifi_board.stop))
    if server is not None:
        steps.append(("HTTP server", server.stop))
    if serial_board is not None:
        steps.append(("serial board", serial_board.stop))
    for what, stop in steps:
        try:
            stop()
        except Exception as exc:
            problems.append(f"stopping the {what}: {_error_text(exc)}")
    left = _wait_for(lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()],
                     timeout=5.0)
    if not left:
        names = sorted(t.name for t in threading.enumerate() if t not in before and t.is_alive())
        problems.append(f"threads still running: {', '.join(names)}")
    shutil.rmtree(tmp, ignore_errors=True)
    if tmp.exists():
        problems.append(f"could not remove {tmp}")
    if problems:
        result.add(WARN, "Clean-up", "; ".join(problems), "report this: the self-test leaks")
    else:
        pty = ", pty closed" if serial_board is not None else ""
        result.add(OK, "Clean-up", f"server, boards and threads stopped{pty}, {tmp} removed")


# Running and reporting

TESTS: list[tuple[str, Callable[[argparse.Namespace], TestResult]]] = [
    ("System Requirements", check_system),
    ("Python Environment", check_environment),
    ("ESP32 Module", check_esp32),
    ("Flask Application", check_flask),
    ("Server Connection", check_server),
]


def run_all(opts: argparse.Namespace) -> list[TestResult]:
    """Every test; a test that crashes is reported as a failure, not a traceback."""
    results = []
    for name, test in TESTS:
        try:
            results.append(test(opts))
        except Exception as exc:
            crashed = TestResult(name)
            crashed.add(FAIL, "Test crashed", _error_text(exc),
                        f"{PIP_FIX}; if it persists report: {traceback.format_exc(limit=-2).strip()}")
            results.append(crashed)
    return results


def _marks(stream: Any) -> dict[str, str]:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "".join(MARKS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII_MARKS
    return MARKS


def print_report(results: list[TestResult], quiet: bool, stream: Any = None,
                 title: str = "System Check") -> None:
    """Human report; --quiet keeps only problems and the summary."""
    stream = stream or sys.stdout
    marks = _marks(stream)
    if not quiet:
        print("=" * 60, file=stream)
        print(f" Flask Vending Machine - {title}", file=stream)
        print("=" * 60, file=stream)
    for result in results:
        lines = [c for c in result.checks if not quiet or c.status not in (OK, SKIP)]
        if not quiet:
            print(f"\nRunning {result.name} test...", file=stream)
        for check in lines:
            detail = f": {check.detail}" if check.detail else ""
            print(f"{marks[check.status]} {check.name}{detail}", file=stream)
            if check.recommendation and check.status not in (OK, SKIP):
                print(f"      -> {check.recommendation}", file=stream)
    counts = summary(results)
    verdict = "FAILED" if counts[FAIL] else "passed"
    skipped = f", {counts[SKIP]} skipped" if counts[SKIP] else ""
    print(f"\n{title.capitalize()} {verdict}: {counts[OK]} ok, {counts[WARN]} warning(s),"
          f" {counts[FAIL]} problem(s){skipped}", file=stream)


def summary(results: list[TestResult]) -> dict[str, int]:
    """How many checks ended in each state."""
    counts = {OK: 0, WARN: 0, FAIL: 0, SKIP: 0}
    for result in results:
        for check in result.checks:
            counts[check.status] += 1
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Check that this machine can run the vending controller.")
    parser.add_argument("--url", default="http://localhost:5000", help="running server to check")
    parser.add_argument("--json", action="store_true", help="print machine-readable results only")
    parser.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    parser.add_argument("--e2e", action="store_true",
                        help="only an end-to-end self-test without hardware: a server on free"
                             " loopback ports, a simulated serial board on a pty and a simulated"
                             " WiFi board, one vend through each")
    parser.add_argument("--http-port", type=int, default=5000, help="TCP port the server will use")
    parser.add_argument("--discovery-port", type=int, default=12346, help="UDP discovery port")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("VENDING_DATA_DIR") or ROOT / "instance"),
                        help="the server's data directory (VENDING_DATA_DIR, default instance/)")
    parser.add_argument("--port", action="append", default=[], metavar="PORT",
                        help="a serial port to try opening, e.g. /dev/ttyUSB0 or COM3; repeatable")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the server")
    return parser


def _main_e2e(opts: argparse.Namespace) -> int:
    report = run_e2e(opts)
    results = [report.result]
    counts = summary(results)
    code = 1 if counts[FAIL] else 0
    if opts.json:
        print(json.dumps({
            "tests": [{"name": r.name, "status": r.status, "checks": [asdict(c) for c in r.checks]}
                      for r in results],
            "e2e": report.as_json(),
            "summary": counts,
            "exit_code": code,
        }, indent=2))
    else:
        print_report(results, opts.quiet, title="End-to-End Self-Test")
    return code


def main(argv: list[str] | None = None) -> int:
    """0 when nothing failed, 1 when a check failed."""
    opts = build_parser().parse_args(argv)
    import logging

    # The in-process app logs its own start and stop; only its errors belong in this report.
    logging.basicConfig(level=logging.ERROR)
    if opts.e2e:
        return _main_e2e(opts)
    _use_this_checkout()
    results = run_all(opts)
    counts = summary(results)
    code = 1 if counts[FAIL] else 0
    if opts.json:
        print(json.dumps({
            "tests": [{"name": r.name, "status": r.status, "checks": [asdict(c) for c in r.checks]}
                      for r in results],
            "summary": counts,
            "exit_code": code,
        }, indent=2))
    else:
        print_report(results, opts.quiet)
    return code


if __name__ == "__main__":
    sys.exit(main())
