"""CSV exports that are safe to open in a spreadsheet.

Board-reported messages, slot names and device ids come from the network; a cell that
starts with = + - @ (or a tab, carriage return or newline) would run as a formula in Excel or
LibreOffice, so such cells get a leading apostrophe (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def cell(value: Any) -> Any:
    """`value` as a CSV cell a spreadsheet shows as text; numbers and None pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(header: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> str:
    """A CSV document with `header` (None: rows only) and every row's text cells neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if header is not None:
        writer.writerow(header)
    for row in rows:
        writer.writerow([cell(value) for value in row])
    return buffer.getvalue()
