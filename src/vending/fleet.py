"""The fleet view: subscribes to every machine under a broker prefix and keeps its own copy.

paho's network thread only hands messages to a queue; the writer thread `fleet-writer`
stores them in batches (one SQLite transaction each) and only then acknowledges them to
the broker (manual PUBACK), so an event the broker handed over survives a crash of the
fleet server. The session is persistent (a fixed client id, clean_session off), so the
broker keeps events for the fleet view while it is down, as long as the broker runs.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from .config import parse_mqtt_url
from .store.fleet import FleetStore, Received
from .threads import Worker

logger = logging.getLogger("vending.fleet")

BATCH = 500


class FleetView:
    """Owns the fleet's subscriber, its writer thread and its store."""

    name = "fleet"

    def __init__(self, url: str, database: Path, client_id: str, keepalive: int = 30,
                 reconnect_min: float = 1.0, reconnect_max: float = 60.0) -> None:
        self.url = parse_mqtt_url(url)
        self.prefix = self.url.prefix
        self.store = FleetStore(database)
        self.client_id = client_id
        self.keepalive = keepalive
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.received = 0
        self.duplicates = 0
        self._queue: queue.Queue[tuple[Received, Any] | None] = queue.Queue()
        self._client: Any = None
        self._writer = Worker("fleet-writer", self._run_writer, wake=lambda: self._queue.put(None))
        self._connected = threading.Event()
        self._highest = self.store.highest_seqs()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background and start the writer."""
        if self._client is not None:
            return
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            logger.error("the fleet view needs paho-mqtt: pip install -r requirements.txt")
            return
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=False, manual_ack=True)
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            client.tls_set()
        client.reconnect_delay_set(self.reconnect_min, self.reconnect_max)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._writer.start()
        logger.info("fleet: subscribing to %s", self.url.redacted())
        client.connect_async(self.url.host, self.url.port, self.keepalive)
        client.loop_start()

    def stop(self) -> None:
        """Disconnect, let the writer store what it has, close the store; safe twice."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._writer.stop()
        self.store.close()

    # paho callbacks (network thread)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            logger.warning("fleet: the broker %s refused the connection: %s; check the user"
                           " and password", self.url.redacted(), reason_code)
            return
        self._connected.set()
        logger.info("fleet: connected to %s", self.url.redacted())
        p = self.prefix
        client.subscribe([(f"{p}/+/events/#", 1), (f"{p}/+/alerts", 1),
                          (f"{p}/+/availability", 1), (f"{p}/+/status", 1),
                          (f"{p}/+/slots/+", 1)])

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if self._connected.is_set():
            logger.warning("fleet: lost the broker %s (%s); retrying", self.url.redacted(),
                           reason_code)
        self._connected.clear()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        item = self._parse(message.topic, bytes(message.payload))
        if item is None:
            # Not ours to store, but acknowledged so the broker does not send it again.
            client.ack(message.mid, message.qos)
            return
        self._queue.put((item, (message.mid, message.qos)))

    def _parse(self, topic: str, payload: bytes) -> Received | None:
        if not topic.startswith(self.prefix + "/"):
            return None
        machine_id, _, rest = topic[len(self.prefix) + 1:].partition("/")
        now = time.time()
        if rest == "availability":
            return Received("availability", machine_id, payload.decode("utf-8", "replace"), now)
        try:
            body = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        if rest == "status":
            return Received("status", machine_id, body, now)
        if rest.startswith("slots/") and isinstance(body.get("number"), int):
            return Received("slot", machine_id, body, now)
        if isinstance(body.get("seq"), int) and isinstance(body.get("event"), str):
            return Received("event", machine_id, body, now)
        logger.debug("fleet: ignored a message without seq on %s", topic)
        return None

    # Writer thread

    def _run_writer(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                new = self.store.record([item for item, _ in batch])
            except Exception:
                # Not acknowledged: the broker sends these again after a reconnection.
                logger.exception("fleet: could not store %d messages", len(batch))
                continue
            self._note(batch, new)
            client = self._client
            if client is not None:
                for _, (mid, qos) in batch:
                    if qos:
                        client.ack(mid, qos)
            if stop:
                return

    def _note(self, batch: list[tuple[Received, Any]], new: list[tuple[str, int]]) -> None:
        events = sum(1 for item, _ in batch if item.kind == "event")
        self.received += events
        self.duplicates += events - len(new)
        for machine_id, seq in new:
            highest = self._highest.get(machine_id, 0)
            if seq > highest + 1 and highest:
                logger.warning("fleet: machine %s jumped from event %d to %d; waiting for the"
                               " %d in between (the page lists gaps that stay)", machine_id,
                               highest, seq, seq - highest - 1)
            if seq > highest:
                self._highest[machine_id] = seq

    def status(self) -> dict[str, Any]:
        """Connection and counters, for /status and tests."""
        return {"connected": self.connected, "received": self.received,
                "duplicates": self.duplicates, "machines": len(self._highest)}
