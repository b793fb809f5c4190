"""Alerts: what an operator must hear about, stored, logged, shown, published and posted.

The AlertCenter listens on the event bus. Listeners run on the publisher's thread (a vend
dispatcher, a device reader), so they only queue the event; the `alerts` thread turns it
into a stored alert. Webhooks are posted by the `webhooks` thread from the stored pending
deliveries, so a slow or dead receiver never delays a vend and a restart loses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .audit import one_line
from .config import AlertSettings
from .devices.base import BUSY, CONNECTING, OFFLINE, ONLINE, PENDING_APPROVAL
from .errors import StoreUnavailable
from .events import (
    ALERT_ACKNOWLEDGED,
    ALERT_RAISED,
    AUTH_FAILED,
    DEVICE_CONFLICT,
    DEVICE_PENDING_APPROVAL,
    DEVICE_REMOVED,
    DEVICE_STATE,
    SLOT_CHANGED,
    STORE_RECOVERED,
    STORE_UNAVAILABLE,
    VEND_FINISHED,
    VEND_SETTLED,
    Event,
    EventBus,
)
from .protocol.states import VendState
from .store import Store
from .store.operations import Alert, OperationsStore
from .threads import Worker

logger = logging.getLogger("vending.alerts")

CRITICAL = "critical"
WARNING = "warning"
INFO = "info"

# Alert kinds.
VEND_UNKNOWN = "vend_unknown"
VEND_FAILED = "vend_failed"
DEVICE_OFFLINE = "device_offline"
DEVICE_BACK = "device_back"
LOW_STOCK = "low_stock"
SOLD_OUT = "sold_out"
APPROVAL_REQUESTED = "device_pending_approval"
SIGN_IN_FAILURES = "sign_in_failures"
DEVICE_CONFLICT_KIND = "device_conflict"
STORE_DOWN = "store_unavailable"
KINDS = (VEND_UNKNOWN, VEND_FAILED, DEVICE_OFFLINE, DEVICE_BACK, LOW_STOCK, SOLD_OUT,
         APPROVAL_REQUESTED, SIGN_IN_FAILURES, DEVICE_CONFLICT_KIND, STORE_DOWN)

# Kinds not raised again while an unacknowledged one for the same subject exists, so a
# flapping board or a password-guessing script does not bury the page in banners.
_DEDUPLICATED = {DEVICE_OFFLINE, DEVICE_BACK, APPROVAL_REQUESTED, SIGN_IN_FAILURES,
                 DEVICE_CONFLICT_KIND}

_STOCK_OK, _STOCK_LOW, _STOCK_OUT = 0, 1, 2


class AlertCenter:
    """Turns events into stored alerts and hands them to the log, the bus and the webhooks."""

    name = "alerts"
    # Addresses whose failed sign-ins are counted at once (each failure from a new address
    # adds one; a flood from many addresses drops the stalest).
    AUTH_SOURCES_KEPT = 1024

    def __init__(self, store: Store, ops: OperationsStore, events: EventBus,
                 settings: AlertSettings, slots: int, machine_id: str = "",
                 wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ops = ops
        self.events = events
        self.settings = settings
        self.slots = slots
        self.webhooks = WebhookSender(ops, settings, machine_id, wall)
        self._queue: queue.Queue[Event | None] = queue.Queue()
        # Stopping puts None behind the queued events, so every one is recorded first.
        self._worker = Worker("alerts", self._run, join_timeout=10.0,
                              wake=lambda: self._queue.put(None))
        self._idle = threading.Condition()
        self._shutting_down = False
        self._pending = 0
        self._levels = ops.low_stock_levels()
        self._bands = {s.number: self._band(s.number, s.stock) for s in store.slots(slots)}
        self._seen_online: set[str] = set()
        self._down: set[str] = set()
        self._auth_failures: dict[str, deque[float]] = defaultdict(deque)
        # Set while the store refuses writes and no alert could be stored about it yet.
        self._store_outage: str | None = None
        events.subscribe(self._on_event, {VEND_FINISHED, VEND_SETTLED, DEVICE_STATE,
                                          DEVICE_REMOVED, SLOT_CHANGED, DEVICE_PENDING_APPROVAL,
                                          AUTH_FAILED, DEVICE_CONFLICT, STORE_UNAVAILABLE,
                                          STORE_RECOVERED})

    # Lifecycle

    def start(self) -> None:
        """Start the alerts thread and the webhook sender."""
        self._worker.start()
        self.webhooks.start()

    def stop(self) -> None:
        """Record every queued event, then stop both threads; safe twice."""
        if self._worker.running:
            self._worker.stop()
        else:
            # Never started (a runtime built and stopped without serving): record them here.
            self._queue.put(None)
            self._run()
        self.webhooks.stop()

    def shutting_down(self) -> None:
        """From now on boards stopping are the server stopping, not boards failing."""
        self._shutting_down = True

    def _on_event(self, event: Event) -> None:
        if self._shutting_down and event.kind in (DEVICE_STATE, DEVICE_REMOVED):
            return
        with self._idle:
            self._pending += 1
        self._queue.put(event)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                self.handle(event)
            except Exception:
                logger.exception("could not turn %s into an alert", event.kind)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """True once every queued event has been handled (for tests)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    # Raising and acknowledging

    def raise_alert(self, kind: str, severity: str, subject: str, message: str,
                    data: dict[str, Any] | None = None) -> Alert | None:
        """Store an alert, log it, publish it and queue its webhooks; None if deduplicated."""
        if kind in _DEDUPLICATED and self.ops.has_active_alert(kind, subject):
            logger.debug("alert %s for %s not raised again: still unacknowledged", kind, subject)
            return None
        alert = self.ops.add_alert(kind, severity, subject, message, data or {},
                                   self.settings.webhook_urls)
        log = logger.info if severity == INFO else logger.warning
        log("alert id=%d kind=%s severity=%s subject=%s: %s", alert.id, kind, severity,
            json.dumps(subject), one_line(message))
        self.events.publish(ALERT_RAISED, alert=alert.to_dict())
        if self.settings.webhook_urls:
            self.webhooks.notify()
        return alert

    def acknowledge(self, alert_id: int, who: str) -> Alert:
        """Mark an alert as seen by `who`."""
        alert = self.ops.acknowledge(alert_id, who)
        self.events.publish(ALERT_ACKNOWLEDGED, alert=alert.to_dict())
        return alert

    def resolve(self, kind: str, subject: str, why: str,
                data: dict[str, Any] | None = None) -> list[Alert]:
        """Acknowledge the active alerts that reality has answered (matching `data`, if given)."""
        resolved = []
        for alert in self.ops.active_alerts(kind, subject):
            if data and any(alert.data.get(key) != value for key, value in data.items()):
                continue
            resolved.append(self.acknowledge(alert.id, f"system: {why}"))
            logger.info("alert id=%d kind=%s subject=%s resolved: %s", alert.id, kind,
                        json.dumps(subject), one_line(why))
        return resolved

    # Low-stock levels

    def low_stock_level(self, slot: int) -> int:
        return self._levels.get(slot, self.settings.low_stock_level)

    def levels(self) -> dict[int, int]:
        """Every configured slot's effective low-stock level."""
        return {n: self.low_stock_level(n) for n in range(1, self.slots + 1)}

    def set_low_stock_level(self, slot: int, level: int | None) -> None:
        """Give a slot its own level (None: back to the default)."""
        self.ops.set_low_stock_level(slot, level)
        self._levels = self.ops.low_stock_levels()

    def _band(self, slot: int, stock: int | None) -> int:
        if stock is None:
            return _STOCK_OK
        if stock == 0:
            return _STOCK_OUT
        return _STOCK_LOW if stock <= self.low_stock_level(slot) else _STOCK_OK

    # Events to alerts

    def handle(self, event: Event) -> None:
        """Turn one event into alerts; runs on the alerts thread (or at shutdown)."""
        if event.kind == VEND_FINISHED:
            self._vend_finished(event.data["transaction"])
        elif event.kind == VEND_SETTLED:
            self._vend_settled(event.data["transaction"])
        elif event.kind == SLOT_CHANGED:
            slot = event.data.get("slot") or {}
            if "number" in slot:
                self._check_stock(int(slot["number"]))
        elif event.kind == DEVICE_STATE:
            self._device_state(event.data)
        elif event.kind == DEVICE_REMOVED:
            device_id = event.data.get("device_id", "")
            if device_id in self._seen_online and device_id not in self._down:
                self._down.add(device_id)
                self.raise_alert(DEVICE_OFFLINE, WARNING, device_id,
                                 f"board {device_id} was removed; it cannot vend",
                                 {"device_id": device_id, "state": "removed"})
        elif event.kind == DEVICE_PENDING_APPROVAL:
            device_id = str(event.data.get("device_id", ""))
            address = event.data.get("address")
            where = f" from {address}" if address else ""
            self.raise_alert(APPROVAL_REQUESTED, WARNING, device_id,
                             f"board {device_id}{where} asks to be approved; approve it on the"
                             " page if it is yours, otherwise leave it", dict(event.data))
        elif event.kind == DEVICE_CONFLICT:
            device_id = str(event.data.get("device_id", ""))
            self.raise_alert(DEVICE_CONFLICT_KIND, CRITICAL, device_id,
                             f"two boards claim the id {device_id}: {event.data.get('detail')};"
                             " on the Devices page approve only the key the board's console"
                             " shows, or reject both", dict(event.data))
        elif event.kind == AUTH_FAILED:
            self._auth_failed(event)
        elif event.kind in (STORE_UNAVAILABLE, STORE_RECOVERED):
            self._store_event(event)

    def _store_event(self, event: Event) -> None:
        """Alert about the database refusing writes: stored when it can be, at the latest on recovery."""
        if event.kind == STORE_UNAVAILABLE:
            self._store_outage = str(event.data.get("detail", ""))
            message = (f"the database cannot record vends ({self._store_outage}); vends are"
                       " refused with 503 and finished ones are kept in memory until it can."
                       " Free disk space or close the program holding the database")
        else:
            if self._store_outage is None:
                return
            since = event.data.get("since")
            started = time.strftime("%H:%M:%S", time.localtime(since)) if since else "?"
            message = (f"the database could not record vends from {started} until now"
                       f" ({self._store_outage}); {event.data.get('written', 0)} vend outcome(s)"
                       " kept in memory were written and nothing was lost")
        try:
            self.raise_alert(STORE_DOWN, CRITICAL, "database", message, dict(event.data))
        except StoreUnavailable:
            logger.error("alert not stored yet (the database refuses writes): %s", message)
            return
        self._store_outage = None

    def _vend_finished(self, txn: dict[str, Any]) -> None:
        status = txn.get("status")
        slot = txn.get("slot")
        data = {k: txn.get(k) for k in ("transaction_id", "slot", "device_id", "reason", "message")}
        if status == VendState.UNKNOWN:
            self.raise_alert(
                VEND_UNKNOWN, CRITICAL, f"slot {slot}",
                f"vend {txn.get('transaction_id')} on slot {slot} ({txn.get('device_id')}) has no"
                f" confirmation ({txn.get('reason')}): {txn.get('message')}; check the machine and"
                " mark it as checked", data)
        elif status == VendState.FAILED:
            self.raise_alert(
                VEND_FAILED, WARNING, f"slot {slot}",
                f"vend {txn.get('transaction_id')} on slot {slot} failed ({txn.get('reason')}):"
                f" {txn.get('message')}", data)
        elif status == VendState.SUCCESS and isinstance(slot, int):
            self._check_stock(slot)

    def _vend_settled(self, txn: dict[str, Any]) -> None:
        """A vend recorded `unknown` got its outcome from the board: its alert is answered."""
        status = txn.get("status")
        slot = txn.get("slot")
        outcome = "dispensed" if status == VendState.SUCCESS else "not dispensed"
        self.resolve(VEND_UNKNOWN, f"slot {slot}",
                     f"the board reported {status} later ({outcome}): {txn.get('message')}",
                     {"transaction_id": txn.get("transaction_id")})
        if status == VendState.SUCCESS and isinstance(slot, int):
            self._check_stock(slot)

    def _check_stock(self, number: int) -> None:
        try:
            slot = self.store.slot(number)
        except Exception:
            return
        band = self._band(number, slot.stock)
        before = self._bands.get(number, _STOCK_OK)
        self._bands[number] = band
        if band <= before:
            return
        data = {"slot": number, "name": slot.name, "stock": slot.stock,
                "low_stock_level": self.low_stock_level(number)}
        if band == _STOCK_OUT:
            self.raise_alert(SOLD_OUT, WARNING, f"slot {number}",
                             f"slot {number} ({slot.name}) is sold out; restock it", data)
        else:
            self.raise_alert(LOW_STOCK, WARNING, f"slot {number}",
                             f"slot {number} ({slot.name}) has {slot.stock} left (low-stock level"
                             f" {self.low_stock_level(number)}); restock soon", data)

    def _device_state(self, data: dict[str, Any]) -> None:
        device_id = str(data.get("device_id", ""))
        state = data.get("state")
        # Only approval takes a board from pending approval to connecting or online.
        if state == ONLINE or (state == CONNECTING and data.get("previous") == PENDING_APPROVAL):
            self.resolve(APPROVAL_REQUESTED, device_id, "the board was approved")
        if state in (ONLINE, BUSY):
            self._seen_online.add(device_id)
            if device_id in self._down:
                self._down.discard(device_id)
                self.raise_alert(DEVICE_BACK, INFO, device_id,
                                 f"board {device_id} ({data.get('transport')}) is back online",
                                 dict(data))
        elif state == OFFLINE and device_id in self._seen_online and device_id not in self._down:
            self._down.add(device_id)
            detail = data.get("detail") or ""
            self.raise_alert(DEVICE_OFFLINE, WARNING, device_id,
                             f"board {device_id} ({data.get('transport')}) went offline"
                             f"{': ' + detail if detail else ''}; vends go to another board or"
                             " are refused", dict(data))

    def _auth_failed(self, event: Event) -> None:
        source = str(event.data.get("source") or "unknown")
        window = self.settings.auth_failure_window
        if source not in self._auth_failures and \
                len(self._auth_failures) >= self.AUTH_SOURCES_KEPT:
            self._forget_auth_sources(event.time - window)
        times = self._auth_failures[source]
        times.append(event.time)
        while times and times[0] < event.time - window:
            times.popleft()
        if len(times) >= self.settings.auth_failure_threshold:
            count = len(times)
            del self._auth_failures[source]
            self.raise_alert(SIGN_IN_FAILURES, WARNING, source,
                             f"{count} failed sign-ins from {source} within {window / 60:g} minutes",
                             {"source": source, "failures": count, "window_seconds": window})


    def _forget_auth_sources(self, before: float) -> None:
        """Make room for a new address: drop those with no failure left in the window, and if
        every one is still counting, the one furthest from an alert (fewest failures, then the
        stalest), so a flood of one-off addresses cannot hide one that keeps trying."""
        for source in [s for s, times in self._auth_failures.items() if times[-1] < before]:
            del self._auth_failures[source]
        if len(self._auth_failures) >= self.AUTH_SOURCES_KEPT:
            least = min(self._auth_failures,
                        key=lambda s: (len(self._auth_failures[s]), self._auth_failures[s][-1]))
            del self._auth_failures[least]


