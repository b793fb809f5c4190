"""The EVA-DTS 6.1 audit file (DEX/UCS) written from the controller's own ledger.

Pure: the caller gathers the figures, this module lays them out. Choices where the public
sources differ (docs/business.md says more):
- G85 is CRC-16/ARC (polynomial 0x8005 reflected, initial value 0, no final xor) over every
  byte from the `S` of `ST` up to and including the CR LF before `G85`, as four upper-case hex
  digits; checked against a real machine's file (tests/test_dex.py).
- SE01 counts every segment from ST to SE, both included.
- ID4 carries the decimal places, the ISO 4217 numeric code and the alphabetic code.
- Events: EA2 per kind (count since reset, since initialisation), then EA1 for the latest
  events with date and time. EJB: a vend that failed; EJL: a vend not confirmed (unknown).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from .money import Currency

EOL = "\r\n"
VERSION = "V1/1"
EVENT_FAILED = "EJB"
EVENT_UNKNOWN = "EJL"


def crc16_arc(data: bytes, crc: int = 0) -> int:
    """CRC-16/ARC: the G85 checksum."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def field(text: str, width: int) -> str:
    """Text fit for a DEX element: no separators or line breaks, at most `width` characters."""
    cleaned = "".join(ch if ch.isprintable() and ch.isascii() and ch != "*" else " "
                      for ch in text)
    return cleaned.strip()[:width]


@dataclass(frozen=True)
class Column:
    """One column (slot): its price and sales since initialisation and since reset."""

    number: int
    price: int
    product: str
    count_init: int
    value_init: int
    count_reset: int
    value_reset: int


@dataclass(frozen=True)
class EventCount:
    code: str
    since_reset: int
    since_init: int


@dataclass(frozen=True)
class Event:
    code: str
    at: float


@dataclass(frozen=True)
class Audit:
    """Everything the file says."""

    communication_id: str
    serial: str
    model: str
    build: str
    currency: Currency
    columns: list[Column]
    event_counts: list[EventCount]
    events: list[Event]


def _totals(columns: list[Column]) -> tuple[int, int, int, int]:
    """VA1: value and count since initialisation, then since reset."""
    return (sum(c.value_init for c in columns), sum(c.count_init for c in columns),
            sum(c.value_reset for c in columns), sum(c.count_reset for c in columns))


def build(audit: Audit) -> str:
    """The DEX/UCS text, CR LF line ends."""
    body = [
        "ST*001*0001",
        f"ID1*{field(audit.serial, 20)}*{field(audit.model, 20)}*{field(audit.build, 4)}***",
        f"ID4*{audit.currency.decimals}*{audit.currency.numeric}*{audit.currency.code}",
        "VA1*{}*{}*{}*{}".format(*_totals(audit.columns)),  # noqa: UP032
    ]
    for column in audit.columns:
        body.append(f"PA1*{column.number}*{column.price}*{field(column.product, 20)}")
        body.append(f"PA2*{column.count_init}*{column.value_init}*{column.count_reset}"
                    f"*{column.value_reset}")
    for count in audit.event_counts:
        body.append(f"EA2*{count.code}*{count.since_reset}*{count.since_init}")
    for event in audit.events:
        stamp = time.localtime(event.at)
        body.append(f"EA1*{event.code}*{time.strftime('%y%m%d', stamp)}"
                    f"*{time.strftime('%H%M', stamp)}")
    crc = crc16_arc("".join(line + EOL for line in body).encode("ascii"))
    body.append(f"G85*{crc:04X}")
    body.append(f"SE*{len(body) + 1}*0001")
    lines = [f"DXS*{field(audit.communication_id, 10)}*VA*{VERSION}*1", *body, "DXE*1*1"]
    return "".join(line + EOL for line in lines)


def events_from(rows: Iterable[dict[str, object]]) -> list[Event]:
    """Failed/unknown transaction rows -> DEX events."""
    return [Event(EVENT_FAILED if row["state"] == "failed" else EVENT_UNKNOWN,
                  float(row["finished_at"]))  # type: ignore[arg-type]
            for row in rows]
