"""Typed v2 messages: one frozen dataclass per verb, validated when built.

Each class lists its fields in canonical order in `FIELDS`; the codec formats them in
that order and parses them in any order. Fields a newer peer adds that this side does
not know are kept, in the order received, in `extra`, so a line round-trips unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Optional, Union

from .errors import MalformedLine

PROTOCOL_VERSION = 2
MAX_LINE_LENGTH = 256  # bytes, without the terminating "\n" or "\r\n"

VERB_RE = re.compile(r"[A-Z]+\Z")
KEY_RE = re.compile(r"[a-z_]+\Z")
VALUE_RE = re.compile(r"[A-Za-z0-9_.:-]+\Z")
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9]{1,16}\Z")
BOOT_ID_RE = re.compile(r"[0-9A-F]{8}\Z")
UINT_RE = re.compile(r"(0|[1-9][0-9]{0,4})\Z")
UINT_MAX = 65535

RESULTS = ("success", "failed")
STATES = ("unseen", "running", "success", "failed", "interrupted")
BOARD_STATES = ("ready", "busy")
#: Reasons known today. Reason fields accept any value token, so a newer board can
#: add a reason without breaking an older server (which treats it as a failure).
FAIL_REASONS = ("jam", "empty", "invalid_slot", "busy", "motor_fault", "not_ready")
NAK_REASONS = ("crc", "syntax", "too_long", "unknown_verb")

Extra = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FieldSpec:
    """How one key=value field is written, checked and converted."""

    name: str
    kind: str  # "rid", "uint", "token", "boot", or "enum"
    required: bool = True
    choices: tuple[str, ...] = ()


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise MalformedLine(what)


def check_value(spec: FieldSpec, value: object) -> None:
    """Raise MalformedLine unless value is a valid Python value for spec."""
    name = spec.name
    if spec.kind == "uint":
        _check(
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= UINT_MAX,
            f"{name} must be an integer 0..{UINT_MAX}",
        )
        return
    _check(isinstance(value, str), f"{name} must be a string")
    assert isinstance(value, str)
    if spec.kind == "rid":
        _check(bool(REQUEST_ID_RE.match(value)), f"{name} must be 1-16 of [A-Za-z0-9]")
    elif spec.kind == "boot":
        _check(bool(BOOT_ID_RE.match(value)), f"{name} must be 8 uppercase hex digits")
    elif spec.kind == "enum":
        _check(value in spec.choices, f"{name} must be one of {'|'.join(spec.choices)}")
    else:
        _check(bool(VALUE_RE.match(value)), f"{name} must be 1+ of [A-Za-z0-9_.:-]")


def value_from_text(spec: FieldSpec, text: str) -> object:
    """Convert a field's wire text to its Python value, or raise MalformedLine."""
    if spec.kind == "uint":
        _check(bool(UINT_RE.match(text)), f"{spec.name} must be a decimal 0..{UINT_MAX}")
        value: object = int(text)
    else:
        value = text
    check_value(spec, value)
    return value


def value_to_text(value: object) -> str:
    """Write a field's Python value as wire text."""
    return str(value)


@dataclass(frozen=True)
class Message:
    """Base of every v2 message; subclasses set VERB and FIELDS."""

    VERB: ClassVar[str] = ""
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = ()

    def __post_init__(self) -> None:
        names = set()
        for spec in self.FIELDS:
            names.add(spec.name)
            value = getattr(self, spec.name)
            if value is None:
                _check(not spec.required, f"{self.VERB} needs {spec.name}=")
            else:
                check_value(spec, value)
        extra = getattr(self, "extra", ())
        _check(isinstance(extra, tuple), "extra must be a tuple of (key, value) pairs")
        for pair in extra:
            _check(isinstance(pair, tuple) and len(pair) == 2, "extra items must be pairs")
            key, value = pair
            _check(isinstance(key, str) and bool(KEY_RE.match(key)), f"bad key {key!r}")
            _check(isinstance(value, str) and bool(VALUE_RE.match(value)), f"bad value {value!r}")
            _check(key not in names, f"duplicate key {key}")
            names.add(key)
        self._check_consistency()

    def _check_consistency(self) -> None:
        """Cross-field rules; overridden where a verb has them."""

    def fields(self) -> list[tuple[str, str]]:
        """Return the (key, wire text) pairs in canonical order, extras last."""
        pairs = [
            (spec.name, value_to_text(getattr(self, spec.name)))
            for spec in self.FIELDS
            if getattr(self, spec.name) is not None
        ]
        pairs.extend(getattr(self, "extra", ()))
        return pairs


