"""The operator's page."""

from __future__ import annotations

from flask import Blueprint, render_template

from .common import runtime

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    """The web interface."""
    rt = runtime()
    return render_template("index.html", slots=rt.store.slots(rt.config.slots))
