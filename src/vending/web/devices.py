"""Device endpoints: list, select, communication mode and log, simulated faults."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from .. import audit
from ..commlog import DIRECTIONS
from ..devices.simulator import FAULTS, SimulatedDevice
from ..errors import BadRequest
from ..protocol import wifi as proto
from .common import int_arg, json_body, runtime, whole_number
from .conditional import (
    LOG_LIMIT_DEFAULT,
    LOG_LIMIT_MAX,
    LOG_SINCE_MAX,
    RecentBodies,
    conditional_json,
    log_answer,
)
from .operations import audited

bp = Blueprint("devices", __name__, url_prefix="/esp32")


def _device_id(body: dict) -> str:
    device_id = body.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise BadRequest('device_id is required: {"device_id": "ESP32_6CC8404FE03C"}')
    return device_id


@bp.get("/devices/list")
def list_devices():
    """Every known board and the active one."""
    rt = runtime()
    mode = rt.registry.communication_mode()
    queues = rt.service.queue_lengths()
    devices = []
    for device in rt.registry.devices():
        info = device.info()
        info["queued"] = queues.get(device.device_id, 0)
        info["selected"] = device.device_id == rt.registry.active_device_id
        devices.append(info)
    return jsonify({
        "devices": devices,
        "active_device": mode["active_device"],
        "selection": mode["selection"],
        "count": len(devices),
    })


@bp.post("/devices/select")
@audited(audit.SELECT_DEVICE)
def select_device():
    """Make one board the active one."""
    rt = runtime()
    device = rt.registry.select(_device_id(json_body()))
    return jsonify({"status": "ok", "active_device": device.device_id, "selection": "manual",
                    "device": device.info()})


@bp.post("/devices/auto-select")
@audited(audit.AUTO_SELECT)
def auto_select():
    """Let the controller choose the board by priority: serial, WiFi, simulation."""
    rt = runtime()
    rt.registry.auto_select()
    mode = rt.registry.communication_mode()
    return jsonify({"status": "ok", **mode})


@bp.post("/devices/<device_id>/simulate")
@audited(audit.SIMULATE_FAULT)
def simulate(device_id: str):
    """Tell a simulated board to fail its next vends, or to go offline and back."""
    rt = runtime()
    device = rt.registry.require(device_id)
    if not isinstance(device, SimulatedDevice):
        raise BadRequest(f"{device_id} is a real board; faults can only be simulated")
    body = json_body()
    unknown = set(body) - {"fault", "count", "online", "motor_time"}
    if unknown or not {"fault", "online", "motor_time"} & set(body):
        raise BadRequest('send {"fault": "jam", "count": 1}, {"online": false} or {"motor_time": 0.5}')
    fault, count = body.get("fault"), whole_number(body.get("count", 1))
    if fault is not None and (not isinstance(fault, str) or fault not in FAULTS):
        raise BadRequest(f"fault must be one of {', '.join(FAULTS)} or null")
    if count is None or not 1 <= count <= 100:
        raise BadRequest("count must be a whole number from 1 to 100")
    if "online" in body and not isinstance(body["online"], bool):
        raise BadRequest("online must be true or false")
    motor_time = body.get("motor_time", 0)
    if isinstance(motor_time, bool) or not isinstance(motor_time, (int, float)) \
            or not 0 <= motor_time <= 30:
        raise BadRequest("motor_time must be a number of seconds from 0 to 30")

    if "fault" in body:
        if fault is None:
            device.clear_faults()
        else:
            device.inject_fault(fault, count)
    if "online" in body:
        device.set_online(body["online"])
    if "motor_time" in body:
        device.motor_time = float(motor_time)
    return jsonify({"status": "ok", "device": device.info()})


@bp.post("/devices/<device_id>/approve")
@audited(audit.APPROVE_DEVICE)
def approve_device(device_id: str):
    """Let a WiFi board vend: {"fingerprint": "<the key fingerprint you compared>"} for our
    firmware, {} for the earlier one, {"secret": "<64 hex>"} for a key provisioned over USB."""
    try:
        approval = proto.parse_approve(json_body(required=False))
    except proto.BodyError as exc:
        raise BadRequest(str(exc)) from None
    device = runtime().wifi.approve(device_id, approval)
    return jsonify({"status": "ok", "device": device.info()})


@bp.post("/devices/<device_id>/revoke")
@audited(audit.REVOKE_DEVICE)
def revoke_device(device_id: str):
    """Withdraw a WiFi board's approval and key; queued vends fail over."""
    device = runtime().wifi.revoke(device_id)
    return jsonify({"status": "ok", "device": device.info()})


@bp.post("/devices/<device_id>/reject")
@audited(audit.REJECT_DEVICE)
def reject_device(device_id: str):
    """Forget a WiFi board that is waiting for approval."""
    runtime().wifi.reject(device_id)
    return jsonify({"status": "ok", "device_id": device_id})


@bp.get("/communication/mode")
def communication_mode():
    """What the next vend would use."""
    return jsonify(runtime().registry.communication_mode())


@bp.get("/communication/log")
def communication_log():
    """Log entries newer than ?since=<id>, oldest first (ETag: 304 if nothing new)."""
    rt = runtime()
    since = int_arg("since", 0, 0, LOG_SINCE_MAX)
    limit = int_arg("limit", LOG_LIMIT_DEFAULT, 1, LOG_LIMIT_MAX)
    direction = request.args.get("direction") or None
    if direction is not None and direction not in DIRECTIONS:
        raise BadRequest(f"direction must be one of {', '.join(DIRECTIONS)}")
    device_id = request.args.get("device_id") or None
    answer = log_answer(rt, current_app.extensions["vending_log_bodies"], since, limit,
                        device_id, direction, request.headers.get("If-None-Match"))
    return conditional_json(answer)


@bp.record_once
def _body_cache(state) -> None:
    state.app.extensions["vending_log_bodies"] = RecentBodies()


@bp.post("/communication/log/clear")
@audited(audit.CLEAR_LOG)
def clear_log():
    """Empty the communication log."""
    rt = runtime()
    rt.log.clear()
    return jsonify({"status": "ok", "last_id": rt.log.last_id})
