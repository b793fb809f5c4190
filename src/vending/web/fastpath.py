"""GET /status and GET /esp32/communication/log answered below Flask.

Every open page, kiosk and phone polls these two every few seconds: they are most of what
the server ever answers. Through Flask a poll spent about 100 µs on routing, the request
context, the hooks and header objects around 10 µs of its own work (bench/bench_front.py).
Here the same answer (conditional.py's `status_answer` and `log_answer`, identified by
auth.py's `identify_client`, with auth.py's security headers) goes straight to WSGI.

An answer already built (the status snapshot unchanged, the log body cached, or a 304) is
given on the HTTP server's I/O thread (serving.py's ON_LOOP), with no hand-off to a worker:
that more than doubled the polls answered per second at 50 connections and cut their p99
several times (docs/benchmarks.md: `ours` against `ours-on-workers`). Anything that must be
built, or is larger than serving.py's LOOP_ANSWER_LIMIT, is declined there (NotNow) and
answered by a worker thread, which may read the database.

Anything out of the ordinary goes on to Flask, which answers it as it always has: a HEAD, a
body, a query the page never sends (so every error message stays in one place), a log
request from a client that is not an operator (the 401 or the sign-in redirect), any request
carrying a Bearer token (held to the sign-in rate limit there), a store that cannot be read
(the 503).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.http import parse_cookie

from ..commlog import DIRECTIONS
from ..errors import VendingError
from ..serving import LOOP_ANSWER_LIMIT, ON_LOOP, NotNow
from .auth import COOKIE_NAME, SECURITY_HEADERS, identify_client
from .conditional import (
    LOG_LIMIT_DEFAULT,
    LOG_LIMIT_MAX,
    LOG_SINCE_MAX,
    OPERATOR,
    PUBLIC,
    Answer,
    log_answer,
    log_answer_now,
    status_answer,
    status_answer_now,
)

StartResponse = Callable[..., Any]

STATUS_PATH = "/status"
LOG_PATH = "/esp32/communication/log"
# Plain words and digits only: anything else (escapes, non-ASCII) is parsed by Flask.
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.=&-]*")
_LOG_ARGUMENTS = frozenset({"since", "limit", "direction", "device_id"})
_DIRECTIONS = frozenset(DIRECTIONS)


def _cache_headers(etag: str) -> list[tuple[str, str]]:
    return [("ETag", f'W/"{etag}"'), ("Cache-Control", "no-cache"),
            *SECURITY_HEADERS.items()]


class PolledEndpoints:
    """WSGI middleware in front of the Flask app for the two endpoints every page polls.

    Their answers, once built, are given on the HTTP server's I/O thread (serving.py's
    ON_LOOP): there they read no database, build no body and take no lock held across I/O.
    """

    answered_on_loop = frozenset({STATUS_PATH, LOG_PATH})

    def __init__(self, app: Flask) -> None:
        self.flask_wsgi = app.wsgi_app
        self._runtime = app.extensions["vending"]
        self._auth = app.extensions["vending_auth"]
        self._snapshots = app.extensions["vending_status"]
        self._log_bodies = app.extensions["vending_log_bodies"]
        self._metrics = self._runtime.metrics if self._runtime.config.metrics else None
        self._routes: dict[str, Callable[[dict[str, Any], bool], Answer | None]] = {
            STATUS_PATH: self._status, LOG_PATH: self._log}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        on_loop = ON_LOOP in environ
        try:
            answered = self._answer(environ, start_response, now=on_loop)
        except VendingError:  # Flask meets it again and answers it (503 and a log line)
            answered = None
        if answered is not None:
            return answered
        if on_loop:  # not built yet: a worker thread calls again, and may wait for it
            raise NotNow
        return self.flask_wsgi(environ, start_response)

    def _answer(self, environ: dict[str, Any], start_response: StartResponse,
                now: bool) -> list[bytes] | None:
        path = environ.get("PATH_INFO", "")
        route = self._routes.get(path)
        if route is None or environ.get("REQUEST_METHOD") != "GET" \
                or environ.get("CONTENT_LENGTH") or "HTTP_TRANSFER_ENCODING" in environ \
                or "HTTP_HOST" not in environ or "HTTP_AUTHORIZATION" in environ:
            return None
        answer = route(environ, now)
        # The server declines a large answer on its loop anyway; here, before it is counted.
        if answer is None or (now and answer.body is not None
                              and len(answer.body) > LOOP_ANSWER_LIMIT):
            return None
        return self._respond(path, answer, start_response)

    def _who(self, environ: dict[str, Any]) -> str | None:
        raw_cookie = environ.get("HTTP_COOKIE")
        cookie = parse_cookie(raw_cookie).get(COOKIE_NAME) if raw_cookie else None
        return identify_client(self._auth, environ.get("REMOTE_ADDR"), environ["HTTP_HOST"],
                               cookie, "")

    def _status(self, environ: dict[str, Any], now: bool) -> Answer | None:
        if environ.get("QUERY_STRING"):
            return None
        audience = OPERATOR if self._who(environ) is not None else PUBLIC
        answer = status_answer_now if now else status_answer
        return answer(self._runtime, self._snapshots, audience, environ.get("HTTP_IF_NONE_MATCH"))

    def _log(self, environ: dict[str, Any], now: bool) -> Answer | None:
        arguments = self._log_arguments(environ.get("QUERY_STRING", ""))
        if arguments is None or self._who(environ) is None:
            return None
        since, limit, direction, device_id = arguments
        answer = log_answer_now if now else log_answer
        return answer(self._runtime, self._log_bodies, since, limit, device_id, direction,
                      environ.get("HTTP_IF_NONE_MATCH"))

    @staticmethod
    def _log_arguments(query: str) -> tuple[int, int, str | None, str | None] | None:
        """(since, limit, direction, device_id) when the query is plain and valid, else None
        (Flask then parses it, and words any error)."""
        if not _PLAIN_QUERY.fullmatch(query):
            return None
        values: dict[str, str] = {}
        for pair in query.split("&") if query else ():
            name, _, value = pair.partition("=")
            if name not in _LOG_ARGUMENTS or name in values:
                return None
            values[name] = value
        try:
            since = int(values.get("since") or 0)
            limit = int(values.get("limit") or LOG_LIMIT_DEFAULT)
        except ValueError:
            return None
        direction = values.get("direction") or None
        if not (0 <= since <= LOG_SINCE_MAX and 1 <= limit <= LOG_LIMIT_MAX) \
                or (direction is not None and direction not in _DIRECTIONS):
            return None
        return since, limit, direction, values.get("device_id") or None

    def _respond(self, path: str, answer: Answer, start_response: StartResponse) -> list[bytes]:
        if answer.body is None:
            status, headers, body = "304 NOT MODIFIED", _cache_headers(answer.etag), b""
        else:
            body = answer.body.encode()
            status = "200 OK"
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       *_cache_headers(answer.etag)]
        if self._metrics is not None:
            self._metrics.http_request("GET", path, int(status[:3]))
        start_response(status, headers)
        return [body]
