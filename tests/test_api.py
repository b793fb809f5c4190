"""The REST API: shapes clients expect, bad input, devices, log, slots, OpenAPI."""

from __future__ import annotations

import csv
import io
import re

import pytest
import requests


def assert_error(response, status: int, error: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) >= {"error", "detail"}
    assert isinstance(body["detail"], str) and body["detail"]
    if error is not None:
        assert body["error"] == error
    return body


@pytest.mark.parametrize("slot", ["0", "6", "abc", "-1", "1.5", "99999999999999999999"])
def test_a_bad_slot_gets_400_with_a_clear_detail(client, slot):
    body = assert_error(client.post(f"/vend/{slot}"), 400, "invalid_slot")
    assert "1 to 5" in body["detail"]


def test_a_bad_slot_writes_no_transaction(client):
    client.post("/vend/0")
    assert client.get("/transactions").get_json()["total"] == 0


@pytest.mark.parametrize("wait", ["abc", "-1", "1000"])
def test_a_bad_wait_gets_400(client, wait):
    assert_error(client.post(f"/vend/1?wait={wait}"), 400)


def test_an_overlong_idempotency_key_gets_400(client):
    assert_error(client.post("/vend/1", headers={"Idempotency-Key": "k" * 300}), 400)


def test_the_number_of_slots_is_configurable(make_app):
    client = make_app(slots=8).test_client()
    assert client.post("/vend/8").status_code == 200
    assert_error(client.post("/vend/9"), 400)
    assert len(client.get("/slots").get_json()["slots"]) == 8


def test_get_on_a_state_changing_route_gets_405_in_json(client):
    response = client.get("/esp32/devices/select")
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_an_unknown_route_gets_404_in_json(client):
    assert_error(client.get("/nope"), 404)


def test_malformed_json_gets_400_saying_where(client):
    response = client.post("/esp32/devices/select", data='{"device_id": ',
                           content_type="application/json")
    body = assert_error(response, 400, "bad_request")
    assert "malformed JSON" in body["detail"]


def test_a_body_of_whitespace_only_is_malformed_json_not_an_absent_body(client):
    # Where a body is optional, only zero bytes mean "no body": a collection must not be
    # recorded from a request whose body is a stray newline.
    response = client.post("/collections", data="\n", content_type="application/json")
    assert_error(response, 400, "bad_request")
    assert client.get("/collections").get_json()["collections"] == []


def test_a_json_array_instead_of_an_object_gets_400(client):
    assert_error(client.post("/esp32/devices/select", json=["SIMULATOR"]), 400)


def test_a_body_over_the_limit_gets_413(client):
    response = client.post("/esp32/devices/select", data="x" * (65 * 1024),
                           content_type="application/json")
    assert_error(response, 413)


