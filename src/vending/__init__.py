"""flask-vending-machine: the controller that runs an ESP32 vending machine.

The package root stays cheap: importing `vending` (or `vending.protocol`, `vending.doctor`)
loads no Flask, requests or runtime. `create_app` and `Runtime` import them when used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .config import Config

if TYPE_CHECKING:
    from flask import Flask

    from .clock import Clock
    from .runtime import Runtime

__all__ = ["create_app", "Config", "Runtime"]
__version__ = "2.0.0"


def __getattr__(name: str) -> Any:
    # `from vending import Runtime` keeps working without making every import pay for it.
    if name == "Runtime":
        from .runtime import Runtime

        return Runtime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_app(config: Config | Mapping[str, Any] | None = None, clock: Clock | None = None) -> Flask:
    """Build the app and its runtime; `config` is a Config, a mapping of its fields, or None
    for defaults plus VENDING_* environment variables; `clock` replaces the system's in tests."""
    from flask import Flask

    from .runtime import Runtime
    from .web import init_app

    if config is None:
        config = Config.from_env()
    elif not isinstance(config, Config):
        config = Config(**config)

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=config.max_body_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False

    runtime = Runtime(config, clock)
    app.extensions["vending"] = runtime

    init_app(app)
    if config.start_threads:
        runtime.start()
    return app
