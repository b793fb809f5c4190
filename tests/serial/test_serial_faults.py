"""Serial faults over real ptys: lost and damaged lines, reboots, unplugging, busy ports, junk."""

from __future__ import annotations

import serial
from helpers import wait_until
from serial_support import device_info, wait_online, wait_status

from vending.events import SERIAL_RECONNECT


def vend_lines(board, txn_id: str) -> list[bytes]:
    return [line for line in board.received if line.startswith(f"$VEND id={txn_id} ".encode())]


def test_a_lost_ack_is_retried_with_the_same_id_and_the_motor_runs_once(make_board, serial_app):
    board = make_board(motor_time=0.3)
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.drop_next("ACK")
    body = app.test_client().post("/vend/3").get_json()
    assert body["status"] == "success"
    txn = body["transaction_id"]
    assert len(vend_lines(board, txn)) == 2
    assert len(board.runs_for(txn)) == 1
    counts = app.test_client().get("/transactions").get_json()
    assert [t["status"] for t in counts["transactions"]] == ["success"]


def test_acks_lost_every_time_end_with_a_query_and_one_motor_run(make_board, serial_app):
    board = make_board(motor_time=0.05)
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.drop_next("ACK", 4)
    board.drop_next("DONE", 4)
    body = app.test_client().post("/vend/1").get_json()
    assert body["status"] == "success", body
    txn = body["transaction_id"]
    assert len(vend_lines(board, txn)) == 4  # the first try and three retries, never more
    assert any(line.startswith(f"$QUERY id={txn}".encode()) for line in board.received)
    assert len(board.runs_for(txn)) == 1


