"""The firmware's JSON reader and line codec under libFuzzer for a few seconds.

Longer runs: python bench/fuzz_firmware.py --seconds 600.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from firmware_support import ESP_CODE, firmware_build, missing_or_skip

FUZZER_RUNTIME = Path("/usr/lib/llvm-14/lib/clang")


def fuzzer_runtime_present() -> bool:
    """Whether clang's libFuzzer runtime (libclang-rt-14-dev) is installed."""
    return any(FUZZER_RUNTIME.glob("*/lib/linux/libclang_rt.fuzzer-*.a"))


def test_the_json_reader_and_line_codec_survive_a_short_fuzz_run(tmp_path: Path) -> None:
    firmware_build()
    missing = [] if shutil.which("clang++") else ["clang++ (clang)"]
    if not fuzzer_runtime_present():
        missing.append("libFuzzer (libclang-rt-14-dev)")
    missing_or_skip("firmware fuzz target", missing)
    result = subprocess.run(
        ["make", "-C", str(ESP_CODE), f"BUILD={tmp_path}", "FUZZ_SECONDS=5",
         f"PYTHON={sys.executable}", "fuzz"],
        capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    runs = re.search(r"^stat::number_of_executed_units:\s+(\d+)", log, re.M)
    assert runs and int(runs[1]) > 1000, log[-2000:]
    assert not any((tmp_path / "fuzz" / "findings").iterdir())
