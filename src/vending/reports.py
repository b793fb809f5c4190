"""Reports over the sales ledger: restock pick list, the DEX audit, period summaries.

No Flask here: the web layer and MQTT call these with the runtime's parts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from . import __version__, dex
from .money import Currency
from .store import Store
from .store.sales import SalesStore


@dataclass(frozen=True)
class Business:
    """The parts the reports read, and the machine's currency and identity."""

    store: Store
    sales: SalesStore
    currency: Currency
    slots: int
    machine_id: str
    machine_serial: str = ""

    # Restock

    def restock(self) -> dict[str, Any]:
        """Per slot: what is missing to reach capacity; and the pick list summed by product."""
        rows, picks = [], {}
        for slot in self.store.slots(self.slots):
            missing = None
            if slot.capacity is not None and slot.stock is not None:
                missing = max(0, slot.capacity - slot.stock)
            rows.append({
                "slot": slot.number, "name": slot.name, "product_id": slot.product_id,
                "product_name": slot.product_name, "stock": slot.stock,
                "capacity": slot.capacity, "par": slot.par, "missing": missing,
                "below_par": (slot.par is not None and slot.stock is not None
                              and slot.stock < slot.par),
            })
            if missing:
                key = slot.product_id
                pick = picks.setdefault(key, {
                    "product_id": slot.product_id,
                    "product_name": slot.product_name or "No product", "quantity": 0,
                    "slots": []})
                pick["quantity"] += missing
                pick["slots"].append(slot.number)
        pick_list = sorted(picks.values(), key=lambda p: (p["product_name"].lower(),
                                                          p["product_id"] or 0))
        return {"slots": rows, "pick_list": pick_list,
                "total_missing": sum(p["quantity"] for p in pick_list)}

    # Totals

    def totals(self) -> dict[str, Any]:
        """Since the last collection and since install, with the last collection."""
        last = self.sales.last_collection()
        return {
            "currency": self.currency.to_dict(),
            "since_collection": self.sales.totals(since_collection=True).to_dict(),
            "since_install": self.sales.totals(since_collection=False).to_dict(),
            "last_collection": last.to_dict() if last else None,
        }

    def today_by_slot(self) -> dict[int, tuple[int, int]]:
        """Slot -> (count, value) sold since local midnight."""
        return self.sales.per_slot(start=local_midnight(time.time()))

    # The Reports page

    def summary(self, start: float | None, end: float | None = None) -> dict[str, Any]:
        """Sales of a period: totals, by product, by hour, top sellers, slots that sold none."""
        by_product, totals = self.sales.report("product", start, end)
        by_hour, _ = self.sales.report("hour", start, end)
        by_slot, _ = self.sales.report("slot", start, end)
        hours = [0] * 24
        for row in by_hour:
            hours[int(row["key"])] = row["count"]
        sold = {row["key"] for row in by_slot}
        return {
            "totals": totals,
            "by_product": sorted(by_product, key=lambda r: (-r["value"], r["label"])),
            "top": sorted(by_product, key=lambda r: (-r["count"], -r["value"], r["label"]))[:5],
            "hours": hours,
            "idle_slots": [s for s in self.store.slots(self.slots) if s.number not in sold],
        }

    # DEX

    def dex_audit(self, events: int = 20) -> dex.Audit:
        """The figures of the DEX file, read from the ledger."""
        since_init = self.sales.per_slot()
        since_reset = self.sales.per_slot(since_collection=True)
        skus = {p.id: p.sku for p in self.sales.products()}
        columns = []
        for slot in self.store.slots(self.slots):
            count_init, value_init = since_init.get(slot.number, (0, 0))
            count_reset, value_reset = since_reset.get(slot.number, (0, 0))
            # PA103 identifies the product: its SKU or barcode when it has one.
            product = skus.get(slot.product_id) or slot.product_name or slot.name
            columns.append(dex.Column(slot.number, slot.price or 0, product,
                                      count_init, value_init, count_reset, value_reset))
        init = self.sales.totals(since_collection=False)
        reset = self.sales.totals(since_collection=True)
        serial = self.machine_serial or self.machine_id
        return dex.Audit(
            communication_id=f"FVM{self.machine_id}".upper(), serial=serial,
            model="flask-vending", build=__version__.replace(".", "")[:4],
            currency=self.currency, columns=columns,
            event_counts=[dex.EventCount(dex.EVENT_FAILED, reset.failed, init.failed),
                          dex.EventCount(dex.EVENT_UNKNOWN, reset.unknown, init.unknown)],
            events=dex.events_from(self.sales.events(events)),
        )

    def dex(self) -> str:
        return dex.build(self.dex_audit())


def local_midnight(now: float, days_back: int = 0) -> float:
    """Epoch seconds of the local midnight `days_back` days before the one before `now`."""
    stamp = time.localtime(now)
    return time.mktime((stamp.tm_year, stamp.tm_mon, stamp.tm_mday - days_back, 0, 0, 0, 0, 0,
                        -1))


# The Reports page's periods: (name, label, days before today's midnight).
PERIODS = (("today", "Today", 0), ("7d", "7 days", 6), ("30d", "30 days", 29))
