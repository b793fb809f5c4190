"""Discovery by a real broadcast between two network namespaces joined by a veth pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from lan_fixtures import namespace_pair

SRC = str(Path(__file__).resolve().parents[1] / "src")
SERVER_IP = "10.231.77.1"
BOARD_IP = "10.231.77.2"
BROADCAST = "10.231.77.255"


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    with namespace_pair("v", [f"{SERVER_IP}/24"], [f"{BOARD_IP}/24"], BROADCAST) as names:
        yield names


SERVER_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile, time
    from pathlib import Path
    import requests
    from vending import Config, create_app
    from vending.serving import BackgroundServer
    config = Config(data_dir=Path(tempfile.mkdtemp()), host="0.0.0.0", port=5077,
                    simulator=False, serial_scan=False, discovery=True, discovery_port=12346,
                    auto_approve_devices=True, vend_timeout=5.0, shutdown_grace=1.0)
    app = create_app(config)
    rt = app.extensions["vending"]
    server = BackgroundServer(app, host="0.0.0.0", port=5077).start()
    print("READY", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
            d.transport == "wifi" and d.status == "online" for d in rt.registry.devices()):
        time.sleep(0.05)
    result = requests.post("http://127.0.0.1:5077/vend/2?wait=10", timeout=15).json()
    print("RESULT " + json.dumps(result), flush=True)
    rt.stop()
    server.stop()
""")

BOARD_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from vending.sim.wifi import WifiBoard
    board = WifiBoard(discovery_target=(sys.argv[1], 12346), motor_time=0.02, poll_wait=2.0)
    board.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not board.motor_runs:
        time.sleep(0.05)
    time.sleep(0.5)
    board.stop()
    print("EVENTS " + json.dumps(board.events), flush=True)
""")


def test_a_board_in_another_namespace_finds_the_server_by_broadcast_and_vends(two_namespaces):
    server_ns, board_ns = two_namespaces
    env = {**os.environ, "PYTHONPATH": SRC}
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", SERVER_SCRIPT],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "READY", server.stderr.read() if server.stderr else ""
        board = subprocess.run(
            ["ip", "netns", "exec", board_ns, sys.executable, "-c", BOARD_SCRIPT, BROADCAST],
            capture_output=True, text=True, env=env, timeout=60)
        out, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    events = json.loads(next(line for line in board.stdout.splitlines()
                             if line.startswith("EVENTS "))[7:])
    assert f"discovered server {SERVER_IP}:5077 (not paired yet: unsigned)" in events, events
    result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    assert result["status"] == "success", (result, err[-2000:])
    assert result["communication"] == "wifi"
