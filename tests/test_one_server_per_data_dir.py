"""One server per data directory: a second process started on it exits and touches nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import answers, call, free_port, test_config, wait_until

from vending import create_app
from vending.store.datadir import DataDirInUse, DataDirLock

ROOT = Path(__file__).resolve().parent.parent


def start_server(data: Path, port: int, motor_time: str = "2.0") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), VENDING_SIM_MOTOR_TIME=motor_time,
               PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "src/app.py", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
         str(data), "--no-mdns", "--no-discovery", "--no-serial-scan", "--log-level", "info"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_a_second_server_on_the_same_data_dir_exits_naming_the_first_and_the_vend_in_flight_is_untouched(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    first_port, second_port = free_port(), free_port()
    first = start_server(data, first_port)
    base = f"http://127.0.0.1:{first_port}"
    second = None
    try:
        wait_until(lambda: answers(f"{base}/health") or first.poll() is not None, timeout=20,
                   message="the first server to answer /health")
        assert first.poll() is None, first.communicate()
        status, running = call(f"{base}/vend/2?wait=0", "POST")
        assert status == 202
        txn = running["transaction_id"]
        wait_until(lambda: call(f"{base}/vend/{txn}")[1]["status"] == "sent",
                   message="the vend to reach the board")

        second = start_server(data, second_port)
        out, err = second.communicate(timeout=20)
        assert second.returncode == 1, (out, err)
        assert f"pid {first.pid}" in err and f"127.0.0.1:{first_port}" in err, err
        assert "another server" in err
        assert not answers(f"http://127.0.0.1:{second_port}/health")

        final = wait_until(lambda: (lambda b: b if b["status"] != "sent" else None)(
            call(f"{base}/vend/{txn}")[1]), timeout=10, message="the vend to finish")
        assert final["status"] == "success", final
        _, alerts = call(f"{base}/alerts")
        assert not [a for a in alerts["alerts"] if a["kind"] == "vend_unknown"], alerts
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.communicate()


def test_the_lock_is_exclusive_and_released_when_the_server_stops(tmp_path: Path) -> None:
    app = create_app(test_config(tmp_path / "data"))
    with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}"):
        create_app(test_config(tmp_path / "data"))
    app.extensions["vending"].stop()
    again = create_app(test_config(tmp_path / "data"))
    again.extensions["vending"].stop()
    lock = DataDirLock(tmp_path / "data")
    lock.acquire("127.0.0.1", 0)
    lock.release()
