"""Board-facing HTTP endpoints: the earlier firmware's /esp32/... and our signed /esp32/v2/...

Boards do not log in as operators; protocol 2 boards sign every request instead
(docs/protocol-wifi.md), and the answer to a signed request is signed back, including the
`revoked` 401 that tells a revoked board to pair again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, Response, g, jsonify, request

from ..devices.wifi import AuthContext, ParkedPoll, WifiHub, sign_response
from ..errors import BadRequest, Forbidden, Revoked
from ..protocol import wifi as proto
from .common import json_body, runtime

bp = Blueprint("boards", __name__, url_prefix="/esp32")

T = TypeVar("T")


def _hub() -> WifiHub:
    return runtime().wifi


def _parsed(parse: Callable[[dict[str, object]], T]) -> T:
    """The JSON body as the protocol's typed value, or a 400 saying what is wrong."""
    try:
        return parse(json_body())
    except proto.BodyError as exc:
        raise BadRequest(str(exc)) from None


@bp.before_request
def _refuse_browsers() -> None:
    """Boards send neither header; a web page's form, img or fetch always does (Chromium,
    Firefox, Safari), so a page cannot make a visitor's browser register boards here."""
    site = request.headers.get("Sec-Fetch-Site")
    if "Origin" in request.headers or (site is not None and site != "none"):
        raise Forbidden("board endpoints do not answer web browsers; boards send no Origin or"
                        " Sec-Fetch-Site header")


def _authenticated() -> AuthContext:
    """Verify the signature over method, path and query, counter and body."""
    body = request.get_data(cache=True)
    target = request.path
    if request.query_string:
        target += "?" + request.query_string.decode("latin-1")
    try:
        ctx = _hub().authenticate(request.method, target, request.headers, body)
    except Revoked as exc:
        # Signed like any answer to a genuine request: the one 401 a board may believe.
        g.board = exc.context
        raise
    g.board = ctx
    return ctx


@bp.after_request
def _sign_response(response: Response) -> Response:
    ctx = g.get("board")
    if ctx is not None:
        response.headers[proto.HEADER_SIGNATURE] = sign_response(
            ctx, response.status_code, response.get_data())
    return response


# Protocol 1: exactly what the earlier firmware sends


@bp.post("/register")
def legacy_register():
    """A board with the earlier firmware announces itself."""
    return jsonify(_hub().legacy_register(_parsed(proto.parse_legacy_register), request.remote_addr))


@bp.get("/commands/<device_id>")
def legacy_commands(device_id: str):
    """The earlier firmware's poll: JSON null or one VEND command, answered within ~1 s."""
    return jsonify(_hub().legacy_poll(device_id, request.remote_addr))


@bp.post("/confirm")
def legacy_confirm():
    """The earlier firmware's confirmation (device_id is its MAC with colons)."""
    return jsonify(_hub().legacy_confirm(_parsed(proto.parse_legacy_confirm), request.remote_addr))


@bp.post("/data")
def legacy_data():
    """Free-form data a board reports; logged."""
    return jsonify(_hub().legacy_data(_parsed(proto.parse_legacy_data), request.remote_addr))


# Protocol 2: our firmware


@bp.post("/v2/pair")
def pair():
    """A board asks to pair with its X25519 public key (202 until an operator approves)."""
    status, body = _hub().pair(_parsed(proto.parse_pair), request.remote_addr)
    return jsonify(body), status


@bp.post("/v2/register")
def register():
    """A paired board announces itself (signed); the answer lists vends to reconcile."""
    ctx = _authenticated()
    return jsonify(_hub().register(ctx, _parsed(proto.parse_register), request.remote_addr))


# The server's offer to hold a request without a thread, and its hand-back (vending.serving).
PARK = "vending.park"
RESUMED = "vending.resumed"


@bp.get("/v2/commands")
def commands():
    """Long-poll: held until a command is queued for the board or ?wait= seconds pass."""
    parked = request.environ.get(RESUMED)
    if isinstance(parked, ParkedPoll):
        # Authenticated when it arrived (its counter is spent): answered now, signed as ever.
        g.board = parked.ctx
        return jsonify(_hub().answer_parked(parked))
    ctx = _authenticated()
    raw = request.args.get("wait")
    wait = None
    if raw is not None:
        try:
            wait = float(raw)
        except ValueError:
            raise BadRequest(f"wait must be a number of seconds, got {raw!r}") from None
        if not 0 <= wait <= 60:
            raise BadRequest("wait must be between 0 and 60 seconds")
    answer = _hub().poll(ctx, wait, request.remote_addr, park=request.environ.get(PARK))
    if answer is None:
        # Parked: the server sends nothing for this pass and asks again when it is time.
        g.board = None
        g.poll_parked = True  # not an answer: metrics count the one sent later
        return Response(status=204)
    return jsonify(answer)


@bp.post("/v2/confirm")
def confirm():
    """The outcome of one command by its request id; idempotent."""
    ctx = _authenticated()
    return jsonify(_hub().confirm(ctx, _parsed(proto.parse_confirm), request.remote_addr))
