"""The firmware's plain C++ core, built with g++ -Wall -Wextra -Werror and unit-tested on the host."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from firmware_support import ESP_CODE, VECTORS, WIFI_VECTORS, firmware_build


def test_the_core_compiles_warning_free_and_passes_its_unit_tests_on_the_shared_vectors() -> None:
    build = firmware_build()
    result = subprocess.run([str(build.core_tests), str(VECTORS), str(WIFI_VECTORS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
    assert "valid" in result.stdout  # it really read the vectors files
    assert "discovery_check" in result.stdout


def test_the_core_never_includes_arduino_headers() -> None:
    sources = list((ESP_CODE / "lib" / "vending_core" / "src").glob("*.*"))
    assert sources
    for path in sources:
        includes = [line for line in path.read_text().splitlines() if line.startswith("#include")]
        assert includes, path.name
        for line in includes:
            assert "Arduino" not in line and "WiFi" not in line and "esp_" not in line, line


MUTATIONS = {
    "a wrong CRC initial value": (
        "vc_crc16.cpp", "uint16_t crc = 0xFFFF;", "uint16_t crc = 0x0000;", "crc vector matches"),
    "an exactly-once memory that forgets every id": (
        "vc_engine.cpp", "if (known != nullptr) {", "if (known == nullptr && false) {",
        "a repeated id is answered from memory"),
    "a vend that is not written down before ACK": (
        "vc_engine.cpp", "Entry& running = memory_.remember(id, slot, EntryState::Running, \"\");\n"
        "  if (!persist()) {", "Entry& running = memory_.remember(id, slot, EntryState::Running, \"\");\n"
        "  if (false) {", "a vend persists running before ACK"),
    "a WiFi board that takes any answer as the server's": (
        "vc_wifi.cpp", "return constantTimeEqual(want, given, 32);\n}\n\nuint32_t RequestCounter",
        "return true;\n}\n\nuint32_t RequestCounter",
        "an answer with a forged signature is dropped: no motor run"),
    "a paired WiFi board that follows an unsigned discovery reply": (
        "vc_wifi.cpp", 'if (strcmp(out.mac, "-") == 0) return ReplyVerdict::Unsigned;',
        'if (strcmp(out.mac, "-") == 0) return ReplyVerdict::Accept;',
        "wifi vector: a board takes only the discovery replies the server's code accepts"),
    "a paired WiFi board that forgets its key on any 401": (
        "vc_wifi_board.cpp", "return Answer::Revoked;\n    }\n    return Answer::Refused;",
        "return Answer::Revoked;\n    }\n    return Answer::Revoked;",
        "a 401 not signed with the board's key never makes it forget the key"),
    "a revoked answer believed without its signature": (
        "vc_wifi.cpp", "if (status != 401) return false;\n  if (!verifyResponse(",
        "if (status != 401) return false;\n  if (false && !verifyResponse(",
        "wifi vector: only the server's signed revoked answer makes a board forget its key"),
    "a canonical request string without the body hash": (
        "vc_wifi.cpp", 'deviceId, "\\n", count, "\\n", hash};', 'deviceId, "\\n", count, "\\n", ""};',
        "wifi vector: canonical request string and signature"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_broken_core_makes_its_unit_tests_fail(mutation: str, tmp_path: Path) -> None:
    firmware_build()  # skips when there is no compiler
    name, old, new, failing = MUTATIONS[mutation]
    copy = tmp_path / "esp_code"
    shutil.copytree(ESP_CODE, copy, ignore=shutil.ignore_patterns("build"))
    source = copy / "lib" / "vending_core" / "src" / name
    text = source.read_text()
    assert old in text, f"the mutation no longer applies to {name}"
    source.write_text(text.replace(old, new))
    built = subprocess.run(["make", "-C", str(copy), f"BUILD={tmp_path / 'b'}",
                            str(tmp_path / "b" / "core_tests")], capture_output=True, timeout=300)
    assert built.returncode == 0, built.stderr
    result = subprocess.run([str(tmp_path / "b" / "core_tests"), str(VECTORS), str(WIFI_VECTORS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"FAIL {failing}" in result.stdout


def test_both_sketches_type_check_against_the_arduino_api_stand_ins(tmp_path: Path) -> None:
    # No ESP32 toolchain here: this catches typos and drift between the shells and the core.
    firmware_build()
    result = subprocess.run(["make", "-C", str(ESP_CODE), f"BUILD={tmp_path}", "check-sketches"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_wifi_sketch_ships_an_example_secrets_file_and_git_ignores_the_real_one() -> None:
    assert (ESP_CODE / "esp32_wifi_vend" / "secrets.example.h").exists()
    ignored = subprocess.run(["git", "check-ignore", "-q", "esp_code/esp32_wifi_vend/secrets.h"],
                             cwd=ESP_CODE.parent, timeout=30)
    assert ignored.returncode == 0


def test_the_core_builds_warning_free_and_passes_its_unit_tests_at_minus_os(tmp_path: Path) -> None:
    # GCC 12 sees more at -Os, as the Arduino IDE builds: an uninitialised read hid there.
    firmware_build()
    result = subprocess.run(["make", "-C", str(ESP_CODE), f"BUILD={tmp_path}", "test-os"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout


def test_the_firmware_library_has_no_hand_written_crypto() -> None:
    # SHA-256's first round constant and TweetNaCl's 121665: only the test-only portable code
    # (esp_code/host/portable/) may hold them; the chip and the PC use mbedTLS.
    library = ESP_CODE / "lib"
    markers = ("0x428a2f98", "0xDB41", "121665")
    for path in library.rglob("*.*"):
        text = path.read_text()
        for marker in markers:
            assert marker not in text, f"{path.relative_to(ESP_CODE)} holds {marker}"
    portable = "".join(p.read_text() for p in (ESP_CODE / "host" / "portable").glob("*.cpp"))
    assert "0x428a2f98" in portable and "FOR TEST TARGETS ONLY" in portable
