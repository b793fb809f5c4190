"""One server per data directory: an exclusive OS lock taken before the database is opened.

A second server on the same directory would run crash recovery on the live database and
turn the running vend into `unknown`. The lock is an OS file lock (`fcntl.flock` on POSIX,
`msvcrt.locking` on Windows), so it is released by the kernel when the process dies, even
by SIGKILL, and a stale file never blocks a restart. Who holds it is written to a separate
file, because a region locked with `msvcrt` cannot be read by another process.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any

LOCK_NAME = "server.lock"
OWNER_NAME = "server.owner.json"


class DataDirInUse(RuntimeError):
    """Another live process holds the data directory."""

    def __init__(self, data_dir: Path, owner: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.owner = owner
        pid = owner.get("pid", "?")
        port = owner.get("port", "?")
        host = owner.get("host", "?")
        super().__init__(
            f"another server (pid {pid}, listening on {host}:{port}) is already using the data"
            f" directory {data_dir}; stop it first, or start this one with another --data-dir"
        )


def _lock(handle: IO[str]) -> bool:
    """Try to take the lock without waiting; False when another process holds it."""
    try:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _unlock(handle: IO[str]) -> None:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class DataDirLock:
    """Held by the one server that owns a data directory, from before the store opens to after it closes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._handle: IO[str] | None = None

    def acquire(self, host: str, port: int) -> None:
        """Take the lock or raise DataDirInUse naming the running server."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.data_dir / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held open
        if not _lock(handle):
            handle.close()
            raise DataDirInUse(self.data_dir, self.owner())
        self._handle = handle
        owner = {"pid": os.getpid(), "host": host, "port": port, "started_at": time.time()}
        (self.data_dir / OWNER_NAME).write_text(json.dumps(owner), encoding="utf-8")

    def owner(self) -> dict[str, Any]:
        """What the holder wrote about itself, or {} when it has not written it yet."""
        try:
            data = json.loads((self.data_dir / OWNER_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        """Give the directory up; safe to call twice."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            (self.data_dir / OWNER_NAME).unlink(missing_ok=True)
            _unlock(handle)
        except OSError:
            pass
        finally:
            handle.close()
