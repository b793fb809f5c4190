"""Fixtures that build real objects on temporary directories, ports and sockets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Flask
from helpers import test_config

from vending import create_app
from vending.serving import BackgroundServer


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps on this test's temporary directory; each is stopped at the end."""
    apps: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = create_app(test_config(tmp_path / "data", **overrides))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["vending"].stop()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def live_server(app: Flask) -> Iterator[BackgroundServer]:
    """The app served by waitress on an ephemeral port of 127.0.0.1."""
    server = BackgroundServer(app).start()
    yield server
    server.stop()
