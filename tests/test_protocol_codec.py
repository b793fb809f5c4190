"""The v2 codec: round trips, rejection of damaged lines, and no stray exceptions."""

from __future__ import annotations

import binascii

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vending.protocol import (
    MAX_LINE_LENGTH,
    MESSAGE_TYPES,
    Ack,
    ChecksumError,
    Done,
    Hello,
    HumanLine,
    Identity,
    LineTooLong,
    MalformedLine,
    Message,
    Nak,
    Ping,
    Pong,
    ProtocolError,
    Query,
    State,
    UnknownVerb,
    Vend,
    crc16,
    format_line,
    parse_line,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EXHAUSTIVE = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])

rids = st.from_regex(r"[A-Za-z0-9]{1,16}", fullmatch=True)
tokens = st.from_regex(r"[A-Za-z0-9_.:-]{1,24}", fullmatch=True)
uints = st.integers(0, 65535)
boots = st.from_regex(r"[0-9A-F]{8}", fullmatch=True)


def extras(reserved: tuple[str, ...]) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    """Unknown key=value fields a newer peer might add."""
    keys = st.from_regex(r"[a-z_]{1,8}", fullmatch=True).filter(lambda k: k not in reserved)
    return st.lists(st.tuples(keys, tokens), max_size=3, unique_by=lambda kv: kv[0]).map(tuple)


def _done() -> st.SearchStrategy[Done]:
    ok = st.builds(
        Done, id=rids, result=st.just("success"), extra=extras(("id", "result", "reason"))
    )
    failed = st.builds(
        Done,
        id=rids,
        result=st.just("failed"),
        reason=tokens,
        extra=extras(("id", "result", "reason")),
    )
    return ok | failed


def _state() -> st.SearchStrategy[State]:
    plain = st.builds(
        State,
        id=rids,
        state=st.sampled_from(["unseen", "running", "success", "interrupted"]),
        extra=extras(("id", "state", "reason")),
    )
    failed = st.builds(
        State,
        id=rids,
        state=st.just("failed"),
        reason=tokens,
        extra=extras(("id", "state", "reason")),
    )
    return plain | failed


STRATEGIES: dict[str, st.SearchStrategy[Message]] = {
    "HELLO": st.builds(Hello, extra=extras(())),
    "ID": st.builds(
        Identity,
        dev=tokens,
        fw=tokens,
        proto=uints,
        slots=uints,
        boot=boots,
        extra=extras(("dev", "fw", "proto", "slots", "boot")),
    ),
    "VEND": st.builds(Vend, id=rids, slot=uints, extra=extras(("id", "slot"))),
    "ACK": st.builds(Ack, id=rids, extra=extras(("id",))),
    "DONE": _done(),
    "NAK": st.builds(Nak, reason=tokens, extra=extras(("reason",))),
    "QUERY": st.builds(Query, id=rids, extra=extras(("id",))),
    "STATE": _state(),
    "PING": st.builds(Ping, extra=extras(())),
    "PONG": st.builds(
        Pong,
        boot=boots,
        state=st.sampled_from(["ready", "busy"]),
        extra=extras(("boot", "state")),
    ),
}
messages = st.one_of(*STRATEGIES.values())


def test_there_is_a_strategy_for_every_message_kind() -> None:
    assert set(STRATEGIES) == set(MESSAGE_TYPES)


@pytest.mark.parametrize("verb", sorted(STRATEGIES))
def test_parsing_a_formatted_message_gives_it_back(verb: str) -> None:
    @FAST
    @given(STRATEGIES[verb])
    def round_trip(msg: Message) -> None:
        line = format_line(msg)
        assert line.startswith(b"$") and line.endswith(b"\n")
        assert len(line) - 1 <= MAX_LINE_LENGTH
        assert parse_line(line) == msg
        assert parse_line(line[:-1] + b"\r\n") == msg

    round_trip()


def test_crc_matches_the_catalogue_check_value_and_binascii() -> None:
    assert crc16(b"123456789") == 0x29B1
    for data in (b"", b"A", b"$VEND id=1 slot=2", bytes(range(256))):
        assert crc16(data) == binascii.crc_hqx(data, 0xFFFF)


@FAST
@given(st.binary(max_size=300))
def test_crc_agrees_with_binascii_on_arbitrary_bytes(data: bytes) -> None:
    assert crc16(data) == binascii.crc_hqx(data, 0xFFFF)


def _never_a_message(line: bytes) -> None:
    try:
        parsed = parse_line(line)
    except ProtocolError:
        return
    assert isinstance(parsed, HumanLine), line


@EXHAUSTIVE
@given(messages)
def test_every_single_byte_change_of_a_line_is_caught(msg: Message) -> None:
    line = format_line(msg)[:-1]
    for i, original in enumerate(line):
        for value in range(256):
            if value != original:
                _never_a_message(line[:i] + bytes([value]) + line[i + 1 :])


