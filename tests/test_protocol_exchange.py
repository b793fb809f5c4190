"""The controller's side of a serial vend as a pure machine: fed messages and time, no threads.

Most tests wire it to the board's own pure model (BoardLogic) through two LineFramers and
pass every byte one at a time, so both sides' rules meet as they do over a real port.
"""

from __future__ import annotations

from vending.protocol import (
    Ack,
    BoardLogic,
    Done,
    LineFramer,
    Query,
    SendLine,
    StartMotor,
    State,
    Vend,
    format_line,
    parse_line,
    parse_v1_line,
)
from vending.protocol.exchange import (
    ExchangeSettings,
    Note,
    QueryExchange,
    V1VendExchange,
    VendExchange,
    late_outcome,
)
from vending.protocol.states import Outcome

SETTINGS = ExchangeSettings(ack_timeout=0.3, max_retries=3, vend_grace=5.0)
RID = "3F2A9C01B7E4"


def sent(actions):
    return [a for a in actions if not isinstance(a, Note)]


class Wire:
    """The controller's exchange and a BoardLogic, joined byte by byte; the clock is ours."""

    def __init__(self, exchange: VendExchange, board: BoardLogic | None = None) -> None:
        self.exchange = exchange
        self.board = board or BoardLogic("ESP32_6CC8404FE03C", "2.0.0", 5, "0000BEEF")
        self.board.boot(0.0)
        self.to_board = LineFramer()
        self.to_controller = LineFramer()
        self.now = 0.0
        self.drop_to_board = 0  # lines the cable loses on the way to the board
        self.motor: StartMotor | None = None
        self.board_wrote: list[object] = []

    def controller_sends(self, actions) -> None:
        for msg in sent(actions):
            if self.drop_to_board:
                self.drop_to_board -= 1
                continue
            for byte in format_line(msg):
                for item in self.to_board.feed(bytes([byte])):
                    self.board_does(self.board.receive(item, self.now))

    def board_does(self, actions) -> None:
        for action in actions:
            if isinstance(action, StartMotor):
                self.motor = action
            elif isinstance(action, SendLine):
                for byte in action.data:
                    for item in self.to_controller.feed(bytes([byte])):
                        msg = parse_line(item)
                        self.board_wrote.append(msg)
                        self.controller_sends(self.exchange.receive(msg, self.now))

    def start(self) -> None:
        self.controller_sends(self.exchange.start(self.now))

    def motor_done(self, result: str = "success", reason: str | None = None) -> None:
        self.board_does(self.board.motor_finished(result, self.now, reason))

    def wait_until_deadline(self) -> None:
        deadline = self.exchange.deadline
        assert deadline is not None
        self.now = max(self.now, deadline)
        self.controller_sends(self.exchange.tick(self.now))


class TestAVendOverACleanLine:
    def test_sends_one_vend_and_succeeds_on_the_boards_done(self):
        wire = Wire(VendExchange(RID, 2, 20.0, SETTINGS))
        wire.start()
        assert wire.exchange.acked and wire.motor == StartMotor(2)
        assert wire.exchange.result is None
        wire.now = 1.5
        wire.motor_done()
        result = wire.exchange.result
        assert result is not None and result.outcome is Outcome.SUCCESS
        assert result.message == "slot 2 dispensed" and result.acked

    def test_a_jammed_motor_fails_with_the_boards_reason(self):
        wire = Wire(VendExchange(RID, 2, 20.0, SETTINGS))
        wire.start()
        wire.motor_done("failed", "jam")
        result = wire.exchange.result
        assert result.outcome is Outcome.FAILED and result.reason == "jam"

    def test_the_deadline_is_the_ack_timeout_until_acked_then_the_vend_timeout(self):
        exchange = VendExchange(RID, 1, 20.0, SETTINGS)
        assert sent(exchange.start(10.0)) == [Vend(id=RID, slot=1)]
        assert exchange.deadline == 10.3
        exchange.receive(Ack(id=RID), 10.1)
        assert exchange.deadline == 30.0

    def test_messages_about_another_id_change_nothing(self):
        exchange = VendExchange(RID, 1, 20.0, SETTINGS)
        exchange.start(0.0)
        assert exchange.receive(Done(id="OTHER", result="success"), 0.1) == []
        assert exchange.result is None and not exchange.acked


