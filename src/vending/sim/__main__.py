"""`python -m vending.sim <kind> ...`: one subcommand per simulated board kind."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """One subcommand per kind of simulated board; each module adds its own options."""
    from . import serial as serial_sim
    from . import wifi as wifi_sim

    parser = argparse.ArgumentParser(prog="python -m vending.sim",
                                     description="Run a simulated vending board.")
    sub = parser.add_subparsers(dest="kind", required=True)
    for kind, module, run, text in (
        ("serial", serial_sim, serial_sim.main, "a USB serial board on a pseudo-terminal (POSIX)"),
        ("wifi", wifi_sim, wifi_sim.run, "a WiFi board: discovery, pairing, long-poll"),
    ):
        kind_parser = sub.add_parser(kind, help=text)
        module.add_arguments(kind_parser)
        kind_parser.set_defaults(main=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the chosen simulator."""
    args = build_parser().parse_args(argv)
    return int(args.main(args))


if __name__ == "__main__":
    sys.exit(main())
