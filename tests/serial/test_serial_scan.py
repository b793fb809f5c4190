"""Finding boards: only known ESP32 USB bridges are opened; hot-plug; stable names."""

from __future__ import annotations

import os
import termios
import tty

import pytest
from helpers import wait_until
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo
from serial_support import wait_online, wait_status

from vending.devices import serial_ports
from vending.devices.serial_ports import bridge_name, scan_ports


def fake_port(device: str, vid: int | None, pid: int | None, description: str) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.description = vid, pid, description
    return info


@pytest.fixture
def listed(monkeypatch) -> list[ListPortInfo]:
    """What `serial.tools.list_ports.comports()` returns during the test (edit it to hot-plug)."""
    ports: list[ListPortInfo] = []
    monkeypatch.setattr(list_ports, "comports", lambda *args, **kwargs: list(ports))
    return ports


@pytest.fixture
def bystander_pty():
    """A pty standing for a port that must never be opened; yields (path, was_opened)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    attrs[4] = attrs[5] = termios.B9600
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    path = os.ttyname(slave)
    os.close(slave)

    def was_opened() -> bool:
        # Opening with pyserial reconfigures the port (115200 baud); untouched it stays 9600.
        return termios.tcgetattr(master)[4] != termios.B9600

    yield path, was_opened
    os.close(master)


def test_known_bridges_are_recognised_by_vid_and_pid():
    assert bridge_name(0x10C4, 0xEA60) == "Silicon Labs CP210x"
    assert bridge_name(0x1A86, 0x7523) == "WCH CH340"
    assert bridge_name(0x1A86, 0x55D4) == "WCH CH9102"
    for pid in (0x6001, 0x6010, 0x6015):
        assert bridge_name(0x0403, pid)
    assert bridge_name(0x303A, 0x1001) == "Espressif native USB"
    assert bridge_name(0x2341, 0x0043) is None
    assert bridge_name(None, None) is None


def test_scanning_says_why_each_port_was_or_was_not_taken(listed):
    listed += [fake_port("/dev/ttyS0", None, None, "ttyS0"),
               fake_port("/dev/ttyACM0", 0x2341, 0x0043, "Arduino Uno"),
               fake_port("/dev/ttyUSB0", 0x1A86, 0x7523, "USB Serial")]
    verdicts = {c.device: c for c in scan_ports()}
    assert not verdicts["/dev/ttyS0"].taken
    assert "never opened" in verdicts["/dev/ttyS0"].why
    assert not verdicts["/dev/ttyACM0"].taken
    assert "2341:0043" in verdicts["/dev/ttyACM0"].why
    assert verdicts["/dev/ttyUSB0"].taken
    assert verdicts["/dev/ttyUSB0"].vid_pid == "1A86:7523"


def test_a_stable_by_id_name_is_preferred_over_the_device_name(listed, monkeypatch, tmp_path):
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    device = tmp_path / "ttyUSB7"
    device.touch()
    (by_id / "usb-Silicon_Labs_CP2102_0001-if00-port0").symlink_to(device)
    monkeypatch.setattr(serial_ports, "BY_ID_DIR", str(by_id))
    listed.append(fake_port(str(device), 0x10C4, 0xEA60, "CP2102"))
    [candidate] = scan_ports()
    assert candidate.path == str(by_id / "usb-Silicon_Labs_CP2102_0001-if00-port0")


def test_auto_detection_opens_a_known_bridge_and_never_any_other_port(
        listed, make_board, serial_app, bystander_pty):
    console, console_opened = bystander_pty
    board = make_board()
    listed += [fake_port(console, None, None, "ttyS0"),
               fake_port(board.pty_path, 0x10C4, 0xEA60, "CP2102 USB to UART")]
    app = serial_app(serial_scan=True)
    wait_online(app, board.device_id)
    monitor = app.extensions["vending"].serial
    scans = monitor.scans
    wait_until(lambda: monitor.scans >= scans + 3, message="a few more rescans")
    assert not console_opened()
    assert app.test_client().post("/vend/1").get_json()["status"] == "success"


def test_a_board_plugged_in_later_is_found_and_comes_back_after_a_replug(listed, make_board, serial_app):
    board = make_board()
    app = serial_app(serial_scan=True)
    monitor = app.extensions["vending"].serial
    wait_until(lambda: monitor.scans >= 2, message="rescans with nothing plugged in")
    listed.append(fake_port(board.pty_path, 0x303A, 0x1001, "ESP32-S3"))
    wait_online(app, board.device_id)

    listed.clear()
    board.unplug()
    wait_status(app, board.device_id, "offline", timeout=2.0)
    board.plug()
    listed.append(fake_port(board.pty_path, 0x303A, 0x1001, "ESP32-S3"))
    wait_online(app, board.device_id)
    assert app.test_client().post("/vend/2").get_json()["status"] == "success"


def test_serial_settings_come_from_the_environment():
    from vending import Config

    config = Config.from_env({"VENDING_SERIAL_PORTS": "/dev/ttyUSB0,socket://127.0.0.1:7000",
                              "VENDING_SERIAL_ACK_TIMEOUT": "0.5",
                              "VENDING_SERIAL_RESCAN_INTERVAL": "4"})
    assert config.serial_ports == ["/dev/ttyUSB0", "socket://127.0.0.1:7000"]
    assert config.serial_ack_timeout == 0.5
    assert config.serial_rescan_interval == 4.0
    with pytest.raises(ValueError):
        Config.from_env({"VENDING_SERIAL_ACK_TIMEOUT": "0"})
