"""Finding and opening USB serial ports: ESP32 bridges by VID:PID, stable names, clear errors."""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass

import serial
from serial.tools import list_ports

from ..errors import DeviceError
from .usb_bridges import bridge_name

BY_ID_DIR = "/dev/serial/by-id"


class SerialPortError(DeviceError):
    """A serial port could not be opened or used."""


class PortBusy(SerialPortError):
    """Another program holds the port open."""


@dataclass(frozen=True)
class PortCandidate:
    """One serial port the system lists, and whether auto-detection takes it."""

    device: str  # as the system names it (/dev/ttyUSB0, COM5)
    path: str  # the name we open: the stable /dev/serial/by-id link when there is one
    vid: int | None
    pid: int | None
    description: str
    taken: bool
    why: str

    @property
    def vid_pid(self) -> str:
        if self.vid is None or self.pid is None:
            return "-"
        return f"{self.vid:04X}:{self.pid:04X}"


def stable_names() -> dict[str, str]:
    """Map each real device path to its /dev/serial/by-id link (Linux), which survives replugging."""
    names: dict[str, str] = {}
    if not os.path.isdir(BY_ID_DIR):
        return names
    for entry in sorted(os.listdir(BY_ID_DIR)):
        link = os.path.join(BY_ID_DIR, entry)
        names.setdefault(os.path.realpath(link), link)
    return names


def scan_ports() -> list[PortCandidate]:
    """Every port the system lists, with the verdict of auto-detection; opens nothing."""
    stable = stable_names()
    found = []
    for info in sorted(list_ports.comports(), key=lambda p: p.device):
        name = bridge_name(info.vid, info.pid)
        if name is not None:
            taken, why = True, f"{name} USB bridge ({info.vid:04X}:{info.pid:04X})"
        elif info.vid is None:
            taken, why = False, "not a USB device (a built-in UART or console): never opened"
        else:
            taken, why = False, f"USB {info.vid:04X}:{info.pid:04X} is not a known ESP32 bridge"
        path = stable.get(os.path.realpath(info.device), info.device)
        found.append(PortCandidate(info.device, path, info.vid, info.pid,
                                   info.description or "", taken, why))
    return found


def is_url(port: str) -> bool:
    """True for pyserial URLs such as socket://host:port or rfc2217://host:port."""
    return "://" in port


def open_port(port: str, baudrate: int = 115200) -> serial.SerialBase:
    """Open a device path or pyserial URL for a board, exclusively; raise PortBusy or SerialPortError."""
    try:
        ser = serial.serial_for_url(port, do_not_open=True, baudrate=baudrate, timeout=None,
                                    write_timeout=2.0)
        if not is_url(port):
            ser.exclusive = True
        # Neither line asserted keeps EN and IO0 high on the usual ESP32 auto-reset
        # circuit; the OS may still pulse them while opening, so a reboot stays possible.
        ser.dtr = False
        ser.rts = False
        ser.open()
    except (serial.SerialException, OSError, ValueError) as exc:
        busy, detail = describe_open_error(port, exc)
        raise (PortBusy if busy else SerialPortError)(detail) from exc
    return ser


def describe_open_error(port: str, exc: BaseException) -> tuple[bool, str]:
    """(is the port busy, a sentence telling a person what to do) for a failed open."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if "exclusively lock" in text or code in (errno.EBUSY, errno.EAGAIN):
        return True, (f"port busy: another program (Arduino Serial Monitor?) has {port} open;"
                      " close it")
    if sys.platform == "win32" and ("Access is denied" in text or "PermissionError" in text):
        return True, (f"port busy: another program (Arduino Serial Monitor?) has {port} open;"
                      " close it")
    if code == errno.EACCES or "Permission denied" in text:
        return False, (f"no permission to open {port}: add this user to the dialout group"
                       " (sudo usermod -aG dialout $USER) and log in again")
    if code in (errno.ENOENT, errno.ENXIO, errno.ENODEV, errno.EIO) or "No such file" in text:
        return False, f"{port} is not there: is the board plugged in?"
    return False, f"cannot open {port}: {text}"
