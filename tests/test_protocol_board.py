"""BoardLogic, the reference model of a v2 board: exactly-once vends, NAK, QUERY, PING."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vending.protocol import (
    Ack,
    BoardAction,
    BoardLogic,
    Done,
    Hello,
    HumanLine,
    Identity,
    LineFramer,
    Message,
    Nak,
    Persist,
    Ping,
    Pong,
    Query,
    SendLine,
    StartMotor,
    State,
    StopMotor,
    V1DeviceId,
    V1SlotsAvailable,
    V1VendSuccess,
    Vend,
    format_line,
    parse_line,
    parse_v1_line,
)

BOOT = "0BADF00D"


def make_board(snapshot: dict | None = None, boot: str = BOOT, **kwargs: object) -> BoardLogic:
    """A booted board with 5 slots."""
    board = BoardLogic("ESP32_6CC8404FE03C", "2.0.0", 5, boot, snapshot=snapshot, **kwargs)
    board.boot(0.0)
    return board


def sent(actions: list[BoardAction]) -> list[Message | HumanLine]:
    """The lines among actions, parsed."""
    return [parse_line(a.data) for a in actions if isinstance(a, SendLine)]


def machine(actions: list[BoardAction]) -> list[Message]:
    """The machine messages among actions."""
    return [m for m in sent(actions) if not isinstance(m, HumanLine)]


def human(actions: list[BoardAction]) -> list[str]:
    """The human lines among actions."""
    return [m.text for m in sent(actions) if isinstance(m, HumanLine)]


def send(board: BoardLogic, msg: Message, now: float = 1.0) -> list[BoardAction]:
    """Deliver msg to the board as a wire line."""
    return board.receive_line(format_line(msg)[:-1], now)


def test_boot_prints_a_banner_then_sends_id_unsolicited() -> None:
    board = BoardLogic("ESP32_6CC8404FE03C", "2.0.0", 5, BOOT)
    actions = board.boot(0.0)
    assert human(actions)[0].startswith("VENDING BOARD fw=2.0.0 proto=2")
    assert machine(actions) == [
        Identity(dev="ESP32_6CC8404FE03C", fw="2.0.0", proto=2, slots=5, boot=BOOT)
    ]
    assert isinstance(sent(actions)[-1], Identity)


def test_hello_is_answered_with_id() -> None:
    assert [m.VERB for m in machine(send(make_board(), Hello()))] == ["ID"]


def test_a_new_vend_is_persisted_before_it_is_acked_and_the_motor_starts() -> None:
    board = make_board()
    actions = send(board, Vend(id="T1", slot=2))
    assert isinstance(actions[0], Persist)
    assert actions[0].snapshot["entries"] == [
        {"id": "T1", "slot": 2, "state": "running", "reason": None}
    ]
    assert machine(actions[1:2]) == [Ack(id="T1")]
    assert actions[2] == StartMotor(2)
    assert board.busy and board.running_id == "T1"


def test_a_finished_vend_is_persisted_then_reported_done() -> None:
    board = make_board()
    send(board, Vend(id="T1", slot=2))
    actions = board.motor_finished("success", 3.0)
    assert isinstance(actions[0], Persist)
    assert machine(actions) == [Done(id="T1", result="success")]
    assert not board.busy


def test_a_retry_with_the_same_id_runs_the_motor_once() -> None:
    board = make_board()
    everything = send(board, Vend(id="T1", slot=2))
    while_running = send(board, Vend(id="T1", slot=2))
    assert machine(while_running) == [Ack(id="T1")]
    everything += while_running + board.motor_finished("success", 3.0)
    after = send(board, Vend(id="T1", slot=2)) + send(board, Vend(id="T1", slot=2))
    assert machine(after) == [Ack(id="T1"), Done(id="T1", result="success")] * 2
    everything += after
    assert [a for a in everything if isinstance(a, StartMotor)] == [StartMotor(2)]


def test_a_retry_of_a_failed_vend_repeats_the_stored_failure() -> None:
    board = make_board()
    send(board, Vend(id="T1", slot=2))
    board.motor_finished("failed", 3.0, reason="jam")
    assert machine(send(board, Vend(id="T1", slot=2))) == [
        Ack(id="T1"),
        Done(id="T1", result="failed", reason="jam"),
    ]


def test_a_reboot_mid_vend_reports_interrupted_and_never_reruns() -> None:
    board = make_board()
    persisted = [a for a in send(board, Vend(id="T1", slot=2)) if isinstance(a, Persist)]
    snapshot = json.loads(json.dumps(persisted[-1].snapshot))  # through storage and back
    reborn = BoardLogic("ESP32_6CC8404FE03C", "2.0.0", 5, "12345678", snapshot=snapshot)
    boot_actions = reborn.boot(10.0)
    assert isinstance(boot_actions[0], Persist)
    assert boot_actions[0].snapshot["entries"][0]["state"] == "interrupted"
    assert machine(send(reborn, Query(id="T1"))) == [State(id="T1", state="interrupted")]
    retry = send(reborn, Vend(id="T1", slot=2))
    assert machine(retry) == [Ack(id="T1"), State(id="T1", state="interrupted")]
    assert not any(isinstance(a, StartMotor) for a in retry)
    assert machine(send(reborn, Ping())) == [Pong(boot="12345678", state="ready")]


def test_a_reboot_keeps_finished_outcomes() -> None:
    board = make_board()
    send(board, Vend(id="T1", slot=2))
    snapshot = board.motor_finished("failed", 2.0, reason="empty")[0].snapshot
    reborn = make_board(snapshot=snapshot, boot="12345678")
    assert machine(send(reborn, Query(id="T1"))) == [State(id="T1", state="failed", reason="empty")]


def test_query_answers_unseen_running_and_success() -> None:
    board = make_board()
    assert machine(send(board, Query(id="T9"))) == [State(id="T9", state="unseen")]
    send(board, Vend(id="T1", slot=1))
    assert machine(send(board, Query(id="T1"))) == [State(id="T1", state="running")]
    board.motor_finished("success", 2.0)
    assert machine(send(board, Query(id="T1"))) == [State(id="T1", state="success")]


def test_ping_reports_the_boot_id_and_busy_while_a_motor_turns() -> None:
    board = make_board()
    assert machine(send(board, Ping())) == [Pong(boot=BOOT, state="ready")]
    send(board, Vend(id="T1", slot=1))
    assert machine(send(board, Ping())) == [Pong(boot=BOOT, state="busy")]


def test_a_vend_while_busy_is_acked_and_refused_without_touching_the_motor() -> None:
    board = make_board()
    send(board, Vend(id="T1", slot=1))
    actions = send(board, Vend(id="T2", slot=3))
    assert machine(actions) == [Ack(id="T2"), Done(id="T2", result="failed", reason="busy")]
    assert not any(isinstance(a, StartMotor) for a in actions)
    assert board.running_id == "T1"


def test_a_vend_for_a_slot_the_board_does_not_have_fails_invalid_slot() -> None:
    assert machine(send(make_board(), Vend(id="T1", slot=6)))[-1] == Done(
        id="T1", result="failed", reason="invalid_slot"
    )


def test_a_vend_before_boot_has_finished_fails_not_ready() -> None:
    board = BoardLogic("ESP32_6CC8404FE03C", "2.0.0", 5, BOOT)
    assert machine(send(board, Vend(id="T1", slot=1)))[-1] == Done(
        id="T1", result="failed", reason="not_ready"
    )


def test_a_damaged_line_is_answered_with_nak_and_its_reason() -> None:
    board = make_board()
    assert machine(board.receive_line(b"$PING*0000", 1.0)) == [Nak(reason="crc")]
    assert machine(board.receive_line(b"$PING", 1.0)) == [Nak(reason="syntax")]
    assert machine(board.receive_line(b"$REBOOT*7210", 1.0)) == [Nak(reason="unknown_verb")]


def test_an_over_long_machine_line_gets_nak_too_long_but_a_human_one_does_not() -> None:
    board = make_board()
    framer = LineFramer()
    [machine_item] = framer.feed(b"$" + b"A" * 400 + b"\n")
    [human_item] = framer.feed(b"H" * 400 + b"\n")
    assert machine(board.receive_error(machine_item, 1.0)) == [Nak(reason="too_long")]
    assert board.receive_error(human_item, 1.0) == []


def test_a_nak_makes_the_board_resend_its_last_machine_line() -> None:
    board = make_board()
    send(board, Vend(id="T1", slot=1))
    done = board.motor_finished("success", 2.0)[-1]
    assert send(board, Nak(reason="crc")) == [done]


def test_the_board_never_resends_its_own_nak() -> None:
    board = make_board()
    pong = send(board, Ping())
    board.receive_line(b"$PING*0000", 1.0)  # board answers NAK crc
    assert send(board, Nak(reason="crc")) == pong


def test_resends_stop_after_three_naks_in_a_row() -> None:
    board = make_board()
    send(board, Ping())
    answers = [send(board, Nak(reason="crc")) for _ in range(5)]
    assert [len(a) for a in answers] == [1, 1, 1, 0, 0]
    send(board, Ping())
    assert len(send(board, Nak(reason="crc"))) == 1


def test_board_to_server_verbs_received_by_the_board_are_ignored() -> None:
    board = make_board()
    assert send(board, Ack(id="T1")) == []
    assert send(board, Done(id="T1", result="success")) == []


def test_the_memory_forgets_the_oldest_ids_beyond_sixteen() -> None:
    board = make_board()
    for n in range(17):
        send(board, Vend(id=f"T{n}", slot=1))
        board.motor_finished("success", 2.0)
    assert board.state_of("T0") == ("unseen", None)
    assert board.state_of("T1") == ("success", None)
    assert len(board.snapshot()["entries"]) == 16


def test_the_running_id_is_never_forgotten() -> None:
    board = make_board(memory_size=2)
    send(board, Vend(id="R", slot=1))
    for n in range(5):
        send(board, Vend(id=f"B{n}", slot=2))  # refused: busy
    assert board.state_of("R") == ("running", None)


def test_the_watchdog_stops_a_motor_that_runs_too_long() -> None:
    board = make_board(motor_timeout=10.0)
    send(board, Vend(id="T1", slot=1), now=100.0)
    assert board.tick(105.0) == []
    actions = board.tick(110.0)
    assert actions[0] == StopMotor()
    assert machine(actions) == [Done(id="T1", result="failed", reason="motor_fault")]


def test_a_person_can_identify_and_vend_by_hand() -> None:
    board = make_board()
    ident = [parse_v1_line(t) for t in human(board.receive_line(b"IDENTIFY\r", 1.0))]
    assert V1DeviceId("ESP32_6CC8404FE03C", "DEVICE_ID:ESP32_6CC8404FE03C") in ident
    assert V1SlotsAvailable(5, "SLOTS_AVAILABLE:5") in ident
    actions = board.receive_line(b"vend:4", 1.0)
    assert StartMotor(4) in actions
    finished = human(board.motor_finished("success", 2.0))
    assert isinstance(parse_v1_line(finished[0]), V1VendSuccess)
    assert finished[-1] == "----------"


def test_human_lines_never_get_a_nak() -> None:
    board = make_board()
    for line in (b"HELP", b"STATUS", b"FLY ME TO THE MOON", b"VEND:9", b"\xff\xfe"):
        assert machine(board.receive_line(line, 1.0)) == []
    assert human(board.receive_line(b"FLY", 1.0))[0].startswith("ERROR: Unknown command")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("vend"), st.sampled_from(["A", "B", "C"]), st.integers(1, 5)),
            st.tuples(st.just("finish"), st.sampled_from(["success", "jam"]), st.just(0)),
            st.tuples(st.just("reboot"), st.just(""), st.just(0)),
            st.tuples(st.just("nak"), st.just(""), st.just(0)),
        ),
        max_size=40,
    )
)
def test_no_sequence_of_retries_naks_and_reboots_runs_a_motor_twice_for_one_id(
    steps: list[tuple[str, str, int]],
) -> None:
    board = make_board()
    snapshot: dict = board.snapshot()
    starts: list[str] = []
    for number, (kind, arg, slot) in enumerate(steps):
        if kind == "vend":
            actions = send(board, Vend(id=arg, slot=slot))
            if any(isinstance(a, StartMotor) for a in actions):
                starts.append(arg)
        elif kind == "finish":
            reason = None if arg == "success" else arg
            actions = board.motor_finished("success" if reason is None else "failed", 1.0, reason)
        elif kind == "nak":
            actions = send(board, Nak(reason="crc"))
        else:
            board = make_board(snapshot=snapshot, boot=f"{number:08X}")
            actions = []
        for action in actions:
            if isinstance(action, Persist):
                snapshot = json.loads(json.dumps(action.snapshot))
    assert len(starts) == len(set(starts))


def test_framer_items_can_be_handed_to_the_board_as_they_come() -> None:
    board = make_board()
    actions = []
    for item in LineFramer().feed(b"$" + b"Q" * 300 + b"\r\n$PING*6427\r\nHELP\r\n"):
        actions += board.receive(item, 1.0)
    assert machine(actions) == [Nak(reason="too_long"), Pong(boot=BOOT, state="ready")]
    assert human(actions)[0].startswith("Commands:")


def test_a_snapshot_of_an_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError):
        make_board(snapshot={"version": 99, "entries": []})


@pytest.mark.parametrize("typed", ["VEND:\u00b2", "VEND:\u0663", "\u0131dent\u0131fy"])
def test_non_ascii_digits_and_letters_in_a_typed_command_get_an_error_line_not_a_crash(
        typed: str) -> None:
    board = make_board()
    board.boot(0.0)
    actions = board.receive_line(typed.encode("utf-8") + b"\n", 1.0)
    assert not any(isinstance(action, StartMotor) for action in actions)
    assert human(actions), "a person gets an answer"
