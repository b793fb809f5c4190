"""The MQTT bridge: state, vend events and alerts to a broker, Home Assistant discovery,
and (only when allowed) vend commands through the same transaction path as the web page.

Topics live under `<prefix>/<machine-id>/`; docs/integrations.md lists them. State is
retained and republished in full on every (re)connection. Events (vends, alerts, stock and
board changes) come from the store's outbox, where they were written in the same
transaction as their change: the thread `mqtt-outbox-<machine-id>` publishes them with
QoS 1 in `seq` order and marks them delivered on the broker's PUBACK, so an outage or a
restart delays them but loses none. The bridge never blocks a vend: paho's network thread
does the I/O and the reconnecting, with back-off, while the controller carries on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from . import __version__, audit
from .config import MqttSettings, parse_mqtt_url
from .devices.base import BUSY, ONLINE
from .errors import IdempotencyKeyInFlight, VendingError
from .events import (
    ALERT_ACKNOWLEDGED,
    ALERT_RAISED,
    DEVICE_ADDED,
    DEVICE_REMOVED,
    DEVICE_STATE,
    SLOT_CHANGED,
    VEND_FINISHED,
    VEND_SETTLED,
    Event,
)
from .protocol.states import VendState
from .store import outbox
from .threads import Worker

if TYPE_CHECKING:
    from .audit import AuditLog
    from .events import EventBus
    from .store import Transaction
    from .view import MachineView

    VendFunction = Callable[[int, Optional[str]], tuple[Transaction, bool]]

logger = logging.getLogger("vending.mqtt")

ONLINE_PAYLOAD = "online"
OFFLINE_PAYLOAD = "offline"
PRESS_PAYLOAD = "PRESS"
KEY_PREFIX = "mqtt:"
MAX_COMMAND_ID = 200
MAX_QUEUED = 1000
# Events published and not yet acknowledged by the broker, at most.
OUTBOX_WINDOW = 100
# Connected, events in flight, and no PUBACK for this long: publish them again.
OUTBOX_STALL = 30.0
PRUNE_EVERY = 3600.0
# A signed command older or newer than this (seconds) is refused, so one overheard long ago
# cannot be played again once its id has been forgotten.
COMMAND_MAX_SKEW = 300.0


def command_signature(key: str, machine_id: str, command_id: str, slot: int, ts: int) -> str:
    """HMAC-SHA256 (hex) under the machine's key of vend, machine, id, slot, ts on lines."""
    message = f"vend\n{machine_id}\n{command_id}\n{slot}\n{ts}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def sign_command(key: str, machine_id: str, slot: int, command_id: str,
                 ts: int | None = None) -> dict[str, Any]:
    """The JSON of a signed vend command for `machine_id` (what a fleet server sends)."""
    ts = int(time.time()) if ts is None else ts
    return {"slot": slot, "id": command_id, "ts": ts,
            "sig": command_signature(key, machine_id, command_id, slot, ts)}


class EventOutbox(Protocol):
    """The store's outbox, as the bridge uses it (vending.store.Store provides it)."""

    def on_outbox(self, listener: Callable[[], None]) -> None: ...
    def record_event(self, event: str, body: dict[str, Any]) -> None: ...
    def outbox_pending(self, after: int = 0, limit: int = 100) -> list[outbox.OutboxEvent]: ...
    def outbox_delivered(self, seqs: list[int]) -> None: ...
    def outbox_prune(self, delivered_before: float) -> int: ...
    def outbox_counts(self) -> dict[str, Any]: ...


