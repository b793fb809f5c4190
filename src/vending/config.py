"""Settings, each declared once: its field, default and help, in the section that uses it.

The environment name is derived (`VENDING_` + the setting's name in capitals) and so is the
command-line option where a setting has one. `python src/app.py --help` and the table in
docs/settings.md are generated from these declarations (after a change:
`venv/bin/python -c "import vending.config as c; c.write_settings_doc()"`).
Defaults < environment < command line.

To add a setting, declare it once, in Config or in the section of the component that uses it:
`retention_days: float = setting(400.0, "days an entry is kept", flag="--retention-days")`,
validate it in Config.validate, then regenerate docs/settings.md (above).

Components receive their section (config.serial, config.wifi, config.vend, config.alerts,
config.mqtt) directly; tests build a Config with flat names, `Config(serial_scan=False,
vend_timeout=3.0)`, the same names the environment uses.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

ENV_PREFIX = "VENDING_"
# Threads are started only when needed (vending/serving.py), but each costs a stack: on a
# 32-bit Pi a few hundred are what the address space allows. Connections use poll(), so
# their count is bounded by memory and the open-file limit, which the server raises.
MAX_THREADS = 256
MAX_CONNECTIONS = 10000
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def setting(default: Any = MISSING, help: str = "", *, factory: Any = None,
            flag: str | Sequence[str] | None = None, env: bool = True, name: str | None = None,
            choices: Sequence[str] | None = None, metavar: str | None = None,
            secret: bool = False) -> Any:
    """Declare one setting. `flag` is its command-line option: `--no-x` for a setting that is on
    by default, `--x` for one that is off, `--x VALUE` otherwise (repeatable for a list); a
    boolean may name a second option that sets it to its default explicitly.
    `name` keeps a name from earlier releases when it is not the section prefix + the field;
    env=False keeps a setting out of the environment (tests set it)."""
    flags = (flag,) if isinstance(flag, str) or flag is None else tuple(flag)
    meta = {"help": help, "flag": flags[0], "also": flags[1] if len(flags) > 1 else None,
            "env": env, "name": name,
            "choices": tuple(choices) if choices else None, "metavar": metavar, "secret": secret}
    if factory is not None:
        return field(default_factory=factory, metadata={"setting": meta}, repr=not secret)
    return field(default=default, metadata={"setting": meta}, repr=not secret)


@dataclass(frozen=True)
class Setting:
    """One declared setting, as the environment, argparse and the docs see it."""

    name: str  # flat name: Config(name=...), VENDING_<NAME>
    section: str  # "" for the top level, else the Config attribute of its section
    field: str  # the field in its section
    kind: str  # "bool", "int", "float", "str", "Path", "list[str]"
    default: Any
    help: str
    flag: str | None  # the command-line option, if any
    also: str | None  # a boolean's second option, setting its default explicitly
    env: bool
    choices: tuple[str, ...] | None
    metavar: str | None
    secret: bool

    @property
    def env_name(self) -> str | None:
        return ENV_PREFIX + self.name.upper() if self.env else None


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


# Sections: each component receives its own.

@dataclass
class SerialSettings:
    """USB serial boards (timeouts in seconds; tests shorten them)."""

    prefix: ClassVar[str] = "serial_"

    ports: list[str] = setting(
        factory=list, flag="--serial-port", metavar="PORT",
        help="serial port or pyserial URL to use; repeatable (environment: comma-separated)")
    scan: bool = setting(True, "find ESP32 USB boards by themselves", flag="--no-serial-scan")
    baudrate: int = setting(115200, "serial speed of the boards")
    ack_timeout: float = setting(0.3, "seconds to wait for a board's ACK before sending again")
    max_retries: int = setting(3, "times a vend is sent again when no ACK comes")
    handshake_timeout: float = setting(2.0, "seconds a newly opened port has to say who it is")
    ping_interval: float = setting(5.0, "seconds between keep-alive pings to an idle board")
    rescan_interval: float = setting(2.0, "seconds between looks for plugged or unplugged boards")
    vend_grace: float = setting(5.0, "extra seconds to wait when a board says a vend still runs")


@dataclass
class WifiSettings:
    """WiFi boards: held polls, offline detection, approval."""

    prefix: ClassVar[str] = "wifi_"

    poll_hold: float = setting(25.0, "seconds a board's poll is held open waiting for a vend")
    legacy_hold: float = setting(
        1.0, "seconds an earlier firmware's poll is held (it gives up after 3 s)")
    offline_after: float = setting(10.0, "seconds without a poll before a board is offline")
    # On the hardened waitress a held poll is parked and takes no thread (park_polls); where
    # it cannot be (--dev, VENDING_PARK_POLLS=0) each held poll occupies one HTTP thread, and
    # polls beyond this limit are answered at once (bench/bench_wifi.py).
    max_held_polls: int = setting(0, "polls held on HTTP threads at once where they cannot be"
                                  " parked; 0: HTTP threads - 16")
    auto_approve: bool = setting(False, "let new WiFi boards vend without approval (bench setups"
                                 " only)", flag="--auto-approve-devices", name="auto_approve_devices")
    busy_poll_again_ms: int = setting(2000, "milliseconds a board waits before polling again"
                                      " when every poll slot is taken")
    max_pending: int = setting(64, "boards that may wait for approval at once")
    pending_per_source: int = setting(
        4, "boards from one network address that may wait for approval at once")
    pending_expiry: float = setting(
        900.0, "seconds a board waiting for approval stays listed once it is no longer heard")


@dataclass
class VendSettings:
    """The vend path: timeouts, queues, idempotency."""

    prefix: ClassVar[str] = "vend_"

    timeout: float = setting(20.0, "seconds a board has to confirm a vend before it is unknown")
    wait_default: float = setting(10.0, "seconds POST /vend waits for the outcome when not told")
    wait_max: float = setting(60.0, "the longest ?wait= a client may ask for")
    max_age: float = setting(30.0, "seconds a queued vend may wait for a board before it fails")
    queue_limit: int = setting(5, "vends that may wait for one board", name="device_queue_limit")
    thread_idle: float = setting(
        60.0, "seconds without vends before a board's vend thread ends (the next vend starts one)")
    idempotency_retention_hours: float = setting(
        48.0, "hours an Idempotency-Key is remembered", name="idempotency_retention_hours")


@dataclass
class AlertSettings:
    """Alerts and the webhooks that carry them."""

    prefix: ClassVar[str] = ""

    low_stock_level: int = setting(
        2, "alert when a slot has this many items or fewer", flag="--low-stock-level")
    webhook_urls: list[str] = setting(
        factory=list, flag="--webhook-url", metavar="URL",
        help="POST alerts as JSON here; repeatable (environment: comma-separated)")
    webhook_secret: str = setting("", "HMAC key that signs each webhook POST", secret=True)
    webhook_timeout: float = setting(5.0, "seconds one webhook POST may take")
    webhook_retry_base: float = setting(2.0, "seconds before the first retry; doubles each time")
    webhook_retry_max: float = setting(300.0, "the longest wait between retries, in seconds")
    webhook_give_up_after: float = setting(24 * 3600.0, "seconds after which a post is dropped")
    auth_failure_threshold: int = setting(
        5, "failed sign-ins or board signatures from one address before an alert")
    auth_failure_window: float = setting(300.0, "seconds over which those failures are counted")
    # Retention, whichever limit comes first; an attack only pushes the oldest rows out.
    audit_retention_days: float = setting(400.0, "days audit rows are kept")
    audit_max_rows: int = setting(50_000, "audit rows kept at most")
    alert_retention_days: float = setting(400.0, "days alerts are kept")
    alert_max_rows: int = setting(20_000, "alerts kept at most")
    audit_refusals_per_minute: int = setting(
        20, "refused requests a minute that get an audit row and a log line each (one per"
        " source); the rest are counted into one summary a minute")


@dataclass
class MqttSettings:
    """The MQTT bridge: off unless url is set."""

    prefix: ClassVar[str] = "mqtt_"

    url: str = setting("", "publish to this MQTT broker, e.g. mqtt://user:pass@host:1883/vending"
                       " (off when empty)", flag="--mqtt-url", secret=True)
    commands: bool = setting(False, "accept vend commands over MQTT", flag="--mqtt-commands")
    discovery_prefix: str = setting("homeassistant", "Home Assistant discovery topic prefix")
    keepalive: int = setting(30, "seconds between MQTT keep-alives")
    reconnect_min: float = setting(1.0, "first wait before reconnecting to the broker, seconds")
    reconnect_max: float = setting(60.0, "longest wait between reconnections, seconds")
    outbox_retention_hours: float = setting(168.0, "hours delivered outbox events are kept")
    command_key: str = setting("", "shared secret of this machine's signed MQTT commands (16+"
                               " characters); set, unsigned commands are refused", secret=True)


SECTIONS: dict[str, type] = {
    "serial": SerialSettings, "wifi": WifiSettings, "vend": VendSettings,
    "alerts": AlertSettings, "mqtt": MqttSettings,
}


@dataclass(init=False)
class Config:
    """Everything the controller can be told; tests build one directly with flat names."""

    host: str = setting("0.0.0.0", "address to listen on; 127.0.0.1 keeps other computers out",
                        flag="--host")
    port: int = setting(5000, "HTTP port", flag="--port")
    data_dir: Path = setting(Path("instance"), "where the database and secrets live",
                             flag="--data-dir", metavar="DIR")
    slots: int = setting(5, "number of slots (1 to 99)", flag="--slots")
    simulator: bool = setting(True, "a simulated board, so the page works with no hardware",
                              flag=("--no-simulator", "--simulator"))
    sim_motor_time: float = setting(1.0, "seconds the simulated motor runs")
    sim_device_id: str = setting("SIMULATOR", "device id of the simulated board", env=False)
    discovery: bool = setting(True, "answer WiFi boards' UDP discovery", flag="--no-discovery")
    discovery_port: int = setting(12346, "UDP discovery port", flag="--discovery-port")
    mdns: bool = setting(True, "advertise the page over mDNS as http://MDNS_NAME.local",
                         flag="--no-mdns")
    mdns_name: str = setting("vending", "mDNS name: letters, digits and '-'")
    metrics: bool = setting(False, "serve GET /metrics for Prometheus (prometheus_client is"
                            " imported only then)", flag="--metrics")
    # The HTTP front (vending/serving.py): the pool starts small and grows to `threads`.
    threads: int = setting(128, f"most HTTP worker threads, 4..{MAX_THREADS}, started as needed",
                           flag="--threads")
    park_polls: bool = setting(True, "WiFi boards' long-polls wait without an HTTP thread each"
                               " (off: a thread per held poll, as before)")
    connection_limit: int = setting(1000, "open HTTP connections; at the limit the longest-idle"
                                    " one is closed to make room")
    connections_per_address: int = setting(32, "HTTP connections one address other than this"
                                           " machine may hold")
    request_deadline: float = setting(10.0, "seconds a request has to arrive once it has begun"
                                      " (slow senders are cut off)")
    dev: bool = setting(False, "Flask's development server", flag="--dev", env=False)
    log_level: str = setting("INFO", "how much to log to stderr", flag="--log-level",
                             choices=LOG_LEVELS)
    log_size: int = setting(1000, "lines kept in the communication log")
    max_body_bytes: int = setting(64 * 1024, "largest HTTP request body, in bytes")
    shutdown_grace: float = setting(5.0, "seconds a vend on the motor may finish at shutdown")
    store_busy_timeout: float = setting(
        10.0, "seconds a write waits for a database another program holds locked; then vends"
        " get 503 store_unavailable and finished ones are kept in memory until it can write")
    trust_localhost: bool = setting(True, "requests from this machine (the kiosk) need no sign-in")
    admin_token: str = setting("", "operator token (16+ characters); empty: generated once and"
                               " kept in the data directory", secret=True)
    currency: str = setting("EUR", "ISO 4217 code of the prices; prices are whole numbers of its"
                            " minor units (cents)", flag="--currency")
    currency_decimals: int = setting(2, "decimal places of the currency",
                                     flag="--currency-decimals")
    machine_serial: str = setting("", "the machine's serial number in the DEX audit file (ID1);"
                                  " empty: the machine id")
    public_url: str = setting("", "this machine's page as the fleet view links to it, e.g."
                              " http://shop-1.lan:5000")
    fleet_url: str = setting("", "fleet view: show every machine publishing under this broker URL,"
                             " e.g. mqtt://user:pass@host:1883/vending; with --fleet, no simulator,"
                             " scanning or discovery unless asked for", flag="--fleet",
                             metavar="URL", secret=True)
    start_threads: bool = setting(True, "start background threads (tests that want none say no)",
                                  env=False)

    serial: SerialSettings = field(default_factory=SerialSettings)
    wifi: WifiSettings = field(default_factory=WifiSettings)
    vend: VendSettings = field(default_factory=VendSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)

    def __init__(self, **values: Any) -> None:
        """Flat names (`serial_scan=False`) or whole sections (`serial=SerialSettings(...)`)."""
        unknown = sorted(set(values) - set(SETTINGS) - set(SECTIONS))
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
        for name, kind in SECTIONS.items():
            given = values.get(name)
            changes = {s.field: values[s.name] for s in SETTINGS.values()
                       if s.section == name and s.name in values}
            section = replace(given, **changes) if given is not None else kind(**changes)
            object.__setattr__(self, name, section)
        for s in SETTINGS.values():
            if not s.section:
                object.__setattr__(self, s.name, values[s.name] if s.name in values else _default(
                    Config, s.field))
        self.data_dir = Path(self.data_dir)
        self.validate()

    def __getattr__(self, name: str) -> Any:
        # Flat names of section settings (config.vend_timeout), as in the environment.
        found = SETTINGS.get(name)
        if found is None or not found.section:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(object.__getattribute__(self, found.section), found.field)

    def __setattr__(self, name: str, value: Any) -> None:
        found = SETTINGS.get(name)
        if found is not None and found.section:
            setattr(getattr(self, found.section), found.field, value)
        else:
            object.__setattr__(self, name, value)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name."""
        return {name: getattr(self, name) for name in SETTINGS}

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
        if not 4 <= self.threads <= MAX_THREADS:
            raise ValueError(f"threads must be 4..{MAX_THREADS}, got {self.threads}")
        if not 10 <= self.connection_limit <= MAX_CONNECTIONS:
            raise ValueError(f"connection_limit must be 10..{MAX_CONNECTIONS},"
                             f" got {self.connection_limit}")
        if self.connections_per_address < 1:
            raise ValueError("connections_per_address must be at least 1")
        if not 1.0 <= self.request_deadline <= 300.0:
            raise ValueError("request_deadline must be 1..300 s")
        if self.log_size < 10:
            raise ValueError("log_size must be at least 10")
        for name in ("audit_retention_days", "alert_retention_days", "wifi_pending_expiry"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be above 0")
        for name in ("audit_max_rows", "alert_max_rows", "audit_refusals_per_minute",
                     "wifi_pending_per_source"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        self.log_level = str(self.log_level).upper()
        if self.log_level not in LOG_LEVELS:
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
        self.currency = str(self.currency).strip().upper()
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isascii():
            raise ValueError(f"currency must be an ISO 4217 code such as EUR or USD,"
                             f" got {self.currency!r}")
        if not 0 <= self.currency_decimals <= 4:
            raise ValueError(f"currency_decimals must be 0..4, got {self.currency_decimals}")
        if len(self.machine_serial) > 20 or any(c in self.machine_serial for c in "*\r\n"):
            raise ValueError("machine_serial must be at most 20 characters, without * or line"
                             " breaks (it goes into the DEX file)")
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
        """How many WiFi polls may be held on threads at once, leaving some for the UI."""
        if self.wifi_max_held_polls > 0:
            return self.wifi_max_held_polls
        return max(0, self.threads - 16)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then VENDING_* variables from `environ`, then `overrides`."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for s in SETTINGS.values():
            raw = environ.get(s.env_name) if s.env_name else None
            if raw is None or raw == "":
                continue
            try:
                values[s.name] = _parse(s.kind, raw)
            except ValueError as exc:
                raise ValueError(f"{s.env_name}={raw!r} is not a valid {s.kind}: {exc}") from exc
        values.update(overrides)
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with some settings changed (flat names)."""
        return Config(**{**self.flat(), **overrides})

    @property
    def database_path(self) -> Path:
        return self.data_dir / "vending.sqlite3"


def _default(kind: type, name: str) -> Any:
    for f in fields(kind):
        if f.name == name:
            if f.default_factory is not MISSING:
                return f.default_factory()
            return f.default
    raise KeyError(name)


def _kind(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _parse(kind: str, raw: str) -> Any:
    if kind == "bool":
        return _env_bool(raw)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "list[str]":
        return _env_list(raw)
    if kind == "Path":
        return Path(raw)
    return raw


def _declared(kind: type, section: str, prefix: str) -> Iterator[Setting]:
    for f in fields(kind):
        meta = f.metadata.get("setting")
        if meta is None:
            continue
        yield Setting(
            name=meta["name"] or prefix + f.name, section=section, field=f.name,
            kind=_kind(f.type), default=_default(kind, f.name), help=meta["help"],
            flag=meta["flag"], also=meta["also"], env=meta["env"], choices=meta["choices"],
            metavar=meta["metavar"], secret=meta["secret"],
        )


def _all_settings() -> dict[str, Setting]:
    found = list(_declared(Config, "", ""))
    for section, kind in SECTIONS.items():
        found += _declared(kind, section, kind.prefix)
    by_name = {s.name: s for s in found}
    assert len(by_name) == len(found), "two settings share a name"
    return by_name


# Flat name -> declaration: every setting of the top level and of the sections.
SETTINGS: dict[str, Setting] = _all_settings()


def build_arg_parser() -> argparse.ArgumentParser:
    """The command-line options of `python src/app.py`, generated from the settings."""
    parser = argparse.ArgumentParser(
        prog="python src/app.py",
        description="Vending machine controller: web UI, REST API, USB serial and WiFi ESP32 boards.",
        epilog="Every setting can also be set in the environment (VENDING_<NAME>); the full list"
               " is in docs/settings.md.",
    )
    for s in SETTINGS.values():
        if not s.flag:
            continue
        if s.kind == "bool":
            state = f"{s.env_name}={int(not s.default)}; " if s.env_name else ""
            turn = "turn off: " if s.default else ""
            help_text = f"{turn}{s.help} ({state}default {'on' if s.default else 'off'})"
            parser.add_argument(s.flag, dest=s.name, action="store_const",
                                const=not s.default, default=None, help=help_text)
            if s.also:
                parser.add_argument(s.also, dest=s.name, action="store_const", const=s.default,
                                    help=f"keep {s.name} {'on' if s.default else 'off'} where"
                                    " another option would change it")
            continue
        shown = "" if s.secret or s.default in ("", []) else f", default {s.default}"
        help_text = f"{s.help} ({s.env_name or 'no environment variable'}{shown})"
        kwargs: dict[str, Any] = {"dest": s.name, "default": None, "help": help_text,
                                  "metavar": s.metavar or s.name.upper()}
        if s.kind == "list[str]":
            kwargs["action"] = "append"
        elif s.kind in ("int", "float"):
            kwargs["type"] = int if s.kind == "int" else float
        elif s.kind == "Path":
            kwargs["type"] = Path
        if s.choices:
            kwargs.update(type=str.upper, choices=list(s.choices))
            del kwargs["metavar"]
        parser.add_argument(s.flag, **kwargs)
    return parser


def config_from_args(argv: Sequence[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> Config:
    """Defaults < environment < command line."""
    args = vars(build_arg_parser().parse_args(argv))
    if args["fleet_url"] and args["simulator"] is None:
        # A fleet server watches machines; it is not one unless told to be (--simulator).
        args.update(simulator=False, serial_scan=False, discovery=False)
    return Config.from_env(environ, **{k: v for k, v in args.items() if v is not None})


def settings_markdown() -> str:
    """The settings table of docs/settings.md."""
    rows = ["| Setting | Environment | Option | Default | What it does |",
            "|---|---|---|---|---|"]
    for s in SETTINGS.values():
        if not s.env_name and not s.flag:
            continue
        if s.secret or s.default in ("", []):
            default = "(none)"
        elif s.kind == "bool":
            default = "on" if s.default else "off"
        else:
            default = f"`{s.default}`"
        options = ", ".join(f"`{flag}`" for flag in (s.flag, s.also) if flag) or "-"
        rows.append(f"| `{s.name}` | {f'`{s.env_name}`' if s.env_name else '-'} |"
                    f" {options} | {default} | {s.help} |")
    return "\n".join(rows) + "\n"


SETTINGS_DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
TABLE_START = "<!-- settings table: generated from src/vending/config.py -->\n"
TABLE_END = "<!-- end of the generated table -->\n"


def settings_doc(current: str) -> str:
    """`current` (the text of docs/settings.md) with its table made from the declarations."""
    head, _, rest = current.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    return head + TABLE_START + settings_markdown() + TABLE_END + tail


def write_settings_doc(path: Path = SETTINGS_DOC) -> None:
    """Regenerate the table in docs/settings.md after a setting changed."""
    path.write_text(settings_doc(path.read_text(encoding="utf-8")), encoding="utf-8")