@EXHAUSTIVE
@given(messages)
def test_every_single_byte_change_of_a_body_changes_its_crc(msg: Message) -> None:
    body = format_line(msg)[1:-6]
    crc = crc16(body)
    for i, original in enumerate(body):
        for value in range(256):
            if value != original:
                assert crc16(body[:i] + bytes([value]) + body[i + 1 :]) != crc


@FAST
@given(messages)
def test_every_swap_of_two_adjacent_distinct_bytes_is_caught(msg: Message) -> None:
    line = format_line(msg)[:-1]
    for i in range(len(line) - 1):
        if line[i] != line[i + 1]:
            _never_a_message(line[:i] + line[i + 1 : i + 2] + line[i : i + 1] + line[i + 2 :])


_machine_ish = st.builds(
    lambda body, tail: b"$" + body + tail,
    st.binary(max_size=40)
    | st.text("PINGVENDACKid=slot 0123456789*$", max_size=40).map(str.encode),
    st.sampled_from([b"", b"*", b"*FFFF", b"*29B1", b"*zz", b"\r", b"\n"]),
)


@FAST
@given(st.binary(max_size=400) | _machine_ish)
def test_arbitrary_bytes_raise_nothing_but_protocol_errors(data: bytes) -> None:
    try:
        parse_line(data)
    except ProtocolError:
        pass


@FAST
@given(messages, st.integers(0, 300), st.binary(min_size=1, max_size=3))
def test_a_damaged_valid_line_raises_nothing_but_protocol_errors(
    msg: Message, where: int, junk: bytes
) -> None:
    line = format_line(msg)
    where %= len(line)
    try:
        parse_line(line[:where] + junk + line[where + 1 :])
    except ProtocolError:
        pass


def test_a_line_with_a_wrong_crc_raises_checksum_error_with_both_values() -> None:
    with pytest.raises(ChecksumError) as caught:
        parse_line(b"$PING*0000\n")
    assert caught.value.expected == crc16(b"PING") and caught.value.received == 0


def test_an_unknown_verb_is_reported_with_its_name() -> None:
    with pytest.raises(UnknownVerb) as caught:
        parse_line(b"$REBOOT*7210")
    assert caught.value.verb == "REBOOT"


def test_invalid_utf8_in_a_human_line_is_replaced_not_raised() -> None:
    parsed = parse_line(b"\xff\xfeVEND:1\xc3\n")
    assert parsed == HumanLine("\ufffd\ufffdVEND:1\ufffd")


def test_invalid_utf8_in_a_machine_line_is_a_syntax_error() -> None:
    body = b"PING x=\xff"
    with pytest.raises(MalformedLine):
        parse_line(b"$" + body + b"*" + f"{crc16(body):04X}".encode())


def test_a_100_kb_line_is_too_long_and_reports_its_length() -> None:
    with pytest.raises(LineTooLong) as caught:
        parse_line(b"$" + b"A" * 100_000 + b"\n")
    assert caught.value.length == 100_001
    assert caught.value.head == b"$" + b"A" * 31


def test_a_message_with_bad_field_values_cannot_be_built() -> None:
    for build in (
        lambda: Vend(id="has space", slot=1),
        lambda: Vend(id="A" * 17, slot=1),
        lambda: Vend(id="A1", slot=-1),
        lambda: Vend(id="A1", slot=True),
        lambda: Done(id="A1", result="failed"),
        lambda: Done(id="A1", result="success", reason="jam"),
        lambda: State(id="A1", state="lost"),
        lambda: Pong(boot="deadbeef", state="ready"),
        lambda: Ping(extra=(("Bad", "x"),)),
        lambda: Vend(id="A1", slot=1, extra=(("slot", "2"),)),
    ):
        with pytest.raises(MalformedLine):
            build()


def test_formatting_a_message_longer_than_the_limit_raises_line_too_long() -> None:
    with pytest.raises(LineTooLong):
        format_line(Ping(extra=(("pad", "A" * 300),)))


def test_formatting_uses_the_canonical_field_order_with_extras_last() -> None:
    msg = parse_line(b"$VEND x=1 slot=2 id=ab*" + f"{crc16(b'VEND x=1 slot=2 id=ab'):04X}".encode())
    assert msg == Vend(id="ab", slot=2, extra=(("x", "1"),))
    assert format_line(msg).startswith(b"$VEND id=ab slot=2 x=1*")


def test_the_protocol_package_imports_only_the_standard_library_and_itself() -> None:
    import ast
    from pathlib import Path

    # Pure computation only: hashing and HMAC for the WiFi signatures, reading the `revoked`
    # answer's JSON, no I/O of any kind.
    allowed = {"__future__", "binascii", "collections", "dataclasses", "enum", "hashlib", "hmac",
               "json", "re", "typing"}
    package = Path(__file__).parent.parent / "src" / "vending" / "protocol"
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in allowed, f"{source.name} imports {name}"