def test_a_body_over_the_limit_gets_413_from_the_real_server(live_server):
    response = requests.post(f"{live_server.url}/esp32/devices/select", data=b"x" * (65 * 1024),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 413


def test_status_reports_devices_slots_and_counts(client):
    client.post("/vend/1")
    body = client.get("/status").get_json()
    assert body["online"] is True
    assert "vending" in client.get("/status").get_data(as_text=True)
    assert body["communication_mode"] == "simulation"
    assert body["active_device"] == "SIMULATOR"
    assert [d["device_id"] for d in body["devices"]] == ["SIMULATOR"]
    assert len(body["slots"]) == 5
    assert body["transactions"]["success"] == 1


def test_health_answers_ok(client):
    assert client.get("/health").get_json() == {"status": "ok", "store": True}


def test_the_device_list_has_the_shape_existing_clients_expect(client):
    body = client.get("/esp32/devices/list").get_json()
    assert body["active_device"] == "SIMULATOR"
    device = body["devices"][0]
    assert device["device_id"] == "SIMULATOR"
    assert device["type"] == "simulation"
    assert device["status"] == "online"


def test_selecting_an_unknown_device_gets_404(client):
    assert_error(client.post("/esp32/devices/select", json={"device_id": "ESP32_6CC8404FE03C"}),
                 404, "not_found")


def test_selecting_an_offline_device_gets_409(app, client):
    app.extensions["vending"].simulator.set_online(False)
    assert_error(client.post("/esp32/devices/select", json={"device_id": "SIMULATOR"}), 409,
                 "device_offline")


def test_selecting_without_a_device_id_gets_400(client):
    assert_error(client.post("/esp32/devices/select", json={}), 400)


def test_select_then_auto_select_changes_the_mode(client):
    client.post("/esp32/devices/select", json={"device_id": "SIMULATOR"})
    assert client.get("/esp32/communication/mode").get_json()["selection"] == "manual"
    body = client.post("/esp32/devices/auto-select").get_json()
    assert body["selection"] == "auto"
    assert body["mode"] == "simulation"


def test_the_communication_log_returns_only_what_is_new(client):
    client.post("/vend/1")
    first = client.get("/esp32/communication/log").get_json()
    assert any("VEND" in e["message"] and e["direction"] == "tx" for e in first["entries"])
    assert any("DONE" in e["message"] and e["direction"] == "rx" for e in first["entries"])
    assert client.get(f"/esp32/communication/log?since={first['last_id']}").get_json()[
        "entries"] == []
    client.post("/vend/2")
    newer = client.get(f"/esp32/communication/log?since={first['last_id']}").get_json()
    assert newer["entries"] and all(e["id"] > first["last_id"] for e in newer["entries"])


def test_the_communication_log_filters_by_device_and_direction(client):
    client.post("/vend/1")
    entries = client.get("/esp32/communication/log?device_id=SIMULATOR&direction=rx").get_json()[
        "entries"]
    assert entries and all(e["direction"] == "rx" for e in entries)
    assert client.get("/esp32/communication/log?device_id=OTHER").get_json()["entries"] == []
    assert_error(client.get("/esp32/communication/log?direction=sideways"), 400)


def test_the_communication_log_is_bounded_and_says_when_entries_were_dropped(make_app):
    app = make_app(log_size=10)
    client = app.test_client()
    for _ in range(6):
        client.post("/vend/1")
    body = client.get("/esp32/communication/log").get_json()
    assert len(body["entries"]) == 10
    assert body["truncated"] is True


def test_clearing_the_log_keeps_ids_growing(client):
    client.post("/vend/1")
    last = client.get("/esp32/communication/log").get_json()["last_id"]
    assert client.post("/esp32/communication/log/clear").status_code == 200
    assert client.get("/esp32/communication/log").get_json()["entries"] == []
    client.post("/vend/1")
    assert min(e["id"] for e in client.get("/esp32/communication/log").get_json()["entries"]) > last


def test_transactions_are_listed_newest_first_and_filtered(app, client):
    client.post("/vend/1")
    app.extensions["vending"].simulator.inject_fault("jam")
    client.post("/vend/2")
    body = client.get("/transactions").get_json()
    assert body["total"] == 2
    assert [t["slot"] for t in body["transactions"]] == [2, 1]
    failed = client.get("/transactions?state=failed").get_json()
    assert [t["slot"] for t in failed["transactions"]] == [2]
    assert client.get("/transactions?slot=1").get_json()["total"] == 1
    assert client.get("/transactions?limit=1").get_json()["transactions"][0]["slot"] == 2
    assert client.get("/transactions?limit=1&offset=1").get_json()["transactions"][0]["slot"] == 1
    assert_error(client.get("/transactions?state=weird"), 400)
    assert_error(client.get("/transactions?limit=0"), 400)


def test_transactions_export_as_csv(client):
    client.post("/vend/3")
    response = client.get("/transactions?format=csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0]["slot"] == "3"
    assert rows[0]["state"] == "success"
    assert re.match(r"\d{4}-\d\d-\d\dT", rows[0]["created_at"])
    # A slot without a price sells at 0 (store.request_vend).
    assert (rows[0]["product_name"], rows[0]["price_minor"], rows[0]["price_EUR"]) == ("", "0", "0.00")


def test_the_transactions_csv_says_what_each_vend_was_sold_as_and_at_what_price(client):
    product = client.post("/products", json={"name": "Crisps", "default_price": 120}).get_json()
    assert client.patch("/slots/2", json={"product_id": product["id"]}).status_code == 200
    client.post("/vend/2")
    assert client.patch("/slots/2", json={"price": 90}).status_code == 200
    client.post("/vend/2")
    rows = list(csv.DictReader(io.StringIO(client.get("/transactions?format=csv").get_data(
        as_text=True))))
    assert [(r["product_id"], r["product_name"], r["price_minor"], r["price_EUR"]) for r in rows] \
        == [(str(product["id"]), "Crisps", "90", "0.90"),
            (str(product["id"]), "Crisps", "120", "1.20")]


def test_an_unknown_vend_can_be_marked_as_checked(make_app):
    app = make_app(vend_timeout=0.1)
    client = app.test_client()
    app.extensions["vending"].simulator.inject_fault("no_reply")
    txn = client.post("/vend/1").get_json()["transaction_id"]
    body = client.post(f"/transactions/{txn}/check", json={"note": "item was in the tray"}).get_json()
    assert body["check_note"] == "item was in the tray"
    assert body["checked_at"]
    assert_error(client.post("/transactions/nope/check", json={}), 404)


def test_slots_can_be_renamed_stocked_and_restocked(client):
    assert client.patch("/slots/1", json={"name": "Cola", "stock": 4}).get_json()["name"] == "Cola"
    assert client.post("/slots/1/restock", json={"quantity": 3}).get_json()["stock"] == 7
    assert client.patch("/slots/1", json={"stock": None}).get_json()["stock"] is None


@pytest.mark.parametrize("body", [{"stock": -1}, {"stock": "3"}, {"stock": True}, {"name": ""},
                                  {"name": "x" * 41}, {"colour": "red"}, {}])
def test_a_bad_slot_change_gets_400_and_changes_nothing(client, body):
    before = client.get("/slots").get_json()
    assert_error(client.patch("/slots/1", json=body), 400)
    assert client.get("/slots").get_json() == before


def test_a_slot_that_does_not_exist_cannot_be_changed(client):
    assert_error(client.patch("/slots/6", json={"stock": 1}), 400, "invalid_slot")


def test_simulated_faults_can_be_injected_through_the_api(client):
    assert client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "empty"}).status_code \
        == 200
    body = client.post("/vend/1").get_json()
    assert body["status"] == "failed"
    assert body["reason"] == "empty"
    assert_error(client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "fire"}), 400)


def openapi_routes(spec: dict) -> set[tuple[str, str]]:
    return {(re.sub(r"\{[^}]+\}", "{}", path), method.upper())
            for path, item in spec["paths"].items() for method in item}


def flask_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?[^>]+>", "{}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method))
    return routes


def test_the_openapi_document_describes_exactly_the_apps_routes(app, client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert openapi_routes(spec) == flask_routes(app)


def test_every_error_response_in_the_openapi_document_uses_the_error_schema(client):
    spec = client.get("/openapi.json").get_json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if "text/html" in response.get("content", {}):
                    continue  # the sign-in page answers a browser with a page
                if status.startswith(("4", "5")) and status not in ("502", "504"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)
