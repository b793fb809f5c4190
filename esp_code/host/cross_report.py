"""Sizes of the firmware core as built for the chips, checked against budgets.

Run by `make -C esp_code cross-test` after the rv32imc (ESP32-C3) and lx106 (ESP8266) builds:
prints code size (flash), static RAM and the largest stack frames, fails when a budget is
exceeded, and with --record rewrites the figures in esp_code/README.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

BEGIN, END = "<!-- cross-sizes:begin -->", "<!-- cross-sizes:end -->"


def berkeley(size_tool: str, objects: list[Path]) -> tuple[int, int, int]:
    """Total text (code and constants), data and bss of some objects."""
    out = subprocess.run([size_tool, "-t", *map(str, objects)], capture_output=True, text=True,
                         check=True).stdout
    text, data, bss = out.strip().splitlines()[-1].split()[:3]
    return int(text), int(data), int(bss)


def stack_frames(build: Path) -> list[tuple[int, str]]:
    """(bytes, function) for every function GCC's -fstack-usage reported, largest first."""
    frames = []
    for path in build.glob("*.su"):
        for line in path.read_text().splitlines():
            where, size, _kind = line.rsplit("\t", 2)
            name = where.split(":", 3)[-1]
            frames.append((int(size), name))
    return sorted(frames, reverse=True)


def object_sizes(nm_tool: str, probe: Path) -> dict[str, int]:
    """The vc_size_* arrays of the probe object: sizeof each class the sketches keep."""
    out = subprocess.run([nm_tool, "-S", str(probe)], capture_output=True, text=True,
                         check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith("vc_size_"):
            sizes[parts[3][len("vc_size_"):]] = int(parts[1], 16)
    return sizes


def main() -> int:
    """Print the figures, check the budgets, optionally record them; 1 when over budget."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", type=Path, required=True)
    ap.add_argument("--size", default="riscv64-unknown-elf-size")
    ap.add_argument("--nm", default="riscv64-unknown-elf-nm")
    ap.add_argument("--lx-size", default="xtensa-lx106-elf-size")
    ap.add_argument("--budget-flash", type=int, required=True)
    ap.add_argument("--budget-static-ram", type=int, required=True)
    ap.add_argument("--budget-sketch-ram", type=int, required=True)
    ap.add_argument("--budget-stack", type=int, required=True)
    ap.add_argument("--record", type=Path, help="README.md whose figures to rewrite")
    args = ap.parse_args()

    rv = args.build / "rv32"
    core = sorted(p for p in rv.glob("vc_*.o"))
    text, data, bss = berkeley(args.size, core)
    sizes = object_sizes(args.nm, rv / "cross_probe.o")
    serial_ram = sizes["VendEngine"] + sizes["SerialBoard"]
    wifi_ram = sizes["VendEngine"] + sizes["WifiBoard"]
    frames = stack_frames(rv)
    lx = sorted((args.build / "lx106").glob("vc_*.o"))
    lx_text, lx_data, lx_bss = berkeley(args.lx_size, lx) if lx else (0, 0, 0)

    lines = [
        "| figure (vending_core, GCC 12 -Os) | rv32imc (ESP32-C3) | lx106 (ESP8266) | budget |",
        "|---|---|---|---|",
        f"| flash: code and constants | {text + data} B | {lx_text + lx_data} B |"
        f" {args.budget_flash} B |",
        f"| static RAM of the library (data + bss) | {data + bss} B | {lx_data + lx_bss} B |"
        f" {args.budget_static_ram} B |",
        f"| static objects of the serial sketch (VendEngine + SerialBoard) | {serial_ram} B | |"
        f" {args.budget_sketch_ram} B |",
        f"| static objects of the WiFi sketch (VendEngine + WifiBoard) | {wifi_ram} B | |"
        f" {args.budget_sketch_ram} B |",
        f"| largest stack frame | {frames[0][0]} B | | {args.budget_stack} B |",
        "",
        "Largest stack frames (rv32imc):",
        "",
        *[f"- {size} B `{name}`" for size, name in frames[:5]],
    ]
    print("\n".join(lines))

    over = []
    if text + data > args.budget_flash:
        over.append(f"flash {text + data} B > {args.budget_flash} B")
    if data + bss > args.budget_static_ram:
        over.append(f"static RAM {data + bss} B > {args.budget_static_ram} B")
    if max(serial_ram, wifi_ram) > args.budget_sketch_ram:
        over.append(f"sketch objects {max(serial_ram, wifi_ram)} B > {args.budget_sketch_ram} B")
    if frames[0][0] > args.budget_stack:
        over.append(f"stack frame {frames[0][0]} B ({frames[0][1]}) > {args.budget_stack} B")

    if args.record:
        readme = args.record.read_text()
        block = f"{BEGIN}\n" + "\n".join(lines) + f"\n{END}"
        updated, n = re.subn(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _m: block, readme,
                             flags=re.S)
        if n != 1:
            print(f"{args.record} has no {BEGIN} ... {END} section", file=sys.stderr)
            return 1
        args.record.write_text(updated)
        print(f"recorded in {args.record}")
    for problem in over:
        print(f"OVER BUDGET: {problem}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
