"""The flashing instructions in esp_code/README.md never write over the board's NVS.

Core 3.x also produces a merged image; written at 0x0 it is padded over the NVS partition,
so every update would erase the exactly-once journal and the pairing secret.
"""

from __future__ import annotations

import re

from firmware_support import ESP_CODE

# The default partition scheme of arduino-esp32 (2.x and 3.x): NVS at 0x9000, 20 KB.
NVS = range(0x9000, 0xE000)
# The most each image can span from its offset: the bootloader ends where the partition
# table starts, the table is one 3 KB sector, boot_app0 is the 8 KB otadata partition.
SPAN = {"bootloader": 0x7000, "partitions": 0xC00, "boot_app0": 0x2000, "ino.bin": 0x140000}

# What the README said before (core 3.x's merged image at 0x0, esptool v4 spelling).
OLD_INSTRUCTIONS = """
```bash
esptool.py --chip esp32 --port /dev/ttyUSB0 --baud 460800 write_flash 0x0 esp32_mock_vend.ino.merged.bin
```
"""


def flash_commands(readme: str) -> list[str]:
    """Every esptool write command in the README's code blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line for line in lines if re.search(r"\besptool(\.py)?\b.*write", line)]


def problems(readme: str) -> list[str]:
    """What is wrong with the README's flashing commands; empty when nothing."""
    found = []
    commands = flash_commands(readme)
    if not commands:
        found.append("no esptool command")
    for command in commands:
        if "write-flash" not in command or "esptool.py" in command:
            found.append(f"esptool v5 spells it `esptool ... write-flash`: {command}")
        if "merged" in command:
            found.append(f"a merged image overwrites NVS: {command}")
        tail = re.split(r"write[-_]flash", command, maxsplit=1)[-1]
        kinds = set()
        for offset, image in re.findall(r"(0x[0-9a-fA-F]+)\s+(\S+)", tail):
            kind = next((k for k in SPAN if k in image.lower()), None)
            if kind is None:
                found.append(f"unknown image {image}")
                continue
            kinds.add(kind)
            start = int(offset, 16)
            if start < NVS.stop and start + SPAN[kind] > NVS.start:
                found.append(f"{image} at {offset} reaches into NVS")
        if kinds != set(SPAN):
            found.append(f"not all four images (boot_app0 at 0xe000 too): {command}")
    return found


def test_the_readme_flashes_each_image_at_its_offset_and_never_over_nvs() -> None:
    readme = (ESP_CODE / "README.md").read_text()
    assert problems(readme) == []
    assert "arduino-cli upload" in readme


def test_the_old_merged_image_instruction_is_refused() -> None:
    found = problems(OLD_INSTRUCTIONS)
    assert any("merged image" in p for p in found) and any("write-flash" in p for p in found)
