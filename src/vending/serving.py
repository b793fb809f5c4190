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
- a worker pool that grows on demand up to `threads` and shrinks back when idle;
- answers given on the I/O thread: for the paths an application lists in `answered_on_loop`
  (on the object behind `app.wsgi_app`), a GET is first offered to it there with
  `environ[ON_LOOP]`; it answers only if that cannot block (nothing to read or build) and
  otherwise raises NotNow, and a worker answers as usual. The polls every page sends are
  answered so without waking a worker, the most of what a request cost here;
- parked requests: a handler may offer to wait without a thread (a WiFi board's long-poll
  with nothing to send yet). The request stays at the head of its channel's queue, no
  worker holds it, and the channel goes back to the pool when the handler's wake-up fires,
  its deadline passes (a heap the server's loop sleeps on) or it is dropped when the client
  leaves. The handler then runs again with `vending.resumed` and answers.

How a handler parks: `environ["vending.park"](timeout, register, context)` calls
`register(wake)`, which returns None (nothing to wait for: answer now) or a `release`
callable; `wake()` may be called from any thread, once, when the request should be
answered. `park` returns whether the request was parked; if so, the handler's response is
not sent, and the handler is called again with `environ["vending.resumed"] = context`.
The key is absent under other servers and Flask's test client: handlers then wait in place.
"""

from __future__ import annotations

import collections
import heapq
import ipaddress
import itertools
import logging
import select
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from flask import Flask
from waitress import wasyncore
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

PARK = "vending.park"
RESUMED = "vending.resumed"
ON_LOOP = "vending.on_loop"


class NotNow(Exception):
    """Raised by an application called with ON_LOOP whose answer is not ready (before it
    calls start_response): a worker thread then calls it again, without ON_LOOP."""


@dataclass(frozen=True)
class ServerLimits:
    """How many threads and connections the HTTP front may use, and how long a request may take."""

    threads: int = 128  # most worker threads
    min_threads: int = 4  # kept even when idle
    connection_limit: int = 1000
    connections_per_address: int = 32  # loopback is exempt
    request_deadline: float = 10.0  # seconds from a request's first byte to its last
    idle_timeout: float = 60.0  # a connection with no request at all is closed after this
    max_body: int | None = None
    park: bool = True  # offer handlers `vending.park` (WiFi long-polls wait without a thread)
    answer_on_loop: bool = True  # let the application answer ready polls on the I/O thread


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
    """Waitress's WSGI task, keeping the connection open after a response that has no body,
    and sending a response's header and body in one piece.

    Waitress closes the connection after any HTTP/1.1 response without a Content-Length,
    including 204 and 304, which by definition have no body and must not carry one: so every
    poll answered "not modified" cost the page (and wrk) a new TCP connection. And it sends
    the header and then the body, two send() calls where one does: under load the system
    calls are most of what the server does (py-spy, bench/bench_front.py).
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

    def write(self, data: bytes) -> None:
        if not self.complete or self.wrote_header or not data:
            super().write(data)
            return
        header = self.build_response_header()
        self.wrote_header = True
        if self.has_body and not self.chunked_response and self.content_length == len(data):
            # The whole body, as every JSON answer comes: in the header's send.
            self.content_bytes_written += len(data)
            self.channel.write_soon(header + data)
            return
        self.channel.write_soon(header)
        super().write(data)  # the header is written: the body as waitress writes it



Register = Callable[[Callable[[], None]], "Callable[[], None] | None"]


class ParkedRequest:
    """A request its handler parked: held by no thread until woken, due, or its client leaves.

    parking (the handler's task is still returning) -> parked -> resuming -> done, or done at
    once when cancelled. A wake-up that comes while parking is kept and acted on when the
    task has returned, so it is never lost; only the loop thread resumes or cancels.
    """

    PARKING, PARKED, RESUMING, DONE = "parking", "parked", "resuming", "done"

    def __init__(self, channel: GuardedChannel, deadline: float, context: Any) -> None:
        self.channel = channel
        self.deadline = deadline
        self.context = context
        self.release: Callable[[], None] | None = None
        self.state = self.PARKING
        self._woken = False
        self._lock = threading.Lock()

    def wake(self) -> None:
        """The handler's event came (any thread, maybe under the handler's locks): answer soon."""
        with self._lock:
            if self.state == self.PARKING:
                self._woken = True
                return
            if self.state != self.PARKED:
                return
            self.state = self.RESUMING
        self._schedule_resume()

    def settled(self) -> None:
        """The task that parked this request has returned: its worker thread is free."""
        with self._lock:
            if self.state != self.PARKING:
                return
            self.state = self.RESUMING if self._woken else self.PARKED
            resume = self.state == self.RESUMING
        if resume:
            self._schedule_resume()
        elif not self.channel.connected:  # closed while its task was returning
            self.cancel()
        else:  # the loop must now watch the socket and this deadline
            self.channel.server.parking.wake_loop()

    def expire(self) -> None:
        """The deadline passed: stop waiting for the event, and answer."""
        self._release()
        self.wake()

    def cancel(self) -> None:
        """The connection is closing: stop waiting, and never answer."""
        with self._lock:
            self.state = self.DONE
        self._release()

    def _release(self) -> None:
        # Never under self._lock: the handler's release takes its own lock, under which wake()
        # takes ours.
        release, self.release = self.release, None
        if release is not None:
            release()

    def _schedule_resume(self) -> None:
        self.channel.server.parking.due(self)

    def resumed(self) -> bool:
        """On the loop thread: True if this request should now be answered."""
        with self._lock:
            if self.state != self.RESUMING:
                return False
            self.state = self.DONE
        # The handler's release holds its wake-up, which holds this request: a cycle that
        # only a full garbage collection, minutes away on a busy server, would free. Woken,
        # the handler has already let go of it; a deadline has already released it.
        self.release = None
        return True


class ParkingLot:
    """Parked requests' deadlines and wake-ups, for the server loop; shared by the listeners.

    A wake-up only appends to a queue and pokes the loop's trigger (a byte in a pipe, no
    lock): it may come from under a handler's lock that the loop itself takes to release a
    parked request, so it must not wait for the loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, ParkedRequest]] = []
        self._order = itertools.count()
        self._due: collections.deque[ParkedRequest] = collections.deque()
        self._trigger: Any = None

    def attach(self, trigger: Any) -> None:
        """The loop's trigger (waitress's), pulled to wake the loop from other threads."""
        self._trigger = trigger

    def add(self, parked: ParkedRequest) -> None:
        with self._lock:
            heapq.heappush(self._heap, (parked.deadline, next(self._order), parked))

    def due(self, parked: ParkedRequest) -> None:
        """Any thread: `parked` is to be answered; the loop queues it for a worker."""
        self._due.append(parked)
        self.wake_loop()

    def wake_loop(self) -> None:
        trigger = self._trigger
        if trigger is None or trigger._closed:
            return
        try:
            trigger.pull_trigger()
        except OSError:  # closing: every parked request is being cancelled with its channel
            pass

    @property
    def count(self) -> int:
        """Requests parked now (parking, parked or about to resume)."""
        with self._lock:
            return sum(1 for _, _, p in self._heap if p.state != ParkedRequest.DONE)

    def tick(self, now: float, longest: float) -> float:
        """On the loop thread: expire what is due, queue what was woken; return how long the
        loop may sleep (at most `longest`)."""
        expired = []
        with self._lock:
            heap = self._heap
            while heap and (heap[0][0] <= now or heap[0][2].state == ParkedRequest.DONE):
                parked = heapq.heappop(heap)[2]
                if parked.state != ParkedRequest.DONE:
                    expired.append(parked)
            wait = min(longest, heap[0][0] - now) if heap else longest
        for parked in expired:
            parked.expire()
        while self._due:
            parked = self._due.popleft()
            parked.channel.resume(parked)
        return max(0.0, wait)


class ParkingTask(KeepAliveTask):
    """A WSGI task that can offer its handler to wait without this thread (`vending.park`)."""

    parked: ParkedRequest | None = None

    def __init__(self, channel: GuardedChannel, request: Any) -> None:
        super().__init__(channel, request)
        self.resumed, channel.resumed_context = channel.resumed_context, _NOTHING

    def get_environment(self) -> dict[str, Any]:
        if self.environ is not None:
            return self.environ
        environ = super().get_environment()
        if self.resumed is not _NOTHING:
            environ[RESUMED] = self.resumed
        elif self.channel.server.limits.park:
            environ[PARK] = self._park
        return environ

    def _park(self, timeout: float, register: Register, context: Any) -> bool:
        if self.parked is not None or self.wrote_header:
            raise RuntimeError("a request is parked once, before anything is written")
        channel = self.channel
        parked = ParkedRequest(channel, time.monotonic() + timeout, context)
        release = register(parked.wake)
        if release is None:
            return False
        parked.release = release
        self.parked = channel.parked = parked
        channel.server.parking.add(parked)
        return True

    def execute(self) -> None:
        try:
            super().execute()
        except BaseException:
            parked = self.parked
            if parked is not None:  # the handler failed after parking: answer it now, as errors are
                self.parked = None
                self.channel.unpark(parked)
            raise
        finally:
            # environ -> self._park -> self -> environ: a cycle only the garbage collector
            # would free, and a parked request's task lives long enough to reach its oldest
            # generation (bench/bench_soak.py's RSS rose for nine minutes).
            if self.environ is not None:
                self.environ.pop(PARK, None)

    def write(self, data: bytes) -> None:
        if self.parked is not None:  # this pass's response is not sent
            self.content_bytes_written += len(data)
            return
        super().write(data)

    def finish(self) -> None:
        if self.parked is not None:
            # Out past waitress's bookkeeping in HTTPChannel.service, which would end the
            # request: it stays at the head of the channel's queue.
            raise _Parked(self.parked)
        super().finish()


class _Parked(BaseException):
    """Raised by a task whose request was parked; caught by GuardedChannel.service."""

    def __init__(self, parked: ParkedRequest) -> None:
        super().__init__()
        self.parked = parked


_NOTHING = object()


# The largest answer given on the I/O thread: below waitress's outbuf_overflow (1 MiB), past
# which it writes what is waiting to be sent to a temporary file, on the thread that writes.
LOOP_ANSWER_LIMIT = 256 * 1024


class LoopTask(KeepAliveTask):
    """A request answered on the server's I/O thread, if its application can do so at once."""

    def get_environment(self) -> dict[str, Any]:
        if self.environ is None:
            super().get_environment()[ON_LOOP] = True
        return self.environ  # type: ignore[return-value]

    def write(self, data: bytes) -> None:
        if not self.wrote_header and len(data) > LOOP_ANSWER_LIMIT:
            raise NotNow  # nothing sent yet: a worker answers it
        super().write(data)


