"""Settings: defaults, overridden by the environment, overridden by command-line flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


def _env_bool(value: str) -> bool:
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def _env_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True)
class MqttUrl:
    """The parts of mqtt[s]://user:password@host:port/prefix."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    prefix: str

    def redacted(self) -> str:
        """The URL without the password, for logs."""
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def parse_mqtt_url(url: str) -> MqttUrl:
    """Split an MQTT URL, or raise ValueError saying what a good one looks like."""
    example = "e.g. mqtt://user:password@192.168.1.10:1883/vending"
    parsed = urlsplit(url)
    if parsed.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r} ({example})")
    if not parsed.hostname:
        raise ValueError(f"MQTT URL {url!r} has no host ({example})")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(f"MQTT URL {url!r} has a bad port ({example})") from None
    tls = parsed.scheme == "mqtts"
    prefix = unquote(parsed.path.strip("/")) or "vending"
    if any(ch in prefix for ch in "+#") or not prefix.isprintable():
        raise ValueError(f"MQTT topic prefix {prefix!r} must not contain + or #")
    return MqttUrl(
        host=parsed.hostname, port=port or (8883 if tls else 1883), tls=tls,
        username=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
        prefix=prefix,
    )


@dataclass
class Config:
    """Everything the controller can be told; tests build one directly."""

    host: str = "0.0.0.0"
    port: int = 5000
    data_dir: Path = Path("instance")
    serial_ports: list[str] = field(default_factory=list)
    serial_scan: bool = True
    discovery_port: int = 12346
    discovery: bool = True
    simulator: bool = True
    slots: int = 5
    dev: bool = False
    log_level: str = "INFO"
    # Advertise the web UI and the discovery port over mDNS (vending.local).
    mdns: bool = True
    mdns_name: str = "vending"

    # USB serial boards (timeouts in seconds; tests shorten them).
    serial_baudrate: int = 115200
    serial_ack_timeout: float = 0.3
    serial_max_retries: int = 3
    serial_handshake_timeout: float = 2.0
    serial_ping_interval: float = 5.0
    serial_rescan_interval: float = 2.0
    # Each held WiFi long-poll occupies one waitress thread: 100 boards plus the UI fit in
    # 128, and polls beyond wifi_max_held_polls are answered at once (bench/bench_wifi.py).
    threads: int = 128

    # WiFi boards.
    wifi_poll_hold: float = 25.0
    wifi_legacy_hold: float = 1.0
    wifi_offline_after: float = 10.0
    wifi_max_held_polls: int = 0  # 0: threads - 16
    auto_approve_devices: bool = False

    # Simulated board.
    sim_motor_time: float = 1.0
    sim_device_id: str = "SIMULATOR"

    # Vend transactions.
    vend_timeout: float = 20.0
    vend_wait_default: float = 10.0
    vend_wait_max: float = 60.0
    vend_max_age: float = 30.0
    device_queue_limit: int = 5
    vend_thread_idle: float = 60.0
    idempotency_retention_hours: float = 48.0
    # How long a write waits for a database another program has locked before the vend
    # path reports the store unavailable (503) and keeps outcomes in memory.
    store_busy_timeout: float = 10.0
    shutdown_grace: float = 5.0

    # Communication log and HTTP limits.
    log_size: int = 1000
    max_body_bytes: int = 64 * 1024

    # Whether create_app starts background threads (devices, dispatchers).
    start_threads: bool = True

    # Operator sign-in: requests from this machine (the kiosk) need none when trusted;
    # an empty admin_token means "generate one in data_dir and keep it there".
    trust_localhost: bool = True
    admin_token: str = field(default="", repr=False)
    # Alerts and webhooks.
    low_stock_level: int = 2
    webhook_urls: list[str] = field(default_factory=list)
    webhook_secret: str = ""
    webhook_timeout: float = 5.0
    webhook_retry_base: float = 2.0
    webhook_retry_max: float = 300.0
    webhook_give_up_after: float = 24 * 3600.0
    auth_failure_threshold: int = 5
    auth_failure_window: float = 300.0

    # MQTT bridge: off unless mqtt_url is set (mqtt://user:pass@host:1883/prefix).
    mqtt_url: str = ""
    mqtt_commands: bool = False
    mqtt_discovery_prefix: str = "homeassistant"
    mqtt_keepalive: int = 30
    mqtt_reconnect_min: float = 1.0
    mqtt_reconnect_max: float = 60.0
    # Delivered outbox events are kept this long (hours), then pruned.
    mqtt_outbox_retention_hours: float = 168.0
    # Shared secret of this machine's signed MQTT commands; set, unsigned ones are refused.
    mqtt_command_key: str = field(default="", repr=False)
    # This machine's page as the fleet view should link to it (e.g. http://shop-1.lan:5000).
    public_url: str = ""

    # Fleet view: subscribe to every machine under this broker URL's prefix (off when unset).
    fleet_url: str = ""

    # Environment variable for each field that may be set that way.
    ENV_NAMES = {
        "host": "VENDING_HOST",
        "port": "VENDING_PORT",
        "data_dir": "VENDING_DATA_DIR",
        "serial_ports": "VENDING_SERIAL_PORTS",
        "serial_scan": "VENDING_SERIAL_SCAN",
        "serial_baudrate": "VENDING_SERIAL_BAUDRATE",
        "serial_ack_timeout": "VENDING_SERIAL_ACK_TIMEOUT",
        "serial_max_retries": "VENDING_SERIAL_MAX_RETRIES",
        "serial_handshake_timeout": "VENDING_SERIAL_HANDSHAKE_TIMEOUT",
        "serial_ping_interval": "VENDING_SERIAL_PING_INTERVAL",
        "serial_rescan_interval": "VENDING_SERIAL_RESCAN_INTERVAL",
        "discovery_port": "VENDING_DISCOVERY_PORT",
        "discovery": "VENDING_DISCOVERY",
        "simulator": "VENDING_SIMULATOR",
        "store_busy_timeout": "VENDING_STORE_BUSY_TIMEOUT",
        "slots": "VENDING_SLOTS",
        "threads": "VENDING_THREADS",
        "wifi_poll_hold": "VENDING_WIFI_POLL_HOLD",
        "wifi_legacy_hold": "VENDING_WIFI_LEGACY_HOLD",
        "wifi_offline_after": "VENDING_WIFI_OFFLINE_AFTER",
        "wifi_max_held_polls": "VENDING_WIFI_MAX_HELD_POLLS",
        "auto_approve_devices": "VENDING_AUTO_APPROVE_DEVICES",
        "sim_motor_time": "VENDING_SIM_MOTOR_TIME",
        "vend_timeout": "VENDING_VEND_TIMEOUT",
        "vend_max_age": "VENDING_VEND_MAX_AGE",
        "device_queue_limit": "VENDING_DEVICE_QUEUE_LIMIT",
        "log_size": "VENDING_LOG_SIZE",
        "log_level": "VENDING_LOG_LEVEL",
        "mdns": "VENDING_MDNS",
        "mdns_name": "VENDING_MDNS_NAME",
        "trust_localhost": "VENDING_TRUST_LOCALHOST",
        "admin_token": "VENDING_ADMIN_TOKEN",
        "low_stock_level": "VENDING_LOW_STOCK_LEVEL",
        "webhook_urls": "VENDING_WEBHOOK_URLS",
        "webhook_secret": "VENDING_WEBHOOK_SECRET",
        "webhook_timeout": "VENDING_WEBHOOK_TIMEOUT",
        "auth_failure_threshold": "VENDING_AUTH_FAILURE_THRESHOLD",
        "mqtt_url": "VENDING_MQTT_URL",
        "mqtt_commands": "VENDING_MQTT_COMMANDS",
        "mqtt_discovery_prefix": "VENDING_MQTT_DISCOVERY_PREFIX",
        "mqtt_reconnect_min": "VENDING_MQTT_RECONNECT_MIN",
        "mqtt_reconnect_max": "VENDING_MQTT_RECONNECT_MAX",
        "mqtt_outbox_retention_hours": "VENDING_MQTT_OUTBOX_RETENTION_HOURS",
        "mqtt_command_key": "VENDING_MQTT_COMMAND_KEY",
        "public_url": "VENDING_PUBLIC_URL",
        "fleet_url": "VENDING_FLEET_URL",
    }

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.validate()

    def validate(self) -> None:
        """Refuse settings that cannot work, saying which one and why."""
        if not 1 <= self.slots <= 99:
            raise ValueError(f"slots must be between 1 and 99, got {self.slots}")
        for name in ("port", "discovery_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise ValueError(f"{name} must be a TCP/UDP port number 0..65535, got {value}")
        if self.device_queue_limit < 1:
            raise ValueError("device_queue_limit must be at least 1")
        if self.serial_max_retries < 0:
            raise ValueError("serial_max_retries must be 0 or more")
        for name in ("serial_ack_timeout", "serial_handshake_timeout", "serial_ping_interval",
                     "serial_rescan_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be more than 0 seconds")
        if self.log_size < 10:
            raise ValueError("log_size must be at least 10")
        self.log_level = str(self.log_level).upper()
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL,"
                             f" got {self.log_level!r}")
        if not self.mdns_name or not all(c.isalnum() or c == "-" for c in self.mdns_name):
            raise ValueError(f"mdns_name must be letters, digits and '-', got {self.mdns_name!r}")
        if self.admin_token and len(self.admin_token) < 16:
            raise ValueError("admin_token (VENDING_ADMIN_TOKEN) must be at least 16 characters")
        if self.low_stock_level < 0:
            raise ValueError(f"low_stock_level must be 0 or more, got {self.low_stock_level}")
        for url in self.webhook_urls:
            parsed = urlsplit(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"webhook URL {url!r} must be http:// or https:// with a host")
        if self.webhook_retry_base <= 0 or self.webhook_retry_max < self.webhook_retry_base:
            raise ValueError("webhook_retry_base must be > 0 and at most webhook_retry_max")
        if self.mqtt_url:
            parse_mqtt_url(self.mqtt_url)
        if self.fleet_url:
            parse_mqtt_url(self.fleet_url)
        if self.mqtt_outbox_retention_hours <= 0:
            raise ValueError("mqtt_outbox_retention_hours must be above 0")
        if self.mqtt_command_key and len(self.mqtt_command_key) < 16:
            raise ValueError("mqtt_command_key (VENDING_MQTT_COMMAND_KEY) must be at least 16"
                             " characters")
        if self.public_url and urlsplit(self.public_url).scheme not in ("http", "https"):
            raise ValueError(f"public_url {self.public_url!r} must start with http:// or https://")
        if not 0 <= self.wifi_legacy_hold <= 2.0:
            raise ValueError("wifi_legacy_hold must be 0..2 s: the earlier firmware gives up after 3 s")
        if not 0 <= self.wifi_poll_hold <= 60.0:
            raise ValueError("wifi_poll_hold must be 0..60 s")
        if self.wifi_offline_after <= 0:
            raise ValueError("wifi_offline_after must be above 0 s")

    @property
    def held_polls_limit(self) -> int:
        """How many WiFi polls may be held at once, leaving threads for the UI and confirms."""
        if self.wifi_max_held_polls > 0:
            return self.wifi_max_held_polls
        return max(0, self.threads - 16)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then VENDING_* variables from `environ`, then `overrides`."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, env_name in cls.ENV_NAMES.items():
            raw = environ.get(env_name)
            if raw is None or raw == "":
                continue
            kind = types[name]
            try:
                if kind == "bool":
                    values[name] = _env_bool(raw)
                elif kind == "int":
                    values[name] = int(raw)
                elif kind == "float":
                    values[name] = float(raw)
                elif kind == "list[str]":
                    values[name] = _env_list(raw)
                elif kind == "Path":
                    values[name] = Path(raw)
                else:
                    values[name] = raw
            except ValueError as exc:
                raise ValueError(f"{env_name}={raw!r} is not a valid {kind}: {exc}") from exc
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with some fields changed."""
        return replace(self, **overrides)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "vending.sqlite3"


def build_arg_parser() -> argparse.ArgumentParser:
    """The command-line options of `python src/app.py`."""
    parser = argparse.ArgumentParser(
        prog="python src/app.py",
        description="Vending machine controller: web UI, REST API, USB serial and WiFi ESP32 boards.",
    )
    parser.add_argument("--host", help="address to listen on (VENDING_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="HTTP port (VENDING_PORT, default 5000)")
    parser.add_argument("--data-dir", help="where the database and secrets live (VENDING_DATA_DIR)")
    parser.add_argument(
        "--serial-port",
        action="append",
        dest="serial_ports",
        metavar="PORT",
        help="serial port or pyserial URL to use; repeatable (VENDING_SERIAL_PORTS, comma-separated)",
    )
    parser.add_argument("--no-serial-scan", action="store_true", help="do not auto-detect USB boards")
    parser.add_argument("--discovery-port", type=int, help="UDP discovery port (default 12346)")
    parser.add_argument("--no-discovery", action="store_true", help="do not answer UDP discovery")
    parser.add_argument("--no-simulator", action="store_true", help="no simulated device")
    parser.add_argument("--slots", type=int, help="number of slots (VENDING_SLOTS, default 5)")
    parser.add_argument("--threads", type=int, help="HTTP worker threads (default 128)")
    parser.add_argument("--auto-approve-devices", action="store_true",
                        help="let new WiFi boards vend without approval (bench setups only)")
    parser.add_argument("--dev", action="store_true", help="Flask's development server")
    parser.add_argument("--log-level", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                        help="how much to log to stderr (VENDING_LOG_LEVEL, default INFO)")
    parser.add_argument("--no-mdns", action="store_true",
                        help="do not advertise vending.local over mDNS (VENDING_MDNS=0)")
    parser.add_argument("--low-stock-level", type=int,
                        help="alert when a slot has this many items or fewer (default 2)")
    parser.add_argument("--webhook-url", action="append", dest="webhook_urls", metavar="URL",
                        help="POST alerts as JSON here; repeatable (VENDING_WEBHOOK_URLS, comma-separated)")
    parser.add_argument("--mqtt-url", help="publish to this MQTT broker, e.g."
                        " mqtt://user:pass@host:1883/vending (VENDING_MQTT_URL; off when unset)")
    parser.add_argument("--fleet", dest="fleet_url", metavar="URL",
                        help="fleet view: show every machine publishing under this broker URL,"
                        " e.g. mqtt://user:pass@host:1883/vending (VENDING_FLEET_URL); no"
                        " simulator, scanning or discovery unless asked for")
    parser.add_argument("--simulator", action="store_true",
                        help="keep the simulated device in --fleet mode")
    parser.add_argument("--mqtt-commands", action="store_true",
                        help="accept vend commands over MQTT (VENDING_MQTT_COMMANDS; off by default)")
    return parser


def config_from_args(argv: Sequence[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> Config:
    """Defaults < environment < command line."""
    args = build_arg_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "slots", "threads", "discovery_port", "serial_ports",
                 "low_stock_level", "webhook_urls", "mqtt_url", "fleet_url"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.data_dir is not None:
        overrides["data_dir"] = Path(args.data_dir)
    if args.fleet_url and not args.simulator:
        # A fleet server watches machines; it is not one unless told to be.
        overrides.update(simulator=False, serial_scan=False, discovery=False)
    if args.no_serial_scan:
        overrides["serial_scan"] = False
    if args.no_discovery:
        overrides["discovery"] = False
    if args.no_simulator:
        overrides["simulator"] = False
    if args.dev:
        overrides["dev"] = True
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    if args.no_mdns:
        overrides["mdns"] = False
    if args.mqtt_commands:
        overrides["mqtt_commands"] = True
    if args.auto_approve_devices:
        overrides["auto_approve_devices"] = True
    return Config.from_env(environ, **overrides)
