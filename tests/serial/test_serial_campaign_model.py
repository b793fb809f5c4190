"""The fault campaign's invariants as a model-based test at the serial-device level.

Hypothesis drives two simulated boards on ptys behind one controller with vends and
faults (lost, corrupted lines, reboots at chosen moments, unplug and replug) in any order;
after every step the store is checked against the boards' motor journals with the same
`find_violations` the full campaign (tests/campaign.py) uses. The core vend path without
serial boards has its own model test (tests/test_vend_model.py).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from campaign import FaultEvent, Run, find_violations
from helpers import test_config, wait_until
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vending import create_app
from vending.sim.serial import REBOOT_MOMENTS, SerialBoardSim

BOARDS = st.integers(min_value=0, max_value=1)
VERBS = st.sampled_from(["ACK", "DONE"])
SLOTS = st.integers(min_value=1, max_value=5)


class SerialCampaignMachine(RuleBasedStateMachine):
    """Two boards, one controller; rules vend and inject faults; invariants read the journals."""

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        root = Path(self._dir.name)
        self.boards = [
            SerialBoardSim(f"ESP32_5CCF7F0000{i + 1:02X}", link=str(root / f"tty{i}"),
                           motor_time=0.02, seed=i).start()
            for i in range(2)
        ]
        self.app = create_app(test_config(
            root / "data", simulator=False, serial_ports=[b.path for b in self.boards],
            serial_ack_timeout=0.1, serial_handshake_timeout=0.3, serial_rescan_interval=0.05,
            serial_ping_interval=0.3, vend_timeout=0.6))
        self.rt = self.app.extensions["vending"]
        self.client = self.app.test_client()
        self.events: list[FaultEvent] = []
        for board in self.boards:
            self._wait_online(board)

    def teardown(self) -> None:
        self.rt.stop()
        for board in self.boards:
            board.stop()
        self._dir.cleanup()

    def _online(self, board: SerialBoardSim) -> bool:
        device = self.rt.registry.get(board.device_id)
        return device is not None and device.can_vend

    def _wait_online(self, board: SerialBoardSim) -> None:
        wait_until(lambda: self._online(board), timeout=10, message=f"{board.device_id} online")

    def _note(self, kind: str, board: SerialBoardSim, start: float) -> None:
        self.events.append(FaultEvent(kind, board.device_id, start, time.time() + 1.5))

    def _events(self) -> list[FaultEvent]:
        fired = [FaultEvent(kind, b.device_id, when, when + 3.5)
                 for b in self.boards for when, kind in b.faults_fired]
        return self.events + fired

    @rule(index=BOARDS, slot=SLOTS)
    def vend(self, index: int, slot: int) -> None:
        board = self.boards[index]
        self._wait_online(board)
        self.rt.registry.select(board.device_id)
        body = self.client.post(f"/vend/{slot}?wait=15").get_json()
        assert body["status"] in ("success", "failed", "unknown"), body

    # Each fault rule arms (or makes) its fault, then vends on that board so the fault bites;
    # a fault armed for a line that never comes stays armed for later vends.

    @rule(index=BOARDS, verb=VERBS, count=st.integers(min_value=1, max_value=4), slot=SLOTS)
    def drop_next_line(self, index: int, verb: str, count: int, slot: int) -> None:
        self.boards[index].drop_next(verb, count)
        self.vend(index, slot)

    @rule(index=BOARDS, verb=st.sampled_from(["ACK", "DONE", "received"]),
          how=st.sampled_from(["flip", "swap"]), slot=SLOTS)
    def corrupt_next_line(self, index: int, verb: str, how: str, slot: int) -> None:
        if verb == "received":
            self.boards[index].corrupt_next_received(how)
        else:
            self.boards[index].corrupt_next(verb, how)
        self.vend(index, slot)

    @rule(index=BOARDS, moment=st.sampled_from(("now", *REBOOT_MOMENTS)), slot=SLOTS)
    def reboot(self, index: int, moment: str, slot: int) -> None:
        board = self.boards[index]
        if moment == "now":
            start = time.time()
            board.reboot()
            self._note("reboot_now", board, start)
        else:
            board.reboot_when(moment)
        self.vend(index, slot)

    @rule(index=BOARDS, slot=SLOTS)
    def unplug_and_replug(self, index: int, slot: int) -> None:
        board = self.boards[index]
        start = time.time()
        board.unplug()
        wait_until(lambda: not self._online(board), timeout=10, message="the server to notice")
        board.plug()
        self._note("unplug", board, start)
        self.vend(index, slot)

    @invariant()
    def the_store_agrees_with_the_motor_journals(self) -> None:
        rows: dict[str, dict[str, Any]] = {}
        for txn in self.rt.store.transactions(limit=1000)[0]:
            rows[txn.id] = dataclasses.asdict(txn)
        runs = [Run(b.device_id, r.request_id, r.result) for b in self.boards for r in b.motor_runs]
        verdict = find_violations(rows, runs, self._events(), final=False)
        assert not verdict.violations, (verdict.violations, runs)


TestAnyMixOfVendsAndSerialFaultsKeepsTheStoreTrueToTheMotorJournals = SerialCampaignMachine.TestCase
TestAnyMixOfVendsAndSerialFaultsKeepsTheStoreTrueToTheMotorJournals.settings = settings(
    max_examples=6, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
