"""WiFi boards: registration, long-polled commands, confirmations, pairing and approval.

`WifiHub` is what the board-facing HTTP endpoints call; each board is a `WifiDevice`
in the registry. A vend waits in the device's FIFO until the board's poll takes it;
the poll marks it sent (on_sent) before the command leaves, and the board's confirm by
request id ends it. Protocol 1 boards (earlier firmware) carry no ids and no signatures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..commlog import ERROR, INFO, RX, TX, CommunicationLog
from ..config import WifiSettings
from ..errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Revoked,
    ServiceBusy,
    Unauthorized,
)
from ..protocol import wifi as proto
from ..store import FAILED, SENT, SUCCESS, UNKNOWN, Store
from ..store.wifi import WifiDeviceRecord, WifiDeviceStore
from ..threads import Worker
from .base import (
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
    SettleLate,
    VendOutcome,
    VendRequest,
)
from .registry import DeviceRegistry

logger = logging.getLogger("vending.wifi")

RESULTS = ("success", "failed", "not_received")


@dataclass
class _Command:
    request: VendRequest
    on_sent: OnSent
    state: str = "queued"  # queued -> delivered -> done | abandoned
    outcome: VendOutcome | None = None
    deliveries: int = 0


@dataclass(frozen=True)
class AuthContext:
    """An authenticated board request: who, which counter, and the key to sign the answer."""

    device_id: str
    counter: int
    secret: bytes = field(repr=False)


class WifiDevice(Device):
    """A board on the LAN that long-polls for commands."""

    transport = WIFI

    def __init__(self, device_id: str, log: CommunicationLog, protocol: int) -> None:
        super().__init__(device_id, log)
        self.facts.protocol_version = protocol
        self.approved = False
        self.authenticated = protocol >= 2
        self.ip_address: str | None = None
        self.fingerprint: str | None = None
        self._cond = threading.Condition()
        self._queue: deque[_Command] = deque()
        self._inflight: _Command | None = None
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._last_delivered: str | None = None
        self._polls_held = 0
        self._last_activity = time.monotonic()
        self._stopping = False

    @property
    def protocol(self) -> int:
        return self.facts.protocol_version or 1

    @property
    def polls_held(self) -> int:
        return self._polls_held

    def info(self) -> dict[str, Any]:
        data = super().info()
        data.update(approved=self.approved, authenticated=self.authenticated,
                    ip_address=self.ip_address, fingerprint=self.fingerprint,
                    polling=self._polls_held > 0)
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
        if not self.approved:
            self.set_state(PENDING_APPROVAL, "an operator must approve this board before it vends")
        else:
            self.set_state(ONLINE)
        self._wake()

    def check_alive(self, offline_after: float) -> None:
        """Called by the watchdog: no poll held and none for `offline_after` s -> offline."""
        with self._cond:
            silent = time.monotonic() - self._last_activity
            gone = self._polls_held == 0 and silent > offline_after
        if gone and self.state in (ONLINE, PENDING_APPROVAL, CONNECTING):
            self.set_state(OFFLINE, f"no poll for {silent:.0f}s")
            self._wake()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # The vend, on the service's dispatcher thread

    def vend(self, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        command = _Command(request, on_sent)
        with self._cond:
            if not self.can_vend or self._stopping:
                return VendOutcome.not_sent("offline", f"{self.device_id} is {self.status}; not dispensed")
            self._queue.append(command)
            self._cond.notify_all()
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

    def take_command(self, wait: float) -> _Command | None:
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
                            self._cond.notify_all()
                            continue
                        command.state = "delivered"
                        command.deliveries = 1
                        self._inflight = command
                        self._last_delivered = command.request.transaction_id
                        self._cond.notify_all()
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
            self._cond.notify_all()
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
            self._cond.notify_all()
        self.set_state(OFFLINE, "server stopping")


def _outcome_for(result: str, slot: int, message: str, reason: str | None) -> VendOutcome:
    if result == "success":
        return VendOutcome(OUTCOME_SUCCESS, message or f"slot {slot} dispensed")
    if result == "not_received":
        return VendOutcome(OUTCOME_FAILED, message or "the board never received the command; not dispensed",
                           "not_received")
    return VendOutcome(OUTCOME_FAILED, message or "the board reports the vend failed", reason or "failed")


class WifiHub:
    """Every WiFi board's endpoints, approval and keys; owns the offline watchdog thread."""

    name = "wifi"

    def __init__(self, registry: DeviceRegistry, store: Store, log: CommunicationLog,
                 keys: WifiDeviceStore, settings: WifiSettings,
                 settle_late: SettleLate) -> None:
        self.registry = registry
        self.store = store  # read only: vend states change in the vend service (settle_late)
        self.settle_late = settle_late
        self.log = log
        self.keys = keys
        self.settings = settings
        self._lock = threading.RLock()
        self._auth_lock = threading.Lock()
        self._secrets: dict[str, bytes | None] = {}
        self._worker = Worker("wifi-watchdog", self._watch)

    def restore(self) -> None:
        """List the boards remembered from earlier runs, offline until they poll."""
        for record in self.keys.all():
            if self.registry.get(record.device_id) is not None:
                continue
            device = WifiDevice(record.device_id, self.log, record.protocol)
            device.approved = record.approved
            if record.public_key:
                device.fingerprint = proto.key_fingerprint(record.public_key)
            device.set_state(OFFLINE, "not heard from since the server started")
            self.registry.add(device)

    # Lifecycle

    def start(self) -> None:
        """Start the watchdog that marks silent boards offline."""
        self._worker.start()

    def stop(self) -> None:
        """Stop the watchdog; safe twice."""
        self._worker.stop()

    def _watch(self) -> None:
        interval = max(0.05, min(1.0, self.settings.offline_after / 4))
        while not self._worker.stopping.wait(interval):
            for device in self.devices():
                try:
                    device.check_alive(self.settings.offline_after)
                except Exception:
                    logger.exception("watchdog failed on %s", device.device_id)

    def devices(self) -> list[WifiDevice]:
        return [d for d in self.registry.devices() if isinstance(d, WifiDevice)]

    @property
    def held_polls(self) -> int:
        return sum(d.polls_held for d in self.devices())

    # Devices

    def _device(self, device_id: str, protocol: int, ip: str | None = None) -> WifiDevice:
        """The board's device, created (unapproved unless remembered or auto-approved) on first contact."""
        with self._lock:
            existing = self.registry.get(device_id)
            remembered = self.keys.get(device_id)
            if remembered is not None and remembered.approved and remembered.protocol != protocol:
                # Only an operator may change an approved board's protocol (revoke, approve):
                # otherwise a stranger could speak protocol 1 for a paired board and take its vends.
                raise Unauthorized(
                    f"{device_id} is approved as a protocol {remembered.protocol} board; an operator"
                    " must revoke it before it can use another protocol")
            if isinstance(existing, WifiDevice):
                if existing.protocol != protocol:
                    existing.facts.protocol_version = protocol
                    existing.authenticated = protocol >= 2
                    self.keys.ensure(device_id, protocol)
                return existing
            if existing is not None:
                raise Conflict(f"{device_id} is already known as a {existing.transport} board")
            if remembered is None or not remembered.approved:
                waiting = sum(1 for d in self.devices() if not d.approved)
                if waiting >= self.settings.max_pending:
                    # Anyone on the LAN can announce boards; do not let them flood the list.
                    raise ServiceBusy(f"{waiting} boards are already waiting for approval; approve"
                                      " or reject some on the web page first")
            record = self.keys.ensure(device_id, protocol)
            device = WifiDevice(device_id, self.log, protocol)
            device.approved = record.approved
            if record.public_key:
                device.fingerprint = proto.key_fingerprint(record.public_key)
            if not record.approved and self.settings.auto_approve and protocol == 1:
                self.keys.approve(device_id)
                device.approved = True
                logger.warning("WiFi board %s auto-approved (VENDING_AUTO_APPROVE_DEVICES is on)",
                               device_id)
            if ip:
                device.ip_address = ip
            self.registry.add(device)
            if not device.approved:
                logger.warning(
                    "new WiFi board %s (protocol %d%s) is waiting for approval: approve it on the"
                    " web page or POST /esp32/devices/%s/approve", device_id, protocol,
                    f" from {ip}" if ip else "", device_id,
                )
            return device

    def _secret(self, device_id: str) -> bytes | None:
        if device_id not in self._secrets:
            self._secrets[device_id] = self.keys.secret(device_id)
        return self._secrets[device_id]

    def secret_for(self, device_id: str) -> bytes | None:
        """The board's key if it is approved or revoked but not yet told (signed discovery replies).

        A revoked board that restarted must still find us, so it can hear the signed answer
        that tells it to pair again.
        """
        return self._usable_secret(self.keys.get(device_id))

    def _usable_secret(self, record: WifiDeviceRecord | None) -> bytes | None:
        """The key a request or discovery reply may be signed with, or None."""
        if record is None or not (record.approved or self.keys.revoke_pending(record)):
            return None
        return self._secret(record.device_id)

    # Protocol 1: the earlier firmware

    def legacy_register(self, body: Mapping[str, Any], ip: str | None) -> dict[str, Any]:
        device_id = body.get("device_id")
        if not proto.valid_device_id(device_id):
            raise BadRequest("device_id must be 1 to 64 letters, digits or _ . : -,"
                             " e.g. ESP32_246F28A1B2C3")
        device = self._device(device_id, 1, ip)
        slots = body.get("slots_available")
        if isinstance(slots, int) and not isinstance(slots, bool) and 0 < slots < 100:
            device.facts.slots = slots
        reported_ip = body.get("ip_address")
        device.heard(reported_ip if isinstance(reported_ip, str) and reported_ip else ip)
        device.log(RX, f"register (protocol 1) status={body.get('status')!r}")
        return {"status": "registered", "device_id": device_id, "approved": device.approved}

    def legacy_poll(self, device_id: str, ip: str | None) -> dict[str, Any] | None:
        if not proto.valid_device_id(device_id):
            raise BadRequest("device_id must be 1 to 64 letters, digits or _ . : -")
        device = self._device(device_id, 1, ip)
        device.heard(ip)
        wait = self._hold(self.settings.legacy_hold)
        command = device.take_command(wait)
        device.heard()
        if command is None:
            return None
        return {"command": "VEND", "slot": command.request.slot, "id": command.request.transaction_id}

    def legacy_confirm(self, body: Mapping[str, Any], ip: str | None) -> dict[str, Any]:
        raw_id = body.get("device_id")
        if not isinstance(raw_id, str):
            raise BadRequest("device_id is required")
        device_id = proto.legacy_id_from_mac(raw_id) or raw_id
        device = self.registry.get(device_id)
        if not isinstance(device, WifiDevice):
            raise NotFound(f"no WiFi board {device_id}; it must register first")
        if device.protocol >= 2:
            raise Unauthorized(f"{device_id} is paired and must confirm through /esp32/v2/confirm")
        device.heard(ip)
        success = body.get("success") is True
        message = body.get("message") if isinstance(body.get("message"), str) else ""
        device.log(RX, f"confirm slot={body.get('slot')} success={success} {message}".strip())
        result = "success" if success else "failed"
        request_id = device.inflight_id()
        if request_id is not None:
            slot = body.get("slot") if isinstance(body.get("slot"), int) else 0
            device.confirm_inflight(request_id, _outcome_for(result, slot, message, None), result)
            return {"status": "ok", "id": request_id}
        late = device.last_delivered
        if late is not None:
            txn = self.store.get(late)
            if txn.state == UNKNOWN:
                self._settle(device, late, result, message, None)
                return {"status": "ok", "id": late, "settled": True}
        device.log(ERROR, "confirm with no vend in flight; ignored")
        logger.warning("ALERT: %s confirmed a vend the server did not send; check the machine",
                       device_id)
        return {"status": "ignored"}

    def legacy_data(self, body: Mapping[str, Any], ip: str | None) -> dict[str, Any]:
        raw_id = body.get("device_id")
        device_id = proto.legacy_id_from_mac(raw_id) or raw_id if isinstance(raw_id, str) else None
        device = self.registry.get(device_id) if device_id else None
        if isinstance(device, WifiDevice):
            device.heard(ip)
            device.log(RX, f"data {dict(body)}")
        else:
            self.log.add(str(device_id or ip or "?"), WIFI, RX, f"data {dict(body)}")
        return {"status": "ok"}

    def _hold(self, wanted: float) -> float:
        """How long this poll may be held: not at all when holds would starve the UI of threads."""
        return wanted if self.held_polls < self.settings.max_held_polls else 0.0

    # Protocol 2: pairing

    def pair(self, body: Mapping[str, Any], ip: str | None) -> tuple[int, dict[str, Any]]:
        """A board asks to pair with its X25519 public key; 200 with ours once approved."""
        device_id = body.get("device_id")
        public_key = body.get("public_key")
        if not proto.valid_device_id(device_id):
            raise BadRequest("device_id must be 1 to 64 letters, digits or _ . : -")
        if not isinstance(public_key, str) or not proto.is_hex(public_key, 64):
            raise BadRequest("public_key must be the board's X25519 public key as 64 hex digits")
        public_key = public_key.lower()
        with self._lock:
            record = self.keys.get(device_id)
            if record is not None and record.approved and record.protocol >= 2:
                if record.public_key == public_key and record.server_key:
                    return 200, {"status": "paired", "server_public_key": record.server_key}
                logger.warning(
                    "WiFi board %s asked to pair with a new key but is already paired: if it was"
                    " re-flashed, revoke it on the web page and approve it again", device_id)
                raise Conflict(f"{device_id} is already paired with another key; an operator must"
                               " revoke it first")
            device = self._device(device_id, 2, ip)
            self.keys.set_public_key(device_id, public_key)
            device.fingerprint = proto.key_fingerprint(public_key)
            self._apply_facts(device, body)
            device.heard(ip)
            device.log(RX, f"pair request, key fingerprint {device.fingerprint}")
            if self.settings.auto_approve:
                logger.warning("WiFi board %s auto-approved (VENDING_AUTO_APPROVE_DEVICES is on)",
                               device_id)
                self.approve(device_id)
                record = self.keys.get(device_id)
                assert record is not None
                return 200, {"status": "paired", "server_public_key": record.server_key}
        return 202, {"status": "pending_approval", "fingerprint": device.fingerprint,
                     "retry_ms": 2000}

    @staticmethod
    def _apply_facts(device: WifiDevice, body: Mapping[str, Any]) -> None:
        firmware = body.get("firmware")
        if isinstance(firmware, str) and len(firmware) <= 64:
            device.facts.firmware_version = firmware
        slots = body.get("slots")
        if isinstance(slots, int) and not isinstance(slots, bool) and 0 < slots < 100:
            device.facts.slots = slots

    # Protocol 2: authenticated requests

    def authenticate(self, method: str, target: str, headers: Mapping[str, str],
                     body: bytes) -> AuthContext:
        """Check the signature and counter of a board request; 401 changes nothing."""
        device_id = headers.get(proto.HEADER_DEVICE)
        counter = proto.parse_counter(headers.get(proto.HEADER_COUNTER))
        signature = headers.get(proto.HEADER_SIGNATURE) or ""
        if not proto.valid_device_id(device_id) or counter is None or not proto.is_hex(signature, 64):
            raise Unauthorized(f"a board request needs {proto.HEADER_DEVICE}, {proto.HEADER_COUNTER}"
                               f" and {proto.HEADER_SIGNATURE} headers; see docs/protocol-wifi.md")
        assert device_id is not None
        record = self.keys.get(device_id)
        secret = self._usable_secret(record)
        if record is None or secret is None:
            raise Unauthorized(f"{device_id} is not paired or not approved; pair it first")
        expected = proto.sign_request(secret, method, target, device_id, counter, body)
        if not proto.check_signature(expected, signature):
            self.log.add(device_id, WIFI, ERROR, f"refused {method} {target}: bad signature")
            raise Unauthorized("bad signature: the request was altered or the key is wrong")
        with self._auth_lock:
            if not self.keys.advance_counter(device_id, counter):
                self.log.add(device_id, WIFI, ERROR, f"refused {method} {target}: replayed counter")
                raise Unauthorized(f"replayed request: counter {counter} is not above the last one"
                                   " accepted")
        ctx = AuthContext(device_id, counter, secret)
        if not record.approved:
            self._tell_revoked(ctx, method, target)
        return ctx

    def _tell_revoked(self, ctx: AuthContext, method: str, target: str) -> None:
        """The board's first genuine request since its revoke: answer `revoked`, drop its key.

        Only this answer, signed with the board's key, makes our firmware forget it; an
        unsigned 401 could come from anyone on the LAN (docs/protocol-wifi.md section 3).
        """
        with self._lock:
            # Under the lock approve() holds while it writes a new key and approves.
            record = self.keys.get(ctx.device_id)
            current = self.keys.secret(ctx.device_id)
            if record is None or record.approved or current != ctx.secret:
                if record is not None and record.approved and current == ctx.secret:
                    return  # approved again meanwhile with this same key (USB-provisioned)
                raise Unauthorized(f"{ctx.device_id} is not paired or not approved; pair it first")
            self.keys.drop_key(ctx.device_id)
            self._secrets.pop(ctx.device_id, None)
        self.log.add(ctx.device_id, WIFI, INFO,
                     f"told the board on {method} {target} that it is revoked; its key is deleted")
        logger.warning("WiFi board %s was told it is revoked and deleted its key; it will ask to"
                       " pair again", ctx.device_id)
        error = Revoked(f"{ctx.device_id} was revoked by an operator: forget the key and pair"
                        " again (an operator must approve the board again)")
        error.context = ctx
        raise error

    @staticmethod
    def sign_response(ctx: AuthContext, status: int, body: bytes) -> str:
        return proto.sign_response(ctx.secret, ctx.device_id, ctx.counter, status, body)

    def register(self, ctx: AuthContext, body: Mapping[str, Any], ip: str | None) -> dict[str, Any]:
        if body.get("device_id", ctx.device_id) != ctx.device_id:
            raise Forbidden("device_id in the body differs from the signed X-Device-Id")
        device = self._device(ctx.device_id, 2, ip)
        self._apply_facts(device, body)
        reported_ip = body.get("ip_address")
        device.heard(reported_ip if isinstance(reported_ip, str) and reported_ip else ip)
        device.log(RX, f"register (protocol 2) firmware={device.facts.firmware_version}")
        open_ids = [t.id for t in self.store.transactions(state=UNKNOWN, device_id=ctx.device_id,
                                                           limit=20)[0] if t.sent_at is not None]
        return {"status": "registered", "poll_wait": self.settings.poll_hold, "reconcile": open_ids}

    def poll(self, ctx: AuthContext, wait: float | None, ip: str | None) -> dict[str, Any]:
        # Approval comes from the store only (approve/revoke): a poll that passed its check
        # just before a revoke must not make the board approved again.
        device = self._device(ctx.device_id, 2, ip)
        device.heard(ip)
        wanted = self.settings.poll_hold if wait is None else min(wait, self.settings.poll_hold)
        hold = self._hold(wanted)
        command = device.take_command(hold)
        device.heard()
        if command is None:
            again = 0 if hold == wanted else self.settings.busy_poll_again_ms
            return {"command": None, "poll_again_ms": again}
        return {"command": "VEND", "id": command.request.transaction_id,
                "slot": command.request.slot}

    def confirm(self, ctx: AuthContext, body: Mapping[str, Any], ip: str | None) -> dict[str, Any]:
        """A board's outcome for a request id; idempotent, 409 on a conflicting repeat."""
        request_id = body.get("id")
        result = body.get("result")
        if not isinstance(request_id, str) or not request_id:
            raise BadRequest('id is required: {"id": "<request id>", "result": "success"}')
        if result not in RESULTS:
            raise BadRequest(f"result must be one of {', '.join(RESULTS)}")
        message = body.get("message") if isinstance(body.get("message"), str) else ""
        reason = body.get("reason") if isinstance(body.get("reason"), str) else None
        device = self._device(ctx.device_id, 2, ip)
        device.heard(ip)
        device.log(RX, f"DONE id={request_id} result={result}" + (f" reason={reason}" if reason else ""))
        try:
            txn = self.store.get(request_id)
        except NotFound:
            raise NotFound(f"no vend {request_id}") from None
        if txn.device_id != ctx.device_id:
            logger.warning("ALERT: %s tried to confirm vend %s of %s; refused", ctx.device_id,
                           request_id, txn.device_id)
            raise Forbidden(f"vend {request_id} was not sent to {ctx.device_id}")
        status = device.confirm_inflight(request_id, _outcome_for(result, txn.slot, message, reason),
                                         result)
        if status == "accepted":
            return {"status": "ok", "id": request_id}
        if status is None:
            status = self._confirm_stored(device, txn.id, txn.state, result, message, reason)
        if status == "conflict":
            logger.error("ALERT: %s confirmed vend %s as %s, but it is recorded otherwise; check"
                         " the machine", ctx.device_id, request_id, result)
            device.log(ERROR, f"conflicting confirm for {request_id}: {result}")
            raise Conflict(f"vend {request_id} was already confirmed with another result")
        return {"status": "ok", "id": request_id, "duplicate": status == "duplicate",
                "settled": status == "settled"}

    def _confirm_stored(self, device: WifiDevice, txn_id: str, state: str, result: str,
                        message: str, reason: str | None) -> str:
        if state == UNKNOWN:
            self._settle(device, txn_id, result, message, reason)
            return "settled"
        if state == SUCCESS:
            return "duplicate" if result == "success" else "conflict"
        if state == FAILED:
            return "duplicate" if result != "success" else "conflict"
        if state == SENT:
            # The dispatcher is between giving up and recording unknown; the board retries.
            raise ServiceBusy("this vend is being closed; send the confirmation again shortly")
        return "conflict"

    def _settle(self, device: WifiDevice, txn_id: str, result: str, message: str,
                reason: str | None) -> None:
        outcome = _outcome_for(result, 0, message, reason)
        state = self.settle_late(txn_id, VendOutcome(outcome.state,
                                                     f"settled by the board: {outcome.message}",
                                                     outcome.reason))
        device.log(INFO, f"vend {txn_id} settled {state} by the board's late confirmation")

    # Operators

    def approve(self, device_id: str, secret_hex: str | None = None) -> WifiDevice:
        """Let a board vend; for our firmware this completes the pairing (or uses a USB-provisioned key)."""
        with self._lock:
            record = self.keys.get(device_id)
            device = self.registry.get(device_id)
            if record is None or not isinstance(device, WifiDevice):
                raise NotFound(f"no WiFi board {device_id}; it must contact the server first")
            server_key = None
            if secret_hex is not None:
                if not proto.is_hex(secret_hex, proto.SECRET_BYTES * 2):
                    raise BadRequest("secret must be 64 hex digits (32 bytes)")
                self.keys.save_secret(device_id, bytes.fromhex(secret_hex))
                self.keys.ensure(device_id, 2)
                device.facts.protocol_version = 2
                device.authenticated = True
            elif record.protocol >= 2:
                if not record.public_key:
                    raise Conflict(f"{device_id} has not asked to pair yet; power it on first")
                secret, server_key = _derive_pairing(record.public_key, device_id)
                self.keys.save_secret(device_id, secret)
            self.keys.approve(device_id, server_key)
            self._secrets.pop(device_id, None)
            device.approved = True
            logger.info("WiFi board %s approved", device_id)
            device.log(INFO, "approved by the operator")
            if device.protocol >= 2:
                # It becomes online when it polls with its new key.
                device.set_state(CONNECTING, "approved; waiting for the board to pair")
            else:
                device.refresh_state()
            return device

    def revoke(self, device_id: str) -> WifiDevice:
        """Stop a board from vending; its key goes once the board has been told (signed 401)."""
        with self._lock:
            device = self.registry.get(device_id)
            if not isinstance(device, WifiDevice) or self.keys.get(device_id) is None:
                raise NotFound(f"no WiFi board {device_id}")
            self.keys.revoke(device_id)
            self._secrets.pop(device_id, None)
            device.approved = False
            device.fingerprint = None
            logger.warning("WiFi board %s: approval revoked; its key is deleted once the board"
                           " has been told on its next request", device_id)
            device.log(INFO, "approval revoked by the operator")
            device.refresh_state()
            return device

    def reject(self, device_id: str) -> None:
        """Forget a board that is waiting for approval."""
        with self._lock:
            record = self.keys.get(device_id)
            device = self.registry.get(device_id)
            if record is None and not isinstance(device, WifiDevice):
                raise NotFound(f"no WiFi board {device_id}")
            if record is not None and record.approved:
                raise Conflict(f"{device_id} is approved; revoke it before forgetting it")
            self.keys.forget(device_id)
            self._secrets.pop(device_id, None)
            if isinstance(device, WifiDevice):
                self.registry.remove(device_id)
            logger.info("WiFi board %s rejected and forgotten", device_id)


def _derive_pairing(board_public_hex: str, device_id: str) -> tuple[bytes, str]:
    """X25519 with a fresh server key: (device secret, server public key hex)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = X25519PrivateKey.generate()
    shared = private.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(board_public_hex)))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    return proto.pairing_secret(shared, device_id), public


def build_wifi(runtime: Any) -> tuple[WifiHub, Any]:
    """The WiFi hub and (when config.discovery) the UDP discovery service, added as parts."""
    from .discovery import DiscoveryService

    config = runtime.config
    hub = WifiHub(
        runtime.registry, runtime.store, runtime.log,
        WifiDeviceStore(runtime.store, config.data_dir / "device-keys"),
        replace(config.wifi, max_held_polls=config.held_polls_limit),
        runtime.service.settle_late,
    )
    hub.restore()
    runtime.add_part(hub)
    discovery = None
    if config.discovery:
        loopback = config.host.startswith("127.") or config.host == "localhost"
        discovery = DiscoveryService(config.discovery_port, config.port, hub.secret_for,
                                     bind_host=config.host if loopback else "")
        runtime.add_part(discovery)
    return hub, discovery
