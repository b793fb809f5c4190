"""WiFi boards end to end over real UDP and HTTP sockets on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import stat
import sys
import threading
from typing import Any

import pytest
import requests
from helpers import wait_until
from wifi_fixtures import Interceptor, WifiEnv, start_env

from vending.protocol import wifi as proto
from vending.serving import BackgroundServer
from vending.sim.wifi import WifiBoard


def _udp(port: int, payload: bytes, timeout: float = 1.0) -> bytes | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.sendto(payload, ("127.0.0.1", port))
        return sock.recvfrom(512)[0]
    except socket.timeout:
        return None
    finally:
        sock.close()


def _signed(env: WifiEnv, board: WifiBoard, method: str, target: str, body: Any = None,
            counter: int | None = None, secret: bytes | None = None,
            raw: bytes | None = None) -> requests.Response:
    """A hand-made signed request, so tests can replay or alter it."""
    if raw is None:
        raw = json.dumps(body).encode() if body is not None else b""
    if counter is None:
        board.seq += 1
        counter = (board.boot << 32) | board.seq
    key = secret if secret is not None else board.secret
    assert key is not None
    headers = {proto.HEADER_DEVICE: board.device_id, proto.HEADER_COUNTER: str(counter),
               proto.HEADER_SIGNATURE: proto.sign_request(key, method, target, board.device_id,
                                                          counter, raw),
               "Content-Type": "application/json"}
    return requests.request(method, env.url + target, data=raw or None, headers=headers, timeout=5)


# Discovery


def test_both_discovery_forms_answer_with_the_address_facing_the_requester(wifi):
    env = wifi()
    assert _udp(env.discovery_port, b"DISCOVER_FLASK_SERVER") == b"FLASK_SERVER_IP:127.0.0.1"
    assert _udp(env.discovery_port, b"ESP32_DISCOVERY_REQUEST") == b"FLASK_SERVER:127.0.0.1"


def test_garbage_oversized_and_flooding_packets_are_ignored_and_the_thread_keeps_answering(wifi):
    env = wifi()
    assert _udp(env.discovery_port, b"\xff\x00garbage", timeout=0.2) is None
    assert _udp(env.discovery_port, b"DISCOVER_FLASK_SERVER" * 100, timeout=0.2) is None
    assert _udp(env.discovery_port, b"VENDING_DISCOVER_V2 x nothex", timeout=0.2) is None
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flood.settimeout(0.3)
    replies = 0
    try:
        for _ in range(200):
            flood.sendto(b"DISCOVER_FLASK_SERVER", ("127.0.0.1", env.discovery_port))
        while True:
            flood.recvfrom(512)
            replies += 1
    except socket.timeout:
        pass
    finally:
        flood.close()
    assert replies < 50, "a flood from one sender must be rate-limited"
    assert env.rt.discovery.ignored > 150
    # Another sender (a fresh socket has the same address, so wait for the bucket to refill).
    assert wait_until(lambda: _udp(env.discovery_port, b"DISCOVER_FLASK_SERVER", timeout=0.3),
                      timeout=5) == b"FLASK_SERVER_IP:127.0.0.1"


def test_the_signed_discovery_reply_verifies_and_a_reply_with_a_bad_mac_is_rejected(wifi):
    env = wifi()
    board = env.online(env.board())
    assert board.secret is not None
    assert board.discover(timeout=1.0) == ("127.0.0.1", int(env.server.port))
    assert "signed reply verified" in board.events[-1]

    rogue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rogue.bind(("127.0.0.1", 0))

    def answer_badly() -> None:
        data, addr = rogue.recvfrom(512)
        nonce = data.decode().split(" ")[2]
        forged = proto.auth_reply(b"\x01" * 32, board.device_id, "127.0.0.66", 80, nonce)
        rogue.sendto(forged, addr)

    thread = threading.Thread(target=answer_badly, name="rogue-server")
    thread.start()
    probe = WifiBoard(board.device_id, secret=board.secret,
                      discovery_target=rogue.getsockname())
    try:
        assert probe.discover(timeout=1.0) is None
        assert any("bad MAC" in event for event in probe.events)
    finally:
        thread.join(5)
        rogue.close()


# Pairing, approval, vending


def test_a_simulated_board_discovers_registers_is_approved_and_vends_over_wifi(wifi):
    env = wifi()
    board = env.board()
    wait_until(lambda: env.status(board.device_id) == "pending_approval", message="pending")
    listed = requests.get(f"{env.url}/esp32/devices/list", timeout=5).json()["devices"]
    assert listed[0]["approved"] is False and listed[0]["protocol"] == 2
    env.online(board)
    response = env.vend(2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success" and body["communication"] == "wifi"
    assert body["device_id"] == board.device_id
    assert [run.slot for run in board.motor_runs] == [2]
    info = env.device(board.device_id).info()
    assert info["approved"] is True and info["authenticated"] is True


def test_an_unapproved_board_gets_no_vends(wifi):
    env = wifi()
    board = env.board()
    legacy = env.board(legacy=True)
    wait_until(lambda: env.status(board.device_id) == "pending_approval"
               and env.status(legacy.device_id) == "pending_approval", message="both pending")
    response = env.vend(1)
    assert response.status_code == 503
    assert response.json()["error"] == "no_device_available"
    assert board.motor_runs == [] and legacy.motor_runs == []


def test_auto_approve_lets_new_boards_vend_without_an_operator(wifi):
    env = wifi(auto_approve_devices=True)
    board = env.board()
    wait_until(lambda: env.status(board.device_id) == "online", message="online")
    assert env.vend(3).json()["status"] == "success"


def test_approval_survives_a_restart_and_the_secret_file_is_private(wifi, tmp_path):
    env = wifi()
    board = env.online(env.board())
    key_file = tmp_path / "data" / "device-keys" / f"{board.device_id}.key"
    assert key_file.exists()
    if sys.platform != "win32":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    record = env.rt.wifi.keys.get(board.device_id)
    assert record is not None and record.approved


def test_revoking_a_board_stops_its_vends_and_makes_it_pair_again(wifi, tmp_path):
    env = wifi()
    board = env.online(env.board())
    key_file = tmp_path / "data" / "device-keys" / f"{board.device_id}.key"
    response = requests.post(f"{env.url}/esp32/devices/{board.device_id}/revoke", timeout=5)
    assert response.json()["device"]["status"] == "pending_approval"
    assert env.vend(1).status_code == 503
    assert board.motor_runs == []
    wait_until(lambda: any("revoked by the server (signed answer)" in e for e in board.events),
               message="the board told it is revoked")
    wait_until(lambda: any("pairing again" in e for e in board.events), message="re-pairing")
    wait_until(lambda: not key_file.exists(), message="the server's copy of the key deleted")
    assert not any("keeping the key" in e for e in board.events)  # the first 401 was believed
    wait_until(lambda: env.device(board.device_id).fingerprint == board.fingerprint,
               message="the board asking to pair with a new key")
    env.online(board)
    assert env.vend(2).json()["status"] == "success"
    assert [run.slot for run in board.motor_runs] == [2]


def test_the_revoked_answer_is_signed_with_the_old_key_and_only_the_first_one_gets_it(wifi, tmp_path):
    env = wifi()
    board = env.online(env.board())
    board.request_stop()  # this test speaks for the board
    requests.post(f"{env.url}/esp32/devices/{board.device_id}/revoke", timeout=5)
    board.stop()  # the revoke ended its held poll; it makes no further request
    secret = board.secret
    assert secret is not None
    key_file = tmp_path / "data" / "device-keys" / f"{board.device_id}.key"
    assert key_file.exists()  # kept until the board has been told
    assert env.rt.wifi.secret_for(board.device_id) == secret  # so a restarted board finds us

    forged = _signed(env, board, "GET", "/esp32/v2/commands?wait=0", secret=b"\x02" * 32)
    assert forged.status_code == 401 and forged.json()["error"] == "unauthorized"
    assert proto.HEADER_SIGNATURE not in forged.headers and key_file.exists()

    board.seq += 1
    counter = (board.boot << 32) | board.seq
    told = _signed(env, board, "GET", "/esp32/v2/commands?wait=0", counter=counter)
    assert told.status_code == 401 and told.json()["error"] == "revoked", told.text
    signature = told.headers[proto.HEADER_SIGNATURE]
    assert signature == proto.sign_response(secret, board.device_id, counter, 401, told.content)
    assert proto.is_revoked_answer(secret, board.device_id, counter, 401, told.content, signature)
    assert not key_file.exists()
    record = env.rt.wifi.keys.get(board.device_id)
    assert record is not None and not record.approved and record.last_counter == 0

    again = _signed(env, board, "GET", "/esp32/v2/commands?wait=0")
    assert again.status_code == 401 and again.json()["error"] == "unauthorized"
    assert proto.HEADER_SIGNATURE not in again.headers
    assert env.rt.wifi.secret_for(board.device_id) is None


@pytest.mark.parametrize("attack", ["unsigned", "forged"])
def test_a_401_not_signed_with_the_board_key_never_makes_it_forget_the_key(wifi, attack):
    env = wifi()
    interceptor = Interceptor(("127.0.0.1", int(env.server.port)))
    try:
        assert env.rt.discovery is not None
        env.rt.discovery.http_port = interceptor.port  # the board reaches us through it
        board = env.online(env.board(retry_max=0.5))
        secret = board.secret
        assert env.vend(1).json()["status"] == "success"

        interceptor.set_mode(attack)  # someone on the WiFi answers 401 "revoked" for us
        wait_until(lambda: interceptor.answered >= 6, timeout=15, message="several 401s")
        assert board.secret == secret and env.rt.wifi.keys.secret(board.device_id) == secret
        assert any("keeping the key" in e and "UNPAIR" in e for e in board.events)
        assert not any("pairing again" in e or "forgetting" in e for e in board.events)

        interceptor.set_mode("forward")
        wait_until(lambda: env.status(board.device_id) == "online"
                   and env.device(board.device_id).polls_held > 0, timeout=15,
                   message="the board back with the real server")
        assert env.vend(2).json()["status"] == "success"
        assert [run.slot for run in board.motor_runs] == [1, 2]
        assert board.secret == secret
    finally:
        env.close()
        interceptor.close()


def test_a_board_revoked_while_off_is_told_after_a_server_restart_and_its_own_reboot(make_app):
    first = start_env(make_app)
    board = first.online(first.board())
    board.request_stop()
    requests.post(f"{first.url}/esp32/devices/{board.device_id}/revoke", timeout=5)
    board.stop()  # the revoke ended its held poll; it makes no further request
    assert first.rt.wifi.keys.secret(board.device_id) == board.secret
    first.rt.stop()
    first.server.stop()

    second = start_env(make_app)
    try:
        board.discovery_target = ("127.0.0.1", second.discovery_port)
        board.reboot()  # forgets the server: it must find it by the signed discovery reply
        second.boards.append(board.start())
        wait_until(lambda: any("revoked by the server (signed answer)" in e for e in board.events),
                   timeout=10, message="the board told it is revoked")
        assert any("signed reply verified" in e for e in board.events)
        wait_until(lambda: second.status(board.device_id) == "pending_approval"
                   and second.device(board.device_id).fingerprint == board.fingerprint,
                   message="the board asking to pair again")
    finally:
        second.close()


def test_unpair_forgets_the_key_and_the_board_pairs_again(wifi):
    env = wifi()
    board = env.online(env.board())
    old = board.secret
    requests.post(f"{env.url}/esp32/devices/{board.device_id}/revoke", timeout=5)
    board.unpair()  # the person at the console, e.g. the server was told to revoke it meanwhile
    wait_until(lambda: env.device(board.device_id).fingerprint == board.fingerprint
               and board.fingerprint is not None, message="asking to pair with a new key")
    env.online(board)
    assert board.secret != old
    assert env.vend(3).json()["status"] == "success"


def test_rejecting_a_pending_board_forgets_it(wifi):
    env = wifi()
    board = env.board(legacy=True)
    wait_until(lambda: env.device(board.device_id) is not None)
    board.stop()
    response = requests.post(f"{env.url}/esp32/devices/{board.device_id}/reject", timeout=5)
    assert response.status_code == 200
    assert env.device(board.device_id) is None
    assert env.rt.wifi.keys.get(board.device_id) is None


# Exactly once


def test_five_vends_queued_back_to_back_are_all_delivered_in_order_each_exactly_once(wifi):
    env = wifi()
    board = env.online(env.board())
    ids = []
    for slot in (1, 2, 3, 4, 5):
        response = requests.post(f"{env.url}/vend/{slot}?wait=0", timeout=5)
        assert response.status_code in (200, 202), response.text
        ids.append(response.json()["transaction_id"])
    wait_until(lambda: all(env.rt.store.get(i).state == "success" for i in ids), timeout=10,
               message="all five vends to succeed")
    assert [run.request_id for run in board.motor_runs] == ids
    assert [run.slot for run in board.motor_runs] == [1, 2, 3, 4, 5]


def test_a_dropped_command_response_is_delivered_again_with_the_same_id_and_runs_once(wifi):
    env = wifi()
    board = env.online(env.board())
    board.drop_responses = 1
    response = env.vend(4)
    assert response.json()["status"] == "success"
    txn_id = response.json()["transaction_id"]
    assert any(f"dropped the response carrying {txn_id}" in e for e in board.events)
    assert [run.request_id for run in board.motor_runs] == [txn_id]


def test_a_confirm_repeated_is_accepted_and_a_conflicting_one_gets_409(wifi):
    env = wifi()
    board = env.online(env.board())
    txn_id = env.vend(1).json()["transaction_id"]
    again = _signed(env, board, "POST", "/esp32/v2/confirm", {"id": txn_id, "result": "success"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    conflict = _signed(env, board, "POST", "/esp32/v2/confirm", {"id": txn_id, "result": "failed"})
    assert conflict.status_code == 409
    assert env.rt.store.get(txn_id).state == "success"


def test_a_vend_delivered_before_a_server_restart_is_unknown_until_the_board_confirms(
        make_app, tmp_path):
    first = start_env(make_app)
    board = first.online(first.board())
    board.confirm_gate.clear()  # the board runs the motor, then the server dies
    response = first.vend(2, wait=0)
    txn_id = response.json()["transaction_id"]
    wait_until(lambda: board.motor_runs, message="the motor to run")
    assert first.rt.store.get(txn_id).state == "sent"
    first.rt.stop()
    first.server.stop()

    second = start_env(make_app)
    try:
        assert second.rt.store.get(txn_id).state == "unknown"
        # Where rediscovery would find the new server.
        board.discovery_target = ("127.0.0.1", second.discovery_port)
        board.server = ("127.0.0.1", int(second.server.port))
        board.confirm_gate.set()
        wait_until(lambda: second.rt.store.get(txn_id).state == "success", timeout=10,
                   message="the board's confirm to settle the vend")
        assert len(board.motor_runs) == 1
        assert second.rt.store.get(txn_id).message.startswith("settled by the board")
    finally:
        board.stop()
        second.close()


def test_a_board_that_reboots_reconciles_a_vend_the_server_holds_as_unknown(wifi):
    env = wifi(vend_timeout=0.5)
    board = env.online(env.board())
    board.confirm_gate.clear()
    txn_id = env.vend(2, wait=3).json()["transaction_id"]
    assert env.rt.store.get(txn_id).state == "unknown"
    board.outbox.clear()  # the confirmation was lost with the reboot
    board.reboot()
    board.confirm_gate.set()
    wait_until(lambda: env.rt.store.get(txn_id).state == "success", timeout=10,
               message="reconciliation at register")
    assert len(board.motor_runs) == 1


# Offline


def test_a_board_that_stops_polling_goes_offline_and_its_queued_vend_fails_unsent(wifi):
    env = wifi(wifi_offline_after=0.5)
    board = env.online(env.board(poll_wait=0.2))
    board.drop_network()
    wait_until(lambda: env.status(board.device_id) == "offline", message="offline")
    assert env.vend(1).status_code == 503
    board.restore_network()
    wait_until(lambda: env.status(board.device_id) == "online", message="back online")
    assert env.vend(1).json()["status"] == "success"


def test_a_vend_queued_for_a_board_that_goes_silent_fails_with_a_clear_message(wifi):
    env = wifi(wifi_offline_after=0.5, wifi_poll_hold=0.2)
    board = env.online(env.board(poll_wait=0.2))
    board.drop_network()
    wait_until(lambda: env.device(board.device_id).polls_held == 0, message="last poll to end")
    response = env.vend(3, wait=5)
    body = response.json()
    assert body["status"] == "failed" and body["reason"] == "offline"
    assert "not dispensed" in body["message"]
    assert body["sent_at"] is None and board.motor_runs == []


def test_a_vend_queued_for_a_silent_board_fails_over_to_another_board(wifi):
    env = wifi(wifi_offline_after=0.5)
    silent = env.online(env.board(poll_wait=0.2))
    other = env.online(env.board(poll_wait=0.2))
    requests.post(f"{env.url}/esp32/devices/select", json={"device_id": silent.device_id}, timeout=5)
    silent.drop_network()
    wait_until(lambda: env.device(silent.device_id).polls_held == 0, message="last poll to end")
    body = env.vend(2, wait=5).json()
    assert body["status"] == "success" and body["device_id"] == other.device_id
    assert silent.motor_runs == [] and len(other.motor_runs) == 1


# Authentication


def test_forged_replayed_and_altered_requests_get_401_and_change_nothing(wifi):
    env = wifi()
    board = env.online(env.board(poll_wait=0.3))
    board.stop()  # the test speaks for the board from here on
    txn_id = env.vend(1, wait=0).json()["transaction_id"]
    wait_until(lambda: env.device(board.device_id).status != "online"
               or env.rt.store.get(txn_id).state == "pending", message="vend queued")
    counter = (board.boot << 32) | (board.seq + 1000)
    register = {"device_id": board.device_id, "protocol": 2}
    ok = _signed(env, board, "POST", "/esp32/v2/register", register, counter=counter)
    assert ok.status_code == 200
    # Replay: the same bytes, the same counter.
    assert _signed(env, board, "POST", "/esp32/v2/register", register,
                   counter=counter).status_code == 401
    # Forged: signed with a key that is not the board's.
    forged = _signed(env, board, "POST", "/esp32/v2/confirm", {"id": txn_id, "result": "success"},
                     counter=counter + 1, secret=b"\x02" * 32)
    assert forged.status_code == 401
    # Altered: signed over one body, sent with another.
    sig_body = json.dumps({"id": txn_id, "result": "failed"}).encode()
    headers = {proto.HEADER_DEVICE: board.device_id, proto.HEADER_COUNTER: str(counter + 2),
               proto.HEADER_SIGNATURE: proto.sign_request(board.secret, "POST", "/esp32/v2/confirm",
                                                          board.device_id, counter + 2, sig_body)}
    altered = requests.post(env.url + "/esp32/v2/confirm", headers=headers, timeout=5,
                            data=json.dumps({"id": txn_id, "result": "success"}).encode())
    assert altered.status_code == 401
    # No headers at all.
    assert requests.get(env.url + "/esp32/v2/commands", timeout=5).status_code == 401
    assert env.rt.store.get(txn_id).state in ("pending", "failed")
    assert env.rt.wifi.keys.get(board.device_id).last_counter == counter


def test_a_board_cannot_confirm_another_boards_command(wifi):
    env = wifi()
    first = env.online(env.board())
    second = env.online(env.board())
    requests.post(f"{env.url}/esp32/devices/select", json={"device_id": first.device_id}, timeout=5)
    first.confirm_gate.clear()
    txn_id = env.vend(5, wait=0).json()["transaction_id"]
    wait_until(lambda: first.motor_runs, message="first board runs the vend")
    stolen = _signed(env, second, "POST", "/esp32/v2/confirm", {"id": txn_id, "result": "failed"})
    assert stolen.status_code == 403
    assert env.rt.store.get(txn_id).state == "sent"
    first.confirm_gate.set()
    wait_until(lambda: env.rt.store.get(txn_id).state == "success")


def test_a_stranger_speaking_the_earlier_protocol_cannot_take_a_paired_boards_vend(wifi):
    env = wifi()
    board = env.online(env.board(poll_wait=0.3))
    stolen = requests.get(f"{env.url}/esp32/commands/{board.device_id}", timeout=3)
    assert stolen.status_code == 401
    hijack = requests.post(f"{env.url}/esp32/register", json={"device_id": board.device_id},
                           timeout=3)
    assert hijack.status_code == 401
    assert env.device(board.device_id).info()["protocol"] == 2
    assert env.vend(1).json()["status"] == "success"
    assert len(board.motor_runs) == 1


def test_a_stranger_cannot_re_pair_an_approved_legacy_board(wifi):
    env = wifi()
    board = env.online(env.board(legacy=True))
    pair = requests.post(f"{env.url}/esp32/v2/pair", timeout=3,
                         json={"device_id": board.device_id, "public_key": "ab" * 32})
    assert pair.status_code == 401
    assert env.device(board.device_id).info()["protocol"] == 1


def test_answers_to_signed_requests_are_signed_by_the_server(wifi):
    env = wifi()
    board = env.online(env.board(poll_wait=0.3))
    board.stop()
    counter = (board.boot << 32) | (board.seq + 500)
    response = _signed(env, board, "GET", "/esp32/v2/commands?wait=0", counter=counter)
    assert response.status_code == 200
    expected = proto.sign_response(board.secret, board.device_id, counter, 200, response.content)
    assert response.headers[proto.HEADER_SIGNATURE] == expected
    assert not proto.check_signature(proto.sign_response(
        board.secret, board.device_id, counter, 200, response.content + b" "), expected)


# Earlier firmware


def test_a_legacy_board_discovers_registers_polls_and_vends(wifi):
    env = wifi()
    board = env.online(env.board(legacy=True))
    assert "discovered server 127.0.0.1 (legacy)" in board.events
    info = env.device(board.device_id).info()
    assert info["protocol"] == 1 and info["authenticated"] is False
    response = env.vend(3)
    assert response.json()["status"] == "success", response.text
    assert [run.slot for run in board.motor_runs] == [3]


def test_the_earlier_firmware_requests_are_answered_as_it_expects(wifi):
    env = wifi(wifi_legacy_hold=0.0, auto_approve_devices=True)
    assert "vending" in requests.get(env.url + "/status", timeout=3).text
    register = requests.post(env.url + "/esp32/register", timeout=3, data=(
        b'{"device_id":"ESP32_246F28A1B2C3","ip_address":"192.168.1.50","status":"ready",'
        b'"slots_available":5}'), headers={"Content-Type": "application/json"})
    assert register.status_code == 200
    poll = requests.get(env.url + "/esp32/commands/ESP32_246F28A1B2C3", timeout=3)
    assert poll.status_code == 200 and poll.json() is None
    data = requests.post(env.url + "/esp32/data", json={"device_id": "24:6F:28:A1:B2:C3",
                                                       "temperature": 21}, timeout=3)
    assert data.status_code == 200
    txn = {}

    def vend() -> None:
        txn.update(env.vend(2).json())

    thread = threading.Thread(target=vend, name="test-vend")
    thread.start()
    command = wait_until(lambda: requests.get(
        env.url + "/esp32/commands/ESP32_246F28A1B2C3", timeout=3).json(), message="a command")
    assert command["command"] == "VEND" and command["slot"] == 2
    confirm = requests.post(env.url + "/esp32/confirm", timeout=3, json={
        "device_id": "24:6F:28:A1:B2:C3", "slot": 2, "success": True,
        "message": "Slot 2 vended successfully", "timestamp": 123456})
    assert confirm.status_code == 200
    thread.join(10)
    assert txn["status"] == "success"


def test_an_approved_legacy_board_that_never_re_registers_is_known_after_a_restart(make_app):
    first = start_env(make_app, wifi_legacy_hold=0.0)
    board = first.online(first.board(legacy=True))
    device_id = board.device_id
    board.stop()
    first.close()
    second = start_env(make_app, wifi_legacy_hold=0.0)
    try:
        assert second.status(device_id) == "offline"
        poll = requests.get(f"{second.url}/esp32/commands/{device_id}", timeout=3)
        assert poll.status_code == 200 and poll.json() is None
        assert second.status(device_id) == "online"
    finally:
        second.close()


def test_strangers_cannot_flood_the_device_list_with_pending_boards(wifi):
    env = wifi(wifi_legacy_hold=0.0)
    env.rt.wifi.settings.max_pending = 3
    codes = [requests.post(f"{env.url}/esp32/register",
                           json={"device_id": f"ESP32_00000000000{i}"}, timeout=3).status_code
             for i in range(5)]
    assert codes == [200, 200, 200, 503, 503]
    assert len(env.rt.registry.devices()) == 3


def test_bad_board_bodies_get_json_errors(wifi):
    env = wifi()
    bad = requests.post(env.url + "/esp32/register", data=b"{not json", timeout=3)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
    bad_id = requests.post(env.url + "/esp32/register", json={"device_id": "x" * 100}, timeout=3)
    assert bad_id.status_code == 400
    pair = requests.post(env.url + "/esp32/v2/pair", json={"device_id": "A", "public_key": "zz"},
                         timeout=3)
    assert pair.status_code == 400
    assert env.rt.registry.devices() == []


def test_every_board_and_approval_route_is_in_the_openapi_document(wifi):
    env = wifi()
    paths = requests.get(env.url + "/openapi.json", timeout=3).json()["paths"]
    for rule in env.app.url_map.iter_rules():
        if rule.endpoint.startswith("boards.") or rule.rule.endswith(("/approve", "/revoke",
                                                                       "/reject")):
            assert rule.rule.replace("<", "{").replace(">", "}") in paths, rule.rule


def test_discovery_is_off_when_asked(make_app):
    app = make_app(discovery=False, wifi_legacy_hold=0.0)
    assert app.extensions["vending"].discovery is None
    server = BackgroundServer(app).start()
    try:
        assert requests.post(server.url + "/esp32/register", json={"device_id": "ESP32_X"},
                             timeout=3).status_code == 200
        assert requests.get(server.url + "/esp32/commands/ESP32_X", timeout=3).status_code == 200
    finally:
        server.stop()


def test_a_new_board_waiting_for_approval_raises_an_alert_and_approving_it_is_audited(wifi):
    env = wifi()
    board = env.board()
    wait_until(lambda: env.status(board.device_id) == "pending_approval", message="pending")
    client = env.app.test_client()
    alerts = wait_until(lambda: [a for a in client.get("/alerts?active=1").get_json()["alerts"]
                                 if board.device_id in a["message"]], message="approval alert")
    assert alerts[0]["kind"] == "device_pending_approval"
    fingerprint = env.device(board.device_id).fingerprint
    assert client.post(f"/esp32/devices/{board.device_id}/approve",
                       json={"fingerprint": fingerprint}).status_code == 200
    row = client.get("/audit?limit=1").get_json()["entries"][0]
    assert row["action"] == "approve_device" and row["outcome"] == "ok"
