"""Cheap polls: the /status snapshot built once per change, and ETag / If-None-Match answers.

Every open page, kiosk and phone polls; most polls find nothing new. A poll that sends back
the ETag it was given gets `304 Not Modified` with no body, and /status is rebuilt (two
database queries and the JSON) only when something it shows has changed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any, Callable

from flask import Response, request

from .. import __version__
from ..runtime import Runtime

# Audiences see different bodies (issue 12: network clients without credentials see less),
# so each has its own snapshot and, its body differing, its own ETag.
OPERATOR = "operator"


def etag_of(*parts: object) -> str:
    """A short, stable tag for a body or for what a body is built from."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=10)
    return digest.hexdigest()


def conditional_json(body: bytes | str, etag: str) -> Response:
    """The body with its (weak) ETag, or 304 when the client already holds it."""
    if request.if_none_match.contains_weak(etag):
        response = Response(status=304)
    else:
        response = Response(body, mimetype="application/json")
    response.set_etag(etag, weak=True)
    # Stored, but asked again every time: a browser then sends If-None-Match by itself.
    response.headers["Cache-Control"] = "no-cache"
    return response


def not_modified(etag: str) -> Response | None:
    """304 when the client holds `etag` (checked before any body is built); else None."""
    if request.if_none_match.contains_weak(etag):
        return conditional_json(b"", etag)
    return None


class RecentBodies:
    """The last few bodies by ETag: tabs opening the same view share one encoding."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._bodies: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, etag: str, build: Callable[[], str]) -> str:
        """The body cached under `etag`, built (outside the lock) when missing."""
        with self._lock:
            body = self._bodies.get(etag)
            if body is not None:
                self._bodies.move_to_end(etag)
                return body
        body = build()
        with self._lock:
            self._bodies[etag] = body
            while len(self._bodies) > self._size:
                self._bodies.popitem(last=False)
        return body


class StatusSnapshots:
    """The /status body per audience, rebuilt only when what it shows has changed.

    What can change without an event (a board's last_seen, a queue) is read each time from
    memory and compared; the database part is read again only when the store has written.
    The uptime is the one figure that always changes: it is appended to the cached body and
    left out of the ETag, which is weak for that reason.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[Any, str, str]] = {}

    def get(self, rt: Runtime, audience: str = OPERATOR) -> tuple[str, str]:
        """(JSON body without its closing brace and uptime, ETag) for this audience."""
        devices = [d.info() for d in rt.registry.devices()]
        mode = rt.registry.communication_mode()
        queues = rt.service.queue_lengths()
        key = (rt.store.revision, rt.log.last_id, devices, mode, queues, rt.transports)
        with self._lock:
            cached = self._cache.get(audience)
            if cached is not None and cached[0] == key:
                return cached[1], cached[2]
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
            "slots": [s.to_dict() for s in rt.store.slots(rt.config.slots)],
            "transactions": rt.store.counts(),
            "queues": queues,
            "transports": rt.transports,
            "log_last_id": rt.log.last_id,
        }
        head = json.dumps(snapshot, separators=(",", ":"))[:-1]
        tag = etag_of(head)
        with self._lock:
            self._cache[audience] = (key, head, tag)
        return head, tag
