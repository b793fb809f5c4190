"""Money adds up: random vends, failures, price changes, restocks and collections.

After every step, every report (sales by slot, product, day and hour; totals since the last
collection and since install; the DEX file; the restock list) equals the sum over the ledger,
and the ledger equals what a model of the machine expects: one sale per success, at the price
in force when the vend was asked for, none for a failure.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from shop import ledger, shop
from test_dex import read_dex

SLOT_COUNT = 3
SLOTS = st.integers(min_value=1, max_value=SLOT_COUNT)
PRICES = st.integers(min_value=0, max_value=999)


class Shop(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self._shop = shop(Path(self._dir.name) / "data", slots=SLOT_COUNT)
        self.app, self.board = self._shop.__enter__()
        self.client = self.app.test_client()
        self.default_price = {self.client.post("/products", json={
            "name": name, "default_price": price}).get_json()["id"]: price
            for name, price in (("Water", 150), ("Crisps", 120))}
        self.products = sorted(self.default_price)
        # The model: price in force per slot, stock, and every sale expected (slot, price, period).
        self.price: dict[int, int] = dict.fromkeys(range(1, SLOT_COUNT + 1), 0)
        self.product: dict[int, int | None] = dict.fromkeys(range(1, SLOT_COUNT + 1))
        self.stock: dict[int, int | None] = dict.fromkeys(range(1, SLOT_COUNT + 1))
        self.sales: list[tuple[int, int, int | None, int]] = []
        self.period = 0
        self.failed = {0: 0}

    def teardown(self) -> None:
        self._shop.__exit__(None, None, None)
        self._dir.cleanup()

    def _vend(self, slot: int, fail: bool) -> None:
        if self.stock[slot] == 0:
            assert self.client.post(f"/vend/{slot}?wait=5").get_json()["error"] == "sold_out"
            return
        if fail:
            self.board.next_result("failed", "motor_fault")
        body = self.client.post(f"/vend/{slot}?wait=5").get_json()
        if fail:
            assert body["status"] == "failed", body
            self.failed[self.period] = self.failed.get(self.period, 0) + 1
            return
        assert body["status"] == "success", body
        self.sales.append((slot, self.price[slot], self.product[slot], self.period))
        if self.stock[slot] is not None:
            self.stock[slot] -= 1

    @rule(slot=SLOTS)
    def vend(self, slot: int) -> None:
        self._vend(slot, fail=False)

    @rule(slot=SLOTS)
    def vend_that_fails(self, slot: int) -> None:
        self._vend(slot, fail=True)

    @rule(slot=SLOTS, price=PRICES)
    def change_price(self, slot: int, price: int) -> None:
        assert self.client.patch(f"/slots/{slot}", json={"price": price}).status_code == 200
        self.price[slot] = price

    @rule(slot=SLOTS, which=st.integers(min_value=0, max_value=1))
    def give_a_product(self, slot: int, which: int) -> None:
        product_id = self.products[which]
        self.client.patch(f"/slots/{slot}", json={"product_id": product_id, "price": None})
        self.product[slot] = product_id
        self.price[slot] = self.default_price[product_id]

    @rule(slot=SLOTS, stock=st.integers(min_value=0, max_value=4), capacity=st.integers(4, 8))
    def count_stock(self, slot: int, stock: int, capacity: int) -> None:
        self.client.patch(f"/slots/{slot}", json={"stock": stock, "capacity": capacity})
        self.stock[slot] = stock

    @rule(slot=SLOTS, quantity=st.integers(min_value=1, max_value=3))
    def restock(self, slot: int, quantity: int) -> None:
        self.client.post(f"/slots/{slot}/restock", json={"quantity": quantity})
        self.stock[slot] = (self.stock[slot] or 0) + quantity

    @rule()
    def refill_all(self) -> None:
        slots = self.client.get("/slots").get_json()["slots"]
        with_capacity = [s["number"] for s in slots if s["capacity"] is not None]
        response = self.client.post("/slots/refill")
        if not with_capacity:
            assert response.status_code == 409
            return
        assert response.status_code == 200
        for slot in slots:
            if slot["capacity"] is not None:
                self.stock[slot["number"]] = slot["capacity"]

    @rule()
    def collect(self) -> None:
        assert self.client.post("/collections").status_code == 201
        self.period += 1

    @invariant()
    def the_ledger_is_what_the_machine_sold(self) -> None:
        rows = ledger(self.app)
        assert [(r["slot"], r["price"], r["product_id"]) for r in rows] == [
            (slot, price, product) for slot, price, product, _ in self.sales]

    @invariant()
    def every_report_equals_the_sum_over_the_ledger(self) -> None:
        rows = ledger(self.app)
        for group in ("slot", "product", "day", "hour"):
            report = self.client.get(f"/reports/sales?group={group}").get_json()
            assert report["total"]["count"] == len(rows)
            assert report["total"]["value"] == sum(r["price"] for r in rows)
            assert sum(r["count"] for r in report["rows"]) == len(rows)
            assert sum(r["value"] for r in report["rows"]) == sum(r["price"] for r in rows)
        by_slot = {r["key"]: (r["count"], r["value"]) for r in self.client.get(
            "/reports/sales?group=slot").get_json()["rows"]}
        expected: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for r in rows:
            expected[r["slot"]][0] += 1
            expected[r["slot"]][1] += r["price"]
        assert by_slot == {slot: tuple(v) for slot, v in expected.items()}
        by_product = {r["key"]: r["value"] for r in self.client.get(
            "/reports/sales?group=product").get_json()["rows"]}
        product_values: dict[int | None, int] = defaultdict(int)
        for r in rows:
            product_values[r["product_id"]] += r["price"]
        assert by_product == dict(product_values)

        totals = self.client.get("/collections").get_json()
        open_rows = [r for r in rows if r["collection_id"] is None]
        assert totals["since_install"]["count"] == len(rows) == len(self.sales)
        assert totals["since_install"]["value"] == sum(r["price"] for r in rows)
        assert totals["since_collection"]["count"] == len(open_rows)
        assert totals["since_collection"]["value"] == sum(r["price"] for r in open_rows)
        assert totals["since_collection"]["value"] == sum(
            price for _, price, _, period in self.sales if period == self.period)
        assert totals["since_install"]["failed"] == sum(self.failed.values())
        assert totals["since_collection"]["failed"] == self.failed.get(self.period, 0)
        for collection in totals["collections"]:
            mine = [r for r in rows if r["collection_id"] == collection["id"]]
            assert collection["sales_count"] == len(mine)
            assert collection["sales_value"] == sum(r["price"] for r in mine)

        records = read_dex(self.client.get("/reports/dex").get_data(as_text=True))
        assert records["VA1"] == [[str(sum(r["price"] for r in rows)), str(len(rows)),
                                   str(sum(r["price"] for r in open_rows)), str(len(open_rows))]]

    @invariant()
    def stock_follows_sales_and_the_pick_list_adds_up(self) -> None:
        restock = self.client.get("/reports/restock").get_json()
        assert {s["slot"]: s["stock"] for s in restock["slots"]} == self.stock
        assert sum(p["quantity"] for p in restock["pick_list"]) == sum(
            s["missing"] or 0 for s in restock["slots"]) == restock["total_missing"]


Shop.TestCase.settings = settings(max_examples=6, stateful_step_count=20, deadline=None,
                                  suppress_health_check=list(HealthCheck))
TestMoneyAddsUp = Shop.TestCase
