"""One WiFi board as the registry sees it: its command FIFO, its long-polls and liveness.

A vend waits in the device's FIFO until the board's poll takes it; the poll marks it sent
(on_sent) before the command leaves, and the board's confirm by request id ends it.

A poll waits for a command in one of two ways: on an HTTP worker thread (`take_command`
with a wait), or parked without a thread (`park_poll`: the server calls back when the poll
should be answered, and the answer is then made by `take_command(0)`).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...commlog import ERROR, TX, CommunicationLog
from ..base import (
    CONNECTING,
    OFFLINE,
    ONLINE,
    OUTCOME_FAILED,
    OUTCOME_SUCCESS,
    OUTCOME_UNKNOWN,
    PENDING_APPROVAL,
    WIFI,
    Device,
    OnSent,
    VendOutcome,
    VendRequest,
)


@dataclass
class Command:
    """A vend in the board's FIFO: queued -> delivered -> done | abandoned."""

    request: VendRequest
    on_sent: OnSent
    state: str = "queued"
    outcome: VendOutcome | None = None
    deliveries: int = 0


@dataclass(frozen=True)
class Claim:
    """A second board claiming a waiting board's id: shown to the operator, approved by no one."""

    protocol: int
    fingerprint: str | None
    source: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "fingerprint": self.fingerprint,
                "source": self.source, "detail": self.detail}


def outcome_for(result: str, slot: int, message: str, reason: str | None) -> VendOutcome:
    """The vend outcome a board's result word stands for."""
    if result == "success":
        return VendOutcome(OUTCOME_SUCCESS, message or f"slot {slot} dispensed")
    if result == "not_received":
        return VendOutcome(OUTCOME_FAILED, message or "the board never received the command; not dispensed",
                           "not_received")
    return VendOutcome(OUTCOME_FAILED, message or "the board reports the vend failed", reason or "failed")


class _ParkedWake:
    """A parked poll's wake-up; released without the device's lock, because the server's
    I/O loop releases it (a deadline, a closed connection) and must never wait for the lock
    a vend holds while it commits to the database (`on_sent`)."""

    __slots__ = ("wake", "released")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.released = False

    def release(self) -> None:
        self.released = True  # pruned from the device's list, under its lock, later


