"""Products, planogram, sales, collections, restock and refill: what an operator counts on."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest
from helpers import wait_until
from shop import ledger, shop

from vending import Config


@pytest.fixture
def machine(tmp_path: Path):
    with shop(tmp_path / "data") as (app, board):
        yield app, board


def _product(client, name: str = "Water", price: int = 150, **extra) -> int:
    response = client.post("/products", json={"name": name, "default_price": price, **extra})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _audit(client, action: str) -> list[dict]:
    return client.get(f"/audit?action={action}").get_json()["entries"]


class TestProducts:
    def test_a_product_is_created_listed_changed_and_deleted_and_each_step_is_audited(self, client):
        product_id = _product(client, "Water", 150, sku="5449000000996")
        listed = client.get("/products").get_json()
        assert listed["currency"] == {"code": "EUR", "decimals": 2, "numeric": "978"}
        assert [p["name"] for p in listed["products"]] == ["Water"]
        changed = client.patch(f"/products/{product_id}", json={"default_price": 175})
        assert changed.get_json()["default_price"] == 175
        assert client.delete(f"/products/{product_id}").status_code == 200
        assert client.get("/products").get_json()["products"] == []
        for action in ("add_product", "change_product", "delete_product"):
            assert [e["outcome"] for e in _audit(client, action)] == ["ok"], action

    @pytest.mark.parametrize("body", [
        {"name": "Water", "default_price": 1.5}, {"name": "Water", "default_price": -1},
        {"name": "Water", "default_price": "1.50"}, {"name": "", "default_price": 100},
        {"name": "Water"}, {"name": "Water", "default_price": 100, "colour": "blue"},
        {"name": "x" * 61, "default_price": 100}, {"name": "Water", "default_price": True},
    ])
    def test_a_bad_product_gets_400_with_a_reason_and_nothing_is_stored(self, client, body):
        response = client.post("/products", json=body)
        assert response.status_code == 400
        assert set(response.get_json()) == {"error", "detail"}
        assert client.get("/products").get_json()["products"] == []
        assert _audit(client, "add_product")[0]["outcome"] == "refused"

    def test_a_product_in_a_slot_cannot_be_deleted_until_the_slot_gets_another(self, client):
        product_id = _product(client)
        client.patch("/slots/2", json={"product_id": product_id})
        refused = client.delete(f"/products/{product_id}")
        assert refused.status_code == 409 and "slot(s) 2" in refused.get_json()["detail"]
        client.patch("/slots/2", json={"product_id": None})
        assert client.delete(f"/products/{product_id}").status_code == 200

    def test_an_unknown_product_is_404(self, client):
        assert client.patch("/products/99", json={"name": "x"}).status_code == 404
        assert client.delete("/products/99").status_code == 404


class TestPlanogram:
    def test_a_slot_takes_a_product_price_capacity_and_par_and_shows_the_price(self, client):
        product_id = _product(client, "Crisps", 120)
        slot = client.patch("/slots/1", json={"product_id": product_id, "capacity": 8, "par": 3,
                                              "stock": 8}).get_json()
        assert (slot["product_name"], slot["price"], slot["price_text"]) == ("Crisps", 120,
                                                                          "1.20 EUR")
        own = client.patch("/slots/1", json={"price": 90}).get_json()
        assert own["price"] == 90
        back = client.patch("/slots/1", json={"price": None}).get_json()
        assert back["price"] == 120  # null: the product's default again
        page = client.get("/").get_data(as_text=True)
        assert "1.20 EUR" in page and "8 left" in page

    def test_par_above_capacity_is_refused_and_nothing_changes(self, client):
        before = client.get("/slots").get_json()["slots"][0]
        response = client.patch("/slots/1", json={"capacity": 5, "par": 6, "name": "Renamed"})
        assert response.status_code == 409 and "par" in response.get_json()["detail"]
        assert client.get("/slots").get_json()["slots"][0] == before

    def test_a_slot_given_a_product_that_does_not_exist_is_refused(self, client):
        response = client.patch("/slots/1", json={"product_id": 42})
        assert response.status_code == 404 and "no product 42" in response.get_json()["detail"]

    def test_a_currency_from_the_config_is_used_with_its_decimal_places(self, make_app):
        client = make_app(currency="jpy", currency_decimals=0).test_client()
        product_id = _product(client, "Tea", 150)
        slot = client.patch("/slots/1", json={"product_id": product_id}).get_json()
        assert slot["price_text"] == "150 JPY"
        with pytest.raises(ValueError, match="ISO 4217"):
            Config(currency="EURO")


class TestSales:
    def test_a_sale_keeps_the_product_and_price_in_force_and_a_later_change_rewrites_nothing(
            self, machine):
        app, _ = machine
        client = app.test_client()
        product_id = _product(client, "Water", 150)
        client.patch("/slots/1", json={"product_id": product_id, "stock": 10})
        first = client.post("/vend/1?wait=5").get_json()
        assert (first["status"], first["product_name"], first["price"]) == ("success", "Water", 150)
        client.patch("/slots/1", json={"price": 200})
        client.patch(f"/products/{product_id}", json={"name": "Still water"})
        client.post("/vend/1?wait=5")
        assert [(s["product_name"], s["price"]) for s in ledger(app)] == [
            ("Water", 150), ("Still water", 200)]
        report = client.get("/reports/sales?group=slot").get_json()
        assert report["rows"] == [{"key": 1, "label": "Slot 1", "count": 2, "value": 350}]

    def test_a_price_changed_while_the_vend_runs_changes_nothing_about_its_sale(self, machine):
        app, board = machine
        client = app.test_client()
        client.patch("/slots/1", json={"price": 150})
        board.delay_next("DONE", 0.5)  # the motor runs; its confirmation comes half a second late
        running = client.post("/vend/1?wait=0").get_json()
        assert running["status"] in ("pending", "sent")
        client.patch("/slots/1", json={"price": 990})
        wait_until(lambda: client.get(f"/vend/{running['transaction_id']}").get_json()["status"]
                   == "success", message="the vend to succeed")
        assert [(s["transaction_id"], s["price"]) for s in ledger(app)] == [
            (running["transaction_id"], 150)]

    def test_failed_and_unknown_vends_are_counted_apart_and_never_as_sales(self, machine):
        app, board = machine
        client = app.test_client()
        client.patch("/slots/2", json={"price": 100, "stock": 5})
        board.next_result("failed", "motor_fault")
        assert client.post("/vend/2?wait=5").get_json()["status"] == "failed"
        app.extensions["vending"].service.settings.vend_timeout = 0.3
        board.hang()
        assert client.post("/vend/2?wait=5").get_json()["status"] == "unknown"
        assert ledger(app) == []
        report = client.get("/reports/sales").get_json()
        assert report["total"] == {"count": 0, "value": 0, "failed": 1, "unknown": 1}
        assert client.get("/slots").get_json()["slots"][1]["stock"] == 5

    def test_a_success_whose_sale_cannot_be_written_is_not_recorded_as_a_success(self, machine):
        app, _ = machine
        client = app.test_client()
        client.patch("/slots/3", json={"price": 100, "stock": 4})
        # A second connection, as another process would, makes every sale insert fail.
        other = sqlite3.connect(app.extensions["vending"].config.database_path)
        other.execute("CREATE TRIGGER no_sales BEFORE INSERT ON sales"
                      " BEGIN SELECT RAISE(ABORT, 'sales ledger refused'); END")
        other.commit()
        body = client.post("/vend/3?wait=5").get_json()
        assert body["status"] != "success"
        assert ledger(app) == []
        assert client.get("/slots").get_json()["slots"][2]["stock"] == 4
        other.execute("DROP TRIGGER no_sales")
        other.commit()
        other.close()

    def test_reports_group_by_slot_product_day_and_hour_within_from_and_to(self, machine):
        app, _ = machine
        client = app.test_client()
        water, crisps = _product(client, "Water", 150), _product(client, "Crisps", 120)
        client.patch("/slots/1", json={"product_id": water})
        client.patch("/slots/2", json={"product_id": crisps})
        for slot in (1, 1, 2):
            assert client.post(f"/vend/{slot}?wait=5").get_json()["status"] == "success"
        by_product = client.get("/reports/sales?group=product").get_json()["rows"]
        assert {(r["label"], r["count"], r["value"]) for r in by_product} == {
            ("Water", 2, 300), ("Crisps", 1, 120)}
        for group in ("day", "hour"):
            rows = client.get(f"/reports/sales?group={group}").get_json()["rows"]
            assert sum(r["value"] for r in rows) == 420 and sum(r["count"] for r in rows) == 3
        empty = client.get("/reports/sales?from=2001-01-01&to=2001-01-31").get_json()
        assert empty["rows"] == [] and empty["total"]["count"] == 0
        backwards = client.get("/reports/sales?from=2026-02-01&to=2026-01-01").get_json()
        assert backwards["rows"] == [] and backwards["total"]["count"] == 0
        for bad in ("group=week", "from=yesterday", "format=xml", "to=2026-13-01"):
            response = client.get(f"/reports/sales?{bad}")
            assert response.status_code == 400, bad
            assert set(response.get_json()) == {"error", "detail"}

    def test_the_csv_export_adds_up_and_neutralises_formulas(self, machine):
        app, _ = machine
        client = app.test_client()
        evil = _product(client, '=HYPERLINK("http://evil.example","x")', 250)
        client.patch("/slots/4", json={"product_id": evil})
        client.post("/vend/4?wait=5")
        rows = list(csv.reader(io.StringIO(
            client.get("/reports/sales?group=product&format=csv").get_data(as_text=True))))
        assert rows[0] == ["product", "label", "count", "value_minor", "value_EUR"]
        assert rows[1][1].startswith("'=HYPERLINK")
        assert rows[-1] == ["total", "", "1", "250", "2.50"]


class TestCollections:
    def test_a_collection_closes_the_period_and_totals_count_since_it_and_since_install(
            self, machine):
        app, _ = machine
        client = app.test_client()
        client.patch("/slots/1", json={"price": 100})
        for _ in range(2):
            client.post("/vend/1?wait=5")
        collected = client.post("/collections", json={"note": "cash box emptied"})
        assert collected.status_code == 201
        assert (collected.get_json()["sales_count"], collected.get_json()["sales_value"]) == (2, 200)
        client.patch("/slots/1", json={"price": 130})
        client.post("/vend/1?wait=5")
        totals = client.get("/collections").get_json()
        assert totals["since_collection"]["count"] == 1
        assert totals["since_collection"]["value"] == 130
        assert totals["since_install"]["count"] == 3
        assert totals["since_install"]["value"] == 330
        assert _audit(client, "collect")[0]["detail"] == 'note="cash box emptied"'


class TestRestock:
    def test_the_restock_report_lists_what_is_missing_and_a_pick_list_by_product(self, client):
        water = _product(client, "Water", 150)
        client.patch("/slots/1", json={"product_id": water, "capacity": 10, "par": 4, "stock": 3})
        client.patch("/slots/2", json={"product_id": water, "capacity": 6, "stock": 6})
        client.patch("/slots/3", json={"capacity": 5, "stock": 1})
        report = client.get("/reports/restock").get_json()
        assert [(s["slot"], s["missing"], s["below_par"]) for s in report["slots"][:3]] == [
            (1, 7, True), (2, 0, False), (3, 4, False)]
        assert [(p["product_name"], p["quantity"], p["slots"]) for p in report["pick_list"]] == [
            ("No product", 4, [3]), ("Water", 7, [1])]
        assert report["total_missing"] == 11

    def test_refill_sets_the_chosen_slots_to_capacity_in_one_audited_step(self, client):
        client.patch("/slots/1", json={"capacity": 10, "stock": 2})
        client.patch("/slots/2", json={"capacity": 4, "stock": 0})
        response = client.post("/slots/refill", json={"slots": [1, 2]})
        assert [s["stock"] for s in response.get_json()["slots"]] == [10, 4]
        assert _audit(client, "refill")[0]["outcome"] == "ok"

    def test_a_refill_that_includes_a_slot_without_capacity_changes_no_slot_at_all(self, client):
        client.patch("/slots/1", json={"capacity": 10, "stock": 2})
        response = client.post("/slots/refill", json={"slots": [1, 5]})
        assert response.status_code == 409 and "slot(s) 5" in response.get_json()["detail"]
        assert client.get("/slots").get_json()["slots"][0]["stock"] == 2
        assert _audit(client, "refill")[0]["outcome"] == "refused"

    @pytest.mark.parametrize("body", [{"slots": []}, {"slots": [0]}, {"slots": ["1"]},
                                      {"slots": 1}, {"slot": [1]}])
    def test_a_bad_refill_gets_400(self, client, body):
        client.patch("/slots/1", json={"capacity": 10})
        response = client.post("/slots/refill", json=body)
        assert response.status_code == 400, body
        assert set(response.get_json()) == {"error", "detail"}
