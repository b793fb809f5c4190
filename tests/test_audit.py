"""Audit trail: every operator action leaves a row with who, when and where, refusals too."""

from __future__ import annotations

import csv
import io
import re

import pytest
from helpers import wait_until


def entries(client, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(f"/audit?{query}").get_json()["entries"]


def last(client):
    return entries(client, limit=1)[0]


@pytest.mark.parametrize("method, path, body, action", [
    ("post", "/esp32/devices/select", {"device_id": "SIMULATOR"}, "select_device"),
    ("post", "/esp32/devices/auto-select", None, "auto_select"),
    ("post", "/esp32/communication/log/clear", None, "clear_log"),
    ("post", "/slots/2/restock", {"quantity": 5}, "restock"),
    ("patch", "/slots/2", {"name": "Crisps", "stock": 3}, "change_slot"),
    ("put", "/alerts/low-stock/2", {"level": 4}, "set_low_stock_level"),
])
def test_each_operator_action_leaves_an_ok_row(client, method, path, body, action):
    response = getattr(client, method)(path, json=body)
    assert response.status_code == 200
    row = last(client)
    assert row["action"] == action
    assert row["outcome"] == "ok"
    assert row["who"] == "local"
    assert row["source"] == "127.0.0.1"
    assert row["time"] > 0


def test_the_row_says_what_was_changed(client):
    client.post("/slots/2/restock", json={"quantity": 5})
    assert last(client)["detail"] == "number=2 quantity=5"


@pytest.mark.parametrize("method, path, body, action", [
    ("post", "/esp32/devices/select", {"device_id": "NOPE"}, "select_device"),
    ("post", "/slots/2/restock", {"quantity": 0}, "restock"),
    ("patch", "/slots/2", {"stock": -1}, "change_slot"),
    ("post", "/transactions/nope/check", {}, "check_transaction"),
    ("post", "/alerts/77/ack", None, "ack_alert"),
])
def test_a_refused_action_leaves_a_refused_row_with_the_reason(client, method, path, body, action):
    response = getattr(client, method)(path, json=body)
    assert 400 <= response.status_code < 500
    row = last(client)
    assert row["action"] == action
    assert row["outcome"] == "refused"
    assert response.get_json()["error"] in row["detail"]


def test_marking_an_unknown_vend_as_checked_is_audited(make_app):
    app = make_app(vend_timeout=0.1)
    client = app.test_client()
    app.extensions["vending"].simulator.inject_fault("no_reply")
    txn = client.post("/vend/1").get_json()["transaction_id"]
    client.post(f"/transactions/{txn}/check", json={"note": "found it in the tray"})
    row = last(client)
    assert row["action"] == "check_transaction" and row["outcome"] == "ok"
    assert txn in row["detail"] and "found it in the tray" in row["detail"]


def test_acknowledging_an_alert_is_audited(client):
    client.post("/esp32/devices/SIMULATOR/simulate", json={"online": False})
    alert = wait_until(lambda: client.get("/alerts").get_json()["alerts"], message="an alert")[0]
    client.post(f"/alerts/{alert['id']}/ack")
    row = last(client)
    assert row["action"] == "ack_alert" and row["detail"] == f"alert_id={alert['id']}"


def test_a_request_from_another_address_is_recorded_as_anonymous(client):
    client.post("/esp32/devices/auto-select", environ_base={"REMOTE_ADDR": "192.168.1.50"})
    row = last(client)
    assert row["who"] == "anonymous" and row["source"] == "192.168.1.50"


def test_a_signed_in_operator_is_recorded_as_the_operator(make_app):
    token = "t" * 24
    client = make_app(admin_token=token).test_client()
    client.post("/esp32/devices/auto-select", environ_base={"REMOTE_ADDR": "192.168.1.51"},
                headers={"Authorization": f"Bearer {token}"})
    row = last(client)
    assert row["who"] == "operator (token)" and row["source"] == "192.168.1.51"
    assert row["action"] == "auto_select" and row["outcome"] == "ok"


def test_a_refused_attempt_from_the_network_is_recorded(client):
    client.post("/esp32/devices/auto-select", environ_base={"REMOTE_ADDR": "192.168.1.52"})
    row = last(client)
    assert row["action"] == "auto_select" and row["outcome"] == "refused"
    assert row["who"] == "anonymous" and row["source"] == "192.168.1.52"


def test_sign_in_attempts_are_recorded_and_failures_raise_the_auth_event(make_app):
    from vending.events import AUTH_FAILED

    token = "s" * 24
    app = make_app(admin_token=token, trust_localhost=False)
    failures = []
    app.extensions["vending"].events.subscribe(lambda event: failures.append(event), {AUTH_FAILED})
    client = app.test_client()
    client.post("/login", data={"token": "wrong"}, environ_base={"REMOTE_ADDR": "192.168.1.53"})
    assert last(client_for(app, token))["outcome"] == "refused"
    assert failures and failures[0].data["source"] == "192.168.1.53"
    client.post("/login", data={"token": token}, environ_base={"REMOTE_ADDR": "192.168.1.53"})
    row = last(client_for(app, token))
    assert row["action"] == "sign_in" and row["outcome"] == "ok" and row["who"] == "operator"


def client_for(app, token):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def test_others_can_record_actions_directly(app, client):
    app.extensions["vending"].audit.record("sign_in", "bob", "192.168.1.7", "refused",
                                           "wrong password")
    row = last(client)
    assert (row["action"], row["who"], row["outcome"]) == ("sign_in", "bob", "refused")


def test_the_audit_trail_is_listed_newest_first_or_since_an_id(client):
    client.post("/esp32/devices/auto-select")
    client.post("/esp32/communication/log/clear")
    newest = entries(client)
    assert [e["action"] for e in newest] == ["clear_log", "auto_select"]
    assert entries(client, since=newest[1]["id"]) == [newest[0]]
    assert [e["action"] for e in entries(client, action="auto_select")] == ["auto_select"]


def test_the_audit_trail_exports_as_csv(client):
    client.post("/slots/1/restock", json={"quantity": 2})
    client.post("/esp32/devices/select", json={"device_id": "NOPE"})
    response = client.get("/audit?format=csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["action"], r["outcome"]) for r in rows] == [("restock", "ok"),
                                                             ("select_device", "refused")]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[0]["time"])


