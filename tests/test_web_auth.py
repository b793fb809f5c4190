"""Operator sign-in, cross-site request protection and security headers."""

from __future__ import annotations

import os
import platform
import stat
from pathlib import Path

import pytest

from vending.web.auth import COOKIE_NAME, CSRF_HEADER, TOKEN_FILE

REMOTE = {"REMOTE_ADDR": "192.168.1.50"}
TOKEN = "operator-token-for-tests-0123456789"


@pytest.fixture
def locked_app(make_app):
    """An app that trusts nobody by address, with a known operator token."""
    return make_app(trust_localhost=False, admin_token=TOKEN, start_threads=False)


def test_the_first_start_writes_a_private_operator_token_and_reuses_it(make_app, tmp_path: Path):
    app = make_app(start_threads=False)
    path = tmp_path / "data" / TOKEN_FILE
    token = path.read_text().strip()
    assert len(token) >= 32
    assert app.extensions["vending_auth"].token == token
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    app.extensions["vending"].stop()  # a restart: one server per data directory
    again = make_app(start_threads=False)
    assert again.extensions["vending_auth"].token == token


def test_the_admin_token_setting_replaces_the_generated_one(make_app, tmp_path: Path):
    app = make_app(admin_token=TOKEN, start_threads=False)
    assert app.extensions["vending_auth"].token == TOKEN
    assert not (tmp_path / "data" / TOKEN_FILE).exists()


def test_a_short_admin_token_is_refused_at_start(make_app):
    with pytest.raises(ValueError, match="at least 16"):
        make_app(admin_token="short")


def test_requests_from_this_machine_need_no_sign_in_by_default(client):
    assert client.get("/").status_code == 200
    assert client.get("/slots").status_code == 200
    assert client.post("/vend/1").status_code == 200


def test_a_client_on_the_network_is_sent_to_the_sign_in_page(make_app):
    client = make_app(start_threads=False).test_client()
    page = client.get("/devices", environ_base=REMOTE, headers={"Accept": "text/html"})
    assert page.status_code == 302
    assert page.headers["Location"] == "/login?next=%2Fdevices"
    api = client.get("/slots", environ_base=REMOTE)
    assert api.status_code == 401
    assert api.get_json()["error"] == "sign_in_required"
    assert client.post("/vend/1", environ_base=REMOTE).status_code == 401


def test_localhost_is_not_trusted_under_a_foreign_host_name(client):
    # DNS rebinding: evil.example resolving to 127.0.0.1 must not inherit the kiosk's trust.
    response = client.get("/slots", headers={"Host": "evil.example:5000"})
    assert response.status_code == 401


def test_localhost_is_trusted_under_the_machines_own_name(client):
    name = platform.node()
    assert client.get("/slots", headers={"Host": f"{name}:5000"}).status_code == 200
    assert client.get("/slots", headers={"Host": f"{name}.local"}).status_code == 200


def test_status_health_and_the_sign_in_page_are_open_to_everyone(locked_app):
    client = locked_app.test_client()
    assert client.get("/status", environ_base=REMOTE).status_code == 200
    assert client.get("/health", environ_base=REMOTE).status_code == 200
    assert client.get("/login", environ_base=REMOTE).status_code == 200
    assert client.get("/static/app.js", environ_base=REMOTE).status_code == 200


