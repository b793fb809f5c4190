"""Shared by the bench scripts: a demo controller on 127.0.0.1 and Debian's headless Chromium."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vending import Config, create_app
from vending.serving import BackgroundServer

CHROMIUM = os.environ.get("VENDING_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-default-apps", "--disable-extensions",
]


@contextmanager
def demo_server(**overrides: Any) -> Iterator[BackgroundServer]:
    """A controller with a simulated board on a temporary data directory and a free port."""
    with tempfile.TemporaryDirectory(prefix="vending-bench-") as data:
        values: dict[str, Any] = dict(
            data_dir=Path(data), host="127.0.0.1", port=0, serial_scan=False, discovery=False,
            sim_motor_time=0.3, vend_timeout=1.0,
        )
        values.update(overrides)
        app = create_app(Config(**values))
        server = BackgroundServer(app).start()
        try:
            yield server
        finally:
            server.stop()
            app.extensions["vending"].stop()


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium through Playwright; never downloads a browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
