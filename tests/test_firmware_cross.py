"""The firmware core built for the chips' instruction sets, tested under emulation.

`make -C esp_code cross-test`: the core and its unit tests for rv32imc (the ESP32-C3's
instruction set) run under qemu-riscv32; the core compiled for lx106 (ESP8266); flash,
static RAM and stack frames checked against budgets and recorded in esp_code/README.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from firmware_support import ESP_CODE, missing_or_skip, python_module_runs

TOOLS = ("riscv64-unknown-elf-g++", "xtensa-lx106-elf-g++", "qemu-riscv32", "make")
SPECS = (Path("/usr/lib/picolibc/riscv64-unknown-elf/picolibc.specs"),
         Path("/usr/lib/xtensa-lx106-elf/picolibc.specs"))


@pytest.fixture(scope="module")
def cross_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    missing += [str(s) for s in SPECS if not s.exists()]
    if not python_module_runs("ziglang"):
        missing.append("the ziglang package (tests/requirements.txt)")
    missing_or_skip("cross build", missing)
    build = tmp_path_factory.mktemp("cross")
    result = subprocess.run(
        ["make", "-C", str(ESP_CODE), "-j2", f"BUILD={build}", f"ZIG={sys.executable} -m ziglang",
         f"PYTHON={sys.executable}", "cross-test"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def test_the_core_unit_tests_pass_on_rv32imc_under_qemu(cross_run: str) -> None:
    summary = re.search(r"^(\d+) passed, (\d+) failed$", cross_run, re.M)
    assert summary, cross_run[-2000:]
    assert int(summary[1]) > 400 and summary[2] == "0"
    assert "wifi vectors:" in cross_run  # it read the shared vectors inside the emulator


def test_the_chip_builds_stay_within_their_budgets_and_the_readme_has_the_figures(
        cross_run: str) -> None:
    flash = re.search(r"^\| flash: code and constants \| (\d+) B \| (\d+) B \| (\d+) B \|$",
                      cross_run, re.M)
    assert flash, cross_run[-2000:]
    measured, lx106, budget = map(int, flash.groups())
    assert measured <= budget and lx106 <= budget
    readme = (ESP_CODE / "README.md").read_text()
    recorded = re.search(r"\| flash: code and constants \| (\d+) B \|", readme)
    assert recorded, "esp_code/README.md has no recorded sizes (make cross-test RECORD=1)"
    # Re-record (make -C esp_code cross-test RECORD=1) when the core grows or shrinks by 5 %.
    assert abs(int(recorded[1]) - measured) <= measured // 20, (recorded[1], measured)
