"""What the controller remembers about WiFi boards: approval, pairing keys, replay counters.

Rows live in the shared SQLite store (table wifi_devices); each board's secret lives in
its own file under <data_dir>/device-keys/ with mode 0600 and is never logged.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import Store


@dataclass(frozen=True)
class WifiDeviceRecord:
    """One row of wifi_devices."""

    device_id: str
    approved: bool
    protocol: int
    public_key: str | None
    server_key: str | None
    last_counter: int
    first_seen: float
    approved_at: float | None


class WifiDeviceStore:
    """Approval rows in the store and secrets in 0600 files."""

    def __init__(self, store: Store, keys_dir: Path) -> None:
        self.store = store
        self.keys_dir = Path(keys_dir)

    # Rows

    def get(self, device_id: str) -> WifiDeviceRecord | None:
        rows = self.store.query("SELECT * FROM wifi_devices WHERE device_id = ?", (device_id,))
        return self._record(rows[0]) if rows else None

    def all(self) -> list[WifiDeviceRecord]:
        return [self._record(r) for r in self.store.query("SELECT * FROM wifi_devices")]

    @staticmethod
    def _record(row) -> WifiDeviceRecord:
        data = dict(row)
        data["approved"] = bool(data["approved"])
        return WifiDeviceRecord(**data)

    def ensure(self, device_id: str, protocol: int) -> WifiDeviceRecord:
        """The board's row, created unapproved the first time it is seen."""
        with self.store.write() as db:
            db.execute(
                "INSERT OR IGNORE INTO wifi_devices (device_id, protocol, first_seen) VALUES (?, ?, ?)",
                (device_id, protocol, time.time()),
            )
            db.execute("UPDATE wifi_devices SET protocol = ? WHERE device_id = ?",
                       (protocol, device_id))
        record = self.get(device_id)
        assert record is not None
        return record

    def set_public_key(self, device_id: str, public_key: str) -> None:
        with self.store.write() as db:
            db.execute("UPDATE wifi_devices SET public_key = ? WHERE device_id = ?",
                       (public_key, device_id))

    def approve(self, device_id: str, server_key: str | None = None) -> None:
        with self.store.write() as db:
            db.execute(
                "UPDATE wifi_devices SET approved = 1, approved_at = ?, server_key = ?,"
                " last_counter = 0 WHERE device_id = ?",
                (time.time(), server_key, device_id),
            )

    def revoke(self, device_id: str) -> None:
        """Withdraw approval and forget the pairing; the board must pair again.

        The key file stays until the board's next genuine request, so the server can sign
        the `revoked` answer that tells the board to forget it (see `drop_key`); the last
        counter stays too, so old requests cannot be replayed meanwhile.
        """
        with self.store.write() as db:
            db.execute(
                "UPDATE wifi_devices SET approved = 0, approved_at = NULL, public_key = NULL,"
                " server_key = NULL WHERE device_id = ?", (device_id,),
            )

    def revoke_pending(self, record: WifiDeviceRecord) -> bool:
        """Revoked, but the board has not been told yet: not approved, and its key file kept."""
        return not record.approved and self._key_path(record.device_id).exists()

    def drop_key(self, device_id: str) -> None:
        """The board was told it is revoked: delete its key; a new pairing starts from zero."""
        self.delete_secret(device_id)
        with self.store.write() as db:
            db.execute("UPDATE wifi_devices SET last_counter = 0 WHERE device_id = ?"
                       " AND approved = 0", (device_id,))

    def forget(self, device_id: str) -> None:
        with self.store.write() as db:
            db.execute("DELETE FROM wifi_devices WHERE device_id = ?", (device_id,))
        self.delete_secret(device_id)

    def advance_counter(self, device_id: str, counter: int) -> bool:
        """Persist `counter` if it is above the last one accepted; False means a replay."""
        with self.store.write() as db:
            cur = db.execute(
                "UPDATE wifi_devices SET last_counter = ? WHERE device_id = ? AND last_counter < ?",
                (counter, device_id, counter),
            )
            return cur.rowcount == 1

    # Secrets

    def _key_path(self, device_id: str) -> Path:
        return self.keys_dir / f"{device_id}.key"

    def secret(self, device_id: str) -> bytes | None:
        try:
            text = self._key_path(device_id).read_text(encoding="ascii").strip()
            return bytes.fromhex(text)
        except (OSError, ValueError):
            return None

    def save_secret(self, device_id: str, secret: bytes) -> None:
        """Write the key file so that only this user can ever read it (created 0600)."""
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        if sys.platform != "win32":
            os.chmod(self.keys_dir, 0o700)
        path = self._key_path(device_id)
        tmp = path.with_suffix(".tmp")
        if tmp.exists():
            tmp.unlink()
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secret.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def delete_secret(self, device_id: str) -> None:
        try:
            self._key_path(device_id).unlink()
        except FileNotFoundError:
            pass