class TestALossyLine:
    def test_a_lost_vend_line_is_sent_again_with_the_same_id_and_runs_the_motor_once(self):
        wire = Wire(VendExchange(RID, 3, 20.0, SETTINGS))
        wire.drop_to_board = 1
        wire.start()
        assert wire.motor is None
        wire.wait_until_deadline()
        assert wire.motor == StartMotor(3) and wire.exchange.acked
        wire.motor_done()
        assert wire.exchange.result.outcome is Outcome.SUCCESS

    def test_a_lost_ack_makes_the_vend_resent_and_the_board_acks_without_a_second_motor_run(self):
        exchange = VendExchange(RID, 3, 20.0, SETTINGS)
        wire = Wire(exchange)
        wire.start()
        # The ACK was lost on the way back: the controller re-sends after the ACK timeout.
        exchange.acked = False
        motor = wire.motor
        wire.motor = None
        wire.wait_until_deadline()
        assert wire.motor is None and motor == StartMotor(3)
        assert exchange.acked

    def test_a_board_that_never_answers_is_asked_and_then_the_vend_fails_as_never_received(self):
        exchange = VendExchange(RID, 1, 20.0, SETTINGS)
        sends = sent(exchange.start(0.0))
        while exchange.result is None:
            now = exchange.deadline
            actions = sent(exchange.tick(now))
            sends += actions
            if actions == [Query(id=RID)] and sends.count(Query(id=RID)) == 1:
                exchange.receive(State(id=RID, state="unseen"), now + 0.01)
        assert sends.count(Vend(id=RID, slot=1)) == 4  # the first send and max_retries re-sends
        assert exchange.result.outcome is Outcome.FAILED
        assert exchange.result.reason == "no_ack" and not exchange.result.acked

    def test_silence_to_every_query_is_unknown_never_a_guess(self):
        exchange = VendExchange(RID, 1, 20.0, SETTINGS)
        exchange.start(0.0)
        exchange.receive(Ack(id=RID), 0.1)
        queries = 0
        while exchange.result is None:
            queries += sent(exchange.tick(exchange.deadline)).count(Query(id=RID))
        assert queries == 4
        assert exchange.result.outcome is Outcome.UNKNOWN
        assert exchange.result.reason == "no_answer"


class TestReboots:
    def test_a_board_that_rebooted_before_recording_the_vend_gets_it_again_once(self):
        exchange = VendExchange(RID, 4, 20.0, SETTINGS)
        wire = Wire(exchange)
        wire.drop_to_board = 1
        wire.start()
        wire.board = BoardLogic("ESP32_6CC8404FE03C", "2.0.0", 5, "0000CAFE")
        wire.board.boot(0.1)
        wire.now = 0.1
        wire.controller_sends(exchange.rebooted(wire.now))  # QUERY -> unseen -> VEND again
        assert wire.motor == StartMotor(4)
        wire.motor_done()
        assert exchange.result.outcome is Outcome.SUCCESS

    def test_a_reboot_while_the_motor_turned_is_unknown_and_never_re_dispensed(self):
        exchange = VendExchange(RID, 4, 20.0, SETTINGS)
        wire = Wire(exchange)
        wire.start()
        snapshot = wire.board.snapshot()
        wire.board = BoardLogic("ESP32_6CC8404FE03C", "2.0.0", 5, "0000CAFE", snapshot=snapshot)
        wire.board.boot(1.0)
        wire.motor = None
        wire.now = 1.0
        wire.controller_sends(exchange.rebooted(wire.now))
        assert wire.motor is None
        assert exchange.result.outcome is Outcome.UNKNOWN
        assert exchange.result.reason == "interrupted"

    def test_a_board_that_forgot_an_acked_vend_leaves_it_unknown(self):
        exchange = VendExchange(RID, 4, 20.0, SETTINGS)
        exchange.start(0.0)
        exchange.receive(Ack(id=RID), 0.1)
        assert sent(exchange.rebooted(0.2)) == [Query(id=RID)]
        exchange.receive(State(id=RID, state="unseen"), 0.3)
        assert exchange.result.outcome is Outcome.UNKNOWN
        assert exchange.result.reason == "forgotten"


