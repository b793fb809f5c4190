"""What importing the wire codec costs, and the CRC of a machine line.

Run: python bench/bench_imports.py [--repeats 15]

Import: a fresh interpreter per run imports `vending.protocol` (what a board tool or a test of
the codec needs); the baseline, measured in the same run, is an interpreter that imports nothing
of ours. Also counted: the modules loaded and whether Flask came with them.
CRC-16/CCITT-FALSE over a typical v2 line: binascii.crc_hqx (what crc16 uses) against the
table-driven pure-Python loop it replaced, both timed here.
"""

from __future__ import annotations

import argparse
import binascii
import statistics
import subprocess
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import sys, time; t = time.perf_counter(); {stmt}; d = time.perf_counter() - t;"
         " print(d, len(sys.modules), 'flask' in sys.modules)")


def import_figures(stmt: str, repeats: int) -> tuple[float, int, bool]:
    """(median seconds, modules loaded, Flask loaded) for `stmt` in fresh interpreters."""
    times, modules, flask = [], 0, False
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", PROBE.format(stmt=stmt)], capture_output=True,
                              text=True, check=True, cwd=ROOT)
        seconds, count, has_flask = done.stdout.split()
        times.append(float(seconds))
        modules, flask = int(count), has_flask == "True"
    return statistics.median(times), modules, flask


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


TABLE = _table()


def table_crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ TABLE[(crc >> 8) ^ byte]
    return crc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    base, base_modules, _ = import_figures("pass", args.repeats)
    codec, codec_modules, codec_flask = import_figures("import vending.protocol", args.repeats)
    root, root_modules, root_flask = import_figures("import vending", args.repeats)
    print(f"import, median of {args.repeats} fresh interpreters:")
    print(f"  nothing of ours (baseline)  {base * 1000:7.2f} ms  {base_modules:4d} modules")
    print(f"  import vending.protocol     {codec * 1000:7.2f} ms  {codec_modules:4d} modules"
          f"  flask loaded: {codec_flask}")
    print(f"  import vending              {root * 1000:7.2f} ms  {root_modules:4d} modules"
          f"  flask loaded: {root_flask}")

    sys.path.insert(0, str(ROOT / "src"))
    from vending.protocol import Vend, crc16, format_line

    line = format_line(Vend(id="a1b2c3d4e5f6", slot=3)).rsplit(b"*", 1)[0]
    assert crc16(line) == table_crc16(line) == binascii.crc_hqx(line, 0xFFFF)
    number = 20000
    fast = min(timeit.repeat(lambda: crc16(line), number=number, repeat=5)) / number
    slow = min(timeit.repeat(lambda: table_crc16(line), number=number, repeat=5)) / number
    print(f"CRC-16 of a {len(line)}-byte line, best of 5 x {number}:")
    print(f"  table in Python (baseline)  {slow * 1e6:7.3f} us")
    print(f"  binascii.crc_hqx            {fast * 1e6:7.3f} us   ratio {slow / fast:.1f}x faster")


if __name__ == "__main__":
    main()
