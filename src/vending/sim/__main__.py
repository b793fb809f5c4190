"""`python -m vending.sim <kind> ...`: one subcommand per simulated board kind."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand -> module in this package that provides add_arguments(parser) and run(args).
KINDS = {"wifi": "wifi"}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the chosen simulator."""
    parser = argparse.ArgumentParser(prog="python -m vending.sim",
                                     description="Simulated vending boards.")
    sub = parser.add_subparsers(dest="kind", required=True)
    modules = {}
    for kind, module_name in KINDS.items():
        module = importlib.import_module(f"{__package__}.{module_name}")
        modules[kind] = module
        module.add_arguments(sub.add_parser(kind, help=module.__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    return modules[args.kind].run(args)


if __name__ == "__main__":
    sys.exit(main())
