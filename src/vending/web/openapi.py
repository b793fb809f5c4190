"""GET /openapi.json: an OpenAPI 3 description of every route (a test keeps it true)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from .. import __version__
from .common import runtime

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    if "enum" in schema and "" not in schema["enum"]:
        # An empty filter (`?state=`) means no filter, as `request.args.get(...) or None` reads it.
        schema = {**schema, "enum": [*schema["enum"], ""]}
    elif schema.get("type") in ("integer", "number"):
        # common.int_arg/float_arg take an empty value (`?since=`) as "not given".
        schema = {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
        description += "; empty means the default"
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_NUMBER_OR_NULL = {"type": ["number", "null"]}
_PRICE = {"type": "integer", "minimum": 0, "maximum": 10**7,
          "description": "minor units of the configured currency (150 = 1.50 EUR)"}
_PRICE_OR_NULL = {**_PRICE, "type": ["integer", "null"],
                  "description": "minor units; null: the product's default price"}
_STRING_OR_NULL = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    },
    "Vend": {
        "type": "object",
        "required": ["status", "slot", "transaction_id", "device_id", "communication", "message",
                     "success"],
        "properties": {
            "status": {"type": "string",
                       "enum": ["pending", "sent", "success", "failed", "unknown"]},
            "state": {"type": "string"},
            "success": {"type": "boolean"},
            "slot": {"type": "integer"},
            "transaction_id": {"type": "string"},
            "device_id": _STRING_OR_NULL,
            "communication": _STRING_OR_NULL,
            "message": {"type": "string"},
            "reason": _STRING_OR_NULL,
            "idempotency_key": _STRING_OR_NULL,
            "created_at": {"type": "number"},
            "sent_at": _NUMBER_OR_NULL,
            "finished_at": _NUMBER_OR_NULL,
            "checked_at": _NUMBER_OR_NULL,
            "check_note": _STRING_OR_NULL,
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "poll": {"type": "string"},
            "product_id": {"type": ["integer", "null"]},
            "product_name": _STRING_OR_NULL,
            "price": {"type": ["integer", "null"],
                      "description": "minor units, fixed when the vend was asked for"},
        },
    },
    "Slot": {
        "type": "object",
        "required": ["number", "name", "stock", "sold_out"],
        "properties": {
            "number": {"type": "integer"},
            "name": {"type": "string"},
            "stock": {"type": ["integer", "null"]},
            "sold_out": {"type": "boolean"},
            "updated_at": {"type": "number"},
            "product_id": {"type": ["integer", "null"]},
            "product_name": _STRING_OR_NULL,
            "price": {"type": ["integer", "null"],
                      "description": "in force: the slot's own, else the product's; minor units"},
            "price_text": {"type": "string"},
            "capacity": {"type": ["integer", "null"]},
            "par": {"type": ["integer", "null"]},
        },
    },
    "Product": {
        "type": "object",
        "required": ["id", "name", "sku", "default_price"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "sku": _STRING_OR_NULL,
            "default_price": {"type": "integer", "description": "minor units"},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
        },
    },
    "Currency": {
        "type": "object",
        "required": ["code", "decimals", "numeric"],
        "properties": {"code": {"type": "string"}, "decimals": {"type": "integer"},
                       "numeric": {"type": "string"}},
    },
    "Totals": {
        "type": "object",
        "required": ["count", "value", "failed", "unknown"],
        "properties": {"count": {"type": "integer"}, "value": {"type": "integer"},
                       "failed": {"type": "integer"}, "unknown": {"type": "integer"}},
    },
    "Collection": {
        "type": "object",
        "required": ["id", "time", "who", "note", "sales_count", "sales_value"],
        "properties": {"id": {"type": "integer"}, "time": {"type": "number"},
                       "who": {"type": "string"}, "note": {"type": "string"},
                       "sales_count": {"type": "integer"}, "sales_value": {"type": "integer"}},
    },
    "Device": {
        "type": "object",
        "required": ["device_id", "type", "status"],
        "properties": {
            "device_id": {"type": "string"},
            "type": {"type": "string", "enum": ["serial", "wifi", "simulation"]},
            "status": {"type": "string"},
            "status_detail": {"type": "string"},
            "last_seen": _NUMBER_OR_NULL,
            "firmware_version": _STRING_OR_NULL,
            "protocol": {"type": ["integer", "null"]},
            "slots": {"type": ["integer", "null"]},
            "approved": {"type": "boolean"},
            "authenticated": {"type": "boolean"},
            "ip_address": _STRING_OR_NULL,
            "fingerprint": _STRING_OR_NULL,
            "conflict": {"type": ["object", "null"], "properties": {
                "protocol": {"type": "integer"}, "fingerprint": _STRING_OR_NULL,
                "source": _STRING_OR_NULL, "detail": {"type": "string"}}},
        },
    },
    "Mode": {
        "type": "object",
        "required": ["mode", "selection", "active_device"],
        "properties": {
            "mode": {"type": "string", "enum": ["serial", "wifi", "simulation", "none"]},
            "selection": {"type": "string", "enum": ["auto", "manual"]},
            "active_device": _STRING_OR_NULL,
            "selected_device": _STRING_OR_NULL,
        },
    },
    "LogEntry": {
        "type": "object",
        "required": ["id", "time", "device_id", "transport", "direction", "message"],
        "properties": {
            "id": {"type": "integer"},
            "time": {"type": "number"},
            "device_id": {"type": "string"},
            "transport": {"type": "string"},
            "direction": {"type": "string", "enum": ["tx", "rx", "info", "error"]},
            "message": {"type": "string"},
        },
    },
    "Alert": {
        "type": "object",
        "required": ["id", "kind", "severity", "subject", "message", "time", "active"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string", "enum": [
                "vend_unknown", "vend_failed", "device_offline", "device_back", "low_stock",
                "sold_out", "device_pending_approval", "sign_in_failures", "device_conflict"]},
            "severity": {"type": "string", "enum": ["critical", "warning", "info"]},
            "subject": {"type": "string"},
            "message": {"type": "string"},
            "data": {"type": "object"},
            "time": {"type": "number"},
            "created_at": {"type": "number"},
            "active": {"type": "boolean"},
            "acknowledged_at": _NUMBER_OR_NULL,
            "acknowledged_by": _STRING_OR_NULL,
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "time", "action", "who", "source", "outcome", "detail"],
        "properties": {
            "id": {"type": "integer"},
            "time": {"type": "number"},
            "action": {"type": "string"},
            "who": {"type": "string"},
            "source": {"type": "string"},
            "outcome": {"type": "string", "enum": ["ok", "refused", "failed"]},
            "detail": {"type": "string"},
        },
    },
}

# Reached without an operator (web/auth.py: PUBLIC_ENDPOINTS and the boards blueprint, which
# authenticates boards itself); every other operation may answer 401, 429 and, when it
# changes something, 403. tests/test_security.py keeps this list true.
OPEN_PATHS = frozenset({
    "/status", "/health", "/login", "/logout", "/esp32/register", "/esp32/commands/{device_id}",
    "/esp32/confirm", "/esp32/data", "/esp32/v2/pair", "/esp32/v2/register",
    "/esp32/v2/commands", "/esp32/v2/confirm",
})
_UNSAFE = ("post", "put", "patch", "delete")


def _add_guard_responses(paths: dict[str, Any]) -> None:
    """The operator guard's answers, on every operation it guards; `security: []` elsewhere."""
    for path, operations in paths.items():
        for method, operation in operations.items():
            # A copy: several operations share one responses dict (_PAGE).
            responses = operation["responses"] = dict(operation["responses"])
            if path in OPEN_PATHS:
                operation["security"] = []
                continue
            responses.setdefault("401", _error(
                "no operator: sign in at /login or send Authorization: Bearer <token>"))
            responses.setdefault("429", _error(
                "too many wrong tokens from this address; wait for Retry-After seconds"))
            if method in _UNSAFE:
                responses.setdefault("403", _error(
                    "a cross-site request, or a browser's without X-Vending-Request: 1"))
            if "text/html" in responses.get("200", {}).get("content", {}):
                responses.setdefault("302", {"description": "a browser not signed in: to /login"})


