"""A server killed (SIGKILL) between delivering a command and the board's confirm."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import requests
from helpers import wait_until

from vending.sim.wifi import WifiBoard

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(port: int, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VENDING_DATA_DIR": str(data_dir),
           "VENDING_AUTO_APPROVE_DEVICES": "1"}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "src" / "app.py"), "--host", "127.0.0.1", "--port", str(port),
         "--no-simulator", "--no-serial-scan", "--no-discovery"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def healthy() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(healthy, timeout=20, interval=0.05, message="the server to start")
    return server


def test_a_killed_server_restarts_with_the_vend_unknown_until_the_board_confirms(tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(port, tmp_path)
    board = WifiBoard(server=("127.0.0.1", port), motor_time=0.02, poll_wait=2.0).start()
    try:
        wait_until(lambda: requests.get(url + "/status", timeout=3).json()["communication_mode"]
                   == "wifi", timeout=10, message="the board online")
        board.confirm_gate.clear()
        txn_id = requests.post(url + "/vend/2?wait=0", timeout=5).json()["transaction_id"]
        wait_until(lambda: board.motor_runs, message="the motor to run")
        server.kill()
        server.wait(10)
        server = _serve(port, tmp_path)
        assert requests.get(f"{url}/vend/{txn_id}", timeout=3).json()["status"] == "unknown"
        board.confirm_gate.set()
        wait_until(lambda: requests.get(f"{url}/vend/{txn_id}", timeout=3).json()["status"]
                   == "success", timeout=15, message="the board's confirm to settle it")
        assert len(board.motor_runs) == 1
    finally:
        board.stop()
        server.kill()
        server.wait(10)
