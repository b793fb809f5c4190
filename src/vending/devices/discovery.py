"""UDP discovery on port 12346: tells boards on the LAN where this server is."""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable

from ..protocol import wifi as proto
from ..threads import Worker

logger = logging.getLogger("vending.discovery")

SecretLookup = Callable[[str], "bytes | None"]


def facing_address(peer_ip: str, fallback: str = "127.0.0.1") -> str:
    """This host's address on the interface that routes to `peer_ip`.

    Connecting a UDP socket sends nothing; it only asks the routing table, so this
    works on a multi-homed Pi with no internet and no default route.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((peer_ip, 9))
        address = probe.getsockname()[0]
        return address if address != "0.0.0.0" else fallback
    except OSError:
        return fallback
    finally:
        probe.close()


class RateLimiter:
    """A token bucket per sender address, with a bounded table so a flood cannot grow it."""

    def __init__(self, rate: float = 5.0, burst: float = 10.0, max_senders: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.max_senders = max_senders
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, sender: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, stamp = self._buckets.get(sender, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if len(self._buckets) >= self.max_senders and sender not in self._buckets:
            # Forget senders whose bucket has refilled: they are not flooding.
            full_after = self.burst / self.rate
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
            if len(self._buckets) >= self.max_senders:
                return False
        if tokens < 1.0:
            self._buckets[sender] = (tokens, now)
            return False
        self._buckets[sender] = (tokens - 1.0, now)
        return True


class DiscoveryService:
    """A named thread answering the plain, legacy and authenticated discovery requests."""

    name = "wifi-discovery"

    def __init__(self, port: int, http_port: int, secret_for: SecretLookup,
                 bind_host: str = "", rate: float = 5.0, burst: float = 10.0) -> None:
        self.requested_port = port
        self.port = port
        self.http_port = http_port
        self.bind_host = bind_host
        self._secret_for = secret_for
        self._limiter = RateLimiter(rate, burst)
        self._sock: socket.socket | None = None
        self._worker = Worker("udp-discovery", self._run)
        self.answered = 0
        self.ignored = 0

    def start(self) -> None:
        """Bind the port and start the thread; a busy port is logged, not fatal."""
        if self._worker.running:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            sock.bind((self.bind_host, self.requested_port))
        except OSError as exc:
            sock.close()
            logger.error(
                "UDP discovery cannot listen on port %d (%s): WiFi boards will not find this"
                " server by themselves; stop the other program or use --discovery-port",
                self.requested_port, exc,
            )
            return
        sock.settimeout(0.5)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._worker.start()
        logger.info("UDP discovery service started on port %d", self.port)

    def stop(self) -> None:
        """End the thread and close the socket; safe twice."""
        self._worker.stop()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._worker.stopping.is_set():
            try:
                data, addr = sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError as exc:
                if self._worker.stopping.is_set():
                    return
                # ICMP errors from an earlier reply surface here on some systems; keep going.
                logger.debug("discovery receive error: %s", exc)
                continue
            try:
                self._handle(sock, data, addr)
            except Exception:
                logger.exception("discovery: failed to answer %s; still listening", addr[0])

    def _handle(self, sock: socket.socket, data: bytes, addr: tuple[str, int]) -> None:
        if not self._limiter.allow(addr[0]):
            self.ignored += 1
            return
        request = proto.parse_discovery(data)
        if request is None:
            self.ignored += 1
            logger.debug("discovery: ignored %d bytes from %s", len(data), addr[0])
            return
        ip = self._own_address(addr[0])
        if request.form == "plain":
            reply = proto.plain_reply(ip)
        elif request.form == "legacy":
            reply = proto.legacy_reply(ip)
        else:
            assert request.device_id is not None and request.nonce is not None
            secret = self._secret_for(request.device_id)
            reply = proto.auth_reply(secret, request.device_id, ip, self.http_port, request.nonce)
        sock.sendto(reply, addr)
        self.answered += 1
        logger.info("discovery: %s request from %s:%d answered with %s", request.form, addr[0],
                    addr[1], ip)

    def _own_address(self, peer_ip: str) -> str:
        fallback = self.bind_host if self.bind_host not in ("", "0.0.0.0") else "127.0.0.1"
        return facing_address(peer_ip, fallback)
