"""Board long-polls parked without a worker thread, on the hardened waitress (real sockets).

Boards are paired over HTTP (auto-approve), then their signed polls are written by hand on
raw sockets, so a test can hold a hundred at once, drop one, or read one answer byte for byte.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import answers, call, free_port, wait_until

from vending.protocol import wifi as proto
from vending.serving import BackgroundServer
from vending.sim.wifi import WifiBoard


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class SignedClient:
    """One paired board's signed requests over a raw keep-alive socket."""

    def __init__(self, board: WifiBoard, port: int) -> None:
        self.board = board
        self.port = port
        self.sock: socket.socket | None = None
        self.counter = 0

    def _connection(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return self.sock

    def send(self, method: str, target: str, body: Any = None, secret: bytes | None = None,
             counter: int | None = None) -> None:
        """Write one signed request (not waiting for the answer)."""
        board = self.board
        raw = json.dumps(body).encode() if body is not None else b""
        if counter is None:
            board.seq += 1
            counter = (board.boot << 32) | board.seq
        self.counter = counter
        key = secret if secret is not None else board.secret
        assert key is not None
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1",
                 f"{proto.HEADER_DEVICE}: {board.device_id}", f"{proto.HEADER_COUNTER}: {counter}",
                 f"{proto.HEADER_SIGNATURE}: "
                 + proto.sign_request(key, method, target, board.device_id, counter, raw),
                 f"Content-Length: {len(raw)}"]
        if raw:
            lines.append("Content-Type: application/json")
        self._connection().sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + raw)

    def receive(self, timeout: float = 10.0) -> Answer:
        """Read one whole answer; raises socket.timeout if none comes."""
        sock = self._connection()
        sock.settimeout(timeout)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection mid-answer")
            body += chunk
        return Answer(int(lines[0].split()[1]), headers, body)

    def call(self, method: str, target: str, body: Any = None) -> Answer:
        self.send(method, target, body)
        return self.receive()

    def signed_by_server(self, answer: Answer) -> bool:
        assert self.board.secret is not None
        expected = proto.sign_response(self.board.secret, self.board.device_id, self.counter,
                                       answer.status, answer.body)
        return proto.check_signature(expected, answer.headers.get(proto.HEADER_SIGNATURE.lower(), ""))

    def poll(self, wait: float = 25) -> None:
        self.send("GET", f"/esp32/v2/commands?wait={wait:g}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class Shop:
    app: Any
    server: BackgroundServer
    clients: list[SignedClient]

    @property
    def rt(self) -> Any:
        return self.app.extensions["vending"]

    def device(self, client: SignedClient) -> Any:
        return self.rt.registry.get(client.board.device_id)

    def held(self, client: SignedClient) -> int:
        return self.device(client).polls_held

    def pair(self, count: int, prefix: str = "PK") -> list[SignedClient]:
        made = []
        for index in range(count):
            board = WifiBoard(f"ESP32_{prefix}{index:010X}", server=("127.0.0.1", self.server.port))
            assert board.pair(timeout=10), board.device_id
            client = SignedClient(board, self.server.port)
            made.append(client)
            self.clients.append(client)
        return made

    def queue_vend(self, client: SignedClient, slot: int = 1) -> str:
        url = self.server.url
        requests.post(f"{url}/esp32/devices/select", json={"device_id": client.board.device_id},
                      timeout=5).raise_for_status()
        response = requests.post(f"{url}/vend/{slot}?wait=0", timeout=5)
        assert response.status_code == 202, response.text
        return response.json()["transaction_id"]

    def vend_state(self, txn: str) -> str:
        return requests.get(f"{self.server.url}/vend/{txn}", timeout=5).json()["status"]

    def sent_lines(self, txn: str) -> list[str]:
        entries, _ = self.rt.log.since(0, direction="tx", limit=100_000)
        return [e.message for e in entries if f"id={txn}" in e.message]


@pytest.fixture
def shop(make_app: Callable[..., Any]) -> Iterator[Callable[..., Shop]]:
    made: list[Shop] = []

    def build(limits: dict[str, Any] | None = None, **overrides: Any) -> Shop:
        values: dict[str, Any] = dict(simulator=False, discovery=False, auto_approve_devices=True,
                                      wifi_offline_after=30.0)
        values.update(overrides)
        app = make_app(**values)
        # As many worker threads as the real server may start, so a thread per held poll
        # (the old way) would show.
        server = BackgroundServer(app, threads=128, **(limits or {})).start()
        made.append(Shop(app, server, []))
        return made[-1]

    yield build
    for built in made:
        for client in built.clients:
            client.close()
        built.rt.stop()
        built.server.stop()


def _waitress_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("waitress-"))


