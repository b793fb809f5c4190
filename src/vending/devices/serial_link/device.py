"""One serial board, known by the id it reports (from its MAC), never by its port.

It runs a vend by feeding the pure exchange (protocol/exchange.py) what its connection hears
and sending what the exchange says, and remembers the ids whose outcome is still unknown so
it can hand the board's later answer to the vend service.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from ...commlog import ERROR, INFO, CommunicationLog
from ...protocol import Done, Message, State, format_v1_command
from ...protocol.exchange import (
    Action,
    ExchangeResult,
    Note,
    QueryExchange,
    V1VendExchange,
    VendExchange,
    late_outcome,
)
from ...protocol.states import Outcome, VendState
from ..base import OFFLINE, ONLINE, SERIAL, Device, OnSent, VendOutcome, VendRequest
from .connection import LOST, REBOOTED, SerialConnection, WaitItem
from .settings import SerialSettings, exchange_settings

logger = logging.getLogger("vending.serial")

MAX_OUTSTANDING = 16  # the board remembers 16 ids; asking about older ones is pointless


class VendLedger(Protocol):
    """What a serial board needs of the vend service: read unknown vends, settle them."""

    def unknown_vends(self, device_id: str, limit: int) -> list[Any]:
        """The board's newest vends recorded `unknown`."""

    def settle_late(self, txn_id: str, outcome: VendOutcome) -> str:
        """Record an outcome learnt late; the vend's state afterwards."""


@dataclass
class _Outstanding:
    """A request id recorded `unknown` whose real outcome the board may still tell us."""

    acked: bool
    result: ExchangeResult | None = None  # what to settle it with, once known


def _outcome(result: ExchangeResult) -> VendOutcome:
    return VendOutcome(result.outcome, result.message, result.reason)


