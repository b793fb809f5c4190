"""GET /metrics in the Prometheus text format, and the HTTP request counter behind it.

Registered only when metrics are on (--metrics), so prometheus_client is imported only then.
"""

from __future__ import annotations

from flask import Blueprint, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .common import runtime

bp = Blueprint("metrics", __name__)


@bp.after_app_request
def count_request(response: Response) -> Response:
    """Count every answered request by its route rule (not its URL, which is unbounded)."""
    if g.get("poll_parked"):  # a parked board poll's first pass sends nothing
        return response
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    runtime().metrics.http_request(request.method, rule, response.status_code)
    return response


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus scrape endpoint."""
    return Response(generate_latest(runtime().metrics.registry), content_type=CONTENT_TYPE_LATEST)