def test_a_bad_audit_format_gets_400(client):
    assert client.get("/audit?format=xml").status_code == 400


def test_the_audit_trail_is_kept_across_a_restart(make_app):
    app = make_app()
    app.test_client().post("/esp32/devices/auto-select")
    app.extensions["vending"].stop()
    assert [e["action"] for e in entries(make_app().test_client())] == ["auto_select"]


def test_every_page_has_the_alert_banner_and_transactions_has_the_audit_export(client):
    for path in ("/", "/devices", "/log", "/history", "/stock"):
        assert 'id="alerts"' in client.get(path).get_data(as_text=True), path
    history = client.get("/history").get_data(as_text=True)
    assert 'id="audit"' in history and "/audit?format=csv" in history
    assert client.get("/static/operations.js").status_code == 200


def test_a_credential_in_a_request_body_never_reaches_the_audit_trail(app, client):
    from vending.web.operations import audited

    @app.post("/test-sign-in")
    @audited("sign_in")
    def fake_sign_in():
        return {"status": "ok"}

    client.post("/test-sign-in", json={"user": "alice", "password": "hunter2", "token": "t0k"})
    row = last(client)
    assert "hunter2" not in row["detail"] and "t0k" not in row["detail"]
    assert 'user="alice"' in row["detail"] and "password=***" in row["detail"]


def test_a_newline_in_a_request_cannot_forge_a_log_line(client, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="vending.audit")
    client.post("/transactions/nope/check", json={"note": "x\naudit id=1 action=restock"})
    client.post("/transactions/a%0Aaudit%20id=2/check", json={})
    lines = [r.getMessage() for r in caplog.records if r.name == "vending.audit"]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
