"""The fault campaign at full size: vends through serial, WiFi and firmware boards under faults.

Run: python bench/fault_campaign.py --vends 10000 [--seed N] [--keep DIR]   (Linux: ptys, /proc)

The same driver as tests/test_fault_campaign.py (tests/campaign.py): the server runs as a
subprocess and is SIGKILLed and restarted; boards drop, repeat, delay and corrupt lines,
reboot before, during and after the motor, are unplugged, lose HTTP answers and their
network; the database is locked by another program, the disk (a tmpfs, as root) fills up,
every board goes offline at once beside the server's simulator, and second servers are
started on the live data directory. Prints the seed first (rerun with --seed to repeat), then
the counts, the server's resources over the steady phase, and every violated invariant; exits 1
if there was one.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The campaign driver lives with the tests, which run it at CI size.
sys.path.insert(0, str(ROOT / "tests"))

from campaign import Campaign, CampaignSettings  # noqa: E402


def firmware(skip: bool):
    """The host firmware build, or None when skipped or there is no compiler."""
    if skip:
        return None
    import pytest
    from firmware_support import firmware_build

    try:
        return firmware_build()
    except pytest.skip.Exception as exc:
        print(f"no firmware board: {exc}", flush=True)
        return None


def main(argv: list[str] | None = None) -> int:
    """Run one campaign and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vends", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--serial-boards", type=int, default=2)
    parser.add_argument("--wifi-boards", type=int, default=2)
    parser.add_argument("--no-firmware", action="store_true", help="leave out the host firmware board")
    parser.add_argument("--kills", type=int, default=None,
                        help="server SIGKILLs (default vends/1000, at least 2)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--second-servers", type=int, default=None,
                        help="second servers on the live data dir (default vends/1000, at least 2)")
    parser.add_argument("--server-fault-share", type=float, default=0.08,
                        help="share of faults that lock the database, fill the disk or take every"
                             " board offline")
    parser.add_argument("--keep", type=Path, help="copy the work directory (logs, database) here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    kills = args.kills if args.kills is not None else max(2, args.vends // 1000)
    seconds = args.second_servers if args.second_servers is not None else max(2, args.vends // 1000)
    settings = CampaignSettings(vends=args.vends, seed=seed, serial_boards=args.serial_boards,
                                wifi_boards=args.wifi_boards, clients=args.clients,
                                fault_rate=args.fault_rate, kills=kills, second_servers=seconds,
                                server_fault_share=args.server_fault_share,
                                settle=max(30.0, args.vends / 200))
    print(f"machine: {platform.machine()} cores={os.cpu_count()}"
          f" python={platform.python_version()}", flush=True)
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # A background job ignores Ctrl+C; SIGTERM also stops the server and boards it started.
    signal.signal(signal.SIGTERM, interrupt)
    with tempfile.TemporaryDirectory(prefix="fault-campaign-") as tmp:
        result = Campaign(Path(tmp), settings, firmware=firmware(args.no_firmware)).run()
        if args.keep:
            shutil.copytree(tmp, args.keep, dirs_exist_ok=True, symlinks=True)
    print(result.summary(), flush=True)
    print(f"command: python bench/fault_campaign.py --vends {args.vends} --seed {seed}", flush=True)
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
