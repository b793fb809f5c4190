"""The WiFi hub: every board's endpoints in one facade, the signed protocol 2 requests,
and the watchdog thread that takes silent boards offline and expires waiting ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ...commlog import ERROR, INFO, RX, CommunicationLog
from ...config import WifiSettings
from ...errors import Conflict, Forbidden, KeyConflict, NotFound, ServiceBusy
from ...protocol import wifi as proto
from ...store import FAILED, SENT, SUCCESS, UNKNOWN, Store
from ...store.wifi import WifiDeviceStore
from ...threads import Worker
from ..base import SettleLate, VendOutcome
from ..registry import DeviceRegistry
from .approval import Approvals
from .auth import AuthContext, Authenticator
from .device import WifiDevice, outcome_for
from .keys import KeyRing
from .legacy import LegacyBoards

logger = logging.getLogger("vending.wifi")

# How a server lets a poll wait without a thread (vending.serving's `vending.park`):
# park(timeout, register, context) calls register(wake) -> release | None and returns whether
# the poll was parked; the server later hands `context` back to be answered.
Park = Callable[[float, Callable[[Callable[[], None]], "Callable[[], None] | None"], Any], bool]


@dataclass(frozen=True)
class ParkedPoll:
    """A signed poll parked by the server: authenticated once, answered later by `answer_parked`."""

    ctx: AuthContext
    device: WifiDevice
    ip: str | None


class WifiHub:
    """Every WiFi board's endpoints, approval and keys; owns the `wifi-watchdog` thread."""

    name = "wifi"

    def __init__(self, registry: DeviceRegistry, store: Store, log: CommunicationLog,
                 keys: WifiDeviceStore, settings: WifiSettings,
                 settle_late: SettleLate) -> None:
        self.registry = registry
        self.store = store  # read only: vend states change in the vend service (settle_late)
        self._settle_late = settle_late
        self.log = log
        self.keys = keys
        self.settings = settings
        self.ring = KeyRing(keys)
        self.approvals = Approvals(registry, keys, self.ring, log, settings)
        self.authenticator = Authenticator(keys, self.ring, log, self.approvals.lock)
        self.legacy = LegacyBoards(self.approvals, registry, store, log, settings, self.hold,
                                   self.settle_late)
        self._worker = Worker("wifi-watchdog", self._watch)

    def restore(self) -> None:
        """List the boards remembered from earlier runs, offline until they poll."""
        self.approvals.restore()

    # Lifecycle

    def start(self) -> None:
        """Start the watchdog that marks silent boards offline and expires waiting ones."""
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
            try:
                self.approvals.expire()
            except Exception:
                logger.exception("could not expire boards waiting for approval")

    def devices(self) -> list[WifiDevice]:
        return self.approvals.devices()

    @property
    def held_polls(self) -> int:
        """Polls held on HTTP worker threads (parked ones hold none)."""
        return sum(d.polls_on_threads for d in self.devices())

    def hold(self, wanted: float) -> float:
        """How long this poll may be held on a thread: not at all when holds would starve the
        UI of threads. Parked polls take no thread, so no such limit applies to them."""
        return wanted if self.held_polls < self.settings.max_held_polls else 0.0

    def secret_for(self, device_id: str) -> bytes | None:
        """The key a signed discovery reply for `device_id` uses, or None."""
        return self.ring.secret_for(device_id)

    # The facade the board endpoints and the operator endpoints call

    def pair(self, request: proto.PairRequest, ip: str | None) -> tuple[int, dict[str, Any]]:
        return self.approvals.pair(request, ip)

    def approve(self, device_id: str, request: proto.ApproveRequest) -> WifiDevice:
        return self.approvals.approve(device_id, request)

    def revoke(self, device_id: str) -> WifiDevice:
        return self.approvals.revoke(device_id)

    def reject(self, device_id: str) -> None:
        self.approvals.reject(device_id)

    def authenticate(self, method: str, target: str, headers: Mapping[str, str],
                     body: bytes) -> AuthContext:
        return self.authenticator.authenticate(method, target, headers, body)

    def legacy_register(self, request: proto.LegacyRegister, ip: str | None) -> dict[str, Any]:
        return self.legacy.register(request, ip)

    def legacy_poll(self, device_id: str, ip: str | None) -> dict[str, Any] | None:
        return self.legacy.poll(device_id, ip)

    def legacy_confirm(self, request: proto.LegacyConfirm, ip: str | None) -> dict[str, Any]:
        return self.legacy.confirm(request, ip)

    def legacy_data(self, request: proto.LegacyData, ip: str | None) -> dict[str, Any]:
        return self.legacy.data(request, ip)

    # Protocol 2: signed requests (the caller authenticated them)

    def _signed_device(self, ctx: AuthContext) -> WifiDevice:
        device = self.registry.get(ctx.device_id)
        if not isinstance(device, WifiDevice):
            # Its key exists, so it was approved: listed again if the registry lost it.
            device = self.approvals.admit(ctx.device_id, 2, None)
        if device.protocol < 2:
            # Only an operator makes a board protocol 2, and then it has a key; a stale entry.
            raise KeyConflict(f"{ctx.device_id} is listed as a protocol 1 board")
        return device

    def register(self, ctx: AuthContext, request: proto.RegisterRequest,
                 ip: str | None) -> dict[str, Any]:
        if request.device_id not in (None, ctx.device_id):
            raise Forbidden("device_id in the body differs from the signed X-Device-Id")
        device = self._signed_device(ctx)
        if request.facts.firmware:
            device.facts.firmware_version = request.facts.firmware
        if request.facts.slots:
            device.facts.slots = request.facts.slots
        device.heard(request.facts.ip_address or ip)
        device.log(RX, f"register (protocol 2) firmware={device.facts.firmware_version}")
        open_ids = [t.id for t in self.store.transactions(state=UNKNOWN, device_id=ctx.device_id,
                                                           limit=20)[0] if t.sent_at is not None]
        return {"status": "registered", "poll_wait": self.settings.poll_hold, "reconcile": open_ids}

    def poll(self, ctx: AuthContext, wait: float | None, ip: str | None,
             park: Park | None = None) -> dict[str, Any] | None:
        """The answer to a signed poll, held until a command comes or the wait ends.

        With `park` (the server can hold a request without a thread) the poll is parked
        when there is nothing to answer yet, and None is returned: the server calls
        `answer_parked` with the ParkedPoll when it is time. Without it, the poll waits on
        this thread.
        """
        # Approval comes from the store only (approve/revoke): a poll that passed its check
        # just before a revoke must not make the board approved again.
        device = self._signed_device(ctx)
        device.heard(ip)
        wanted = self.settings.poll_hold if wait is None else min(wait, self.settings.poll_hold)
        if park is not None and wanted > 0:
            if park(wanted, device.park_poll, ParkedPoll(ctx, device, ip)):
                return None
            hold = wanted  # something is ready: answered at once, below
        else:
            hold = self.hold(wanted)
        command = device.take_command(hold if park is None else 0.0)
        device.heard()
        return self._answer(command, busy=hold != wanted)

    def answer_parked(self, parked: ParkedPoll) -> dict[str, Any]:
        """The answer to a parked poll whose wait ended: the command is taken only now."""
        device = parked.device
        command = device.take_command(0.0)
        device.heard(parked.ip)
        return self._answer(command, busy=False)

    def _answer(self, command: Any, busy: bool) -> dict[str, Any]:
        if command is None:
            return {"command": None,
                    "poll_again_ms": self.settings.busy_poll_again_ms if busy else 0}
        return {"command": "VEND", "id": command.request.transaction_id,
                "slot": command.request.slot}

    def confirm(self, ctx: AuthContext, request: proto.ConfirmRequest,
                ip: str | None) -> dict[str, Any]:
        """A board's outcome for a request id; idempotent, 409 on a conflicting repeat."""
        request_id, result = request.request_id, request.result
        message, reason = request.message, request.reason
        device = self._signed_device(ctx)
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
        status = device.confirm_inflight(request_id, outcome_for(result, txn.slot, message, reason),
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
            self.settle_late(device, txn_id, result, message, reason)
            return "settled"
        if state == SUCCESS:
            return "duplicate" if result == "success" else "conflict"
        if state == FAILED:
            return "duplicate" if result != "success" else "conflict"
        if state == SENT:
            # The dispatcher is between giving up and recording unknown; the board retries.
            raise ServiceBusy("this vend is being closed; send the confirmation again shortly")
        return "conflict"

    def settle_late(self, device: WifiDevice, txn_id: str, result: str, message: str,
                    reason: str | None) -> None:
        """A confirmation for a vend already recorded unknown: the vend service settles it."""
        outcome = outcome_for(result, 0, message, reason)
        state = self._settle_late(txn_id, VendOutcome(outcome.state,
                                                      f"settled by the board: {outcome.message}",
                                                      outcome.reason))
        device.log(INFO, f"vend {txn_id} settled {state} by the board's late confirmation")


def build_wifi(runtime: Any) -> tuple[WifiHub, Any]:
    """The WiFi hub and (when config.discovery) the UDP discovery service, added as parts."""
    from ..discovery import DiscoveryService

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
