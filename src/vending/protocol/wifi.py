"""The WiFi wire format: discovery datagrams and the HMAC request/response signatures.

Pure functions only (no sockets, no clock), so the server, the simulator and the tests
share one definition; docs/protocol-wifi.md describes the same thing for firmware authors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

# Discovery (UDP, default port 12346).
PLAIN_REQUEST = "DISCOVER_FLASK_SERVER"
PLAIN_REPLY_PREFIX = "FLASK_SERVER_IP:"
LEGACY_REQUEST = "ESP32_DISCOVERY_REQUEST"
LEGACY_REPLY_PREFIX = "FLASK_SERVER:"
AUTH_REQUEST = "VENDING_DISCOVER_V2"
AUTH_REPLY = "VENDING_SERVER_V2"
NO_MAC = "-"
MAX_DATAGRAM = 256  # anything longer is not ours and is ignored

# HTTP authentication headers.
HEADER_DEVICE = "X-Device-Id"
HEADER_COUNTER = "X-Counter"
HEADER_SIGNATURE = "X-Signature"
REQUEST_TAG = "VEND1-REQ"
RESPONSE_TAG = "VEND1-RESP"
PAIR_TAG = "vending-pair-v1"
REVOKED_ERROR = "revoked"  # the error of the signed 401 that tells a board to pair again

SECRET_BYTES = 32
NONCE_HEX_LEN = 32  # 16 random bytes
MAX_COUNTER = 2**63 - 1

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


@dataclass(frozen=True)
class DiscoveryRequest:
    """A parsed discovery datagram: `form` is plain, legacy or auth."""

    form: str
    device_id: str | None = None
    nonce: str | None = None


@dataclass(frozen=True)
class AuthReply:
    """A parsed authenticated discovery reply."""

    ip: str
    port: int
    nonce: str
    mac: str


def valid_device_id(device_id: object) -> bool:
    """Whether `device_id` is an id we accept: 1-64 of letters, digits and _ . : -."""
    return isinstance(device_id, str) and bool(DEVICE_ID_RE.match(device_id))


def is_hex(text: str, length: int | None = None) -> bool:
    """Whether `text` is hex digits only (and `length` of them, when given)."""
    return bool(_HEX_RE.match(text)) and (length is None or len(text) == length)


def parse_discovery(data: bytes) -> DiscoveryRequest | None:
    """The request a datagram carries, or None for anything that is not one of ours."""
    if not data or len(data) > MAX_DATAGRAM:
        return None
    try:
        text = data.decode("ascii").strip("\r\n\x00 ")
    except UnicodeDecodeError:
        return None
    if text == PLAIN_REQUEST:
        return DiscoveryRequest("plain")
    if text == LEGACY_REQUEST:
        return DiscoveryRequest("legacy")
    parts = text.split(" ")
    if len(parts) == 3 and parts[0] == AUTH_REQUEST:
        _, device_id, nonce = parts
        if valid_device_id(device_id) and is_hex(nonce, NONCE_HEX_LEN):
            return DiscoveryRequest("auth", device_id, nonce.lower())
    return None


def plain_reply(ip: str) -> bytes:
    return f"{PLAIN_REPLY_PREFIX}{ip}".encode("ascii")


def legacy_reply(ip: str) -> bytes:
    return f"{LEGACY_REPLY_PREFIX}{ip}".encode("ascii")


def auth_request(device_id: str, nonce: str) -> bytes:
    return f"{AUTH_REQUEST} {device_id} {nonce}".encode("ascii")


def _auth_reply_text(ip: str, port: int, nonce: str) -> str:
    return f"{AUTH_REPLY} {ip} {port} {nonce}"


def discovery_mac(secret: bytes, device_id: str, ip: str, port: int, nonce: str) -> str:
    """HMAC-SHA256 over the reply text (without its MAC) and the asking board's id."""
    message = f"{_auth_reply_text(ip, port, nonce)} {device_id}".encode("ascii")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def auth_reply(secret: bytes | None, device_id: str, ip: str, port: int, nonce: str) -> bytes:
    """The signed reply; `-` in place of the MAC when the server holds no key for the board."""
    mac = discovery_mac(secret, device_id, ip, port, nonce) if secret else NO_MAC
    return f"{_auth_reply_text(ip, port, nonce)} {mac}".encode("ascii")


def parse_auth_reply(data: bytes) -> AuthReply | None:
    """Parse `VENDING_SERVER_V2 <ip> <port> <nonce> <mac>`; None when malformed."""
    try:
        parts = data.decode("ascii").strip().split(" ")
    except UnicodeDecodeError:
        return None
    if len(parts) != 5 or parts[0] != AUTH_REPLY or not parts[2].isdigit():
        return None
    return AuthReply(parts[1], int(parts[2]), parts[3], parts[4])


