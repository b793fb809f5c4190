"""The MQTT bridge: state, vend events and alerts to a broker, Home Assistant discovery,
and (only when allowed) vend commands through the same transaction path as the web page.

Topics live under `<prefix>/<machine-id>/`; docs/integrations.md lists them. State is
retained and republished in full on every (re)connection; events are not retained. The
bridge never blocks a vend: event listeners only hand messages to paho's queue, and
paho's network thread (`paho-mqtt-client-vending-<machine-id>`) does the I/O and the
reconnecting, with back-off, while the controller carries on.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import __version__, audit
from .config import Config, parse_mqtt_url
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
    Event,
)

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


def topic_part(value: str) -> str:
    """A safe single topic level / Home Assistant object id from an arbitrary name."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in value) or "_"


class MqttBridge:
    """Publishes the controller to an MQTT broker and takes vend commands from it."""

    name = "mqtt"

    def __init__(self, config: Config, *, events: EventBus, view: MachineView, vend: VendFunction,
                 audit_log: AuditLog, machine_id: str) -> None:
        """Given only what it uses: events to follow, a read-only view to publish, a vend
        function for commands (the web page's transaction path) and the audit log."""
        self.view = view
        self.request_vend = vend
        self.audit_log = audit_log
        self.url = parse_mqtt_url(config.mqtt_url)
        self.machine_id = machine_id
        self.base = f"{self.url.prefix}/{self.machine_id}"
        self.discovery_prefix = config.mqtt_discovery_prefix.strip("/") or "homeassistant"
        self.commands_allowed = config.mqtt_commands
        self.keepalive = config.mqtt_keepalive
        self.reconnect_min = config.mqtt_reconnect_min
        self.reconnect_max = config.mqtt_reconnect_max
        self.slots = config.slots
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
        events.subscribe(self._on_event, {
            VEND_FINISHED, DEVICE_STATE, DEVICE_ADDED, DEVICE_REMOVED, SLOT_CHANGED,
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
        self._client = client
        logger.info("MQTT: connecting to %s as machine %s", self.url.redacted(), self.machine_id)
        client.connect_async(self.url.host, self.url.port, self.keepalive)
        client.loop_start()

    def stop(self) -> None:
        """Say offline (retained), disconnect and join the network thread; safe twice."""
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
            _, self._subscribe_mid = client.subscribe(
                [(self.command_topic, 1), (f"{self.base}/slots/+/vend", 0)])
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

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            self._command(message.topic, message.payload, bool(message.retain))
        except Exception:
            logger.exception("MQTT: handling a message on %s failed", message.topic)

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
        if not self.commands_allowed:
            # Take away buttons announced while commands were allowed.
            for number in range(1, self.slots + 1):
                self._publish(self._discovery_topic("button", f"slot_{number}_vend"), "",
                              retain=True)
        for device in self.view.devices():
            info = device.info()
            self._publish_device(device.device_id, info.get("type", device.transport),
                                 info.get("status", device.state), info.get("status_detail", ""))
        for slot in self.view.slots():
            self._publish(self.slot_topic(slot.number), slot.to_dict(), retain=True)
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
            "active_alerts": self.view.active_alert_count(),
        }, retain=True)

    def _publish_device(self, device_id: str, transport: str, state: str, detail: str) -> None:
        self._publish(self.device_topic(device_id), {
            "device_id": device_id, "transport": transport, "state": state, "detail": detail,
        }, retain=True)

    @staticmethod
    def _vend_summary(txn: dict[str, Any]) -> dict[str, Any]:
        keys = ("transaction_id", "slot", "status", "simulated", "reason", "message", "device_id",
                "communication", "created_at", "finished_at")
        return {k: txn.get(k) for k in keys}

    def _on_event(self, event: Event) -> None:
        if self._client is None:
            return
        data = event.data
        if event.kind == VEND_FINISHED:
            summary = self._vend_summary(data["transaction"])
            self._last_vend = summary
            self._publish(f"{self.base}/events/vend", summary, retain=False)
            self._publish(f"{self.base}/last_vend", summary, retain=True)
            self._publish_slot(summary["slot"])
            self._answer_waiting(data["transaction"])
        elif event.kind == SLOT_CHANGED:
            number = (data.get("slot") or {}).get("number")
            if isinstance(number, int):
                self._publish_slot(number)
                previous = data.get("previous") or {}
                if previous.get("name") != data["slot"].get("name"):
                    for topic, config in self._slot_discovery(number, data["slot"]["name"]).items():
                        self._publish(topic, config, retain=True)
        elif event.kind == DEVICE_STATE:
            self._publish_device(data["device_id"], data.get("transport", ""), data["state"],
                                 data.get("detail", ""))
            self._publish_status()
        elif event.kind == DEVICE_ADDED:
            self._publish_status()
        elif event.kind == DEVICE_REMOVED:
            # An empty retained message deletes the board's retained state.
            self._publish(self.device_topic(data["device_id"]), "", retain=True)
            self._publish_status()
        elif event.kind == ALERT_RAISED:
            self._publish(f"{self.base}/alerts", data["alert"], retain=False)
            self._publish_status()
        elif event.kind == ALERT_ACKNOWLEDGED:
            self._publish_status()

    def _publish_slot(self, number: Any) -> None:
        if not isinstance(number, int) or not 1 <= number <= self.slots:
            return
        try:
            slot = self.view.slot(number)
        except VendingError:
            return
        self._publish(self.slot_topic(number), slot.to_dict(), retain=True)

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
        }
        if self.commands_allowed:
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
        if len(parts) == 3 and parts[0] == "slots" and parts[2] == "vend" and parts[1].isdigit():
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
        self._vend(slot, KEY_PREFIX + command_id, command_id, "command")

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
            "success": txn["status"] == "success", "simulated": bool(txn.get("simulated")),
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
