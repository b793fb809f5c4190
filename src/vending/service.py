"""The vend transaction: the only place that decides what state a vend is in."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from .clock import SYSTEM_CLOCK, Clock
from .commlog import ERROR, INFO, CommunicationLog
from .config import VendSettings
from .devices.base import Device, VendOutcome, VendRequest
from .devices.registry import DeviceRegistry
from .errors import (
    IdempotencyKeyInFlight,
    IdempotencyKeyMismatch,
    InvalidSlot,
    NoDeviceAvailable,
    QueueFull,
    ShuttingDown,
    StoreUnavailable,
)
from .events import (
    STORE_RECOVERED,
    STORE_UNAVAILABLE,
    VEND_FINISHED,
    VEND_SENT,
    VEND_SETTLED,
    EventBus,
)
from .protocol.states import Outcome, VendState
from .store import Store, Transaction

logger = logging.getLogger("vending.vend")


class _Dispatcher:
    """One board's FIFO of vends and the named thread that runs them one at a time."""

    def __init__(self, service: VendService, device_id: str) -> None:
        self.service = service
        self.device_id = device_id
        self.queue: deque[str] = deque()
        self.current: str | None = None
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"vend-{device_id}", daemon=True)
        self.thread.start()

    def submit(self, txn_id: str, front: bool = False) -> None:
        with self.cond:
            if front:
                self.queue.appendleft(txn_id)
            else:
                self.queue.append(txn_id)
            self.cond.notify()

    @property
    def waiting(self) -> int:
        return len(self.queue)

    def _run(self) -> None:
        while True:
            with self.cond:
                idle_until = time.monotonic() + self.service.settings.thread_idle
                while not self.queue and not self.stopping:
                    remaining = idle_until - time.monotonic()
                    if remaining <= 0:
                        break
                    self.cond.wait(remaining)
                if self.stopping:
                    return
                txn_id = self.queue.popleft() if self.queue else None
                self.current = txn_id
            if txn_id is None:
                # Idle: end the thread unless a vend arrived meanwhile (the service decides,
                # under the lock every submit holds, so no vend is left behind).
                if self.service._retire(self):
                    return
                continue
            try:
                self.service._process(self.device_id, txn_id)
            except Exception:
                logger.exception("vend %s crashed; recording unknown", txn_id)
                # _finish keeps the outcome in memory when the store refuses it, so this
                # thread lives on and the board's queue keeps moving.
                self.service._finish(txn_id, VendState.UNKNOWN,
                                     "internal error while vending; check the machine",
                                     "internal_error")
            finally:
                with self.cond:
                    self.current = None
                    self.cond.notify_all()

    def drain(self) -> list[str]:
        """Take every waiting vend out of the queue (they were never sent)."""
        with self.cond:
            items = list(self.queue)
            self.queue.clear()
            return items

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.current is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
        return True