def verify_auth_reply(reply: AuthReply, secret: bytes, device_id: str, nonce: str) -> bool:
    """True only for a reply to our nonce whose MAC our key produced."""
    if reply.nonce != nonce or reply.mac == NO_MAC:
        return False
    expected = discovery_mac(secret, device_id, reply.ip, reply.port, reply.nonce)
    return hmac.compare_digest(expected, reply.mac.lower())


# HTTP request signing


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_string(method: str, target: str, device_id: str, counter: int, body: bytes) -> bytes:
    """The canonical string a board signs: one field per line, no trailing newline."""
    return "\n".join(
        (REQUEST_TAG, method.upper(), target, device_id, str(counter), body_hash(body))
    ).encode("utf-8")


def sign_request(secret: bytes, method: str, target: str, device_id: str, counter: int,
                 body: bytes) -> str:
    """Hex HMAC-SHA256 of the canonical request string."""
    return hmac.new(secret, request_string(method, target, device_id, counter, body),
                    hashlib.sha256).hexdigest()


def response_string(device_id: str, counter: int, status: int, body: bytes) -> bytes:
    return "\n".join(
        (RESPONSE_TAG, device_id, str(counter), str(status), body_hash(body))
    ).encode("utf-8")


def sign_response(secret: bytes, device_id: str, counter: int, status: int, body: bytes) -> str:
    """Hex HMAC-SHA256 the server puts on its answer to an authenticated request."""
    return hmac.new(secret, response_string(device_id, counter, status, body),
                    hashlib.sha256).hexdigest()


def is_revoked_answer(secret: bytes, device_id: str, counter: int, status: int, body: bytes,
                      signature: str) -> bool:
    """True only for a 401 signed with the board's key whose error is `revoked`.

    That is the one answer that makes a board forget its key: an unsigned 401 can come from
    anyone on the LAN, and forgetting on it would let them pair the board to a rogue server.
    """
    if status != 401 or not is_hex(signature, 64):
        return False
    if not check_signature(sign_response(secret, device_id, counter, status, body), signature):
        return False
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(answer, dict) and answer.get("error") == REVOKED_ERROR


