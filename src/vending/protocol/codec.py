"""Lines <-> messages: `format_line` and `parse_line`. Pure; no I/O."""

from __future__ import annotations

from .crc import crc16, crc16_hex
from .errors import ChecksumError, LineTooLong, MalformedLine, UnknownVerb
from .messages import (
    KEY_RE,
    MAX_LINE_LENGTH,
    MESSAGE_TYPES,
    VALUE_RE,
    VERB_RE,
    HumanLine,
    Message,
    ParsedLine,
    value_from_text,
)

_HEX_DIGITS = frozenset(b"0123456789ABCDEF")


def format_body(msg: Message) -> str:
    """Return the BODY of msg: the verb, then its fields in canonical order."""
    parts = [msg.VERB]
    parts.extend(f"{key}={value}" for key, value in msg.fields())
    return " ".join(parts)


def frame_body(body: str) -> bytes:
    """Wrap an ASCII body as a machine line: `$` BODY `*` CRC `\\n`."""
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + crc16_hex(raw).encode("ascii") + b"\n"


def format_line(msg: Message) -> bytes:
    """Return msg as a complete machine line, terminator included."""
    line = frame_body(format_body(msg))
    if len(line) - 1 > MAX_LINE_LENGTH:
        raise LineTooLong(f"{msg.VERB} line is {len(line) - 1} bytes", len(line) - 1, line[:32])
    return line


def strip_terminator(line: bytes) -> bytes:
    """Drop one trailing `\\n` and then one trailing `\\r`, if present."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


def parse_line(line: bytes) -> ParsedLine:
    """Parse one line (terminator optional) into a Message or a HumanLine.

    Raises a ProtocolError subclass for a bad machine line or any over-long line.
    """
    line = strip_terminator(bytes(line))
    if len(line) > MAX_LINE_LENGTH:
        raise LineTooLong(f"line is {len(line)} bytes", len(line), line[:32])
    if not line.startswith(b"$"):
        return HumanLine(line.decode("utf-8", errors="replace"))
    star = line.rfind(b"*")
    if star < 0:
        raise MalformedLine("machine line without *CRC")
    body, digits = line[1:star], line[star + 1 :]
    if len(digits) != 4 or not all(b in _HEX_DIGITS for b in digits):
        raise MalformedLine("CRC must be 4 uppercase hex digits")
    if not all(0x20 <= b <= 0x7E for b in body):
        raise MalformedLine("machine line body must be printable ASCII")
    received = int(digits, 16)
    expected = crc16(body)
    if received != expected:
        raise ChecksumError(
            f"CRC {received:04X} does not match body ({expected:04X})", expected, received
        )
    return parse_body(body.decode("ascii"))


def parse_body(body: str) -> Message:
    """Parse a checked BODY (verb and fields) into its Message."""
    verb, *tokens = body.split(" ")
    if not VERB_RE.match(verb):
        raise MalformedLine(f"bad verb {verb[:16]!r}")
    cls = MESSAGE_TYPES.get(verb)
    if cls is None:
        raise UnknownVerb(f"unknown verb {verb}", verb)
    found: dict[str, str] = {}
    for token in tokens:
        key, eq, value = token.partition("=")
        if not eq or not KEY_RE.match(key) or not VALUE_RE.match(value):
            raise MalformedLine(f"bad field {token[:32]!r} (want key=value)")
        if key in found:
            raise MalformedLine(f"duplicate key {key}")
        found[key] = value
    kwargs: dict[str, object] = {}
    for spec in cls.FIELDS:
        text = found.pop(spec.name, None)
        if text is None:
            if spec.required:
                raise MalformedLine(f"{verb} needs {spec.name}=")
            continue
        kwargs[spec.name] = value_from_text(spec, text)
    # Unknown keys are kept, in the order received, so newer peers' fields round-trip.
    return cls(**kwargs, extra=tuple(found.items()))
