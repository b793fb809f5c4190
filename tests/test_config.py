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


# Every setting declared once: environment names, options, the docs table and the sections.

# The environment variables and options of the release before settings were declared once.
EARLIER_ENV = {
    "host": ("VENDING_HOST", "127.0.0.2"), "port": ("VENDING_PORT", 8081),
    "data_dir": ("VENDING_DATA_DIR", Path("/tmp/vd")),
    "serial_ports": ("VENDING_SERIAL_PORTS", ["/dev/ttyUSB0", "/dev/ttyUSB1"]),
    "serial_scan": ("VENDING_SERIAL_SCAN", False), "serial_baudrate": ("VENDING_SERIAL_BAUDRATE", 9600),
    "serial_ack_timeout": ("VENDING_SERIAL_ACK_TIMEOUT", 0.7),
    "serial_max_retries": ("VENDING_SERIAL_MAX_RETRIES", 7),
    "serial_handshake_timeout": ("VENDING_SERIAL_HANDSHAKE_TIMEOUT", 3.5),
    "serial_ping_interval": ("VENDING_SERIAL_PING_INTERVAL", 9.0),
    "serial_rescan_interval": ("VENDING_SERIAL_RESCAN_INTERVAL", 4.0),
    "discovery_port": ("VENDING_DISCOVERY_PORT", 22346), "discovery": ("VENDING_DISCOVERY", False),
    "simulator": ("VENDING_SIMULATOR", False), "slots": ("VENDING_SLOTS", 9),
    "threads": ("VENDING_THREADS", 64), "wifi_poll_hold": ("VENDING_WIFI_POLL_HOLD", 12.0),
    "wifi_legacy_hold": ("VENDING_WIFI_LEGACY_HOLD", 1.5),
    "wifi_offline_after": ("VENDING_WIFI_OFFLINE_AFTER", 20.0),
    "wifi_max_held_polls": ("VENDING_WIFI_MAX_HELD_POLLS", 33),
    "auto_approve_devices": ("VENDING_AUTO_APPROVE_DEVICES", True),
    "sim_motor_time": ("VENDING_SIM_MOTOR_TIME", 0.25), "vend_timeout": ("VENDING_VEND_TIMEOUT", 11.0),
    "vend_max_age": ("VENDING_VEND_MAX_AGE", 12.0),
    "device_queue_limit": ("VENDING_DEVICE_QUEUE_LIMIT", 3), "log_size": ("VENDING_LOG_SIZE", 500),
    "log_level": ("VENDING_LOG_LEVEL", "DEBUG"), "mdns": ("VENDING_MDNS", False),
    "mdns_name": ("VENDING_MDNS_NAME", "shop-1"), "trust_localhost": ("VENDING_TRUST_LOCALHOST", False),
    "admin_token": ("VENDING_ADMIN_TOKEN", "a-token-of-sixteen-or-more"),
    "low_stock_level": ("VENDING_LOW_STOCK_LEVEL", 4),
    "webhook_urls": ("VENDING_WEBHOOK_URLS", ["http://127.0.0.1:9/a", "https://127.0.0.1:9/b"]),
    "webhook_secret": ("VENDING_WEBHOOK_SECRET", "s3cret"),
    "webhook_timeout": ("VENDING_WEBHOOK_TIMEOUT", 2.5),
    "auth_failure_threshold": ("VENDING_AUTH_FAILURE_THRESHOLD", 9),
    "mqtt_url": ("VENDING_MQTT_URL", "mqtt://127.0.0.1:1883/shop"),
    "mqtt_commands": ("VENDING_MQTT_COMMANDS", True),
    "mqtt_discovery_prefix": ("VENDING_MQTT_DISCOVERY_PREFIX", "ha"),
    "mqtt_reconnect_min": ("VENDING_MQTT_RECONNECT_MIN", 2.0),
    "mqtt_reconnect_max": ("VENDING_MQTT_RECONNECT_MAX", 30.0),
    "mqtt_outbox_retention_hours": ("VENDING_MQTT_OUTBOX_RETENTION_HOURS", 24.0),
    "mqtt_command_key": ("VENDING_MQTT_COMMAND_KEY", "a-command-key-of-16+"),
    "public_url": ("VENDING_PUBLIC_URL", "http://shop-1.lan:5000"),
    "fleet_url": ("VENDING_FLEET_URL", "mqtt://127.0.0.1:1883/fleet"),
    "currency": ("VENDING_CURRENCY", "USD"), "currency_decimals": ("VENDING_CURRENCY_DECIMALS", 3),
    "machine_serial": ("VENDING_MACHINE_SERIAL", "VM-0042"),
}


