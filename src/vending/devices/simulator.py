"""The simulated board: present by default so a new user can press a slot with no hardware."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..commlog import ERROR, RX, TX, CommunicationLog
from .base import (
    OFFLINE,
    ONLINE,
    OUTCOME_FAILED,
    OUTCOME_SUCCESS,
    OUTCOME_UNKNOWN,
    SIMULATION,
    Device,
    OnSent,
    VendOutcome,
    VendRequest,
)

# Faults a test or an operator can ask the simulated board for, one vend each.
FAULTS = {
    "jam": "the motor ran but nothing fell (jam)",
    "empty": "the slot's spiral is empty",
    "motor_fault": "the motor did not turn",
    "no_reply": "the board never confirms (the controller records unknown)",
}


@dataclass(frozen=True)
class MotorRun:
    """One run of the simulated motor, for tests that check vends never overlap."""

    transaction_id: str
    slot: int
    started: float
    stopped: float


class SimulatedDevice(Device):
    """Behaves like a board: a motor time, a confirmation, and faults on request."""

    transport = SIMULATION
    # The newest motor runs kept for checks; the simulator runs for months on a shop's
    # controller, so every vend must not cost memory for ever.
    MOTOR_RUNS_KEPT = 1000

    def __init__(self, device_id: str, log: CommunicationLog, motor_time: float = 1.0,
                 slots: int = 5) -> None:
        super().__init__(device_id, log)
        self.motor_time = motor_time
        self.facts.firmware_version = "simulated"
        self.facts.protocol_version = 2
        self.facts.slots = slots
        self.motor_runs: list[MotorRun] = []
        self._faults: deque[str] = deque()
        self._stopping = threading.Event()

    def start(self) -> None:
        self._stopping.clear()
        self.touch()
        self.set_state(ONLINE, "simulated board, no hardware")

    def stop(self) -> None:
        self._stopping.set()
        self.set_state(OFFLINE, "stopped")

    def set_online(self, online: bool) -> None:
        """Pretend the board was unplugged or plugged back in."""
        if online:
            self.touch()
        self.set_state(ONLINE if online else OFFLINE, "simulated" if online else "simulated unplug")

    def inject_fault(self, fault: str, count: int = 1) -> None:
        """Make the next `count` vends end with `fault` (see FAULTS)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose one of {', '.join(FAULTS)}")
        self._faults.extend([fault] * count)

    def clear_faults(self) -> None:
        self._faults.clear()

    def info(self) -> dict[str, Any]:
        data = super().info()
        data.update(motor_time=self.motor_time, pending_faults=list(self._faults),
                    authenticated=True)
        return data

    def vend(self, request: VendRequest, on_sent: OnSent) -> VendOutcome:
        if not self.can_vend:
            return VendOutcome.not_sent("offline", f"{self.device_id} is offline; not dispensed")
        on_sent()
        fault = self._faults.popleft() if self._faults else None
        self.log(TX, f"VEND id={request.transaction_id} slot={request.slot}")
        self.touch()
        if fault == "no_reply":
            self._stopping.wait(request.timeout)
            self.log(ERROR, f"no confirmation for {request.transaction_id} within {request.timeout:g}s")
            return VendOutcome(OUTCOME_UNKNOWN, "no confirmation from the board; check the machine",
                               "timeout")
        if fault == "motor_fault":
            self.log(RX, f"DONE id={request.transaction_id} result=failed reason=motor_fault")
            return VendOutcome(OUTCOME_FAILED, FAULTS[fault], fault)
        if fault == "empty":
            self.log(RX, f"DONE id={request.transaction_id} result=failed reason=empty")
            return VendOutcome(OUTCOME_FAILED, FAULTS[fault], fault)
        started = time.monotonic()
        interrupted = self._stopping.wait(self.motor_time) if self.motor_time > 0 else False
        self.motor_runs.append(MotorRun(request.transaction_id, request.slot, started,
                                        time.monotonic()))
        if len(self.motor_runs) > self.MOTOR_RUNS_KEPT:
            del self.motor_runs[: len(self.motor_runs) - self.MOTOR_RUNS_KEPT]
        self.touch()
        if interrupted:
            self.log(ERROR, f"stopped while the motor ran for {request.transaction_id}")
            return VendOutcome(OUTCOME_UNKNOWN, "stopped mid-vend; check the machine", "interrupted")
        if fault == "jam":
            self.log(RX, f"DONE id={request.transaction_id} result=failed reason=jam")
            return VendOutcome(OUTCOME_FAILED, FAULTS[fault], fault)
        self.log(RX, f"DONE id={request.transaction_id} result=success")
        return VendOutcome(OUTCOME_SUCCESS, f"simulated: slot {request.slot}, nothing was dispensed")
