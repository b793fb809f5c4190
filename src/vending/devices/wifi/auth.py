"""Protocol 2 request authentication: signature, replay counter, and telling a revoked board.

Only a signed request proves a board is itself; nothing here changes any state on a
request that fails its check (401 changes nothing).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from ...commlog import ERROR, INFO, CommunicationLog
from ...errors import Revoked, Unauthorized
from ...protocol import wifi as proto
from ...store.wifi import WifiDeviceStore
from ..base import WIFI
from .keys import KeyRing

logger = logging.getLogger("vending.wifi")


@dataclass(frozen=True)
class AuthContext:
    """An authenticated board request: who, which counter, and the key to sign the answer."""

    device_id: str
    counter: int
    secret: bytes = field(repr=False)


def sign_response(ctx: AuthContext, status: int, body: bytes) -> str:
    """The signature header for our answer to an authenticated request."""
    return proto.sign_response(ctx.secret, ctx.device_id, ctx.counter, status, body)


class Authenticator:
    """Checks signed board requests against the stored keys and counters."""

    def __init__(self, keys: WifiDeviceStore, ring: KeyRing, log: CommunicationLog,
                 approval_lock: threading.RLock) -> None:
        self.keys = keys
        self.ring = ring
        self.log = log
        self._approval_lock = approval_lock
        self._counter_lock = threading.Lock()

    def authenticate(self, method: str, target: str, headers: Mapping[str, str],
                     body: bytes) -> AuthContext:
        """Check the signature and counter of a board request; 401 changes nothing."""
        device_id = headers.get(proto.HEADER_DEVICE)
        counter = proto.parse_counter(headers.get(proto.HEADER_COUNTER))
        signature = headers.get(proto.HEADER_SIGNATURE) or ""
        if device_id is None or not proto.valid_device_id(device_id) or counter is None \
                or not proto.is_hex(signature, 64):
            raise Unauthorized(f"a board request needs {proto.HEADER_DEVICE}, {proto.HEADER_COUNTER}"
                               f" and {proto.HEADER_SIGNATURE} headers; see docs/protocol-wifi.md")
        record = self.keys.get(device_id)
        secret = self.ring.usable_secret(record)
        if record is None or secret is None:
            raise Unauthorized(f"{device_id} is not paired or not approved; pair it first")
        expected = proto.sign_request(secret, method, target, device_id, counter, body)
        if not proto.check_signature(expected, signature):
            self.log.add(device_id, WIFI, ERROR, f"refused {method} {target}: bad signature")
            raise Unauthorized("bad signature: the request was altered or the key is wrong")
        with self._counter_lock:
            if not self.keys.advance_counter(device_id, counter):
                self.log.add(device_id, WIFI, ERROR, f"refused {method} {target}: replayed counter")
                raise Unauthorized(f"replayed request: counter {counter} is not above the last one"
                                   " accepted")
        ctx = AuthContext(device_id, counter, secret)
        if not record.approved:
            self._tell_revoked(ctx, method, target)
        return ctx

    def _tell_revoked(self, ctx: AuthContext, method: str, target: str) -> None:
        """The board's first genuine request since its revoke: answer `revoked`, drop its key.

        Only this answer, signed with the board's key, makes our firmware forget it; an
        unsigned 401 could come from anyone on the LAN (docs/protocol-wifi.md section 3).
        """
        with self._approval_lock:
            # Under the lock approve() holds while it writes a new key and approves.
            record = self.keys.get(ctx.device_id)
            current = self.keys.secret(ctx.device_id)
            if record is None or record.approved or current != ctx.secret:
                if record is not None and record.approved and current == ctx.secret:
                    return  # approved again meanwhile with this same key (USB-provisioned)
                raise Unauthorized(f"{ctx.device_id} is not paired or not approved; pair it first")
            self.keys.drop_key(ctx.device_id)
            self.ring.forget(ctx.device_id)
        self.log.add(ctx.device_id, WIFI, INFO,
                     f"told the board on {method} {target} that it is revoked; its key is deleted")
        logger.warning("WiFi board %s was told it is revoked and deleted its key; it will ask to"
                       " pair again", ctx.device_id)
        error = Revoked(f"{ctx.device_id} was revoked by an operator: forget the key and pair"
                        " again (an operator must approve the board again)")
        error.context = ctx
        raise error
