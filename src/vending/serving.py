"""Serving the app with waitress, hardened against slow and idle clients.

Waitress was chosen by measurement (docs/benchmarks.md, bench/bench_front.py): it reads
requests on one I/O thread, so a client trickling its headers costs a socket, not a worker
thread. What it lacks is added here, on its documented extension points (the server's
`handle_accept`, `readable` and `maintenance`, the channel's `received`, the dispatcher):

- poll() instead of select(), so no descriptor number can crash the loop (select() refuses
  descriptors above 1023); the open-file limit is raised to fit the connection limit;
- a deadline for a whole request to arrive once its first byte has (a trickling client is
  closed, however regularly it sends);
- a cap on the connections one address may hold (loopback, the kiosk, is exempt), and at the
  connection limit the oldest idle connection makes room instead of the server no longer
  accepting (which froze the page for everyone);
- a worker pool that grows on demand up to `threads` and shrinks back when idle, so a quiet
  server keeps a few threads while 100 held WiFi long-polls still get one each.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import select
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask

logger = logging.getLogger("vending.http")

# Windows' select() takes at most 512 sockets and it has no poll(); elsewhere poll() has no limit.
HAVE_POLL = hasattr(select, "poll")
SELECT_LIMIT = 500
# Descriptors kept free for the database, serial ports, log files and the listener.
RESERVED_FILES = 128


@dataclass(frozen=True)
class ServerLimits:
    """How many threads and connections the HTTP front may use, and how long a request may take."""

    threads: int = 128  # most worker threads; each held WiFi long-poll needs one
    min_threads: int = 4  # kept even when idle
    connection_limit: int = 1000
    connections_per_address: int = 32  # loopback is exempt
    request_deadline: float = 10.0  # seconds from a request's first byte to its last
    idle_timeout: float = 60.0  # a connection with no request at all is closed after this
    max_body: int | None = None


def raise_open_file_limit(wanted: int) -> int:
    """Raise this process's soft open-file limit towards `wanted`; return the soft limit now."""
    try:
        import resource
    except ImportError:  # Windows: no such limit on sockets
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def effective_connection_limit(wanted: int) -> int:
    """The connection limit this process can actually honour without running out of descriptors."""
    if not HAVE_POLL:
        return min(wanted, SELECT_LIMIT)
    soft = raise_open_file_limit(wanted + RESERVED_FILES)
    return max(10, min(wanted, soft - RESERVED_FILES))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ElasticDispatcher(ThreadedTaskDispatcher):
    """Waitress's worker pool, started small, grown when a task would wait, trimmed when idle."""

    TRIM_AFTER = 30.0  # seconds of surplus before idle threads are stopped

    def __init__(self, minimum: int, maximum: int) -> None:
        super().__init__()
        self.minimum = max(1, min(minimum, maximum))
        self.maximum = maximum
        self._surplus_since: float | None = None
        self.set_thread_count(self.minimum)

    def add_task(self, task: Any) -> None:
        with self.lock:
            running = len(self.threads) - self.stop_count
            idle = running - self.active_count
            grow = len(self.queue) >= idle and running < self.maximum
        if grow:
            try:
                self.set_thread_count(running + 1)
            except RuntimeError:  # the OS refused a thread (memory): the task waits its turn
                logger.warning("could not start another HTTP worker thread; requests queue")
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()
            if not grow and len(self.queue) > idle and running >= self.maximum:
                logger.debug("all %d HTTP worker threads are busy; %d requests wait",
                             running, len(self.queue))

    def trim(self, now: float) -> None:
        """Stop idle threads above what is busy (plus two spare) once that lasted TRIM_AFTER."""
        with self.lock:
            running = len(self.threads) - self.stop_count
            target = max(self.minimum, self.active_count + len(self.queue) + 2)
        if running <= target:
            self._surplus_since = None
        elif self._surplus_since is None:
            self._surplus_since = now
        elif now - self._surplus_since >= self.TRIM_AFTER:
            self._surplus_since = None
            self.set_thread_count(target)


class KeepAliveTask(WSGITask):
    """Waitress's WSGI task, keeping the connection open after a response that has no body.

    Waitress closes the connection after any HTTP/1.1 response without a Content-Length,
    including 204 and 304, which by definition have no body and must not carry one: so every
    poll answered "not modified" cost the page (and wrk) a new TCP connection.
    """

    _building_header = False

    def build_response_header(self) -> bytes:
        self._building_header = True
        try:
            return super().build_response_header()  # type: ignore[no-any-return]
        finally:
            self._building_header = False

    def set_close_on_finish(self) -> None:
        if self._building_header and not self.has_body and self.version == "1.1" \
                and self.request.headers.get("CONNECTION", "").lower() != "close":
            return
        super().set_close_on_finish()


class GuardedChannel(HTTPChannel):
    """A waitress channel that remembers when the request it is reading began."""

    task_class = KeepAliveTask
    request_started = 0.0

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.monotonic()
        return super().received(data)

    def del_channel(self, map: Any = None) -> None:
        fileno = self._fileno
        super().del_channel(map)
        self.server.forget(fileno)