def as_env(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def test_every_environment_variable_of_the_earlier_release_still_sets_its_setting():
    config = Config.from_env({env: as_env(value) for env, value in EARLIER_ENV.values()})
    for name, (env, value) in EARLIER_ENV.items():
        assert getattr(config, name) == value, env


EARLIER_FLAGS = [
    (["--host", "127.0.0.3"], "host", "127.0.0.3"), (["--port", "8082"], "port", 8082),
    (["--data-dir", "/tmp/vf"], "data_dir", Path("/tmp/vf")),
    (["--serial-port", "a", "--serial-port", "b"], "serial_ports", ["a", "b"]),
    (["--no-serial-scan"], "serial_scan", False), (["--discovery-port", "1234"], "discovery_port", 1234),
    (["--no-discovery"], "discovery", False), (["--no-simulator"], "simulator", False),
    (["--slots", "7"], "slots", 7), (["--threads", "40"], "threads", 40),
    (["--auto-approve-devices"], "auto_approve_devices", True), (["--dev"], "dev", True),
    (["--log-level", "warning"], "log_level", "WARNING"), (["--no-mdns"], "mdns", False),
    (["--low-stock-level", "3"], "low_stock_level", 3),
    (["--webhook-url", "http://127.0.0.1:9/x"], "webhook_urls", ["http://127.0.0.1:9/x"]),
    (["--mqtt-url", "mqtt://127.0.0.1/x"], "mqtt_url", "mqtt://127.0.0.1/x"),
    (["--mqtt-commands"], "mqtt_commands", True),
    (["--fleet", "mqtt://127.0.0.1/f"], "fleet_url", "mqtt://127.0.0.1/f"),
    (["--fleet", "mqtt://127.0.0.1/f"], "simulator", False),
    (["--fleet", "mqtt://127.0.0.1/f", "--simulator"], "simulator", True),
    (["--currency", "usd"], "currency", "USD"), (["--currency-decimals", "0"], "currency_decimals", 0),
]


@pytest.mark.parametrize(("argv", "name", "value"), EARLIER_FLAGS,
                         ids=[" ".join(f[0][::2]) + f" {f[1]}" for f in EARLIER_FLAGS])
def test_every_option_of_the_earlier_release_still_sets_its_setting(argv, name, value):
    assert getattr(config_from_args(argv, {}), name) == value


def test_every_environment_name_is_vending_and_the_setting_name():
    from vending.config import SETTINGS

    for s in SETTINGS.values():
        assert s.env_name in (None, "VENDING_" + s.name.upper())
        assert s.help, f"{s.name} has no help text"


def test_help_is_generated_from_the_declarations_and_names_each_variable(capsys):
    from vending.config import SETTINGS

    with pytest.raises(SystemExit):
        config_from_args(["--help"], {})
    text = capsys.readouterr().out
    for s in SETTINGS.values():
        if s.flag:
            assert s.flag in text
            if s.env_name:
                assert s.env_name in text, s.name


def test_the_settings_table_in_the_docs_is_current():
    from vending.config import SETTINGS, SETTINGS_DOC, settings_doc

    current = SETTINGS_DOC.read_text(encoding="utf-8")
    assert settings_doc(current) == current, (
        "docs/settings.md is out of date: venv/bin/python -c"
        " \"import vending.config as c; c.write_settings_doc()\"")
    for s in SETTINGS.values():
        if s.env_name:
            assert f"`{s.env_name}`" in current


def test_components_receive_their_section_with_the_flat_settings_in_it(tmp_path):
    from helpers import test_config

    from vending import create_app

    app = create_app(test_config(tmp_path, serial_ports=["loop://"], serial_ack_timeout=0.7,
                                 vend_timeout=4.0, device_queue_limit=2, low_stock_level=3,
                                 webhook_give_up_after=60.0, start_threads=False))
    runtime = app.extensions["vending"]
    try:
        assert runtime.serial.settings is runtime.config.serial
        assert runtime.serial.settings.ack_timeout == 0.7
        assert runtime.service.settings is runtime.config.vend
        assert (runtime.service.settings.timeout, runtime.service.settings.queue_limit) == (4.0, 2)
        assert runtime.alerts.settings is runtime.config.alerts
        assert runtime.alerts.settings.webhook_give_up_after == 60.0
    finally:
        runtime.stop()


def test_a_section_given_whole_is_not_changed_by_flat_settings_beside_it():
    from vending.config import SerialSettings

    mine = SerialSettings(handshake_timeout=0.5)
    config = Config(serial=mine, serial_scan=False)
    assert config.serial.handshake_timeout == 0.5 and not config.serial_scan
    assert mine.scan is True


def test_an_unknown_setting_is_refused_by_name():
    with pytest.raises(TypeError, match="serial_scna"):
        Config(serial_scna=False)
