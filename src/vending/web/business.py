"""The business side: products, refills, collections, sales reports, restock and DEX."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .. import audit
from ..errors import BadRequest, Conflict, NotFound
from ..events import SLOT_CHANGED
from ..money import MAX_PRICE
from ..store.sales import GROUPS
from .common import json_body, runtime, whole_number
from .operations import audited, who_and_where

bp = Blueprint("business", __name__)

PRODUCT_NAME_MAX = 60
SKU_MAX = 40
NOTE_MAX = 500
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(value: Any) -> Any:
    """A value safe to open in a spreadsheet: text that could run as a formula is quoted."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def price_value(raw: Any, name: str = "price", nullable: bool = False) -> int | None:
    """A price in minor units (a whole number), or a 400 that says what one looks like."""
    if raw is None and nullable:
        return None
    value = whole_number(raw)
    if value is None or not 0 <= value <= MAX_PRICE:
        currency = runtime().currency
        example = 10**currency.decimals + 10**currency.decimals // 2
        raise BadRequest(
            f"{name} must be a whole number of minor units from 0 to {MAX_PRICE}"
            f"{', or null' if nullable else ''} (e.g. {example} for"
            f" {currency.format(example)}), got {raw!r}")
    return value


# Control characters, and halves of a character (lone surrogates) that no UTF-8 can hold.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _text(body: dict[str, Any], name: str, limit: int, nullable: bool = False) -> str | None:
    value = body[name]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit \
            or _UNPRINTABLE.search(value):
        raise BadRequest(f"{name} must be 1 to {limit} characters, not all spaces and no"
                         f" control characters{', or null' if nullable else ''}")
    return value.strip()


def _known_id(product_id: int) -> int:
    """A product id SQLite can hold; a bigger one names no product (404, not a 500)."""
    if not 1 <= product_id <= 2**62:
        raise NotFound(f"no product {product_id}; GET /products lists them")
    return product_id


def _check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))};"
                         f" use {', '.join(sorted(allowed))}")


# Products


def _products_body() -> dict[str, Any]:
    rt = runtime()
    return {"products": [p.to_dict() for p in rt.sales.products()],
            "currency": rt.currency.to_dict()}


@bp.get("/products")
def list_products():
    """The product catalogue, with the machine's currency."""
    return jsonify(_products_body())


@bp.post("/products")
@audited(audit.ADD_PRODUCT)
def add_product():
    """Add a product: {"name", "default_price" (minor units), "sku" (optional)}."""
    body = json_body()
    _check_fields(body, {"name", "sku", "default_price"})
    if "name" not in body or "default_price" not in body:
        raise BadRequest('send {"name": "Water 50 cl", "default_price": 150}')
    name = _text(body, "name", PRODUCT_NAME_MAX)
    sku = _text(body, "sku", SKU_MAX, nullable=True) if "sku" in body else None
    price = price_value(body["default_price"], "default_price")
    product = runtime().sales.add_product(name, price, sku)
    return jsonify(product.to_dict()), 201


@bp.patch("/products/<int:product_id>")
@audited(audit.CHANGE_PRODUCT)
def change_product(product_id: int):
    """Rename a product, change its SKU or default price (slots with their own price keep it)."""
    rt = runtime()
    body = json_body()
    _check_fields(body, {"name", "sku", "default_price"})
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _text(body, "name", PRODUCT_NAME_MAX)
    if "sku" in body:
        changes["sku"] = _text(body, "sku", SKU_MAX, nullable=True)
    if "default_price" in body:
        changes["default_price"] = price_value(body["default_price"], "default_price")
    if not changes:
        raise BadRequest('nothing to change: send "name", "sku" and/or "default_price"')
    _, product = rt.sales.update_product(_known_id(product_id), **changes)
    _announce_slots(lambda slot: slot.product_id == product_id)
    return jsonify(product.to_dict())


@bp.delete("/products/<int:product_id>")
@audited(audit.DELETE_PRODUCT)
def delete_product(product_id: int):
    """Remove a product that no slot holds; past sales keep its name."""
    product = runtime().sales.delete_product(_known_id(product_id))
    return jsonify({"deleted": product.to_dict()})


def _announce_slots(which: Any) -> None:
    """Tell listeners (MQTT, alerts) about slots whose shown product or price changed."""
    rt = runtime()
    for slot in rt.store.slots(rt.config.slots):
        if which(slot):
            rt.events.publish(SLOT_CHANGED, slot=slot.to_dict(), previous=slot.to_dict())


# Refill and collections