_TXN_PARAM = _path("transaction_id", {"type": "string"}, "transaction id")
_VEND_ID_PARAM = _path("id", {"type": "string"}, "GET: a transaction id")
_OK = {"type": "object", "properties": {"status": {"type": "string"}}}
_HTML = {"text/html": {}}
_PAGE = {"200": {"description": "the page", "content": _HTML}}
# The ids boards may take (protocol/wifi.py DEVICE_ID_RE); anything else is refused with 400.
_DEVICE_ID = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
_BROWSER_REFUSED = _error("a web browser's request (Origin or Sec-Fetch-Site header)")
_DEVICE_PARAM = _path("device_id", _DEVICE_ID, "a WiFi board's id")
# Routes with an <int:...> converter answer 404 to a path segment that is not a whole number.
_NOT_A_NUMBER = _error("no such slot or id (also when the path segment is not a whole number)")


def build_spec(slots: int, max_wait: float) -> dict[str, Any]:
    """The whole document, for a machine with `slots` slots."""
    slot_schema = {"type": "integer", "minimum": 1, "maximum": slots}
    # POST /vend/<slot> and GET /vend/<transaction_id> share one templated path in OpenAPI.
    slot_param = _path("id", slot_schema, "POST: the slot number")
    number_param = _path("number", slot_schema, "slot number")
    vend_responses = {
        "200": _json(_ref("Vend"), "dispensed: the board confirmed"),
        "202": _json(_ref("Vend"), "still running; poll the Location"),
        "400": _error("bad slot, wait or Idempotency-Key"),
        "409": _error("sold out, or the same Idempotency-Key is still running"),
        "422": _error("Idempotency-Key reused for another slot"),
        "429": _error("the board's queue is full"),
        "502": _json(_ref("Vend"), "the board reported a failure"),
        "503": _error("no device can vend, or the server is shutting down"),
        "504": _json(_ref("Vend"), "no confirmation in time: unknown, check the machine"),
    }
    paths: dict[str, Any] = {
        "/": {"get": {"summary": "Web interface: slot buttons", "responses": _PAGE}},
        "/devices": {"get": {"summary": "Web interface: boards", "responses": _PAGE}},
        "/log": {"get": {"summary": "Web interface: communication log", "responses": _PAGE}},
        "/history": {"get": {"summary": "Web interface: transactions", "responses": _PAGE}},
        "/stock": {"get": {"summary": "Web interface: slot names and stock", "responses": _PAGE}},
        "/reports": {"get": {
            "summary": "Web interface: sales, charts, top sellers, pick list and refill",
            "parameters": [_query("period", {"type": "string", "enum": ["today", "7d", "30d"]},
                                  "today (default), 7 or 30 days")],
            "responses": {**_PAGE, "400": _error("bad period")}}},
        "/login": {
            "get": {"summary": "Sign-in page; ?token= signs in at once",
                    "parameters": [_query("token", {"type": "string"}, "the operator token"),
                                   _query("next", {"type": "string"}, "page to go to after")],
                    "responses": {**_PAGE, "302": {"description": "signed in: session cookie set"},
                                  "401": {"description": "wrong token", "content": _HTML},
                                  "429": {"description": "too many wrong tokens", "content": _HTML}}},
            "post": {"summary": "Sign in with a form field `token` (without one: the page)",
                     "requestBody": {"required": False, "content": {
                         "application/x-www-form-urlencoded": {"schema": {
                             "type": "object",
                             "properties": {"token": {"type": "string"},
                                            "next": {"type": "string"}}}}}},
                     "responses": {**_PAGE,
                                   "302": {"description": "signed in: session cookie set"},
                                   "401": {"description": "wrong token", "content": _HTML},
                                   "429": {"description": "too many wrong tokens", "content": _HTML}}},
        },
        "/logout": {"post": {"summary": "Sign this browser out", "responses": {
            "302": {"description": "signed out"}}}},
        "/vend/{id}": {"post": {
            "summary": "Vend one item from a slot",
            "parameters": [
                slot_param,
                _query("wait", {"type": "number", "minimum": 0, "maximum": max_wait},
                       "seconds to wait for the outcome"),
                {"name": "Idempotency-Key", "in": "header", "required": False,
                 # Printable ASCII with something besides spaces and quotes (which are trimmed).
                 "schema": {"type": "string", "maxLength": 255,
                            "pattern": "^[ -~]*[!#-~][ -~]*$"},
                 "description": "a repeat with the same key never vends twice"},
            ],
            "responses": vend_responses,
        }, "get": {
            "summary": "One vend's state", "parameters": [_VEND_ID_PARAM],
            "responses": {"200": _json(_ref("Vend"), "the vend"),
                          "404": _error("no such transaction")},
        }},
        "/transactions": {"get": {
            "summary": "Vends, newest first",
            "parameters": [
                _query("state", {"type": "string",
                                 "enum": ["pending", "sent", "success", "failed", "unknown"]},
                       "filter by state"),
                _query("slot", slot_schema, "filter by slot"),
                _query("device_id", {"type": "string"}, "filter by device"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size"),
                _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9},
                       "skip this many"),
                _query("format", {"type": "string", "enum": ["json", "csv"]}, "csv to export"),
            ],
            "responses": {
                "200": {"description": "a page of vends", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "transactions": {"type": "array", "items": _ref("Vend")},
                        "total": {"type": "integer"}}}},
                    "text/csv": {"schema": {"type": "string"}}}},
                "400": _error("bad filter"),
            },
        }},
        "/transactions/{transaction_id}/check": {"post": {
            "summary": "Mark a vend as checked by an operator",
            "parameters": [_TXN_PARAM],
            "requestBody": _body({"type": "object", "properties": {"note": {"type": "string"}}},
                                 required=False),
            "responses": {"200": _json(_ref("Vend"), "marked"), "400": _error("bad note"),
                          "404": _error("no such transaction")},
        }},
        "/slots": {"get": {"summary": "Every slot", "responses": {"200": _json(
            {"type": "object", "properties": {"slots": {"type": "array", "items": _ref("Slot")}}},
            "the slots")}}},
        "/slots/{number}": {"patch": {
            "summary": "Rename a slot or set its stock", "parameters": [number_param],
            "requestBody": _body({"type": "object", "minProperties": 1,
                                  "additionalProperties": False, "properties": {
                # Something besides whitespace, as Python's str.strip() counts it (which also
                # takes the control characters 0x1c-0x1f and 0x85 that JSON Schema's \s leaves).
                "name": {"type": "string", "minLength": 1, "maxLength": 40,
                         "pattern": "[^\\s\\x1c-\\x1f\\x85]"},
                "stock": {"type": ["integer", "null"], "minimum": 0, "maximum": 10000},
                "product_id": {"type": ["integer", "null"], "minimum": 1, "maximum": 2**62},
                "price": _PRICE_OR_NULL,
                "capacity": {"type": ["integer", "null"], "minimum": 0, "maximum": 10000},
                "par": {"type": ["integer", "null"], "minimum": 0, "maximum": 10000}}}),
            "responses": {"200": _json(_ref("Slot"), "the slot"),
                          "400": _error("bad change"),
                          "404": _error("no such slot or product"),
                          "409": _error("par above capacity")},
        }},
        "/slots/{number}/restock": {"post": {
            "summary": "Add items to a slot", "parameters": [number_param],
            "requestBody": _body({"type": "object", "required": ["quantity"], "properties": {
                "quantity": {"type": "integer", "minimum": 1, "maximum": 10000}}}),
            "responses": {"200": _json(_ref("Slot"), "the slot"), "400": _error("bad quantity"),
                          "404": _error("no such slot")},
        }},
        "/status": {"get": {"summary": "System status and ESP32 info", "responses": {
            "200": _json({"type": "object", "required": ["online", "devices", "slots"]},
                         "status"),
            "304": {"description": "unchanged since the ETag sent in If-None-Match"}}}},
        "/health": {"get": {"summary": "Liveness for service managers", "responses": {
            "200": _json(_OK, "healthy"), "503": _error("the store does not answer")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics: vends, devices, HTTP", "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {}}},
            "404": _error("metrics are off (start with --metrics)")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {
            "200": _json({"type": "object"}, "OpenAPI 3 document")}}},
        "/esp32/devices/list": {"get": {"summary": "List all ESP32 devices", "responses": {
            "200": _json({"type": "object", "required": ["devices", "active_device"],
                          "properties": {"devices": {"type": "array", "items": _ref("Device")},
                                         "active_device": _STRING_OR_NULL}}, "devices")}}},
        "/esp32/devices/select": {"post": {
            "summary": "Select the active device",
            "requestBody": _body({"type": "object", "required": ["device_id"],
                                  "properties": {"device_id": {"type": "string",
                                                               "minLength": 1}}}),
            "responses": {"200": _json(_OK, "selected"), "400": _error("no device_id"),
                          "404": _error("unknown device"),
                          "409": _error("device offline or not ready")},
        }},
        "/esp32/devices/auto-select": {"post": {
            "summary": "Choose the device automatically (serial, WiFi, simulation)",
            "responses": {"200": _json(_ref("Mode"), "automatic")}}},
        "/esp32/devices/{device_id}/simulate": {"post": {
            "summary": "Inject a fault into, or unplug, a simulated board",
            "parameters": [_path("device_id", {"type": "string"}, "a simulated device")],
            "requestBody": _body({"type": "object", "additionalProperties": False,
                                  "anyOf": [{"required": ["fault"]}, {"required": ["online"]},
                                            {"required": ["motor_time"]}],
                                  "properties": {
                "fault": {"type": ["string", "null"],
                          "enum": ["jam", "empty", "motor_fault", "no_reply", None]},
                "count": {"type": "integer", "minimum": 1, "maximum": 100},
                "online": {"type": "boolean"},
                "motor_time": {"type": "number", "minimum": 0, "maximum": 30}}}),
            "responses": {"200": _json(_OK, "done"), "400": _error("bad request"),
                          "404": _error("unknown device")},
        }},
        "/esp32/devices/{device_id}/approve": {"post": {
            "summary": "Approve a WiFi board by the key fingerprint the operator compared"
                       " (completes pairing), or with a USB-provisioned secret",
            "parameters": [_DEVICE_PARAM],
            "requestBody": _body({"type": "object", "properties": {
                "fingerprint": {"type": "string", "pattern": "^[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}$"},
                "secret": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}}, required=False),
            "responses": {"200": _json(_OK, "approved"),
                          "400": _error("bad secret or fingerprint, or fingerprint missing"),
                          "404": _error("unknown board"),
                          "409": _error("not paired yet, another fingerprint, or a conflict")},
        }},
        "/esp32/devices/{device_id}/revoke": {"post": {
            "summary": "Withdraw a WiFi board's approval and key",
            "parameters": [_DEVICE_PARAM],
            "responses": {"200": _json(_OK, "revoked"), "404": _error("unknown board")},
        }},
        "/esp32/devices/{device_id}/reject": {"post": {
            "summary": "Forget a WiFi board waiting for approval",
            "parameters": [_DEVICE_PARAM],
            "responses": {"200": _json(_OK, "forgotten"), "404": _error("unknown board"),
                          "409": _error("board is approved; revoke first")},
        }},
        "/esp32/register": {"post": {
            "summary": "Board (protocol 1) registers",
            "requestBody": _body({"type": "object", "required": ["device_id"], "properties": {
                "device_id": _DEVICE_ID,
                "ip_address": {"description": "ignored unless a string"},
                # Facts a board reports; a value of the wrong type is ignored, not refused.
                "status": {"description": "ignored unless a string"},
                "slots_available": {"description": "ignored unless a whole number"}}}),
            "responses": {"200": _json(_OK, "registered"), "400": _error("bad body"),
                          "403": _BROWSER_REFUSED,
                          "409": _error("the id belongs to a protocol 2 board: a conflict"),
                          "429": _error("this address has its share of boards waiting"),
                          "503": _error("the approval waiting list is full")},
        }},
        "/esp32/commands/{device_id}": {"get": {
            "summary": "Board (protocol 1) polls for its next command (null or VEND)",
            "parameters": [_DEVICE_PARAM],
            "responses": {"200": _json({"type": ["object", "null"]}, "command or null"),
                          "400": _error("bad device id"), "403": _BROWSER_REFUSED,
                          "404": _error("no such board: register first"),
                          "409": _error("the id belongs to a protocol 2 board: a conflict")},
        }},
        "/esp32/confirm": {"post": {
            "summary": "Board (protocol 1) confirms its vend",
            "requestBody": _body({"type": "object", "required": ["device_id"], "properties": {
                "device_id": {"type": "string", "minLength": 1, "maxLength": 64},
                # As the earlier firmware sends them; a value of the wrong type is ignored.
                "slot": {"description": "ignored unless a whole number from 0 to 99"},
                "success": {"description": "true for success; anything else is a failure"},
                "message": {"description": "ignored unless a string of up to 200"}}}),
            "responses": {"200": _json(_OK, "recorded"), "400": _error("bad body"),
                          "401": _error("a paired board confirms through /esp32/v2/confirm"),
                          "403": _BROWSER_REFUSED, "404": _error("unknown board")},
        }},
        "/esp32/data": {"post": {
            "summary": "Board reports data (logged)",
            "requestBody": _body({"type": "object"}),
            "responses": {"200": _json(_OK, "logged"), "400": _error("bad body"),
                          "401": _error("a paired board reports through /esp32/v2/ only"),
                          "403": _BROWSER_REFUSED},
        }},
        "/esp32/v2/pair": {"post": {
            "summary": "Board (protocol 2) asks to pair with its X25519 public key",
            "requestBody": _body({"type": "object", "required": ["device_id", "public_key"],
                                  "properties": {
                "device_id": _DEVICE_ID,
                "public_key": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                "firmware": {"description": "ignored unless a string of up to 64"},
                "slots": {"description": "ignored unless a whole number from 1 to 99"}}}),
            "responses": {"200": _json(_OK, "paired"), "202": _json(_OK, "waiting for approval"),
                          "400": _error("bad body"), "403": _BROWSER_REFUSED,
                          "409": _error("paired with another key, or a protocol 1 board's id"),
                          "429": _error("this address has its share of boards waiting"),
                          "503": _error("the approval waiting list is full")},
        }},
        "/esp32/v2/register": {"post": {
            "summary": "Board (protocol 2) registers; signed",
            "requestBody": _body({"type": "object"}),
            "responses": {"200": _json(_OK, "registered"), "401": _error("bad signature")},
        }},
        "/esp32/v2/commands": {"get": {
            "summary": "Board (protocol 2) long-polls for its next command; signed",
            "parameters": [_query("wait", {"type": "number", "minimum": 0, "maximum": 60},
                                  "seconds to hold the poll")],
            "responses": {"200": _json({"type": "object"}, "command or null"),
                          "401": _error("bad signature")},
        }},
        "/esp32/v2/confirm": {"post": {
            "summary": "Board (protocol 2) confirms a command by request id; signed, idempotent",
            "requestBody": _body({"type": "object", "required": ["id", "result"]}),
            "responses": {"200": _json(_OK, "recorded"), "401": _error("bad signature"),
                          "403": _error("another board's vend"), "404": _error("unknown id"),
                          "409": _error("conflicting result")},
        }},
        "/esp32/communication/mode": {"get": {"summary": "Current communication mode",
                                              "responses": {"200": _json(_ref("Mode"), "mode")}}},
        "/esp32/communication/log": {"get": {
            "summary": "Communication log entries newer than ?since=",
            "parameters": [
                _query("since", {"type": "integer", "minimum": 0, "maximum": 2**62},
                       "last id the client has"),
                _query("device_id", {"type": "string"}, "only this device"),
                _query("direction", {"type": "string", "enum": ["tx", "rx", "info", "error"]},
                       "only this direction"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most"),
            ],
            "responses": {"200": _json({"type": "object", "required": ["entries", "last_id"],
                                        "properties": {
                                            "entries": {"type": "array",
                                                        "items": _ref("LogEntry")},
                                            "last_id": {"type": "integer"},
                                            "truncated": {"type": "boolean"}}}, "entries"),
                          "304": {"description": "nothing new since the ETag in If-None-Match"},
                          "400": _error("bad filter")},
        }},
        "/esp32/communication/log/clear": {"post": {
            "summary": "Empty the communication log",
            "responses": {"200": _json(_OK, "cleared")}}},
    }
    paths.update(_operations_paths(slot_schema))
    paths.update(_business_paths(slots))
    _add_guard_responses(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "flask-vending-machine", "version": __version__,
                 "description": "Vending machine controller for ESP32 boards."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"operatorToken": {
                "type": "http", "scheme": "bearer",
                "description": "the operator token; not needed from the machine itself while"
                               " VENDING_TRUST_LOCALHOST=1, nor for /status, /health and boards"}},
        },
        "security": [{"operatorToken": []}, {}],
    }


