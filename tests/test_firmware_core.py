"""The firmware's plain C++ core, built with g++ -Wall -Wextra -Werror and unit-tested on the host."""

from __future__ import annotations

import subprocess

from firmware_support import ESP_CODE, VECTORS, firmware_build


def test_the_core_compiles_warning_free_and_passes_its_unit_tests_on_the_shared_vectors() -> None:
    build = firmware_build()
    result = subprocess.run([str(build.core_tests), str(VECTORS)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
    assert "valid" in result.stdout  # it really read the vectors file


def test_the_core_never_includes_arduino_headers() -> None:
    sources = list((ESP_CODE / "lib" / "vending_core" / "src").glob("*.*"))
    assert sources
    for path in sources:
        includes = [line for line in path.read_text().splitlines() if line.startswith("#include")]
        assert includes, path.name
        for line in includes:
            assert "Arduino" not in line and "WiFi" not in line and "esp_" not in line, line


def test_a_broken_checksum_in_the_core_makes_the_vector_tests_fail(tmp_path) -> None:
    # Mutation check: build a copy of the core with a wrong CRC initial value.
    import shutil

    copy = tmp_path / "esp_code"
    shutil.copytree(ESP_CODE, copy, ignore=shutil.ignore_patterns("build"))
    crc = copy / "lib" / "vending_core" / "src" / "vc_crc16.cpp"
    crc.write_text(crc.read_text().replace("uint16_t crc = 0xFFFF;", "uint16_t crc = 0x0000;"))
    firmware_build()  # skips when there is no compiler
    built = subprocess.run(["make", "-C", str(copy), f"BUILD={tmp_path / 'b'}",
                            str(tmp_path / "b" / "core_tests")], capture_output=True, timeout=300)
    assert built.returncode == 0, built.stderr
    result = subprocess.run([str(tmp_path / "b" / "core_tests"), str(VECTORS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "crc vector matches" in result.stdout