def check_signature(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex MACs."""
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("ascii", "replace"))


def parse_counter(raw: str | None) -> int | None:
    """A counter header as an int in 1..2^63-1, or None."""
    if raw is None or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_COUNTER else None


def pairing_secret(shared: bytes, device_id: str) -> bytes:
    """The device secret both sides derive from the X25519 shared value."""
    return hmac.new(shared, f"{PAIR_TAG}|{device_id}".encode(), hashlib.sha256).digest()


def key_fingerprint(public_key_hex: str) -> str:
    """A short code an operator compares with the board's console before approving."""
    digest = hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()[:8].upper()
    return f"{digest[:4]}-{digest[4:]}"


# Earlier firmware


def legacy_id_from_mac(mac: str) -> str | None:
    """`24:6F:28:A1:B2:C3` -> `ESP32_246F28A1B2C3`, as the earlier firmware registers."""
    if not _MAC_RE.match(mac):
        return None
    return "ESP32_" + mac.replace(":", "").upper()


def mac_from_legacy_id(device_id: str) -> str:
    """`ESP32_246F28A1B2C3` -> `24:6F:28:A1:B2:C3` (for the simulator)."""
    raw = device_id[6:] if device_id.startswith("ESP32_") else device_id
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


# Request bodies, parsed into typed values before they reach the device layer.
# A parser raises BodyError with a message for the board's author; the web layer turns it
# into a 400. Optional facts a board reports (firmware, slots, its own address) are kept
# only when well formed and otherwise dropped, as the earlier firmware sends loose JSON.

RESULTS = ("success", "failed", "not_received")
MAX_FIRMWARE = 64
MAX_MESSAGE = 200
MAX_REASON = 40


class BodyError(ValueError):
    """A board's request body is not what the protocol says."""


@dataclass(frozen=True)
class BoardFacts:
    """What a board may tell about itself; None where it said nothing usable."""

    firmware: str | None = None
    slots: int | None = None
    ip_address: str | None = None


@dataclass(frozen=True)
class PairRequest:
    """POST /esp32/v2/pair."""

    device_id: str
    public_key: str  # 64 lower-case hex digits
    facts: BoardFacts


@dataclass(frozen=True)
class RegisterRequest:
    """POST /esp32/v2/register (signed); device_id is None when the body does not repeat it."""

    device_id: str | None
    facts: BoardFacts


@dataclass(frozen=True)
class ConfirmRequest:
    """POST /esp32/v2/confirm (signed)."""

    request_id: str
    result: str
    message: str
    reason: str | None


@dataclass(frozen=True)
class LegacyRegister:
    """POST /esp32/register from the earlier firmware."""

    device_id: str
    facts: BoardFacts
    status: str


@dataclass(frozen=True)
class LegacyConfirm:
    """POST /esp32/confirm from the earlier firmware; device_id as sent (often its MAC)."""

    device_id: str
    success: bool
    slot: int
    message: str


@dataclass(frozen=True)
class LegacyData:
    """POST /esp32/data: free-form fields, kept only for the log."""

    device_id: str | None
    text: str


@dataclass(frozen=True)
class ApproveRequest:
    """What an operator approves: the fingerprint they saw, or a key provisioned over USB."""

    fingerprint: str | None
    secret: bytes | None


_FINGERPRINT_RE = re.compile(r"^[0-9A-F]{4}-[0-9A-F]{4}$")


def _text(body: Mapping[str, object], name: str, limit: int) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and len(value) <= limit else None


def _small_int(value: object, low: int, high: int) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


def _facts(body: Mapping[str, object], slots_field: str = "slots") -> BoardFacts:
    return BoardFacts(
        firmware=_text(body, "firmware", MAX_FIRMWARE) or None,
        slots=_small_int(body.get(slots_field), 1, 99),
        ip_address=_text(body, "ip_address", 45) or None,
    )


def _device_id(body: Mapping[str, object]) -> str:
    device_id = body.get("device_id")
    if not isinstance(device_id, str) or not valid_device_id(device_id):
        raise BodyError("device_id must be 1 to 64 letters, digits or _ . : -,"
                        " e.g. ESP32_246F28A1B2C3")
    return device_id


def parse_pair(body: Mapping[str, object]) -> PairRequest:
    device_id = _device_id(body)
    public_key = body.get("public_key")
    if not isinstance(public_key, str) or not is_hex(public_key, 64):
        raise BodyError("public_key must be the board's X25519 public key as 64 hex digits")
    return PairRequest(device_id, public_key.lower(), _facts(body))


def parse_register(body: Mapping[str, object]) -> RegisterRequest:
    device_id = _device_id(body) if "device_id" in body else None
    return RegisterRequest(device_id, _facts(body))


def parse_confirm(body: Mapping[str, object]) -> ConfirmRequest:
    request_id = body.get("id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 64:
        raise BodyError('id is required: {"id": "<request id>", "result": "success"}')
    result = body.get("result")
    if not isinstance(result, str) or result not in RESULTS:
        raise BodyError(f"result must be one of {', '.join(RESULTS)}")
    return ConfirmRequest(request_id, result, _text(body, "message", MAX_MESSAGE) or "",
                          _text(body, "reason", MAX_REASON) or None)


def parse_legacy_register(body: Mapping[str, object]) -> LegacyRegister:
    status = body.get("status")
    return LegacyRegister(_device_id(body), _facts(body, "slots_available"),
                          status[:40] if isinstance(status, str) else "")


def parse_legacy_confirm(body: Mapping[str, object]) -> LegacyConfirm:
    device_id = body.get("device_id")
    if not isinstance(device_id, str) or not device_id or len(device_id) > 64:
        raise BodyError("device_id is required")
    return LegacyConfirm(device_id, body.get("success") is True,
                         _small_int(body.get("slot"), 0, 99) or 0,
                         _text(body, "message", MAX_MESSAGE) or "")


def parse_legacy_data(body: Mapping[str, object]) -> LegacyData:
    raw_id = body.get("device_id")
    device_id = None
    if isinstance(raw_id, str):
        device_id = legacy_id_from_mac(raw_id) or (raw_id if valid_device_id(raw_id) else None)
    text = json.dumps(body, ensure_ascii=True, default=str)
    return LegacyData(device_id, text if len(text) <= 500 else text[:497] + "...")


def parse_approve(body: Mapping[str, object]) -> ApproveRequest:
    fingerprint = body.get("fingerprint")
    secret = body.get("secret")
    if fingerprint is not None:
        if not isinstance(fingerprint, str) or not _FINGERPRINT_RE.match(fingerprint.upper()):
            raise BodyError('fingerprint must be the key fingerprint shown on the page,'
                            ' e.g. {"fingerprint": "3F2A-91C0"}')
        fingerprint = fingerprint.upper()
    if secret is not None:
        if not isinstance(secret, str) or not is_hex(secret, SECRET_BYTES * 2):
            raise BodyError("secret must be 64 hex digits (32 bytes)")
        return ApproveRequest(fingerprint, bytes.fromhex(secret))
    return ApproveRequest(fingerprint, None)
