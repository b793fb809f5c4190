"""The shared vectors file (tests/vectors/protocol_v2.tsv) drives the codec's tests.

The firmware host tests read the same file; keep the reader here as simple as theirs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vending.protocol import (
    HumanLine,
    LineFramer,
    LineTooLong,
    Message,
    ProtocolError,
    crc16_hex,
    format_line,
    frame_body,
    parse_line,
)

VECTORS = Path(__file__).parent / "vectors" / "protocol_v2.tsv"
_ESCAPE = re.compile(rb"\\(\\|t|r|x[0-9A-F]{2})")


def unescape(text: str) -> bytes:
    """Turn a column's escapes (\\\\, \\t, \\r, \\xHH) into bytes."""

    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code == b"\\":
            return b"\\"
        if code == b"t":
            return b"\t"
        if code == b"r":
            return b"\r"
        return bytes([int(code[1:], 16)])

    raw = text.encode("utf-8")
    return _ESCAPE.sub(one, raw)


def load(kind: str) -> list[tuple[str, ...]]:
    """Return the rows of one kind, without the kind column, as pytest params."""
    rows = []
    for number, line in enumerate(VECTORS.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        if cols[0] == kind:
            rows.append(pytest.param(*cols[1:], id=f"line{number}"))
    return rows


EXPECTED_COLUMNS = {"crc": 3, "valid": 4, "human": 2, "invalid": 3}


def test_every_vector_line_has_a_known_kind_and_the_right_number_of_columns() -> None:
    for line in VECTORS.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        assert EXPECTED_COLUMNS.get(cols[0]) == len(cols), line[:60]


def test_the_vectors_file_covers_every_error_kind() -> None:
    kinds = {row.values[1] for row in load("invalid")}
    assert kinds == {"crc", "syntax", "too_long", "unknown_verb"}


@pytest.mark.parametrize(("data", "expected"), load("crc"))
def test_crc_of_vector_input_matches(data: str, expected: str) -> None:
    assert crc16_hex(unescape(data)) == expected


@pytest.mark.parametrize(("line", "verb", "fields"), load("valid"))
def test_valid_vector_parses_to_its_verb_and_formats_canonically(
    line: str, verb: str, fields: str
) -> None:
    msg = parse_line(unescape(line))
    assert isinstance(msg, Message)
    parsed_verb = msg.VERB
    assert parsed_verb == verb
    canonical = " ".join(f"{k}={v}" for k, v in msg.fields()) or "-"
    assert canonical == fields
    body = verb if fields == "-" else f"{verb} {fields}"
    assert format_line(msg) == frame_body(body)
    assert parse_line(format_line(msg)) == msg


@pytest.mark.parametrize(("line",), load("human"))
def test_human_vector_passes_through_as_a_human_line(line: str) -> None:
    raw = unescape(line)
    parsed = parse_line(raw)
    assert isinstance(parsed, HumanLine)
    assert parsed.text == raw.decode("utf-8", errors="replace")


@pytest.mark.parametrize(("line", "error"), load("invalid"))
def test_invalid_vector_is_rejected_with_its_nak_reason(line: str, error: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_line(unescape(line))
    assert caught.value.nak_reason == error


@pytest.mark.parametrize(("line", "error"), load("invalid"))
def test_invalid_vector_fed_through_the_framer_gives_the_same_error(line: str, error: str) -> None:
    items = LineFramer().feed(unescape(line) + b"\n")
    if error == "too_long":
        assert len(items) == 1 and isinstance(items[0], LineTooLong)
        return
    assert len(items) == 1 and isinstance(items[0], bytes)
    with pytest.raises(ProtocolError) as caught:
        parse_line(items[0])
    assert caught.value.nak_reason == error
