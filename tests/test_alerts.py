"""Alerts: raised from vend outcomes, device state, stock, approval requests and sign-in
failures; stored, shown through /alerts, acknowledged, and posted to webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from helpers import wait_until
from receivers import WebhookReceiver

from vending.events import AUTH_FAILED, DEVICE_PENDING_APPROVAL


def runtime_of(app):
    return app.extensions["vending"]


def alerts(client, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(f"/alerts?{query}").get_json()["alerts"]


def wait_for_alert(client, kind, timeout=5.0):
    return wait_until(lambda: [a for a in alerts(client) if a["kind"] == kind], timeout,
                      message=f"a {kind} alert")


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


def test_a_jammed_vend_raises_an_alert_with_the_reason(client):
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    assert client.post("/vend/2").status_code == 502
    [alert] = wait_for_alert(client, "vend_failed")
    assert alert["severity"] == "warning"
    assert "jam" in alert["message"]
    assert alert["data"]["reason"] == "jam"
    assert alert["subject"] == "slot 2"
    assert alert["id"] and alert["time"] and alert["active"]


def test_an_unknown_vend_raises_a_critical_alert(make_app):
    app = make_app(vend_timeout=0.1)
    client = app.test_client()
    runtime_of(app).simulator.inject_fault("no_reply")
    assert client.post("/vend/1").status_code == 504
    [alert] = wait_for_alert(client, "vend_unknown")
    assert alert["severity"] == "critical"
    assert "check the machine" in alert["message"]


def test_a_successful_vend_raises_no_alert(app, client):
    assert client.post("/vend/1").status_code == 200
    assert runtime_of(app).alerts.wait_idle()
    assert alerts(client) == []


def test_an_alert_stays_active_until_acknowledged_and_then_leaves_the_banner(client):
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/1")
    [alert] = wait_for_alert(client, "vend_failed")
    assert [a["id"] for a in alerts(client, active=1)] == [alert["id"]]
    acked = client.post(f"/alerts/{alert['id']}/ack").get_json()
    assert acked["active"] is False
    assert acked["acknowledged_by"] == "local"
    assert alerts(client, active=1) == []
    assert alerts(client)[0]["acknowledged_at"] == acked["acknowledged_at"]


def test_polling_with_since_returns_only_newer_alerts(client):
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam", "count": 2})
    client.post("/vend/1")
    [first] = wait_for_alert(client, "vend_failed")
    client.post("/vend/2")
    wait_until(lambda: len(alerts(client)) == 2, message="the second alert")
    newer = alerts(client, since=first["id"])
    assert [a["subject"] for a in newer] == ["slot 2"]
    assert client.get("/alerts").get_json()["last_id"] == newer[0]["id"]


def test_acknowledging_an_unknown_alert_gets_404(client):
    response = client.post("/alerts/9999/ack")
    assert response.status_code == 404
    assert set(response.get_json()) >= {"error", "detail"}


def test_a_bad_alerts_filter_gets_400(client):
    assert client.get("/alerts?active=maybe").status_code == 400
    assert client.get("/alerts?since=-1").status_code == 400


def test_a_board_going_offline_and_coming_back_raises_two_alerts(client):
    client.post("/esp32/devices/SIMULATOR/simulate", json={"online": False})
    [offline] = wait_for_alert(client, "device_offline")
    assert offline["subject"] == "SIMULATOR"
    client.post("/esp32/devices/SIMULATOR/simulate", json={"online": True})
    [back] = wait_for_alert(client, "device_back")
    assert back["severity"] == "info"


def test_a_flapping_board_raises_no_new_offline_alert_while_one_is_unacknowledged(app, client):
    for _ in range(3):
        client.post("/esp32/devices/SIMULATOR/simulate", json={"online": False})
        client.post("/esp32/devices/SIMULATOR/simulate", json={"online": True})
    assert runtime_of(app).alerts.wait_idle()
    assert [a["kind"] for a in alerts(client)] == ["device_offline", "device_back"]


def test_stock_reaching_the_low_level_and_then_zero_raises_low_stock_then_sold_out(board_app):
    app = board_app()
    client = app.test_client()
    client.patch("/slots/3", json={"stock": 3})
    client.post("/vend/3")
    [low] = wait_for_alert(client, "low_stock")
    assert low["data"]["stock"] == 2
    assert low["data"]["low_stock_level"] == 2
    client.post("/vend/3")
    client.post("/vend/3")
    [sold_out] = wait_for_alert(client, "sold_out")
    assert sold_out["subject"] == "slot 3"
    assert runtime_of(app).alerts.wait_idle()
    assert [a["kind"] for a in alerts(client)] == ["low_stock", "sold_out"]


def test_setting_stock_below_the_level_by_hand_raises_low_stock(client):
    client.patch("/slots/1", json={"stock": 1})
    [alert] = wait_for_alert(client, "low_stock")
    assert alert["data"]["stock"] == 1


def test_after_a_restock_the_next_drop_raises_low_stock_again(board_app):
    client = board_app().test_client()
    client.patch("/slots/1", json={"stock": 2})
    wait_for_alert(client, "low_stock")
    client.post("/slots/1/restock", json={"quantity": 1})
    client.post("/vend/1")
    wait_until(lambda: len([a for a in alerts(client) if a["kind"] == "low_stock"]) == 2,
               message="a second low-stock alert")


def test_a_slot_may_have_its_own_low_stock_level(board_app):
    client = board_app().test_client()
    response = client.put("/alerts/low-stock/4", json={"level": 5})
    assert response.get_json() == {"slot": 4, "level": 5, "default": False}
    levels = client.get("/alerts/low-stock").get_json()
    assert levels["levels"]["4"] == 5 and levels["levels"]["1"] == 2
    client.patch("/slots/4", json={"stock": 6})
    client.post("/vend/4")
    [alert] = wait_for_alert(client, "low_stock")
    assert alert["data"]["low_stock_level"] == 5
    assert client.put("/alerts/low-stock/4", json={"level": None}).get_json()["level"] == 2


@pytest.mark.parametrize("body", [{}, {"level": -1}, {"level": "3"}, {"level": True}])
def test_a_bad_low_stock_level_gets_400(client, body):
    assert client.put("/alerts/low-stock/1", json=body).status_code == 400


def test_the_default_low_stock_level_is_configurable(make_app):
    client = make_app(low_stock_level=4).test_client()
    assert client.get("/alerts/low-stock").get_json()["default"] == 4


def test_a_board_asking_for_approval_raises_an_alert_once(app, client):
    events = runtime_of(app).events
    events.publish(DEVICE_PENDING_APPROVAL, device_id="ESP32_AABBCCDDEEFF", address="127.0.0.5")
    events.publish(DEVICE_PENDING_APPROVAL, device_id="ESP32_AABBCCDDEEFF", address="127.0.0.5")
    [alert] = wait_for_alert(client, "device_pending_approval")
    assert alert["subject"] == "ESP32_AABBCCDDEEFF"
    assert runtime_of(app).alerts.wait_idle()
    assert len(alerts(client)) == 1


def test_repeated_sign_in_failures_from_one_address_raise_an_alert(make_app):
    app = make_app(auth_failure_threshold=3)
    client = app.test_client()
    events = runtime_of(app).events
    events.publish(AUTH_FAILED, source="127.0.0.9")
    events.publish(AUTH_FAILED, source="127.0.0.8")
    events.publish(AUTH_FAILED, source="127.0.0.9")
    assert runtime_of(app).alerts.wait_idle()
    assert alerts(client) == []
    events.publish(AUTH_FAILED, source="127.0.0.9")
    [alert] = wait_for_alert(client, "sign_in_failures")
    assert alert["subject"] == "127.0.0.9"
    assert alert["data"]["failures"] == 3


def test_alerts_are_kept_across_a_restart(make_app):
    app = make_app()
    client = app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/1")
    [alert] = wait_for_alert(client, "vend_failed")
    runtime_of(app).stop()
    again = make_app().test_client()
    assert [a["id"] for a in alerts(again, active=1)] == [alert["id"]]


def test_a_vend_left_open_by_a_crash_raises_an_unknown_alert_at_start_up(make_app):
    app = make_app()
    store = runtime_of(app).store
    txn, _ = store.create_transaction(1, "SIMULATOR", "simulation")
    store.mark_sent(txn.id, "SIMULATOR", "simulation")
    # A second runtime on the same data, as after a power cut, finds the open vend. The
    # kernel frees a dead process's data-dir lock; here the first one gives it up by hand.
    runtime_of(app).datadir_lock.release()
    again = make_app().test_client()
    [alert] = wait_for_alert(again, "vend_unknown")
    assert alert["data"]["transaction_id"] == txn.id


# Webhooks


def test_each_alert_reaches_the_webhook_once(make_app, receiver):
    app = make_app(webhook_urls=[receiver.url])
    client = app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam", "count": 2})
    client.post("/vend/1")
    client.post("/vend/2")
    wait_until(lambda: len(receiver.received) == 2, message="two webhook posts")
    ids = [a["id"] for a in alerts(client)]
    assert sorted(receiver.ids()) == ids
    body = receiver.received[0]
    assert body["kind"] == "vend_failed"
    assert body["machine_id"] == runtime_of(app).machine_id
    assert receiver.headers[0]["Content-Type"] == "application/json"
    client.post("/vend/3")  # a success: no alert, nothing more posted
    assert runtime_of(app).alerts.wait_idle()
    assert len(receiver.received) == 2
    assert all(d.state == "delivered" and d.attempts == 1
               for i in ids for d in runtime_of(app).operations.deliveries(i))


def test_a_failed_webhook_delivery_is_retried_with_back_off(make_app, receiver):
    receiver.fail_next = 2
    app = make_app(webhook_urls=[receiver.url], webhook_retry_base=0.05)
    client = app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/1")
    wait_until(lambda: receiver.received, message="the webhook to succeed")
    [alert] = alerts(client)
    assert receiver.ids() == [alert["id"]]
    assert receiver.attempts == 3
    # The receiver has the post before the sender has recorded the answer: wait for that.
    wait_until(lambda: runtime_of(app).operations.deliveries(alert["id"])[0].state == "delivered",
               message="the delivery to be recorded")
    [delivery] = runtime_of(app).operations.deliveries(alert["id"])
    assert delivery.state == "delivered" and delivery.attempts == 3


def test_every_webhook_url_gets_the_alert(make_app, receiver):
    other = WebhookReceiver().start()
    try:
        client = make_app(webhook_urls=[receiver.url, other.url]).test_client()
        client.post("/esp32/devices/SIMULATOR/simulate", json={"online": False})
        wait_until(lambda: receiver.received and other.received, message="both webhooks")
        assert receiver.ids() == other.ids()
    finally:
        other.stop()


def test_a_hanging_webhook_never_delays_a_vend(make_app, receiver):
    receiver.release.clear()
    app = make_app(webhook_urls=[receiver.url])
    client = app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    assert client.post("/vend/1").status_code == 502
    wait_until(lambda: receiver.attempts == 0 and alerts(client), message="the alert")
    # The receiver holds the first post; vends go on regardless.
    for slot in (2, 3, 4):
        assert client.post(f"/vend/{slot}").get_json()["status"] == "success"
    assert receiver.received == []
    receiver.release.set()
    wait_until(lambda: len(receiver.received) == 1, message="the held post to arrive")


def test_undelivered_alerts_are_posted_after_a_restart(make_app, receiver):
    receiver.fail_always = True
    app = make_app(webhook_urls=[receiver.url], webhook_retry_base=0.05, webhook_retry_max=0.05)
    client = app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/1")
    wait_until(lambda: receiver.attempts >= 2, message="failed attempts")
    runtime_of(app).stop()
    receiver.fail_always = False
    make_app(webhook_urls=[receiver.url], webhook_retry_base=0.05)
    wait_until(lambda: len(receiver.received) == 1, message="the post after the restart")
    assert receiver.received[0]["kind"] == "vend_failed"


def test_webhook_posts_are_signed_when_a_secret_is_set(make_app, receiver):
    client = make_app(webhook_urls=[receiver.url], webhook_secret="s3cret").test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"online": False})
    wait_until(lambda: receiver.received, message="a webhook post")
    body = json.dumps(receiver.received[0], separators=(",", ":"), sort_keys=True).encode()
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert receiver.headers[0]["X-Vending-Signature"] == f"sha256={expected}"


def test_a_webhook_url_that_is_not_http_is_refused_at_start(tmp_path):
    from helpers import test_config

    with pytest.raises(ValueError, match="webhook URL"):
        test_config(tmp_path, webhook_urls=["ftp://127.0.0.1/x"])


@pytest.mark.browser
def test_the_page_shows_an_active_alert_as_a_banner_until_acknowledged(app, live_server):
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs headless Chromium (apt install chromium)")
    client = app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/3")
    [alert] = wait_for_alert(client, "vend_failed")

    def page() -> str:
        return subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
             "--dump-dom", live_server.url + "/"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout

    shown = page()
    assert 'class="alert alert-warning"' in shown and alert["message"] in shown
    client.post(f"/alerts/{alert['id']}/ack")
    assert alert["message"] not in page()


@pytest.mark.parametrize("answer", ["error", "refused"])
def test_webhook_logs_never_show_the_secret_path_of_the_url(make_app, receiver, caplog, answer):
    receiver.fail_always = True
    url = receiver.url + "/secret-webhook-id"
    if answer == "refused":
        receiver.stop()
        receiver.attempts = 1
    client = make_app(webhook_urls=[url], webhook_retry_base=0.05).test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"online": False})
    wait_until(lambda: receiver.attempts >= 1, message="a failed post")
    wait_until(lambda: "webhook" in caplog.text, message="the failure in the log")
    assert "secret-webhook-id" not in caplog.text


def test_pending_posts_to_a_url_no_longer_configured_are_dropped(make_app, receiver):
    other = WebhookReceiver().start()
    try:
        other.fail_always = True
        app = make_app(webhook_urls=[other.url], webhook_retry_base=0.05, webhook_retry_max=0.05)
        client = app.test_client()
        client.post("/esp32/devices/SIMULATOR/simulate", json={"online": False})
        wait_until(lambda: other.attempts >= 1, message="a failed post")
        app.extensions["vending"].stop()
        attempts = other.attempts
        again = make_app(webhook_urls=[receiver.url], webhook_retry_base=0.05)
        [alert] = alerts(again.test_client())
        [delivery] = runtime_of(again).operations.deliveries(alert["id"])
        assert delivery.state == "failed" and delivery.last_error == "URL no longer configured"
        assert other.attempts == attempts
    finally:
        other.stop()