_RID = FieldSpec("id", "rid")
_REASON = FieldSpec("reason", "token", required=False)


def _reason_iff(failed: bool, reason: str | None, verb: str) -> None:
    if failed:
        _check(reason is not None, f"{verb} with a failure needs reason=")
    else:
        _check(reason is None, f"{verb} carries reason= only with a failure")


@dataclass(frozen=True)
class Hello(Message):
    """S>B: identify yourself (answered with ID)."""

    VERB: ClassVar[str] = "HELLO"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = ()
    extra: Extra = field(default=())


@dataclass(frozen=True)
class Identity(Message):
    """B>S `ID`: who the board is; also sent unsolicited once it is ready after boot."""

    VERB: ClassVar[str] = "ID"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        FieldSpec("dev", "token"),
        FieldSpec("fw", "token"),
        FieldSpec("proto", "uint"),
        FieldSpec("slots", "uint"),
        FieldSpec("boot", "boot"),
    )
    dev: str
    fw: str
    proto: int
    slots: int
    boot: str
    extra: Extra = field(default=())


@dataclass(frozen=True)
class Vend(Message):
    """S>B: turn the motor of slot once, under request id."""

    VERB: ClassVar[str] = "VEND"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (_RID, FieldSpec("slot", "uint"))
    id: str
    slot: int
    extra: Extra = field(default=())


@dataclass(frozen=True)
class Ack(Message):
    """B>S: the VEND with this id is recorded (sent for repeats too)."""

    VERB: ClassVar[str] = "ACK"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (_RID,)
    id: str
    extra: Extra = field(default=())


@dataclass(frozen=True)
class Done(Message):
    """B>S: the final outcome of a VEND."""

    VERB: ClassVar[str] = "DONE"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        _RID,
        FieldSpec("result", "enum", choices=RESULTS),
        _REASON,
    )
    id: str
    result: str
    reason: Optional[str] = None  # noqa: UP045 (get_type_hints on 3.9)
    extra: Extra = field(default=())

    def _check_consistency(self) -> None:
        _reason_iff(self.result == "failed", self.reason, self.VERB)


@dataclass(frozen=True)
class Nak(Message):
    """Either way: the last line received failed its check; re-send your last line."""

    VERB: ClassVar[str] = "NAK"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (FieldSpec("reason", "token"),)
    reason: str
    extra: Extra = field(default=())


@dataclass(frozen=True)
class Query(Message):
    """S>B: what happened to this request id?"""

    VERB: ClassVar[str] = "QUERY"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (_RID,)
    id: str
    extra: Extra = field(default=())


@dataclass(frozen=True)
class State(Message):
    """B>S: the board's memory of a request id (answer to QUERY)."""

    VERB: ClassVar[str] = "STATE"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        _RID,
        FieldSpec("state", "enum", choices=STATES),
        _REASON,
    )
    id: str
    state: str
    reason: Optional[str] = None  # noqa: UP045 (get_type_hints on 3.9)
    extra: Extra = field(default=())

    def _check_consistency(self) -> None:
        _reason_iff(self.state == "failed", self.reason, self.VERB)


@dataclass(frozen=True)
class Ping(Message):
    """S>B: are you there, and since which boot?"""

    VERB: ClassVar[str] = "PING"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = ()
    extra: Extra = field(default=())


@dataclass(frozen=True)
class Pong(Message):
    """B>S: answer to PING with the boot id and whether a motor is running."""

    VERB: ClassVar[str] = "PONG"
    FIELDS: ClassVar[tuple[FieldSpec, ...]] = (
        FieldSpec("boot", "boot"),
        FieldSpec("state", "enum", choices=BOARD_STATES),
    )
    boot: str
    state: str
    extra: Extra = field(default=())


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.VERB: cls for cls in (Hello, Identity, Vend, Ack, Done, Nak, Query, State, Ping, Pong)
}
SERVER_VERBS = ("HELLO", "VEND", "QUERY", "PING", "NAK")
BOARD_VERBS = ("ID", "ACK", "DONE", "STATE", "PONG", "NAK")


@dataclass(frozen=True)
class HumanLine:
    """A line not starting with `$`: for people and the communication log, never parsed."""

    text: str


AnyMessage = Union[Hello, Identity, Vend, Ack, Done, Nak, Query, State, Ping, Pong]
ParsedLine = Union[Message, HumanLine]
