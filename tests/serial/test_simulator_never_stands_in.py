"""The simulator never stands in for a real board, and says so whenever it vends."""

from __future__ import annotations

import csv
import io

from helpers import wait_until
from serial_support import wait_online, wait_status

from vending.devices.base import SERIAL
from vending.devices.simulator import SimulatedDevice


def test_with_the_real_board_unplugged_a_vend_is_503_not_dispensed_and_the_simulator_never_runs(
        make_board, serial_app):
    board = make_board()
    app = serial_app(board.path, simulator=True)
    runtime = app.extensions["vending"]
    wait_online(app, board.device_id)
    client = app.test_client()
    client.patch("/slots/2", json={"stock": 5})
    first = client.post("/vend/2").get_json()
    assert first["status"] == "success" and first["simulated"] is False
    assert first["device_id"] == board.device_id

    board.unplug()
    wait_status(app, board.device_id, "offline")
    response = client.post("/vend/2")
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"] == "no_device_available"
    assert "not dispensed" in response.get_json()["detail"]
    assert runtime.simulator.motor_runs == []
    assert [t["status"] for t in client.get("/transactions").get_json()["transactions"]] == ["success"]
    assert client.get("/slots").get_json()["slots"][1]["stock"] == 4


def test_a_vend_queued_for_a_board_that_goes_offline_never_fails_over_to_the_simulator(
        make_board, serial_app):
    board = make_board(motor_time=0.5)
    app = serial_app(board.path, simulator=True)
    runtime = app.extensions["vending"]
    wait_online(app, board.device_id)
    client = app.test_client()
    running = client.post("/vend/1?wait=0").get_json()["transaction_id"]
    queued = client.post("/vend/3?wait=0").get_json()["transaction_id"]
    wait_until(lambda: board.runs_for(running), message="the motor to start")
    board.unplug()
    final = wait_until(lambda: (t := client.get(f"/vend/{queued}").get_json())["status"]
                       not in ("pending", "sent") and t, message="the queued vend to end")
    assert final["status"] == "failed" and final["simulated"] is False, final
    assert runtime.simulator.motor_runs == []


def test_explicitly_selected_the_simulator_vends_says_simulated_everywhere_and_takes_no_stock(
        make_board, serial_app):
    board = make_board()
    app = serial_app(board.path, simulator=True)
    wait_online(app, board.device_id)
    client = app.test_client()
    client.patch("/slots/4", json={"stock": 3})
    assert client.post("/esp32/devices/select", json={"device_id": "SIMULATOR"}).status_code == 200
    body = client.post("/vend/4").get_json()
    assert body["status"] == "success" and body["simulated"] is True
    assert body["communication"] == "simulation"
    assert "nothing was dispensed" in body["message"]
    assert client.get("/slots").get_json()["slots"][3]["stock"] == 3
    listed = client.get("/transactions").get_json()["transactions"][0]
    assert listed["simulated"] is True
    rows = list(csv.DictReader(io.StringIO(client.get("/transactions?format=csv").get_data(as_text=True))))
    assert rows[0]["simulated"] == "True"


def test_with_no_real_board_configured_the_simulator_vends_until_a_real_board_is_seen(make_app):
    app = make_app()
    runtime = app.extensions["vending"]
    client = app.test_client()
    client.patch("/slots/1", json={"stock": 2})
    body = client.post("/vend/1").get_json()
    assert body["status"] == "success" and body["simulated"] is True
    assert client.get("/slots").get_json()["slots"][0]["stock"] == 2

    class RadioBoard(SimulatedDevice):
        """A board whose radio and motor are mocked; to the registry it is a real board."""

        transport = SERIAL

    real = RadioBoard("ESP32_REAL", runtime.log, motor_time=0.01)
    runtime.registry.add(real)
    real.start()
    real.set_online(False)
    response = client.post("/vend/1")
    assert response.status_code == 503, response.get_json()
    assert len(runtime.simulator.motor_runs) == 1
