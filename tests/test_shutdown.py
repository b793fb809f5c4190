"""`python src/app.py` as a real process: SIGTERM finishes in-flight vends and exits promptly."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import answers, call, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name == "nt",
                                reason="POSIX signals only")


def test_sigterm_finishes_the_vend_in_flight_releases_the_port_and_exits_quickly(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), VENDING_SIM_MOTOR_TIME="1.0",
               PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [sys.executable, "src/app.py", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
         str(data), "--no-mdns", "--no-discovery", "--no-serial-scan", "--log-level", "info"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{base}/health") or server.poll() is not None, timeout=20,
                   message="the server to answer /health")
        assert server.poll() is None, server.communicate()
        status, done = call(f"{base}/vend/1?wait=10", "POST")
        assert status == 200 and done["status"] == "success"
        status, running = call(f"{base}/vend/2?wait=0", "POST")
        assert status == 202
        wait_until(lambda: call(f"{base}/vend/{running['transaction_id']}")[1]["status"] == "sent",
                   message="the second vend to reach the board")

        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()

    assert server.returncode == 0, err
    with sqlite3.connect(data / "vending.sqlite3") as db:
        states = dict(db.execute("SELECT id, state FROM transactions").fetchall())
    assert states == {done["transaction_id"]: "success", running["transaction_id"]: "success"}
    with socket.socket() as sock:
        # A restarted server can listen again (SO_REUSEADDR, as waitress, skips TIME_WAIT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
    lines = [line for line in err.splitlines() if line]
    assert lines and all(LOG_LINE.match(line) for line in lines), err
    assert any(line.endswith("vending: stopped") for line in lines)
