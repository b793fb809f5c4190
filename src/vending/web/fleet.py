"""The fleet view: every machine publishing under the broker prefix, from the fleet's copy."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, render_template, request

from ..errors import NotFound
from .auth import COOKIE_NAME
from .common import int_arg, runtime
from .pages import navigation

bp = Blueprint("fleet", __name__)


@bp.app_template_filter("when")
def when(epoch: float | None) -> str:
    """An event time as the fleet page shows it (local time of the fleet server)."""
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _fleet():
    fleet = runtime().fleet
    if fleet is None:
        raise NotFound("the fleet view is off: start the server with --fleet"
                       " mqtt://user:pass@broker:1883/prefix (or VENDING_FLEET_URL)")
    return fleet


@bp.get("/fleet")
def page():
    """Every machine: online, board, stock, sales, alerts, last vend, gaps."""
    fleet = _fleet()
    return render_template("fleet.html", page="fleet", navigation=navigation(),
                           machines=fleet.store.machines(), status=fleet.status(),
                           signed_in=COOKIE_NAME in request.cookies)


@bp.get("/api/fleet")
def machines():
    """Every machine's summary as JSON."""
    fleet = _fleet()
    return jsonify({**fleet.status(), "machines": fleet.store.machines()})


@bp.get("/api/fleet/<machine_id>")
def machine(machine_id: str):
    """One machine's summary."""
    try:
        return jsonify(_fleet().store.machine(machine_id))
    except KeyError:
        raise NotFound(f"no machine {machine_id} has published yet; GET /api/fleet lists"
                       " them") from None


@bp.get("/api/fleet/<machine_id>/events")
def events(machine_id: str):
    """A machine's events after `?after=<seq>`, oldest first (incremental polling)."""
    fleet = _fleet()
    after = int_arg("after", 0, 0, 2**62)
    limit = int_arg("limit", 100, 1, 1000)
    kind = request.args.get("event") or None
    return jsonify({"machine_id": machine_id,
                    "events": fleet.store.events(machine_id, after or 0, limit or 100, kind),
                    "gaps": [{"first": a, "last": b} for a, b in fleet.store.gaps(machine_id)]})