def test_a_hundred_held_board_polls_pin_no_worker_thread_and_a_vend_reaches_its_board_at_once(shop):
    env = shop()
    clients = env.pair(100)
    assert requests.get(f"{env.server.url}/health", timeout=5).ok
    before = _waitress_threads()
    for client in clients:
        client.poll(25)
        # One after another, as boards poll at their own times (a burst would grow the pool).
        wait_until(lambda client=client: env.held(client) == 1, timeout=10,
                   message=f"{client.board.device_id}'s poll to be held")
    during = _waitress_threads()
    assert during <= before + 2, f"{during} worker threads for 100 held polls (were {before})"
    # The page still answers while every board's poll is held.
    assert requests.get(f"{env.server.url}/status", timeout=5).ok

    target = clients[37]
    txn = env.queue_vend(target, slot=2)
    answer = target.receive(timeout=10)  # long before the 25 s hold ends: woken, not timed out
    assert answer.status == 200 and env.server is not None
    assert answer.json() == {"command": "VEND", "id": txn, "slot": 2}
    assert target.signed_by_server(answer)
    confirmed = target.call("POST", "/esp32/v2/confirm", {"id": txn, "result": "success"})
    assert confirmed.status == 200 and target.signed_by_server(confirmed), confirmed.body
    wait_until(lambda: env.vend_state(txn) == "success", message="the vend to be recorded success")
    assert env.sent_lines(txn) == [f"VEND id={txn} slot=2"]
    transactions = requests.get(f"{env.server.url}/transactions?limit=50", timeout=5).json()
    assert [t["transaction_id"] for t in transactions["transactions"]] == [txn]
    # Every other board's poll is still held, and still without a thread each.
    assert all(env.held(c) == 1 for c in clients if c is not target)
    assert _waitress_threads() <= before + 2


def test_a_parked_poll_whose_wait_ends_answers_null_signed_and_the_board_is_online_meanwhile(shop):
    env = shop(wifi_offline_after=0.2)
    [client] = env.pair(1)
    client.poll(1)
    wait_until(lambda: env.held(client) == 1, message="the poll to be held")
    device = env.device(client)
    device.check_alive(0.0)  # the watchdog's check: a held poll is a board that is there
    assert device.status == "online"
    answer = client.receive(timeout=10)
    assert answer.status == 200 and client.signed_by_server(answer)
    assert answer.json() == {"command": None, "poll_again_ms": 0}
    assert env.held(client) == 0 and env.server.parked == 0
    # The same keep-alive connection carries the next poll.
    client.poll(0)
    assert client.receive().json() == {"command": None, "poll_again_ms": 0}


def test_a_parked_poll_outlives_the_request_deadline_and_the_idle_timeout(shop):
    # Both are for requests still arriving and for connections with no request: a parked
    # request has arrived and is waiting for its answer.
    env = shop(limits={"request_deadline": 1.0, "idle_timeout": 1.0})
    [client] = env.pair(1)
    client.poll(3)
    wait_until(lambda: env.held(client) == 1, message="the poll to be held")
    answer = client.receive(timeout=15)
    assert answer.status == 200 and answer.json() == {"command": None, "poll_again_ms": 0}


