"""Settings: defaults, environment, command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from vending.config import Config, config_from_args


def test_the_defaults_are_the_documented_ones():
    config = Config.from_env({})
    assert (config.host, config.port, config.discovery_port, config.slots) == ("0.0.0.0", 5000,
                                                                               12346, 5)
    assert config.simulator and config.serial_scan and config.discovery
    assert config.data_dir == Path("instance")
    assert config.serial_ports == []


def test_every_option_can_come_from_the_environment():
    config = Config.from_env({
        "VENDING_HOST": "127.0.0.1", "VENDING_PORT": "8080", "VENDING_DATA_DIR": "/tmp/v",
        "VENDING_SERIAL_PORTS": "/dev/ttyUSB0, socket://127.0.0.1:7000",
        "VENDING_SERIAL_SCAN": "0", "VENDING_DISCOVERY_PORT": "22346", "VENDING_DISCOVERY": "0",
        "VENDING_SIMULATOR": "0", "VENDING_SLOTS": "8",
    })
    assert config.host == "127.0.0.1" and config.port == 8080
    assert config.data_dir == Path("/tmp/v")
    assert config.serial_ports == ["/dev/ttyUSB0", "socket://127.0.0.1:7000"]
    assert not config.serial_scan and not config.discovery and not config.simulator
    assert config.discovery_port == 22346 and config.slots == 8


def test_command_line_flags_override_the_environment():
    config = config_from_args(
        ["--port", "9000", "--serial-port", "/dev/pts/3", "--serial-port", "/dev/pts/4",
         "--no-serial-scan", "--no-discovery", "--no-simulator", "--slots", "3",
         "--data-dir", "/tmp/x", "--discovery-port", "30000", "--host", "127.0.0.1", "--dev"],
        {"VENDING_PORT": "8080", "VENDING_SLOTS": "8"},
    )
    assert config.port == 9000 and config.slots == 3
    assert config.serial_ports == ["/dev/pts/3", "/dev/pts/4"]
    assert not config.serial_scan and not config.discovery and not config.simulator
    assert config.data_dir == Path("/tmp/x") and config.discovery_port == 30000 and config.dev


def test_a_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match="VENDING_PORT"):
        Config.from_env({"VENDING_PORT": "fivethousand"})


@pytest.mark.parametrize("overrides", [{"slots": 0}, {"slots": 100}, {"port": 70000},
                                       {"device_queue_limit": 0}])
def test_impossible_settings_are_refused(overrides):
    with pytest.raises(ValueError):
        Config(**overrides)
