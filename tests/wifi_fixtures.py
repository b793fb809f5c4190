"""Shared set-up for the WiFi tests: a served app with discovery, and simulated boards."""

from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Flask
from helpers import wait_until

from vending.protocol import wifi as proto
from vending.runtime import Runtime
from vending.serving import BackgroundServer
from vending.sim.wifi import WifiBoard


@dataclass
class WifiEnv:
    """One served controller and the boards a test started against it."""

    app: Flask
    server: BackgroundServer
    boards: list[WifiBoard] = field(default_factory=list)

    @property
    def rt(self) -> Runtime:
        return self.app.extensions["vending"]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def discovery_port(self) -> int:
        assert self.rt.discovery is not None
        return self.rt.discovery.port

    def board(self, device_id: str | None = None, **options: Any) -> WifiBoard:
        """A simulated board that discovers this server on 127.0.0.1, started."""
        options.setdefault("discovery_target", ("127.0.0.1", self.discovery_port))
        options.setdefault("motor_time", 0.02)
        options.setdefault("poll_wait", 5.0)
        if options.get("legacy"):
            options.setdefault("http_port", int(self.server.port))
            options.setdefault("source_port", 0)
            options.setdefault("legacy_interval", 0.1)
        board = WifiBoard(device_id, **options)
        self.boards.append(board)
        return board.start()

    def device(self, device_id: str) -> Any:
        return self.rt.registry.get(device_id)

    def status(self, device_id: str) -> str | None:
        device = self.device(device_id)
        return device.status if device is not None else None

    def approve(self, device_id: str) -> dict[str, Any]:
        """Approve as an operator would: naming the key fingerprint the page shows."""
        wait_until(lambda: self.device(device_id) is not None, message=f"{device_id} to appear")
        device = self.device(device_id)
        if device.protocol >= 2:
            wait_until(lambda: self.device(device_id).fingerprint is not None,
                       message=f"{device_id} to ask to pair")
        fingerprint = self.device(device_id).fingerprint
        body = {"fingerprint": fingerprint} if fingerprint else {}
        response = requests.post(f"{self.url}/esp32/devices/{device_id}/approve", json=body,
                                 timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def online(self, board: WifiBoard) -> WifiBoard:
        """Approve the board and wait until it polls."""
        self.approve(board.device_id)
        # Our firmware is online once a poll is held; the earlier one may poll without a hold.
        wait_until(lambda: self.status(board.device_id) == "online" and (
            board.legacy or self.device(board.device_id).polls_held > 0),
            message=f"{board.device_id} online and polling")
        return board

    def vend(self, slot: int, wait: float = 5.0) -> requests.Response:
        return requests.post(f"{self.url}/vend/{slot}?wait={wait:g}", timeout=wait + 5)

    def close(self) -> None:
        for board in self.boards:
            board.request_stop()
        self.rt.stop()  # ends held polls at once
        for board in self.boards:
            board.stop()
        self.server.stop()


def start_env(make_app: Any, **overrides: Any) -> WifiEnv:
    """Build and serve an app with UDP discovery on an ephemeral port and no simulated board."""
    values: dict[str, Any] = dict(simulator=False, discovery=True, discovery_port=0,
                                  wifi_offline_after=1.0)
    values.update(overrides)
    app = make_app(**values)
    server = BackgroundServer(app).start()
    rt = app.extensions["vending"]
    if rt.discovery is not None:
        rt.discovery.http_port = int(server.port)
    return WifiEnv(app, server)


class Interceptor:
    """A TCP proxy on 127.0.0.1 between boards and the server: someone on the shop WiFi.

    `mode` "forward" passes bytes both ways; "unsigned" and "forged" answer every request
    themselves with `401 {"error": "revoked"}`, without a signature or with one made by a
    wrong key. Changing the mode cuts the connections open so far.
    """

    FORGED_KEY = b"\x01" * 32

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "forward"
        self.answered = 0  # 401s sent on the attacker's behalf
        self._generation = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="interceptor-accept")
        self._acceptor.start()

    def set_mode(self, mode: str) -> None:
        assert mode in ("forward", "unsigned", "forged")
        with self._lock:
            self.mode = mode
            self._generation += 1

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                mode, generation = self.mode, self._generation
                thread = threading.Thread(target=self._serve, args=(client, mode, generation),
                                          name=f"interceptor-{mode}")
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _current(self, generation: int) -> bool:
        return not self._stop.is_set() and generation == self._generation

    def _serve(self, client: socket.socket, mode: str, generation: int) -> None:
        try:
            if mode == "forward":
                self._forward(client, generation)
            else:
                self._refuse(client, mode, generation)
        except OSError:
            pass
        finally:
            client.close()

    def _forward(self, client: socket.socket, generation: int) -> None:
        upstream = socket.create_connection(self.upstream, timeout=5)
        try:
            pairs = {client: upstream, upstream: client}
            while self._current(generation):
                ready, _, _ = select.select(list(pairs), [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pairs[sock].sendall(data)
        finally:
            upstream.close()

    def _refuse(self, client: socket.socket, mode: str, generation: int) -> None:
        client.settimeout(0.1)
        buffer = b""
        while self._current(generation):
            try:
                data = client.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            buffer += data
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                continue
            headers: dict[str, str] = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(rest) < length:
                continue
            self._answer(client, mode, headers)
            return  # and close, as the answer says

    def _answer(self, client: socket.socket, mode: str, request: dict[str, str]) -> None:
        """The attacker's 401: the `revoked` body our server sends, but not signed with the key."""
        body = b'{"detail":"revoked, says someone else","error":"revoked"}\n'
        lines = [b"HTTP/1.1 401 UNAUTHORIZED", b"Content-Type: application/json",
                 b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
        if mode == "forged":
            device = request.get(proto.HEADER_DEVICE.lower(), "")
            counter = int(request.get(proto.HEADER_COUNTER.lower(), "0") or 0)
            signature = proto.sign_response(self.FORGED_KEY, device, counter, 401, body)
            lines.append(f"{proto.HEADER_SIGNATURE}: {signature}".encode())
        client.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        with self._lock:
            self.answered += 1

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
