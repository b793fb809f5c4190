"""An attacker on the shop's LAN: a client in its own network namespace.

The test builds a namespace and a veth pair; the server listens on the host end
(10.x.y.1, in the test's own namespace) and the attacker's requests leave from the other
end (10.x.y.2), so the server sees a remote address that is not this machine, exactly as
a laptop on the same WiFi would be. Requests run on worker threads that entered the
namespace with setns(2), so each test needs no subprocess and stays fast.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import requests
from flask import Flask

from vending.serving import BackgroundServer
from vending.sim.wifi import WifiBoard

CLONE_NEWNET = 0x40000000


def ip(*args: str) -> subprocess.CompletedProcess:
    """Run `ip ARGS...` (iproute2)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def netns_unavailable() -> str | None:
    """Why this machine cannot build network namespaces, or None when it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces exist only on Linux"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


@contextmanager
def namespace_pair(prefix: str, first: Sequence[str], second: Sequence[str],
                   broadcast: str | None = None) -> Iterator[tuple[str, str]]:
    """Two fresh namespaces `<prefix>a<pid>` and `<prefix>b<pid>` joined by a veth pair, the
    first end holding the `first` addresses (CIDR, e.g. 10.1.2.1/24), the second `second`;
    skips the test, saying why, where they cannot be built. Removed on exit."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    tag = f"{os.getpid() % 100000}"
    names = (f"{prefix}a{tag}", f"{prefix}b{tag}")
    links = (f"{prefix}x{tag}", f"{prefix}y{tag}")
    created: list[str] = []
    try:
        for ns in names:
            result = ip("netns", "add", ns)
            if result.returncode != 0:
                pytest.skip(f"ip netns add failed: {result.stderr.strip()}")
            created.append(ns)
        steps: list[tuple[str, ...]] = [
            ("link", "add", links[0], "type", "veth", "peer", "name", links[1])]
        for ns, link, addresses in zip(names, links, (first, second)):
            steps.append(("link", "set", link, "netns", ns))
            extra = ("broadcast", broadcast) if broadcast else ()
            steps += [("-n", ns, "addr", "add", address, *extra, "dev", link)
                      for address in addresses]
            steps += [("-n", ns, "link", "set", link, "up"), ("-n", ns, "link", "set", "lo", "up")]
        for step in steps:
            result = ip(*step)
            if result.returncode != 0:
                pytest.skip(f"could not build the veth pair ({' '.join(step)}):"
                            f" {result.stderr.strip()}")
        yield names
    finally:
        for ns in created:  # deleting a namespace deletes its end of the pair, and so both
            ip("netns", "del", ns)


@dataclass(frozen=True)
class Lan:
    """The namespace and both ends' addresses."""

    namespace: str
    host_ip: str
    client_ip: str


_counter = [0]


@pytest.fixture
def lan() -> Iterator[Lan]:
    """A fresh namespace `lan<pid><n>` joined to this one by veth `lh…`/`lc…`."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    _counter[0] += 1
    pid = os.getpid()
    tag = f"{pid % 100000}{_counter[0] % 100}"
    # A /30 of its own per process and test, so parallel runs never share an address.
    second, third = 100 + pid % 100, (pid // 100 + _counter[0] * 7) % 250
    host_ip, client_ip = f"10.{second}.{third}.1", f"10.{second}.{third}.2"
    ns, host_if, client_if = f"lan{tag}", f"lh{tag}", f"lc{tag}"
    made_ns = made_link = False
    try:
        result = ip("netns", "add", ns)
        if result.returncode != 0:
            pytest.skip(f"ip netns add failed: {result.stderr.strip()}")
        made_ns = True
        steps = [
            ("link", "add", host_if, "type", "veth", "peer", "name", client_if),
            ("link", "set", client_if, "netns", ns),
            ("addr", "add", f"{host_ip}/30", "dev", host_if),
            ("link", "set", host_if, "up"),
            ("-n", ns, "addr", "add", f"{client_ip}/30", "dev", client_if),
            ("-n", ns, "link", "set", client_if, "up"),
            ("-n", ns, "link", "set", "lo", "up"),
        ]
        for step in steps:
            result = ip(*step)
            made_link = made_link or step[0] == "link" and step[1] == "add"
            if result.returncode != 0:
                pytest.skip(f"could not build the veth pair ({' '.join(step)}):"
                            f" {result.stderr.strip()}")
        yield Lan(ns, host_ip, client_ip)
    finally:
        if made_link:
            ip("link", "del", host_if)
        if made_ns:
            ip("netns", "del", ns)


def _enter(namespace: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)


class Attacker:
    """HTTP from inside the namespace: every request runs on a thread that entered it."""

    def __init__(self, lan: Lan, base_url: str, workers: int = 4) -> None:
        self.base_url = base_url
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lan-attacker",
                                        initializer=_enter, initargs=(lan.namespace,))

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # no proxy: the request must leave from the namespace
            self._sessions.append(session)
        return session

    def _send(self, method: str, path: str, kwargs: dict[str, Any]) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)
        return self._session().request(method, self.base_url + path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self._pool.submit(self._send, method, path, kwargs).result(timeout=30)

    def many(self, method: str, paths: list[str], **kwargs: Any) -> list[requests.Response]:
        """Send all at once over the worker threads; answers in order."""
        futures = [self._pool.submit(self._send, method, p, dict(kwargs)) for p in paths]
        return [f.result(timeout=60) for f in futures]

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for session in self._sessions:
            session.close()


@dataclass
class LanEnv:
    """A controller served on the LAN's host end, an attacker, and genuine boards."""

    app: Flask
    server: BackgroundServer
    attacker: Attacker
    boards: list[WifiBoard] = field(default_factory=list)

    @property
    def rt(self) -> Any:
        return self.app.extensions["vending"]

    @property
    def operator(self) -> Any:
        """This machine's kiosk: a trusted local client of the same app."""
        return self.app.test_client()

    def device(self, device_id: str) -> Any:
        return self.rt.registry.get(device_id)

    def board(self, device_id: str | None = None, **options: Any) -> WifiBoard:
        """A genuine simulated board on this machine, talking to the served controller."""
        options.setdefault("server", (self.server.host, int(self.server.port)))
        options.setdefault("motor_time", 0.02)
        options.setdefault("poll_wait", 2.0)
        if options.get("legacy"):
            options.setdefault("legacy_interval", 0.1)
        board = WifiBoard(device_id, **options)
        self.boards.append(board)
        return board.start()

    def close(self) -> None:
        for board in self.boards:
            board.request_stop()
        self.rt.stop()
        for board in self.boards:
            board.stop()
        self.server.stop()
        self.attacker.close()


@pytest.fixture
def lan_env(lan: Lan, make_app: Callable[..., Flask]) -> Iterator[Callable[..., LanEnv]]:
    envs: list[LanEnv] = []

    def build(**overrides: Any) -> LanEnv:
        values: dict[str, Any] = dict(simulator=False, discovery=False, wifi_offline_after=1.0,
                                      wifi_legacy_hold=0.0)
        values.update(overrides)
        app = make_app(**values)
        server = BackgroundServer(app, host=lan.host_ip).start()
        env = LanEnv(app, server, Attacker(lan, f"http://{lan.host_ip}:{server.port}"))
        envs.append(env)
        return env

    yield build
    for env in envs:
        env.close()
