"""The earlier USB firmware (protocol v1) in its own words, over a real pty."""

from __future__ import annotations

from serial_support import wait_online


def test_the_v1_boards_mixed_case_invalid_slot_error_fails_the_vend_at_once(make_board, serial_app):
    # A board that does not announce its slots: only its own check refuses slot 5.
    board = make_board("ESP32_USB_5CCF7F0000C1", legacy=True, slots=4, announces_slots=False)
    app = serial_app(board.path, vend_timeout=20.0)
    wait_online(app, board.device_id)
    response = app.test_client().post("/vend/5")
    body = response.get_json()
    assert body["status"] == "failed", body
    assert body["reason"] == "board_error"
    assert "Invalid slot number. Must be 1-4" in body["message"]
    assert "not dispensed" in body["message"]
    assert body["finished_at"] - body["created_at"] < 10  # not the 20 s timeout
    assert board.motor_runs == []


def test_a_slot_the_v1_board_says_it_does_not_have_is_refused_without_sending(make_board, serial_app):
    board = make_board("ESP32_USB_5CCF7F0000C2", legacy=True, slots=3)
    app = serial_app(board.path)
    info = wait_online(app, board.device_id)
    assert info["slots"] == 3
    body = app.test_client().post("/vend/4").get_json()
    assert body["status"] == "failed", body
    assert body["reason"] == "invalid_slot"
    assert "3 slots" in body["message"] and "not dispensed" in body["message"]
    assert not [line for line in board.received if line.startswith(b"VEND")]
    # Slots it has still vend.
    assert app.test_client().post("/vend/3").get_json()["status"] == "success"
    assert [run.slot for run in board.motor_runs] == [3]
