"""Operations endpoints: alerts (poll, acknowledge), low-stock levels and the audit trail.

Also the helpers other blueprints use to audit an operator action: `audit_action(...)`
for one call, `@audited("action")` to record a view's success or refusal.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable

from flask import Blueprint, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from .. import audit
from ..errors import BadRequest, VendingError
from ..store.operations import AuditEntry
from .common import int_arg, json_body, runtime, whole_number

bp = Blueprint("operations", __name__)

_LOCAL_ADDRESSES = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def who_and_where() -> tuple[str, str]:
    """The operator (`g.operator` when signed in, else local/anonymous) and the remote address."""
    address = request.remote_addr or ""
    operator = g.get("operator")
    if operator:
        who = operator if isinstance(operator, str) else str(
            getattr(operator, "name", None) or operator)
    else:
        who = "local" if address in _LOCAL_ADDRESSES else "anonymous"
    return who, address


def audit_action(action: str, outcome: str = audit.OK, detail: str = "") -> AuditEntry:
    """Record an operator action made by the current request."""
    who, address = who_and_where()
    return runtime().audit.record(action, who, address, outcome, detail)


def audit_refusal(action: str, detail: str = "") -> AuditEntry | None:
    """Record a request refused before it reached a view, at the audit log's bounded rate:
    anyone on the network can send these as fast as they like."""
    who, address = who_and_where()
    return runtime().audit.refused(action, who, address, detail)


_SECRET_WORDS = ("password", "secret", "token", "key", "pin")


def _shown(name: str, value: Any) -> str:
    # Never keep a credential in the audit trail, even one typed into the wrong field.
    if any(word in name.lower() for word in _SECRET_WORDS):
        return "***"
    return json.dumps(value)


def _request_detail(view_args: dict[str, Any]) -> str:
    parts = [f"{name}={value}" for name, value in view_args.items()]
    raw = request.get_data(cache=True)
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict):
            parts += [f"{name}={_shown(str(name), value)}" for name, value in body.items()]
        else:
            parts.append("body=unreadable")
    return " ".join(parts)


def audited(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Record the view as `action`: ok when it answers, refused when it raises a client error."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            detail = _request_detail(kwargs)
            try:
                result = view(*args, **kwargs)
            except VendingError as exc:
                outcome = audit.REFUSED if exc.status < 500 else audit.FAILED
                audit_action(action, outcome, f"{detail} -> {exc.code}: {exc.detail}".strip())
                raise
            except HTTPException as exc:
                audit_action(action, audit.REFUSED, f"{detail} -> {exc.code}: {exc.name}".strip())
                raise
            audit_action(action, audit.OK, detail)
            return result

        return wrapper

    return decorate


def _flag(name: str) -> bool:
    raw = (request.args.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise BadRequest(f"{name} must be 1 or 0, got {raw!r}")


@bp.get("/alerts")
def list_alerts():
    """Alerts newer than ?since=<id>, oldest first; ?active=1 for unacknowledged ones only."""
    rt = runtime()
    since = int_arg("since", 0, 0, 2**62)
    limit = int_arg("limit", 100, 1, 1000)
    alerts = rt.operations.alerts(since, _flag("active"), limit)
    return jsonify({
        "alerts": [a.to_dict() for a in alerts],
        "last_id": rt.operations.last_alert_id(),
        "active_count": rt.operations.active_alert_count(),
    })


@bp.post("/alerts/<int:alert_id>/ack")
@audited(audit.ACK_ALERT)
def acknowledge_alert(alert_id: int):
    """Mark an alert as seen; it leaves the page's banner."""
    who, _ = who_and_where()
    alert = runtime().alerts.acknowledge(alert_id, who)
    return jsonify(alert.to_dict())


@bp.get("/alerts/low-stock")
def low_stock_levels():
    """Each slot's low-stock alert level."""
    rt = runtime()
    return jsonify({"default": rt.config.low_stock_level,
                    "levels": {str(n): level for n, level in rt.alerts.levels().items()}})


@bp.put("/alerts/low-stock/<int:number>")
@audited(audit.SET_LOW_STOCK_LEVEL)
def set_low_stock_level(number: int):
    """Set a slot's low-stock level: {"level": n}, or {"level": null} for the default."""
    rt = runtime()
    rt.service.check_slot(number)
    body = json_body()
    if "level" not in body:
        raise BadRequest('send {"level": 3}, or {"level": null} to use the default')
    level = body["level"] if body["level"] is None else whole_number(body["level"])
    if body["level"] is not None and (level is None or not 0 <= level <= 10000):
        raise BadRequest("level must be a whole number from 0 to 10000, or null for the default")
    rt.alerts.set_low_stock_level(number, level)
    return jsonify({"slot": number, "level": rt.alerts.low_stock_level(number),
                    "default": level is None})


@bp.get("/audit")
def audit_trail():
    """Operator actions: newest first, or ?since=<id> oldest first; ?format=csv exports all."""
    rt = runtime()
    action = request.args.get("action") or None
    # Checked for the export too, which ignores them, so a wrong one never passes unnoticed.
    since = int_arg("since", None, 0, 2**62)
    limit = int_arg("limit", 100, 1, 1000)
    fmt = request.args.get("format") or "json"
    if fmt == "csv":
        return Response(
            audit.to_csv(rt.audit.iter_all(action)), mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=audit.csv"},
        )
    if fmt != "json":
        raise BadRequest(f"format must be json or csv, got {fmt!r}")
    if since is None:
        entries = rt.audit.entries(0, action, limit, newest_first=True)
    else:
        entries = rt.audit.entries(since, action, limit)
    return jsonify({"entries": [e.to_dict() for e in entries]})
