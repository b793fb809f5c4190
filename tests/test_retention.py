"""Audit and alert rows are kept by age and by count, and refusals are written at a bounded rate."""

from __future__ import annotations

from vending.audit import REFUSALS_SUMMARY, AuditLog
from vending.store import Store
from vending.store.operations import OperationsStore, Retention

DAY = 86400.0


def _ops(tmp_path, **limits) -> OperationsStore:
    return OperationsStore(Store(tmp_path / "v.db"), Retention(**{"every": 10, **limits}))


def test_audit_rows_beyond_the_count_limit_go_oldest_first(tmp_path):
    ops = _ops(tmp_path, audit_rows=50)
    for n in range(500):
        ops.add_audit("restock", "operator", "192.168.1.2", "ok", f"n={n}")
    kept = ops.audit(0, None, 1000)
    assert 50 <= len(kept) <= 60 and kept[-1].detail == "n=499"
    ops.prune()
    assert [e.detail for e in ops.audit(0, None, 1000)] == [f"n={n}" for n in range(450, 500)]


def test_rows_older_than_the_age_limit_are_pruned(tmp_path):
    ops = _ops(tmp_path, audit_days=30, alert_days=30)
    now = 1_800_000_000.0
    ops.add_audit("restock", "operator", "", "ok", "old", now=now - 31 * DAY)
    ops.add_audit("restock", "operator", "", "ok", "new", now=now - 29 * DAY)
    old = ops.add_alert("low_stock", "warning", "slot 1", "old", {}, ["http://127.0.0.1:9/h"],
                        now=now - 31 * DAY)
    ops.add_alert("low_stock", "warning", "slot 1", "new", {}, now=now - 1)
    assert ops.prune(now=now) == (1, 1)
    assert [e.detail for e in ops.audit(0, None, 10)] == ["new"]
    assert [a.message for a in ops.alerts(0, False, 10)] == ["new"]
    assert ops.deliveries(old.id) == []


def test_alerts_beyond_the_count_limit_go_with_their_webhook_deliveries(tmp_path):
    ops = _ops(tmp_path, alert_rows=20)
    first = ops.add_alert("sign_in_failures", "warning", "10.0.0.1", "m", {}, ["http://127.0.0.1:9/h"])
    for n in range(200):
        ops.add_alert("sign_in_failures", "warning", f"10.0.1.{n}", "m", {})
    ops.prune()
    assert len(ops.alerts(0, False, 1000)) == 20
    assert ops.deliveries(first.id) == []


def test_a_flood_of_refusals_writes_one_row_per_source_and_minute_and_a_summary(tmp_path):
    clock = [6000.0]
    ops = _ops(tmp_path)
    log = AuditLog(ops, refusals_per_minute=3, clock=lambda: clock[0])
    for n in range(10_000):
        log.refused("vend", "anonymous", f"10.0.0.{n % 5}", "401 POST /vend/1")
    assert len(ops.audit(0, None, 100)) == 3  # three sources within the per-minute budget
    clock[0] += 60
    summary = [e for e in log.entries(0, None, 100) if e.action == REFUSALS_SUMMARY]
    assert len(summary) == 1
    assert "9997 more refused requests" in summary[0].detail and "10.0.0.3 x2000" in summary[0].detail
