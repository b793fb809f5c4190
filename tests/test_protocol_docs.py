"""The example lines in docs/protocol.md are real: they parse, with correct CRCs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vending.protocol import ChecksumError, Message, format_line, parse_line

DOC = Path(__file__).parent.parent / "docs" / "protocol.md"
EXAMPLE = re.compile(r"\$[A-Z][ -~]*?\*[0-9A-F]{4}")


def examples() -> list[str]:
    """Every machine line quoted in the doc."""
    return sorted(set(EXAMPLE.findall(DOC.read_text(encoding="utf-8"))))


def test_the_doc_has_an_example_of_every_verb() -> None:
    verbs = {line[1:].split(" ")[0].split("*")[0] for line in examples()}
    assert verbs >= {"HELLO", "ID", "VEND", "ACK", "DONE", "QUERY", "STATE", "PING", "PONG", "NAK"}


@pytest.mark.parametrize("line", examples())
def test_an_example_line_in_the_doc_parses_and_is_canonical(line: str) -> None:
    if "succeSs" in line:  # the doc's deliberately corrupted line
        with pytest.raises(ChecksumError):
            parse_line(line.encode())
        return
    msg = parse_line(line.encode())
    assert isinstance(msg, Message)
    assert format_line(msg) == line.encode() + b"\n"
