"""The host board (the firmware core behind a POSIX shell) over a real pty, spoken to with the codec.

The motor is fake and logs every start to a journal file; the outcome memory lives in a
file, so SIGKILL and a restart with the same file is a power cut mid-vend.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from firmware_support import BoardOptions, HostBoardProcess, PtyClient, firmware_build, is_human
from helpers import wait_until

from vending.protocol import (
    Ack,
    Done,
    Hello,
    HumanLine,
    Identity,
    Nak,
    Ping,
    Pong,
    Query,
    State,
    Vend,
    format_line,
    frame_body,
)


@pytest.fixture
def boards() -> Iterator[list[HostBoardProcess]]:
    """Host board processes started by a test; all are stopped at the end."""
    started: list[HostBoardProcess] = []
    yield started
    for board in started:
        board.stop()


def start_board(boards: list[HostBoardProcess], tmp_path: Path, **options) -> HostBoardProcess:
    board = HostBoardProcess(firmware_build(), tmp_path, BoardOptions(**options)).start()
    boards.append(board)
    return board


def connect(board: HostBoardProcess) -> PtyClient:
    client = PtyClient(board.pty_path)
    client.wait_for(lambda p: isinstance(p, Identity), what="the ID announced at boot")
    return client


def test_the_board_announces_itself_after_its_banner_and_answers_hello(boards, tmp_path) -> None:
    board = start_board(boards, tmp_path, boot="0BADF00D")
    client = PtyClient(board.pty_path)
    banner = client.wait_for(is_human, what="the banner")
    assert banner.text.startswith("VENDING BOARD fw=2.0.0 proto=2 dev=ESP32_6CC8404FE03C")
    ident = client.wait_for(lambda p: isinstance(p, Identity), what="ID")
    assert (ident.dev, ident.proto, ident.slots, ident.boot) == ("ESP32_6CC8404FE03C", 2, 5, "0BADF00D")
    client.send_msg(Hello())
    assert client.wait_for(lambda p: isinstance(p, Identity)) == ident
    client.send_msg(Ping())
    assert client.wait_for(lambda p: isinstance(p, Pong)) == Pong(boot="0BADF00D", state="ready")
    client.close()


def test_a_vend_is_acknowledged_then_done_with_one_motor_run(boards, tmp_path) -> None:
    board = start_board(boards, tmp_path)
    client = connect(board)
    client.send_msg(Vend(id="3F2A9C01B7E4", slot=3))
    assert client.wait_for(lambda p: not is_human(p)) == Ack(id="3F2A9C01B7E4")
    done = client.wait_for(lambda p: isinstance(p, Done), what="DONE")
    assert done == Done(id="3F2A9C01B7E4", result="success")
    assert board.motor_starts() == ["start slot=3"]
    client.close()


def test_a_lost_ack_and_a_retry_with_the_same_id_turn_the_motor_once(boards, tmp_path) -> None:
    board = start_board(boards, tmp_path, motor_ms=400)
    client = connect(board)
    vend = Vend(id="A1B2C3D4E5F6", slot=2)
    client.send_msg(vend)
    client.wait_for(lambda p: isinstance(p, Ack))  # "lost": the server acts as if unseen
    client.send_msg(vend)
    client.send_msg(vend)
    acks = [client.wait_for(lambda p: isinstance(p, Ack)) for _ in range(2)]
    assert acks == [Ack(id=vend.id)] * 2
    assert client.wait_for(lambda p: isinstance(p, Done)) == Done(id=vend.id, result="success")
    client.send_msg(vend)  # a late duplicate after DONE gets the stored outcome again
    assert client.wait_for(lambda p: isinstance(p, Done)) == Done(id=vend.id, result="success")
    assert board.motor_starts() == ["start slot=2"]
    client.close()


def test_killing_the_board_mid_vend_and_restarting_it_reports_interrupted_never_success(
    boards, tmp_path
) -> None:
    board = start_board(boards, tmp_path, motor_ms=30000, max_run_ms=60000, boot="5E1F0A3C")
    client = connect(board)
    client.send_msg(Vend(id="CUT0001", slot=4))
    assert client.wait_for(lambda p: isinstance(p, Ack)) == Ack(id="CUT0001")
    wait_until(lambda: board.motor_starts() == ["start slot=4"], message="the motor to start")
    board.kill()
    client.close()

    board.start(boot="9D04C2B7")  # same memory file: the board's flash survived
    client = PtyClient(board.pty_path)
    ident = client.wait_for(lambda p: isinstance(p, Identity), what="ID after the reboot")
    assert ident.boot == "9D04C2B7"
    client.send_msg(Query(id="CUT0001"))
    assert client.wait_for(lambda p: isinstance(p, State)) == State(id="CUT0001", state="interrupted")
    client.send_msg(Vend(id="CUT0001", slot=4))
    assert client.wait_for(lambda p: not is_human(p)) == Ack(id="CUT0001")
    assert client.wait_for(lambda p: not is_human(p)) == State(id="CUT0001", state="interrupted")
    client.send_msg(Ping())
    assert client.wait_for(lambda p: isinstance(p, Pong)).state == "ready"
    rest = client.drain()
    assert not any(line.startswith(b"$DONE") for line in rest), rest
    assert board.motor_starts() == ["start slot=4"]
    assert "alloff" in board.journal.read_text().splitlines()[-1:]  # motors off at the new boot
    client.close()


def test_corrupted_lines_are_naked_and_never_turn_a_motor(boards, tmp_path) -> None:
    board = start_board(boards, tmp_path)
    client = connect(board)
    good = format_line(Vend(id="A1B2C3D4E5F6", slot=3))
    flipped = good.replace(b"slot=3", b"slot=4")
    client.send(flipped)
    assert client.wait_for(lambda p: not is_human(p)) == Nak(reason="crc")
    client.send(frame_body("VEND id=A1 slot=03"))
    assert client.wait_for(lambda p: not is_human(p)) == Nak(reason="syntax")
    client.send(frame_body("REBOOT"))
    assert client.wait_for(lambda p: not is_human(p)) == Nak(reason="unknown_verb")
    client.send(b"$PING pad=" + b"A" * 300 + b"*0000\n")
    assert client.wait_for(lambda p: not is_human(p)) == Nak(reason="too_long")
    client.send(b"hello board\n")
    reply = client.wait_for(is_human)
    assert reply == HumanLine("ERROR: Unknown command (type HELP)")
    client.send_msg(Query(id="A1B2C3D4E5F6"))
    assert client.wait_for(lambda p: isinstance(p, State)).state == "unseen"
    client.send_msg(Nak(reason="crc"))  # the server did not understand: say it again
    assert client.wait_for(lambda p: isinstance(p, State)).state == "unseen"
    assert board.motor_starts() == []
    client.close()


def test_the_board_also_speaks_over_stdin_and_stdout(tmp_path) -> None:
    build = firmware_build()
    lines = b"HELP\n" + format_line(Vend(id="pipe1", slot=1))
    result = subprocess.run(
        [str(build.host_board), "--memory", str(tmp_path / "mem"), "--motor-ms", "50"],
        input=lines, capture_output=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert b"Commands: HELP, IDENTIFY, STATUS, VEND:<slot>" in out
    assert format_line(Done(id="pipe1", result="success")).rstrip(b"\n") in out
