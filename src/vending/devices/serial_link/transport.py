"""One open port: pyserial's reader thread turning bytes into framed lines, and locked writes.

Knows nothing of messages, boards or vends: it hands each framed line (or an over-long one)
to `on_item` and the end of the port to `on_lost`, both called on the reader thread.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Union

import serial
import serial.threaded

from ...protocol import LineFramer, LineTooLong

OnItem = Callable[[Union[bytes, LineTooLong]], None]
OnLost = Callable[[Optional[BaseException]], None]


class _LineProtocol(serial.threaded.Protocol):
    """Bytes -> framed lines (runs on the reader thread)."""

    def __init__(self, on_item: OnItem, on_lost: OnLost) -> None:
        self.framer = LineFramer()
        self.on_item = on_item
        self.on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        for item in self.framer.feed(data):
            self.on_item(item)

    def connection_lost(self, exc: Optional[BaseException]) -> None:  # noqa: UP045
        self.on_lost(exc)


class _Reader(serial.threaded.ReaderThread):
    """pyserial's reader thread, also ending the connection on a bare OSError.

    `in_waiting` on a device that vanished raises OSError (EIO), which the stock thread does
    not catch: it would die without `connection_lost`, and the board would look online
    until the next write failed.
    """

    def run(self) -> None:
        try:
            super().run()
        except OSError as exc:
            self.alive = False
            protocol = self.protocol
            if protocol is not None:
                protocol.connection_lost(exc)


class SerialTransport:
    """The port, its reader thread and the lock that keeps written lines whole."""

    def __init__(self, port: str, ser: serial.SerialBase, on_item: OnItem, on_lost: OnLost) -> None:
        self.port = port
        self.serial = ser
        self._write_lock = threading.Lock()
        self._reader = _Reader(ser, lambda: _LineProtocol(on_item, on_lost))
        self._reader.name = f"serial-{port}"

    @property
    def reader(self) -> threading.Thread:
        """The reader thread (callbacks run on it)."""
        return self._reader

    def start(self) -> None:
        """Start reading."""
        self._reader.start()

    def write(self, data: bytes, before: Callable[[], None] | None = None) -> None:
        """Write one whole line; `before` runs under the lock first. Raises on a failed port."""
        with self._write_lock:
            if before is not None:
                before()
            self.serial.write(data)

    def close(self) -> None:
        """Stop the reader (unless called from it) and close the port; safe to call twice."""
        if threading.current_thread() is not self._reader:
            self._reader.stop()
        with self._write_lock:
            try:
                self.serial.close()
            except Exception:  # closing a port that vanished may raise; it is closed anyway
                pass
