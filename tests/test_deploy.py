"""The Raspberry Pi deployment: systemd unit, install script, udev rule."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vending.devices.usb_bridges import ESP32_BRIDGES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "vending-machine.service"
INSTALL = DEPLOY / "install-pi.sh"
RULES = DEPLOY / "99-esp32-serial.rules"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    """The unit as install-pi.sh writes it, pointing at a project dir whose python exists."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("")
    unit = tmp_path / "vending-machine.service"
    unit.write_text(UNIT.read_text().replace("/opt/flask-vending-machine", str(tmp_path)))
    return unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(installed_unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(installed_unit)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert installed_unit.name not in done.stderr, done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_rates_the_sandbox_as_ok_or_better(installed_unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(installed_unit)],
                          capture_output=True, text=True, timeout=60)
    if "offline" in done.stderr and done.returncode != 0:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline: {done.stderr.strip()}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout + done.stderr)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= 5.0


def test_the_unit_runs_unprivileged_from_the_venv_with_serial_access_and_a_sandbox() -> None:
    settings = unit_settings()
    assert settings["User"] == ["vending"]
    assert settings["SupplementaryGroups"] == ["dialout"]
    assert settings["ExecStart"][0].startswith("/opt/flask-vending-machine/venv/bin/python ")
    assert settings["Restart"] == ["on-failure"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["PrivateTmp"] == ["yes"]
    assert settings["StateDirectory"] == ["vending-machine"]
    assert settings["Environment"].count("VENDING_DATA_DIR=/var/lib/vending-machine") == 1
    # Serial ports and UDP broadcast must stay usable.
    assert settings.get("PrivateDevices", ["no"]) == ["no"]
    assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(settings["DeviceAllow"])
    assert "AF_INET" in settings["RestrictAddressFamilies"][0].split()
    assert "PrivateNetwork" not in settings


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (apt-get install shellcheck)")
@pytest.mark.parametrize("script", [INSTALL, ROOT / "start.sh", ROOT / "test.sh",
                                    ROOT / ".ci" / "run"], ids=lambda path: path.name)
def test_the_shell_scripts_pass_shellcheck(script: Path) -> None:
    done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_the_install_script_dry_run_says_every_step_it_would_take(tmp_path: Path) -> None:
    env = dict(os.environ, DRY_RUN="1", INSTALL_DIR=str(tmp_path / "opt"))
    done = subprocess.run(["bash", str(INSTALL), "--no-apt"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for step in ("python3 -m venv", "pip install --quiet -r", "99-esp32-serial.rules",
                 "udevadm control --reload-rules", "systemctl enable vending-machine.service",
                 "systemctl restart vending-machine.service", "dialout"):
        assert step in out, step
    assert "apt-get" not in out
    assert not (tmp_path / "opt").exists()


def test_the_install_script_refuses_an_unknown_option() -> None:
    done = subprocess.run(["bash", str(INSTALL), "--frobnicate"], capture_output=True, text=True,
                          env=dict(os.environ, DRY_RUN="1"), timeout=60)
    assert done.returncode == 2
    assert "unknown option" in done.stderr


def test_the_udev_rule_names_every_esp32_bridge_that_check_system_knows() -> None:
    text = RULES.read_text()
    for vid, pid in ESP32_BRIDGES:
        vendor = f'ENV{{ID_VENDOR_ID}}=="{vid:04x}"'
        if pid is None:
            assert re.search(re.escape(vendor) + r', ENV\{ESP32_BRIDGE\}', text), f"{vid:04x}:*"
        else:
            assert f'{vendor}, ENV{{ID_MODEL_ID}}=="{pid:04x}"' in text, f"{vid:04x}:{pid:04x}"
    assert 'SYMLINK+="esp32-$env{ID_SERIAL_SHORT}"' in text
    assert 'GROUP="dialout"' in text


def test_the_installer_and_the_docs_name_the_mdns_address_the_server_advertises(tmp_path: Path) -> None:
    from vending import Config

    address = f"http://{Config().mdns_name}.local:{Config().port}"
    env = dict(os.environ, DRY_RUN="1", INSTALL_DIR=str(tmp_path / "opt"))
    done = subprocess.run(["bash", str(INSTALL), "--no-apt"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert address in done.stdout
    assert "sign in once" in done.stdout
    docs = (ROOT / "docs" / "raspberry-pi.md").read_text(encoding="utf-8")
    assert address in docs and "admin_token" in docs and "sign in once" in docs


def test_the_sign_in_line_the_docs_grep_for_is_in_the_banner(tmp_path: Path) -> None:
    from helpers import test_config

    from vending.startup import banner

    text = banner(test_config(tmp_path, host="192.0.2.10", port=5000), [], tmp_path / "admin_token")
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if "sign in once" in line)
    # The line after it is the command that prints the link (the token is never printed).
    assert lines[index + 1].strip().endswith(
        f"-m vending.doctor --sign-in-link --url http://192.0.2.10:5000 --data-dir {tmp_path}")


def test_the_pi_service_runs_without_the_simulator() -> None:
    from vending.config import config_from_args

    settings = unit_settings()
    environ = dict(value.split("=", 1) for value in settings["Environment"])
    argv = settings["ExecStart"][0].split()[2:]
    config = config_from_args(argv, environ)
    assert config.simulator is False
