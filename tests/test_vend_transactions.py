"""Vend transactions: states, idempotency, stock, queueing, crash recovery."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from helpers import test_config, wait_until

from vending import create_app
from vending.devices.simulator import SimulatedDevice
from vending.store import Store


def simulator(app) -> SimulatedDevice:
    return app.extensions["vending"].simulator


def test_a_vend_through_the_simulator_succeeds_and_says_how_it_was_served(client):
    response = client.post("/vend/3")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "success"
    assert body["success"] is True
    assert body["slot"] == 3
    assert body["communication"] == "simulation"
    assert body["device_id"] == "SIMULATOR"
    assert body["transaction_id"]
    assert body["message"]


def test_a_vend_over_a_real_http_server_succeeds(live_server):
    response = requests.post(f"{live_server.url}/vend/3", timeout=10)
    assert response.status_code == 200
    assert response.json()["status"] == "success"
    assert response.json()["communication"] == "simulation"


def test_a_successful_vend_passes_through_pending_and_sent(client):
    body = client.post("/vend/1").get_json()
    assert body["created_at"] <= body["sent_at"] <= body["finished_at"]
    stored = client.get(f"/vend/{body['transaction_id']}").get_json()
    assert stored["status"] == "success"


def test_a_vend_not_finished_within_wait_answers_202_with_a_location_to_poll(make_app):
    app = make_app(sim_motor_time=0.3)
    client = app.test_client()
    response = client.post("/vend/2?wait=0")
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] in ("pending", "sent")
    location = response.headers["Location"]
    assert location.endswith(f"/vend/{body['transaction_id']}")
    final = wait_until(lambda: client.get(location).get_json()["status"] == "success",
                       message="vend to finish")
    assert final


def test_a_jammed_board_makes_the_vend_failed_with_502_and_the_reason(app, client):
    simulator(app).inject_fault("jam")
    response = client.post("/vend/1")
    assert response.status_code == 502
    body = response.get_json()
    assert body["status"] == "failed"
    assert body["reason"] == "jam"
    assert body["error"] == "vend_failed"
    assert body["detail"]


def test_no_confirmation_makes_the_vend_unknown_with_504_never_success(make_app):
    app = make_app(vend_timeout=0.2)
    simulator(app).inject_fault("no_reply")
    response = app.test_client().post("/vend/1")
    assert response.status_code == 504
    body = response.get_json()
    assert body["status"] == "unknown"
    assert body["error"] == "no_confirmation"
    assert body["success"] is False


def test_a_vend_that_waited_past_its_maximum_age_fails_without_dispensing(make_app):
    app = make_app(sim_motor_time=0.4, vend_max_age=0.2)
    client = app.test_client()
    first = client.post("/vend/1?wait=0").get_json()
    second = client.post("/vend/2?wait=0").get_json()
    wait_until(lambda: client.get(f"/vend/{second['transaction_id']}").get_json()["status"]
               == "failed", message="second vend to expire")
    expired = client.get(f"/vend/{second['transaction_id']}").get_json()
    assert expired["reason"] == "expired"
    assert "not dispensed" in expired["message"]
    assert [run.transaction_id for run in simulator(app).motor_runs] == [first["transaction_id"]]


def test_a_crash_that_left_a_vend_sent_is_recorded_unknown_on_restart(tmp_path):
    config = test_config(tmp_path / "data")
    store = Store(config.database_path)
    store.ensure_slots(5)
    txn, _ = store.create_transaction(4, "ESP32_AABBCCDDEEFF", "serial")
    store.mark_sent(txn.id, "ESP32_AABBCCDDEEFF", "serial")
    pending, _ = store.create_transaction(2, "ESP32_AABBCCDDEEFF", "serial")
    store.close()  # the process died here: no finish() was ever written

    app = create_app(config)
    try:
        client = app.test_client()
        body = client.get(f"/vend/{txn.id}").get_json()
        assert body["status"] == "unknown"
        assert body["reason"] == "server_restart"
        assert "check the machine" in body["message"]
        never_sent = client.get(f"/vend/{pending.id}").get_json()
        assert never_sent["status"] == "failed"
        assert never_sent["reason"] == "not_sent"
        assert "not dispensed" in never_sent["message"]
    finally:
        app.extensions["vending"].stop()


def test_a_repeat_with_the_same_idempotency_key_returns_the_stored_response(app, client):
    key = str(uuid.uuid4())
    first = client.post("/vend/3", headers={"Idempotency-Key": key})
    again = client.post("/vend/3", headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert again.get_json()["transaction_id"] == first.get_json()["transaction_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(simulator(app).motor_runs) == 1


def test_an_idempotency_key_is_remembered_across_a_restart(make_app):
    key = str(uuid.uuid4())
    first_app = make_app()
    first = first_app.test_client().post("/vend/3", headers={"Idempotency-Key": key}).get_json()
    first_app.extensions["vending"].stop()
    second_app = make_app()
    again = second_app.test_client().post("/vend/3", headers={"Idempotency-Key": key})
    assert again.get_json()["transaction_id"] == first["transaction_id"]
    assert simulator(second_app).motor_runs == []


def test_a_repeat_while_the_first_is_running_gets_409_naming_the_transaction(make_app):
    app = make_app(sim_motor_time=0.5)
    client = app.test_client()
    key = str(uuid.uuid4())
    first = client.post("/vend/2?wait=0", headers={"Idempotency-Key": key}).get_json()
    again = client.post("/vend/2", headers={"Idempotency-Key": key})
    assert again.status_code == 409
    assert again.get_json()["error"] == "idempotency_key_in_use"
    assert again.get_json()["transaction_id"] == first["transaction_id"]


def test_the_same_idempotency_key_for_another_slot_gets_422(client):
    key = str(uuid.uuid4())
    client.post("/vend/2", headers={"Idempotency-Key": key})
    response = client.post("/vend/4", headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert response.get_json()["error"] == "idempotency_key_reused"


def test_a_sold_out_slot_refuses_vends_with_409(client):
    assert client.patch("/slots/2", json={"stock": 0}).status_code == 200
    response = client.post("/vend/2")
    assert response.status_code == 409
    assert response.get_json()["error"] == "sold_out"


def test_a_success_takes_one_item_off_the_stock_and_the_last_one_cannot_be_sold_twice(board_app):
    app = board_app(motor_time=0.2)
    client = app.test_client()
    client.patch("/slots/5", json={"stock": 1})
    first = client.post("/vend/5?wait=0")
    second = client.post("/vend/5?wait=0")
    assert first.status_code == 202
    assert second.status_code == 409
    wait_until(lambda: client.get("/slots").get_json()["slots"][4]["stock"] == 0,
               message="stock to reach 0")
    assert client.get("/slots").get_json()["slots"][4]["sold_out"] is True


def test_a_failed_vend_does_not_take_stock(app, client):
    client.patch("/slots/1", json={"stock": 3})
    simulator(app).inject_fault("jam")
    client.post("/vend/1")
    assert client.get("/slots").get_json()["slots"][0]["stock"] == 3


def test_vends_past_the_device_queue_bound_get_429(make_app):
    app = make_app(sim_motor_time=1.0, device_queue_limit=2)
    client = app.test_client()
    statuses = [client.post(f"/vend/{slot}?wait=0").status_code for slot in (1, 2, 3, 4, 5)]
    assert statuses[:3] == [202, 202, 202]  # one running, two waiting
    assert 429 in statuses[3:]
    refused = client.post("/vend/1?wait=0")
    assert refused.get_json()["error"] == "device_queue_full"


def test_concurrent_vends_to_one_device_never_overlap(make_app):
    from vending.serving import BackgroundServer

    app = make_app(sim_motor_time=0.03, device_queue_limit=20)
    server = BackgroundServer(app).start()
    try:
        def vend(slot: int) -> int:
            return requests.post(f"{server.url}/vend/{slot}?wait=20", timeout=30).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(vend, [1, 2, 3, 4, 5, 1, 2, 3]))
    finally:
        server.stop()
    assert statuses == [200] * 8
    runs = sorted(simulator(app).motor_runs, key=lambda run: run.started)
    assert len(runs) == 8
    for earlier, later in zip(runs, runs[1:]):
        assert earlier.stopped <= later.started, "two motor runs overlapped"


def test_a_double_submit_from_many_threads_with_one_key_vends_once(make_app):
    app = make_app(sim_motor_time=0.1)
    client_factory = app.test_client
    key = str(uuid.uuid4())
    barrier = threading.Barrier(6)
    results: list[int] = []

    def press() -> None:
        barrier.wait()
        results.append(client_factory().post("/vend/1", headers={"Idempotency-Key": key})
                       .status_code)

    threads = [threading.Thread(target=press) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(simulator(app).motor_runs) == 1
    assert set(results) <= {200, 409}


def test_a_vend_falls_back_when_the_selected_device_goes_offline(app, client):
    runtime = app.extensions["vending"]
    second = SimulatedDevice("SIM_B", runtime.log, motor_time=0.01)
    runtime.registry.add(second)
    second.start()
    assert client.post("/esp32/devices/select", json={"device_id": "SIM_B"}).status_code == 200
    assert client.post("/vend/1").get_json()["device_id"] == "SIM_B"
    second.set_online(False)
    body = client.post("/vend/1").get_json()
    assert body["status"] == "success"
    assert body["device_id"] == "SIMULATOR"


def test_a_queued_vend_whose_board_went_offline_fails_over_to_another_board(make_app):
    app = make_app(sim_motor_time=0.3)
    runtime = app.extensions["vending"]
    client = app.test_client()
    backup = SimulatedDevice("SIM_B", runtime.log, motor_time=0.01)
    runtime.registry.add(backup)
    backup.start()
    client.post("/vend/1?wait=0")
    queued = client.post("/vend/2?wait=0").get_json()
    assert queued["device_id"] == "SIMULATOR"
    runtime.simulator.set_online(False)
    final = wait_until(lambda: (body := client.get(f"/vend/{queued['transaction_id']}").get_json())
                       ["status"] not in ("pending", "sent") and body, message="queued vend")
    assert final["status"] == "success"
    assert final["device_id"] == "SIM_B"


def test_a_queued_vend_with_no_other_board_fails_as_not_dispensed(make_app):
    app = make_app(sim_motor_time=0.3)
    runtime = app.extensions["vending"]
    client = app.test_client()
    client.post("/vend/1?wait=0")
    queued = client.post("/vend/2?wait=0").get_json()
    runtime.simulator.set_online(False)
    final = wait_until(lambda: (body := client.get(f"/vend/{queued['transaction_id']}").get_json())
                       ["status"] not in ("pending", "sent") and body, message="queued vend")
    assert final["status"] == "failed"
    assert final["reason"] == "offline"
    assert "not dispensed" in final["message"]


def test_no_device_at_all_answers_503(make_app):
    client = make_app(simulator=False).test_client()
    response = client.post("/vend/1")
    assert response.status_code == 503
    assert response.get_json()["error"] == "no_device_available"


def test_stopping_fails_queued_vends_and_records_the_running_one(make_app):
    app = make_app(sim_motor_time=5.0, shutdown_grace=0.1)
    runtime = app.extensions["vending"]
    client = app.test_client()
    running = client.post("/vend/1?wait=0").get_json()["transaction_id"]
    wait_until(lambda: runtime.store.get(running).state == "sent", message="vend to be sent")
    queued = client.post("/vend/2?wait=0").get_json()["transaction_id"]
    runtime.stop()
    reopened = Store(runtime.config.database_path)
    try:
        assert reopened.get(running).state == "unknown"
        assert reopened.get(queued).state == "failed"
        assert reopened.get(queued).reason == "shutdown"
        assert reopened.counts()["pending"] == reopened.counts()["sent"] == 0
    finally:
        reopened.close()


def test_a_vend_is_refused_while_the_server_shuts_down(app, client):
    app.extensions["vending"].service.stop(0)
    response = client.post("/vend/1")
    assert response.status_code == 503
    assert response.get_json()["error"] == "shutting_down"


def vend_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vend-")]


def test_an_idle_board_s_vend_thread_ends_and_the_next_vend_starts_one(make_app):
    app = make_app(sim_motor_time=0.0, vend_thread_idle=0.05)
    client = app.test_client()
    assert client.post("/vend/1").status_code == 200
    wait_until(lambda: not vend_threads(), message="the idle vend thread to end")
    assert client.post("/vend/2").status_code == 200


def test_vends_arriving_as_the_thread_goes_idle_are_never_left_behind(make_app):
    app = make_app(sim_motor_time=0.0, vend_thread_idle=0.001)
    client = app.test_client()
    for slot in [1, 2, 3, 4, 5] * 8:
        response = client.post(f"/vend/{slot}?wait=5")
        assert response.status_code == 200, response.get_json()
