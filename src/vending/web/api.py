"""REST API: vends, transactions, slots, status and health."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from .. import audit, exports
from ..errors import BadRequest, InvalidSlot
from ..events import SLOT_CHANGED
from ..protocol.states import VendState
from ..store import STATES, Slot, Transaction
from .auth import identify_within_limits
from .business import price_value
from .common import float_arg, int_arg, json_body, runtime, whole_number
from .conditional import OPERATOR, PUBLIC, StatusSnapshots, conditional_json, status_answer
from .operations import audited

bp = Blueprint("api", __name__)


@bp.record_once
def _status_cache(state) -> None:
    state.app.extensions["vending_status"] = StatusSnapshots()

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
SLOT_NAME_MAX = 40

# HTTP status for each state of a vend, and the error code of the unhappy ones.
_VEND_STATUS = {
    VendState.SUCCESS: (200, None),
    VendState.FAILED: (502, "vend_failed"),
    VendState.UNKNOWN: (504, "no_confirmation"),
    VendState.PENDING: (202, None),
    VendState.SENT: (202, None),
}


def _parse_slot(raw: str) -> int:
    rt = runtime()
    try:
        slot = int(raw)
    except ValueError:
        raise InvalidSlot(
            f"slot must be a whole number from 1 to {rt.config.slots}, got {raw!r}"
        ) from None
    rt.service.check_slot(slot)
    return slot


def _idempotency_key() -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    key = key.strip().strip('"')
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise BadRequest(
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters,"
            " e.g. a UUID"
        )
    return key


def vend_body(txn: Transaction) -> dict[str, Any]:
    """The JSON answer for a vend, in the shape clients of the first version expect."""
    body = txn.to_dict()
    body["success"] = txn.state == VendState.SUCCESS
    status, error = _VEND_STATUS[txn.state]
    if error:
        body["error"] = error
        body["detail"] = txn.message
    if not txn.is_final:
        body["poll"] = f"/vend/{txn.id}"
    return body


def vend_response(txn: Transaction, replayed: bool = False) -> Response:
    status, _ = _VEND_STATUS[txn.state]
    response = jsonify(vend_body(txn))
    response.status_code = status
    if not txn.is_final:
        response.headers["Location"] = url_for("api.get_vend", transaction_id=txn.id)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.post("/vend/<slot>")
def vend(slot: str):
    """Vend one item from a slot; waits for the board's outcome up to ?wait= seconds."""
    rt = runtime()
    slot_number = _parse_slot(slot)
    wait = float_arg("wait", rt.config.vend_wait_default, 0.0, rt.config.vend_wait_max)
    key = _idempotency_key()
    txn, created = rt.service.request_vend(slot_number, key)
    if created:
        txn = rt.service.wait(txn.id, wait)
    return vend_response(txn, replayed=not created)


@bp.get("/vend/<transaction_id>")
def get_vend(transaction_id: str):
    """One vend's current state."""
    txn = runtime().store.get(transaction_id)
    return jsonify(vend_body(txn))


@bp.get("/transactions")
def transactions():
    """Vends, newest first, filtered and paginated; ?format=csv exports them."""
    rt = runtime()
    state = request.args.get("state") or None
    if state is not None and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}, got {state!r}")
    slot = int_arg("slot", None, 1, rt.config.slots)
    device_id = request.args.get("device_id") or None
    filters = {"state": state, "slot": slot, "device_id": device_id}
    # Checked for the export too, which ignores them, so a wrong one never passes unnoticed.
    limit = int_arg("limit", 50, 1, 500)
    offset = int_arg("offset", 0, 0, 10**9)
    fmt = request.args.get("format") or "json"
    if fmt == "csv":
        return _csv_export(rt.store.iter_transactions(**filters))
    if fmt != "json":
        raise BadRequest(f"format must be json or csv, got {fmt!r}")
    page, total = rt.store.transactions(limit=limit, offset=offset, **filters)
    return jsonify({
        "transactions": [vend_body(txn) for txn in page],
        "total": total,
        "limit": limit,
        "offset": offset,
    })


CSV_COLUMNS = ("id", "slot", "state", "simulated", "reason", "device_id", "communication",
               "message", "created_at", "sent_at", "finished_at", "checked_at", "check_note",
               "product_id", "product_name", "price_minor")


def _csv_export(rows) -> Response:
    """The vends as CSV; the price each was asked at in minor units and, as the sales report
    writes it, as decimal text in a column named after the currency (price_EUR)."""
    currency = runtime().currency

    def iso(value: float | None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value)) if value else ""

    def records():
        for txn in rows:
            record = [getattr(txn, column) for column in CSV_COLUMNS[:-1]] + [txn.price]
            for index, column in enumerate(CSV_COLUMNS):
                if column.endswith("_at"):
                    record[index] = iso(record[index])
            yield record + ["" if txn.price is None else currency.amount(txn.price)]

    return Response(
        exports.to_csv((*CSV_COLUMNS, f"price_{currency.code}"), records()), mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=transactions.csv"},
    )