def topic_part(value: str) -> str:
    """A safe single topic level / Home Assistant object id from an arbitrary name."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in value) or "_"


class MqttBridge:
    """Publishes the controller to an MQTT broker and takes vend commands from it."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, *, events: EventBus, view: MachineView,
                 vend: VendFunction, audit_log: AuditLog, machine_id: str, outbox: EventOutbox,
                 public_url: str = "") -> None:
        """Given only what it uses: events to follow, a read-only view to publish, a vend
        function for commands (the web page's transaction path), the audit log and the
        outbox its events wait in."""
        self.view = view
        self.outbox = outbox
        self.request_vend = vend
        self.audit_log = audit_log
        self.url = parse_mqtt_url(settings.url)
        self.machine_id = machine_id
        self.base = f"{self.url.prefix}/{self.machine_id}"
        self.discovery_prefix = settings.discovery_prefix.strip("/") or "homeassistant"
        self.commands_allowed = settings.commands
        self.command_key = settings.command_key
        # Home Assistant cannot sign a button press: with signed commands there are no buttons.
        self.buttons = self.commands_allowed and not self.command_key
        self.keepalive = settings.keepalive
        self.reconnect_min = settings.reconnect_min
        self.reconnect_max = settings.reconnect_max
        self.slots = view.slot_count
        self.retention = settings.outbox_retention_hours * 3600.0
        self.public_url = public_url
        self.connections = 0
        self.connect_failures = 0
        self._client: Any = None
        self._connected = threading.Event()
        self._ready = threading.Event()
        self._subscribe_mid: int | None = None
        self._warned_down = False
        self._lock = threading.Lock()
        # Transaction id -> command replies to publish when that vend finishes.
        self._waiting: dict[str, list[dict[str, Any]]] = {}
        self._last_vend: dict[str, Any] | None = None
        # Outbox state: mids paho reported PUBACKed (appended on the network thread, which
        # holds paho's lock, so no lock of ours is taken there), and mid -> seq in flight,
        # owned by the outbox thread alone.
        self._acks: deque[int] = deque()
        self._inflight: dict[int, int] = {}
        self._sent_upto = 0
        self._published_on = 0
        self._draining_on = 0
        self._last_progress = time.monotonic()
        self._wake = threading.Event()
        self._outbox_worker = Worker(f"mqtt-outbox-{machine_id}", self._run_outbox,
                                     wake=self._wake.set)
        self._stopping = self._outbox_worker.stopping
        self.events_published = 0
        self.events_delivered = 0
        self.outbox.on_outbox(self._wake.set)
        events.subscribe(self._on_event, {
            VEND_FINISHED, VEND_SETTLED, DEVICE_STATE, DEVICE_ADDED, DEVICE_REMOVED, SLOT_CHANGED,
            ALERT_RAISED, ALERT_ACKNOWLEDGED,
        })

    # Topics

    @property
    def availability_topic(self) -> str:
        return f"{self.base}/availability"

    @property
    def command_topic(self) -> str:
        return f"{self.base}/command/vend"

    @property
    def result_topic(self) -> str:
        return f"{self.base}/command/result"

    def slot_topic(self, number: int) -> str:
        return f"{self.base}/slots/{number}"

    def button_topic(self, number: int) -> str:
        return f"{self.base}/slots/{number}/vend"

    def device_topic(self, device_id: str) -> str:
        return f"{self.base}/devices/{topic_part(device_id)}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def ready(self) -> bool:
        """Connected, state published, and command topics subscribed when allowed."""
        return self._ready.is_set()

    # Lifecycle

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried with back-off."""
        if self._client is not None:
            return
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            # Vending matters more than publishing: carry on without the bridge.
            logger.error("MQTT is configured but paho-mqtt is not installed; run"
                         " pip install -r requirements.txt. Carrying on without MQTT.")
            return

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"vending-{self.machine_id}", clean_session=True)
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            client.tls_set()
        client.will_set(self.availability_topic, OFFLINE_PAYLOAD, qos=1, retain=True)
        client.reconnect_delay_set(self.reconnect_min, self.reconnect_max)  # type: ignore[arg-type]
        # Events queue while the broker is down; bounded so a long outage cannot eat memory.
        client.max_queued_messages_set(MAX_QUEUED)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.max_inflight_messages_set(OUTBOX_WINDOW)
        self._client = client
        logger.info("MQTT: connecting to %s as machine %s", self.url.redacted(), self.machine_id)
        client.connect_async(self.url.host, self.url.port, self.keepalive)
        client.loop_start()
        self._outbox_worker.start()

    def stop(self) -> None:
        """Say offline (retained), disconnect and join the network thread; safe twice."""
        if self._client is None:
            return
        self._outbox_worker.stop()
        client, self._client = self._client, None
        if client is None:
            return
        if self._connected.is_set():
            try:
                info = client.publish(self.availability_topic, OFFLINE_PAYLOAD, qos=1, retain=True)
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        self._connected.clear()
        self._ready.clear()
        client.disconnect()
        client.loop_stop()

    # paho callbacks (network thread)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            logger.warning("MQTT: the broker %s refused the connection: %s; check the user and"
                           " password in VENDING_MQTT_URL", self.url.redacted(), reason_code)
            return
        self.connections += 1
        self._warned_down = False
        logger.info("MQTT: connected to %s (connection %d)", self.url.redacted(), self.connections)
        self._connected.set()
        if self.commands_allowed:
            # QoS 0 for button presses: at most once, so a redelivery never vends twice.
            topics = [(self.command_topic, 1)]
            if self.buttons:
                topics.append((f"{self.base}/slots/+/vend", 0))
            _, self._subscribe_mid = client.subscribe(topics)
        self.publish_all()
        if not self.commands_allowed:
            self._ready.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        if mid != self._subscribe_mid:
            return
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            logger.warning("MQTT: the broker refused the command subscriptions (%s); check its"
                           " access control for %s/#", ", ".join(failed), self.base)
        self._ready.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._ready.clear()
        if self._client is None:
            return
        # The first loss is news; the retries that follow are not.
        if was_connected or not self._warned_down:
            logger.warning("MQTT: lost the broker %s (%s); retrying with back-off up to %gs;"
                           " vending carries on", self.url.redacted(), reason_code,
                           self.reconnect_max)
            self._warned_down = True
        else:
            logger.debug("MQTT: still cannot reach %s (%s)", self.url.redacted(), reason_code)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self.connect_failures += 1
        if not self._warned_down:
            logger.warning("MQTT: cannot reach the broker %s; retrying with back-off up to %gs;"
                           " vending carries on", self.url.redacted(), self.reconnect_max)
            self._warned_down = True
        else:
            logger.debug("MQTT: still cannot reach %s", self.url.redacted())

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        self._acks.append(mid)
        self._wake.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            self._command(message.topic, message.payload, bool(message.retain))
        except Exception:
            logger.exception("MQTT: handling a message on %s failed", message.topic)

    # The outbox (thread mqtt-outbox-<machine-id>)

    def _run_outbox(self) -> None:
        next_prune = 0.0
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self._settle_acks()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    self.outbox.outbox_prune(time.time() - self.retention)
                if self._connected.is_set():
                    self._publish_queued()
            except sqlite3.Error as exc:
                # The events stay queued in the database; try again shortly.
                logger.warning("MQTT: cannot read or update the outbox (%s); retrying", exc)
                self._stopping.wait(1.0)
        # Record what the broker acknowledged in the last moments, so a restart resends less.
        deadline = time.monotonic() + 1.0
        while self._inflight and self._connected.is_set() and time.monotonic() < deadline:
            self._wake.wait(0.05)
            self._wake.clear()
            try:
                self._settle_acks()
            except sqlite3.Error:
                break

    def _settle_acks(self) -> None:
        seqs = []
        while self._acks:
            seq = self._inflight.pop(self._acks.popleft(), None)
            if seq is not None:
                seqs.append(seq)
        if seqs:
            self.outbox.outbox_delivered(seqs)
            self.events_delivered += len(seqs)
            self._last_progress = time.monotonic()

    def _publish_queued(self) -> None:
        """Hand queued events to paho in seq order, keeping at most OUTBOX_WINDOW in flight.

        paho keeps an unacknowledged message and sends it again after a reconnection, so a
        broker outage needs nothing from us; after a restart the database is the queue.
        """
        client = self._client
        if client is None:
            return
        if self._published_on != self.connections:
            # paho sends what was in flight again after a reconnection; new events wait until
            # the broker has those, so every subscriber sees them in seq order.
            if self._inflight:
                if self._draining_on != self.connections:
                    self._draining_on = self.connections
                    self._last_progress = time.monotonic()
                if time.monotonic() - self._last_progress <= OUTBOX_STALL:
                    return
            self._published_on = self.connections
        if self._inflight and time.monotonic() - self._last_progress > OUTBOX_STALL:
            logger.warning("MQTT: no PUBACK for %d events in %gs; publishing them again",
                           len(self._inflight), OUTBOX_STALL)
            self._inflight.clear()
            self._sent_upto = 0
        while self._connected.is_set() and not self._stopping.is_set():
            room = OUTBOX_WINDOW - len(self._inflight)
            if room <= 0:
                return
            events = self.outbox.outbox_pending(self._sent_upto, room)
            if not events:
                return
            if not self._inflight:
                self._last_progress = time.monotonic()
            for event in events:
                payload = json.dumps(event.envelope(self.machine_id), separators=(",", ":"),
                                     default=str)
                info = client.publish(f"{self.base}/{event.topic}", payload, qos=1)
                # NO_CONN (4): queued by paho, sent on reconnection; anything else: not queued.
                if info.rc not in (0, 4):
                    logger.debug("MQTT: event %d not queued (rc=%s); retrying", event.seq, info.rc)
                    return
                self._inflight[info.mid] = event.seq
                self._sent_upto = event.seq
                self.events_published += 1
            self._settle_acks()

    def outbox_status(self) -> dict[str, Any]:
        """Queued and kept events, for /status and the bench."""
        return {**self.outbox.outbox_counts(), "in_flight": len(self._inflight),
                "published": self.events_published, "delivered": self.events_delivered}

    # Publishing

    def _publish(self, topic: str, payload: Any, retain: bool, qos: int = 1) -> None:
        client = self._client
        if client is None:
            return
        # Retained state is republished in full on reconnection; queueing it would only
        # replay stale values after the fresh ones.
        if retain and not self._connected.is_set():
            return
        if not isinstance(payload, (str, bytes)):
            payload = json.dumps(payload, separators=(",", ":"), default=str)
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            logger.debug("MQTT: publish to %s not queued (rc=%s)", topic, info.rc)

    def publish_all(self) -> None:
        """Availability, discovery and every piece of state, as after a (re)connection."""
        self._publish(self.availability_topic, ONLINE_PAYLOAD, retain=True)
        for topic, config in self.discovery_messages().items():
            self._publish(topic, config, retain=True)
        if not self.buttons:
            # Take away buttons announced while unsigned commands were allowed.
            for number in range(1, self.slots + 1):
                self._publish(self._discovery_topic("button", f"slot_{number}_vend"), "",
                              retain=True)
        for device in self.view.devices():
            info = device.info()
            self._publish_device(device.device_id, info.get("type", device.transport),
                                 info.get("status", device.state), info.get("status_detail", ""))
        today = self.view.sales_today()
        for slot in self.view.slots():
            self._publish(self.slot_topic(slot.number), self._slot_payload(slot, today),
                          retain=True)
        last = self._last_vend
        if last is None:
            page = self.view.recent_transactions(20)
            finished = [t for t in page if t.is_final]
            last = self._vend_summary(finished[0].to_dict()) if finished else None
        if last is not None:
            self._last_vend = last
            self._publish(f"{self.base}/last_vend", last, retain=True)
        self._publish_status()

    def _publish_status(self) -> None:
        devices = self.view.devices()
        mode = self.view.communication_mode()
        self._publish(f"{self.base}/status", {
            "machine_id": self.machine_id,
            "version": __version__,
            "devices_online": sum(1 for d in devices if d.state in (ONLINE, BUSY)),
            "devices": len(devices),
            "active_device": mode.get("active_device"),
            "mode": mode.get("mode"),
            "commands": self.commands_allowed,
            "signed_commands": bool(self.commands_allowed and self.command_key),
            "active_alerts": self.view.active_alert_count(),
            "url": self.public_url or None,
        }, retain=True)

    def _publish_device(self, device_id: str, transport: str, state: str, detail: str) -> None:
        self._publish(self.device_topic(device_id), {
            "device_id": device_id, "transport": transport, "state": state, "detail": detail,
        }, retain=True)

    def _vend_summary(self, txn: dict[str, Any]) -> dict[str, Any]:
        # Product and price (minor units, fixed when the vend was asked for): a fleet server
        # (issue 17) counts sales from these events.
        keys = ("transaction_id", "slot", "status", "simulated", "reason", "message", "device_id",
                "communication", "created_at", "finished_at", "product_id", "product_name",
                "price")
        return {**{k: txn.get(k) for k in keys}, "currency": self.view.currency.code}

    def _record_device(self, device_id: str, transport: str, state: str, detail: str) -> None:
        """A board's change is not in the database: queue its event on its own."""
        try:
            self.outbox.record_event(outbox.DEVICE, {"device_id": device_id,
                                                    "transport": transport, "state": state,
                                                    "detail": detail})
        except sqlite3.Error as exc:
            logger.warning("MQTT: could not queue the event for %s going %s: %s", device_id,
                           state, exc)

    def _on_event(self, event: Event) -> None:
        if self._client is None and event.kind not in (DEVICE_STATE, DEVICE_REMOVED):
            return
        data = event.data
        if event.kind == VEND_FINISHED:
            summary = self._vend_summary(data["transaction"])
            self._last_vend = summary
            self._publish(f"{self.base}/last_vend", summary, retain=True)
            self._publish_slot(summary["slot"])
            self._answer_waiting(data["transaction"])
        elif event.kind == VEND_SETTLED:
            # A vend recorded `unknown` got its real outcome from the board later (the event
            # itself goes out through the outbox, written with the settlement).
            summary = self._vend_summary(data["transaction"])
            if self._last_vend is not None and (
                    self._last_vend.get("transaction_id") == summary["transaction_id"]):
                self._last_vend = summary
                self._publish(f"{self.base}/last_vend", summary, retain=True)
            self._publish_slot(summary["slot"])
        elif event.kind == SLOT_CHANGED:
            number = (data.get("slot") or {}).get("number")
            if isinstance(number, int):
                self._publish_slot(number)
                previous = data.get("previous") or {}
                if previous.get("name") != data["slot"].get("name"):
                    for topic, config in self._slot_discovery(number, data["slot"]["name"]).items():
                        self._publish(topic, config, retain=True)
        elif event.kind == DEVICE_STATE:
            self._record_device(data["device_id"], data.get("transport", ""), data["state"],
                                data.get("detail", ""))
            self._publish_device(data["device_id"], data.get("transport", ""), data["state"],
                                 data.get("detail", ""))
            self._publish_status()
        elif event.kind == DEVICE_ADDED:
            self._publish_status()
        elif event.kind == DEVICE_REMOVED:
            self._record_device(data["device_id"], "", "removed", "")
            # An empty retained message deletes the board's retained state.
            self._publish(self.device_topic(data["device_id"]), "", retain=True)
            self._publish_status()
        elif event.kind in (ALERT_RAISED, ALERT_ACKNOWLEDGED):
            self._publish_status()

    def _publish_slot(self, number: Any) -> None:
        if not isinstance(number, int) or not 1 <= number <= self.slots:
            return
        try:
            slot = self.view.slot(number)
        except VendingError:
            return
        self._publish(self.slot_topic(number),
                      self._slot_payload(slot, self.view.sales_today()), retain=True)

    def _slot_payload(self, slot: Any, today: dict[int, tuple[int, int]]) -> dict[str, Any]:
        """A slot's retained state: stock, product, price and what it sold today."""
        count, value = today.get(slot.number, (0, 0))
        money = self.view.currency
        return {**slot.to_dict(), "currency": money.code,
                "price_amount": None if slot.price is None else money.amount(slot.price),
                "sales_today": {"count": count, "value": value, "amount": money.amount(value)}}

    # Home Assistant discovery

    def _discovery_topic(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/vending_{self.machine_id}/{object_id}/config"

    def _common(self, object_id: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"vending_{self.machine_id}_{object_id}",
            "availability_topic": self.availability_topic,
            "payload_available": ONLINE_PAYLOAD,
            "payload_not_available": OFFLINE_PAYLOAD,
            "device": {
                "identifiers": [f"vending_{self.machine_id}"],
                "name": f"Vending machine {self.machine_id}",
                "manufacturer": "flask-vending-machine",
                "model": "ESP32 vending controller",
                "sw_version": __version__,
            },
            "origin": {"name": "flask-vending-machine", "sw_version": __version__},
        }

    def _slot_discovery(self, number: int, slot_name: str) -> dict[str, dict[str, Any]]:
        messages = {
            self._discovery_topic("sensor", f"slot_{number}_stock"): {
                **self._common(f"slot_{number}_stock", f"Slot {number} stock ({slot_name})"),
                "state_topic": self.slot_topic(number),
                "value_template": "{{ value_json.stock }}",
                "json_attributes_topic": self.slot_topic(number),
                "unit_of_measurement": "items",
                "state_class": "measurement",
                "icon": "mdi:package-variant",
            },
            # Amounts are sent as exact decimal text ("1.50"), so no template divides floats.
            self._discovery_topic("sensor", f"slot_{number}_price"): {
                **self._common(f"slot_{number}_price", f"Slot {number} price ({slot_name})"),
                "state_topic": self.slot_topic(number),
                "value_template": "{{ value_json.price_amount }}",
                "device_class": "monetary",
                "unit_of_measurement": self.view.currency.code,
                "icon": "mdi:tag",
            },
            self._discovery_topic("sensor", f"slot_{number}_sales_today"): {
                **self._common(f"slot_{number}_sales_today",
                               f"Slot {number} sales today ({slot_name})"),
                "state_topic": self.slot_topic(number),
                "value_template": "{{ value_json.sales_today.amount }}",
                "json_attributes_topic": self.slot_topic(number),
                "device_class": "monetary",
                "unit_of_measurement": self.view.currency.code,
                "icon": "mdi:cash-register",
            },
        }
        if self.buttons:
            messages[self._discovery_topic("button", f"slot_{number}_vend")] = {
                **self._common(f"slot_{number}_vend", f"Vend slot {number} ({slot_name})"),
                "command_topic": self.button_topic(number),
                "payload_press": PRESS_PAYLOAD,
                "qos": 0,
                "retain": False,
                "icon": "mdi:cart-arrow-down",
            }
        return messages

    def discovery_messages(self) -> dict[str, dict[str, Any]]:
        """Topic -> config for every Home Assistant entity of this machine."""
        status = f"{self.base}/status"
        messages = {
            self._discovery_topic("sensor", "devices_online"): {
                **self._common("devices_online", "Devices online"),
                "state_topic": status,
                "value_template": "{{ value_json.devices_online }}",
                "state_class": "measurement",
                "icon": "mdi:chip",
            },
            self._discovery_topic("sensor", "active_alerts"): {
                **self._common("active_alerts", "Active alerts"),
                "state_topic": status,
                "value_template": "{{ value_json.active_alerts }}",
                "state_class": "measurement",
                "icon": "mdi:alert",
            },
            self._discovery_topic("sensor", "last_vend"): {
                **self._common("last_vend", "Last vend outcome"),
                "state_topic": f"{self.base}/last_vend",
                "value_template": "{{ value_json.status }}",
                "json_attributes_topic": f"{self.base}/last_vend",
                "icon": "mdi:history",
            },
        }
        for slot in self.view.slots():
            messages.update(self._slot_discovery(slot.number, slot.name))
        return messages

    # Commands (network thread)

    def _command(self, topic: str, raw: bytes, retained: bool) -> None:
        if not self.commands_allowed:
            return
        if retained:
            # A retained command would vend again on every reconnection.
            logger.warning("MQTT: ignored a retained message on %s; commands must be sent"
                           " without the retain flag", topic)
            return
        if topic == self.command_topic:
            self._json_command(raw)
            return
        parts = topic[len(self.base) + 1:].split("/")
        if (self.buttons and len(parts) == 3 and parts[0] == "slots" and parts[2] == "vend"
                and parts[1].isdigit()):
            payload = raw.decode("utf-8", "replace").strip()
            if payload != PRESS_PAYLOAD:
                logger.warning("MQTT: ignored %r on %s; a button press is %r", payload[:40],
                               topic, PRESS_PAYLOAD)
                return
            self._vend(int(parts[1]), None, None, "button")

    def _json_command(self, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            self._refuse(None, None, "bad_request",
                         'the command must be JSON: {"slot": 1, "id": "a-unique-id"}')
            return
        if not isinstance(body, dict):
            self._refuse(None, None, "bad_request", "the command must be a JSON object")
            return
        command_id, slot = body.get("id"), body.get("slot")
        if (not isinstance(command_id, str) or not command_id or len(command_id) > MAX_COMMAND_ID
                or not command_id.isprintable()):
            self._refuse(None, slot, "bad_request",
                         f"id is required: 1 to {MAX_COMMAND_ID} printable characters, unique per"
                         " vend, so a command delivered twice vends once")
            return
        if isinstance(slot, bool) or not isinstance(slot, int):
            self._refuse(command_id, None, "invalid_slot", "slot must be a whole number")
            return
        if self.command_key and not self._signed(body, command_id, slot):
            return
        self._vend(slot, KEY_PREFIX + command_id, command_id, "command")

    def _signed(self, body: dict[str, Any], command_id: str, slot: int) -> bool:
        """True for a command signed with this machine's key, recently; else refused."""
        ts, sig = body.get("ts"), body.get("sig")
        problem = ""
        if isinstance(ts, bool) or not isinstance(ts, int) or not isinstance(sig, str):
            problem = ("a signed command needs ts (whole epoch seconds) and sig (see"
                       " docs/integrations.md)")
        elif abs(time.time() - ts) > COMMAND_MAX_SKEW:
            problem = (f"ts is more than {COMMAND_MAX_SKEW:g}s from this machine's clock; sign"
                       " it again now (and check both clocks)")
        elif not hmac.compare_digest(
                sig, command_signature(self.command_key, self.machine_id, command_id, slot, ts)):
            problem = "the signature does not match this machine's command key"
        if problem:
            self.audit_log.record(audit.MQTT_VEND, "mqtt", "command", audit.REFUSED,
                                 f"slot={slot} id={command_id} -> bad_signature: {problem}")
            self._refuse(command_id, slot, "bad_signature", problem)
            return False
        return True

    def _vend(self, slot: int, key: str | None, command_id: str | None, origin: str) -> None:
        reply = {"id": command_id, "slot": slot, "origin": origin}
        detail = f"slot={slot} origin={origin}" + (f" id={command_id}" if command_id else "")
        try:
            txn, created = self.request_vend(slot, key)
        except IdempotencyKeyInFlight as exc:
            # The same command again while its vend runs: answer both when it finishes.
            self._wait_for(str(exc.extra.get("transaction_id")), {**reply, "replayed": True})
            return
        except VendingError as exc:
            self.audit_log.record(audit.MQTT_VEND, "mqtt", origin, audit.REFUSED,
                                 f"{detail} -> {exc.code}: {exc.detail}")
            self._refuse(command_id, slot, exc.code, exc.detail, origin)
            return
        if not created:
            self._publish_result({**reply, "replayed": True}, txn.to_dict())
            return
        self.audit_log.record(audit.MQTT_VEND, "mqtt", origin, audit.OK,
                             f"{detail} transaction={txn.id}")
        self._wait_for(txn.id, {**reply, "replayed": False})

    def _wait_for(self, txn_id: str, reply: dict[str, Any]) -> None:
        with self._lock:
            self._waiting.setdefault(txn_id, []).append(reply)
        # The vend may have finished before we registered; then nobody else will answer.
        txn = self.view.transaction(txn_id)
        if txn.is_final:
            self._answer_waiting(txn.to_dict())

    def _answer_waiting(self, txn: dict[str, Any]) -> None:
        with self._lock:
            replies = self._waiting.pop(txn["transaction_id"], [])
        for reply in replies:
            self._publish_result(reply, txn)

    def _publish_result(self, reply: dict[str, Any], txn: dict[str, Any]) -> None:
        self._publish(self.result_topic, {
            **reply, "transaction_id": txn["transaction_id"], "status": txn["status"],
            "success": txn["status"] == VendState.SUCCESS, "simulated": bool(txn.get("simulated")),
            "reason": txn.get("reason"),
            "message": txn.get("message"),
        }, retain=False)

    def _refuse(self, command_id: str | None, slot: Any, code: str, detail: str,
                origin: str = "command") -> None:
        logger.info("MQTT: refused vend command %s: %s: %s", command_id, code, detail)
        self._publish(self.result_topic, {
            "id": command_id, "slot": slot, "origin": origin, "status": "refused",
            "success": False, "error": code, "detail": detail,
        }, retain=False)