def test_revoking_a_board_answers_its_parked_poll_at_once_and_then_it_must_pair_again(shop):
    env = shop()
    [client] = env.pair(1)
    client.poll(25)
    wait_until(lambda: env.held(client) == 1, message="the poll to be held")
    response = requests.post(f"{env.server.url}/esp32/devices/{client.board.device_id}/revoke",
                             timeout=5)
    assert response.status_code == 200, response.text
    answer = client.receive(timeout=10)
    assert answer.status == 200 and client.signed_by_server(answer)
    assert answer.json()["command"] is None
    assert env.held(client) == 0 and env.server.parked == 0
    again = client.call("GET", "/esp32/v2/commands?wait=25")
    assert again.status == 401 and again.json()["error"] == "revoked"


def test_stopping_the_runtime_answers_parked_polls_and_stopping_the_server_releases_them(shop):
    env = shop()
    first, second = env.pair(2)
    for client in (first, second):
        client.poll(25)
    wait_until(lambda: env.held(first) == 1 and env.held(second) == 1,
               message="both polls to be held")
    env.device(first).stop()  # as runtime.stop() does to every board
    assert first.receive(timeout=10).json()["command"] is None
    env.server.stop()  # the other is still parked: its connection closes, its wait is released
    with pytest.raises((ConnectionError, OSError)):
        second.receive(timeout=10)
    assert env.held(second) == 0


def test_a_board_that_drops_its_parked_poll_leaves_the_vend_queued_for_its_next_poll(shop):
    env = shop()
    [client] = env.pair(1)
    client.poll(25)
    wait_until(lambda: env.held(client) == 1, message="the poll to be held")
    client.close()  # the board's WiFi dropped mid-poll
    wait_until(lambda: env.held(client) == 0 and env.server.parked == 0, timeout=10,
               message="the dropped poll to be released")
    txn = env.queue_vend(client, slot=3)
    # Nobody took it: it waits for the board, not written to a socket that is gone.
    assert env.sent_lines(txn) == []
    assert env.vend_state(txn) not in ("sent", "success", "failed", "unknown")
    client.poll(25)
    answer = client.receive(timeout=10)
    assert answer.json() == {"command": "VEND", "id": txn, "slot": 3}
    assert client.call("POST", "/esp32/v2/confirm", {"id": txn, "result": "success"}).status == 200
    wait_until(lambda: env.vend_state(txn) == "success", message="the vend to succeed")
    assert env.sent_lines(txn) == [f"VEND id={txn} slot=3"]


def test_a_vend_queued_before_during_or_after_the_poll_parks_is_never_missed(shop):
    """Thirty rounds: the vend queued first, the poll parked first, or both let go together.
    Every time the poll answers with the vend, not at the end of its 25 s wait."""
    env = shop()
    [client] = env.pair(1)
    client.poll(0)  # online: it has polled
    assert client.receive().status == 200
    requests.post(f"{env.server.url}/esp32/devices/select",
                  json={"device_id": client.board.device_id}, timeout=5).raise_for_status()
    device = env.device(client)
    for round_ in range(30):
        order = ("vend first", "poll first", "together")[round_ % 3]
        start = threading.Barrier(2)
        queued: list[str] = []

        def vend(start: threading.Barrier = start, queued: list[str] = queued) -> None:
            start.wait()
            queued.append(requests.post(f"{env.server.url}/vend/1?wait=0",
                                        timeout=5).json()["transaction_id"])

        racer = threading.Thread(target=vend)
        racer.start()
        if order == "vend first":
            start.wait()
            # In the board's FIFO (not only accepted by POST /vend) before the poll arrives.
            wait_until(lambda: len(device._queue) == 1, message="the vend to reach the board's queue")
            client.poll(25)
        elif order == "poll first":
            client.poll(25)
            wait_until(lambda: device.polls_held == 1, message="the poll to be held")
            start.wait()
        else:
            start.wait()
            client.poll(25)
        answer = client.receive(timeout=10)
        racer.join(5)
        txn = queued[0]
        assert answer.json() == {"command": "VEND", "id": txn, "slot": 1}, order
        assert client.call("POST", "/esp32/v2/confirm", {"id": txn, "result": "success"}).status == 200
        wait_until(lambda txn=txn: env.vend_state(txn) == "success", message="the vend to succeed")