@bp.post("/transactions/<transaction_id>/check")
@audited(audit.CHECK_TRANSACTION)
def check_transaction(transaction_id: str):
    """An operator went and looked at the machine for this vend."""
    body = json_body(required=False)
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 500:
        raise BadRequest("note must be text of at most 500 characters")
    txn = runtime().store.mark_checked(transaction_id, note)
    return jsonify(vend_body(txn))


@bp.get("/slots")
def slots():
    """Every slot with its name and stock."""
    rt = runtime()
    return jsonify({"slots": [_slot_body(s) for s in rt.store.slots(rt.config.slots)],
                    "currency": rt.currency.to_dict()})


_PLANOGRAM_FIELDS = ("product_id", "price", "capacity", "par")


def _slot_changes(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(changes to the slot row, changes to its planogram entry), or a 400."""
    changes: dict[str, Any] = {}
    planogram: dict[str, Any] = {}
    unknown = set(body) - {"name", "stock", *_PLANOGRAM_FIELDS}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}; use name, stock,"
                         " product_id, price, capacity and par")
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > SLOT_NAME_MAX:
            raise BadRequest(f"name must be 1 to {SLOT_NAME_MAX} characters of text")
        changes["name"] = name.strip()
    if "stock" in body:
        changes["stock"] = _count_or_null(body, "stock", "for 'not counted'")
    if "product_id" in body:
        product_id = body["product_id"]
        if product_id is not None:
            product_id = whole_number(product_id)
            if product_id is None or not 1 <= product_id <= 2**62:
                raise BadRequest("product_id must be a product's id (GET /products), or null")
        planogram["product_id"] = product_id
    if "price" in body:
        planogram["price"] = price_value(body["price"], nullable=True)
    for name in ("capacity", "par"):
        if name in body:
            planogram[name] = _count_or_null(body, name, "for none")
    if not changes and not planogram:
        raise BadRequest('nothing to change: send {"name": ...}, {"stock": ...} or the'
                         ' planogram: product_id, price, capacity, par')
    return changes, planogram


def _count_or_null(body: dict[str, Any], name: str, null_means: str) -> int | None:
    raw = body[name]
    if raw is None:
        return None
    value = whole_number(raw)
    if value is None or not 0 <= value <= 10000:
        raise BadRequest(f"{name} must be a whole number from 0 to 10000, or null {null_means}")
    return value


@bp.patch("/slots/<int:number>")
@audited(audit.CHANGE_SLOT)
def update_slot(number: int):
    """Rename a slot, set its stock, or its product, price, capacity and par."""
    rt = runtime()
    rt.service.check_slot(number)
    changes, planogram = _slot_changes(json_body())
    previous = rt.store.slot(number)
    if planogram:
        rt.sales.set_planogram(number, planogram)
    slot = rt.store.update_slot(number, **changes) if changes else rt.store.slot(number)
    rt.events.publish(SLOT_CHANGED, slot=slot.to_dict(), previous=previous.to_dict())
    return jsonify(_slot_body(slot))


def _slot_body(slot: Slot) -> dict[str, Any]:
    """A slot as the API shows it: with its price as text in the machine's currency."""
    return {**slot.to_dict(), "price_text": runtime().currency.format(slot.price)}


@bp.post("/slots/<int:number>/restock")
@audited(audit.RESTOCK)
def restock_slot(number: int):
    """Add items to a slot's stock: {"quantity": n}."""
    rt = runtime()
    rt.service.check_slot(number)
    quantity = whole_number(json_body().get("quantity"))
    if quantity is None or not 1 <= quantity <= 10000:
        raise BadRequest("quantity must be a whole number from 1 to 10000")
    previous, slot = rt.store.restock(number, quantity)
    rt.events.publish(SLOT_CHANGED, slot=slot.to_dict(), previous=previous.to_dict())
    return jsonify(_slot_body(slot))


@bp.get("/status")
def status():
    """System status: devices, the active one, slots and vend counts (ETag: 304 if unchanged);
    health and counts only for an unauthenticated network client."""
    answer = status_answer(runtime(), current_app.extensions["vending_status"],
                           status_audience(), request.headers.get("If-None-Match"))
    return conditional_json(answer)


def status_audience() -> str:
    """Whose view of /status this request gets: the whole of it for this machine and
    signed-in operators, health and counts only for anyone else (`status_for_client`)."""
    return OPERATOR if identify_within_limits() is not None else PUBLIC


@bp.get("/health")
def health():
    """For service managers: 200 when the store answers and commits."""
    rt = runtime()
    problem = rt.service.store_problem()
    if problem is not None:
        return jsonify({"status": "degraded", "store": False, "error": "store_unavailable",
                        "detail": problem}), 503
    if rt.store.ping():
        return jsonify({"status": "ok", "store": True})
    return jsonify({"status": "degraded", "store": False, "error": "store_unavailable",
                    "detail": "the database does not answer; check the disk and the data directory"}), 503
