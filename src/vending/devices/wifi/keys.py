"""Board keys: the X25519 pairing, and which key may sign a request or a discovery reply.

The secrets themselves live in 0600 files (store/wifi.py); this keeps them cached so a
long-poll does not read a file per request, and forgets them on approve, revoke and reject.
"""

from __future__ import annotations

import threading

from ...protocol import wifi as proto
from ...store.wifi import WifiDeviceRecord, WifiDeviceStore


class KeyRing:
    """The cache in front of the key files, and the rule for which key is usable."""

    def __init__(self, keys: WifiDeviceStore) -> None:
        self.keys = keys
        self._lock = threading.Lock()
        self._secrets: dict[str, bytes | None] = {}

    def secret(self, device_id: str) -> bytes | None:
        with self._lock:
            if device_id not in self._secrets:
                self._secrets[device_id] = self.keys.secret(device_id)
            return self._secrets[device_id]

    def forget(self, device_id: str) -> None:
        """Drop the cached key (it changed or went)."""
        with self._lock:
            self._secrets.pop(device_id, None)

    def usable_secret(self, record: WifiDeviceRecord | None) -> bytes | None:
        """The key a request or discovery reply may be signed with, or None.

        An approved board's, or a revoked board's that has not been told yet: a revoked
        board that restarted must still find us, to hear the signed answer that tells it
        to pair again.
        """
        if record is None or not (record.approved or self.keys.revoke_pending(record)):
            return None
        return self.secret(record.device_id)

    def secret_for(self, device_id: str) -> bytes | None:
        """The usable key of `device_id` (for signed discovery replies)."""
        return self.usable_secret(self.keys.get(device_id))


def derive_pairing(board_public_hex: str, device_id: str) -> tuple[bytes, str]:
    """X25519 with a fresh server key: (device secret, server public key hex)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = X25519PrivateKey.generate()
    shared = private.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(board_public_hex)))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    return proto.pairing_secret(shared, device_id), public
