"""`python -m vending.doctor`: the same as `python check_system.py`."""

import sys

from . import main

sys.exit(main())
