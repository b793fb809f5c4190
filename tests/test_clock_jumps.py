"""Clock jumps (a Pi without RTC at NTP sync): waits use the monotonic clock, keys are kept.

The wall clock is injected through the Clock seam; the system clock is never touched.
"""

from __future__ import annotations

import threading
import time

import pytest
from helpers import test_config, wait_until
from receivers import WebhookReceiver

from vending import create_app
from vending.clock import Clock


class JumpingWallClock:
    """The system's clocks, with a wall clock that can be moved by hand."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def wall(self) -> float:
        with self._lock:
            return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds

    def clock(self) -> Clock:
        return Clock(wall=self.wall, monotonic=time.monotonic)


THREE_DAYS = 72 * 3600.0


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


def test_a_retry_after_the_wall_clock_jumped_past_the_key_retention_does_not_vend_twice(tmp_path):
    wall = JumpingWallClock()
    app = create_app(test_config(tmp_path / "data"), clock=wall.clock())
    runtime = app.extensions["vending"]
    client = app.test_client()
    first = client.post("/vend/2", headers={"Idempotency-Key": "order-17"})
    assert first.get_json()["status"] == "success"

    wall.jump(THREE_DAYS)
    assert runtime.service.prune_keys() == 0
    other = client.post("/vend/3", headers={"Idempotency-Key": "order-18"}).get_json()
    assert other["created_at"] > first.get_json()["created_at"] + THREE_DAYS - 60
    assert runtime.service.prune_keys() == 0
    retry = client.post("/vend/2", headers={"Idempotency-Key": "order-17"})
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.get_json()["transaction_id"] == first.get_json()["transaction_id"]
    assert len(runtime.simulator.motor_runs) == 2
    runtime.stop()


def test_a_restart_after_a_forward_jump_keeps_the_keys_of_the_last_vends(tmp_path):
    wall = JumpingWallClock()
    app = create_app(test_config(tmp_path / "data"), clock=wall.clock())
    first = app.test_client().post("/vend/2", headers={"Idempotency-Key": "order-17"}).get_json()
    app.extensions["vending"].stop()

    wall.jump(THREE_DAYS)
    again = create_app(test_config(tmp_path / "data"), clock=wall.clock())
    runtime = again.extensions["vending"]
    retry = again.test_client().post("/vend/2", headers={"Idempotency-Key": "order-17"})
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert retry.get_json()["transaction_id"] == first["transaction_id"]
    assert runtime.simulator.motor_runs == []
    runtime.stop()


def test_a_queued_vend_does_not_expire_because_the_wall_clock_jumped_forward(tmp_path):
    wall = JumpingWallClock()
    app = create_app(test_config(tmp_path / "data", sim_motor_time=0.5, vend_max_age=30.0),
                     clock=wall.clock())
    runtime = app.extensions["vending"]
    client = app.test_client()
    running = client.post("/vend/1?wait=0").get_json()["transaction_id"]
    queued = client.post("/vend/2?wait=0").get_json()["transaction_id"]
    wait_until(lambda: client.get(f"/vend/{running}").get_json()["status"] == "sent",
               message="the first vend to reach the board")
    wall.jump(3600.0)
    final = wait_until(lambda: (t := client.get(f"/vend/{queued}").get_json())["status"]
                       not in ("pending", "sent") and t, message="the queued vend to end")
    assert final["status"] == "success", final
    # The ledger keeps wall-clock times for people: the jump shows there.
    assert final["finished_at"] > final["created_at"] + 3000
    runtime.stop()


def test_a_queued_vend_still_expires_on_the_monotonic_clock_when_the_wall_clock_jumps_back(tmp_path):
    wall = JumpingWallClock()
    app = create_app(test_config(tmp_path / "data", sim_motor_time=0.6, vend_max_age=0.3),
                     clock=wall.clock())
    runtime = app.extensions["vending"]
    client = app.test_client()
    client.post("/vend/1?wait=0")
    queued = client.post("/vend/2?wait=0").get_json()["transaction_id"]
    wall.jump(-3600.0)
    final = wait_until(lambda: (t := client.get(f"/vend/{queued}").get_json())["status"]
                       not in ("pending", "sent") and t, message="the queued vend to end")
    assert final["status"] == "failed" and final["reason"] == "expired", final
    assert len(runtime.simulator.motor_runs) == 1
    runtime.stop()


# Webhook retries: their times are stored (they survive a restart), so they are wall-clock
# times; the sender must read them knowing the clock can move.

def _webhook_app(tmp_path, wall, receiver, **settings):
    config = test_config(tmp_path / "data", webhook_urls=[receiver.url], webhook_retry_base=0.05,
                         webhook_retry_max=1.0, **settings)
    app = create_app(config, clock=wall.clock())
    client = app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/1")
    runtime = app.extensions["vending"]
    wait_until(lambda: receiver.attempts >= 1, message="the first webhook attempt")
    [alert] = runtime.operations.alerts(0, None, 10)
    return app, runtime, alert.id


def _delivery(runtime, alert_id):
    [delivery] = runtime.operations.deliveries(alert_id)
    return delivery


def test_a_webhook_retry_is_not_postponed_by_a_clock_set_back(tmp_path, receiver):
    wall = JumpingWallClock()
    receiver.fail_always = True
    app, runtime, alert_id = _webhook_app(tmp_path, wall, receiver)
    wait_until(lambda: _delivery(runtime, alert_id).attempts >= 2, message="a failed retry")
    wall.jump(-24 * 3600.0)  # its next retry is now a day ahead by the clock
    receiver.fail_always = False
    wait_until(lambda: _delivery(runtime, alert_id).state == "delivered", timeout=10,
               message="the retry within the longest retry wait, not a day later")
    runtime.stop()


def test_an_alert_raised_before_the_clock_jumped_forward_is_not_dropped_after_one_retry(
        tmp_path, receiver):
    wall = JumpingWallClock()
    receiver.fail_always = True
    app, runtime, alert_id = _webhook_app(tmp_path, wall, receiver)
    wall.jump(THREE_DAYS)  # the alert now looks three days old: past webhook_give_up_after
    attempts = _delivery(runtime, alert_id).attempts
    wait_until(lambda: _delivery(runtime, alert_id).attempts >= attempts + 3,
               message="three more failed retries")
    assert _delivery(runtime, alert_id).state == "pending"
    receiver.fail_always = False
    wait_until(lambda: _delivery(runtime, alert_id).state == "delivered", timeout=10,
               message="the alert delivered once the receiver answers")
    runtime.stop()


def test_a_webhook_that_keeps_failing_is_still_given_up(tmp_path, receiver):
    wall = JumpingWallClock()
    receiver.fail_always = True
    app, runtime, alert_id = _webhook_app(tmp_path, wall, receiver, webhook_give_up_after=0.5)
    wait_until(lambda: _delivery(runtime, alert_id).state == "failed", timeout=15,
               message="the delivery given up once it is old and its retries waited that long")
    assert _delivery(runtime, alert_id).attempts >= 3
    runtime.stop()