class GuardedServer(TcpWSGIServer):
    """TcpWSGIServer with per-address caps, eviction at the limit and a request deadline."""

    channel_class = GuardedChannel

    def __init__(self, application: Any, limits: ServerLimits, map: dict[int, Any],
                 dispatcher: ElasticDispatcher, adj: Adjustments, sockinfo: Any) -> None:
        self.limits = limits
        self._per_address: collections.Counter[str] = collections.Counter()
        self._address_of: dict[int, str] = {}
        super().__init__(application, map=map, dispatcher=dispatcher, adj=adj,
                         sockinfo=sockinfo)

    def readable(self) -> bool:
        # Unlike waitress, keep accepting at the limit: handle_accept makes room or refuses,
        # so a flood of connections can never stop the operator's page from connecting.
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return bool(self.accepting)

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
            if accepted is None:
                return
            conn, addr = accepted
            self.set_socket_options(conn)
        except OSError:
            if self.adj.log_socket_errors:
                logger.warning("accept() failed (descriptors exhausted?)", exc_info=True)
            return
        addr = self.fix_addr(addr)
        host = str(addr[0]) if isinstance(addr, tuple) else ""
        loopback = _is_loopback(host)
        cap = self.limits.connections_per_address
        if not loopback and self._per_address[host] >= cap:
            self._refuse(conn, f"{host} already holds {cap} connections")
            return
        if len(self.active_channels) >= self.adj.connection_limit and not self._evict_idle():
            self._refuse(conn, f"{self.adj.connection_limit} connections are open and all busy")
            return
        try:
            channel = self.channel_class(self, conn, addr, self.adj, map=self._map)
        except OSError:  # the client left between accept() and here
            self._refuse(conn, f"{host} closed the connection at once")
            return
        self._address_of[channel._fileno] = host
        self._per_address[host] += 1

    def handle_error(self) -> None:
        # wasyncore's default closes the dispatcher that raised: here the listener (and the
        # trigger with it), so one bad accept would leave a server that no longer listens.
        logger.exception("error while accepting a connection; still listening")

    def _refuse(self, conn: Any, why: str) -> None:
        logger.debug("refused a connection: %s", why)
        try:
            conn.close()
        except OSError:
            pass

    def _evict_idle(self) -> bool:
        """Close the longest-quiet connection that has no request being served; False if none."""
        idle = [c for c in self.active_channels.values() if not c.requests]
        if not idle:
            return False
        # Other machines' connections go first: the kiosk on loopback is the operator.
        victim = min(idle, key=lambda c: (_is_loopback(self._address_of.get(c._fileno, "")),
                                          c.last_activity))
        victim.handle_close()
        return True

    def forget(self, fileno: int | None) -> None:
        """A channel closed: it no longer counts against its address."""
        host = self._address_of.pop(fileno, None) if fileno is not None else None
        if host is not None:
            self._per_address[host] -= 1
            if self._per_address[host] <= 0:
                del self._per_address[host]

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections past channel_timeout
        deadline = time.monotonic() - self.limits.request_deadline
        for channel in list(self.active_channels.values()):
            if channel.request is not None and not channel.requests \
                    and channel.request_started < deadline:
                logger.debug("closed a connection from %s: its request took over %.0f s",
                             self._address_of.get(channel._fileno, "?"),
                             self.limits.request_deadline)
                channel.handle_close()
        dispatcher = self.task_dispatcher
        if isinstance(dispatcher, ElasticDispatcher):
            dispatcher.trim(now)


def build_server(app: Flask, host: str, port: int, limits: ServerLimits) -> GuardedServer:
    """A listening (not yet running) server for `app`; raises OSError if the port is taken."""
    connection_limit = effective_connection_limit(limits.connection_limit)
    if connection_limit < limits.connection_limit:
        logger.warning("connection limit lowered from %d to %d: that is what this system allows",
                       limits.connection_limit, connection_limit)
    options: dict[str, Any] = dict(
        host=host, port=port, threads=limits.threads, ident="vending",
        connection_limit=connection_limit, channel_timeout=int(max(1, limits.idle_timeout)),
        # Maintenance (deadlines, idle connections, trimming the pool) runs this often.
        cleanup_interval=1, asyncore_use_poll=HAVE_POLL,
    )
    if limits.max_body:
        options["max_request_body_size"] = limits.max_body
    adj = Adjustments(**options)
    dispatcher = ElasticDispatcher(limits.min_threads, limits.threads)
    socket_map: dict[int, Any] = {}
    servers = [GuardedServer(app, limits, socket_map, dispatcher, adj, sockinfo)
               for sockinfo in adj.listen]
    # Every listener shares the map, so running the first serves them all.
    return servers[0]


class BackgroundServer:
    """The hardened waitress on its own named thread; for tests, benchmarks and self-checks."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0, threads: int = 16,
                 max_body: int | None = None, **limits: Any) -> None:
        # The app's own limit unless told otherwise, as src/app.py does: waitress then refuses
        # a larger body (chunked too) before reading it, and before any handler runs.
        max_body = max_body or app.config.get("MAX_CONTENT_LENGTH")
        self.app = app
        self._server = build_server(app, host, port,
                                    ServerLimits(threads=threads, max_body=max_body, **limits))
        self.host = host
        self.port: int = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name=f"http-{self.port}",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, then end the thread."""
        server = self._server

        def close_every_channel() -> None:
            # An empty channel map ends the loop in run(). Closing runs on the loop's own
            # thread (through its trigger), so no socket is closed under a poll waiting on it.
            for channel in list(server._map.values()):
                if isinstance(channel, HTTPChannel):
                    channel.handle_close()
                else:  # the listener and the trigger: plain close, without a warning
                    channel.close()

        if self._thread.is_alive():
            try:
                server.trigger.pull_trigger(close_every_channel)
                self._thread.join(5)
            except OSError:  # the trigger is gone: close from here, the loop wakes within 1 s
                close_every_channel()
                self._thread.join(5)
        if self._thread.is_alive() or not self._thread.ident:
            close_every_channel()
        server.task_dispatcher.shutdown()

