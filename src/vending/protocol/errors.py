"""The codec's exception hierarchy: one root, one subclass per NAK reason."""

from __future__ import annotations

from typing import ClassVar


class ProtocolError(Exception):
    """Root of every error the codec raises or reports."""

    #: The `reason=` a receiver puts in the NAK it answers this error with.
    nak_reason: ClassVar[str] = "syntax"


class MalformedLine(ProtocolError, ValueError):
    """A machine line (or a message being built) breaks the grammar."""

    nak_reason = "syntax"


class ChecksumError(ProtocolError):
    """The CRC after `*` does not match the body."""

    nak_reason = "crc"

    def __init__(self, message: str, expected: int = 0, received: int = 0) -> None:
        super().__init__(message)
        self.expected = expected
        self.received = received


class UnknownVerb(ProtocolError):
    """A well-formed machine line whose verb this side does not know."""

    nak_reason = "unknown_verb"

    def __init__(self, message: str, verb: str = "") -> None:
        super().__init__(message)
        self.verb = verb


class LineTooLong(ProtocolError):
    """A line longer than the limit; the framer discards it up to the next newline."""

    nak_reason = "too_long"

    def __init__(self, message: str, length: int = 0, head: bytes = b"") -> None:
        super().__init__(message)
        #: Bytes the line had (without terminator), as far as they were counted.
        self.length = length
        #: The first bytes of the line, for the communication log.
        self.head = head
