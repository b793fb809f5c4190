"""Security: strangers change nothing, forged origins and oversized bodies are refused early.

Every state-changing route is taken from the app's url_map, so a route added later is
covered without editing this file. Covered elsewhere, not repeated here:
- a board's forged, replayed or altered request gets 401 and changes nothing:
  tests/test_wifi.py::test_forged_replayed_and_altered_requests_get_401_and_change_nothing
  (and ::test_a_board_cannot_confirm_another_boards_command);
- a rogue discovery reply is ignored by the simulated board:
  tests/test_wifi.py::test_the_signed_discovery_reply_verifies_and_a_reply_with_a_bad_mac_is_rejected;
- sign-in brute force on the sign-in page gets 429:
  tests/test_web_auth.py::test_failed_sign_ins_are_rate_limited (the Bearer header is below).
"""

from __future__ import annotations

import re
import socket
from typing import Any, Callable

import pytest
from flask import Flask
from helpers import wait_until
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Rule

from vending.serving import BackgroundServer
from vending.web.auth import CSRF_HEADER, EXEMPT_BLUEPRINTS, PUBLIC_ENDPOINTS, UNSAFE_METHODS
from vending.web.openapi import OPEN_PATHS

REMOTE = {"REMOTE_ADDR": "192.168.1.50"}
TOKEN = "security-test-operator-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

# A request each state-changing route would accept from an operator, so a refusal below is
# the guard's doing and not a bad body's.
BODIES: dict[str, Any] = {
    "api.update_slot": {"name": "Changed", "stock": 3},
    "api.restock_slot": {"quantity": 5},
    "api.check_transaction": {"note": "looked at it"},
    "devices.select_device": {"device_id": "SIMULATOR"},
    "devices.simulate": {"fault": "jam"},
    "operations.set_low_stock_level": {"level": 7},
    "business.add_product": {"name": "Water", "default_price": 150},
    "business.change_product": {"default_price": 175},
    "business.refill": {"slots": [1]},
    "business.collect": {"note": "cash box emptied"},
}
# Routes anyone may call: boards sign their own requests (or, protocol 1, are approved by
# an operator before they get a vend); signing in and out needs no operator.
OPEN_BY_DESIGN = {"auth.login", "auth.logout", "boards.legacy_register", "boards.legacy_confirm",
                  "boards.legacy_data", "boards.pair", "boards.register", "boards.confirm"}
VOLATILE = {"uptime", "last_seen", "updated_at"}


def _url(app: Flask, rule: Rule, txn_id: str) -> str:
    values = {"slot": "1", "number": 1, "transaction_id": txn_id, "device_id": "SIMULATOR",
              "alert_id": 1, "filename": "style.css", "machine_id": "m1", "product_id": 1}
    with app.test_request_context():
        return app.url_for(rule.endpoint, **{name: values[name] for name in rule.arguments})


def _unsafe_routes(app: Flask) -> list[tuple[str, str, Rule]]:
    """(endpoint, method, rule) for every route that can change something."""
    return sorted(((rule.endpoint, method, rule) for rule in app.url_map.iter_rules()
                   for method in rule.methods & UNSAFE_METHODS), key=lambda item: item[:2])


def _guarded(app: Flask) -> list[tuple[str, str, Rule]]:
    return [(endpoint, method, rule) for endpoint, method, rule in _unsafe_routes(app)
            if endpoint.split(".")[0] not in EXEMPT_BLUEPRINTS and endpoint not in PUBLIC_ENDPOINTS]


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _snapshot(app: Flask) -> dict[str, Any]:
    """What an operator sees, read as the machine itself; timestamps that tick are left out."""
    client = app.test_client()
    headers = BEARER  # works whether or not this machine is trusted
    return {path: _strip(client.get(path, headers=headers).get_json()) for path in (
        "/status", "/transactions", "/slots", "/esp32/devices/list", "/alerts/low-stock",
        "/alerts", "/esp32/communication/mode", "/products", "/collections",
        "/reports/sales", "/reports/restock")}


