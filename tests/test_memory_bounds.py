"""What a long-running server keeps in memory stays bounded: each structure that grows with
traffic is filled past its bound here, and still behaves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_until

from vending.events import AUTH_FAILED

SRC = Path(__file__).resolve().parents[1] / "src"


def runtime_of(app):
    return app.extensions["vending"]


def test_the_simulator_keeps_only_its_newest_motor_runs(make_app):
    app = make_app(sim_motor_time=0.0)
    simulator = runtime_of(app).simulator
    simulator.MOTOR_RUNS_KEPT = 5
    client = app.test_client()
    ids = []
    for number in range(12):
        answer = client.post(f"/vend/{number % 5 + 1}?wait=5")
        assert answer.status_code == 200, answer.get_json()
        ids.append(answer.get_json()["transaction_id"])
    assert [run.transaction_id for run in simulator.motor_runs] == ids[-5:]


def test_failed_sign_ins_from_many_addresses_are_not_remembered_for_ever(make_app):
    app = make_app(auth_failure_threshold=3)
    center = runtime_of(app).alerts
    center.AUTH_SOURCES_KEPT = 8
    events = runtime_of(app).events
    events.publish(AUTH_FAILED, source="10.9.0.1")
    for index in range(50):  # one failure each from many addresses, as a scan would
        events.publish(AUTH_FAILED, source=f"10.0.{index // 250}.{index % 250 + 1}")
        if index % 10 == 0:
            events.publish(AUTH_FAILED, source="10.9.0.1")
    assert center.wait_idle()
    assert len(center._auth_failures) <= 8
    # The address that keeps failing is not hidden by the flood: its third failure alerts.
    raised = wait_until(lambda: [a for a in app.test_client().get("/alerts").get_json()["alerts"]
                                 if a["kind"] == "sign_in_failures"], message="the alert")
    assert {a["subject"] for a in raised} == {"10.9.0.1"}


GLIBC = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION") or "")


def malloc_arenas(code: str, **env: str) -> int:
    """How many arenas glibc's malloc_stats() counts after `code` ran and 8 threads allocated
    at the same time."""
    script = (f"{code}\n"
              "import ctypes, threading\n"
              "together = threading.Barrier(8)\n"
              "def work():\n"
              "    kept = [bytearray(1000) for _ in range(100)]\n"
              "    together.wait()  # all alive at once, as a server's workers are\n"
              "    kept.clear()\n"
              "threads = [threading.Thread(target=work) for _ in range(8)]\n"
              "[t.start() for t in threads]; [t.join() for t in threads]\n"
              "ctypes.CDLL(None).malloc_stats()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(SRC), **env})
    assert done.returncode == 0, done.stderr
    return len(re.findall(r"^Arena \d+:", done.stderr, re.M))


@pytest.mark.skipif(not GLIBC, reason="malloc arenas are glibc's")
def test_the_program_caps_malloc_arenas_and_leaves_an_operators_setting_alone():
    assert malloc_arenas("") > 2  # glibc's default: an arena per thread, up to 8 per core
    assert malloc_arenas("from vending.allocator import limit_arenas; assert limit_arenas()") <= 2
    assert malloc_arenas("from vending.allocator import limit_arenas; assert not limit_arenas()",
                         MALLOC_ARENA_MAX="3") == 3


def sqlite_memory() -> int | None:
    """Bytes SQLite holds in this process (its page caches above all), or None if unknown."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)  # the one _sqlite3 loaded: same name, same library
        library.sqlite3_memory_used.restype = ctypes.c_int64
    except (OSError, AttributeError):
        return None
    return int(library.sqlite3_memory_used())


def test_the_ledgers_page_cache_stays_bounded_as_it_grows(tmp_path):
    from vending.store import Store

    if sqlite_memory() is None:
        pytest.skip("this Python's SQLite library cannot be asked how much memory it holds")
    store = Store(tmp_path / "vending.sqlite3")
    store.ensure_slots(5)
    before = sqlite_memory()
    with store.write() as db:  # 3 MB of ledger, well past the cache's bound
        db.executemany(
            "INSERT INTO transactions (id, slot, state, device_id, communication, message,"
            " created_at, finished_at) VALUES (?, 1, 'success', 'ESP32_AA', 'wifi', ?, ?, ?)",
            [(f"{n:012x}", "dispensed " * 40, n, n) for n in range(6000)])
    txn, _ = store.create_transaction(2, "ESP32_AA", "wifi")
    assert store.finish(txn.id, "failed", "jam", "jam").state == "failed"
    assert store.get(f"{17:012x}").message.startswith("dispensed")
    grown = sqlite_memory() - before
    store.close()
    assert grown < 1024 * 1024, f"SQLite grew by {grown / 1024:.0f} KiB"
