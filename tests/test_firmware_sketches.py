"""Both sketches through arduino-builder, the Arduino IDE's own build steps, at warnings "all".

No ESP32 toolchain can be installed here, so the boards are stand-ins
(esp_code/host/arduino_standin): the core 2.x and 3.x APIs as declared in
esp_code/host/arduino_stubs, compiled by the host's g++ at -Os and linked against the
pin-recording stand-in core. The sketch preprocessing, library discovery (vending_core,
vending_glue) and the warning flags are arduino-builder's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from firmware_support import ESP_CODE, firmware_build, missing_or_skip


def test_both_sketches_build_with_arduino_builder_at_warnings_all_for_core_2_and_3(
        tmp_path: Path) -> None:
    firmware_build()
    missing = [t for t in ("arduino-builder", "arduino-ctags") if shutil.which(t) is None]
    missing_or_skip("arduino-builder check", missing)
    result = subprocess.run(["make", "-C", str(ESP_CODE), f"BUILD={tmp_path}", "arduino-check"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for core in ("core2", "core3"):
        for sketch in ("esp32_mock_vend", "esp32_wifi_vend"):
            assert f"{sketch} built for the {core} stand-in at warnings=all" in result.stdout
            assert (tmp_path / "arduino" / f"{core}-{sketch}" / f"{sketch}.ino.elf").exists()
