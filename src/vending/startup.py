"""Before `python src/app.py` serves: settings that cannot work, said in one line with the fix,
and the banner that tells people where to open the page. Standard library only at module level.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config

ALL_ADDRESSES = ("", "0.0.0.0", "::")
LOOPBACK_NAMES = ("localhost", "::1")
# The checkout's requirements.txt, when running from one (src/vending/startup.py -> root).
REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"
# Distribution name in requirements.txt -> module to import, where they differ.
IMPORT_NAMES = {"pyserial": "serial", "prometheus-client": "prometheus_client",
                "paho-mqtt": "paho.mqtt"}


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps other computers out."""
    return host.startswith("127.") or host in LOOPBACK_NAMES


def lan_address() -> str | None:
    """The IPv4 address of the interface that faces the LAN, or None when there is none.

    Not the hostname's address: on a Raspberry Pi that maps to 127.0.1.1."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # connect() on UDP only asks the routing table; no packet is sent.
        probe.connect(("192.0.2.1", 9))
        address = probe.getsockname()[0]
        if not is_loopback(address):
            return str(address)
    except OSError:
        pass  # no default route (a shop WiFi without internet): look at the interfaces
    finally:
        probe.close()
    try:
        import ifaddr  # installed with zeroconf
    except ImportError:
        return None
    found = sorted(ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
                   if isinstance(ip.ip, str) and not is_loopback(ip.ip)
                   and not ip.ip.startswith("169.254."))
    return found[0] if found else None


def page_urls(config: Config) -> tuple[str, str | None]:
    """(the URL on this machine, the URL for phones and other computers or None)."""
    port = config.port
    if config.host in ALL_ADDRESSES:
        lan = lan_address()
        return f"http://localhost:{port}", f"http://{lan}:{port}" if lan else None
    if is_loopback(config.host):
        return f"http://localhost:{port}", None
    return f"http://{config.host}:{port}", f"http://{config.host}:{port}"


def banner(config: Config, transports: list[str], sign_in_path: str = "") -> str:
    """The start-up message: where to open the page, how to sign in, what runs, where data lives."""
    local, remote = page_urls(config)
    if remote is None and is_loopback(config.host):
        others = [" Listening on this machine only: start with --host 0.0.0.0 to let phones in."]
    elif remote is None:
        others = [" No network address found: connect to the shop's WiFi or LAN for phones."]
    elif sign_in_path:
        others = [" Phones and other computers sign in once with:", f"   {remote}{sign_in_path}"]
    else:
        others = [" Phones and other computers open:", f"   {remote}"]
    lines = [
        "=" * 60,
        " Flask Vending Machine controller",
        "=" * 60,
        " Open the web interface at:",
        f"   {local}",
        *others,
        f" Devices: {', '.join(transports) or 'none'}",
        f" Data: {config.data_dir.resolve()}",
        " Stop with Ctrl+C.",
        "=" * 60,
    ]
    return "\n".join(lines)


def missing_packages(requirements: Path = REQUIREMENTS) -> list[str]:
    """Requirements not installed in this environment (found without importing them)."""
    from .doctor.requirements import parse_requirements

    try:
        wanted = parse_requirements(requirements)
    except OSError:
        return []  # not a checkout (an installed package): pip resolved the requirements
    missing = []
    for dist, _ in wanted:
        module = IMPORT_NAMES.get(dist.lower(), dist.lower().replace("-", "_"))
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing


def data_dir_problem(data_dir: Path) -> str | None:
    """Why the server cannot keep its data in `data_dir`, with the fix; None when it can."""
    fix = "choose another place with --data-dir DIR (or VENDING_DATA_DIR)"
    if data_dir.exists() and not data_dir.is_dir():
        return f"data directory {data_dir} is a file, not a directory: {fix}"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        denied = exc.errno in (errno.EACCES, errno.EPERM) and os.name != "nt"
        owner = f"sudo chown -R $USER {data_dir}, or " if denied else ""
        return f"data directory {data_dir} cannot be written ({exc.strerror}): {owner}{fix}"
    return None


def host_problem(host: str, port: int = 0) -> str | None:
    """Why the server cannot listen on `host`, with the fix; None when it can."""
    if host in ALL_ADDRESSES:
        return None
    fix = ("use --host 0.0.0.0 (every network) or --host 127.0.0.1 (this machine only),"
           " or VENDING_HOST")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return f"--host {host!r} is not an IP address or a name this machine can resolve: {fix}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.bind((address[0], 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"--host {host} is not an address of this machine: {fix}"
            return f"cannot listen on --host {host} ({exc.strerror}): {fix}"
    return None


def startup_problem(config: Config) -> str | None:
    """The first setting or missing package that would stop the server, as one line."""
    missing = missing_packages()
    if missing:
        pip = r"venv\Scripts\pip" if os.name == "nt" else "venv/bin/pip"
        return (f"this Python environment lacks {', '.join(missing)}: run {pip} install -r"
                " requirements.txt (or start.sh / start.bat, which do it)")
    return data_dir_problem(config.data_dir) or host_problem(config.host, config.port)
