"""Pairing and approval: who may join the list of boards waiting for an operator, and how.

Anyone on the LAN can knock, so the waiting list is bounded (in all and per source
address), entries that never come back expire, and a request never changes what an
operator is about to approve: a second key, or the other protocol, for a board's id is a
conflict kept for the operator, and approving names the key fingerprint the operator saw.
"""

from __future__ import annotations

import logging
import threading

from ...commlog import INFO, RX, CommunicationLog
from ...config import WifiSettings
from ...errors import (
    BadRequest,
    Conflict,
    FingerprintMismatch,
    KeyConflict,
    NotFound,
    ServiceBusy,
    TooManyWaiting,
    Unauthorized,
)
from ...events import DEVICE_CONFLICT
from ...protocol import wifi as proto
from ...store.wifi import ConflictRecord, WifiDeviceRecord, WifiDeviceStore
from ..base import CONNECTING, OFFLINE
from ..registry import DeviceRegistry
from .device import Claim, WifiDevice
from .keys import KeyRing, derive_pairing

logger = logging.getLogger("vending.wifi")


def _claim(conflict: ConflictRecord | None) -> Claim | None:
    if conflict is None:
        return None
    fingerprint = proto.key_fingerprint(conflict.public_key) if conflict.public_key else None
    return Claim(conflict.protocol, fingerprint, conflict.source, conflict.detail)


