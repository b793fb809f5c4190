"""The WiFi wire format: discovery datagrams and the HMAC request/response signatures.

Pure functions only (no sockets, no clock), so the server, the simulator and the tests
share one definition; docs/protocol-wifi.md describes the same thing for firmware authors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
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
