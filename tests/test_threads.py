"""The one thread helper: named, started once, stopped (and woken) by its owner."""

from __future__ import annotations

import threading

from helpers import wait_until

from vending.threads import Worker


def named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_a_worker_runs_one_named_thread_until_stopped_and_stop_is_safe_twice() -> None:
    worker: Worker

    def run() -> None:
        while not worker.stopping.wait(0.01):
            pass

    worker = Worker("test-worker-loop", run)
    worker.stop()  # before start: nothing to do
    assert worker.start() and not worker.start()
    wait_until(lambda: named("test-worker-loop"), message="the thread to run")
    assert len(named("test-worker-loop")) == 1
    worker.stop()
    worker.stop()
    assert not named("test-worker-loop") and not worker.running


def test_stop_wakes_a_thread_that_waits_on_something_of_its_own() -> None:
    woken = threading.Event()
    worker = Worker("test-worker-wake", lambda: woken.wait(30), wake=woken.set, join_timeout=10)
    worker.start()
    worker.stop()
    assert woken.is_set() and not named("test-worker-wake")


def test_a_worker_can_be_started_again_after_a_stop() -> None:
    runs: list[int] = []
    worker = Worker("test-worker-again", lambda: runs.append(1))
    worker.start()
    worker.stop()
    worker.start()
    worker.stop()
    assert runs == [1, 1]
