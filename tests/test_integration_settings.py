"""Settings of the integrations: environment and command line."""

from __future__ import annotations

import pytest

from vending.config import Config, config_from_args


def test_integration_settings_come_from_the_environment():
    config = Config.from_env({
        "VENDING_MQTT_URL": "mqtt://u:p@127.0.0.1:1884/shop", "VENDING_MQTT_COMMANDS": "1",
        "VENDING_MQTT_DISCOVERY_PREFIX": "ha", "VENDING_LOW_STOCK_LEVEL": "3",
        "VENDING_WEBHOOK_URLS": "http://127.0.0.1:9000/a, https://127.0.0.1/b",
        "VENDING_WEBHOOK_SECRET": "s", "VENDING_WEBHOOK_TIMEOUT": "2.5",
        "VENDING_AUTH_FAILURE_THRESHOLD": "7",
    })
    assert config.mqtt_url == "mqtt://u:p@127.0.0.1:1884/shop" and config.mqtt_commands
    assert config.mqtt_discovery_prefix == "ha" and config.low_stock_level == 3
    assert config.webhook_urls == ["http://127.0.0.1:9000/a", "https://127.0.0.1/b"]
    assert config.webhook_secret == "s" and config.webhook_timeout == 2.5
    assert config.auth_failure_threshold == 7


def test_integrations_are_off_by_default():
    config = Config.from_env({})
    assert config.mqtt_url == "" and not config.mqtt_commands and config.webhook_urls == []
    assert config.low_stock_level == 2


def test_integration_flags_override_the_environment():
    config = config_from_args(
        ["--mqtt-url", "mqtt://127.0.0.1/x", "--mqtt-commands", "--low-stock-level", "4",
         "--webhook-url", "http://127.0.0.1:1/a", "--webhook-url", "http://127.0.0.1:2/b"],
        {"VENDING_MQTT_URL": "mqtt://127.0.0.1/y", "VENDING_LOW_STOCK_LEVEL": "1"},
    )
    assert config.mqtt_url == "mqtt://127.0.0.1/x" and config.mqtt_commands
    assert config.low_stock_level == 4
    assert config.webhook_urls == ["http://127.0.0.1:1/a", "http://127.0.0.1:2/b"]


@pytest.mark.parametrize("overrides", [{"low_stock_level": -1}, {"webhook_urls": ["127.0.0.1"]},
                                       {"mqtt_url": "tcp://127.0.0.1"}])
def test_impossible_integration_settings_are_refused(overrides):
    with pytest.raises(ValueError):
        Config(**overrides)
