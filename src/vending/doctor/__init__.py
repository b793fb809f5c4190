"""The doctor: checks that this machine can run the controller, and says what to fix.

`python check_system.py` (or `python -m vending.doctor`). Standard library only until a check
needs more, so it runs, and names the missing packages, before the requirements are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import traceback
from pathlib import Path
from typing import Callable

from .checks import (
    PIP_FIX,
    ROOT,
    check_environment,
    check_esp32,
    check_flask,
    check_server,
    check_system,
    use_this_checkout,
)
from .report import FAIL, TestResult, as_json, error_text, print_report, summary

__all__ = ["TESTS", "main", "run_all"]

TESTS: list[tuple[str, Callable[[argparse.Namespace], TestResult]]] = [
    ("System Requirements", check_system),
    ("Python Environment", check_environment),
    ("ESP32 Module", check_esp32),
    ("Flask Application", check_flask),
    ("Server Connection", check_server),
]


def run_all(opts: argparse.Namespace) -> list[TestResult]:
    """Every test; a test that crashes is reported as a failure, not a traceback."""
    results = []
    for name, test in TESTS:
        try:
            results.append(test(opts))
        except Exception as exc:
            crashed = TestResult(name)
            crashed.add(FAIL, "Test crashed", error_text(exc),
                        f"{PIP_FIX}; if it persists report: {traceback.format_exc(limit=-2).strip()}")
            results.append(crashed)
    return results


def build_parser() -> argparse.ArgumentParser:
    """The options of `check_system.py`."""
    parser = argparse.ArgumentParser(prog="check_system.py",
                                     description="Check that this machine can run the vending controller.")
    parser.add_argument("--url", default="http://localhost:5000",
                        help="the running server to check; not running yet is a warning")
    parser.add_argument("--json", action="store_true", help="print machine-readable results only")
    parser.add_argument("--quiet", action="store_true", help="print only problems and the summary")
    parser.add_argument("--e2e", action="store_true",
                        help="only an end-to-end self-test without hardware: a server on free"
                             " loopback ports, a simulated serial board on a pty and a simulated"
                             " WiFi board, one vend through each")
    parser.add_argument("--http-port", type=int, default=5000, help="TCP port the server will use")
    parser.add_argument("--discovery-port", type=int, default=12346, help="UDP discovery port")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("VENDING_DATA_DIR") or ROOT / "instance"),
                        help="the server's data directory (VENDING_DATA_DIR, default instance/)")
    parser.add_argument("--port", action="append", default=[], metavar="PORT",
                        help="a serial port to try opening, e.g. /dev/ttyUSB0 or COM3; repeatable")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the server")
    return parser


def _finish(results: list[TestResult], opts: argparse.Namespace, title: str, **extra: object) -> int:
    """Print the report; 1 when a check failed, else 0."""
    code = 1 if summary(results)[FAIL] else 0
    if opts.json:
        print(json.dumps(as_json(results, code, **extra), indent=2))
    else:
        print_report(results, opts.quiet, title=title)
    return code


def main(argv: list[str] | None = None) -> int:
    """0 when nothing failed, 1 when a check failed."""
    opts = build_parser().parse_args(argv)
    import logging

    # The in-process app logs its own start and stop; only its errors belong in this report.
    logging.basicConfig(level=logging.ERROR)
    if opts.e2e:
        from .e2e import run_e2e

        report = run_e2e(opts)
        return _finish([report.result], opts, "End-to-End Self-Test", e2e=report.as_json())
    use_this_checkout()
    return _finish(run_all(opts), opts, "System Check")
