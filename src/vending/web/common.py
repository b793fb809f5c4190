"""Small helpers shared by the blueprints: the runtime, JSON bodies, query arguments."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from typing import Any

from flask import current_app, request

from ..errors import BadRequest
from ..runtime import Runtime

# Only a body with such an escape can decode to a lone surrogate, which SQLite and UTF-8
# cannot store; checking only then keeps every other request free of the extra pass.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def runtime() -> Runtime:
    """The controller's runtime, as create_app put it."""
    return current_app.extensions["vending"]


def json_body(required: bool = True) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    raw = request.get_data(cache=True)
    # Only a body of no bytes is absent; whitespace alone is malformed JSON, not "no body".
    if not raw:
        if required:
            raise BadRequest('a JSON object body is required, e.g. {"device_id": "..."}')
        return {}
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply") from None
    except ValueError as exc:
        # Python refuses integers of more than 4300 digits (CVE-2020-10735).
        raise BadRequest(f"the JSON holds a value this server does not accept: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("the JSON holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is"
                             " not text") from None
    if not isinstance(value, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(value).__name__}")
    return value


def int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    """An integer query argument within [low, high], or a 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def float_arg(name: str, default: float, low: float, high: float) -> float:
    """A number query argument within [low, high], or a 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number of seconds, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}, got {raw}")
    return value


def whole_number(value: Any) -> int | None:
    """A JSON number with no fraction (3 or 3.0) as an int; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


@functools.lru_cache(maxsize=1024)
def is_loopback(address: str | None) -> bool:
    """Whether a client address is this machine's (IPv4, IPv6, or IPv4 mapped into IPv6).

    Cached: every poll asks, about a handful of addresses, and parsing one was most of the
    cost of a /status answer on the fast path."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
