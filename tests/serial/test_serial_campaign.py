"""A seeded campaign of random faults: never two motor runs, never a wrong recorded outcome."""

from __future__ import annotations

import os
import random

from serial_support import wait_online

FAULTS = [
    lambda b, r: None,
    lambda b, r: b.drop_next("ACK", r.randint(1, 5)),
    lambda b, r: b.drop_next("DONE", r.randint(1, 2)),
    lambda b, r: b.corrupt_next_received(r.choice(["flip", "swap"])),
    lambda b, r: b.corrupt_next(r.choice(["ACK", "DONE"]), r.choice(["flip", "swap"])),
    lambda b, r: b.reboot_when(r.choice(["vend_received", "motor_started", "motor_finished"])),
    lambda b, r: b.next_result("failed", r.choice(["jam", "empty"])),
]


def test_random_faults_never_cause_two_motor_runs_or_a_wrong_outcome(make_board, serial_app):
    rng = random.Random(int(os.environ.get("SERIAL_CAMPAIGN_SEED", "20261126")))
    board = make_board(motor_time=0.1)
    app = serial_app(board.path, vend_timeout=1.5)
    client = app.test_client()
    seen = set()
    for _ in range(int(os.environ.get("SERIAL_CAMPAIGN_VENDS", "30"))):
        wait_online(app, board.device_id)
        for fault in rng.sample(FAULTS, rng.randint(1, 2)):
            fault(board, rng)
        body = client.post(f"/vend/{rng.randint(1, 5)}?wait=10").get_json()
        txn, status = body["transaction_id"], body["status"]
        seen.add(status)
        runs = board.runs_for(txn)
        assert len(runs) <= 1, (txn, runs)
        if status == "success":
            assert [r.result for r in runs] == ["success"], (txn, runs)
        elif status == "failed":
            assert all(r.result != "success" for r in runs), (txn, runs)
        else:
            assert status == "unknown", body
    assert {"success", "failed", "unknown"} <= seen
    # Outcomes settled later (after reboots) must agree with the board's journal too.
    for txn in client.get("/transactions?limit=100").get_json()["transactions"]:
        runs = board.runs_for(txn["transaction_id"])
        if txn["status"] == "success":
            assert [r.result for r in runs] == ["success"], txn
        elif txn["status"] == "failed":
            assert all(r.result != "success" for r in runs), txn