def test_the_printed_sign_in_url_sets_a_strict_http_only_session_cookie(locked_app):
    client = locked_app.test_client()
    url = locked_app.extensions["vending_auth"].sign_in_url("")
    response = client.get(url + "&next=/history", environ_base=REMOTE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/history"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(COOKIE_NAME + "=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/slots", environ_base=REMOTE).status_code == 200
    assert client.get("/history", environ_base=REMOTE).status_code == 200


def test_signing_in_never_redirects_to_another_site(locked_app):
    client = locked_app.test_client()
    response = client.post("/login", data={"token": TOKEN, "next": "//evil.example/x"},
                           environ_base=REMOTE)
    assert response.headers["Location"] == "/"


def test_a_forged_session_cookie_is_not_accepted(locked_app):
    client = locked_app.test_client()
    client.set_cookie(COOKIE_NAME, "eyJvcGVyYXRvciI6dHJ1ZX0.forged.signature")
    assert client.get("/slots", environ_base=REMOTE).status_code == 401


def test_api_clients_may_send_the_token_as_a_bearer_header(locked_app):
    client = locked_app.test_client()
    ok = client.get("/slots", environ_base=REMOTE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    bad = client.get("/slots", environ_base=REMOTE, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.get_json()["error"] == "bad_token"


def test_failed_sign_ins_are_rate_limited(locked_app):
    client = locked_app.test_client()
    codes = [client.post("/login", data={"token": f"wrong-{n}"}, environ_base=REMOTE).status_code
             for n in range(12)]
    assert codes[0] == 401
    assert codes[-1] == 429
    # Even the right token waits until the window passes: guessing gains nothing.
    late = client.post("/login", data={"token": TOKEN}, environ_base=REMOTE)
    assert late.status_code == 429
    assert int(late.headers["Retry-After"]) > 0
    # Another address is not punished for this one's guesses.
    other = client.post("/login", data={"token": TOKEN}, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 302


def test_status_does_not_tell_a_guesser_whether_a_bearer_token_is_right(locked_app):
    """/status shows an operator more than anyone else: without the sign-in rate limit, which
    view came back would check a guessed token at full speed."""
    client = locked_app.test_client()
    for n in range(12):
        guess = client.get("/status", environ_base=REMOTE,
                           headers={"Authorization": f"Bearer wrong-{n}"})
        assert guess.status_code == 200 and "devices" not in guess.get_json()
    right = client.get("/status", environ_base=REMOTE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert "devices" not in right.get_json()  # locked out: the right token looks like a wrong one
    elsewhere = client.get("/status", environ_base={"REMOTE_ADDR": "10.0.0.9"},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert "devices" in elsewhere.get_json()


def test_curl_on_this_machine_vends_without_any_header(client):
    # What the README promises: curl -X POST http://localhost:5000/vend/3
    assert client.post("/vend/3").status_code == 200


def test_a_cross_site_post_is_refused_even_from_this_machine(client):
    response = client.post("/vend/1", headers={"Origin": "http://evil.example",
                                               CSRF_HEADER: "1"})
    assert response.status_code == 403
    assert response.get_json()["error"] == "cross_site_request"
    fetch_meta = client.post("/vend/1", headers={"Sec-Fetch-Site": "cross-site"})
    assert fetch_meta.status_code == 403


def test_a_browser_post_without_the_request_header_is_refused(client):
    response = client.post("/vend/1", headers={"Origin": "http://localhost"})
    assert response.status_code == 403
    assert response.get_json()["error"] == "csrf_header_missing"
    ok = client.post("/vend/1", headers={"Origin": "http://localhost", CSRF_HEADER: "1"})
    assert ok.status_code == 200


def test_a_signed_in_browser_needs_the_request_header_to_change_anything(locked_app):
    client = locked_app.test_client()
    client.post("/login", data={"token": TOKEN}, environ_base=REMOTE)
    bare = client.post("/esp32/devices/auto-select", environ_base=REMOTE)
    assert bare.status_code == 403
    ok = client.post("/esp32/devices/auto-select", environ_base=REMOTE,
                     headers={CSRF_HEADER: "1"})
    assert ok.status_code == 200


def test_signing_out_forgets_the_session(locked_app):
    client = locked_app.test_client()
    client.post("/login", data={"token": TOKEN}, environ_base=REMOTE)
    assert client.get("/slots", environ_base=REMOTE).status_code == 200
    client.post("/logout", environ_base=REMOTE)
    assert client.get("/slots", environ_base=REMOTE).status_code == 401


@pytest.mark.parametrize("path", ["/", "/slots", "/login", "/static/style.css", "/nowhere"])
def test_every_response_carries_the_security_headers(client, path):
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_pages_have_no_inline_script(client):
    for path in ("/", "/devices", "/log", "/history", "/stock", "/login"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>" not in html and "onclick=" not in html and "style=" not in html, path


def test_every_route_is_described_in_the_openapi_document(app):
    spec = app.test_client().get("/openapi.json").get_json()["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            documented = [p for p in spec if p.count("{") == path.count("{")
                          and p.split("{")[0] == path.split("{")[0]]
            assert any(method.lower() in spec[p] for p in documented), f"{method} {rule.rule}"
