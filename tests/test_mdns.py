"""mDNS: vending.local advertised as _http._tcp and _vending._tcp, only inside a private netns."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vending import create_app
from vending.config import config_from_args
from vending.mdns import advertised_addresses, advertised_interfaces

ROOT = Path(__file__).resolve().parent.parent

# Runs in a network namespace of its own, where lo is the only interface, so no multicast
# packet can leave the machine: the app advertises, a second zeroconf instance looks it up.
PROBE = r"""
import json, sys, tempfile
sys.path.insert(0, sys.argv[1])
from zeroconf import IPVersion, Zeroconf
from vending import Config, create_app
from vending.mdns import HTTP_TYPE, VENDING_TYPE

app = create_app(Config(data_dir=tempfile.mkdtemp(), host="127.0.0.1", port=5099,
                        discovery_port=12346, serial_scan=False, mdns=True))
zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
found = {}
for kind in (HTTP_TYPE, VENDING_TYPE):
    info = zc.get_service_info(kind, "vending." + kind, timeout=5000)
    found[kind] = None if info is None else {
        "port": info.port, "server": info.server, "addresses": info.parsed_addresses(),
        "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}}
zc.close()
app.extensions["vending"].stop()
print(json.dumps(found))
"""


def run_in_private_netns(code: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("mDNS multicast can only be kept off the network in a private network namespace;"
                    " unshare/ip are not installed")
    check = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        pytest.skip("mDNS multicast can only be kept off the network in a private network namespace,"
                    f" and this user may not create one: {check.stderr.strip()}")
    script = 'ip link set lo up && ip link set lo multicast on && exec "$0" "$@"'
    return subprocess.run(["unshare", "-n", "sh", "-c", script, sys.executable, "-c", code,
                           str(ROOT / "src")], capture_output=True, text=True, timeout=60)


def test_the_app_advertises_vending_local_over_http_and_vending_naming_the_discovery_port() -> None:
    done = run_in_private_netns(PROBE)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    http = found["_http._tcp.local."]
    vending = found["_vending._tcp.local."]
    assert http == {"port": 5099, "server": "vending.local.", "addresses": ["127.0.0.1"],
                     "txt": {"path": "/"}}
    assert vending["port"] == 5099
    assert vending["txt"]["discovery_port"] == "12346"
    assert vending["txt"]["api"] == "/status"


def test_no_mdns_turns_advertising_off(tmp_path: Path) -> None:
    config = config_from_args(["--no-mdns", "--port", "5099", "--data-dir", str(tmp_path)], environ={})
    assert config.mdns is False
    app = create_app(config.with_overrides(start_threads=False, serial_scan=False, discovery=False))
    try:
        assert app.extensions["vending"].mdns is None
    finally:
        app.extensions["vending"].stop()


def test_an_app_on_an_ephemeral_port_advertises_nothing(make_app) -> None:
    assert make_app(mdns=True).extensions["vending"].mdns is None


def test_a_server_on_one_address_advertises_only_there() -> None:
    assert advertised_addresses("127.0.0.1") == ["127.0.0.1"]
    assert advertised_interfaces("localhost") == ["127.0.0.1"]
    assert advertised_interfaces("0.0.0.0") is None
    assert all(not a.startswith("127.") for a in advertised_addresses("0.0.0.0"))
