"""What every board looks like to the rest of the controller, whatever its transport."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from ..commlog import INFO, CommunicationLog
from ..protocol.states import Outcome

SERIAL = "serial"
WIFI = "wifi"
SIMULATION = "simulation"
# Lower is preferred when the controller chooses a board by itself.
TRANSPORT_PRIORITY = {SERIAL: 0, WIFI: 1, SIMULATION: 2}

ONLINE = "online"
OFFLINE = "offline"
CONNECTING = "connecting"
PENDING_APPROVAL = "pending_approval"
PORT_BUSY = "port_busy"
BUSY = "busy"  # derived: online and running a vend

OUTCOME_SUCCESS = Outcome.SUCCESS
OUTCOME_FAILED = Outcome.FAILED
OUTCOME_UNKNOWN = Outcome.UNKNOWN


@dataclass(frozen=True)
class VendRequest:
    """One command for a board: the transaction id doubles as the wire request id."""

    transaction_id: str
    slot: int
    timeout: float  # seconds to wait for the board's confirmation once sent


@dataclass(frozen=True)
class VendOutcome:
    """What a board made of a vend.

    `sent` is False only when nothing reached the board, which makes fail-over safe.
    """

    state: Outcome
    message: str
    reason: str | None = None
    sent: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", Outcome(self.state))

    @classmethod
    def not_sent(cls, reason: str, message: str) -> VendOutcome:
        return cls(OUTCOME_FAILED, message, reason, sent=False)


OnSent = Callable[[], None]
# The vend service's door for outcomes a board reports after its vend was recorded `unknown`:
# (transaction id, outcome) -> the vend's state afterwards (still open: try again later).
SettleLate = Callable[[str, VendOutcome], str]


@dataclass
class DeviceFacts:
    """What a board told us about itself."""

    firmware_version: str | None = None
    protocol_version: int | None = None
    slots: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Device(ABC):
    """A board that can vend. Subclasses implement `vend`; state changes go through `set_state`."""

    transport: ClassVar[str]

    def __init__(self, device_id: str, log: CommunicationLog) -> None:
        self.device_id = device_id
        self.facts = DeviceFacts()
        self._log = log
        self._state = CONNECTING
        self._state_detail = ""
        self._busy = False
        self._lock = threading.Lock()
        self.last_seen: float | None = None
        self.created_at = time.time()
        # Set by the registry: called as (device, previous_state) after every state change.
        self.on_state_change: Callable[[Device, str], None] | None = None

    # State

    @property
    def state(self) -> str:
        return self._state

    @property
    def status(self) -> str:
        """The state as shown to people: `busy` while a vend runs on an online board."""
        if self._state == ONLINE and self._busy:
            return BUSY
        return self._state

    @property
    def can_vend(self) -> bool:
        return self._state == ONLINE

    def set_state(self, state: str, detail: str = "") -> None:
        """The one place a board's state changes; each change is logged once."""
        with self._lock:
            previous = self._state
            changed = state != previous or detail != self._state_detail
            self._state = state
            self._state_detail = detail
        if changed:
            text = f"state {state}" + (f": {detail}" if detail else "")
            self.log(INFO, text)
            if self.on_state_change is not None and state != previous:
                self.on_state_change(self, previous)

    def touch(self) -> None:
        """The board was heard from just now."""
        self.last_seen = time.time()

    def log(self, direction: str, message: str) -> None:
        self._log.add(self.device_id, self.transport, direction, message)

    def info(self) -> dict[str, Any]:
        """The JSON shape of a device in /esp32/devices/list."""
        return {
            "device_id": self.device_id,
            "type": self.transport,
            "transport": self.transport,
            "status": self.status,
            "status_detail": self._state_detail,
            "last_seen": self.last_seen,
            "firmware_version": self.facts.firmware_version,
            "protocol": self.facts.protocol_version,
            "slots": self.facts.slots,
            **self.facts.extra,
        }

    # Vending

    def run_vend(self, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        """Run one vend, marking the board busy meanwhile."""
        self._busy = True
        try:
            return self.vend(request, on_sent)
        finally:
            self._busy = False

    @abstractmethod
    def vend(self, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        """Send one vend and wait for the board's confirmation.

        Must call `on_sent()` before the first byte of the command leaves, and send
        nothing if it raises. Returns `unknown` when the board does not confirm in time.
        """

    def start(self) -> None:  # noqa: B027 - optional hook
        """Start whatever the device needs (threads, ports)."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop and release everything; safe to call twice."""