def redact_url(url: str) -> str:
    """A webhook URL for logs: its path often is the secret (Home Assistant, Slack)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/..."


class WebhookSender:
    """Posts pending alert deliveries as JSON, retrying with capped exponential back-off."""

    def __init__(self, ops: OperationsStore, settings: AlertSettings, machine_id: str = "",
                 wall: Callable[[], float] = time.time) -> None:
        self.ops = ops
        self.settings = settings
        self.machine_id = machine_id
        # Retry times are stored, so they survive a restart: wall-clock times, read here
        # with the clock set back or forward in mind (due_deliveries, _attempt).
        self._wall = wall
        self._cond = threading.Condition()
        self._worker = Worker("webhooks", self._run, join_timeout=settings.webhook_timeout + 2.0,
                              wake=self.notify)
        self._session: Any = None  # a requests.Session while the worker runs
        self._warned: set[str] = set()

    def start(self) -> None:
        """Start the webhooks thread when URLs are configured."""
        if not self.settings.webhook_urls or self._worker.running:
            return
        dropped = self.ops.drop_deliveries_except(self.settings.webhook_urls)
        if dropped:
            logger.warning("%d alert posts to webhook URLs no longer configured were dropped",
                           dropped)
        import requests  # only with webhooks configured: it is 5 MiB of a Pi's memory

        self._session = requests.Session()
        self._worker.start()

    def stop(self) -> None:
        """Stop after the current attempt; undelivered alerts stay pending for next start."""
        self._worker.stop()
        if self._session is not None:
            self._session.close()
            self._session = None

    def notify(self) -> None:
        """A new delivery is waiting."""
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._worker.stopping.is_set():
                    return
            try:
                for delivery in self.ops.due_deliveries(self._wall(),
                                                        self.settings.webhook_retry_max):
                    with self._cond:
                        if self._worker.stopping.is_set():
                            return
                    self._attempt(delivery.alert_id, delivery.url, delivery.attempts)
                next_due = self.ops.next_delivery_time()
            except Exception:
                logger.exception("webhook sender failed; trying again shortly")
                next_due = self._wall() + self.settings.webhook_retry_base
            with self._cond:
                if self._worker.stopping.is_set():
                    return
                # Never longer than the longest retry wait: a clock set back must not
                # postpone a delivery by as much as it went back.
                timeout = None if next_due is None else min(
                    max(0.0, next_due - self._wall()), self.settings.webhook_retry_max)
                if timeout is None or timeout > 0:
                    self._cond.wait(timeout)

    def _retry_wait(self, attempts: int) -> float:
        """The wait after a delivery's attempt number `attempts` (0 for the first) failed."""
        return min(self.settings.webhook_retry_base * (2 ** min(attempts, 64)),
                   self.settings.webhook_retry_max)

    def payload(self, alert: Alert) -> bytes:
        """The JSON body posted for an alert."""
        body = {**alert.to_dict(), "machine_id": self.machine_id,
                "source": "flask-vending-machine"}
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")

    def _attempt(self, alert_id: int, url: str, attempts: int) -> None:
        alert = self.ops.alert(alert_id)
        body = self.payload(alert)
        headers = {"Content-Type": "application/json", "X-Vending-Alert-Id": str(alert_id),
                   "User-Agent": "flask-vending-machine"}
        if self.settings.webhook_secret:
            digest = hmac.new(self.settings.webhook_secret.encode("utf-8"), body,
                              hashlib.sha256).hexdigest()
            headers["X-Vending-Signature"] = f"sha256={digest}"
        import requests  # imported by start() already: a lookup

        error = ""
        try:
            assert self._session is not None
            response = self._session.post(url, data=body, headers=headers,
                                          timeout=self.settings.webhook_timeout)
            if 200 <= response.status_code < 300:
                self.ops.delivery_done(alert_id, url)
                self._warned.discard(url)
                logger.debug("alert %d delivered to %s", alert_id, redact_url(url))
                return
            error = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
            path = urlsplit(url).path
            if path and path != "/":
                error = error.replace(path, "/...")
        now = self._wall()
        delay = self._retry_wait(attempts)
        # Given up once the alert is older than webhook_give_up_after by the clock AND the
        # retries so far have waited that long: a clock set forward (a Pi without a real-time
        # clock, corrected by NTP) must not drop an alert that was tried only once.
        waited = sum(self._retry_wait(n) for n in range(attempts))
        if now - alert.created_at > self.settings.webhook_give_up_after \
                and waited >= self.settings.webhook_give_up_after:
            self.ops.delivery_retry(alert_id, url, error, None)
            logger.warning("alert %d: gave up posting to %s after %d attempts: %s", alert_id,
                           redact_url(url), attempts + 1, error)
            return
        self.ops.delivery_retry(alert_id, url, error, now + delay)
        # The first failure for a URL is news; the retries that follow are not.
        log = logger.debug if url in self._warned else logger.warning
        self._warned.add(url)
        log("alert %d: webhook %s failed (%s); retrying in %gs", alert_id, redact_url(url),
            error.replace(url, redact_url(url)), delay)
