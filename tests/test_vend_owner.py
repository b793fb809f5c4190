"""The vend service is the one owner of a vend's state: every change is one event, and what
hears the events (alerts, low-stock check, MQTT) follows reality, late settlements included."""

from __future__ import annotations

from typing import Any

from helpers import test_config, wait_until

from vending.events import VEND_FINISHED, VEND_SENT, VEND_SETTLED
from vending.protocol.states import VendState
from vending.store import Store


def runtime_of(app):
    return app.extensions["vending"]


def alerts_about(client, kind: str, txn_id: str | None = None) -> list[dict[str, Any]]:
    found = [a for a in client.get("/alerts?limit=500").get_json()["alerts"] if a["kind"] == kind]
    if txn_id is not None:
        found = [a for a in found if a["data"].get("transaction_id") == txn_id]
    return found


class TestOneEventPerChange:
    def test_a_vend_announces_sent_then_finished_once_each(self, app, client):
        seen: list[tuple[str, str, str]] = []
        runtime_of(app).events.subscribe(
            lambda e: seen.append((e.kind, e.data["transaction"]["transaction_id"],
                                   e.data["transaction"]["status"])),
            {VEND_SENT, VEND_FINISHED, VEND_SETTLED})
        txn = client.post("/vend/1").get_json()["transaction_id"]
        assert seen == [(VEND_SENT, txn, "sent"), (VEND_FINISHED, txn, "success")]

    def test_states_read_back_as_the_enum_and_serialise_as_the_same_words(self, app, client):
        body = client.post("/vend/1").get_json()
        assert body["status"] == "success"
        txn = runtime_of(app).store.get(body["transaction_id"])
        assert txn.state is VendState.SUCCESS and f"{txn.state}" == "success"


class TestACrash:
    def test_a_vend_still_pending_at_a_crash_is_failed_not_sent_and_raises_no_check_alert(
            self, tmp_path):
        from vending import create_app

        config = test_config(tmp_path / "data")
        store = Store(config.database_path)
        store.ensure_slots(5)
        sent, _ = store.create_transaction(4, "ESP32_AABBCCDDEEFF", "serial")
        store.mark_sent(sent.id, "ESP32_AABBCCDDEEFF", "serial")
        pending, _ = store.create_transaction(2, "ESP32_AABBCCDDEEFF", "serial")
        store.close()  # the process died here

        app = create_app(config)
        try:
            client = app.test_client()
            never_sent = client.get(f"/vend/{pending.id}").get_json()
            assert never_sent["status"] == "failed"
            assert never_sent["reason"] == "not_sent"
            assert "not dispensed" in never_sent["message"]
            assert "check the machine" not in never_sent["message"]
            assert client.get(f"/vend/{sent.id}").get_json()["status"] == "unknown"
            assert runtime_of(app).alerts.wait_idle()
            assert [a["data"]["transaction_id"] for a in alerts_about(client, "vend_unknown")] == [
                sent.id]
            for alert in client.get("/alerts").get_json()["alerts"]:
                if alert["data"].get("transaction_id") == pending.id:
                    assert alert["severity"] != "critical"
                    assert "check the machine" not in alert["message"]
        finally:
            runtime_of(app).stop()


class TestLateSettlements:
    def test_a_wifi_vend_confirmed_late_resolves_its_unknown_alert_and_counts_stock(self, wifi):
        env = wifi(vend_timeout=0.5, low_stock_level=2)
        client = env.app.test_client()
        assert client.patch("/slots/2", json={"stock": 3}).status_code == 200
        board = env.online(env.board())
        board.confirm_gate.clear()
        txn = env.vend(2, wait=3).json()["transaction_id"]
        assert env.rt.store.get(txn).state == "unknown"
        [alert] = wait_until(lambda: alerts_about(client, "vend_unknown", txn),
                             message="the vend_unknown alert")
        assert alert["active"]
        board.confirm_gate.set()
        wait_until(lambda: env.rt.store.get(txn).state == "success", timeout=10,
                   message="the board's late confirmation")
        resolved = wait_until(lambda: [a for a in alerts_about(client, "vend_unknown", txn)
                                       if not a["active"]], message="the alert to be resolved")
        assert "success" in resolved[0]["acknowledged_by"]
        # The low-stock check heard of the late success too (3 -> 2 is the low level).
        [low] = wait_until(lambda: alerts_about(client, "low_stock"), message="low stock alert")
        assert low["data"]["stock"] == 2

    def test_approving_a_board_clears_its_asks_to_be_approved_alert(self, wifi):
        env = wifi()
        client = env.app.test_client()
        board = env.board()
        [alert] = wait_until(lambda: alerts_about(client, "device_pending_approval"),
                             message="the approval alert")
        assert alert["active"] and alert["subject"] == board.device_id
        env.online(board)
        [after] = wait_until(lambda: [a for a in alerts_about(client, "device_pending_approval")
                                      if not a["active"]], message="the alert to be cleared")
        assert after["id"] == alert["id"] and "approved" in after["acknowledged_by"]