class TestSlowMotorsAndLoss:
    def test_a_vend_still_running_at_the_deadline_gets_one_grace_period_then_unknown(self):
        exchange = VendExchange(RID, 1, 2.0, SETTINGS)
        exchange.start(0.0)
        exchange.receive(Ack(id=RID), 0.1)
        assert sent(exchange.tick(2.0)) == [Query(id=RID)]
        exchange.receive(State(id=RID, state="running"), 2.1)
        assert exchange.result is None and exchange.deadline == 7.1
        exchange.tick(7.1)
        exchange.receive(State(id=RID, state="running"), 7.2)
        assert exchange.result.outcome is Outcome.UNKNOWN and exchange.result.reason == "timeout"

    def test_a_lost_port_is_unknown_and_says_whether_the_board_took_the_vend(self):
        before = VendExchange(RID, 1, 20.0, SETTINGS)
        before.start(0.0)
        before.lost("unplugged")
        assert before.result.outcome is Outcome.UNKNOWN
        assert "before it confirmed" in before.result.message and "unplugged" in before.result.message
        after = VendExchange(RID, 1, 20.0, SETTINGS)
        after.start(0.0)
        after.receive(Ack(id=RID), 0.1)
        after.lost("unplugged")
        assert "after it took the vend" in after.result.message

    def test_nothing_is_sent_after_the_exchange_finished(self):
        exchange = VendExchange(RID, 1, 20.0, SETTINGS)
        exchange.start(0.0)
        exchange.receive(Done(id=RID, result="success"), 0.5)
        assert exchange.deadline is None
        assert exchange.tick(100.0) == [] and exchange.rebooted(100.0) == []
        assert exchange.result.outcome is Outcome.SUCCESS


class TestQueriesAndLateAnswers:
    def test_a_query_asks_max_retries_plus_one_times_then_says_silent(self):
        query = QueryExchange(RID, SETTINGS)
        assert query.start(0.0) == [Query(id=RID)]
        asks = 1
        while not query.finished:
            asks += len(query.tick(query.deadline))
        assert asks == 4 and query.silent and query.answer is None

    def test_a_late_done_settles_and_interrupted_or_forgotten_stay_unknown(self):
        assert late_outcome(Done(id=RID, result="success"), acked=True).outcome is Outcome.SUCCESS
        failed = late_outcome(Done(id=RID, result="failed", reason="jam"), acked=True)
        assert failed.outcome is Outcome.FAILED and failed.reason == "jam"
        assert late_outcome(State(id=RID, state="unseen"), acked=False).reason == "no_ack"
        assert late_outcome(State(id=RID, state="unseen"), acked=True) is None
        assert late_outcome(State(id=RID, state="interrupted"), acked=True) is None


class TestAV1Vend:
    def test_vend_success_for_the_slot_succeeds(self):
        exchange = V1VendExchange(3, 20.0)
        exchange.start(0.0)
        exchange.receive(parse_v1_line("\U0001F504 Vending from slot 3..."), 0.1)
        assert exchange.result is None
        exchange.receive(parse_v1_line("\u2705 VEND_SUCCESS:3"), 2.0)
        assert exchange.result.outcome is Outcome.SUCCESS

    def test_the_earlier_firmwares_mixed_case_error_fails_at_once(self):
        exchange = V1VendExchange(7, 20.0)
        exchange.start(0.0)
        exchange.receive(parse_v1_line("\u274C Error: Invalid slot number. Must be 1-5"), 0.1)
        assert exchange.result.outcome is Outcome.FAILED
        assert exchange.result.reason == "board_error"
        assert "Invalid slot number" in exchange.result.message

    def test_silence_past_the_deadline_is_unknown(self):
        exchange = V1VendExchange(3, 20.0)
        exchange.start(0.0)
        exchange.tick(19.9)
        assert exchange.result is None
        exchange.tick(20.0)
        assert exchange.result.outcome is Outcome.UNKNOWN and exchange.result.reason == "timeout"
