"""A sick database never stops a board: a real full disk and a real lock held by another process.

While the store cannot commit, new vends get 503 store_unavailable (nothing is sent to a board),
/health is 503 naming the store, finished vends are kept in memory, and when the disk or the lock
is freed everything is written with no restart and nothing lost.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from campaign import fill_disk
from helpers import test_config, wait_until

from vending import create_app
from vending.serving import BackgroundServer


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MiB filesystem (tmpfs) mounted for this test."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def vend_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("vend-SIMULATOR")]


def serve(data_dir: Path, **overrides) -> tuple[object, BackgroundServer]:
    app = create_app(test_config(data_dir, sim_motor_time=0.8, **overrides))
    return app, BackgroundServer(app).start()


def test_a_full_disk_refuses_new_vends_with_503_keeps_the_board_going_and_catches_up(small_disk):
    app, server = serve(small_disk / "data")
    runtime = app.extensions["vending"]
    url = server.url
    try:
        assert requests.post(f"{url}/vend/1", timeout=10).json()["status"] == "success"
        running = requests.post(f"{url}/vend/2?wait=0", timeout=10).json()["transaction_id"]
        wait_until(lambda: requests.get(f"{url}/vend/{running}", timeout=5).json()["status"] == "sent",
                   message="the vend to reach the board")
        filler = fill_disk(small_disk)

        health = wait_until(lambda: (r := requests.get(f"{url}/health", timeout=15)).status_code == 503
                            and r.json(), timeout=10, message="/health to report the store")
        assert health["error"] == "store_unavailable"
        assert "full" in health["detail"]
        refused = requests.post(f"{url}/vend/3", timeout=15)
        assert refused.status_code == 503
        assert refused.json()["error"] == "store_unavailable"
        restock = requests.post(f"{url}/slots/1/restock", json={"quantity": 1}, timeout=15)
        assert restock.status_code == 503 and restock.json()["error"] == "store_unavailable"
        # The board ran the vend; its thread lives on, holding the outcome.
        assert [run.transaction_id for run in runtime.simulator.motor_runs][-1] == running
        assert len(runtime.simulator.motor_runs) == 2
        assert vend_threads()

        filler.unlink()
        wait_until(lambda: requests.get(f"{url}/health", timeout=15).status_code == 200, timeout=20,
                   message="the store to recover")
        final = requests.get(f"{url}/vend/{running}", timeout=5).json()
        assert final["status"] == "success", final
        after = requests.post(f"{url}/vend/3", timeout=10).json()
        assert after["status"] == "success"
        assert len(runtime.simulator.motor_runs) == 3
        runtime.alerts.wait_idle()
        alerts = requests.get(f"{url}/alerts", timeout=5).json()["alerts"]
        assert any(a["kind"] == "store_unavailable" for a in alerts), alerts
    finally:
        server.stop()
        runtime.stop()


LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


@contextmanager
def another_process_locking(database: Path) -> Iterator[Callable[[], str]]:
    """A second process holding `database` locked (BEGIN EXCLUSIVE) until `release()`, or the end."""
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(database)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        yield lambda: locker.communicate("done\n", timeout=10)[0]
    finally:
        if locker.poll() is None:
            locker.kill()
            locker.communicate()


def test_a_database_locked_by_another_process_refuses_vends_then_catches_up_without_a_restart(tmp_path):
    app, server = serve(tmp_path / "data", store_busy_timeout=0.5)
    runtime = app.extensions["vending"]
    url = server.url
    try:
        running = requests.post(f"{url}/vend/4?wait=0", timeout=10).json()["transaction_id"]
        wait_until(lambda: requests.get(f"{url}/vend/{running}", timeout=5).json()["status"] == "sent",
                   message="the vend to reach the board")
        with another_process_locking(runtime.config.database_path) as release:
            wait_until(lambda: len(runtime.simulator.motor_runs) == 1, message="the motor to run")
            health = wait_until(lambda: (r := requests.get(f"{url}/health", timeout=15)).status_code == 503
                                and r.json(), timeout=10, message="/health to report the store")
            assert "locked" in health["detail"]
            refused = requests.post(f"{url}/vend/5", timeout=15)
            assert refused.status_code == 503 and refused.json()["error"] == "store_unavailable"
            assert len(runtime.simulator.motor_runs) == 1
            assert vend_threads()

            release()
            wait_until(lambda: requests.get(f"{url}/health", timeout=15).status_code == 200, timeout=20,
                       message="the store to recover")
            assert requests.get(f"{url}/vend/{running}", timeout=5).json()["status"] == "success"
            assert requests.post(f"{url}/vend/5", timeout=10).json()["status"] == "success"
    finally:
        server.stop()
        runtime.stop()


def test_a_queued_vend_whose_board_went_offline_while_the_disk_is_full_fails_never_unknown(small_disk):
    from vending.devices.simulator import SimulatedDevice

    app = create_app(test_config(small_disk / "data", sim_motor_time=0.8))
    runtime = app.extensions["vending"]
    backup = SimulatedDevice("SIM_B", runtime.log, motor_time=0.01)
    runtime.registry.add(backup)
    backup.start()
    client = app.test_client()
    try:
        client.post("/esp32/devices/select", json={"device_id": "SIMULATOR"})
        running = client.post("/vend/1?wait=0").get_json()["transaction_id"]
        queued = client.post("/vend/2?wait=0").get_json()["transaction_id"]
        wait_until(lambda: client.get(f"/vend/{running}").get_json()["status"] == "sent",
                   message="the first vend to reach the board")
        filler = fill_disk(small_disk)
        runtime.simulator.set_online(False)
        # The queued vend would move to SIM_B, but the move cannot be recorded.
        wait_until(lambda: queued in runtime.service._held, timeout=10,
                   message="the queued vend's outcome to be held in memory")
        filler.unlink()
        wait_until(lambda: client.get("/health").status_code == 200, timeout=20,
                   message="the store to recover")
        final = client.get(f"/vend/{queued}").get_json()
        assert final["status"] == "failed", final
        assert final["reason"] == "store_unavailable"
        assert backup.motor_runs == []
    finally:
        runtime.stop()



def test_status_polls_are_answered_while_a_vend_waits_for_a_database_another_process_locked(
        tmp_path):
    # A vend being recorded holds the vend service's lock, and the store's, while SQLite
    # waits (up to the busy timeout) for the other program's lock. Every page polls /status
    # meanwhile: a poll that queued behind that wait froze every open page for as long.
    app, server = serve(tmp_path / "data", store_busy_timeout=30)
    runtime = app.extensions["vending"]
    url = server.url
    vend: dict[str, requests.Response] = {}
    try:
        assert requests.post(f"{url}/vend/1", timeout=10).json()["status"] == "success"
        before = requests.get(f"{url}/status", timeout=10).json()
        # Written after that poll, so the next one has a database part to read again.
        assert requests.patch(f"{url}/slots/3", json={"name": "Crisps"}, timeout=10).ok
        with another_process_locking(runtime.config.database_path) as release:
            def post_vend() -> None:
                vend["response"] = requests.post(f"{url}/vend/2", timeout=60)

            poster = threading.Thread(target=post_vend, name="test-vend", daemon=True)
            poster.start()
            wait_until(lambda: runtime.service._lock.locked(), message="the vend to wait for the lock")
            # Something to show: a log line, as a board or the watchdog would write.
            runtime.log.add("SIMULATOR", "simulation", "info", "a line written while the file is locked")

            status = requests.get(f"{url}/status", timeout=60)
            waiting = runtime.service._lock.locked()
            assert status.status_code == 200
            assert waiting and "response" not in vend, \
                "/status was answered only once the vend had given up waiting for the database"
            assert status.json()["log_last_id"] > before["log_last_id"]
            assert status.json()["transactions"] == before["transactions"]
            assert len(runtime.simulator.motor_runs) == 1

            release()
            poster.join(60)
            assert vend["response"].json()["status"] == "success"
            assert len(runtime.simulator.motor_runs) == 2
            after = requests.get(f"{url}/status", timeout=10).json()
            assert after["transactions"]["success"] == before["transactions"]["success"] + 1
    finally:
        server.stop()
        runtime.stop()