def _operations_paths(slot_schema: dict[str, Any]) -> dict[str, Any]:
    """Alerts, low-stock levels and the audit trail (web/operations.py)."""
    slot = _path("number", slot_schema, "slot number")
    return {
        "/alerts": {"get": {
            "summary": "Alerts newer than ?since=, oldest first",
            "parameters": [
                _query("since", {"type": "integer", "minimum": 0, "maximum": 2**62},
                       "last alert id the client has"),
                _query("active", {"type": "string",
                                  "enum": ["", "0", "1", "false", "true", "no", "yes"]},
                       "1: unacknowledged only"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most"),
            ],
            "responses": {"200": _json({"type": "object",
                                        "required": ["alerts", "last_id", "active_count"],
                                        "properties": {
                                            "alerts": {"type": "array", "items": _ref("Alert")},
                                            "last_id": {"type": "integer"},
                                            "active_count": {"type": "integer"}}}, "alerts"),
                          "400": _error("bad filter")},
        }},
        "/alerts/{alert_id}/ack": {"post": {
            "summary": "Acknowledge an alert (it leaves the banner)",
            "parameters": [_path("alert_id", {"type": "integer"}, "alert id")],
            "responses": {"200": _json(_ref("Alert"), "acknowledged"),
                          "404": _error("no such alert")},
        }},
        "/alerts/low-stock": {"get": {
            "summary": "Each slot's low-stock alert level",
            "responses": {"200": _json({"type": "object", "properties": {
                "default": {"type": "integer"},
                "levels": {"type": "object", "additionalProperties": {"type": "integer"}}}},
                "levels")},
        }},
        "/alerts/low-stock/{number}": {"put": {
            "summary": "Set a slot's low-stock level (null: the default)",
            "parameters": [slot],
            "requestBody": _body({"type": "object", "required": ["level"], "properties": {
                "level": {"type": ["integer", "null"], "minimum": 0, "maximum": 10000}}}),
            "responses": {"200": _json({"type": "object", "properties": {
                "slot": {"type": "integer"}, "level": {"type": "integer"},
                "default": {"type": "boolean"}}}, "the level"),
                "400": _error("bad level or slot"), "404": _NOT_A_NUMBER},
        }},
        "/fleet": {"get": {"summary": "Web interface: every machine of the fleet (--fleet)",
                           "responses": {**_PAGE, "404": _error("the fleet view is off")}}},
        "/api/fleet": {"get": {
            "summary": "Every machine heard of over MQTT, from the fleet's own copy",
            "responses": {"200": _json({"type": "object", "required": ["machines"],
                                        "properties": {"machines": {"type": "array"},
                                                       "connected": {"type": "boolean"}}},
                                       "machines"),
                          "404": _error("the fleet view is off")},
        }},
        "/api/fleet/{machine_id}": {"get": {
            "summary": "One machine: online, board, stock, sales, alerts, last vend, gaps",
            "parameters": [_path("machine_id", {"type": "string"}, "machine id")],
            "responses": {"200": _json({"type": "object", "required": ["machine_id"]},
                                       "the machine"),
                          "404": _error("the fleet view is off, or no such machine")},
        }},
        "/api/fleet/{machine_id}/events": {"get": {
            "summary": "A machine's events after ?after=<seq>, oldest first, and its gaps",
            "parameters": [
                _path("machine_id", {"type": "string"}, "machine id"),
                _query("after", {"type": "integer", "minimum": 0, "maximum": 2**62},
                       "last seq the client has"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most"),
                _query("event", {"type": "string"}, "only this event (vend, alert, ...)"),
            ],
            "responses": {"200": _json({"type": "object", "required": ["events", "gaps"],
                                        "properties": {"events": {"type": "array"},
                                                       "gaps": {"type": "array"}}},
                                       "events"),
                          "400": _error("bad filter"),
                          "404": _error("the fleet view is off")},
        }},
        "/audit": {"get": {
            "summary": "Operator actions (audit trail); ?format=csv exports all",
            "parameters": [
                _query("since", {"type": "integer", "minimum": 0, "maximum": 2**62},
                       "rows after this id, oldest first (default: newest first)"),
                _query("action", {"type": "string"}, "only this action"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most"),
                _query("format", {"type": "string", "enum": ["json", "csv"]}, "csv to export"),
            ],
            "responses": {
                "200": {"description": "audit rows", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "entries": {"type": "array", "items": _ref("AuditEntry")}}}},
                    "text/csv": {"schema": {"type": "string"}}}},
                "400": _error("bad filter"),
            },
        }},
    }


