"""Model-based test of the vend path: whatever the sequence, no double vend, no false success."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from helpers import test_config, wait_until
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vending import create_app
from vending.devices.base import SERIAL
from vending.devices.simulator import FAULTS, SimulatedDevice

SLOTS = st.integers(min_value=1, max_value=5)


class ModelBoard(SimulatedDevice):
    """A board whose motor and radio are mocked; to the server it is a real (serial) board,
    so its successes take stock (the simulator's never do)."""

    transport = SERIAL


class VendMachine(RuleBasedStateMachine):
    """Drives POST /vend with faults, stock changes and repeats; checks the store against the motor."""

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.app = create_app(test_config(Path(self._dir.name), simulator=False,
                                          vend_timeout=0.05, device_queue_limit=100))
        self.runtime = self.app.extensions["vending"]
        self.board = ModelBoard("ESP32_MODEL", self.runtime.log, motor_time=0.0)
        self.runtime.registry.add(self.board)
        self.board.start()
        self.client = self.app.test_client()
        self.keys: dict[str, tuple[int, str]] = {}  # key -> (slot, transaction id)
        self.expected_stock: dict[int, int | None] = dict.fromkeys(range(1, 6))

    def teardown(self) -> None:
        self.runtime.stop()
        self._dir.cleanup()

    @rule(slot=SLOTS, use_key=st.booleans())
    def vend(self, slot: int, use_key: bool) -> None:
        key = str(uuid.uuid4()) if use_key else None
        headers = {"Idempotency-Key": key} if key else {}
        response = self.client.post(f"/vend/{slot}?wait=5", headers=headers)
        body = response.get_json()
        stock = self.expected_stock[slot]
        if stock == 0:
            assert response.status_code == 409 and body["error"] == "sold_out"
            return
        assert response.status_code in (200, 502, 504), body
        if key:
            self.keys[key] = (slot, body["transaction_id"])
        if body["status"] == "success" and stock is not None:
            self.expected_stock[slot] = stock - 1

    @precondition(lambda self: self.keys)
    @rule(data=st.data(), other_slot=SLOTS)
    def repeat_a_key(self, data: st.DataObject, other_slot: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.keys)))
        slot, txn_id = self.keys[key]
        response = self.client.post(f"/vend/{other_slot}", headers={"Idempotency-Key": key})
        if other_slot == slot:
            assert response.get_json()["transaction_id"] == txn_id
            assert response.headers.get("Idempotent-Replayed") == "true"
        else:
            assert response.status_code == 422

    @rule(fault=st.sampled_from(sorted(FAULTS)))
    def inject_fault(self, fault: str) -> None:
        self.board.inject_fault(fault)

    @rule(slot=SLOTS, stock=st.one_of(st.none(), st.integers(min_value=0, max_value=3)))
    def set_stock(self, slot: int, stock: int | None) -> None:
        assert self.client.patch(f"/slots/{slot}", json={"stock": stock}).status_code == 200
        self.expected_stock[slot] = stock

    @invariant()
    def every_vend_is_final_and_matches_the_motor(self) -> None:
        wait_until(lambda: self.runtime.store.counts()["pending"] + self.runtime.store.counts()[
            "sent"] == 0, message="no open vends")
        runs: dict[str, int] = {}
        for run in self.board.motor_runs:
            runs[run.transaction_id] = runs.get(run.transaction_id, 0) + 1
        assert all(count == 1 for count in runs.values()), "a transaction ran the motor twice"
        for txn in self.runtime.store.iter_transactions():
            if txn.state == "success":
                assert runs.get(txn.id) == 1, "success without a motor run"
            if txn.state == "failed" and txn.reason in ("empty", "motor_fault", "expired"):
                assert txn.id not in runs, "a failed vend ran the motor"

    @invariant()
    def stock_follows_successes(self) -> None:
        slots = {s["number"]: s["stock"] for s in self.client.get("/slots").get_json()["slots"]}
        assert slots == self.expected_stock


TestVendMachine = VendMachine.TestCase
TestVendMachine.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
