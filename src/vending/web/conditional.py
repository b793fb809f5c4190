"""Cheap polls: the /status snapshot built once per change, and ETag / If-None-Match answers.

Every open page, kiosk and phone polls; most polls find nothing new. A poll that sends back
the ETag it was given gets `304 Not Modified` with no body, and /status is rebuilt (two
database queries and the JSON) only when something it shows has changed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from flask import Response
from werkzeug.http import parse_etags

from .. import __version__
from ..runtime import Runtime

# Audiences see different bodies (issue 12: network clients without credentials see less),
# so each has its own snapshot and, its body differing, its own ETag.
OPERATOR = "operator"
PUBLIC = "public"

# What /status shows a client that is neither this machine nor a signed-in operator:
# enough for a monitor (up, which transport, counts), nothing that names or locates a board.
PUBLIC_STATUS_FIELDS = ("service", "version", "online", "communication_mode", "selection",
                        "esp32_connected", "transactions", "transports")


def status_for_client(snapshot: dict[str, Any], audience: str) -> dict[str, Any]:
    """The /status body for `audience`: the whole `snapshot` for OPERATOR (this machine and
    signed-in operators), else health and counts only: no device ids, addresses, keys or
    fingerprints. The one place that decides what an unauthenticated client sees."""
    if audience == OPERATOR:
        return snapshot
    devices = snapshot.get("devices", [])
    public = {name: snapshot[name] for name in PUBLIC_STATUS_FIELDS if name in snapshot}
    public["device_counts"] = {
        "total": len(devices),
        "online": sum(1 for d in devices if d.get("status") in ("online", "busy")),
        "pending_approval": sum(1 for d in devices if d.get("status") == "pending_approval"),
    }
    public["queued"] = sum(snapshot.get("queues", {}).values())
    public["slots"] = len(snapshot.get("slots", []))
    public["detail"] = ("signed-in operators and this machine see devices, slots and queues;"
                        " sign in at /login")
    return public


def etag_of(*parts: object) -> str:
    """A short, stable tag for a body or for what a body is built from."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=10)
    return digest.hexdigest()


@dataclass(frozen=True)
class Answer:
    """A polled endpoint's answer: its ETag, and its JSON body, or None for 304."""

    etag: str
    body: str | None


