"""The C++ host board and the Python reference model (BoardLogic) answer the same input alike.

Each script runs through `host_board --scripted` (virtual clock, memory in a file) and
through `ReferenceScript` (BoardLogic with the same fake motor); the bytes written must
be identical, and so must the motor starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from firmware_support import (
    VECTORS,
    BoardOptions,
    ReferenceScript,
    firmware_build,
    run_host_scripted,
)
from test_protocol_vectors import unescape

from vending.protocol import BoardLogic, frame_body


def m(body: str) -> bytes:
    """A machine line with its real CRC."""
    return frame_body(body)


def script(*parts: bytes | str) -> bytes:
    """Join lines: str items are directives or human lines, bytes are raw lines."""
    out = b""
    for part in parts:
        out += part if isinstance(part, bytes) else part.encode() + b"\n"
    return out


SCRIPTS: dict[str, tuple[bytes, BoardOptions]] = {
    "normal vend, repeats, QUERY, PING and HELLO": (script(
        "@boot",
        m("VEND id=3F2A9C01B7E4 slot=3"),
        m("VEND id=3F2A9C01B7E4 slot=3"),
        m("QUERY id=3F2A9C01B7E4"), m("PING"), m("HELLO"),
        "@advance 250",
        m("VEND id=3F2A9C01B7E4 slot=4"),
        m("QUERY id=3F2A9C01B7E4"), m("QUERY id=nothere"), m("PING"),
    ), BoardOptions()),
    "refusals: not ready, invalid slot, busy, and a hand vend makes the board busy": (script(
        m("VEND id=early slot=1"),
        "VEND:1",
        "@boot",
        m("VEND id=early slot=1"),
        m("VEND id=z0 slot=0"), m("VEND id=z9 slot=9"), m("VEND id=big slot=65535"),
        "vend:2", m("VEND id=b1 slot=1"), "STATUS", "VEND:3",
        "@advance 300",
        m("VEND id=b1 slot=1"), m("VEND id=ok slot=5"), "status",
        "@advance 300",
    ), BoardOptions()),
    "NAK: re-send the last machine line at most three times, never a NAK": (script(
        m("NAK reason=crc"),
        "@boot",
        *[m("NAK reason=crc")] * 5,
        m("PING"), m("NAK reason=syntax"),
        b"$PING*0000\n", m("NAK reason=crc"), m("NAK reason=crc"),
        m("VEND id=n1 slot=2"), "@advance 250", m("NAK reason=crc"),
    ), BoardOptions()),
    "the memory keeps the last 16 ids": (script(
        "@boot",
        *[part for i in range(20) for part in (m(f"VEND id=i{i} slot={1 + i % 5}"), "@advance 201")],
        *[m(f"QUERY id=i{i}") for i in range(20)],
        m("VEND id=i0 slot=1"), "@advance 250", m("VEND id=i4 slot=1"),
    ), BoardOptions()),
    "a reboot mid-vend reports interrupted and never turns the motor again": (script(
        "@boot",
        m("VEND id=done1 slot=1"), "@advance 250",
        m("VEND id=cut1 slot=2"), "@advance 50",
        "@reboot 9D04C2B7",
        m("QUERY id=cut1"), m("QUERY id=done1"), m("VEND id=cut1 slot=2"), m("PING"),
        "@advance 500",
        "@reboot 0BADF00D",
        m("QUERY id=cut1"),
    ), BoardOptions()),
    "the watchdog cuts a motor that runs too long": (script(
        "@boot", m("VEND id=w1 slot=1"), "@advance 1200", m("QUERY id=w1"),
        "VEND:2", "@advance 1200",
    ), BoardOptions(motor_ms=5000, max_run_ms=1000)),
    "with a sensor an item falling is success": (script(
        "@boot", m("VEND id=s1 slot=1"), "@advance 150", m("VEND id=s2 slot=2"), "@advance 150",
    ), BoardOptions(sensor_ms=120)),
    "with a jammed slot the vend fails with jam": (script(
        "@boot", m("VEND id=j1 slot=1"), "@advance 600", m("QUERY id=j1"), "VEND:1", "@advance 600",
    ), BoardOptions(jam=True, jam_ms=500)),
    "human commands answer in words": (script(
        "@boot", "HELP", "help", "IDENTIFY", "discover", "STATUS", "ping", "  status  ",
        "\tHELP\r", "VEND:", "VEND:x", "VEND:0", "VEND:6", "VEND: 2", "VEND:007",
        "@advance 250", "vend:99999999999999999999", "what", "", "   ", "HELLO",
    ), BoardOptions()),
    "board-to-server verbs are ignored and a CR before the newline is fine": (script(
        "@boot", m("ACK id=x"), m("DONE id=x result=success"), m("PONG boot=0BADF00D state=ready"),
        m("STATE id=x state=unseen"), m("ID dev=a fw=b proto=2 slots=5 boot=0BADF00D"),
        m("PING")[:-1] + b"\r\n", b"\n\r\n", m("PING future=1"),
    ), BoardOptions()),
}


def _vectors_script() -> bytes:
    lines = [b"@boot\n"]
    for raw in VECTORS.read_text(encoding="utf-8").splitlines():
        if not raw or raw.startswith("#"):
            continue
        cols = raw.split("\t")
        if cols[0] in ("valid", "human", "invalid"):
            lines.append(unescape(cols[1]) + b"\n")
    return b"".join(lines)


SCRIPTS["every line of the shared vectors file"] = (_vectors_script(), BoardOptions())


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_cpp_board_and_the_python_model_write_the_same_bytes(name: str, tmp_path: Path) -> None:
    build = firmware_build()
    data, options = SCRIPTS[name]
    cpp_out, cpp_starts = run_host_scripted(build, data, options, tmp_path)
    reference = ReferenceScript(BoardOptions(**vars(options)))
    py_out = reference.run(data)
    assert cpp_out.decode(errors="replace").splitlines() == py_out.decode(
        errors="replace").splitlines()
    assert cpp_out == py_out
    assert cpp_starts == reference.starts


def test_a_reboot_mid_vend_runs_the_motor_once_on_both_sides(tmp_path: Path) -> None:
    build = firmware_build()
    data, options = SCRIPTS["a reboot mid-vend reports interrupted and never turns the motor again"]
    cpp_out, cpp_starts = run_host_scripted(build, data, options, tmp_path)
    assert cpp_starts == ["start slot=1", "start slot=2"]
    assert cpp_out.count(m("STATE id=cut1 state=interrupted")) == 3
    assert b"result=success" not in cpp_out.split(b"boot=9D04C2B7")[1]


def test_a_python_model_that_forgets_request_ids_no_longer_matches_the_firmware(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The differential test guards the Python side too: break its exactly-once memory.
    build = firmware_build()
    data, options = SCRIPTS["normal vend, repeats, QUERY, PING and HELLO"]
    cpp_out, _ = run_host_scripted(build, data, options, tmp_path)

    original = BoardLogic.motor_finished

    def finish_and_forget(self: BoardLogic, *args, **kwargs) -> list:
        actions = original(self, *args, **kwargs)
        self._memory.clear()
        return actions

    monkeypatch.setattr(BoardLogic, "motor_finished", finish_and_forget)
    reference = ReferenceScript(BoardOptions(**vars(options)))
    assert reference.run(data) != cpp_out
    assert len(reference.starts) == 2  # the repeat after DONE turned the motor again