class VendService:
    """Turns `POST /vend/<slot>` into a persisted transaction and a board's confirmed outcome.

    The one owner of a vend's state: every change (sent, finished, recovered after a crash,
    settled late by a board) is written here and announced with one event.
    """

    # Back-off of the outcomes kept in memory while the store cannot commit (seconds).
    STORE_RETRY_FIRST = 0.1
    STORE_RETRY_MAX = 5.0

    def __init__(self, store: Store, registry: DeviceRegistry, log: CommunicationLog,
                 settings: VendSettings, slots: int, events: EventBus | None = None,
                 clock: Clock | None = None) -> None:
        self.events = events or EventBus()
        self.slots = slots
        self.store = store
        self.registry = registry
        self.log = log
        self.settings = settings
        self.clock = clock or SYSTEM_CLOCK
        # The wall clock is read once; from then on time moves with the monotonic clock, so a
        # jump at NTP sync never makes idempotency keys look old.
        self._started_wall = self.clock.wall()
        self._started_mono = self.clock.monotonic()
        self._dispatchers: dict[str, _Dispatcher] = {}
        self._done: dict[str, threading.Event] = {}
        # When each open vend was queued, on the monotonic clock (expiry survives clock jumps).
        self._queued_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._accepting = True
        # Final outcomes the store refused, kept until a retry writes them: txn id ->
        # (state, message, reason). Guarded by _held_lock; written by the store-retry thread.
        self._held: dict[str, tuple[str, str, str | None]] = {}
        self._held_lock = threading.Lock()
        self._retry_thread: threading.Thread | None = None
        self._retry_stop = threading.Event()
        self._outage_started: float | None = None

    # Accepting vends

    def check_slot(self, slot: int) -> None:
        if not 1 <= slot <= self.slots:
            raise InvalidSlot(
                f"slot must be a whole number from 1 to {self.slots}, got {slot}"
            )

    def request_vend(self, slot: int, idempotency_key: str | None = None) -> tuple[Transaction, bool]:
        """Persist a vend and queue it for a board. Returns (transaction, created).

        A known idempotency key returns the earlier transaction (created=False) when it
        is finished; a key still running, or reused for another slot, raises.
        """
        self.check_slot(slot)
        if not self._accepting:
            raise ShuttingDown("the server is shutting down; try again when it is back")
        problem = self.store_problem()
        if problem is not None:
            # Never run a motor whose vend cannot be recorded first; make sure something
            # is probing the store, whichever write found it sick.
            self._store_failed(problem)
            raise StoreUnavailable(problem)
        with self._lock:
            if idempotency_key is not None:
                earlier = self.store.find_by_idempotency_key(idempotency_key)
                if earlier is not None:
                    return self._replay(earlier, slot), False
            device = self.registry.choose()
            if device is None:
                if self.registry.real_board_expected:
                    raise NoDeviceAvailable(
                        "every real board is offline; not dispensed. Plug the board in or"
                        " check its power and WiFi (the simulator never stands in for a real"
                        " board; select it on the Devices page to test without one)"
                    )
                raise NoDeviceAvailable(
                    "no device can vend: connect a board, approve a WiFi board, or start the "
                    "server with the simulator"
                )
            dispatcher = self._dispatcher_for(device.device_id)
            if dispatcher.waiting >= self.settings.queue_limit:
                raise QueueFull(
                    f"{self.settings.queue_limit} vends are already waiting for {device.device_id};"
                    " try again in a moment",
                    device_id=device.device_id,
                )
            try:
                txn, created = self.store.create_transaction(
                    slot, device.device_id, device.transport, idempotency_key
                )
            except StoreUnavailable as exc:
                self._store_failed(str(exc))
                raise
            if not created:
                return self._replay(txn, slot), False
            self._done[txn.id] = threading.Event()
            self._queued_at[txn.id] = self.clock.monotonic()
            dispatcher.submit(txn.id)
        logger.info("vend %s queued: slot %d on %s (%s)", txn.id, slot, device.device_id,
                    device.transport)
        return txn, True

    @staticmethod
    def _replay(txn: Transaction, slot: int) -> Transaction:
        if txn.slot != slot:
            raise IdempotencyKeyMismatch(
                f"this Idempotency-Key was used for slot {txn.slot}, not slot {slot};"
                " use a new key for a new vend",
                transaction_id=txn.id,
            )
        if not txn.is_final:
            raise IdempotencyKeyInFlight(
                f"a vend with this Idempotency-Key is still running ({txn.id});"
                f" poll GET /vend/{txn.id}",
                transaction_id=txn.id,
            )
        return txn

    def _retire(self, dispatcher: _Dispatcher) -> bool:
        """Forget an idle dispatcher whose thread is ending; False if work came in meanwhile."""
        with self._lock, dispatcher.cond:
            if dispatcher.queue and not dispatcher.stopping:
                return False
            if self._dispatchers.get(dispatcher.device_id) is dispatcher:
                del self._dispatchers[dispatcher.device_id]
            return True

    def _dispatcher_for(self, device_id: str) -> _Dispatcher:
        dispatcher = self._dispatchers.get(device_id)
        if dispatcher is None:
            dispatcher = _Dispatcher(self, device_id)
            self._dispatchers[device_id] = dispatcher
        return dispatcher

    def wait(self, txn_id: str, timeout: float) -> Transaction:
        """The transaction once final, or as it stands after `timeout` seconds."""
        event = self._done.get(txn_id)
        if event is not None:
            event.wait(max(0.0, timeout))
        return self.store.get(txn_id)

    def queue_lengths(self) -> dict[str, int]:
        # No lock: every status poll asks, and _lock is held while a vend is recorded (a
        # disk write). A dict's copy is atomic; a count read a moment early is as good.
        dispatchers = self._dispatchers.copy()
        return {d: disp.waiting for d, disp in dispatchers.items()}

    # Running vends (dispatcher threads)

    def _process(self, device_id: str, txn_id: str) -> None:
        try:
            txn = self.store.get(txn_id)
        except StoreUnavailable as exc:
            self._not_sent(txn_id, exc)
            return
        if txn.is_final:
            return
        waited = self.clock.monotonic() - self._queued_at.get(txn_id, self.clock.monotonic())
        if waited > self.settings.max_age:
            self._finish(txn_id, VendState.FAILED,
                         f"expired: waited {waited:.0f}s for the board, longer than the"
                         f" {self.settings.max_age:g}s limit; not dispensed", "expired")
            return
        device = self.registry.get(device_id)
        if device is None or not device.can_vend:
            self._fail_over(txn, device_id, "offline")
            return
        slots = device.facts.slots
        if slots is not None and txn.slot > slots:
            self._finish(txn_id, VendState.FAILED,
                         f"{device_id} says it has {slots} slots, so slot {txn.slot} was not sent to"
                         " it; not dispensed (set VENDING_SLOTS to match the machine)", "invalid_slot")
            return
        request = VendRequest(txn_id, txn.slot, self.settings.timeout)
        recorded = False

        def on_sent() -> None:
            nonlocal recorded
            sent = self.store.mark_sent(txn_id, device.device_id, device.transport)
            recorded = True
            self.events.publish(VEND_SENT, transaction=sent.to_dict())

        try:
            outcome = device.run_vend(request, on_sent)
        except StoreUnavailable as exc:
            if recorded:
                raise
            # The board was never told: the motor cannot have run.
            self._not_sent(txn_id, exc)
            return
        # `recorded` is False exactly while the row is still `pending` (nothing left).
        if not outcome.sent and outcome.reason == "offline" and not recorded:
            self._fail_over(txn, device_id, outcome.message)
            return
        self._record(device, txn_id, outcome)

    def _not_sent(self, txn_id: str, exc: StoreUnavailable) -> None:
        """The store failed before anything reached a board: failed, never dispensed."""
        self._store_failed(str(exc))
        self._finish(txn_id, VendState.FAILED, "the database could not record the vend before it was"
                     " sent; not dispensed", "store_unavailable")

    def _fail_over(self, txn: Transaction, from_device: str, why: str) -> None:
        """Nothing reached `from_device`: hand the vend to the next board, or fail it."""
        other = self.registry.choose(exclude={from_device})
        if other is not None and self._accepting:
            try:
                self.store.reassign(txn.id, other.device_id, other.transport)
            except StoreUnavailable as exc:
                self._not_sent(txn.id, exc)
                return
            self.log.add(from_device, "-", INFO,
                         f"vend {txn.id} moved to {other.device_id}: {from_device} is {why}")
            logger.warning("vend %s failed over from %s to %s", txn.id, from_device, other.device_id)
            with self._lock:
                self._dispatcher_for(other.device_id).submit(txn.id, front=True)
            return
        self._finish(txn.id, VendState.FAILED,
                     f"device {from_device} went offline before the vend was sent and no other"
                     " board can vend; not dispensed", "offline")

    def _record(self, device: Device, txn_id: str, outcome: VendOutcome) -> None:
        if outcome.state == Outcome.SUCCESS:
            self._finish(txn_id, VendState.SUCCESS, outcome.message, None)
        elif outcome.state == Outcome.FAILED:
            self._finish(txn_id, VendState.FAILED, outcome.message, outcome.reason)
        else:
            self._finish(txn_id, VendState.UNKNOWN, outcome.message, outcome.reason or "timeout")
            device.log(ERROR, f"vend {txn_id} outcome unknown: {outcome.message}")

    def _finish(self, txn_id: str, state: VendState, message: str, reason: str | None) -> None:
        """Write a vend's outcome; if the store refuses, keep it in memory and retry. Never raises
        for the store, so a board's vend thread outlives a full disk or a locked database."""
        problem: str | None = None
        with self._held_lock:
            if self._held:
                # The store is known to refuse: join the queue the retry thread writes.
                problem = "earlier outcomes are still waiting to be written"
                self._held[txn_id] = (state, message, reason)
        if problem is None:
            try:
                txn = self.store.finish(txn_id, state, message, reason)
            except StoreUnavailable as exc:
                problem = str(exc)
                with self._held_lock:
                    self._held[txn_id] = (state, message, reason)
        if problem is not None:
            logger.error("vend %s %s kept in memory: the store cannot record it yet; retrying"
                         " until it can", txn_id, state)
            self._store_failed(problem)
            return
        self._announce(txn)

    def _announce(self, txn: Transaction) -> None:
        log = logger.info if txn.state == VendState.SUCCESS else logger.warning
        log("vend %s %s: slot %d on %s: %s", txn.id, txn.state, txn.slot, txn.device_id,
            txn.message)
        self._queued_at.pop(txn.id, None)
        done = self._done.pop(txn.id, None)
        if done is not None:
            # Only the first finish of a vend started here is announced (repeats return the
            # stored row). Listeners run before the waiter wakes, so what it reads is counted.
            self.events.publish(VEND_FINISHED, transaction=txn.to_dict())
            done.set()

    # The store failing and recovering

    def store_problem(self) -> str | None:
        """Why vends cannot be recorded now, or None when the store commits."""
        with self._held_lock:
            held = len(self._held)
        if held:
            return (f"the database cannot record vends ({self.store.unavailable or 'retrying'});"
                    f" {held} finished vend(s) are kept in memory until it can. Free disk space"
                    " or close the program holding the database; not dispensed")
        if self.store.unavailable is not None:
            return (f"the database cannot record vends ({self.store.unavailable}). Free disk"
                    " space or close the program holding the database; not dispensed")
        return None

    def _store_failed(self, detail: str) -> None:
        """The store refused a write: alert once, and retry in the background until it commits."""
        with self._held_lock:
            first = self._outage_started is None
            if first:
                self._outage_started = self.clock.wall()
            if self._retry_thread is None or not self._retry_thread.is_alive():
                self._retry_thread = threading.Thread(target=self._retry_store,
                                                      name="vend-store-retry", daemon=True)
                self._retry_thread.start()
        if first:
            logger.error("store unavailable: %s; new vends get 503 store_unavailable until it"
                         " recovers", detail)
            self.events.publish(STORE_UNAVAILABLE, detail=detail)

    def _retry_store(self) -> None:
        """Write held outcomes, oldest first, with capped back-off on the monotonic clock."""
        delay = self.STORE_RETRY_FIRST
        while not self._retry_stop.is_set():
            with self._held_lock:
                pending = list(self._held.items())
            written: list[Transaction] = []
            try:
                if not pending:
                    self.store.probe()
                for txn_id, (state, message, reason) in pending:
                    written.append(self.store.finish(txn_id, state, message, reason))
                    with self._held_lock:
                        self._held.pop(txn_id, None)
            except StoreUnavailable:
                for txn in written:
                    self._announce(txn)
                self._retry_stop.wait(delay)
                delay = min(delay * 2, self.STORE_RETRY_MAX)
                continue
            for txn in written:
                self._announce(txn)
            with self._held_lock:
                if self._held:
                    continue
                since, self._outage_started = self._outage_started, None
                self._retry_thread = None
            logger.warning("store recovered: %d held vend outcome(s) written; taking vends again",
                           len(written))
            self.events.publish(STORE_RECOVERED, since=since, written=len(written))
            return

    # Outcomes learnt after the fact

    def settle_late(self, txn_id: str, outcome: VendOutcome) -> VendState:
        """A board reported the outcome of a vend recorded `unknown`: record it and announce it.

        Returns the vend's state afterwards. Still open means the vend path has not recorded
        `unknown` yet (the caller tries again later); a final state other than the outcome
        means nothing changed (already settled, or `unknown` stays unknown).
        """
        if outcome.state == Outcome.UNKNOWN:
            return self.store.get(txn_id).state
        txn, changed = self.store.settle_unknown(txn_id, outcome.state.state, outcome.message,
                                                 outcome.reason)
        if not changed:
            return txn.state
        logger.warning("vend %s was unknown; settled after the fact as %s: %s", txn.id, txn.state,
                       txn.message)
        self.events.publish(VEND_SETTLED, transaction=txn.to_dict(), previous=VendState.UNKNOWN)
        return txn.state

    def recover_interrupted(self) -> list[Transaction]:
        """Close the vends a crash (or a stop that outlived its grace) left open; one event each.

        `sent` becomes `unknown` (go and look); `pending` never left the server and becomes
        `failed` with reason `not_sent`.
        """
        recovered = self.store.recover_interrupted()
        for txn in recovered:
            if txn.state == VendState.UNKNOWN:
                logger.warning("vend %s (slot %d on %s) was sent but not confirmed when the server"
                               " stopped; recorded unknown: check the machine", txn.id, txn.slot,
                               txn.device_id)
            else:
                logger.info("vend %s (slot %d) was never sent when the server stopped; recorded"
                            " failed (not dispensed)", txn.id, txn.slot)
            self.events.publish(VEND_FINISHED, transaction=txn.to_dict())
        return recovered

    def unknown_vends(self, device_id: str, limit: int) -> list[Transaction]:
        """This board's newest vends recorded `unknown` (a board may still tell their outcome)."""
        found, _ = self.store.transactions(state=VendState.UNKNOWN, device_id=device_id, limit=limit)
        return found

    # Housekeeping

    def prune_keys(self) -> int:
        """Forget idempotency keys older than the retention.

        "Now" is the wall clock at start moved on by the monotonic clock, and never later
        than the ledger's newest vend, so a wall clock that jumps forward (a Pi without RTC
        at NTP sync) never forgets a key a client may still retry with.
        """
        now = self._started_wall + (self.clock.monotonic() - self._started_mono)
        newest = self.store.newest_transaction_time()
        anchor = now if newest is None else min(now, newest)
        retention = self.settings.idempotency_retention_hours * 3600.0
        return self.store.prune_idempotency_keys(anchor - retention)

    def stop(self, grace: float) -> None:
        """Stop taking vends, fail the queued ones (never sent), give running ones `grace` s."""
        self._accepting = False
        with self._lock:
            dispatchers = list(self._dispatchers.values())
        for dispatcher in dispatchers:
            for txn_id in dispatcher.drain():
                self._finish(txn_id, VendState.FAILED, "the server shut down before this vend was sent;"
                             " not dispensed", "shutdown")
        deadline = time.monotonic() + grace
        for dispatcher in dispatchers:
            dispatcher.wait_idle(max(0.0, deadline - time.monotonic()))

    def join(self, timeout: float = 5.0) -> None:
        """After the boards are stopped: end the dispatcher threads."""
        with self._lock:
            dispatchers = list(self._dispatchers.values())
        for dispatcher in dispatchers:
            dispatcher.stop()
        for dispatcher in dispatchers:
            dispatcher.thread.join(timeout)
        self._retry_stop.set()
        retry = self._retry_thread
        if retry is not None:
            retry.join(timeout)
        with self._held_lock:
            held = list(self._held.items())
        for txn_id, (state, message, reason) in held:
            # A last try; what still cannot be written stays open in the store and is
            # recorded `unknown` (check the machine) when the store next opens.
            try:
                self._announce(self.store.finish(txn_id, state, message, reason))
            except StoreUnavailable:
                logger.error("vend %s ended %s but the store could not record it before the"
                             " server stopped: %s", txn_id, state, message)
