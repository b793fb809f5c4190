"""Both sketches booted on a stand-in core that records every pin (esp_code/host/pinsim).

The stand-in follows each core's rules: a pin drives nothing until pinMode(OUTPUT), then the
level in its output latch (0 after reset); core 3.x ignores digitalWrite() on a pin that is
not an output yet. With an active-LOW relay board, a sketch that writes "off" before pinMode
therefore switches every motor on under core 3.x until the engine starts.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from firmware_support import ESP_CODE, firmware_build

SKETCHES = ("esp32_mock_vend", "esp32_wifi_vend")


def motor_pins(sketch: str) -> list[int]:
    """The MOTOR_PINS of a sketch's config.h."""
    text = (ESP_CODE / sketch / "config.h").read_text()
    found = re.search(r"#define MOTOR_PINS \{([^}]*)\}", text)
    assert found, "config.h has no MOTOR_PINS"
    return [int(p) for p in found.group(1).split(",")]


@pytest.fixture(scope="module")
def pinsim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    firmware_build()  # skips without a compiler
    build = tmp_path_factory.mktemp("pinsim")
    result = subprocess.run(["make", "-C", str(ESP_CODE), f"BUILD={build}", "boot-pins"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return build / "pinsim"


@pytest.mark.parametrize("active_high", [0, 1])
@pytest.mark.parametrize("core", [2, 3])
@pytest.mark.parametrize("sketch", SKETCHES)
def test_no_motor_pin_is_ever_driven_on_while_the_board_boots(
        pinsim: Path, sketch: str, core: int, active_high: int) -> None:
    run = subprocess.run([str(pinsim / f"{sketch}-core{core}-active{active_high}")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"BOOTED core={core}.x" in run.stdout and "SERIAL VENDING BOARD" in run.stdout
    on = active_high
    drives = [(int(m[1]), int(m[2]), m[3])
              for m in re.finditer(r"^DRIVE pin=(\d+) level=(\d) in=(\w+)$", run.stdout, re.M)]
    pins = motor_pins(sketch)
    for pin in pins:
        levels = [(level, phase) for p, level, phase in drives if p == pin]
        assert levels, f"motor pin {pin} is never made an output"
        assert levels[0] == (1 - on, "setup"), f"pin {pin} first driven {levels[0]}"
        assert (on, "setup") not in levels and (on, "loop") not in levels, \
            f"motor pin {pin} driven on during boot: {levels}"
