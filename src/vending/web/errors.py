"""One place that turns every failure into JSON {"error": ..., "detail": ...}."""

from __future__ import annotations

import logging
import re

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..errors import VendingError
from ..logs import RefusalLog
from .common import is_loopback

logger = logging.getLogger("vending.http")


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def init_app(app: Flask) -> None:
    """Install the JSON error handlers, the body size check and the refusal log."""
    config = app.extensions["vending"].config
    app.extensions["vending_refusals"] = RefusalLog(logger, config.audit_refusals_per_minute)

    @app.before_request
    def refuse_oversized_body() -> None:
        # Werkzeug only enforces the limit when a handler reads the body, and POST /vend/<slot>
        # never does: without this a 10 MB POST would still vend.
        limit = app.config.get("MAX_CONTENT_LENGTH")
        if limit is None:
            return
        if request.content_length is not None:
            if request.content_length > limit:
                raise RequestEntityTooLarge()
        elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            # Waitress de-chunks and sets Content-Length; the development server does not.
            request.get_data(cache=True)  # stops with 413 once past the limit

    @app.errorhandler(VendingError)
    def vending_error(exc: VendingError):
        log_refusal(exc.status, exc.code, exc.detail)
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        detail = exc.description or exc.name
        if code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            detail = f"the request body is larger than the {limit} bytes this server accepts"
        elif code == 405:
            detail = f"{request.method} is not allowed on {request.path}"
        elif code == 404:
            detail = f"no such endpoint: {request.path}; GET /openapi.json lists them"
        log_refusal(code, _snake(exc.name), detail)
        response = jsonify({"error": _snake(exc.name), "detail": detail})
        response.status_code = code
        original_headers = dict(exc.get_headers())
        for header in ("Allow", "Retry-After"):
            if header in original_headers:
                response.headers[header] = original_headers[header]
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify({
            "error": "internal_error",
            "detail": "the server hit an unexpected error; the log has the details",
        }), 500


def log_refusal(status: int, code: str, detail: str) -> None:
    """One line for a refused request, thinned out (RefusalLog) when it came from another
    machine: the operator at this machine sees every one of theirs, and 5xx are ours to fix."""
    source = request.remote_addr or "?"
    message = "refused %s %s from %s -> %d %s: %s"
    args = (request.method, request.path, source, status, code, detail)
    if status >= 500:
        logger.warning(message, *args)
    elif is_loopback(request.remote_addr):
        logger.info(message, *args)
    else:
        current_app.extensions["vending_refusals"].refused(source, message, *args)