def test_unsigned_forged_and_replayed_polls_never_park_they_get_401_at_once(shop):
    env = shop()
    [client] = env.pair(1)
    client.poll(0)
    assert client.receive().status == 200
    spent = client.counter
    stranger = SignedClient(client.board, env.server.port)
    env.clients.append(stranger)
    attempts: list[Callable[[], None]] = [
        lambda: stranger.send("GET", "/esp32/v2/commands?wait=25", secret=b"\x02" * 32),
        lambda: stranger.send("GET", "/esp32/v2/commands?wait=25", counter=spent),
    ]
    for attempt in attempts:
        attempt()
        # Far shorter than the hold: a parked request would not answer within it.
        answer = stranger.receive(timeout=5)
        assert answer.status == 401, answer.body
        assert env.server.parked == 0 and env.held(client) == 0
        stranger.close()
    raw = socket.create_connection(("127.0.0.1", env.server.port), timeout=5)
    with raw:
        raw.sendall(b"GET /esp32/v2/commands?wait=25 HTTP/1.1\r\nHost: x\r\n"
                    + f"{proto.HEADER_DEVICE}: {client.board.device_id}\r\n\r\n".encode())
        assert raw.recv(65536).split(b" ")[1] == b"401"
    assert env.server.parked == 0


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals only")
def test_sigterm_with_parked_board_polls_finishes_the_vend_in_flight_and_exits(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root / "src"), VENDING_SIM_MOTOR_TIME="1.0",
               VENDING_AUTO_APPROVE_DEVICES="1", PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [sys.executable, "src/app.py", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
         str(data), "--no-mdns", "--no-discovery", "--no-serial-scan"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    boards = [WifiBoard(f"ESP32_PT{index:010X}", server=("127.0.0.1", port), poll_wait=25.0)
              for index in range(3)]
    try:
        wait_until(lambda: answers(f"{base}/health") or server.poll() is not None, timeout=20,
                   message="the server to answer /health")
        assert server.poll() is None, server.communicate()
        selected = call(f"{base}/esp32/devices/list")[1]["active_device"]
        for board in boards:
            board.start()

        def polling() -> bool:
            listed = {d["device_id"]: d for d in call(f"{base}/esp32/devices/list")[1]["devices"]}
            return all(listed.get(b.device_id, {}).get("polling") for b in boards)

        wait_until(polling, timeout=20, message="every board's poll to be held")
        # The vend in flight goes to the embedded simulator, whose motor runs on at SIGTERM.
        requests.post(f"{base}/esp32/devices/select", json={"device_id": selected},
                      timeout=5).raise_for_status()
        status, running = call(f"{base}/vend/2?wait=0", "POST")
        assert status == 202
        wait_until(lambda: call(f"{base}/vend/{running['transaction_id']}")[1]["status"] == "sent",
                   message="the vend to reach the simulated board")
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=15)
    finally:
        for board in boards:
            board.request_stop()
        if server.poll() is None:
            server.kill()
            server.communicate()
        for board in boards:
            board.stop()
    assert server.returncode == 0, err
    with sqlite3.connect(data / "vending.sqlite3") as db:
        states = dict(db.execute("SELECT id, state FROM transactions").fetchall())
    assert states == {running["transaction_id"]: "success"}
    assert "vending: stopped" in err
    assert "still running" not in err  # no worker thread was left holding a poll


def test_with_parking_off_held_polls_wait_on_worker_threads_as_before_and_still_vend(shop):
    env = shop(park_polls=False, wifi_max_held_polls=6)
    clients = env.pair(7)
    before = _waitress_threads()
    for client in clients[:6]:
        client.poll(25)
        wait_until(lambda client=client: env.held(client) == 1, message="the poll to be held")
    # A thread each (the pool started with fewer), none parked.
    assert _waitress_threads() >= 6 > before and env.server.parked == 0
    # Over max_held_polls: answered at once, told to come back later.
    clients[6].poll(25)
    assert clients[6].receive().json() == {"command": None, "poll_again_ms": 2000}
    txn = env.queue_vend(clients[1])
    assert clients[1].receive().json() == {"command": "VEND", "id": txn, "slot": 1}


