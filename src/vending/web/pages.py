"""The operator's pages: server-rendered shells that small scripts keep up to date."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request

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
    return _render("index.html", "vend", slots=rt.store.slots(rt.config.slots))


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
    """Slot names, stock and restocking."""
    rt = runtime()
    return _render("stock.html", "stock", slots=rt.store.slots(rt.config.slots))