class WifiDevice(Device):
    """A board on the LAN that long-polls for commands."""

    transport = WIFI

    def __init__(self, device_id: str, log: CommunicationLog, protocol: int) -> None:
        super().__init__(device_id, log)
        self.facts.protocol_version = protocol
        self.approved = False
        self.authenticated = protocol >= 2
        self.ip_address: str | None = None
        # The address its first unauthenticated request came from, to bound waiting entries
        # per source; None for boards remembered from an earlier run.
        self.source: str | None = None
        self.fingerprint: str | None = None
        self.conflict: Claim | None = None
        self._cond = threading.Condition()
        self._queue: deque[Command] = deque()
        self._inflight: Command | None = None
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._last_delivered: str | None = None
        self._polls_held = 0  # polls waiting on a worker thread
        self._parked: list[_ParkedWake] = []  # polls waiting without one (released: pruned)
        self._last_activity = time.monotonic()
        self._stopping = False

    @property
    def protocol(self) -> int:
        return self.facts.protocol_version or 1

    @property
    def polls_held(self) -> int:
        """Polls waiting for a command, on a thread or parked: the board is there."""
        return self._polls_held + sum(1 for parked in self._parked if not parked.released)

    @property
    def polls_on_threads(self) -> int:
        """Polls that each occupy an HTTP worker thread while they wait."""
        return self._polls_held

    def silent_for(self) -> float:
        """Seconds since the board last talked to us (0 while a poll is held)."""
        with self._cond:
            if self.polls_held:
                return 0.0
            return time.monotonic() - self._last_activity

    def info(self) -> dict[str, Any]:
        data = super().info()
        data.update(approved=self.approved, authenticated=self.authenticated,
                    ip_address=self.ip_address, fingerprint=self.fingerprint,
                    polling=self.polls_held > 0,
                    conflict=self.conflict.to_dict() if self.conflict else None)
        return data

    # Liveness

    def heard(self, ip: str | None = None) -> None:
        """The board talked to us: note it, and bring it back online if it had gone."""
        self.touch()
        if ip:
            self.ip_address = ip
        with self._cond:
            self._last_activity = time.monotonic()
        self.refresh_state()

    def refresh_state(self) -> None:
        """Online when approved (and, for our firmware, paired); pending approval otherwise."""
        if self._stopping:
            return
        if self.conflict is not None:
            self.set_state(PENDING_APPROVAL, "two boards claim this id: an operator must choose")
        elif not self.approved:
            self.set_state(PENDING_APPROVAL, "an operator must approve this board before it vends")
        else:
            self.set_state(ONLINE)
        self._wake()

    def check_alive(self, offline_after: float) -> None:
        """Called by the watchdog: no poll held and none for `offline_after` s -> offline."""
        with self._cond:
            silent = time.monotonic() - self._last_activity
            gone = self.polls_held == 0 and silent > offline_after
        if gone and self.state in (ONLINE, PENDING_APPROVAL, CONNECTING):
            self.set_state(OFFLINE, f"no poll for {silent:.0f}s")
            self._wake()

    def _wake(self) -> None:
        with self._cond:
            self._notify()

    def _notify(self) -> None:
        """Wake every poll that waits, on a thread or parked. Caller holds `_cond`."""
        self._cond.notify_all()
        if self._parked and self._poll_ready():
            waiting, self._parked = self._parked, []
            self._last_activity = time.monotonic()
            for parked in waiting:
                if not parked.released:
                    parked.wake()

    def _poll_ready(self) -> bool:
        """Whether a waiting poll has its answer now: exactly when `take_command` stops waiting.

        Caller holds `_cond`."""
        if self._stopping or (self.protocol >= 2 and not self.approved):
            return True
        inflight = self._inflight
        if inflight is not None and inflight.state == "delivered":
            return self.protocol >= 2
        return bool(self._queue) and self.can_vend

    # The vend, on the service's dispatcher thread

    def vend(self, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        command = Command(request, on_sent)
        with self._cond:
            if not self.can_vend or self._stopping:
                return VendOutcome.not_sent("offline", f"{self.device_id} is {self.status}; not dispensed")
            self._queue.append(command)
            self._notify()
            while command.state == "queued":
                if not self.can_vend or self._stopping:
                    self._queue.remove(command)
                    return VendOutcome.not_sent(
                        "offline",
                        f"{self.device_id} stopped polling ({self.status}) before it took the vend;"
                        " not dispensed",
                    )
                self._cond.wait(1.0)
            deadline = time.monotonic() + request.timeout
            while command.state == "delivered" and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if command.state == "done" and command.outcome is not None:
                return command.outcome
            command.state = "abandoned"
            if self._inflight is command:
                self._inflight = None
        why = "the server stopped" if self._stopping else f"no confirmation within {request.timeout:g}s"
        self.log(ERROR, f"vend {request.transaction_id}: {why}")
        return VendOutcome(OUTCOME_UNKNOWN, f"{why}; the board may have dispensed, check the machine",
                           "timeout" if not self._stopping else "interrupted")

    # The board's poll, on an HTTP worker thread

    def take_command(self, wait: float) -> Command | None:
        """The next command for the board, holding the poll up to `wait` s for one to come.

        Our firmware gets an unconfirmed command again (same id; it will not run it twice);
        earlier firmware never does, as it would run the motor again.
        """
        deadline = time.monotonic() + wait
        with self._cond:
            self._polls_held += 1
            self._last_activity = time.monotonic()
            try:
                while not self._stopping:
                    if self.protocol >= 2 and not self.approved:
                        return None  # revoked: let the board find out on its next request
                    inflight = self._inflight
                    if inflight is not None and inflight.state == "delivered":
                        if self.protocol >= 2:
                            inflight.deliveries += 1
                            self.log(TX, f"VEND id={inflight.request.transaction_id}"
                                         f" slot={inflight.request.slot} (again, unconfirmed)")
                            return inflight
                    elif self._queue and self.can_vend:
                        command = self._queue.popleft()
                        try:
                            # Committed before the command leaves: a crash from here on
                            # leaves `sent`, never a silent second run.
                            command.on_sent()
                        except Exception as exc:
                            command.state = "done"
                            command.outcome = VendOutcome.not_sent(
                                "not_sent", f"could not record the vend as sent ({exc}); not dispensed")
                            self._notify()
                            continue
                        command.state = "delivered"
                        command.deliveries = 1
                        self._inflight = command
                        self._last_delivered = command.request.transaction_id
                        self._notify()
                        self.log(TX, f"VEND id={command.request.transaction_id} slot={command.request.slot}")
                        return command
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
                return None
            finally:
                self._polls_held -= 1
                self._last_activity = time.monotonic()

    def park_poll(self, wake: Callable[[], None]) -> Callable[[], None] | None:
        """Let a poll wait without a thread: `wake()` is called once, when it should be answered.

        Returns None when it should be answered at once (nothing to wait for), else a release
        that ends the wait without a wake-up (the poll's deadline, or its connection closing);
        calling release after the wake-up does nothing. `wake` runs under this device's lock
        and must not block. Registered under the lock the vend queues under, so no command
        can slip in between the check and the wait.
        """
        entry = _ParkedWake(wake)
        with self._cond:
            if self._poll_ready():
                return None
            self._parked = [parked for parked in self._parked if not parked.released]
            self._parked.append(entry)
            self._last_activity = time.monotonic()
        return entry.release

    # Confirmations

    def confirm_inflight(self, request_id: str, outcome: VendOutcome, result: str) -> str | None:
        """Settle the command in flight. Returns accepted/duplicate/conflict, or None if not ours."""
        with self._cond:
            earlier = self._recent.get(request_id)
            if earlier is not None:
                return "duplicate" if earlier == result else "conflict"
            command = self._inflight
            if command is None or command.request.transaction_id != request_id:
                return None
            command.outcome = outcome
            command.state = "done"
            self._inflight = None
            self._recent[request_id] = result
            while len(self._recent) > 64:
                self._recent.popitem(last=False)
            self._notify()
            return "accepted"

    def recent_result(self, request_id: str) -> str | None:
        with self._cond:
            return self._recent.get(request_id)

    def inflight_id(self) -> str | None:
        with self._cond:
            return self._inflight.request.transaction_id if self._inflight else None

    @property
    def last_delivered(self) -> str | None:
        return self._last_delivered

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._notify()
        self.set_state(OFFLINE, "server stopping")
