"""HTTP layer: blueprints that reach the controller only through app.extensions."""

from __future__ import annotations

from flask import Flask

from ..errors import NotFound


def init_app(app: Flask) -> None:
    """Register error handlers, the operator guard and every blueprint."""
    from . import api, auth, boards, business, devices, errors, fleet, openapi, operations, pages
    from .fastpath import PolledEndpoints

    errors.init_app(app)
    auth.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(devices.bp)
    app.register_blueprint(boards.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(fleet.bp)
    app.register_blueprint(business.bp)
    if app.extensions["vending"].config.metrics:
        from . import metrics

        app.register_blueprint(metrics.bp)
    else:
        app.add_url_rule("/metrics", "metrics_off", _metrics_off)
    app.wsgi_app = PolledEndpoints(app)  # type: ignore[method-assign]


def _metrics_off() -> None:
    raise NotFound("metrics are off: start with --metrics (or VENDING_METRICS=1) to serve them")