@pytest.fixture
def secured(make_app: Callable[..., Flask]) -> Callable[..., tuple[Flask, str]]:
    """An app with a known token, one finished vend and one open alert to act on."""

    def build(**overrides: Any) -> tuple[Flask, str]:
        app = make_app(admin_token=TOKEN, sim_motor_time=0.0, **overrides)
        client = app.test_client()
        txn = client.post("/vend/2?wait=5", headers=BEARER).get_json()
        client.patch("/slots/3", json={"stock": 0}, headers=BEARER)  # raises a sold-out alert
        # A product in slot 2 and one in no slot, so changing or deleting product 1 would work.
        client.post("/products", json={"name": "Water", "default_price": 150}, headers=BEARER)
        client.patch("/slots/1", json={"capacity": 10, "stock": 2}, headers=BEARER)
        # Both alerts, or the low-stock one may land after a test's "before" snapshot.
        wait_until(lambda: client.get("/alerts", headers=BEARER).get_json()["active_count"] >= 2,
                   message="the sold-out and low-stock alerts")
        return app, txn["transaction_id"]

    return build


def test_the_state_changing_routes_are_found_and_only_the_intended_ones_are_open(secured):
    app, _ = secured()
    routes = _unsafe_routes(app)
    guarded = _guarded(app)
    assert len(guarded) >= 12
    assert {endpoint for endpoint, _, _ in routes} - {e for e, _, _ in guarded} == OPEN_BY_DESIGN


