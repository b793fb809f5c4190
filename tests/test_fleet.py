"""Many machines, one broker: the outbox (no event lost through a broker outage or a
restart) and the fleet view, against a real mosquitto and real controller processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from brokers import Mosquitto, Subscriber, find_mosquitto, free_port, port_open
from helpers import test_config, wait_until

from vending import create_app
from vending.errors import NotFound
from vending.mqtt import MqttBridge
from vending.store import Store
from vending.store.fleet import FleetStore, Received

MOSQUITTO = find_mosquitto()
ROOT = Path(__file__).parents[1]
FAST = dict(mqtt_reconnect_min=0.1, mqtt_reconnect_max=0.5, mqtt_keepalive=5)

try:
    import paho.mqtt.client  # noqa: F401
    HAVE_PAHO = True
except ImportError:
    HAVE_PAHO = False

needs_broker = pytest.mark.skipif(
    MOSQUITTO is None or not HAVE_PAHO,
    reason="needs the mosquitto broker and paho-mqtt (./test.sh installs mosquitto as root)")


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None or not HAVE_PAHO:
        pytest.skip("needs mosquitto and paho-mqtt")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    server = Mosquitto(MOSQUITTO, workdir, persistence=True).start()
    yield server
    server.stop()


def bridge_of(app) -> MqttBridge:
    [bridge] = [p for p in app.extensions["vending"]._parts if isinstance(p, MqttBridge)]
    return bridge


def events_of(sub: Subscriber) -> dict[str, list[dict]]:
    """Each machine's events in arrival order, as a subscriber got them (repeats included)."""
    found: dict[str, list[dict]] = {}
    for message in list(sub.messages):
        try:
            body = message.json()
        except ValueError:
            continue  # availability: online / offline
        if isinstance(body, dict) and "seq" in body:
            found.setdefault(body["machine_id"], []).append(body)
    return found


def once_each(events: list[dict]) -> list[dict]:
    """De-duplicated by seq, keeping the first arrival."""
    seen: set[int] = set()
    kept = []
    for event in events:
        if event["seq"] not in seen:
            seen.add(event["seq"])
            kept.append(event)
    return kept


