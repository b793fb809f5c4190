"""The MQTT bridge against a real mosquitto on 127.0.0.1: state, discovery, vend events,
commands (idempotent), broker restart and outage."""

from __future__ import annotations

import re
import uuid

import pytest
from brokers import Mosquitto, Subscriber, find_mosquitto, free_port, retained
from helpers import test_config, wait_until
from shop import shop

from vending.config import parse_mqtt_url
from vending.mqtt import MqttBridge

MOSQUITTO = find_mosquitto()

try:
    import paho.mqtt.client  # noqa: F401
    HAVE_PAHO = True
except ImportError:
    HAVE_PAHO = False

SKIP_REASON = ("needs the mosquitto broker and paho-mqtt: ./test.sh installs mosquitto when run"
               " as root on Debian (else: sudo apt install mosquitto); pip install paho-mqtt")

OBJECT_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
FAST = dict(mqtt_reconnect_min=0.2, mqtt_reconnect_max=1.0, mqtt_keepalive=5)


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None or not HAVE_PAHO:
        pytest.skip(SKIP_REASON)
    server = Mosquitto(MOSQUITTO, tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def subscriber(broker):
    sub = Subscriber(broker.port)
    yield sub
    sub.close()


def bridge_of(app) -> MqttBridge:
    [bridge] = [p for p in app.extensions["vending"]._parts if isinstance(p, MqttBridge)]
    return bridge


def start_bridged(make_app, broker, **overrides):
    app = make_app(mqtt_url=broker.url, **FAST, **overrides)
    bridge = bridge_of(app)
    wait_until(lambda: bridge.ready, 10.0, message="the bridge to connect and subscribe")
    return app, bridge


def test_the_controller_says_it_is_online_with_a_retained_message(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker)
    message = subscriber.wait_for(f"{bridge.base}/availability", lambda m: m.text == "online")
    assert bridge.base == f"vending/{app.extensions['vending'].machine_id}"
    late = Subscriber(broker.port)  # a client that connects later still gets it
    try:
        assert late.wait_for(f"{bridge.base}/availability").retain
    finally:
        late.close()
    assert message.text == "online"


def test_a_clean_shutdown_says_offline(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker)
    subscriber.wait_for(f"{bridge.base}/availability", lambda m: m.text == "online")
    app.extensions["vending"].stop()
    subscriber.wait_for(f"{bridge.base}/availability", lambda m: m.text == "offline")


def validate_discovery(topic: str, config: dict, base: str) -> str:
    """Check one discovery message the way Home Assistant reads it; returns the component."""
    parts = topic.split("/")
    assert len(parts) == 5 and parts[0] == "homeassistant" and parts[4] == "config", topic
    component, node_id, object_id = parts[1:4]
    assert component in ("sensor", "button"), topic
    assert OBJECT_ID.match(node_id) and OBJECT_ID.match(object_id), topic
    assert isinstance(config["name"], str) and config["name"]
    assert OBJECT_ID.match(config["unique_id"])
    assert config["availability_topic"] == f"{base}/availability"
    assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
    device = config["device"]
    assert device["identifiers"] and all(isinstance(i, str) for i in device["identifiers"])
    assert device["name"] and device["manufacturer"] and device["sw_version"]
    if component == "sensor":
        assert config["state_topic"].startswith(base + "/")
        assert "{{" in config["value_template"]
        assert "command_topic" not in config
    else:
        assert config["command_topic"].startswith(base + "/")
        assert config["payload_press"] == "PRESS"
        assert config["retain"] is False
    for key in ("state_topic", "command_topic", "json_attributes_topic", "availability_topic"):
        if key in config:
            assert "+" not in config[key] and "#" not in config[key]
    return component


def discovery(subscriber, machine_id, count):
    prefix = "homeassistant/"
    node = f"/vending_{machine_id}/"

    def configs():
        found = {m.topic: m for m in subscriber.messages
                 if m.topic.startswith(prefix) and node in m.topic and m.payload}
        return found if len(found) >= count else None

    return wait_until(configs, 10.0, message=f"{count} discovery messages")


def test_discovery_messages_are_valid_for_home_assistant(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker, mqtt_commands=True, slots=3)
    found = discovery(subscriber, bridge.machine_id, 3 + 3 * 3 + 3)
    components = [validate_discovery(t, m.json(), bridge.base) for t, m in found.items()]
    assert components.count("button") == 3
    assert components.count("sensor") == 12
    unique_ids = [m.json()["unique_id"] for m in found.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    late = Subscriber(broker.port)  # retained: a Home Assistant started later sees them too
    try:
        assert all(m.retain for m in discovery(late, bridge.machine_id, 15).values())
    finally:
        late.close()
    devices = {tuple(m.json()["device"]["identifiers"]) for m in found.values()}
    assert len(devices) == 1  # one machine, one Home Assistant device
    stock = found[f"homeassistant/sensor/vending_{bridge.machine_id}/slot_2_stock/config"].json()
    assert stock["state_topic"] == f"{bridge.base}/slots/2"
    button = found[f"homeassistant/button/vending_{bridge.machine_id}/slot_2_vend/config"].json()
    assert button["command_topic"] == f"{bridge.base}/slots/2/vend"
    for sensor in ("price", "sales_today"):
        config = found[f"homeassistant/sensor/vending_{bridge.machine_id}/slot_2_{sensor}/config"]
        assert config.json()["device_class"] == "monetary"
        assert config.json()["unit_of_measurement"] == "EUR"


def test_a_vend_event_carries_product_and_price_and_the_slot_its_sales_today(
        broker, subscriber, tmp_path):
    # A serial board: what the simulated device serves is no sale (issue 13).
    with shop(tmp_path / "data", mqtt_url=broker.url, **FAST) as (app, _):
        bridge = bridge_of(app)
        wait_until(lambda: bridge.ready, 10.0, message="the bridge to connect and subscribe")
        client = app.test_client()
        product = client.post("/products", json={"name": "Water", "default_price": 150}).get_json()
        client.patch("/slots/2", json={"product_id": product["id"]})
        subscriber.wait_for(f"{bridge.base}/slots/2", lambda m: m.json()["price_amount"] == "1.50")
        assert client.post("/vend/2?wait=5").get_json()["status"] == "success"
        event = subscriber.wait_for(f"{bridge.base}/events/vend").json()
        assert (event["product_id"], event["product_name"], event["price"], event["currency"]) == (
            product["id"], "Water", 150, "EUR")
        assert event["sale"] is True and event["product"] == "Water"
        slot = subscriber.wait_for(f"{bridge.base}/slots/2",
                                   lambda m: m.json()["sales_today"]["count"] == 1).json()
        assert slot["sales_today"] == {"count": 1, "value": 150, "amount": "1.50"}


def test_without_commands_no_buttons_are_announced_and_commands_are_ignored(
        broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker, slots=2)
    found = discovery(subscriber, bridge.machine_id, 2 + 3)
    assert all("/button/" not in topic for topic in found)
    subscriber.publish(bridge.command_topic, {"slot": 1, "id": "x1"})
    subscriber.publish(bridge.button_topic(1), "PRESS", qos=0)
    # A vend over HTTP after the commands shows the bridge is alive and did nothing with them.
    app.test_client().post("/vend/2")
    subscriber.wait_for(f"{bridge.base}/events/vend")
    _, total = app.extensions["vending"].store.transactions()
    assert total == 1
    assert subscriber.on(bridge.result_topic) == []


def test_state_is_published_retained(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker)
    app.test_client().patch("/slots/1", json={"name": "Cola", "stock": 5})
    subscriber.wait_for(f"{bridge.base}/slots/1", lambda m: m.json()["stock"] == 5)
    slot = retained(broker.port, f"{bridge.base}/slots/1", lambda m: m.json()["stock"] == 5)
    assert slot.json()["name"] == "Cola"
    device = retained(broker.port, f"{bridge.base}/devices/SIMULATOR")
    assert device.json()["state"] == "online"
    status = retained(broker.port, f"{bridge.base}/status")
    assert status.json()["devices_online"] == 1


def test_a_device_going_offline_is_published(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker)
    app.test_client().post("/esp32/devices/SIMULATOR/simulate", json={"online": False})
    subscriber.wait_for(f"{bridge.base}/devices/SIMULATOR", lambda m: m.json()["state"] == "offline")
    subscriber.wait_for(f"{bridge.base}/status", lambda m: m.json()["devices_online"] == 0)


def test_a_vend_appears_as_an_event_and_updates_last_vend_and_stock(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker)
    client = app.test_client()
    client.patch("/slots/3", json={"stock": 5})
    txn = client.post("/vend/3").get_json()
    event = subscriber.wait_for(f"{bridge.base}/events/vend")
    assert not event.retain
    assert event.json()["transaction_id"] == txn["transaction_id"]
    assert event.json()["status"] == "success"
    # The simulator served it: the event says so, and the stock is untouched.
    assert event.json()["simulated"] is True
    retained(broker.port, f"{bridge.base}/last_vend",
             lambda m: m.json()["transaction_id"] == txn["transaction_id"])
    retained(broker.port, f"{bridge.base}/slots/3", lambda m: m.json()["stock"] == 5)


def test_a_vend_settled_late_is_published_with_its_outcome_and_the_stock(broker, subscriber,
                                                                         make_app):
    from vending.devices.base import VendOutcome
    from vending.protocol.states import Outcome

    app, bridge = start_bridged(make_app, broker, vend_timeout=0.1)
    client = app.test_client()
    client.patch("/slots/3", json={"stock": 5})
    runtime = app.extensions["vending"]
    runtime.simulator.inject_fault("no_reply")
    txn = client.post("/vend/3").get_json()["transaction_id"]
    subscriber.wait_for(f"{bridge.base}/events/vend", lambda m: m.json()["status"] == "unknown")
    # What a board's late answer does (serial reconcile, WiFi confirm): the vend service records it.
    runtime.service.settle_late(txn, VendOutcome(Outcome.SUCCESS, "the board confirmed it later"))
    event = subscriber.wait_for(f"{bridge.base}/events/vend",
                                lambda m: m.json()["status"] == "success")
    assert event.json()["transaction_id"] == txn
    assert event.json()["settled"] is True and event.json()["previous_status"] == "unknown"
    retained(broker.port, f"{bridge.base}/last_vend", lambda m: m.json()["status"] == "success")
    # The simulator served it: settled as success, it still takes no stock.
    assert event.json()["simulated"] is True
    retained(broker.port, f"{bridge.base}/slots/3", lambda m: m.json()["stock"] == 5)


def test_alerts_are_published(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker)
    client = app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/1")
    alert = subscriber.wait_for(f"{bridge.base}/alerts")
    assert alert.json()["kind"] == "vend_failed" and not alert.retain
    subscriber.wait_for(f"{bridge.base}/status", lambda m: m.json()["active_alerts"] == 1)


def test_a_command_vend_dispenses_once_even_when_delivered_twice(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker, mqtt_commands=True)
    rt = app.extensions["vending"]
    command = {"slot": 2, "id": str(uuid.uuid4())}
    subscriber.publish(bridge.command_topic, command)
    subscriber.publish(bridge.command_topic, command)
    wait_until(lambda: len(subscriber.on(bridge.result_topic)) == 2, 10.0, message="two results")
    results = [m.json() for m in subscriber.on(bridge.result_topic)]
    assert {r["transaction_id"] for r in results} == {results[0]["transaction_id"]}
    assert all(r["status"] == "success" and r["id"] == command["id"] for r in results)
    assert sorted(r["replayed"] for r in results) == [False, True]
    assert len(rt.simulator.motor_runs) == 1
    txn = rt.store.get(results[0]["transaction_id"])
    assert txn.idempotency_key == "mqtt:" + command["id"]
    # Once finished, the same id again is answered from the record, not vended.
    subscriber.publish(bridge.command_topic, command)
    wait_until(lambda: len(subscriber.on(bridge.result_topic)) == 3, message="a third result")
    assert len(rt.simulator.motor_runs) == 1


def test_an_http_idempotency_key_and_an_mqtt_id_never_collide(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker, mqtt_commands=True)
    client = app.test_client()
    http = client.post("/vend/1", headers={"Idempotency-Key": "same"}).get_json()
    subscriber.publish(bridge.command_topic, {"slot": 1, "id": "same"})
    result = subscriber.wait_for(bridge.result_topic).json()
    assert result["transaction_id"] != http["transaction_id"]
    assert len(app.extensions["vending"].simulator.motor_runs) == 2


@pytest.mark.parametrize("payload, error", [
    ("not json", "bad_request"),
    ({"slot": 1}, "bad_request"),
    ({"slot": "one", "id": "a"}, "invalid_slot"),
    ({"slot": 99, "id": "b"}, "invalid_slot"),
])
def test_a_bad_command_gets_an_error_on_the_result_topic(broker, subscriber, make_app, payload,
                                                         error):
    app, bridge = start_bridged(make_app, broker, mqtt_commands=True)
    subscriber.publish(bridge.command_topic, payload)
    result = subscriber.wait_for(bridge.result_topic).json()
    assert result["status"] == "refused" and result["error"] == error and result["detail"]
    assert app.extensions["vending"].simulator.motor_runs == []


def test_a_command_for_a_sold_out_slot_is_refused_and_audited(broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker, mqtt_commands=True)
    client = app.test_client()
    client.patch("/slots/1", json={"stock": 0})
    subscriber.publish(bridge.command_topic, {"slot": 1, "id": "c1"})
    result = subscriber.wait_for(bridge.result_topic).json()
    assert result["error"] == "sold_out"
    row = client.get("/audit?limit=1").get_json()["entries"][0]
    assert (row["action"], row["who"], row["outcome"]) == ("mqtt_vend", "mqtt", "refused")


def test_a_home_assistant_button_press_vends_through_the_transaction_path(
        broker, subscriber, make_app):
    app, bridge = start_bridged(make_app, broker, mqtt_commands=True)
    subscriber.publish(bridge.button_topic(4), "PRESS", qos=0)
    result = subscriber.wait_for(bridge.result_topic).json()
    assert result["status"] == "success" and result["origin"] == "button" and result["slot"] == 4
    txn = app.extensions["vending"].store.get(result["transaction_id"])
    assert txn.slot == 4 and txn.state == "success"
    row = app.test_client().get("/audit?limit=1").get_json()["entries"][0]
    assert (row["action"], row["outcome"]) == ("mqtt_vend", "ok")
    assert result["transaction_id"] in row["detail"]


def test_a_retained_command_is_never_executed(broker, subscriber, make_app):
    # Left on the broker before the controller starts, it arrives flagged as retained.
    prefix_probe = make_app(mqtt_url=broker.url, **FAST)
    base = bridge_of(prefix_probe).base
    prefix_probe.extensions["vending"].stop()
    subscriber.publish(f"{base}/command/vend", {"slot": 1, "id": "stale"}, retain=True)
    app, bridge = start_bridged(make_app, broker, mqtt_commands=True)
    subscriber.publish(bridge.command_topic, {"slot": 2, "id": "fresh"})
    result = subscriber.wait_for(bridge.result_topic).json()
    assert result["id"] == "fresh"
    assert [r.slot for r in app.extensions["vending"].simulator.motor_runs] == [2]


def test_broker_restart_the_bridge_reconnects_and_republishes(broker, make_app):
    app, bridge = start_bridged(make_app, broker, mqtt_commands=True)
    app.test_client().patch("/slots/1", json={"stock": 7})
    broker.stop()
    wait_until(lambda: not bridge.connected, message="the bridge to notice")
    broker.start()  # no persistence: every retained message is gone
    wait_until(lambda: bridge.connections >= 2 and bridge.ready, 10.0,
               message="the bridge to reconnect")
    sub = Subscriber(broker.port)
    try:
        sub.wait_for(f"{bridge.base}/availability", lambda m: m.text == "online")
        assert sub.wait_for(f"{bridge.base}/slots/1").json()["stock"] == 7
        discovery(sub, bridge.machine_id, 3 + 2 * 5)
        # Commands work again after the reconnection.
        sub.publish(bridge.command_topic, {"slot": 1, "id": "after-restart"})
        assert sub.wait_for(bridge.result_topic).json()["status"] == "success"
    finally:
        sub.close()


def test_broker_down_vends_still_work_and_state_catches_up(broker, make_app):
    app, bridge = start_bridged(make_app, broker)
    client = app.test_client()
    client.patch("/slots/2", json={"stock": 5})
    broker.stop()
    wait_until(lambda: not bridge.connected, message="the bridge to notice")
    vends = [client.post("/vend/2").get_json() for _ in range(2)]
    assert [v["status"] for v in vends] == ["success", "success"]
    broker.start()
    # Simulated vends take no stock.
    retained(broker.port, f"{bridge.base}/slots/2", lambda m: m.json()["stock"] == 5)
    last = retained(broker.port, f"{bridge.base}/last_vend")
    assert last.json()["transaction_id"] == vends[-1]["transaction_id"]
    assert last.json()["simulated"] is True


def test_the_controller_starts_and_vends_while_the_broker_is_down(make_app, tmp_path):
    if MOSQUITTO is None or not HAVE_PAHO:
        pytest.skip(SKIP_REASON)
    broker = Mosquitto(MOSQUITTO, tmp_path)  # not started yet
    try:
        app = make_app(mqtt_url=broker.url, **FAST)
        assert app.test_client().post("/vend/1").get_json()["status"] == "success"
        bridge = bridge_of(app)
        assert not bridge.connected
        broker.start()
        wait_until(lambda: bridge.connected, 10.0, message="the bridge to connect late")
    finally:
        broker.stop()


def test_the_machine_id_is_stable_across_restarts(make_app):
    first = make_app(mqtt_url=f"mqtt://127.0.0.1:{free_port()}/v", start_threads=False)
    machine_id = first.extensions["vending"].machine_id
    first.extensions["vending"].stop()
    again = make_app(mqtt_url=f"mqtt://127.0.0.1:{free_port()}/v", start_threads=False)
    assert again.extensions["vending"].machine_id == machine_id
    assert bridge_of(again).base == f"v/{machine_id}"


@pytest.mark.parametrize("url", ["http://host", "mqtt://", "mqtt://host:notaport", "mqtt://h/a+b"])
def test_a_bad_mqtt_url_is_refused_with_an_example(tmp_path, url):
    with pytest.raises(ValueError, match="(?i)mqtt"):
        test_config(tmp_path, mqtt_url=url)


def test_an_mqtt_url_gives_host_port_credentials_and_prefix():
    url = parse_mqtt_url("mqtts://shop:p%40ss@broker.lan/shop/vending")
    assert (url.host, url.port, url.tls, url.username, url.password, url.prefix) == (
        "broker.lan", 8883, True, "shop", "p@ss", "shop/vending")
    assert "p@ss" not in url.redacted()
    assert parse_mqtt_url("mqtt://h").prefix == "vending"


def test_every_topic_the_bridge_uses_is_listed_in_the_docs(broker, subscriber, make_app):
    from pathlib import Path

    app, bridge = start_bridged(make_app, broker, mqtt_commands=True, slots=2)
    client = app.test_client()
    client.post("/esp32/devices/SIMULATOR/simulate", json={"fault": "jam"})
    client.post("/vend/1")
    subscriber.publish(bridge.button_topic(2), "PRESS", qos=0)
    subscriber.wait_for(f"{bridge.base}/alerts")
    subscriber.wait_for(bridge.result_topic)
    docs = (Path(__file__).parents[1] / "docs" / "integrations.md").read_text(encoding="utf-8")
    for topic in {m.topic for m in subscriber.messages}:
        generic = topic.replace(bridge.base, "<prefix>/<id>").replace(
            f"vending_{bridge.machine_id}", "vending_<id>")
        generic = re.sub(r"/slots/\d+", "/slots/<n>", generic)
        generic = generic.replace("/devices/SIMULATOR", "/devices/<device_id>")
        generic = re.sub(r"^homeassistant/(sensor|button)/vending_<id>/[a-z0-9_]+/config$",
                         "homeassistant/<component>/vending_<id>/<object>/config", generic)
        assert f"`{generic}`" in docs, f"{topic} ({generic}) is not in docs/integrations.md"


def test_an_unreachable_broker_is_logged_once_not_on_every_retry(make_app, caplog):
    import logging

    if not HAVE_PAHO:
        pytest.skip(SKIP_REASON)
    caplog.set_level(logging.WARNING, logger="vending.mqtt")
    app = make_app(mqtt_url=f"mqtt://127.0.0.1:{free_port()}/v", **FAST)
    bridge = bridge_of(app)
    wait_until(lambda: bridge.connect_failures >= 3, message="three attempts")
    assert caplog.text.count("cannot reach the broker") == 1
    assert "Client is not connected" not in caplog.text


def test_a_crashed_controller_is_marked_offline_by_its_last_will(broker, subscriber, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    process = subprocess.Popen(
        [sys.executable, str(root / "src" / "app.py"), "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(tmp_path / "crash"), "--no-serial-scan", "--no-discovery",
         "--mqtt-url", broker.url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        online = subscriber.wait_for_prefix("vending/", "/availability", "online")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        subscriber.wait_for(online.topic, lambda m: m.text == "offline")
        assert retained(broker.port, online.topic).text == "offline"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
