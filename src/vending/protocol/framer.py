"""Byte stream -> lines, whatever the chunking. Pure; no I/O."""

from __future__ import annotations

from typing import Union

from .errors import LineTooLong
from .messages import MAX_LINE_LENGTH

FramedItem = Union[bytes, LineTooLong]


class LineFramer:
    """Split bytes fed in arbitrary chunks into lines ending in `\\n`.

    `feed` returns, in stream order, each complete line (without `\\n` and without a
    `\\r` just before it) as bytes, and for each line over `max_length` a LineTooLong
    instance (returned, not raised) once its newline arrives. An over-long line is
    discarded up to the next newline without being buffered; empty lines are skipped.
    """

    def __init__(self, max_length: int = MAX_LINE_LENGTH) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._discarding = False
        self._discarded = 0
        self._discarded_cr = False  # the discarded bytes so far end in "\r"
        self._head = b""

    @property
    def pending(self) -> int:
        """Bytes of the current unfinished line seen so far (buffered or discarded)."""
        return self._discarded if self._discarding else len(self._buffer)

    def reset(self) -> None:
        """Forget any partial line, e.g. after the port was reopened."""
        self._buffer.clear()
        self._discarding = False
        self._discarded = 0
        self._discarded_cr = False
        self._head = b""

    def feed(self, data: bytes) -> list[FramedItem]:
        """Consume data and return the lines and over-long reports it completed."""
        out: list[FramedItem] = []
        data = bytes(data)
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline
            self._take(data[start:end])
            if newline < 0:
                break
            self._finish(out)
            start = newline + 1
        return out

    def _take(self, piece: bytes) -> None:
        if self._discarding:
            if piece:
                self._discarded += len(piece)
                self._discarded_cr = piece.endswith(b"\r")
            return
        self._buffer += piece
        # One byte of slack: a line of max_length bytes may still be followed by "\r".
        if len(self._buffer) > self.max_length + 1:
            self._discarding = True
            self._discarded = len(self._buffer)
            self._discarded_cr = self._buffer.endswith(b"\r")
            self._head = bytes(self._buffer[:32])
            self._buffer.clear()

    def _finish(self, out: list[FramedItem]) -> None:
        if self._discarding:
            length = self._discarded - self._discarded_cr  # "\r" is terminator, not line
            out.append(LineTooLong(f"discarded a {length}-byte line", length, self._head))
            self.reset()
            return
        line = bytes(self._buffer)
        self._buffer.clear()
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_length:
            out.append(LineTooLong(f"discarded a {len(line)}-byte line", len(line), line[:32]))
        elif line:
            out.append(line)