def test_a_reboot_before_the_board_records_the_vend_re_issues_it_once(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.reboot_when("vend_received")
    body = app.test_client().post("/vend/2").get_json()
    assert body["status"] == "success", body
    runs = board.runs_for(body["transaction_id"])
    assert [r.result for r in runs] == ["success"]


def test_a_reboot_after_the_motor_before_done_is_settled_from_the_board_memory(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.reboot_when("motor_finished")
    body = app.test_client().post("/vend/2").get_json()
    assert body["status"] == "success", body
    assert len(board.runs_for(body["transaction_id"])) == 1
    assert board.boots == 2


def test_a_reboot_mid_motor_is_unknown_flagged_and_never_run_again(make_board, serial_app):
    board = make_board(motor_time=0.4)
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.reboot_when("motor_started")
    response = app.test_client().post("/vend/4")
    body = response.get_json()
    assert response.status_code == 504
    assert body["status"] == "unknown"
    assert body["reason"] == "interrupted"
    txn = body["transaction_id"]
    wait_until(lambda: any(line.startswith(f"$QUERY id={txn}".encode()) for line in board.received),
               message="QUERY after the reboot")
    assert [r.result for r in board.runs_for(txn)] == ["interrupted"]
    assert len(vend_lines(board, txn)) == 1


def test_unplugging_mid_vend_goes_offline_records_unknown_and_a_new_board_comes_back(
        make_board, serial_app):
    board = make_board(motor_time=2.0)
    app = serial_app(board.path, vend_timeout=10.0)
    runtime = app.extensions["vending"]
    reconnects = []
    runtime.events.subscribe(lambda event: reconnects.append(event.data), {SERIAL_RECONNECT})
    wait_online(app, board.device_id)
    client = app.test_client()
    txn = client.post("/vend/1?wait=0").get_json()["transaction_id"]
    wait_until(lambda: board.runs_for(txn), message="motor started")
    board.unplug()
    wait_status(app, board.device_id, "offline", timeout=2.0)
    final = wait_until(lambda: (t := client.get(f"/vend/{txn}").get_json())["status"] == "unknown" and t,
                       message="vend recorded unknown")
    assert final["reason"] == "disconnected"
    assert client.get("/status").status_code == 200

    board.plug()
    wait_online(app, board.device_id)
    assert reconnects == [{"device_id": board.device_id, "port": board.path}]
    # The board lost power mid-motor: it reports `interrupted`; the vend stays unknown.
    wait_until(lambda: any(line.startswith(f"$QUERY id={txn}".encode()) for line in board.received),
               message="QUERY after the reconnect")
    assert client.get(f"/vend/{txn}").get_json()["status"] == "unknown"
    assert len(board.runs_for(txn)) == 1
    assert client.post("/vend/2").get_json()["status"] == "success"


def test_a_done_lost_before_an_unplug_is_settled_as_success_after_the_replug(make_board, serial_app):
    board = make_board(motor_time=0.2)
    app = serial_app(board.path, vend_timeout=10.0)
    wait_online(app, board.device_id)
    client = app.test_client()
    board.drop_next("DONE")
    txn = client.post("/vend/5?wait=0").get_json()["transaction_id"]
    wait_until(lambda: [r for r in board.runs_for(txn) if r.result == "success"], message="motor done")
    board.unplug()
    wait_until(lambda: client.get(f"/vend/{txn}").get_json()["status"] == "unknown",
               message="vend recorded unknown")
    board.plug()
    settled = wait_until(lambda: (t := client.get(f"/vend/{txn}").get_json())["status"] == "success" and t,
                         message="vend settled after the replug")
    assert "later" in settled["message"]
    assert len(board.runs_for(txn)) == 1


def test_a_vend_never_acknowledged_before_an_unplug_is_settled_failed_after_the_replug(
        make_board, serial_app):
    board = make_board()
    app = serial_app(board.path, vend_timeout=10.0, serial_ack_timeout=0.5)
    wait_online(app, board.device_id)
    client = app.test_client()
    board.reboot_when("vend_received")  # the VEND is lost in the reboot
    board.boot_delay = 5.0  # and the board stays down long enough to be unplugged
    txn = client.post("/vend/3?wait=0").get_json()["transaction_id"]
    wait_until(lambda: vend_lines(board, txn), message="VEND reached the board")
    board.unplug()
    wait_until(lambda: client.get(f"/vend/{txn}").get_json()["status"] == "unknown",
               message="vend recorded unknown")
    board.boot_delay = 0.05
    board.plug()
    settled = wait_until(lambda: (t := client.get(f"/vend/{txn}").get_json())["status"] == "failed" and t,
                         message="vend settled as not dispensed")
    assert settled["reason"] == "no_ack"
    assert board.runs_for(txn) == []


def test_a_vend_line_with_a_flipped_byte_is_nakked_resent_and_run_once(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.corrupt_next_received("flip")
    body = app.test_client().post("/vend/3").get_json()
    assert body["status"] == "success"
    assert any(line.startswith(b"$NAK reason=crc") for line in board.sent)
    assert len(board.runs_for(body["transaction_id"])) == 1


def test_a_vend_line_with_two_swapped_bytes_is_nakked_resent_and_run_once(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.corrupt_next_received("swap")
    body = app.test_client().post("/vend/3").get_json()
    assert body["status"] == "success"
    assert any(line.startswith(b"$NAK ") for line in board.sent)
    assert len(board.runs_for(body["transaction_id"])) == 1


def test_a_damaged_done_is_rejected_nakked_and_the_board_sends_it_again(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    for how in ("flip", "swap"):
        board.corrupt_next("DONE", how)
        body = app.test_client().post("/vend/1").get_json()
        assert body["status"] == "success"
        txn = body["transaction_id"]
        assert len(board.runs_for(txn)) == 1
        assert len(vend_lines(board, txn)) == 1
    assert sum(1 for line in board.received if line.startswith(b"$NAK ")) == 2
    log = app.test_client().get("/esp32/communication/log?direction=error").get_json()["entries"]
    assert sum("rejected" in e["message"] for e in log) == 2


def test_a_port_held_by_another_program_shows_as_busy_and_is_taken_when_freed(make_board, serial_app):
    board = make_board()
    holder = serial.Serial(board.path, 115200, exclusive=True)
    try:
        app = serial_app(board.path)
        info = wait_status(app, f"serial:{board.path}", "port_busy")
        assert "another program" in info["status_detail"]
        assert "close it" in info["status_detail"]
        assert info["port"] == board.path
        assert app.test_client().get("/status").status_code == 200
    finally:
        holder.close()
    wait_online(app, board.device_id)
    assert device_info(app, f"serial:{board.path}") is None
    assert app.test_client().post("/vend/1").get_json()["status"] == "success"


def test_a_known_board_whose_port_gets_taken_shows_port_busy(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    monitor = app.extensions["vending"].serial
    wait_online(app, board.device_id)
    monitor.ports = []  # hold the controller back while another program takes the port
    board.unplug()
    wait_status(app, board.device_id, "offline", timeout=2.0)
    board.plug()
    holder = serial.Serial(board.path, 115200, exclusive=True)
    try:
        monitor.ports = [board.path]
        info = wait_status(app, board.device_id, "port_busy")
        assert "another program" in info["status_detail"]
        assert device_info(app, f"serial:{board.path}") is None  # known board: no placeholder
    finally:
        holder.close()
    wait_online(app, board.device_id)


def test_garbage_a_huge_line_and_invalid_utf8_are_logged_and_ignored(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.send_raw(bytes(range(256)) + b"\n")
    board.send_raw(b"x" * 100_000 + b"\n")
    board.send_raw(b"$" + b"A" * 100_000 + b"\n")
    board.send_raw(b"\xff\xfe caf\xc3 \xe9\n")
    board.send_raw(b"$DONE id=ZZZ result=success*0000\n")
    client = app.test_client()
    wait_until(lambda: sum(line.startswith(b"$NAK ") for line in board.received) >= 2,
               message="NAKs for the bad machine lines")
    log = client.get(f"/esp32/communication/log?device_id={board.device_id}&limit=1000").get_json()
    messages = [e["message"] for e in log["entries"]]
    assert any("100000-byte line" in m for m in messages)
    assert any("\ufffd" in m for m in messages)
    assert device_info(app, board.device_id)["status"] == "online"
    body = client.post("/vend/2").get_json()
    assert body["status"] == "success"
    assert len(board.runs_for(body["transaction_id"])) == 1


def test_a_repeated_done_for_a_settled_vend_is_ignored(make_board, serial_app):
    board = make_board()
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    client = app.test_client()
    body = client.post("/vend/2").get_json()
    txn = body["transaction_id"]
    from vending.protocol import Done, format_line

    board.send_raw(format_line(Done(id=txn, result="failed", reason="jam")))
    wait_until(lambda: any("repeat answer" in e["message"] for e in client.get(
        "/esp32/communication/log?direction=info").get_json()["entries"]), message="ignored")
    assert client.get(f"/vend/{txn}").get_json()["status"] == "success"


def test_a_vend_left_unknown_by_a_server_restart_is_settled_when_the_board_is_met_again(
        make_board, serial_app, tmp_path):
    board = make_board(motor_time=0.3)
    app = serial_app(board.path)
    wait_online(app, board.device_id)
    board.drop_next("DONE")
    txn = app.test_client().post("/vend/2?wait=0").get_json()["transaction_id"]
    wait_until(lambda: [r for r in board.runs_for(txn) if r.result == "success"], message="motor done")
    runtime = app.extensions["vending"]
    runtime.stop()  # the server goes away before the board's answer arrives

    restarted = serial_app(board.path)
    client = restarted.test_client()
    settled = wait_until(lambda: (t := client.get(f"/vend/{txn}").get_json())["status"] == "success" and t,
                         message="vend settled from the board's memory")
    assert settled["reason"] is None
    assert len(board.runs_for(txn)) == 1


def test_a_serial_vend_settled_after_a_restart_resolves_its_alert_and_reaches_the_stock_check(
        make_board, serial_app, tmp_path):
    board = make_board(motor_time=0.3)
    app = serial_app(board.path, low_stock_level=2)
    wait_online(app, board.device_id)
    assert app.test_client().patch("/slots/2", json={"stock": 3}).status_code == 200
    board.drop_next("DONE")
    txn = app.test_client().post("/vend/2?wait=0").get_json()["transaction_id"]
    wait_until(lambda: [r for r in board.runs_for(txn) if r.result == "success"], message="motor done")
    app.extensions["vending"].stop()

    restarted = serial_app(board.path, low_stock_level=2)
    client = restarted.test_client()

    def alerts(kind):
        return [a for a in client.get("/alerts?limit=500").get_json()["alerts"] if a["kind"] == kind]

    wait_until(lambda: client.get(f"/vend/{txn}").get_json()["status"] == "success",
               message="vend settled from the board's memory")
    [resolved] = wait_until(lambda: [a for a in alerts("vend_unknown")
                                     if a["data"]["transaction_id"] == txn and not a["active"]],
                            message="the vend_unknown alert resolved with the outcome")
    assert "success" in resolved["acknowledged_by"]
    [low] = wait_until(lambda: alerts("low_stock"), message="the late success to reach the stock check")
    assert low["data"]["stock"] == 2


def test_a_board_that_stops_answering_pings_goes_offline_and_comes_back_when_it_answers(
        make_board, serial_app):
    board = make_board()
    app = serial_app(board.path, serial_ping_interval=0.2)
    wait_online(app, board.device_id)
    board.hang()
    info = wait_status(app, board.device_id, "offline")
    assert "stopped answering" in info["status_detail"]
    assert app.test_client().post("/vend/1").status_code == 503  # nothing can vend
    board.hang(False)
    wait_online(app, board.device_id)
    assert app.test_client().post("/vend/1").get_json()["status"] == "success"


def test_a_port_where_nothing_answers_is_left_alone_for_a_while_and_lists_no_device(serial_app):
    import os
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    try:
        app = serial_app(path, serial_handshake_timeout=0.1)
        monitor = app.extensions["vending"].serial
        wait_until(lambda: monitor.problem(path), message="handshake given up")
        assert "no vending board answered" in monitor.problem(path)
        assert app.test_client().get("/esp32/devices/list").get_json()["count"] == 0
        received = wait_until(lambda: os.read(master, 4096), message="what the controller sent")
        assert b"$HELLO*49D6" in received
    finally:
        app.extensions["vending"].stop()
        os.close(master)