class Approvals:
    """The gate of the waiting list and the operator's approve, revoke and reject."""

    def __init__(self, registry: DeviceRegistry, keys: WifiDeviceStore, ring: KeyRing,
                 log: CommunicationLog, settings: WifiSettings) -> None:
        self.registry = registry
        self.keys = keys
        self.ring = ring
        self.log = log
        self.settings = settings
        # Held while anything changes a board's approval, key or protocol.
        self.lock = threading.RLock()

    def devices(self) -> list[WifiDevice]:
        return [d for d in self.registry.devices() if isinstance(d, WifiDevice)]

    def restore(self) -> None:
        """List the boards remembered from earlier runs, offline until they poll."""
        for record in self.keys.all():
            if self.registry.get(record.device_id) is not None:
                continue
            device = WifiDevice(record.device_id, self.log, record.protocol)
            device.approved = record.approved
            if record.public_key:
                device.fingerprint = proto.key_fingerprint(record.public_key)
            device.conflict = _claim(self.keys.conflict(record.device_id))
            device.set_state(OFFLINE, "not heard from since the server started")
            self.registry.add(device)

    # The gate

    def admit(self, device_id: str, protocol: int, source: str | None, *,
              create: bool = True, public_key: str | None = None) -> WifiDevice:
        """The board's device; created (unapproved unless auto-approved) only when `create`.

        Unauthenticated requests only: a request for the other protocol than the one the
        board is known by is a conflict, never a change.
        """
        with self.lock:
            existing = self.registry.get(device_id)
            remembered = self.keys.get(device_id)
            known = remembered.protocol if remembered is not None else (
                existing.protocol if isinstance(existing, WifiDevice) else None)
            if known is not None and known != protocol and isinstance(existing, WifiDevice):
                self.conflict(existing, remembered, protocol, public_key, source,
                              f"a protocol {protocol} request from {source or 'an unknown address'}"
                              f" for this protocol {known} board")
            if isinstance(existing, WifiDevice):
                return existing
            if existing is not None:
                raise Conflict(f"{device_id} is already known as a {existing.transport} board")
            if not create:
                raise NotFound(f"no WiFi board {device_id}: a board registers with POST"
                               " /esp32/register (protocol 1) or /esp32/v2/pair before it polls")
            if remembered is None or not remembered.approved:
                self._check_room(source)
            record = self.keys.ensure(device_id, protocol)
            device = WifiDevice(device_id, self.log, protocol)
            device.approved = record.approved
            device.source = source
            if record.public_key:
                device.fingerprint = proto.key_fingerprint(record.public_key)
            if not record.approved and self.settings.auto_approve and protocol == 1:
                self.keys.approve(device_id)
                device.approved = True
                logger.warning("WiFi board %s auto-approved (VENDING_AUTO_APPROVE_DEVICES is on)",
                               device_id)
            if source:
                device.ip_address = source
            self.registry.add(device)
            if not device.approved:
                logger.warning(
                    "new WiFi board %s (protocol %d%s) is waiting for approval: approve it on the"
                    " web page or POST /esp32/devices/%s/approve", device_id, protocol,
                    f" from {source}" if source else "", device_id,
                )
            return device

    def _check_room(self, source: str | None) -> None:
        waiting = [d for d in self.devices() if not d.approved]
        if len(waiting) >= self.settings.max_pending:
            raise ServiceBusy(f"{len(waiting)} boards are already waiting for approval; approve"
                              " or reject some on the web page first")
        mine = sum(1 for d in waiting if source is not None and d.source == source)
        if source is not None and mine >= self.settings.pending_per_source:
            raise TooManyWaiting(f"{mine} boards from {source} are already waiting for approval;"
                                 " an operator must approve or reject them first")

    def conflict(self, device: WifiDevice, record: WifiDeviceRecord | None, protocol: int,
                 public_key: str | None, source: str | None, detail: str) -> None:
        """Keep a second claim for the operator (if the board waits) and refuse this request."""
        device_id = device.device_id
        waiting = record is None or not record.approved
        if waiting and record is not None:
            if self.keys.add_conflict(device_id, protocol, public_key, source, detail):
                device.conflict = _claim(self.keys.conflict(device_id))
                device.refresh_state()
                self.registry.events.publish(DEVICE_CONFLICT, device_id=device_id, detail=detail,
                                             source=source)
                logger.error("ALERT: WiFi board %s: %s; neither is approved until an operator"
                             " chooses on the Devices page", device_id, detail)
                device.log(INFO, f"conflict: {detail}")
        elif record is not None and record.approved:
            self.registry.events.publish(DEVICE_CONFLICT, device_id=device_id, detail=detail,
                                         source=source)
            raise Unauthorized(
                f"{device_id} is approved as a protocol {record.protocol} board; an operator"
                " must revoke it before it can use another protocol")
        raise KeyConflict(f"{device_id} is known as a protocol {record.protocol if record else '?'}"
                          " board; another claim on its id waits for an operator to choose")

    # Protocol 2: pairing

    def pair(self, request: proto.PairRequest, source: str | None) -> tuple[int, dict[str, object]]:
        """A board asks to pair with its X25519 public key; 200 with ours once approved."""
        device_id, public_key = request.device_id, request.public_key
        with self.lock:
            record = self.keys.get(device_id)
            if record is not None and record.approved and record.protocol >= 2:
                if record.public_key == public_key and record.server_key:
                    return 200, {"status": "paired", "server_public_key": record.server_key}
                logger.warning(
                    "WiFi board %s asked to pair with a new key but is already paired: if it was"
                    " re-flashed, revoke it on the web page and approve it again", device_id)
                raise Conflict(f"{device_id} is already paired with another key; an operator must"
                               " revoke it first")
            device = self.admit(device_id, 2, source, public_key=public_key)
            record = self.keys.get(device_id)
            assert record is not None
            fingerprint = proto.key_fingerprint(public_key)
            if record.public_key is None:
                self.keys.set_public_key(device_id, public_key)
                device.fingerprint = fingerprint
            elif record.public_key != public_key:
                conflict = self.keys.conflict(device_id)
                if conflict is None or conflict.public_key != public_key:
                    try:
                        self.conflict(device, record, 2, public_key, source,
                                      f"a second key {fingerprint} from"
                                      f" {source or 'an unknown address'}; the first was"
                                      f" {device.fingerprint}")
                    except KeyConflict:
                        pass  # answered as pending: both boards keep asking until one is chosen
            if request.facts.firmware:
                device.facts.firmware_version = request.facts.firmware
            if request.facts.slots:
                device.facts.slots = request.facts.slots
            # Only the first key's requests may move the address the page shows.
            device.heard(source if record.public_key in (None, public_key) else None)
            device.log(RX, f"pair request, key fingerprint {fingerprint}")
            if self.settings.auto_approve and device.conflict is None:
                logger.warning("WiFi board %s auto-approved (VENDING_AUTO_APPROVE_DEVICES is on)",
                               device_id)
                self.approve(device_id, proto.ApproveRequest(fingerprint, None))
                record = self.keys.get(device_id)
                assert record is not None
                return 200, {"status": "paired", "server_public_key": record.server_key}
        return 202, {"status": "pending_approval", "fingerprint": fingerprint, "retry_ms": 2000}

    # Operators

    def approve(self, device_id: str, request: proto.ApproveRequest) -> WifiDevice:
        """Let a board vend; for our firmware this completes the pairing with the key named."""
        with self.lock:
            record = self.keys.get(device_id)
            device = self.registry.get(device_id)
            if record is None or not isinstance(device, WifiDevice):
                raise NotFound(f"no WiFi board {device_id}; it must contact the server first")
            server_key = None
            if request.secret is not None:
                self.keys.save_secret(device_id, request.secret)
                self.keys.set_claim(device_id, 2, record.public_key)
                device.facts.protocol_version = 2
                device.authenticated = True
            else:
                protocol, public_key = self._chosen(record, request.fingerprint)
                self.keys.set_claim(device_id, protocol, public_key)
                device.facts.protocol_version = protocol
                device.authenticated = protocol >= 2
                device.fingerprint = proto.key_fingerprint(public_key) if public_key else None
                if public_key is not None:
                    secret, server_key = derive_pairing(public_key, device_id)
                    self.keys.save_secret(device_id, secret)
            self.keys.approve(device_id, server_key)
            self.ring.forget(device_id)
            device.conflict = None
            device.approved = True
            logger.info("WiFi board %s approved", device_id)
            device.log(INFO, "approved by the operator")
            if device.protocol >= 2:
                # It becomes online when it polls with its new key.
                device.set_state(CONNECTING, "approved; waiting for the board to pair")
            else:
                device.refresh_state()
            return device

    def _chosen(self, record: WifiDeviceRecord, fingerprint: str | None) -> tuple[int, str | None]:
        """The claim the operator approves: the one whose key has `fingerprint`."""
        claims: list[tuple[int, str | None]] = [(record.protocol, record.public_key)]
        conflict = self.keys.conflict(record.device_id)
        if conflict is not None:
            claims.append((conflict.protocol, conflict.public_key))
        device_id = record.device_id
        if fingerprint is not None:
            for protocol, key in claims:
                if protocol >= 2 and key is not None and proto.key_fingerprint(key) == fingerprint:
                    return protocol, key
            shown = ", ".join(proto.key_fingerprint(k) for p, k in claims if k) or "none"
            raise FingerprintMismatch(
                f"{device_id} asks to pair with key {shown}, not {fingerprint}: reload the page,"
                " compare the fingerprint with the board's console and approve again")
        if conflict is not None:
            raise KeyConflict(f"two boards claim {device_id}: approve the one whose fingerprint"
                              " the board's console shows, or reject both")
        if record.protocol >= 2:
            if not record.public_key:
                raise Conflict(f"{device_id} has not asked to pair yet; power it on first")
            raise BadRequest(f"approving {device_id} needs the key fingerprint you compared with"
                             ' the board\'s console: {"fingerprint": "'
                             f'{proto.key_fingerprint(record.public_key)}"}}')
        return 1, None

    def revoke(self, device_id: str) -> WifiDevice:
        """Stop a board from vending; its key goes once the board has been told (signed 401)."""
        with self.lock:
            device = self.registry.get(device_id)
            if not isinstance(device, WifiDevice) or self.keys.get(device_id) is None:
                raise NotFound(f"no WiFi board {device_id}")
            self.keys.revoke(device_id)
            self.ring.forget(device_id)
            device.approved = False
            device.fingerprint = None
            logger.warning("WiFi board %s: approval revoked; its key is deleted once the board"
                           " has been told on its next request", device_id)
            device.log(INFO, "approval revoked by the operator")
            device.refresh_state()
            return device

    def reject(self, device_id: str) -> None:
        """Forget a board that is waiting for approval, with any conflicting claim."""
        with self.lock:
            record = self.keys.get(device_id)
            device = self.registry.get(device_id)
            if record is None and not isinstance(device, WifiDevice):
                raise NotFound(f"no WiFi board {device_id}")
            if record is not None and record.approved:
                raise Conflict(f"{device_id} is approved; revoke it before forgetting it")
            self.keys.forget(device_id)
            self.ring.forget(device_id)
            if isinstance(device, WifiDevice):
                self.registry.remove(device_id)
            logger.info("WiFi board %s rejected and forgotten", device_id)

    def expire(self) -> None:
        """Forget boards that asked once and never came back (called by the watchdog)."""
        for device in self.devices():
            if device.approved or device.silent_for() <= self.settings.pending_expiry:
                continue
            with self.lock:
                record = self.keys.get(device.device_id)
                if record is None or record.approved or self.keys.revoke_pending(record):
                    continue
                if self.registry.get(device.device_id) is not device:
                    continue
                self.keys.forget(device.device_id)
                self.ring.forget(device.device_id)
                self.registry.remove(device.device_id)
            logger.info("WiFi board %s waited for approval and was not heard from for %.0f s;"
                        " forgotten (it is listed again when it asks)", device.device_id,
                        self.settings.pending_expiry)