class GuardedChannel(HTTPChannel):
    """A waitress channel that remembers when the request it is reading began, and can park it."""

    task_class = ParkingTask
    request_started = 0.0
    receiving = False  # in received(), on the loop thread, with requests_lock held
    loop_answers_left = 0  # how many more requests received() may answer on the loop
    parked: ParkedRequest | None = None  # set by the worker that parks, cleared on the loop
    resumed_context: Any = _NOTHING  # for the task that answers a resumed request

    def received(self, data: bytes) -> bool:
        if self.request is None and data:
            self.request_started = time.monotonic()
        # One answer on the loop per read: a client pipelining many polls in one segment
        # would otherwise hold the loop (and every other client) for all of them.
        self.receiving, self.loop_answers_left = True, 1
        try:
            return super().received(data)
        finally:
            self.receiving = False

    def drop_requests(self) -> None:
        """Under requests_lock: forget the requests queued behind one that closes the
        connection (as HTTPChannel.service does): none of them is ever run."""
        for queued in self.requests:
            queued.close()
        self.requests = []

    def service(self) -> None:
        try:
            super().service()
        except _Parked as parked:
            parked.parked.settled()

    def readable(self) -> bool:
        parked = self.parked
        if parked is not None and parked.state == ParkedRequest.PARKED:
            # Watched while parked, so a client that leaves is noticed (and its wait released)
            # now, not when its answer is due. A pipelined next request is read and queued.
            return len(self.requests) == 1 and not (
                self.will_close or self.close_when_flushed or self.total_outbufs_len)
        return super().readable()

    def handle_read(self) -> None:
        super().handle_read()
        if self.parked is None:
            return
        if not self.connected:
            self.handle_close()  # the client left while parked
        elif len(self.requests) > 1 or self.request is not None:
            # A request sent behind a parked poll (our boards never pipeline): reading on
            # would stop while two wait, and a client leaving then would go unnoticed, its
            # command taken for a closed socket. Closed: the wait is released, nothing taken.
            logger.debug("closed a connection that sent a request behind its parked poll")
            self.handle_close()

    def answer_on_loop(self, paths: Collection[str]) -> bool:
        """On the loop thread, from received() (which holds requests_lock): answer the one
        request waiting if it is a GET for one of `paths` and the application has its answer
        ready; False leaves it to a worker.

        At most one per read (received() sets the budget), and only with nothing left to
        send: a client pipelining without reading would otherwise fill the output buffer, and
        waitress makes a writer wait for the loop to drain it, here the loop itself.
        """
        if len(self.requests) != 1 or self.loop_answers_left <= 0:
            return False
        request = self.requests[0]
        if request.error or request.command != "GET" or request.path not in paths \
                or self.total_outbufs_len or self.parked is not None \
                or self.resumed_context is not _NOTHING:
            return False
        self.loop_answers_left -= 1
        task = LoopTask(self, request)
        # Counted first: the answer is sent from within the task (waitress sends as it is
        # written), and whoever reads the count after reading the answer must see it.
        self.server.loop_answers += 1
        try:
            task.service()
        except NotNow:
            if not task.wrote_header:
                self.server.loop_answers -= 1
                return False
            task.close_on_finish = True
        except Exception:
            if not task.wrote_header:  # a worker meets it again, and answers it as an error
                self.server.loop_answers -= 1
                logger.debug("could not answer %s on the I/O thread", request.path, exc_info=True)
                return False
            logger.exception("failed answering %s on the I/O thread", request.path)
            task.close_on_finish = True
        # What HTTPChannel.service does after a task, here under the lock received() holds.
        if task.close_on_finish:
            self.close_when_flushed = True
            self.drop_requests()
        else:
            if self.current_outbuf_count > 0:  # the next response starts a new buffer
                self.current_outbuf_count = self.adj.outbuf_high_watermark
            request.close()
            self.requests.pop(0)
        self.last_activity = time.time()
        return True

    def resume(self, parked: ParkedRequest) -> None:
        """On the loop thread: a parked request's time came; queue it for a worker."""
        if self.parked is not parked or not parked.resumed():
            return
        self.parked = None
        self.resumed_context = parked.context
        self.server.add_task(self)

    def unpark(self, parked: ParkedRequest) -> None:
        """The handler failed after parking: release the wait; the request is answered now."""
        parked.cancel()
        if self.parked is parked:
            self.parked = None

    def del_channel(self, map: Any = None) -> None:
        parked, self.parked = self.parked, None
        if parked is not None:
            parked.cancel()
        fileno = self._fileno
        super().del_channel(map)
        self.server.forget(fileno)


