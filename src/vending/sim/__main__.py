"""`python -m vending.sim <kind> [...]`: run a simulated board."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per kind of simulated board."""
    parser = argparse.ArgumentParser(prog="python -m vending.sim",
                                     description="Run a simulated vending board.")
    sub = parser.add_subparsers(dest="kind", required=True)
    from . import serial as serial_sim

    serial_parser = sub.add_parser("serial", help="a USB serial board on a pseudo-terminal (POSIX)")
    serial_sim.add_arguments(serial_parser)
    serial_parser.set_defaults(main=serial_sim.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.main(args))


if __name__ == "__main__":
    sys.exit(main())
