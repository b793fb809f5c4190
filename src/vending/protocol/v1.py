"""Legacy v1 boards: classify their chatty lines and format their commands.

v1 has no checksums and no request ids; lines are matched by the markers inside them,
because the firmware decorates them (e.g. "✅ VEND_SUCCESS:3").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from .errors import MalformedLine

V1_COMMANDS = ("VEND", "IDENTIFY", "DISCOVER", "STATUS", "PING", "HELP", "RESET")

_VEND_SUCCESS_RE = re.compile(r"(?<![A-Z_])VEND_SUCCESS:\s*([0-9]+)")
_KEY_VALUE_RE = re.compile(r"(?<![A-Z_])(DEVICE_ID|FIRMWARE_VERSION|SLOTS_AVAILABLE):\s*(\S+)")
# Any case: the earlier USB firmware writes "❌ Error: Invalid slot number. Must be 1-5".
_ERROR_RE = re.compile(r"(?<![A-Za-z_])ERROR\b[:\s]*(.*)", re.IGNORECASE)
_SEPARATOR_RE = re.compile(r"[-=_*#~]{5,}\Z")


@dataclass(frozen=True)
class V1VendSuccess:
    """`VEND_SUCCESS:<n>` somewhere in the line: slot n was dispensed."""

    slot: int
    text: str


@dataclass(frozen=True)
class V1DeviceId:
    """`DEVICE_ID:<id>` (e.g. ESP32_USB_6CC8404FE03C)."""

    device_id: str
    text: str


@dataclass(frozen=True)
class V1FirmwareVersion:
    """`FIRMWARE_VERSION:<version>`."""

    version: str
    text: str


@dataclass(frozen=True)
class V1SlotsAvailable:
    """`SLOTS_AVAILABLE:<n>`."""

    slots: int
    text: str


@dataclass(frozen=True)
class V1Error:
    """An error line such as "❌ ERROR: Unknown command" (any case); message is the text after it."""

    message: str
    text: str


@dataclass(frozen=True)
class V1Separator:
    """The dashed line a v1 board prints after each command's reply."""

    text: str


@dataclass(frozen=True)
class V1Other:
    """Any other line (banners, help text): for the log only."""

    text: str


V1Line = Union[
    V1VendSuccess, V1DeviceId, V1FirmwareVersion, V1SlotsAvailable, V1Error, V1Separator, V1Other
]


def parse_v1_line(line: bytes | str) -> V1Line:
    """Classify one line from a v1 board; never raises."""
    text = bytes(line).decode("utf-8", errors="replace") if isinstance(line, (bytes, bytearray)) else line
    text = text.rstrip("\r\n")
    found = _VEND_SUCCESS_RE.search(text)
    if found:
        return V1VendSuccess(int(found.group(1)), text)
    found = _KEY_VALUE_RE.search(text)
    if found:
        key, value = found.groups()
        if key == "DEVICE_ID":
            return V1DeviceId(value, text)
        if key == "FIRMWARE_VERSION":
            return V1FirmwareVersion(value, text)
        if value.isascii() and value.isdigit():
            return V1SlotsAvailable(int(value), text)
    found = _ERROR_RE.search(text)
    if found:
        return V1Error(found.group(1).strip(), text)
    if _SEPARATOR_RE.match(text.strip()):
        return V1Separator(text)
    return V1Other(text)


def format_v1_command(command: str, slot: int | None = None) -> bytes:
    """Return a v1 command line: ("VEND", 3) -> b"VEND:3\\n", ("IDENTIFY",) -> b"IDENTIFY\\n"."""
    command = command.upper()
    if command not in V1_COMMANDS:
        raise MalformedLine(f"not a v1 command: {command!r}")
    if command == "VEND":
        if not isinstance(slot, int) or isinstance(slot, bool) or not 1 <= slot <= 99:
            raise MalformedLine("v1 VEND needs a slot 1..99")
        return f"VEND:{slot}\n".encode("ascii")
    if slot is not None:
        raise MalformedLine(f"v1 {command} takes no slot")
    return f"{command}\n".encode("ascii")
