"""The operator's pages: server-rendered shells that small scripts keep up to date."""

from __future__ import annotations

import time

from flask import Blueprint, redirect, render_template, request

from ..errors import BadRequest
from ..reports import PERIODS, local_midnight
from . import charts
from .auth import COOKIE_NAME
from .common import runtime

bp = Blueprint("pages", __name__)

# (endpoint, path, label) in the order of the navigation bar.
NAVIGATION = (
    ("pages.index", "/", "Vend"),
    ("pages.devices", "/devices", "Devices"),
    ("pages.monitor", "/log", "Log"),
    ("pages.history", "/history", "Transactions"),
    ("pages.stock", "/stock", "Slots"),
    ("pages.reports", "/reports", "Reports"),
)


def navigation() -> tuple[tuple[str, str, str], ...]:
    """The navigation bar, with the fleet view when it is on."""
    if runtime().fleet is not None:
        return (*NAVIGATION, ("fleet.page", "/fleet", "Fleet"))
    return NAVIGATION


def _render(template: str, page: str, **context):
    rt = runtime()
    return render_template(
        template, page=page, navigation=navigation(), keys_hint=rt.config.slots <= 9,
        signed_in=COOKIE_NAME in request.cookies, **context,
    )


@bp.get("/")
def index():
    """Slot buttons: vend and watch each vend's outcome."""
    rt = runtime()
    if rt.fleet is not None and not rt.registry.devices():
        # A fleet server with no board of its own: its front page is the fleet.
        return redirect("/fleet")
    return _render("index.html", "vend", slots=rt.store.slots(rt.config.slots),
                   currency=rt.currency)


@bp.get("/devices")
def devices():
    """Boards, their state, selection and approval."""
    return _render("devices.html", "devices")


@bp.get("/log")
def monitor():
    """The live communication log."""
    return _render("log.html", "log", log_size=runtime().config.log_size)


@bp.get("/history")
def history():
    """Recent vends, with the unknown ones to check."""
    rt = runtime()
    return _render("history.html", "history", slot_count=rt.config.slots)


@bp.get("/stock")
def stock():
    """Slot names, stock, restocking, the planogram and the product catalogue."""
    rt = runtime()
    return _render("stock.html", "stock", slots=rt.store.slots(rt.config.slots),
                   products=rt.sales.products(), currency=rt.currency)


@bp.get("/reports")
def reports():
    """Sales of today, 7 or 30 days: charts, top sellers, idle slots, pick list and refill."""
    rt = runtime()
    period = request.args.get("period") or "today"
    days = {name: back for name, _, back in PERIODS}.get(period)
    if days is None:
        raise BadRequest(f"period must be one of {', '.join(n for n, _, _ in PERIODS)},"
                         f" got {period!r}")
    summary = rt.business.summary(local_midnight(time.time(), days))
    money = rt.currency
    by_product = charts.horizontal_bars(
        [(row["label"], row["value"], money.format(row["value"])) for row in summary["by_product"]],
        "Sales by product")
    by_hour = charts.vertical_bars(summary["hours"], [f"{h:02d}" for h in range(24)],
                                   "Vends by hour of day")
    totals = rt.business.totals()
    last = totals["last_collection"]
    last_collected = time.strftime("%Y-%m-%d %H:%M", time.localtime(last["time"])) if last else ""
    return _render("reports.html", "reports", period=period, periods=PERIODS, summary=summary,
                   money=money, by_product=by_product, by_hour=by_hour, totals=totals,
                   last_collected=last_collected, restock=rt.business.restock())
