"""esp32_serial.py: the command-line tool and importable face of the serial link."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_tool():
    spec = importlib.util.spec_from_file_location("esp32_serial", ROOT / "esp32_serial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tool():
    return load_tool()


def test_identify_status_and_vend_from_python(tool, make_board):
    board = make_board()
    fast = tool.SerialSettings(handshake_timeout=0.3)
    with tool.open_board(board.path, timeout=5, settings=fast) as client:
        info = client.identify()
        assert info["device_id"] == board.device_id
        assert info["protocol"] == 2
        status = client.status()
        assert status["answered"] and status["state"] == "ready"
        assert status["boot_id"] == board.boot_id
        outcome = client.vend(2)
        assert outcome.state == "success"
    assert len(board.motor_runs) == 1


def test_a_v1_board_is_identified_and_vends_from_python(tool, make_board):
    board = make_board("ESP32_USB_5CCF7F0000AA", legacy=True)
    fast = tool.SerialSettings(handshake_timeout=0.3)
    with tool.open_board(board.path, timeout=5, settings=fast) as client:
        assert client.identify()["protocol"] == 1
        assert "STATUS:READY" in client.status()["lines"]
        assert client.vend(1).state == "success"


def test_the_command_line_vends_and_prints_json(make_board, capsys):
    board = make_board(reboot_on_open=True)  # its ID arrives right after the open
    status = load_tool().main([board.path, "vend", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0
    assert out["status"] == "success"
    assert [r.slot for r in board.motor_runs] == [3]


def test_a_missing_port_is_a_clear_error_with_exit_status_2(tmp_path, capsys):
    status = load_tool().main([str(tmp_path / "nothing"), "identify", "--timeout", "2"])
    assert status == 2
    assert "is not there" in capsys.readouterr().err


def test_list_runs_as_a_script_and_opens_nothing():
    result = subprocess.run([sys.executable, str(ROOT / "esp32_serial.py"), "--list", "--json"],
                            capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    for port in json.loads(result.stdout):
        assert set(port) >= {"path", "vid_pid", "taken", "why"}