def holds(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header value names `etag` (weakly)."""
    return bool(if_none_match) and parse_etags(if_none_match).contains_weak(etag)


def conditional_json(answer: Answer) -> Response:
    """The answer as a response with its (weak) ETag: 304 with no body when not modified."""
    if answer.body is None:
        response = Response(status=304)
    else:
        response = Response(answer.body, mimetype="application/json")
    response.set_etag(answer.etag, weak=True)
    # Stored, but asked again every time: a browser then sends If-None-Match by itself.
    response.headers["Cache-Control"] = "no-cache"
    return response


def status_answer(rt: Runtime, snapshots: StatusSnapshots, audience: str,
                  if_none_match: str | None) -> Answer:
    """GET /status for `audience`; the same for the Flask view and the fast path."""
    return _status_from(rt, snapshots.get(rt, audience), if_none_match)


def status_answer_now(rt: Runtime, snapshots: StatusSnapshots, audience: str,
                      if_none_match: str | None) -> Answer | None:
    """status_answer if the snapshot is current, else None: never reads the database."""
    cached = snapshots.cached(rt, audience)
    return None if cached is None else _status_from(rt, cached, if_none_match)


def _status_from(rt: Runtime, snapshot: tuple[str, str], if_none_match: str | None) -> Answer:
    head, etag = snapshot
    if holds(if_none_match, etag):
        return Answer(etag, None)
    return Answer(etag, f'{head},"uptime":{time.time() - rt.started_at:.1f}}}')


# The log poll's arguments: ?since=<id> (0 and up), ?limit= (1 to LOG_LIMIT_MAX).
LOG_SINCE_MAX = 2**62
LOG_LIMIT_DEFAULT = 200
LOG_LIMIT_MAX = 1000


def log_answer(rt: Runtime, bodies: RecentBodies, since: int, limit: int,
               device_id: str | None, direction: str | None,
               if_none_match: str | None) -> Answer:
    """GET /esp32/communication/log with checked arguments; the same for both paths.

    The answer depends only on the log's revision and the arguments: a poll that finds
    nothing new is answered before any entry is copied."""
    etag = _log_etag(rt, since, limit, device_id, direction)
    if holds(if_none_match, etag):
        return Answer(etag, None)

    def build() -> str:
        entries, truncated = rt.log.since(since, device_id, direction, limit)
        return (f'{{"entries":[{",".join(e.json for e in entries)}],'
                f'"last_id":{rt.log.last_id},"truncated":{json.dumps(truncated)}}}')

    return Answer(etag, bodies.get(etag, build))


def log_answer_now(rt: Runtime, bodies: RecentBodies, since: int, limit: int,
                   device_id: str | None, direction: str | None,
                   if_none_match: str | None) -> Answer | None:
    """log_answer if it needs no new body, else None: the log's lock is not taken."""
    etag = _log_etag(rt, since, limit, device_id, direction)
    if holds(if_none_match, etag):
        return Answer(etag, None)
    body = bodies.cached(etag)
    return None if body is None else Answer(etag, body)


def _log_etag(rt: Runtime, since: int, limit: int, device_id: str | None,
              direction: str | None) -> str:
    return etag_of("log", rt.log.revision, since, limit, device_id, direction)


class RecentBodies:
    """The last few bodies by ETag: tabs opening the same view share one encoding."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._bodies: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, etag: str) -> str | None:
        """The body cached under `etag`, or None."""
        # Without the lock (a dict read is atomic): every poll of an open page comes here,
        # and a lock they all take is where a GIL-bound server convoys.
        return self._bodies.get(etag)

    def get(self, etag: str, build: Callable[[], str]) -> str:
        """The body cached under `etag`, built (outside the lock) when missing."""
        body = self.cached(etag)
        if body is not None:
            return body
        body = build()
        with self._lock:
            self._bodies[etag] = body
            while len(self._bodies) > self._size:
                self._bodies.popitem(last=False)
        return body


# How long a status poll waits for a write that holds the database before it shows the
# slots and counts it read last: far longer than a write takes, far shorter than a page's poll.
STORE_PATIENCE = 0.25


class StatusSnapshots:
    """The /status body per audience, rebuilt only when what it shows has changed.

    What can change without an event (a board's last_seen, a queue) is read each time from
    memory and compared; the database part is read again only when the store has written.
    The uptime is the one figure that always changes: it is appended to the cached body and
    left out of the ETag, which is weak for that reason.
    """

    def __init__(self) -> None:
        # No lock: entries are replaced whole, and a dict read is atomic. Every poll comes
        # here; a lock they all take is where a GIL-bound server convoys.
        self._cache: dict[str, tuple[Any, str, str]] = {}
        self._stored: tuple[int, tuple[list[dict[str, Any]], dict[str, int]]] | None = None

    @staticmethod
    def _key(rt: Runtime) -> tuple[Any, ...]:
        # Memory only, no lock held across I/O: (store revision, log id, devices, mode,
        # queues, transports).
        return (rt.store.revision, rt.log.last_id, [d.info() for d in rt.registry.devices()],
                rt.registry.communication_mode(), rt.service.queue_lengths(), rt.transports)

    def cached(self, rt: Runtime, audience: str = OPERATOR) -> tuple[str, str] | None:
        """What get() would answer if nothing has changed since it was built, else None.
        Never reads the database nor builds a body: safe on the HTTP server's I/O thread."""
        cached = self._cache.get(audience)
        if cached is not None and cached[0] == self._key(rt):
            return cached[1], cached[2]
        return None

    def get(self, rt: Runtime, audience: str = OPERATOR) -> tuple[str, str]:
        """(JSON body without its closing brace and uptime, ETag) for this audience."""
        key = self._key(rt)
        _, _, devices, mode, queues, _ = key
        cached = self._cache.get(audience)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        (slots, counts), current = self._stored_part(rt)
        snapshot = {
            "service": "flask-vending-machine",
            "version": __version__,
            "online": True,
            "communication_mode": mode["mode"],
            "selection": mode["selection"],
            "active_device": mode["active_device"],
            "esp32_connected": any(d["type"] != "simulation" and d["status"] in ("online", "busy")
                                   for d in devices),
            "devices": devices,
            "slots": slots,
            "transactions": counts,
            "queues": queues,
            "transports": rt.transports,
            "log_last_id": rt.log.last_id,
        }
        head = json.dumps(status_for_client(snapshot, audience), separators=(",", ":"))[:-1]
        tag = etag_of(head)
        if current:  # else built again at the next poll, when the database may be free
            self._cache[audience] = (key, head, tag)
        return head, tag

    def _stored_part(self, rt: Runtime) -> tuple[tuple[list[dict[str, Any]], dict[str, int]], bool]:
        """(slots and transaction counts, whether they are current).

        Read again only when the store has written; and while a write holds the database
        past STORE_PATIENCE (another program may have locked the file for the whole busy
        timeout), what was read last is shown rather than every page's poll waiting."""
        store = rt.store
        revision = store.revision
        stored = self._stored
        if stored is not None and stored[0] == revision:
            return stored[1], True

        def read() -> tuple[list[dict[str, Any]], dict[str, int]]:
            return [s.to_dict() for s in store.slots(rt.config.slots)], store.counts()

        fresh = store.read_unless_held(read, STORE_PATIENCE) if stored is not None else read()
        if fresh is None:
            return stored[1], False  # type: ignore[index]
        self._stored = (revision, fresh)
        return fresh, True