def _business_paths(slots: int) -> dict[str, Any]:
    """Products, refill, collections and reports (web/business.py)."""
    product_param = _path("product_id", {"type": "integer"}, "product id")
    # Something besides spaces, and no control characters (web/business.py: _text).
    text = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$"
    product_body = {"type": "object", "additionalProperties": False, "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 60, "pattern": text},
        "sku": {"type": ["string", "null"], "minLength": 1, "maxLength": 40, "pattern": text},
        "default_price": _PRICE}}
    moment = {"anyOf": [{"type": "string", "format": "date"},
                        {"type": "string", "format": "date-time"},
                        {"type": "string", "pattern": "^[0-9]{1,12}(\\.[0-9]{1,6})?$"},
                        {"type": "string", "maxLength": 0}]}
    period = [
        _query("from", moment,
               "from this moment: 2026-12-01, 2026-12-01T14:00 (local time) or epoch seconds"),
        _query("to", moment, "until this moment, excluded (a date: that whole day)"),
    ]
    csv_or_json = {"type": "string", "enum": ["json", "csv"]}
    return {
        "/products": {
            "get": {"summary": "The product catalogue", "responses": {"200": _json(
                {"type": "object", "required": ["products", "currency"], "properties": {
                    "products": {"type": "array", "items": _ref("Product")},
                    "currency": _ref("Currency")}}, "the products")}},
            "post": {"summary": "Add a product",
                     "requestBody": _body({**product_body, "required": ["name", "default_price"]}),
                     "responses": {"201": _json(_ref("Product"), "created"),
                                   "400": _error("bad product")}},
        },
        "/products/{product_id}": {
            "patch": {"summary": "Change a product's name, SKU or default price",
                      "parameters": [product_param],
                      "requestBody": _body({**product_body, "minProperties": 1}),
                      "responses": {"200": _json(_ref("Product"), "the product"),
                                    "400": _error("bad change"), "404": _NOT_A_NUMBER}},
            "delete": {"summary": "Remove a product no slot holds (past sales keep its name)",
                       "parameters": [product_param],
                       "responses": {"200": _json({"type": "object", "properties": {
                           "deleted": _ref("Product")}}, "removed"),
                           "404": _NOT_A_NUMBER,
                           "409": _error("a slot still holds it")}},
        },
        "/slots/refill": {"post": {
            "summary": "Set slots' stock to their capacity, all in one step",
            "requestBody": _body({"type": "object", "additionalProperties": False, "properties": {
                "slots": {"type": "array", "minItems": 1, "maxItems": slots, "items": {
                    "type": "integer", "minimum": 1, "maximum": slots}}}}, required=False),
            "responses": {"200": _json({"type": "object", "properties": {
                "slots": {"type": "array", "items": _ref("Slot")}}}, "the refilled slots"),
                "400": _error("bad slots: nothing refilled"),
                "409": _error("a slot without capacity: nothing refilled")},
        }},
        "/collections": {
            "get": {"summary": "Collections, and totals since the last one and since install",
                    "responses": {"200": _json({"type": "object", "required": [
                        "since_collection", "since_install", "collections"], "properties": {
                        "currency": _ref("Currency"),
                        "since_collection": _ref("Totals"), "since_install": _ref("Totals"),
                        "last_collection": {"anyOf": [_ref("Collection"), {"type": "null"}]},
                        "collections": {"type": "array", "items": _ref("Collection")}}},
                        "totals")}},
            "post": {"summary": "Close the period: the cash box was emptied or the machine refilled",
                     "requestBody": _body({"type": "object", "additionalProperties": False,
                                           "properties": {"note": {"type": "string",
                                                                   "maxLength": 500}}},
                                          required=False),
                     "responses": {"201": _json(_ref("Collection"), "the closed period"),
                                   "400": _error("bad note")}},
        },
        "/reports/sales": {"get": {
            "summary": "Sales grouped by slot, product, day or hour; ?format=csv exports",
            "parameters": [
                *period,
                _query("group", {"type": "string", "enum": ["slot", "product", "day", "hour"]},
                       "how to group (default slot)"),
                _query("format", csv_or_json, "csv to export"),
            ],
            "responses": {"200": {"description": "sales", "content": {
                "application/json": {"schema": {"type": "object", "required": [
                    "rows", "total", "currency"], "properties": {
                    "rows": {"type": "array", "items": {"type": "object", "properties": {
                        "key": {"type": ["integer", "string", "null"]},
                        "label": {"type": "string"}, "count": {"type": "integer"},
                        "value": {"type": "integer"}}}},
                    "total": _ref("Totals"), "currency": _ref("Currency"),
                    "since_collection": _ref("Totals"), "since_install": _ref("Totals")}}},
                "text/csv": {"schema": {"type": "string"}}}},
                "400": _error("bad group, period or format")},
        }},
        "/reports/restock": {"get": {
            "summary": "What each slot misses to reach capacity, and the pick list by product",
            "parameters": [_query("format", csv_or_json, "csv to export the pick list")],
            "responses": {"200": {"description": "restock", "content": {
                "application/json": {"schema": {"type": "object", "required": [
                    "slots", "pick_list"]}},
                "text/csv": {"schema": {"type": "string"}}}},
                "400": _error("bad format")},
        }},
        "/reports/dex": {"get": {
            "summary": "The EVA-DTS 6.1 DEX/UCS audit file",
            "responses": {"200": {"description": "DEX text, CR LF line ends",
                                  "content": {"text/plain": {}}}},
        }},
    }


@bp.get("/openapi.json")
def openapi():
    """This API, described."""
    config = runtime().config
    return jsonify(build_spec(config.slots, config.vend_wait_max))
