"""The USB-to-UART bridges found on ESP32 boards, by VID:PID.

The one table that serial auto-detection (serial_ports.py), check_system.py and the udev
rule in deploy/ (checked by tests/test_deploy.py) go by. Auto-detection opens nothing else:
a port that is not one of these (the Pi's console on /dev/ttyS0, a modem) is never touched.
Standard library only: check_system.py reads it before the requirements are installed.
"""

from __future__ import annotations

# (VID, PID) -> name; None as the PID matches every product of that vendor.
ESP32_BRIDGES: dict[tuple[int, int | None], str] = {
    (0x10C4, 0xEA60): "Silicon Labs CP210x",
    (0x1A86, 0x7523): "WCH CH340",
    (0x1A86, 0x55D4): "WCH CH9102",
    (0x0403, 0x6001): "FTDI FT232R",
    (0x0403, 0x6010): "FTDI FT2232",
    (0x0403, 0x6015): "FTDI FT231X",
    (0x303A, None): "Espressif native USB",  # ESP32-S2/S3/C3/C6: every product id
}


def bridge_name(vid: int | None, pid: int | None) -> str | None:
    """The name of a known ESP32 USB bridge, or None when this VID:PID is not one."""
    if vid is None or pid is None:
        return None
    return ESP32_BRIDGES.get((vid, pid)) or ESP32_BRIDGES.get((vid, None))
