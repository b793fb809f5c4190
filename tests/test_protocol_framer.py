"""LineFramer: bytes in any chunking become the same lines; over-long lines are dropped."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vending.protocol import MAX_LINE_LENGTH, LineFramer, LineTooLong, ProtocolError, parse_line

STREAM = b"HELP\r\n$PING*6427\n\n" + b"x" * 300 + b"\n$HELLO*49D6\r\nVEND:1\n"
EXPECTED = [b"HELP", b"$PING*6427", "too_long", b"$HELLO*49D6", b"VEND:1"]


def summary(items: list[bytes | LineTooLong]) -> list[object]:
    """Lines as bytes, over-long reports as the string "too_long"."""
    return ["too_long" if isinstance(i, LineTooLong) else i for i in items]


def test_a_stream_fed_whole_splits_into_lines_without_terminators() -> None:
    assert summary(LineFramer().feed(STREAM)) == EXPECTED


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_lines() -> None:
    framer = LineFramer()
    items = []
    for i in range(len(STREAM)):
        items += framer.feed(STREAM[i : i + 1])
    assert summary(items) == EXPECTED


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_chunking_of_a_stream_gives_the_same_lines(cuts: list[int]) -> None:
    framer = LineFramer()
    items = []
    bounds = [0, *sorted(cuts), len(STREAM)]
    for start, end in zip(bounds, bounds[1:]):
        items += framer.feed(STREAM[start:end])
    assert summary(items) == EXPECTED


def test_a_partial_line_waits_for_its_newline() -> None:
    framer = LineFramer()
    assert framer.feed(b"$PI") == []
    assert framer.pending == 3
    assert framer.feed(b"NG*6427\r") == []
    assert framer.feed(b"\n") == [b"$PING*6427"]
    assert framer.pending == 0


def test_a_line_of_exactly_the_limit_passes_even_with_a_cr() -> None:
    line = b"y" * MAX_LINE_LENGTH
    assert LineFramer().feed(line + b"\r\n") == [line]
    assert LineFramer().feed(line + b"\n") == [line]


def test_a_line_one_byte_over_the_limit_is_reported() -> None:
    items = LineFramer().feed(b"y" * (MAX_LINE_LENGTH + 1) + b"\r\n")
    assert len(items) == 1 and isinstance(items[0], LineTooLong)
    assert items[0].length == MAX_LINE_LENGTH + 1


def test_a_100_kb_line_is_discarded_without_buffering_and_reported_once() -> None:
    framer = LineFramer()
    items = []
    chunk = b"$" + b"Z" * 999
    for _ in range(100):
        items += framer.feed(chunk)
        assert framer.pending <= 100_000 and len(framer._buffer) <= MAX_LINE_LENGTH + 1
    items += framer.feed(b"\n$PING*6427\n")
    assert summary(items) == ["too_long", b"$PING*6427"]
    assert items[0].length == 100_000 and items[0].head.startswith(b"$ZZZ")


def test_a_100_kb_line_in_one_chunk_is_reported_once() -> None:
    items = LineFramer().feed(b"A" * 100_000 + b"\nHELP\n")
    assert summary(items) == ["too_long", b"HELP"]


def test_reset_forgets_a_partial_line() -> None:
    framer = LineFramer()
    framer.feed(b"garbage without end")
    framer.reset()
    assert framer.feed(b"HELP\n") == [b"HELP"]


def test_invalid_utf8_passes_the_framer_as_bytes() -> None:
    assert LineFramer().feed(b"\xff\xfe\xc3\n") == [b"\xff\xfe\xc3"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=200) | st.sampled_from([b"\n", b"\r\n", b"$", b"*"]), max_size=30)
)
def test_arbitrary_bytes_through_the_framer_raise_nothing_but_protocol_errors(
    chunks: list[bytes],
) -> None:
    framer = LineFramer(max_length=64)
    for chunk in chunks:
        for item in framer.feed(chunk):
            if isinstance(item, LineTooLong):
                continue
            assert b"\n" not in item and item and len(item) <= 64
            try:
                parse_line(item)
            except ProtocolError:
                pass
