"""Protocol 1: the earlier firmware's /esp32/register, /commands, /confirm and /data.

These requests carry no signature, so nothing here may touch a protocol 2 board: its
liveness, address and vends come only from its own signed requests. A poll (GET) never
adds a board to the waiting list; the earlier firmware registers with a POST first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ...commlog import ERROR, RX, CommunicationLog
from ...config import WifiSettings
from ...errors import BadRequest, NotFound, Unauthorized
from ...protocol import wifi as proto
from ...store import UNKNOWN, Store
from ..base import WIFI
from ..registry import DeviceRegistry
from .approval import Approvals
from .device import WifiDevice, outcome_for

logger = logging.getLogger("vending.wifi")

# (device, transaction id, result, message, reason): the hub's one way to settle a late confirm.
LateConfirm = Callable[[WifiDevice, str, str, str, "str | None"], None]


class LegacyBoards:
    """The protocol 1 endpoints, on the hub's devices."""

    def __init__(self, approvals: Approvals, registry: DeviceRegistry, store: Store,
                 log: CommunicationLog, settings: WifiSettings, hold: Callable[[float], float],
                 settle_late: LateConfirm) -> None:
        self.approvals = approvals
        self.registry = registry
        self.store = store
        self.log = log
        self.settings = settings
        self.hold = hold
        self.settle_late = settle_late

    def register(self, request: proto.LegacyRegister, source: str | None) -> dict[str, Any]:
        device = self.approvals.admit(request.device_id, 1, source)
        if request.facts.slots:
            device.facts.slots = request.facts.slots
        device.heard(request.facts.ip_address or source)
        device.log(RX, f"register (protocol 1) status={request.status!r}")
        return {"status": "registered", "device_id": request.device_id,
                "approved": device.approved}

    def poll(self, device_id: str, source: str | None) -> dict[str, Any] | None:
        if not proto.valid_device_id(device_id):
            raise BadRequest("device_id must be 1 to 64 letters, digits or _ . : -")
        device = self.approvals.admit(device_id, 1, source, create=False)
        device.heard(source)
        wait = self.hold(self.settings.legacy_hold)
        command = device.take_command(wait)
        device.heard()
        if command is None:
            return None
        return {"command": "VEND", "slot": command.request.slot, "id": command.request.transaction_id}

    def _known(self, raw_id: str) -> WifiDevice:
        device_id = proto.legacy_id_from_mac(raw_id) or raw_id
        device = self.registry.get(device_id)
        if not isinstance(device, WifiDevice):
            raise NotFound(f"no WiFi board {device_id}; it must register first")
        if device.protocol >= 2:
            raise Unauthorized(f"{device_id} is paired: it reports through the signed"
                               " /esp32/v2/ endpoints only")
        return device

    def confirm(self, request: proto.LegacyConfirm, source: str | None) -> dict[str, Any]:
        device = self._known(request.device_id)
        device.heard(source)
        success, message = request.success, request.message
        device.log(RX, f"confirm slot={request.slot} success={success} {message}".strip())
        result = "success" if success else "failed"
        request_id = device.inflight_id()
        if request_id is not None:
            device.confirm_inflight(request_id, outcome_for(result, request.slot, message, None),
                                    result)
            return {"status": "ok", "id": request_id}
        late = device.last_delivered
        if late is not None:
            txn = self.store.get(late)
            if txn.state == UNKNOWN:
                self.settle_late(device, late, result, message, None)
                return {"status": "ok", "id": late, "settled": True}
        device.log(ERROR, "confirm with no vend in flight; ignored")
        logger.warning("ALERT: %s confirmed a vend the server did not send; check the machine",
                       device.device_id)
        return {"status": "ignored"}

    def data(self, request: proto.LegacyData, source: str | None) -> dict[str, Any]:
        device = self.registry.get(request.device_id) if request.device_id else None
        if isinstance(device, WifiDevice):
            if device.protocol >= 2:
                self.log.add(device.device_id, WIFI, ERROR,
                                 f"refused unsigned data from {source or '?'}: {request.text}")
                raise Unauthorized(f"{device.device_id} is paired: it reports through the signed"
                                   " /esp32/v2/ endpoints only")
            device.heard(source)
            device.log(RX, f"data {request.text}")
        else:
            self.log.add(str(request.device_id or source or "?"), WIFI, RX,
                             f"data {request.text}")
        return {"status": "ok"}