class GuardedServer(TcpWSGIServer):
    """TcpWSGIServer with per-address caps, eviction at the limit and a request deadline."""

    channel_class = GuardedChannel

    def __init__(self, application: Any, limits: ServerLimits, map: dict[int, Any],
                 dispatcher: ElasticDispatcher, adj: Adjustments, sockinfo: Any,
                 parking: ParkingLot | None = None) -> None:
        self.limits = limits
        self.parking = parking if parking is not None else ParkingLot()
        # As given: waitress wraps it (clearing untrusted proxy headers, memory only).
        self.app_as_given = application
        self.loop_ident: int | None = None  # the thread running the loop, once it runs
        self.loop_answers = 0  # requests answered on that thread (written by it alone)
        self._per_address: collections.Counter[str] = collections.Counter()
        self._address_of: dict[int, str] = {}
        super().__init__(application, map=map, dispatcher=dispatcher, adj=adj,
                         sockinfo=sockinfo)
        self.parking.attach(self.trigger)

    def run(self) -> None:
        """Waitress's loop, waking also when a parked request falls due."""
        poll = wasyncore.poll2 if self.adj.asyncore_use_poll and HAVE_POLL else wasyncore.poll
        longest = float(self.adj.asyncore_loop_timeout)
        for listener in list(self._map.values()):  # every listener shares this loop
            if isinstance(listener, GuardedServer):
                listener.loop_ident = threading.get_ident()
        try:
            while self._map:
                poll(self.parking.tick(time.monotonic(), longest), self._map)
        except (SystemExit, KeyboardInterrupt):
            self.task_dispatcher.shutdown()

    def add_task(self, channel: Any) -> None:
        if isinstance(channel, GuardedChannel) and channel.receiving:
            if channel.close_when_flushed:
                # A request answered on the loop closes the connection, and received() goes
                # on parsing what came behind it in the same read: never run (a vend, say).
                channel.drop_requests()
                return
            paths = self.paths_answered_on_loop()
            if paths and channel.answer_on_loop(paths):
                return
        super().add_task(channel)

    def paths_answered_on_loop(self) -> Collection[str]:
        """What the application behind `app.wsgi_app` lists as `answered_on_loop`, read for
        every request: a middleware wrapped around it since (which might block) turns it off."""
        if not self.limits.answer_on_loop:
            return ()
        application = self.app_as_given
        return getattr(getattr(application, "wsgi_app", application), "answered_on_loop", ())

    def pull_trigger(self) -> None:
        # An answer written on the loop thread and not yet sent pulls the trigger, a write to a
        # pipe only that thread empties: needless (the loop looks at every channel again before
        # it sleeps), and a full pipe would block it for good.
        if threading.get_ident() == self.loop_ident:
            return
        super().pull_trigger()

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
        """Close the longest-quiet connection that has no request being served, else the
        oldest parked poll (its wait is released, nothing is taken: the board asks again);
        False if every connection is being served."""
        channels = list(self.active_channels.values())
        idle = [c for c in channels if not c.requests]
        if not idle:
            # Parked polls hold no thread, so without this they could fill the connection
            # limit and lock the operator out (a board's key, or firmware leaking sockets).
            idle = [c for c in channels if c.parked is not None
                    and c.parked.state == ParkedRequest.PARKED]
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
    parking = ParkingLot()
    servers = [GuardedServer(app, limits, socket_map, dispatcher, adj, sockinfo, parking)
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
        runtime = app.extensions.get("vending")
        if runtime is not None:
            limits.setdefault("park", runtime.config.park_polls)
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

    @property
    def parked(self) -> int:
        """Requests waiting without a worker thread now."""
        return self._server.parking.count

    @property
    def answered_on_loop(self) -> int:
        """Requests answered on the I/O thread so far, not by a worker."""
        return self._server.loop_answers

    @property
    def worker_threads(self) -> int:
        """HTTP worker threads running now."""
        dispatcher = self._server.task_dispatcher
        with dispatcher.lock:
            return len(dispatcher.threads) - dispatcher.stop_count

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