def test_parked_polls_cannot_fill_the_connection_limit_and_lock_the_operator_out(shop):
    """Parked polls hold no thread: without eviction, one board's key (or firmware leaking
    sockets) could park a poll on every connection the server allows."""
    env = shop(limits={"connection_limit": 10})
    [first] = env.pair(1)
    clients = [first] + [SignedClient(first.board, env.server.port) for _ in range(9)]
    env.clients.extend(clients[1:])
    for count, client in enumerate(clients, start=1):
        client.poll(25)
        wait_until(lambda count=count: env.server.parked == count, message=f"{count} parked polls")
    answer = requests.get(f"{env.server.url}/health", timeout=5)
    assert answer.status_code == 200  # the oldest parked poll made room
    assert env.server.parked == 9
    with pytest.raises(ConnectionError):  # the evicted poll: closed, nothing sent to it
        first.receive(timeout=5)


def test_a_request_sent_behind_a_parked_poll_closes_the_connection_and_takes_nothing(shop):
    """Reading stops while two requests wait, so a board leaving then went unnoticed and a
    vend was taken for its closed socket; our boards never pipeline, so such a connection
    is closed at once."""
    env = shop()
    [client] = env.pair(1)
    client.poll(25)
    wait_until(lambda: env.held(client) == 1, message="the poll to be parked")
    client.poll(25)  # a second signed poll, sent behind the parked one
    wait_until(lambda: env.held(client) == 0 and env.server.parked == 0, timeout=10,
               message="the connection closed and its wait released")
    client.close()
    txn = env.queue_vend(client, slot=3)
    assert env.sent_lines(txn) == []  # nobody took it for the closed connection
    client.poll(25)
    assert client.receive(timeout=10).json() == {"command": "VEND", "id": txn, "slot": 3}
    assert client.call("POST", "/esp32/v2/confirm", {"id": txn, "result": "success"}).status == 200
    wait_until(lambda: env.vend_state(txn) == "success", message="the vend to succeed")
    assert env.sent_lines(txn) == [f"VEND id={txn} slot=3"]


def test_metrics_count_a_parked_poll_once_with_the_answer_it_got(shop):
    env = shop(metrics=True)
    [client] = env.pair(1)
    client.poll(0.5)
    assert client.receive(timeout=10).status == 200
    text = requests.get(f"{env.server.url}/metrics", timeout=5).text
    counted = [line for line in text.splitlines()
               if line.startswith("vending_http_requests_total") and "v2/commands" in line]
    assert len(counted) == 1 and 'status="200"' in counted[0] and counted[0].endswith(" 1.0"), \
        counted


def test_a_parked_poll_answered_by_a_vend_is_freed_at_once_not_left_to_the_garbage_collector(shop):
    """A parked request woken by a vend kept a reference cycle (its release -> the device's
    wake-up -> back to it), so each one waited for a full garbage collection, minutes away
    on a busy server: the soak's RSS rose for nine minutes (bench/bench_soak.py, tracemalloc)."""
    env = shop()
    [client] = env.pair(1)
    gc.collect()
    gc.disable()
    try:
        client.poll(1)
        wait_until(lambda: env.held(client) == 1, message="the poll to be parked")
        parked = [weakref.ref(entry[2]) for entry in env.server._server.parking._heap]
        assert parked
        txn = env.queue_vend(client, slot=2)
        assert client.receive(timeout=10).json()["id"] == txn
        confirmed = client.call("POST", "/esp32/v2/confirm", {"id": txn, "result": "success"})
        assert confirmed.status == 200
        wait_until(lambda: not env.server._server.parking._heap, timeout=10,
                   message="the request's deadline to pass")
        assert [ref() for ref in parked] == [None] * len(parked)
    finally:
        gc.enable()
