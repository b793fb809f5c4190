"""Coverage-guided fuzzing of the firmware's JSON reader and line codec (C++, libFuzzer).

Run: python bench/fuzz_firmware.py --seconds 600
Builds esp_code/host/fuzz_parsers.cpp with clang (-fsanitize=fuzzer,address,undefined) through
`make -C esp_code fuzz` and runs it for the given time, seeded from tests/vectors. Prints the
executions, executions per second and corpus growth; a finding stops the run and leaves the
input in esp_code/build/fuzz/findings/. CI runs the same target for a few seconds
(tests/test_firmware_fuzz.py). Needs clang and libclang-rt-14-dev (./test.sh installs them).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ESP_CODE = Path(__file__).resolve().parent.parent / "esp_code"


def main() -> int:
    """Run the fuzzer; exit status 1 when it found something."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=600)
    args = ap.parse_args()
    run = subprocess.run(
        ["make", "-C", str(ESP_CODE), "BUILD=build/fuzz-bench", f"FUZZ_SECONDS={args.seconds}",
         f"PYTHON={sys.executable}", "fuzz"],
        capture_output=True, text=True)
    log = run.stdout + run.stderr
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", log, re.M))
    print(f"seconds: {args.seconds}")
    for key in ("number_of_executed_units", "average_exec_per_sec", "new_units_added", "peak_rss_mb"):
        print(f"{key}: {stats.get(key, '?')}")
    if run.returncode != 0:
        print(log[-6000:])
        print("FINDING or build failure: see esp_code/build/fuzz-bench/fuzz/findings/")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