@bp.post("/slots/refill")
@audited(audit.REFILL)
def refill():
    """Set the chosen slots' stock to their capacity in one step: {"slots": [1, 2]}.

    Without "slots", every slot that has a capacity. All or nothing.
    """
    rt = runtime()
    body = json_body(required=False)
    _check_fields(body, {"slots"})
    numbers = body.get("slots")
    if "slots" not in body:
        numbers = [s.number for s in rt.store.slots(rt.config.slots) if s.capacity is not None]
        if not numbers:
            raise Conflict("no slot has a capacity yet; set one with PATCH /slots/<n>"
                           ' {"capacity": 10}')
    if not isinstance(numbers, list) or not numbers or len(numbers) > rt.config.slots:
        raise BadRequest(f'slots must be a list of 1 to {rt.config.slots} slot numbers,'
                         ' e.g. {"slots": [1, 3]}')
    checked = []
    for raw in numbers:
        number = whole_number(raw)
        if number is None:
            raise BadRequest(f"slot numbers must be whole numbers, got {raw!r}")
        rt.service.check_slot(number)
        checked.append(number)
    changed = rt.sales.refill(checked)
    for before, after in changed:
        rt.events.publish(SLOT_CHANGED, slot=after.to_dict(), previous=before.to_dict())
    return jsonify({"slots": [after.to_dict() for _, after in changed]})


@bp.get("/collections")
def list_collections():
    """Past collections, newest first, with the totals since the last one and since install."""
    rt = runtime()
    return jsonify({**rt.business.totals(),
                    "collections": [c.to_dict() for c in rt.sales.collections()]})


@bp.post("/collections")
@audited(audit.COLLECT)
def collect():
    """Close the period (cash box emptied, machine refilled): {"note": "..."} optional."""
    rt = runtime()
    body = json_body(required=False)
    _check_fields(body, {"note"})
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > NOTE_MAX:
        raise BadRequest(f"note must be text of at most {NOTE_MAX} characters")
    who, _ = who_and_where()
    collection = rt.sales.collect(who, note)
    return jsonify(collection.to_dict()), 201


# Reports


_EPOCH_SECONDS = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,6})?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _moment(name: str, end: bool) -> float | None:
    """?from= / ?to=: a date (local), a local date and time, one with an offset, or epoch s."""
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    if _EPOCH_SECONDS.match(raw):
        return float(raw)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a date (2026-12-01), a date and time"
                         f" (2026-12-01T14:00) or epoch seconds, got {raw!r}") from None
    if end and len(raw) == 10:
        # ?to=2026-12-01 includes that whole day.
        parsed = parsed + timedelta(days=1) if parsed.date() < date.max else parsed
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        # Beyond what the C library's local time handles (year 1, year 9999): as UTC.
        return (parsed.replace(tzinfo=parsed.tzinfo or timezone.utc) - _EPOCH).total_seconds()


def _period() -> tuple[float | None, float | None]:
    """[from, to); a `to` before `from` is an empty period, as a query over no time."""
    return _moment("from", False), _moment("to", True)


def _format() -> str:
    fmt = request.args.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise BadRequest(f"format must be json or csv, got {fmt!r}")
    return fmt


def _csv(rows: list[list[Any]], filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([csv_cell(cell) for cell in row])
    return Response(buffer.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={filename}"})


@bp.get("/reports/sales")
def sales_report():
    """Sales over ?from=&to=, grouped by ?group=slot|product|day|hour; ?format=csv exports."""
    rt = runtime()
    group = request.args.get("group") or "slot"
    if group not in GROUPS:
        raise BadRequest(f"group must be one of {', '.join(GROUPS)}, got {group!r}")
    start, end = _period()
    fmt = _format()
    rows, totals = rt.sales.report(group, start, end)
    if fmt == "csv":
        table = [[group, "label", "count", "value_minor", f"value_{rt.currency.code}"]]
        table += [[row["key"], row["label"], row["count"], row["value"],
                   rt.currency.amount(row["value"])] for row in rows]
        table.append(["total", "", totals.count, totals.value, rt.currency.amount(totals.value)])
        return _csv(table, f"sales-by-{group}.csv")
    return jsonify({
        "group": group, "from": start, "to": end, "currency": rt.currency.to_dict(),
        "rows": rows, "total": totals.to_dict(),
        "since_collection": rt.sales.totals(since_collection=True).to_dict(),
        "since_install": rt.sales.totals(since_collection=False).to_dict(),
    })


@bp.get("/reports/restock")
def restock_report():
    """What each slot misses to reach capacity, and the pick list summed by product."""
    rt = runtime()
    fmt = _format()
    report = rt.business.restock()
    if fmt == "csv":
        table = [["product_id", "product_name", "quantity", "slots"]]
        table += [[p["product_id"], p["product_name"], p["quantity"],
                   " ".join(map(str, p["slots"]))] for p in report["pick_list"]]
        return _csv(table, "pick-list.csv")
    return jsonify(report)


@bp.get("/reports/dex")
def dex_report():
    """The EVA-DTS 6.1 DEX/UCS audit file, from the ledger."""
    rt = runtime()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    return Response(rt.business.dex(), mimetype="text/plain",
                    headers={"Content-Disposition": f"attachment; filename=audit-{stamp}.dex"})