class SerialDevice(Device):
    """A board on USB serial, known by the id it reports; its port may change."""

    transport = SERIAL

    def __init__(self, device_id: str, log: CommunicationLog, ledger: VendLedger | None,
                 settings: SerialSettings) -> None:
        super().__init__(device_id, log)
        self.ledger = ledger  # None when esp32_serial.py drives a board without a server
        self.settings = settings
        self.connection: SerialConnection | None = None
        self.vending = False
        self._outstanding: OrderedDict[str, _Outstanding] = OrderedDict()
        self._outstanding_lock = threading.Lock()

    def attach(self, connection: SerialConnection) -> None:
        """The board is (again) reachable over this connection."""
        facts = connection.facts
        assert facts is not None
        self.connection = connection
        self.facts.firmware_version = facts.firmware
        self.facts.protocol_version = facts.protocol
        self.facts.slots = facts.slots
        self.touch()
        self.set_state(ONLINE, f"on {connection.port}, protocol v{facts.protocol}")

    def info(self) -> dict[str, Any]:
        data = super().info()
        connection = self.connection
        data["port"] = connection.port if connection else None
        data["boot_id"] = connection.boot if connection else None
        with self._outstanding_lock:
            data["unresolved_vends"] = list(self._outstanding)
        return data

    def stop(self) -> None:
        connection = self.connection
        if connection is not None:
            connection.close("stopped")
        self.set_state(OFFLINE, "stopped")

    # ----- what the connection tells us (LinkListener) -------------------------------

    def heard(self) -> None:
        """A line came from the board."""
        self.touch()

    def link_lost(self, connection: SerialConnection) -> None:
        """The connection ended: offline, unless the board is on another one by now."""
        if self.connection is not connection:
            return
        detail = connection.lost_detail if connection.closing else (
            f"{connection.port} {connection.lost_detail}; plug it back in, it reconnects by itself")
        self.set_state(OFFLINE, detail)

    def keep_alive(self, connection: SerialConnection) -> None:
        """A quiet ping interval: check the board answers, ask again about unanswered vends."""
        if connection.protocol == 2 and not self.vending:
            self._ping(connection)
            if self.state == ONLINE and self.has_unanswered() and not self.vending:
                # Answers to our QUERYs were lost while the board stayed up (it answers
                # pings): ask again now rather than leave the vend `unknown` until its
                # next reboot.
                self.reconcile(connection)
        self.settle_pending()

    def _ping(self, connection: SerialConnection) -> None:
        if connection.ping() is not None:
            if self.state == OFFLINE and self.connection is connection:
                self.set_state(ONLINE, f"answering again on {connection.port}")
            return
        if self.state == ONLINE and self.connection is connection and not self.vending:
            self.set_state(OFFLINE, f"the board on {connection.port} stopped answering; check its"
                           " power")

    # ----- vending -------------------------------------------------------------------

    def vend(self, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        """Run one vend over the board's current connection (v2 with retries, or v1 once)."""
        connection = self.connection
        if connection is None or not connection.usable or not self.can_vend:
            return VendOutcome.not_sent("offline", f"{self.device_id} is offline; not dispensed")
        self.vending = True
        try:
            if connection.protocol == 1:
                return self._vend_v1(connection, request, on_sent)
            return self._vend_v2(connection, request, on_sent)
        finally:
            self.vending = False

    def _vend_v2(self, conn: SerialConnection, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        rid = request.transaction_id
        exchange = VendExchange(rid, request.slot, request.timeout, exchange_settings(self.settings))
        waiter = conn.watch(rid)
        try:
            on_sent()
            self._drive(conn, waiter, exchange)
        finally:
            conn.unwatch(rid)
        result = exchange.result
        assert result is not None
        if result.outcome == Outcome.UNKNOWN and result.reason != "interrupted":
            self._remember(rid, result.acked)
        return _outcome(result)

    def _drive(self, conn: SerialConnection, waiter: queue.Queue[WaitItem],
               exchange: VendExchange | QueryExchange) -> None:
        """Feed the exchange what the connection hears, send what it says, until it finishes."""
        actions = exchange.start(time.monotonic())
        while True:
            if not self._perform(conn, exchange, actions):
                return
            if isinstance(exchange, VendExchange) and exchange.acked:
                conn.mark_acked(exchange.request_id)
            deadline = exchange.deadline
            if deadline is None:
                return
            try:
                item = waiter.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            now = time.monotonic()
            if item is None:
                actions = exchange.tick(now)
            elif item == LOST:
                if isinstance(exchange, VendExchange):
                    exchange.lost(conn.lost_detail)
                return
            elif item == REBOOTED:
                actions = exchange.rebooted(now) if isinstance(exchange, VendExchange) else []
            else:
                assert isinstance(item, Message)
                actions = exchange.receive(item, now)

    def _perform(self, conn: SerialConnection, exchange: VendExchange | QueryExchange,
                 actions: list[Action]) -> bool:
        """Send and log what the exchange asked for; False when the port failed meanwhile."""
        for action in actions:
            if isinstance(action, Note):
                conn.log(INFO, action.text)
            elif not conn.send(action):
                if isinstance(exchange, VendExchange):
                    exchange.lost(conn.lost_detail)
                return False
        return True

    def _vend_v1(self, conn: SerialConnection, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        """v1 has no ids: send once, never retry; no VEND_SUCCESS in time means unknown."""
        exchange = V1VendExchange(request.slot, request.timeout)
        conn.drain_v1()
        command = format_v1_command("VEND", request.slot)
        on_sent()
        exchange.start(time.monotonic())
        if not conn.write(command):
            exchange.lost(conn.lost_detail)
        while exchange.result is None:
            assert exchange.deadline is not None
            line = conn.next_v1(exchange.deadline - time.monotonic())
            if line is None:
                exchange.tick(time.monotonic())
            elif line == LOST:
                exchange.lost(conn.lost_detail)
            elif not isinstance(line, str):
                exchange.receive(line, time.monotonic())
        return _outcome(exchange.result)

    # ----- reconciliation ------------------------------------------------------------

    def recall_unknown(self) -> None:
        """Add this board's recent `unknown` vends from the store (e.g. a server restart left
        them), so the board can be asked about them. Treated as ACKed: `unseen` settles nothing."""
        if self.ledger is None:
            return
        try:
            recent = self.ledger.unknown_vends(self.device_id, MAX_OUTSTANDING)
        except Exception:
            logger.exception("could not read unknown vends of %s", self.device_id)
            return
        with self._outstanding_lock:
            for txn in reversed(recent):  # oldest first, as the board's memory is ordered
                if txn.reason != "interrupted" and txn.checked_at is None:
                    self._outstanding.setdefault(txn.id, _Outstanding(acked=True))

    def has_unanswered(self) -> bool:
        """True while a vend recorded `unknown` still waits for the board's answer."""
        with self._outstanding_lock:
            return any(entry.result is None for entry in self._outstanding.values())

    def _remember(self, rid: str, acked: bool) -> None:
        with self._outstanding_lock:
            self._outstanding[rid] = _Outstanding(acked)
            while len(self._outstanding) > MAX_OUTSTANDING:
                self._outstanding.popitem(last=False)

    def reconcile(self, conn: SerialConnection) -> None:
        """After a reboot or reconnect: ask the board about every unresolved vend (session thread)."""
        if conn.protocol == 2:
            with self._outstanding_lock:
                pending = list(self._outstanding.items())
            for rid, entry in pending:
                if entry.result is not None:
                    continue
                query = QueryExchange(rid, exchange_settings(self.settings))
                waiter = conn.watch(rid)
                try:
                    self._drive(conn, waiter, query)
                finally:
                    conn.unwatch(rid)
                if conn.lost.is_set():
                    return
                if query.answer is not None:
                    self._apply_answer(rid, entry, query.answer)
        self.settle_pending()

    def late_result(self, msg: Done | State) -> None:
        """A DONE or STATE for an id no vend waits for any more (reader thread)."""
        with self._outstanding_lock:
            entry = self._outstanding.get(msg.id)
        if entry is None:
            self.log(INFO, f"ignored a repeat answer for {msg.id} (already settled)")
            return
        self._apply_answer(msg.id, entry, msg)
        self.settle_pending()

    def _apply_answer(self, rid: str, entry: _Outstanding, msg: State | Done) -> None:
        result = late_outcome(msg, entry.acked)
        if result is not None:
            entry.result = result
            return
        state = msg.result if isinstance(msg, Done) else msg.state
        if state in ("unseen", "interrupted"):
            # Unknown stays unknown: the motor may have turned, a person must look.
            self.log(ERROR, f"vend {rid} stays unknown: the board reports {state}; check the machine")
            with self._outstanding_lock:
                self._outstanding.pop(rid, None)

    def settle_pending(self) -> None:
        """Hand outcomes learnt late to the vend service, once the vend is recorded `unknown`."""
        if self.ledger is None:
            return
        with self._outstanding_lock:
            ready = [(rid, e.result) for rid, e in self._outstanding.items() if e.result is not None]
        for rid, result in ready:
            try:
                state = self.ledger.settle_late(rid, _outcome(result))
            except Exception:
                logger.exception("could not settle vend %s", rid)
                continue
            if state in (VendState.PENDING, VendState.SENT):
                continue  # the vend path has not recorded `unknown` yet; try on the next tick
            if state == result.outcome.state:
                self.log(INFO, f"vend {rid} settled as {state}: {result.message}")
            with self._outstanding_lock:
                self._outstanding.pop(rid, None)