def outbox_rows(database: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM outbox ORDER BY seq").fetchall()
    finally:
        db.close()


def ledger(database: Path, table: str = "transactions") -> list[sqlite3.Row]:
    """A machine's own rows: its transactions, or its sales ledger (table `sales`)."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(f"SELECT * FROM {table}").fetchall()
    finally:
        db.close()


class TestTheOutbox:
    def test_an_event_is_written_in_the_same_transaction_as_its_change(self, tmp_path):
        store = Store(tmp_path / "db.sqlite3", outbox_events=True)
        try:
            store.ensure_slots(2)
            store.update_slot(1, stock=3)
            # A change that fails rolls back, and so does its event.
            with pytest.raises(sqlite3.IntegrityError):
                store.update_slot(1, stock=-1)
            with pytest.raises(NotFound):
                store.update_slot(9, stock=1)
            # A real board's success (a simulated one would take no stock and be no sale).
            txn, _ = store.create_transaction(1, "ESP32_1", "serial")
            store.mark_sent(txn.id, "ESP32_1", "serial")
            store.finish(txn.id, "success", "dispensed")
            store.finish(txn.id, "failed", "a second finish changes nothing")
            events = store.outbox_pending()
            assert [(e.seq, e.event) for e in events] == [(1, "stock"), (2, "vend")]
            vend = events[1]
            assert vend.body["status"] == "success" and vend.body["stock"] == 2
            assert vend.created_at == store.get(txn.id).finished_at
            assert {"product", "price"} <= set(vend.body)
        finally:
            store.close()

    def test_a_late_settlement_and_a_crash_recovery_are_events_too(self, tmp_path):
        store = Store(tmp_path / "db.sqlite3", outbox_events=True)
        try:
            store.ensure_slots(1)
            late, _ = store.create_transaction(1, "SIM", "serial")
            store.mark_sent(late.id, "SIM", "serial")
            store.finish(late.id, "unknown", "no answer", "timeout")
            store.settle_unknown(late.id, "success", "the board said it dispensed")
            open_one, _ = store.create_transaction(1, "SIM", "serial")
            store.mark_sent(open_one.id, "SIM", "serial")
            store.recover_interrupted()
            bodies = [e.body for e in store.outbox_pending()]
            assert [(b["transaction_id"], b["status"], b["settled"]) for b in bodies] == [
                (late.id, "unknown", False), (late.id, "success", True),
                (open_one.id, "unknown", False)]
        finally:
            store.close()

    def test_seq_is_never_reused_after_delivered_events_are_pruned(self, tmp_path):
        store = Store(tmp_path / "db.sqlite3", outbox_events=True)
        try:
            store.ensure_slots(1)
            for stock in (1, 2, 3):
                store.update_slot(1, stock=stock)
            store.outbox_delivered([1, 2, 3])
            assert store.outbox_prune(time.time() + 1) == 3
            store.update_slot(1, stock=4)
            assert [e.seq for e in store.outbox_pending()] == [4]
        finally:
            store.close()

    def test_without_mqtt_no_events_pile_up(self, make_app):
        app = make_app(start_threads=False)
        rt = app.extensions["vending"]
        rt.store.update_slot(1, stock=3)
        assert rt.store.outbox_counts()["kept"] == 0

    @needs_broker
    def test_events_made_while_the_broker_is_down_and_across_a_restart_arrive_in_order(
            self, broker, tmp_path):
        sub = Subscriber(broker.port, "vending/+/events/#", client_id="plain-subscriber")
        data = tmp_path / "machine"
        try:
            app = create_app(test_config(data, mqtt_url=broker.url, **FAST))
            bridge = bridge_of(app)
            wait_until(lambda: bridge.ready, 10.0, message="the bridge to connect")
            client = app.test_client()
            client.post("/vend/1")
            broker.stop()
            wait_until(lambda: not bridge.connected, message="the bridge to notice")
            for slot in (2, 3):
                assert client.post(f"/vend/{slot}").get_json()["status"] == "success"
            app.extensions["vending"].stop()
            # Restarted while the broker is still down: the queue is the database.
            app = create_app(test_config(data, mqtt_url=broker.url, metrics=True, **FAST))
            client = app.test_client()
            client.post("/vend/4")
            queued = [row["seq"] for row in outbox_rows(data / "vending.sqlite3")
                      if row["delivered_at"] is None]
            assert len(queued) >= 3
            metrics = app.extensions["vending"].metrics.snapshot()
            assert metrics["vending_mqtt_outbox_queued{}"] == len(queued)
            assert metrics["vending_mqtt_outbox_oldest_age_seconds{}"] > 0
            broker.start()
            wait_until(lambda: not [r for r in outbox_rows(data / "vending.sqlite3")
                                    if r["delivered_at"] is None], 15.0,
                       message="every event to be acknowledged")
            rows = outbox_rows(data / "vending.sqlite3")
            wait_until(lambda: len(once_each(sum(events_of(sub).values(), []))) == len(rows),
                       10.0, message="the subscriber to get every event")
            [got] = events_of(sub).values()
            got = once_each(got)
            assert [e["seq"] for e in got] == [row["seq"] for row in rows] == list(
                range(1, len(rows) + 1))
            assert [e["time"] for e in got] == [row["created_at"] for row in rows]
            vends = [e["slot"] for e in got if e["event"] == "vend"]
            assert vends == [1, 2, 3, 4]
            app.extensions["vending"].stop()
        finally:
            sub.close()


class TestTheFleetStore:
    def envelope(self, seq, event="vend", **body):
        return {"machine_id": "m1", "seq": seq, "event": event, "time": 1000.0 + seq, **body}

    def test_a_repeated_event_is_stored_once_and_a_hole_in_seq_is_a_gap(self, tmp_path):
        store = FleetStore(tmp_path / "fleet.sqlite3")
        try:
            at = time.time()
            batch = [Received("event", "m1", self.envelope(seq, "stock", slot=1, stock=seq), at)
                     for seq in (1, 2, 2, 5, 6)]
            assert store.record(batch) == [("m1", 1), ("m1", 2), ("m1", 5), ("m1", 6)]
            assert store.gaps("m1") == [(3, 4)]
            store.record([Received("event", "m1", self.envelope(3, "stock", slot=1, stock=0), at)])
            summary = store.machine("m1")
            # The slot shows its newest event by seq, not the last to arrive.
            assert summary["slots"] == [{"slot": 1, "name": None, "stock": 6}]
            assert summary["missing"] == 1 and summary["gaps"] == [{"first": 4, "last": 4}]
        finally:
            store.close()

    def test_sales_count_each_vend_once_and_alerts_close_when_acknowledged(self, tmp_path):
        store = FleetStore(tmp_path / "fleet.sqlite3")
        now = time.time()
        try:
            vend = dict(slot=1, stock=4, price=150, currency="EUR")
            store.record([
                Received("event", "m1", {**self.envelope(1, **vend, transaction_id="a",
                                                         status="unknown"), "time": now}, now),
                Received("event", "m1", {**self.envelope(2, **vend, transaction_id="a",
                                                         status="success"), "time": now}, now),
                Received("event", "m1", {**self.envelope(3, **vend, transaction_id="b",
                                                         status="success"), "time": now}, now),
                Received("event", "m1", {**self.envelope(4, "alert", id=7, message="jam"),
                                         "time": now}, now),
                Received("event", "m1", {**self.envelope(5, "alert", id=8, message="low"),
                                         "time": now}, now),
                Received("event", "m1", {**self.envelope(6, "alert_acknowledged", id=7),
                                         "time": now}, now),
                Received("availability", "m1", "online", now),
            ])
            summary = store.machine("m1", now)
            assert summary["sales_today"] == {"vends": 2, "amount": 300, "currency": "EUR",
                                              "amount_text": "3.00 EUR", "unpriced": 0}
            assert [a["id"] for a in summary["open_alerts"]] == [8]
            assert summary["online"] and summary["last_vend"]["transaction_id"] == "b"
        finally:
            store.close()

    def test_retained_slot_state_fills_in_only_what_no_event_has_told(self, tmp_path):
        store = FleetStore(tmp_path / "fleet.sqlite3")
        try:
            at = time.time()
            store.record([
                Received("slot", "m1", {"number": 1, "name": "Cola", "stock": 5}, at),
                Received("event", "m1", self.envelope(1, "stock", slot=2, stock=3), at),
                Received("slot", "m1", {"number": 2, "name": "Water", "stock": 9}, at),
            ])
            assert store.machine("m1")["slots"] == [
                {"slot": 1, "name": "Cola", "stock": 5}, {"slot": 2, "name": None, "stock": 3}]
        finally:
            store.close()

    def test_the_fleet_keeps_its_history_after_a_restart(self, tmp_path):
        path = tmp_path / "fleet.sqlite3"
        store = FleetStore(path)
        store.record([Received("event", "m1", self.envelope(1, slot=1, status="success",
                                                            transaction_id="a"), time.time())])
        store.close()
        again = FleetStore(path)
        try:
            assert again.machine("m1")["last_vend"]["transaction_id"] == "a"
            assert again.highest_seqs() == {"m1": 1}
        finally:
            again.close()


class Controller:
    """A controller process on loopback with a simulated board and the MQTT bridge."""

    def __init__(self, data: Path, broker_url: str) -> None:
        self.data = data
        self.broker_url = broker_url
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Controller:
        env = {**os.environ, "VENDING_SIM_MOTOR_TIME": "0.01", "VENDING_MQTT_RECONNECT_MIN": "0.1",
               "VENDING_MQTT_RECONNECT_MAX": "0.5", "VENDING_PUBLIC_URL":
               f"http://127.0.0.1:{self.port}"}
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "src" / "app.py"), "--host", "127.0.0.1", "--port",
             str(self.port), "--no-mdns", "--data-dir", str(self.data), "--no-serial-scan",
             "--no-discovery", "--mqtt-url", self.broker_url, "--log-level", "WARNING"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port) or self.process.poll() is not None, 20.0,
                   message="the controller to listen")
        assert self.process.poll() is None, "the controller exited at start"
        return self

    @property
    def machine_id(self) -> str:
        return (self.data / "machine_id").read_text().strip()

    @property
    def database(self) -> Path:
        return self.data / "vending.sqlite3"

    def vend(self, slot: int) -> dict:
        return requests.post(f"http://127.0.0.1:{self.port}/vend/{slot}", timeout=15).json()

    def set_price(self, slot: int, price: int) -> None:
        requests.patch(f"http://127.0.0.1:{self.port}/slots/{slot}", json={"price": price},
                       timeout=5).raise_for_status()

    def collect(self) -> None:
        requests.post(f"http://127.0.0.1:{self.port}/collections", json={},
                      timeout=5).raise_for_status()

    def jam_next(self) -> None:
        requests.post(f"http://127.0.0.1:{self.port}/esp32/devices/SIMULATOR/simulate",
                      json={"fault": "jam"}, timeout=5).raise_for_status()

    def queued(self) -> int:
        return sum(1 for row in outbox_rows(self.database) if row["delivered_at"] is None)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@needs_broker
def test_three_machines_through_an_outage_and_a_restart_every_event_exactly_once(
        broker, make_app, tmp_path):
    """The broker stops while every machine vends and one controller restarts meanwhile;
    afterwards the fleet view and a plain subscriber hold every event once, in order, and
    the totals equal each machine's ledger."""
    sub = Subscriber(broker.port, "vending/#", client_id="plain-subscriber")
    fleet_app = make_app(fleet_url=broker.url, simulator=False, **FAST)
    fleet = fleet_app.extensions["vending"].fleet
    started = time.monotonic()
    machines = [Controller(tmp_path / f"m{n}", broker.url) for n in range(3)]
    try:
        for machine in machines:
            machine.start()
        ids = [m.machine_id for m in machines]
        wait_until(lambda: all(fleet.store.machine_ids().count(i) and
                               fleet.store.machine(i)["online"] for i in ids), 15.0,
                   message="the fleet to see three machines online")
        for n, machine in enumerate(machines):
            machine.set_price(2, 150 + n)
            assert machine.vend(1)["status"] == "success"

        broker.stop()
        for n, machine in enumerate(machines):
            assert machine.vend(2)["status"] == "success"
            if n == 0:
                machine.collect()
            assert machine.vend(3)["status"] == "success"
            machine.jam_next()
            assert machine.vend(4)["status"] == "failed"
        machines[1].stop()
        machines[1].start()
        assert machines[1].vend(5)["status"] == "success"
        assert all(machine.queued() >= 4 for machine in machines)

        broker.start()
        wait_until(lambda: all(machine.queued() == 0 for machine in machines), 20.0,
                   message="every machine's outbox to drain")
        expected = {m.machine_id: outbox_rows(m.database) for m in machines}
        wait_until(lambda: all(fleet.store.highest_seqs().get(i) == rows[-1]["seq"]
                               for i, rows in expected.items()), 15.0,
                   message="the fleet to have every event")
        wait_until(lambda: all(len(once_each(events_of(sub).get(i, []))) == len(rows)
                               for i, rows in expected.items()), 15.0,
                   message="the subscriber to have every event")

        got = events_of(sub)
        for machine in machines:
            rows = expected[machine.machine_id]
            seqs = [row["seq"] for row in rows]
            assert seqs == list(range(1, len(rows) + 1))
            # The plain subscriber: every event once after de-duplication, in seq order, with
            # its original time.
            first_arrivals = once_each(got[machine.machine_id])
            assert [e["seq"] for e in first_arrivals] == seqs
            assert [e["time"] for e in first_arrivals] == [row["created_at"] for row in rows]
            # The fleet view: the same events, no gap, and totals equal to the ledger.
            stored = fleet.store.events(machine.machine_id, limit=1000)
            assert [e["seq"] for e in stored] == seqs
            summary = fleet.store.machine(machine.machine_id)
            assert summary["gaps"] == [] and summary["missing"] == 0
            txns = ledger(machine.database)
            sales = ledger(machine.database, "sales")
            assert summary["sales_today"]["vends"] == len(sales)
            assert (summary["sales_today"]["amount"] or 0) == sum(s["price"] for s in sales)
            open_sales = [sale for sale in sales if sale["collection_id"] is None]
            assert summary["sales_since_collection"]["vends"] == len(open_sales)
            assert (summary["last_collection_at"] is not None) == (machine is machines[0])
            vend_events = {e["transaction_id"]: e["status"] for e in stored if e["event"] == "vend"}
            assert vend_events == {t["id"]: t["state"] for t in txns}
            assert [a["kind"] for a in summary["open_alerts"]] == ["vend_failed"]
            assert summary["online"]
            assert summary["url"] == f"http://127.0.0.1:{machine.port}"
        page = fleet_app.test_client().get("/fleet").get_data(as_text=True)
        assert all(f'data-machine="{i}"' in page for i in ids)
        print(f"three machines, outage and restart: {time.monotonic() - started:.1f}s")
    finally:
        for machine in machines:
            machine.stop()
        sub.close()


@needs_broker
def test_a_machine_going_away_shows_offline_from_its_last_will(broker, make_app, tmp_path):
    fleet_app = make_app(fleet_url=broker.url, simulator=False, **FAST)
    fleet = fleet_app.extensions["vending"].fleet
    machine = Controller(tmp_path / "m", broker.url).start()
    try:
        wait_until(lambda: machine.machine_id in fleet.store.machine_ids()
                   and fleet.store.machine(machine.machine_id)["online"], 15.0,
                   message="the machine online")
        machine.process.send_signal(signal.SIGKILL)
        machine.process.wait(10)
        wait_until(lambda: fleet.store.machine(machine.machine_id)["availability"] == "offline",
                   15.0, message="the last will")
    finally:
        machine.stop()


def test_the_fleet_view_is_off_unless_asked_for(client):
    response = client.get("/api/fleet")
    assert response.status_code == 404
    assert "--fleet" in response.get_json()["detail"]


def test_fleet_mode_from_the_command_line_runs_no_board_of_its_own():
    from vending.config import config_from_args

    config = config_from_args(["--fleet", "mqtt://u:p@broker:1883/shops"], environ={})
    assert config.fleet_url and not config.simulator and not config.serial_scan
    assert not config.discovery
    with pytest.raises(ValueError, match="(?i)mqtt"):
        config_from_args(["--fleet", "http://broker"], environ={})


def test_the_fleet_page_lists_machines_and_links_each_to_its_page(make_app):
    app = make_app(fleet_url=f"mqtt://127.0.0.1:{free_port()}/vending", simulator=False,
                   start_threads=False)
    fleet = app.extensions["vending"].fleet
    now = time.time()
    fleet.store.record([
        Received("status", "shop1", {"url": "http://shop1.lan:5000", "active_device": "ESP32_1",
                                     "mode": "serial"}, now),
        Received("availability", "shop1", "online", now),
        Received("event", "shop1", {"machine_id": "shop1", "seq": 3, "event": "vend",
                                    "time": now, "slot": 2, "status": "success",
                                    "transaction_id": "t", "stock": 0}, now),
    ])
    client = app.test_client()
    assert client.get("/").headers["Location"].endswith("/fleet")
    page = client.get("/fleet").get_data(as_text=True)
    assert 'href="http://shop1.lan:5000"' in page and "ESP32_1 (serial)" in page
    assert "empty: 2" in page and "2 missing" in page
    one = client.get("/api/fleet/shop1").get_json()
    assert one["empty_slots"] == [2] and one["gaps"] == [{"first": 1, "last": 2}]
    assert client.get("/api/fleet/nope").status_code == 404
    events = client.get("/api/fleet/shop1/events?after=0").get_json()
    assert [e["seq"] for e in events["events"]] == [3]
    assert json.loads(json.dumps(client.get("/api/fleet").get_json()))["machines"][0][
        "machine_id"] == "shop1"


class TestSignedCommands:
    KEY = "k" * 32

    def start(self, make_app, broker, **overrides):
        app = make_app(mqtt_url=broker.url, mqtt_commands=True, mqtt_command_key=self.KEY,
                       **FAST, **overrides)
        bridge = bridge_of(app)
        wait_until(lambda: bridge.ready, 10.0, message="the bridge to subscribe")
        return app, bridge

    @needs_broker
    def test_a_signed_command_vends_once_even_when_delivered_twice(self, broker, make_app):
        from vending.mqtt import sign_command

        app, bridge = self.start(make_app, broker)
        sub = Subscriber(broker.port, bridge.result_topic)
        try:
            command = sign_command(self.KEY, bridge.machine_id, 2, "order-1")
            sub.publish(bridge.command_topic, command)
            first = sub.wait_for(bridge.result_topic)
            sub.publish(bridge.command_topic, command)
            again = sub.wait_for(bridge.result_topic, lambda m: m.json()["replayed"])
            assert first.json()["status"] == "success"
            assert again.json()["transaction_id"] == first.json()["transaction_id"]
            assert app.extensions["vending"].store.counts()["success"] == 1
        finally:
            sub.close()

    @needs_broker
    def test_unsigned_forged_stale_and_other_machines_commands_are_refused(self, broker,
                                                                           make_app):
        from vending.mqtt import sign_command

        app, bridge = self.start(make_app, broker)
        sub = Subscriber(broker.port, bridge.result_topic)
        try:
            attempts = {
                "unsigned": {"slot": 1, "id": "a"},
                "wrong key": sign_command("x" * 32, bridge.machine_id, 1, "b"),
                "other machine": sign_command(self.KEY, "othermachine", 1, "c"),
                "stale": sign_command(self.KEY, bridge.machine_id, 1, "d",
                                      int(time.time()) - 3600),
                "slot changed": {**sign_command(self.KEY, bridge.machine_id, 1, "e"), "slot": 2},
            }
            for payload in attempts.values():
                sub.publish(bridge.command_topic, payload)
            wait_until(lambda: len(sub.on(bridge.result_topic)) == len(attempts), 10.0,
                       message="every refusal")
            answers = [m.json() for m in sub.on(bridge.result_topic)]
            assert {a["error"] for a in answers} == {"bad_signature"}
            # Home Assistant buttons cannot sign, so they are neither announced nor obeyed.
            sub.publish(bridge.button_topic(1), "PRESS", qos=0)
            sub.publish(bridge.command_topic, sign_command(self.KEY, bridge.machine_id, 1, "f"))
            sub.wait_for(bridge.result_topic, lambda m: m.json().get("id") == "f")
            assert app.extensions["vending"].store.counts()["success"] == 1
            assert not any("button" in topic for topic in bridge.discovery_messages())
        finally:
            sub.close()

    def test_a_short_command_key_is_refused(self, tmp_path):
        with pytest.raises(ValueError, match="mqtt_command_key"):
            test_config(tmp_path, mqtt_command_key="short")


def docs_acl() -> str:
    """The ACL file docs/integrations.md tells operators to write."""
    text = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")
    block = text.split("<!-- fleet-acl -->", 1)[1]
    return block.split("```", 2)[1].strip("\n") + "\n"


@needs_broker
def test_with_the_documented_acl_one_machines_user_cannot_pose_as_or_command_another(
        tmp_path, make_app):
    import shutil

    passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    workdir = tmp_path / "acl-broker"
    workdir.mkdir()
    users = {"fleet": "fleet-secret", "shopa": "a-secret", "shopb": "b-secret"}
    passwd = workdir / "passwd"
    passwd.touch()
    for user, password in users.items():
        subprocess.run([passwd_tool, "-b", str(passwd), user, password], check=True,
                       capture_output=True)
    (workdir / "acl").write_text(docs_acl(), encoding="ascii")
    broker = Mosquitto(MOSQUITTO, workdir, anonymous=False, extra=(
        f"password_file {passwd}\nacl_file {workdir / 'acl'}\n")).start()
    try:
        data = tmp_path / "shopa"
        data.mkdir()
        (data / "machine_id").write_text("shopa\n")
        url = f"mqtt://shopa:a-secret@127.0.0.1:{broker.port}/vending"
        app = create_app(test_config(data, mqtt_url=url, mqtt_commands=True, **FAST))
        bridge = bridge_of(app)
        wait_until(lambda: bridge.ready, 10.0, message="shop A to connect")
        fleet = make_app(fleet_url=f"mqtt://fleet:fleet-secret@127.0.0.1:{broker.port}/vending",
                         simulator=False, **FAST).extensions["vending"].fleet
        wait_until(lambda: "shopa" in fleet.store.machine_ids(), 10.0, message="the fleet")

        import paho.mqtt.client as mqtt

        intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        intruder.username_pw_set("shopb", "b-secret")
        intruder.connect("127.0.0.1", broker.port)
        intruder.loop_start()
        try:
            # Shop B's credentials: a forged event for shop A and a command to shop A.
            intruder.publish("vending/shopa/events/vend", json.dumps(
                {"machine_id": "shopa", "seq": 999, "event": "vend", "time": 1.0, "slot": 1,
                 "status": "success", "transaction_id": "forged"}), qos=1).wait_for_publish(5)
            intruder.publish(bridge.command_topic, json.dumps({"slot": 1, "id": "x"}),
                             qos=1).wait_for_publish(5)
        finally:
            intruder.disconnect()
            intruder.loop_stop()
        # The fleet may command shop A; its vend's event reaches the fleet after the forgeries.
        fleet_client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        fleet_client.username_pw_set("fleet", "fleet-secret")
        fleet_client.connect("127.0.0.1", broker.port)
        fleet_client.loop_start()
        try:
            fleet_client.publish(bridge.command_topic, json.dumps({"slot": 2, "id": "ok"}),
                                 qos=1).wait_for_publish(5)
        finally:
            fleet_client.disconnect()
            fleet_client.loop_stop()
        wait_until(lambda: any(e["event"] == "vend" for e in fleet.store.events("shopa")),
                   10.0, message="the fleet's command to vend")
        vends = [e for e in fleet.store.events("shopa") if e["event"] == "vend"]
        assert [(v["slot"], v["transaction_id"] != "forged") for v in vends] == [(2, True)]
        assert app.extensions["vending"].store.counts()["success"] == 1
        app.extensions["vending"].stop()
    finally:
        broker.stop()
