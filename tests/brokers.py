"""A real mosquitto broker on 127.0.0.1 for tests, and a subscriber that records messages."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import poll_until, wait_until


def find_mosquitto() -> str | None:
    """The broker binary, also where /usr/sbin is not on PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """One broker process on a fixed free port; stop() and start() again for a restart."""

    def __init__(self, binary: str, workdir: Path, persistence: bool = False,
                 extra: str = "", anonymous: bool = True) -> None:
        self.binary = binary
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        # With persistence, sessions, subscriptions and queued messages survive a restart,
        # as on a real broker; the queue per client is unbounded for catch-up runs.
        stored = (f"persistence true\npersistence_location {workdir}/\nmax_queued_messages 0\n"
                  if persistence else "persistence false\n")
        # Started as root, mosquitto drops to user "mosquitto", who cannot read a test's files.
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous {str(anonymous).lower()}\n"
            f"user {getpass.getuser()}\n{stored}"
            f"log_dest stderr\nlog_type error\nlog_type warning\n{extra}",
            encoding="ascii",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}/vending"

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: port_open(self.port) or self.process.poll() is not None,
                   message="mosquitto to listen")
        if self.process.poll() is not None:
            error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {error}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client that records every message under a topic filter."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "") -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        # A client id makes the session persistent: the broker keeps QoS 1 messages for it
        # while it is away (and, with persistence, across a broker restart).
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=not client_id)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, message="the test subscriber to subscribe")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, bytes(message.payload),
                                         bool(message.retain)))

    def on(self, topic: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def last(self, topic: str) -> Message | None:
        found = self.on(topic)
        return found[-1] if found else None

    def wait_for(self, topic: str, condition: Any = None, timeout: float = 10.0) -> Message:
        """The latest message on `topic` (that satisfies `condition`), waiting for it."""

        def match() -> Message | None:
            for message in reversed(self.on(topic)):
                if condition is None or condition(message):
                    return message
            return None

        return wait_until(match, timeout, message=f"a message on {topic}")

    def wait_for_prefix(self, start: str, end: str, text: str, timeout: float = 15.0) -> Message:
        """The first message whose topic starts and ends so, with this text."""

        def match() -> Message | None:
            with self._lock:
                for message in self.messages:
                    if (message.topic.startswith(start) and message.topic.endswith(end)
                            and message.payload == text.encode()):
                        return message
            return None

        return wait_until(match, timeout, message=f"{text} on {start}...{end}")

    def publish(self, topic: str, payload: Any, retain: bool = False, qos: int = 1) -> None:
        if not isinstance(payload, (str, bytes)):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5.0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(port: int, topic: str, condition: Any = None, timeout: float = 10.0) -> Message:
    """The message the broker keeps for `topic`, as a client connecting now receives it."""

    def fetch() -> Message | None:
        sub = Subscriber(port, topic)
        try:
            found = wait_until_or_none(lambda: sub.last(topic), 0.5)
        finally:
            sub.close()
        if found is not None and found.retain and (condition is None or condition(found)):
            return found
        return None

    return wait_until(fetch, timeout, message=f"a retained message on {topic}")


def wait_until_or_none(condition: Any, timeout: float) -> Any:
    return poll_until(condition, timeout) or None
