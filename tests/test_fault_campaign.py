"""The fault campaign at CI size: a few hundred vends through serial, WiFi and firmware boards
under random faults, server kills, store faults (database locked, disk full), every board
offline at once beside the simulator, and second servers on the same data directory; never two
motor runs, never a wrong recorded outcome, never a simulated success, no queue that stops.

The seed is printed (and taken from FAULT_CAMPAIGN_SEED); `bench/fault_campaign.py --vends
10000` runs the same driver at full size.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from campaign import Campaign, CampaignSettings, Run, firmware_runs
from firmware_support import firmware_build

pytestmark = pytest.mark.skipif(
    not hasattr(os, "openpty") or not Path("/proc/self/status").exists(),
    reason="the campaign needs ptys and /proc (Linux)",
)


def _firmware():
    try:
        return firmware_build()
    except pytest.skip.Exception:
        return None  # no g++ here: the campaign runs without the firmware board


def test_hundreds_of_vends_under_random_faults_never_run_a_motor_twice_or_record_a_wrong_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("FAULT_CAMPAIGN_SEED", "20261126"))
    vends = int(os.environ.get("FAULT_CAMPAIGN_VENDS", "300"))
    settings = CampaignSettings(vends=vends, seed=seed, kills=2)
    result = Campaign(tmp_path, settings, firmware=_firmware(),
                      log=lambda text: print(text, file=sys.stderr)).run()
    with capsys.disabled():
        print("\n" + result.summary())
    assert not result.violations, result.summary()
    assert result.vends == vends
    assert result.faults["server_sigkill"] == 2
    # Second servers were started on the live data dir (each had to refuse: see violations).
    assert result.faults["second_server"] == settings.second_servers
    assert sum(result.faults.values()) >= vends // 10, result.faults
    # Every outcome the server records was reached, and the faults hid some of them.
    assert result.outcomes["success"] > vends // 2, result.outcomes
    assert result.outcomes["unknown"] > 0, result.outcomes


def test_the_firmware_journal_reader_names_each_run_and_how_it_ended(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    journal.write_text("alloff\nrun id=A1 slot=2\nstart slot=2\nstop slot=2\n"
                       "run id=B2 slot=3\nstart slot=3\nalloff\nstart slot=1\nstop slot=1\n")
    assert firmware_runs(journal, "ESP32_X") == [Run("ESP32_X", "A1", "success"),
                                                 Run("ESP32_X", "B2", "interrupted")]