def test_the_openapi_document_marks_exactly_the_routes_the_guard_leaves_open(secured):
    app, _ = secured()
    open_paths = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        if rule.endpoint.split(".")[0] in EXEMPT_BLUEPRINTS or rule.endpoint in PUBLIC_ENDPOINTS:
            open_paths.add(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
    assert open_paths == set(OPEN_PATHS)
    spec = app.test_client().get("/openapi.json", headers=BEARER).get_json()["paths"]
    for path, operations in spec.items():
        for method, operation in operations.items():
            if path in OPEN_PATHS:
                assert operation["security"] == [], (method, path)
            else:
                assert {"401", "429"} <= set(operation["responses"]), (method, path)


@pytest.mark.parametrize("who", ["a client on the shop network", "this machine, not trusted"])
def test_every_state_changing_route_refuses_a_client_without_credentials_and_changes_nothing(
        secured, who):
    if who == "this machine, not trusted":
        app, txn_id = secured(trust_localhost=False)
        environ = {"REMOTE_ADDR": "127.0.0.1"}
    else:
        app, txn_id = secured()
        environ = REMOTE
    before = _snapshot(app)
    client = app.test_client()
    for endpoint, method, rule in _guarded(app):
        response = client.open(_url(app, rule, txn_id), method=method, environ_base=environ,
                               json=BODIES.get(endpoint, {}))
        assert response.status_code in (401, 403), (endpoint, response.status_code)
        assert set(response.get_json()) == {"error", "detail"}
        # A cookie-less browser header must not open the door either.
        browser = client.open(_url(app, rule, txn_id), method=method, environ_base=environ,
                              json=BODIES.get(endpoint, {}), headers={CSRF_HEADER: "1"})
        assert browser.status_code in (401, 403), (endpoint, browser.status_code)
    assert _snapshot(app) == before


def test_a_forged_origin_is_refused_on_every_state_changing_route_even_with_the_token(secured):
    app, txn_id = secured()
    before = _snapshot(app)
    client = app.test_client()
    forged = {"Origin": "http://evil.example", CSRF_HEADER: "1"}
    for endpoint, method, rule in _guarded(app):
        for environ, headers in (({"REMOTE_ADDR": "127.0.0.1"}, forged),
                                 (REMOTE, {**forged, **BEARER})):
            response = client.open(_url(app, rule, txn_id), method=method, environ_base=environ,
                                   json=BODIES.get(endpoint, {}), headers=headers)
            assert response.status_code == 403, (endpoint, environ, response.status_code)
            assert response.get_json()["error"] == "cross_site_request"
    assert _snapshot(app) == before


def test_get_on_every_state_changing_route_gets_405_in_json(secured):
    app, txn_id = secured()
    adapter = app.url_map.bind("localhost")
    client = app.test_client()
    checked = 0
    for endpoint, method, rule in _unsafe_routes(app):
        url = _url(app, rule, txn_id)
        try:
            adapter.match(url, method="GET")
            continue  # the same URL is also a read-only route (GET /vend/<id>)
        except (MethodNotAllowed, NotFound):
            pass
        for environ, headers in (({"REMOTE_ADDR": "127.0.0.1"}, {}), (REMOTE, BEARER)):
            response = client.get(url, environ_base=environ, headers=headers)
            assert response.status_code == 405, (endpoint, response.status_code)
            assert response.get_json()["error"] == "method_not_allowed"
            assert method in response.headers["Allow"]
        checked += 1
    assert checked >= 18


def test_guessing_the_bearer_token_is_rate_limited_and_the_right_token_then_waits_too(secured):
    app, _ = secured()
    client = app.test_client()
    codes = [client.get("/slots", environ_base=REMOTE,
                        headers={"Authorization": f"Bearer guess-{n}"}).status_code
             for n in range(12)]
    assert codes[0] == 401 and codes[-1] == 429
    late = client.get("/slots", environ_base=REMOTE, headers=BEARER)
    assert late.status_code == 429 and int(late.headers["Retry-After"]) > 0
    assert client.get("/slots", environ_base={"REMOTE_ADDR": "10.0.0.9"},
                      headers=BEARER).status_code == 200


def test_a_body_over_the_limit_is_refused_before_a_handler_that_never_reads_it(secured):
    app, _ = secured()
    before = _snapshot(app)
    response = app.test_client().post("/vend/1", data=b"x" * (10 * 1024 * 1024),
                                      content_type="application/octet-stream")
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert _snapshot(app) == before


def _raw_exchange(port: int, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Send a request's head then its body, tolerating the server closing early; the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole body was read: what we want
        answer = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, socket.timeout):
            pass
        return answer


@pytest.fixture
def served(secured) -> Any:
    app, _ = secured()
    server = BackgroundServer(app).start()
    yield app, server
    server.stop()


def test_a_10_mb_body_gets_413_from_the_real_server_and_no_vend_happens(served):
    app, server = served
    before = _snapshot(app)
    size = 10 * 1024 * 1024
    head = (f"POST /vend/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    answer = _raw_exchange(server.port, head, [b"x" * 65536] * (size // 65536))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert _snapshot(app) == before


def test_a_chunked_body_without_content_length_gets_413_from_the_real_server(served):
    app, server = served
    before = _snapshot(app)
    head = (b"POST /vend/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (32768, b"x" * 32768)
    answer = _raw_exchange(server.port, head, [chunk] * 320 + [b"0\r\n\r\n"])  # 10 MiB
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert _snapshot(app) == before


def test_every_route_and_error_answers_with_the_security_headers(secured):
    app, txn_id = secured()
    client = app.test_client()
    responses = []
    for rule in app.url_map.iter_rules():
        url = _url(app, rule, txn_id)
        for method in sorted(rule.methods - {"OPTIONS"}):
            for environ in ({"REMOTE_ADDR": "127.0.0.1"}, REMOTE):
                responses.append((f"{method} {url}", client.open(
                    url, method=method, environ_base=environ,
                    json=BODIES.get(rule.endpoint, {}) if method in UNSAFE_METHODS else None)))
    responses.append(("404", client.get("/nowhere")))
    responses.append(("405", client.get("/esp32/devices/select")))
    responses.append(("413", client.post("/vend/1", data=b"x" * (1024 * 1024))))
    statuses = set()
    for label, response in responses:
        statuses.add(response.status_code)
        csp = response.headers.get("Content-Security-Policy", "")
        script = next((part for part in csp.split(";") if part.strip().startswith("script-src")),
                      "")
        assert "'self'" in script and "unsafe-inline" not in csp, label
        assert "frame-ancestors 'none'" in csp, label
        assert response.headers.get("X-Content-Type-Options") == "nosniff", label
        assert response.headers.get("X-Frame-Options") == "DENY", label
    assert {200, 401, 404, 405, 413} <= statuses
