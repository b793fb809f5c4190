"""A flood of random datagrams at the discovery port while WiFi vends run.

The flood comes from other loopback addresses (127.0.0.2-5) than the board and the probe
(127.0.0.1), as a misbehaving device on the shop network would; everything stays on
127.0.0.0/8. It is bounded in count and time so the test stays short.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections import Counter

from helpers import wait_until

from vending.protocol import wifi as proto

FLOOD_PACKETS = 100000
FLOOD_SECONDS = 10.0
VENDS = 8
SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


def _random_datagram(rng: random.Random) -> bytes:
    """Garbage, near-misses and well-formed requests from strangers, mixed."""
    kind = rng.randrange(5)
    if kind == 0:
        return os.urandom(rng.randrange(0, 600))
    if kind == 1:
        return proto.PLAIN_REQUEST.encode()
    if kind == 2:
        return proto.auth_request(f"ESP32_{rng.randrange(16**12):012X}", os.urandom(16).hex())
    raw = bytearray(rng.choice([proto.PLAIN_REQUEST.encode(), proto.LEGACY_REQUEST.encode(),
                                proto.auth_request("ESP32_AABBCCDDEEFF", "ab" * 16)]))
    raw[rng.randrange(len(raw))] = rng.randrange(256)
    return bytes(raw)


class Flood(threading.Thread):
    """Sends random datagrams from several addresses until told to stop or a bound is hit."""

    def __init__(self, port: int) -> None:
        super().__init__(name="udp-flood", daemon=True)
        self.port = port
        self.sent = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        rng = random.Random(12346)
        socks = []
        for address in SOURCES:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((address, 0))
            sock.setblocking(False)
            socks.append(sock)
        deadline = time.monotonic() + FLOOD_SECONDS
        try:
            while (self.sent < FLOOD_PACKETS and time.monotonic() < deadline
                   and not self.stop_event.is_set()):
                try:
                    rng.choice(socks).sendto(_random_datagram(rng), ("127.0.0.1", self.port))
                    self.sent += 1
                except (BlockingIOError, OSError):
                    time.sleep(0.001)  # the socket buffer is full: the receiver is behind
                for sock in socks:  # drain replies so our buffers do not fill
                    try:
                        while sock.recv(2048):
                            pass
                    except (BlockingIOError, OSError):
                        pass
        finally:
            for sock in socks:
                sock.close()


def _discover(port: int) -> bytes | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.3)
    try:
        sock.sendto(proto.PLAIN_REQUEST.encode(), ("127.0.0.1", port))
        return sock.recvfrom(512)[0]
    except socket.timeout:
        return None
    finally:
        sock.close()


def test_vends_and_discovery_keep_working_through_a_flood_of_random_datagrams(wifi):
    env = wifi()
    board = env.online(env.board())
    flood = Flood(env.discovery_port)
    flood.start()
    try:
        wait_until(lambda: flood.sent > 500 or not flood.is_alive(), message="the flood to start")
        outcomes = []
        for index in range(VENDS):
            outcomes.append(env.vend(index % 5 + 1).json())
            # Discovery answers a board it has not heard from while the strangers flood it.
            assert wait_until(lambda: _discover(env.discovery_port), timeout=3,
                              message="a discovery answer") == b"FLASK_SERVER_IP:127.0.0.1"
        flooding_throughout = flood.is_alive()
    finally:
        flood.stop_event.set()
        flood.join(10)
    assert flooding_throughout, f"the flood ended early ({flood.sent} datagrams)"
    assert [o["status"] for o in outcomes] == ["success"] * VENDS
    runs = Counter(run.request_id for run in board.motor_runs)
    assert len(runs) == VENDS and set(runs.values()) == {1}, "each vend ran the motor once"
    discovery = env.rt.discovery
    assert discovery is not None
    assert any(t.name == "udp-discovery" and t.is_alive() for t in threading.enumerate())
    # The kernel drops what the thread cannot take in time; what it took, it judged.
    assert discovery.ignored > 1000
    print(f"flood: {flood.sent} datagrams, {discovery.answered} answered,"
          f" {discovery.ignored} ignored; {VENDS} vends all succeeded")
