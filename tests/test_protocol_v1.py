"""Legacy v1 boards: their decorated lines are classified and their commands formatted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vending.protocol import (
    MalformedLine,
    V1DeviceId,
    V1Error,
    V1FirmwareVersion,
    V1Other,
    V1Separator,
    V1SlotsAvailable,
    V1VendSuccess,
    format_v1_command,
    parse_v1_line,
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("VEND_SUCCESS:3", V1VendSuccess(3, "VEND_SUCCESS:3")),
        ("✅ VEND_SUCCESS:3", V1VendSuccess(3, "✅ VEND_SUCCESS:3")),
        (
            "🎉🎉 Done! VEND_SUCCESS:5 (motor 5)\r\n",
            V1VendSuccess(5, "🎉🎉 Done! VEND_SUCCESS:5 (motor 5)"),
        ),
        (
            "DEVICE_ID:ESP32_USB_6CC8404FE03C",
            V1DeviceId("ESP32_USB_6CC8404FE03C", "DEVICE_ID:ESP32_USB_6CC8404FE03C"),
        ),
        ("FIRMWARE_VERSION:1.1", V1FirmwareVersion("1.1", "FIRMWARE_VERSION:1.1")),
        ("SLOTS_AVAILABLE:5", V1SlotsAvailable(5, "SLOTS_AVAILABLE:5")),
        ("❌ ERROR: Unknown command", V1Error("Unknown command", "❌ ERROR: Unknown command")),
        # The earlier USB firmware's own words, in mixed case.
        (
            "❌ Error: Invalid slot number. Must be 1-5",
            V1Error("Invalid slot number. Must be 1-5", "❌ Error: Invalid slot number. Must be 1-5"),
        ),
        ("error: busy", V1Error("busy", "error: busy")),
        ("No errors so far", V1Other("No errors so far")),
        ("----------", V1Separator("----------")),
        ("=== ESP32 Vending Machine Ready ===", V1Other("=== ESP32 Vending Machine Ready ===")),
        ("Commands: VEND:<n>, IDENTIFY, STATUS", V1Other("Commands: VEND:<n>, IDENTIFY, STATUS")),
    ],
)
def test_a_v1_line_is_classified_by_the_marker_inside_it(line: str, expected: object) -> None:
    assert parse_v1_line(line) == expected


def test_a_v1_line_given_as_bytes_with_bad_utf8_is_still_classified() -> None:
    assert parse_v1_line(b"\xf0\x9f VEND_SUCCESS:2\n").slot == 2


def test_a_marker_glued_to_a_longer_word_is_not_a_vend() -> None:
    assert isinstance(parse_v1_line("NO_VEND_SUCCESS:3"), V1Other)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=120) | st.text(max_size=120))
def test_parse_v1_line_never_raises(line: bytes | str) -> None:
    parse_v1_line(line)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("VEND", 3), b"VEND:3\n"),
        (("identify",), b"IDENTIFY\n"),
        (("DISCOVER",), b"DISCOVER\n"),
        (("STATUS",), b"STATUS\n"),
        (("PING",), b"PING\n"),
        (("HELP",), b"HELP\n"),
        (("RESET",), b"RESET\n"),
    ],
)
def test_v1_commands_are_formatted_as_plain_lines(args: tuple, expected: bytes) -> None:
    assert format_v1_command(*args) == expected


@pytest.mark.parametrize("args", [("VEND",), ("VEND", 0), ("VEND", True), ("STATUS", 1), ("FLY",)])
def test_bad_v1_commands_are_refused(args: tuple) -> None:
    with pytest.raises(MalformedLine):
        format_v1_command(*args)
