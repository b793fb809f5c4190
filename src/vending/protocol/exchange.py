"""The controller's side of one serial vend, as pure state machines. No I/O; time is passed in.

`VendExchange` runs a v2 vend: VEND, its re-sends (same id) until ACKed, the wait for DONE,
QUERYs after silence or a reboot, and the board's later STATE. `QueryExchange` asks about one
id (reconciliation after a reconnect). `V1VendExchange` runs a legacy vend (send once, never
retry). `late_outcome` turns an answer that arrives after the vend gave up into an outcome.

Each machine is fed what happened (`receive`, `rebooted`, `lost`, `tick`) and returns what to
send; `result` is set once it has finished. The serial device drives them with the port and
its reader thread, as `board.py` is driven by the board simulator; tests feed them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional, Union

from .messages import Ack, Done, Message, Query, State, Vend
from .states import Outcome
from .v1 import V1Error, V1Line, V1VendSuccess


@dataclass(frozen=True)
class ExchangeSettings:
    """Timing of the v2 exchange (the serial settings' ack_timeout, max_retries, vend_grace)."""

    ack_timeout: float = 0.3
    max_retries: int = 3
    vend_grace: float = 5.0


@dataclass(frozen=True)
class ExchangeResult:
    """How a vend ended, with the sentence a person reads; acked: the board took the vend."""

    outcome: Outcome
    message: str
    reason: Optional[str] = None  # noqa: UP045 - dataclass fields are evaluated on 3.9
    acked: bool = False


@dataclass(frozen=True)
class Note:
    """A line for the communication log (why the machine did what it did)."""

    text: str


Action = Union[Message, Note]


class _Phase(Enum):
    WAITING = "waiting"  # for the ACK, then for the DONE
    QUERYING = "querying"  # asked with QUERY; waiting for the STATE
    FINISHED = "finished"


class QueryExchange:
    """QUERY one id until the board answers STATE (or DONE), re-asking after each silence."""

    def __init__(self, request_id: str, settings: ExchangeSettings) -> None:
        self.request_id = request_id
        self.settings = settings
        self.tries = 0
        self.deadline: float | None = None
        self.answer: State | Done | None = None
        self.silent = False  # every try went unanswered

    @property
    def finished(self) -> bool:
        """True once answered or given up."""
        return self.answer is not None or self.silent

    def start(self, now: float) -> list[Action]:
        """The first QUERY."""
        return self._ask(now)

    def receive(self, msg: Message, now: float) -> list[Action]:
        """A message about this id; only STATE and DONE answer a QUERY."""
        if not self.finished and isinstance(msg, (State, Done)) and msg.id == self.request_id:
            self.answer = msg
            self.deadline = None
        return []

    def tick(self, now: float) -> list[Action]:
        """Time passed: ask again after a silence, or give up after max_retries re-asks."""
        if self.finished or self.deadline is None or now < self.deadline:
            return []
        if self.tries > self.settings.max_retries:
            self.silent = True
            self.deadline = None
            return []
        return self._ask(now)

    def _ask(self, now: float) -> list[Action]:
        self.tries += 1
        self.deadline = now + self.settings.ack_timeout
        return [Query(id=self.request_id)]


class VendExchange:
    """One v2 vend from the controller's side: what to send, when, and what it came to.

    The rules (docs/protocol.md): the same id is re-sent until ACKed, never after; silence
    past the deadline, or a reboot, is answered with QUERY; `unseen` after an ACK, an
    `interrupted` motor, silence to every QUERY or a lost port end `unknown`, never a guess.
    """

    def __init__(self, request_id: str, slot: int, timeout: float,
                 settings: ExchangeSettings) -> None:
        self.request_id = request_id
        self.slot = slot
        self.timeout = timeout
        self.settings = settings
        self.acked = False
        self.result: ExchangeResult | None = None
        self._phase = _Phase.WAITING
        self._command = Vend(id=request_id, slot=slot)
        self._sends = 0
        self._reissued = False
        self._graced = False
        self._ack_deadline = 0.0
        self._outcome_deadline = 0.0
        self._query: QueryExchange | None = None
        self._query_after_reboot = False

    # ----- inputs --------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Send the VEND."""
        self._outcome_deadline = now + self.timeout
        return self._send_vend(now)

    @property
    def deadline(self) -> float | None:
        """When `tick` must be called next if nothing arrives (None once finished)."""
        if self._phase is _Phase.FINISHED:
            return None
        if self._phase is _Phase.QUERYING:
            assert self._query is not None
            return self._query.deadline
        if self.acked:
            return self._outcome_deadline
        return min(self._ack_deadline, self._outcome_deadline)

    def receive(self, msg: Message, now: float) -> list[Action]:
        """An ACK, DONE or STATE with this vend's id."""
        if self._phase is _Phase.FINISHED or getattr(msg, "id", None) != self.request_id:
            return []
        if self._phase is _Phase.QUERYING:
            assert self._query is not None
            self._query.receive(msg, now)
            return self._after_query(now)
        if isinstance(msg, Ack):
            self.acked = True
            return []
        if isinstance(msg, Done):
            return self._finish_from(msg)
        if isinstance(msg, State):
            return self._answered(msg, now, after_reboot=False)
        return []

    def rebooted(self, now: float) -> list[Action]:
        """The board's boot id changed: ask what it remembers of this vend."""
        if self._phase is not _Phase.WAITING:
            return []  # a QUERY under way gets its answer from the rebooted board anyway
        return self._start_query(now, after_reboot=True)

    def lost(self, detail: str) -> list[Action]:
        """The port failed or the board was unplugged."""
        if self._phase is _Phase.FINISHED:
            return []
        what = "after it took the vend" if self.acked else "before it confirmed the vend"
        return self._finish(Outcome.UNKNOWN, f"the board went offline {what} ({detail});"
                            " check the machine", "disconnected")

    def tick(self, now: float) -> list[Action]:
        """Time passed; acts only once `deadline` is reached."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        if self._phase is _Phase.QUERYING:
            assert self._query is not None
            actions = self._query.tick(now)
            return actions or self._after_query(now)
        s = self.settings
        if not self.acked and self._sends <= s.max_retries and now < self._outcome_deadline:
            note = Note(f"no ACK for {self.request_id} within {s.ack_timeout:g}s; re-sending"
                        " (same id)")
            return [note, *self._send_vend(now, first=False)]
        return self._start_query(now, after_reboot=False)

    # ----- the rules -----------------------------------------------------------------

    def _send_vend(self, now: float, first: bool = True) -> list[Action]:
        self._sends = 1 if first else self._sends + 1
        self._ack_deadline = now + self.settings.ack_timeout
        return [self._command]

    def _start_query(self, now: float, after_reboot: bool) -> list[Action]:
        self._phase = _Phase.QUERYING
        self._query_after_reboot = after_reboot
        self._query = QueryExchange(self.request_id, self.settings)
        return self._query.start(now)

    def _after_query(self, now: float) -> list[Action]:
        query = self._query
        assert query is not None
        if not query.finished:
            return []
        self._phase = _Phase.WAITING
        self._query = None
        if query.answer is None:
            return self._finish(Outcome.UNKNOWN, "the board does not answer; check the machine",
                                "no_answer")
        return self._answered(query.answer, now, self._query_after_reboot)

    def _answered(self, answer: State | Done, now: float, after_reboot: bool) -> list[Action]:
        if isinstance(answer, Done) or answer.state in ("success", "failed"):
            return self._finish_from(answer)
        if answer.state == "interrupted":
            self.acked = True
            return self._finish(Outcome.UNKNOWN, f"the board rebooted while the motor of slot"
                                f" {self.slot} turned; check the machine (it is never"
                                " re-dispensed)", "interrupted")
        if answer.state == "running":
            self.acked = True
            if now >= self._outcome_deadline:
                if self._graced:
                    return self._finish(Outcome.UNKNOWN, f"no outcome from the board within"
                                        f" {self.timeout:g}s; check the machine", "timeout")
                self._graced = True
                self._outcome_deadline = now + self.settings.vend_grace
            return []
        # unseen: the board has no record, so the motor never ran for this id.
        if self.acked:
            # It ACKed, so it recorded the id before: it forgot it. Never guess.
            return self._finish(Outcome.UNKNOWN, "the board no longer remembers this vend;"
                                " check the machine", "forgotten")
        if after_reboot and not self._reissued and now < self._outcome_deadline:
            self._reissued = True
            note = Note(f"board rebooted before recording {self.request_id}; sending it again"
                        " (same id)")
            return [note, *self._send_vend(now)]
        return self._finish(Outcome.FAILED, f"the board never received the vend ({self._sends}"
                            " tries); not dispensed", "no_ack")

    def _finish_from(self, msg: State | Done) -> list[Action]:
        self.acked = True
        succeeded = (msg.result if isinstance(msg, Done) else msg.state) == "success"
        if succeeded:
            return self._finish(Outcome.SUCCESS, f"slot {self.slot} dispensed")
        return self._finish(Outcome.FAILED, f"the board reports {msg.reason}; not dispensed",
                            msg.reason)

    def _finish(self, outcome: Outcome, message: str, reason: str | None = None) -> list[Action]:
        self._phase = _Phase.FINISHED
        self._query = None
        self.result = ExchangeResult(outcome, message, reason, self.acked)
        return []


def late_outcome(msg: State | Done, acked: bool) -> ExchangeResult | None:
    """What an answer arriving after a vend was recorded `unknown` settles it as.

    None means it stays unknown: `interrupted`, or `unseen` after an ACK (the motor may have
    turned), or `running` (not finished yet).
    """
    state = msg.result if isinstance(msg, Done) else msg.state
    if state == "success":
        return ExchangeResult(Outcome.SUCCESS, "the board confirmed it later: dispensed", None, True)
    if state == "failed":
        return ExchangeResult(Outcome.FAILED, f"the board reported {msg.reason} later; not"
                              " dispensed", msg.reason, True)
    if state == "unseen" and not acked:
        return ExchangeResult(Outcome.FAILED, "the board never received this vend; not dispensed",
                              "no_ack", False)
    return None


class V1VendExchange:
    """One legacy v1 vend: no ids, so send once and never retry; silence means unknown."""

    def __init__(self, slot: int, timeout: float) -> None:
        self.slot = slot
        self.timeout = timeout
        self.result: ExchangeResult | None = None
        self.deadline: float | None = None

    def start(self, now: float) -> None:
        """The VEND line is sent now (by the caller: v1 lines are not v2 messages)."""
        self.deadline = now + self.timeout

    def receive(self, line: V1Line, now: float) -> None:
        """A line from the board: VEND_SUCCESS for this slot, or an error line, ends the vend."""
        if self.result is not None:
            return
        if isinstance(line, V1VendSuccess) and line.slot == self.slot:
            self._finish(Outcome.SUCCESS, f"slot {self.slot} dispensed")
        elif isinstance(line, V1Error):
            self._finish(Outcome.FAILED, f"the board answered: {line.message}; not dispensed",
                         "board_error")

    def tick(self, now: float) -> None:
        """Time passed: no VEND_SUCCESS by the deadline means unknown."""
        if self.result is None and self.deadline is not None and now >= self.deadline:
            self._finish(Outcome.UNKNOWN, f"no VEND_SUCCESS:{self.slot} from the v1 board within"
                         f" {self.timeout:g}s; check the machine", "timeout")

    def lost(self, detail: str) -> None:
        """The port failed: the command may have reached the board."""
        if self.result is None:
            self._finish(Outcome.UNKNOWN, f"the board went offline before it confirmed the vend"
                         f" ({detail}); check the machine", "disconnected")

    def _finish(self, outcome: Outcome, message: str, reason: str | None = None) -> None:
        self.deadline = None
        self.result = ExchangeResult(outcome, message, reason)
