#!/usr/bin/env python3
"""System check for the vending machine controller: `python check_system.py --help`.

Runs five tests (system, Python environment, ESP32 module, Flask application, server
connection) and prints, for every problem, what to run or change. The checks live in
src/vending/doctor/; this entry point finds them in this checkout, so it works with any
Python 3 before the requirements are installed, and reports the missing packages.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from vending.doctor import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
