"""The firmware's WiFi logic end to end: the host WiFi board (the C++ core's WifiBoard over
real UDP and HTTP sockets on 127.0.0.1) against the real server, discovery included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from firmware_support import HostWifiBoardProcess, firmware_build
from helpers import wait_until
from wifi_fixtures import Interceptor, WifiEnv, start_env

pytest.importorskip("cryptography", reason="the server pairs WiFi boards with X25519")

DEV = "ESP32_246F28A1B2C3"


@pytest.fixture
def rig(make_app: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Serve an app with discovery on 127.0.0.1 and start host WiFi boards against it."""
    envs: list[WifiEnv] = []
    boards: list[HostWifiBoardProcess] = []
    interceptors: list[Interceptor] = []

    def build(intercept: bool = False, **overrides: Any) -> tuple[WifiEnv, HostWifiBoardProcess]:
        options = {k: overrides.pop(k) for k in ("motor_ms", "max_run_ms") if k in overrides}
        env = start_env(make_app, **overrides)
        envs.append(env)
        if intercept:
            # Someone on the WiFi between board and server: the signed discovery reply names
            # the interceptor's port, so every HTTP request goes through it.
            interceptor = Interceptor(("127.0.0.1", int(env.server.port)))
            interceptors.append(interceptor)
            assert env.rt.discovery is not None
            env.rt.discovery.http_port = interceptor.port
        board = HostWifiBoardProcess(firmware_build(), tmp_path / "board",
                                     ("127.0.0.1", env.discovery_port), dev=DEV, **options)
        boards.append(board)
        return env, board.start()

    build.interceptors = interceptors  # type: ignore[attr-defined]
    yield build
    for board in boards:
        board.stop()
    for env in envs:
        env.close()
    for interceptor in interceptors:
        interceptor.close()


def pair_and_approve(env: WifiEnv, board: HostWifiBoardProcess) -> None:
    """Wait for the board to ask to pair, check its fingerprint, approve it, wait until it polls."""
    wait_until(lambda: env.status(DEV) == "pending_approval", timeout=10,
               message="the board to ask to pair")
    shown = wait_until(lambda: board.saw("PAIRING: key fingerprint "), message="the fingerprint")
    # The board prints its code before its pair request reaches the server (after a revoke
    # the device is already pending approval, without a key).
    listed = wait_until(lambda: env.device(DEV).fingerprint, timeout=10,
                        message="the server to list the board's key")
    assert listed in shown  # what the operator compares
    env.approve(DEV)
    wait_until(lambda: env.status(DEV) == "online" and env.device(DEV).polls_held > 0,
               timeout=10, message="the board online and holding a poll")


def test_the_firmware_core_discovers_pairs_once_approved_and_vends_once_over_wifi(rig) -> None:
    env, board = rig()
    wait_until(lambda: board.saw("not paired yet: unsigned"), timeout=10,
               message="discovery on 127.0.0.1")
    pair_and_approve(env, board)
    # Both sides derived the same secret: the C++ X25519 and HMAC against the server's.
    assert board.stored_secret() == env.rt.wifi.keys.secret(DEV).hex()
    response = env.vend(2, wait=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success" and body["communication"] == "wifi", body
    assert body["device_id"] == DEV
    assert board.motor_starts() == ["start slot=2"]
    assert env.device(DEV).protocol == 2 and env.device(DEV).info()["authenticated"] is True


def test_a_restarted_firmware_board_checks_the_signed_discovery_reply_and_vends_with_its_stored_key(
        rig) -> None:
    env, board = rig()
    pair_and_approve(env, board)
    assert env.vend(1, wait=10).json()["status"] == "success"
    board.kill()
    board.start()
    wait_until(lambda: board.saw("signed reply verified"), timeout=10,
               message="the signed discovery reply verified")
    wait_until(lambda: board.saw("Registered with the server"), timeout=10, message="register")
    assert board.boot_count() == 2 and board.saw("PAIRING") is None
    wait_until(lambda: env.device(DEV).polls_held > 0, timeout=10, message="polling again")
    assert env.vend(3, wait=10).json()["status"] == "success"
    assert board.motor_starts() == ["start slot=1", "start slot=3"]


def test_killing_the_firmware_board_mid_vend_gives_unknown_and_never_a_second_motor_run(rig) -> None:
    env, board = rig(vend_timeout=2.0, motor_ms=30000, max_run_ms=60000)
    pair_and_approve(env, board)
    txn_id = env.vend(4, wait=0).json()["transaction_id"]
    wait_until(lambda: board.motor_starts() == ["start slot=4"], timeout=10,
               message="the motor to start")
    board.kill()  # power cut while the motor turns
    wait_until(lambda: env.rt.store.get(txn_id).state == "unknown", timeout=10,
               message="the vend to end unknown")
    board.start()
    # Asked to reconcile (or handed the command again), the board declines: it cannot know.
    wait_until(lambda: board.saw(f"{txn_id} was interrupted by a reset"), timeout=15,
               message="the board to decline the interrupted vend")
    assert env.rt.store.get(txn_id).state == "unknown"
    assert board.motor_starts() == ["start slot=4"]
    wait_until(lambda: env.device(DEV).polls_held > 0, timeout=10, message="polling again")
    follow = requests.get(f"{env.url}/vend/{txn_id}", timeout=5).json()
    assert follow["state"] == "unknown", follow


def test_an_operator_revoke_makes_the_firmware_board_forget_its_key_and_pair_again(rig) -> None:
    env, board = rig()
    pair_and_approve(env, board)
    old = board.stored_secret()
    response = requests.post(f"{env.url}/esp32/devices/{DEV}/revoke", timeout=5)
    assert response.status_code == 200, response.text
    wait_until(lambda: board.saw("Revoked by the server (signed answer)"), timeout=10,
               message="the board told, by an answer signed with its key")
    assert board.saw("without proving it holds our secret") is None  # the first 401 was believed
    wait_until(lambda: board.stored_secret() is None and env.rt.wifi.keys.secret(DEV) is None,
               timeout=10, message="both sides forgot the key")
    board.lines.clear()
    pair_and_approve(env, board)
    assert board.stored_secret() not in (None, old)
    assert env.vend(2, wait=10).json()["status"] == "success"
    assert board.motor_starts() == ["start slot=2"]


@pytest.mark.parametrize("attack", ["unsigned", "forged"])
def test_a_401_not_signed_with_its_key_never_makes_the_firmware_board_forget_it(rig, attack) -> None:
    env, board = rig(intercept=True)
    interceptor = rig.interceptors[-1]
    pair_and_approve(env, board)
    secret = board.stored_secret()
    assert secret is not None
    assert env.vend(1, wait=10).json()["status"] == "success"
    pairings = len([line for line in board.lines if "PAIRING" in line])

    interceptor.set_mode(attack)  # someone on the WiFi answers 401 "revoked" for the server
    wait_until(lambda: interceptor.answered >= 6, timeout=15, message="several 401s")
    assert board.stored_secret() == secret and env.rt.wifi.keys.secret(DEV).hex() == secret
    assert board.saw("keeping it. If the server really lost its key file, type UNPAIR")
    assert board.saw("Revoked by the server") is None
    assert len([line for line in board.lines if "PAIRING" in line]) == pairings

    interceptor.set_mode("forward")
    wait_until(lambda: env.status(DEV) == "online" and env.device(DEV).polls_held > 0,
               timeout=15, message="the board back with the real server")
    assert env.vend(3, wait=10).json()["status"] == "success"
    assert board.motor_starts() == ["start slot=1", "start slot=3"]
    assert board.stored_secret() == secret
