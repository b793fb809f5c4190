"""What the fault campaign found on the serial path, pinned down as tests."""

from __future__ import annotations

from helpers import wait_until
from serial_support import wait_online

from vending.events import VEND_FINISHED, VEND_SETTLED


def test_a_vend_whose_query_answers_were_lost_is_settled_while_the_board_stays_online(
        make_board, serial_app):
    board = make_board(motor_time=0.05)
    app = serial_app(board.path, vend_timeout=0.5, serial_ping_interval=0.2)
    wait_online(app, board.device_id)
    changes: list[tuple[str, str, str | None]] = []
    app.extensions["vending"].events.subscribe(
        lambda event: changes.append((event.kind, event.data["transaction"]["status"],
                                      event.data["transaction"].get("reason"))),
        {VEND_FINISHED, VEND_SETTLED})
    client = app.test_client()
    # The DONE and every answer to the server's QUERYs are lost: the outcome is unknown...
    board.drop_next("DONE")
    board.drop_next("STATE", 4)
    body = client.post("/vend/2?wait=10").get_json()
    # (The board may already have settled it when the answer reads the row: the events say
    # what the ledger went through either way.)
    assert body["status"] in ("unknown", "success"), body
    assert [run.result for run in board.runs_for(body["transaction_id"])] == ["success"]
    # ...but the board remembers it and answers now: no reboot or replug should be needed.
    settled = wait_until(
        lambda: (t := client.get(f"/vend/{body['transaction_id']}").get_json())["status"] != "unknown" and t,
        timeout=5, message="the vend settled from the board's memory")
    assert settled["status"] == "success"
    wait_until(lambda: len(changes) >= 2, timeout=5, message="the settlement's event")
    assert [change[:2] for change in changes] == [(VEND_FINISHED, "unknown"),
                                                  (VEND_SETTLED, "success")]
    assert changes[0][2] == "no_answer"
    assert len(board.runs_for(body["transaction_id"])) == 1
    assert board.boots == 1  # the board never rebooted


def test_a_port_that_fails_under_the_reader_is_reported_lost_at_once_not_at_the_next_write(tmp_path):
    import os

    from vending.commlog import CommunicationLog
    from vending.config import SerialSettings
    from vending.devices.registry import DeviceRegistry
    from vending.devices.serial_link import SerialMonitor
    from vending.devices.serial_ports import open_port
    from vending.events import EventBus

    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    # A long handshake wait: nothing is written, so only the reader can notice the loss.
    settings = SerialSettings(handshake_timeout=30.0, ping_interval=30.0, rescan_interval=30.0)
    log = CommunicationLog(100)
    monitor = SerialMonitor(settings, DeviceRegistry(), log, None, EventBus(), ports=[path])
    connection = monitor.connection_for(path, open_port(path, settings.baudrate))
    # The device vanishes before the reader's first look: pyserial's `in_waiting` then
    # raises a bare OSError (EIO), not the SerialException its reader thread handles.
    os.close(master)
    connection.start()
    try:
        wait_until(connection.lost.is_set, timeout=3, message="the connection to be marked lost")
        assert "unplugged or port failed" in connection.lost_detail
    finally:
        connection.close("test over")
