"""Helpers shared by the tests: a test Config and waiting with a deadline."""

from __future__ import annotations

import json
import socket
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from vending import Config
from vending.waiting import poll_until, wait_until

__all__ = ["poll_until", "site_without", "test_config", "wait_until"]


def test_config(data_dir: Path, **overrides: Any) -> Config:
    """A Config for tests: temporary data, no scanning, no discovery, a fast simulated motor."""
    values: dict[str, Any] = dict(
        data_dir=data_dir, host="127.0.0.1", port=0, serial_scan=False, discovery=False,
        sim_motor_time=0.05, vend_timeout=3.0, shutdown_grace=1.0,
    )
    values.update(overrides)
    return Config(**values)


test_config.__test__ = False  # type: ignore[attr-defined]


def site_without(package: str, tmp_path: Path) -> Path:
    """A site-packages made of links to everything installed except `package`: with `python -S`
    and PYTHONPATH set to it, an old virtual environment that lacks that package."""
    site = Path(sysconfig.get_paths()["purelib"])
    partial = tmp_path / f"site-without-{package}"
    partial.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith(package) and not entry.name.endswith(".pth"):
            (partial / entry.name).symlink_to(entry)
    return partial


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, method: str = "GET") -> tuple[int, dict]:
    """Status and JSON body of one request to a server started as a process."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def answers(url: str) -> bool:
    """Whether the server at url answers 200 yet."""
    try:
        return call(url)[0] == 200
    except OSError:
        return False
