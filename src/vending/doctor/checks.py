"""The five checks of `check_system.py`: system, Python environment, ESP32 boards, the app,
a running server. Only the standard library at module level: they must run, and say what to
install, when the requirements are missing.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from ..devices.usb_bridges import bridge_name
from ..startup import IMPORT_NAMES
from .report import FAIL, OK, WARN, TestResult, error_text
from .requirements import parse_requirements, version_satisfies

# src/vending/doctor/checks.py -> the checkout (an editable install keeps the package there).
ROOT = Path(__file__).resolve().parents[3]
MIN_PYTHON = (3, 9)
REQUIRED_FILES = ("src/app.py", "requirements.txt", "src/vending/__init__.py",
                  "src/vending/store/schema.sql")
IS_WINDOWS = os.name == "nt"
VENV_PIP = r"venv\Scripts\pip" if IS_WINDOWS else "venv/bin/pip"
PIP_FIX = f"{VENV_PIP} install -r requirements.txt"



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

def check_environment(opts: argparse.Namespace) -> TestResult:
    """Every requirement importable at a matching version; inside the venv or not."""
    result = TestResult("Python Environment")
    from importlib import metadata

    try:
        requirements = parse_requirements(ROOT / "requirements.txt")
    except OSError as exc:
        result.add(FAIL, "requirements.txt", error_text(exc), "restore it: git checkout -- requirements.txt")
        requirements = []
    for dist, specs in requirements:
        module = IMPORT_NAMES.get(dist.lower(), dist.lower().replace("-", "_"))
        wanted = ",".join(op + v for op, v in specs)
        try:
            importlib.import_module(module)
        except Exception as exc:
            result.add(FAIL, dist, f"cannot import {module}: {error_text(exc)}", PIP_FIX)
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
            result.add(FAIL, "esp32_serial", f"does not import: {error_text(exc)}", PIP_FIX)
    try:
        from serial.tools import list_ports
    except Exception as exc:
        result.add(FAIL, "pyserial", f"cannot list serial ports: {error_text(exc)}", PIP_FIX)
        return result

    ports = sorted(list_ports.comports(), key=lambda p: p.device)
    bridges = []
    for port in ports:
        ids = f"{port.vid:04X}:{port.pid:04X}" if port.vid is not None else "no USB id"
        bridge = bridge_name(port.vid, port.pid)
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
        result.add(FAIL, f"{name} open", error_text(exc), PIP_FIX)
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

def use_this_checkout() -> None:
    """Import `vending` (and esp32_serial's imports of it) from this checkout's src/."""
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


def _import_app():
    use_this_checkout()
    vending = importlib.import_module("vending")
    # The package root is cheap; these load Flask and the rest, so a missing package shows here.
    importlib.import_module("vending.runtime")
    importlib.import_module("vending.web")
    return vending.create_app, vending.Config


def check_flask(opts: argparse.Namespace) -> TestResult:
    """Build the app in-process, call its main routes; the HTTP and discovery ports."""
    result = TestResult("Flask Application")
    try:
        create_app, config_class = _import_app()
    except Exception as exc:
        result.add(FAIL, "Import", f"the app does not import: {error_text(exc)}", PIP_FIX)
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
            result.add(FAIL, "Create app", error_text(exc),
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
    """A running server at --url answers /status with its devices and communication mode;
    none running is a warning."""
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
        # Before the first start this is normal: the seed asks for this check "if running".
        result.add(WARN, "GET /status", f"no server answers at {url} ({reason}); fine if it is"
                   " not started yet",
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
