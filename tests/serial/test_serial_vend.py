"""USB serial boards over real ptys: identify, vend, two boards, v1 boards."""

from __future__ import annotations

from helpers import wait_until
from serial_support import wait_online

from vending.sim.serial import SerialBoardSim


def test_a_simulated_board_given_by_path_is_identified_and_vends_with_success(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    info = wait_online(app, board.device_id)
    assert info["transport"] == "serial"
    assert info["protocol"] == 2
    assert info["port"] == board.path
    assert info["firmware_version"] == "2.0.0"
    assert info["slots"] == 5

    response = app.test_client().post("/vend/3")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "success"
    assert body["communication"] == "serial"
    assert body["device_id"] == board.device_id
    runs = board.runs_for(body["transaction_id"])
    assert [(r.slot, r.result) for r in runs] == [(3, "success")]


def test_every_line_in_and_out_is_in_the_communication_log_tagged_with_the_board(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    txn = app.test_client().post("/vend/2").get_json()["transaction_id"]
    entries = app.test_client().get(f"/esp32/communication/log?device_id={board.device_id}").get_json()
    texts = [(e["direction"], e["message"]) for e in entries["entries"]]
    assert any(d == "tx" and m.startswith(f"$VEND id={txn} slot=2*") for d, m in texts)
    assert any(d == "rx" and m.startswith(f"$ACK id={txn}*") for d, m in texts)
    assert any(d == "rx" and m.startswith(f"$DONE id={txn} result=success*") for d, m in texts)


def test_a_jam_reported_by_the_board_makes_the_vend_failed_with_the_reason(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.next_result("failed", "jam")
    response = app.test_client().post("/vend/4")
    assert response.status_code == 502
    assert response.get_json()["reason"] == "jam"


def test_two_boards_at_once_either_can_be_selected_and_both_vend(make_board, serial_app):
    first = make_board("ESP32_5CCF7F000001")
    second = make_board("ESP32_5CCF7F000002")
    app = serial_app(first.path, second.path)
    client = app.test_client()
    wait_online(app, first.device_id)
    wait_online(app, second.device_id)
    for board in (second, first):
        selected = client.post("/esp32/devices/select", json={"device_id": board.device_id})
        assert selected.status_code == 200
        body = client.post("/vend/1").get_json()
        assert body["status"] == "success"
        assert body["device_id"] == board.device_id
        assert len(board.runs_for(body["transaction_id"])) == 1


def test_a_legacy_v1_board_is_detected_as_protocol_1_and_vends_with_success(make_board, serial_app):
    board = make_board("ESP32_USB_5CCF7F0000AA", legacy=True)
    app = serial_app(board.path)
    info = wait_online(app, board.device_id)
    assert info["protocol"] == 1
    assert info["firmware_version"] == "1.1"
    body = app.test_client().post("/vend/5").get_json()
    assert body["status"] == "success", body
    assert body["communication"] == "serial"
    assert [r.slot for r in board.motor_runs] == [5]


def test_a_v1_vend_is_sent_once_and_without_confirmation_is_unknown(make_board, serial_app):
    board = make_board("ESP32_USB_5CCF7F0000AB", legacy=True, motor_time=5.0)
    app = serial_app(board.path, vend_timeout=0.5)
    wait_online(app, board.device_id)
    response = app.test_client().post("/vend/2")
    assert response.status_code == 504
    assert response.get_json()["status"] == "unknown"
    vends = [line for line in board.received if line.startswith(b"VEND")]
    assert vends == [b"VEND:2"]


def test_a_board_that_reboots_when_the_port_opens_is_identified_after_its_boot(make_board, serial_app):
    board = make_board(reboot_on_open=True, boot_delay=0.2)
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    assert board.boots >= 2
    assert app.test_client().post("/vend/1").get_json()["status"] == "success"


def test_the_simulator_command_prints_the_pty_to_use(tmp_path):
    import argparse

    from vending.sim.__main__ import build_parser
    from vending.sim.serial import main

    args = build_parser().parse_args(["serial", "--link", str(tmp_path / "tty"), "--motor-time", "0"])
    assert isinstance(args, argparse.Namespace)
    seen: list[str] = []
    main(args, wait=lambda: seen.append((tmp_path / "tty").resolve().as_posix()))
    assert seen and seen[0].startswith("/dev/pts/")
    wait_until(lambda: not (tmp_path / "tty").exists(), message="link removed")
    assert SerialBoardSim  # the class tests build directly


def test_a_board_reached_by_a_pyserial_socket_url_vends(make_board, serial_app):
    import os
    import select
    import socket
    import threading

    board = make_board()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def bridge() -> None:
        # A serial-to-TCP bridge (like ser2net) between the board's pty and one client.
        conn, _ = listener.accept()
        fd = os.open(board.pty_path, os.O_RDWR | os.O_NOCTTY)
        try:
            while not stop.is_set():
                ready, _, _ = select.select([conn, fd], [], [], 0.1)
                if conn in ready:
                    data = conn.recv(4096)
                    if not data:
                        return
                    os.write(fd, data)
                if fd in ready:
                    conn.sendall(os.read(fd, 4096))
        finally:
            os.close(fd)
            conn.close()

    thread = threading.Thread(target=bridge, name="test-ser2net", daemon=True)
    thread.start()
    try:
        app = serial_app(f"socket://127.0.0.1:{port}")
        info = wait_online(app, board.device_id)
        assert info["port"] == f"socket://127.0.0.1:{port}"
        body = app.test_client().post("/vend/4").get_json()
        assert body["status"] == "success"
        assert len(board.runs_for(body["transaction_id"])) == 1
    finally:
        stop.set()
        thread.join(5)
        listener.close()
