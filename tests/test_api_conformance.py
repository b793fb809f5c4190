"""The HTTP API against its own OpenAPI document, with schemathesis and every check it has.

One app serves every operation in turn, so state made by one (vends, alerts, pending boards)
is seen by the next, as in real use. Two answers are right although schemathesis cannot
know it, and each is let through deliberately, for its operation only:
- POST /vend/{id}: an Idempotency-Key reused for another slot is refused with 422 (documented),
  though the request on its own is schema-valid;
- POST /esp32/devices/{device_id}/simulate: a fault injected into the simulated board makes
  later vends fail or time out (502/504, documented) - that is the point of the route - so
  the board is put back to normal after each call.
A second, shorter run comes from another address with the operator's Bearer token, as a
script on the shop network would.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

EXAMPLES = 30
REMOTE_EXAMPLES = 5
TOKEN = "conformance-operator-token-0123456789"


def from_address(app: Flask, address: str) -> Callable[..., Any]:
    """The app as a WSGI callable that sees every request come from `address`."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ.setdefault("REMOTE_ADDR", address)
        return app(environ, start_response)

    return wsgi


@pytest.fixture
def api_app(make_app: Callable[..., Flask]) -> Flask:
    # No hold on the earlier firmware's poll: each would otherwise take a second.
    return make_app(sim_motor_time=0.0, vend_timeout=0.5, vend_wait_max=1.0,
                    vend_wait_default=0.5, wifi_legacy_hold=0.0)


@pytest.fixture
def api_schema(api_app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", from_address(api_app, "127.0.0.1"))


@pytest.fixture
def remote_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(sim_motor_time=0.0, vend_timeout=0.5, vend_wait_max=1.0,
                    vend_wait_default=0.5, wifi_legacy_hold=0.0, admin_token=TOKEN)


@pytest.fixture
def remote_schema(remote_app: Flask) -> Any:
    # schemathesis's ignored_auth check sends wrong tokens on purpose; without a higher limit
    # the guard would (rightly, and documented) answer 429 to everything after ten of them.
    remote_app.extensions["vending_auth"].limiter.limit = 10**6
    return schemathesis.openapi.from_wsgi("/openapi.json", from_address(remote_app, "192.168.1.50"),
                                          headers={"Authorization": f"Bearer {TOKEN}"})


schema = schemathesis.pytest.from_fixture("api_schema")
remote = schemathesis.pytest.from_fixture("remote_schema")


def _deliberate_exclusions(case: Any, response: Any) -> list[Any]:
    """Checks that do not apply to this one answer (see the module docstring)."""
    if case.operation.label == "POST /vend/{id}" and response.status_code == 422:
        assert response.json()["error"] == "idempotency_key_reused", response.text
        return [positive_data_acceptance]
    return []


def _call_and_check(case: Any, app: Flask, headers: dict[str, str] | None = None) -> None:
    response = case.call(headers=headers)
    try:
        case.validate_response(response, excluded_checks=_deliberate_exclusions(case, response),
                               headers=headers)
    finally:
        if case.operation.label == "POST /esp32/devices/{device_id}/simulate":
            app.test_client().post("/esp32/devices/SIMULATOR/simulate",
                                   json={"fault": None, "online": True, "motor_time": 0})


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case: Any, api_app: Flask) -> None:
    _call_and_check(case, api_app)


@remote.parametrize()
@settings(max_examples=REMOTE_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says_to_a_remote_client_with_the_token(
        case: Any, remote_app: Flask) -> None:
    _call_and_check(case, remote_app, {"Authorization": f"Bearer {TOKEN}"})
