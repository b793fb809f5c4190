"""`check_system.py --e2e`: a server on loopback, a serial board on a pty, a WiFi board, a vend
through each, and a clean stop."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..waiting import poll_until
from .checks import PIP_FIX, use_this_checkout
from .report import FAIL, OK, SKIP, WARN, TestResult, error_text

E2E_STEP_TIMEOUT = 20.0  # seconds any one step may take before it is reported as failed
# Seconds the WiFi board has to find the server and ask to pair (a test shortens only this).
E2E_DISCOVERY_TIMEOUT = E2E_STEP_TIMEOUT
E2E_SERIAL_ID = "ESP32_5CCF7F0E2E01"
E2E_FIX = "run the tests to see where it breaks: ./test.sh (Windows: python -m pytest -q)"


@dataclass
class E2EReport:
    """What the self-test did: its checks, each vend, and whether the serial part ran."""

    result: TestResult
    vends: list[dict[str, Any]] = field(default_factory=list)
    serial: str = "ran"
    serial_skip_reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"vends": self.vends, "serial": self.serial,
                "serial_skip_reason": self.serial_skip_reason or None}


class _Api:
    """The running server's REST API as an operator's script uses it: bearer token, JSON."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body: Any = None,
             timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            parsed = json.loads(raw.decode("utf-8")) if raw else {}
        except ValueError:
            parsed = {"detail": raw[:200].decode("utf-8", "replace")}
        return status, parsed if isinstance(parsed, dict) else {"body": parsed}

    def device(self, device_id: str) -> dict[str, Any] | None:
        _, body = self.call("GET", "/esp32/devices/list")
        return next((d for d in body.get("devices", []) if d.get("device_id") == device_id), None)


def _wait_for(condition: Callable[[], Any], timeout: float | None = None) -> Any:
    """The first truthy value of `condition` within one step's time, else its last (falsy) one."""
    return poll_until(condition, E2E_STEP_TIMEOUT if timeout is None else timeout, interval=0.02)


def run_e2e(opts: argparse.Namespace) -> E2EReport:
    """Serve the app on 127.0.0.1, attach a serial board on a pty and a WiFi board, vend through each."""
    report = E2EReport(TestResult("End-to-End Self-Test"))
    result = report.result
    try:
        use_this_checkout()
        from vending import Config, create_app
        from vending.serving import BackgroundServer
        from vending.sim.wifi import WifiBoard
    except Exception as exc:
        result.add(FAIL, "Import", f"the app or its simulators do not import: {error_text(exc)}",
                   PIP_FIX)
        return report

    before = set(threading.enumerate())
    proxy_settings = _bypass_proxies_for_loopback()
    tmp = Path(tempfile.mkdtemp(prefix="vending-e2e-"))
    serial_board: Any = None
    wifi_board: Any = None
    app: Any = None
    server: Any = None
    try:
        result.add(OK, "Temporary data directory", str(tmp))
        if hasattr(os, "openpty"):
            from vending.sim.serial import SerialBoardSim

            serial_board = SerialBoardSim(E2E_SERIAL_ID, motor_time=0.05, seed=1).start()
            result.add(OK, "Serial board on a pty", f"{E2E_SERIAL_ID} on {serial_board.path}")
        else:
            report.serial = "skipped"
            report.serial_skip_reason = ("this system has no pseudo-terminals (os.openpty), so the"
                                         " serial board cannot be simulated; the WiFi part still runs")
            result.add(SKIP, "Serial board on a pty", f"skipped: {report.serial_skip_reason}")

        token = secrets.token_urlsafe(24)
        # Loopback only, nothing scanned but our own pty, nothing advertised, a throw-away
        # data directory: the self-test must not touch the shop's network or real boards.
        config = Config(
            data_dir=tmp, host="127.0.0.1", port=0, simulator=False,
            serial_ports=[serial_board.path] if serial_board else [], serial_scan=False,
            serial_handshake_timeout=1.0, serial_rescan_interval=0.2,
            discovery=True, discovery_port=0, mdns=False, mqtt_url="", webhook_urls=[],
            trust_localhost=False, admin_token=token, auto_approve_devices=False,
            threads=32, vend_timeout=10.0, shutdown_grace=1.0,
        )
        app = create_app(config)
        runtime = app.extensions["vending"]
        server = BackgroundServer(app, host="127.0.0.1", port=0, threads=config.threads).start()
        port = int(server.port)
        discovery = runtime.discovery
        if discovery is None or not discovery.port:
            result.add(FAIL, "Server started", "UDP discovery did not start on 127.0.0.1",
                       "see the error logged above; " + E2E_FIX)
            return report
        # The discovery reply must name the port the server really got.
        discovery.http_port = port
        api = _Api(f"http://127.0.0.1:{port}", token)
        result.add(OK, "Server started", f"http://127.0.0.1:{port}, UDP discovery on"
                   f" 127.0.0.1:{discovery.port}, operator token required")

        boards: list[tuple[str, str, Any]] = []
        if serial_board is not None:
            info = _wait_for(lambda: (d := api.device(E2E_SERIAL_ID)) and d.get("status") == "online" and d)
            if info:
                result.add(OK, "Serial board identified",
                           f"{E2E_SERIAL_ID} online over {info.get('transport')}, protocol"
                           f" {info.get('protocol')}, firmware {info.get('firmware_version')}")
                boards.append(("serial", E2E_SERIAL_ID, serial_board))
            else:
                result.add(FAIL, "Serial board identified",
                           f"{E2E_SERIAL_ID} not online after {E2E_STEP_TIMEOUT:g} s"
                           f" ({(api.device(E2E_SERIAL_ID) or {}).get('status', 'not listed')})",
                           E2E_FIX)

        wifi_board = WifiBoard(discovery_target=("127.0.0.1", discovery.port), motor_time=0.05,
                               poll_wait=2.0).start()
        wifi_id = wifi_board.device_id
        if _wifi_online(result, api, wifi_board, discovery.port):
            boards.append(("wifi", wifi_id, wifi_board))

        for slot, (transport, device_id, board) in enumerate(boards, start=1):
            _vend_through(report, api, transport, device_id, board, slot)
        if report.vends:
            _check_recorded(result, api, report.vends)
    except Exception as exc:
        result.add(FAIL, "Self-test crashed", error_text(exc),
                   f"{E2E_FIX}; if it persists report: {traceback.format_exc(limit=-2).strip()}")
    finally:
        _e2e_cleanup(result, before, tmp, serial_board, wifi_board, app, server)
        for name, value in proxy_settings.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return report


def _bypass_proxies_for_loopback() -> dict[str, str | None]:
    """Keep the self-test's HTTP on 127.0.0.1 even when http_proxy is set; returns the old values."""
    saved = {name: os.environ.get(name) for name in ("no_proxy", "NO_PROXY")}
    # urllib and requests (the WiFi board) both read no_proxy on every request.
    for name, current in saved.items():
        os.environ[name] = ",".join(filter(None, [current, "127.0.0.1", "localhost"]))
    return saved


def _wifi_online(result: TestResult, api: _Api, board: Any, discovery_port: int) -> bool:
    """Discovery, pairing request, operator approval, first held poll; a check for each."""
    device_id = board.device_id
    pending = _wait_for(lambda: (d := api.device(device_id)) and d.get("status") == "pending_approval",
                        E2E_DISCOVERY_TIMEOUT)
    found = next((e for e in board.events if e.startswith("discovered server")), None)
    if not pending or found is None:
        result.add(FAIL, "WiFi board found the server by discovery",
                   f"{device_id} sent discovery to 127.0.0.1:{discovery_port} but"
                   f" {'got no answer' if found is None else 'did not ask to pair'}"
                   f" within {E2E_DISCOVERY_TIMEOUT:g} s"
                   f" (board: {'; '.join(board.events[-3:]) or 'no events'})",
                   "a firewall may block UDP on 127.0.0.1; " + E2E_FIX)
        return False
    result.add(OK, "WiFi board found the server by discovery",
               f"{device_id}: {found}; asked to pair, waiting for approval")
    status, body = api.call("POST", f"/esp32/devices/{device_id}/approve")
    if status != 200:
        result.add(FAIL, "WiFi board approved", f"approve answered {status}: {body.get('detail')}",
                   E2E_FIX)
        return False
    result.add(OK, "WiFi board approved", f"POST /esp32/devices/{device_id}/approve with the operator token")
    info = _wait_for(lambda: (d := api.device(device_id)) and d.get("status") == "online"
                     and d.get("authenticated") and d)
    if not info:
        result.add(FAIL, "WiFi board paired and polling",
                   f"{device_id} not online after approval ({'; '.join(board.events[-3:])})", E2E_FIX)
        return False
    result.add(OK, "WiFi board paired and polling",
               f"{device_id} online over wifi, protocol {info.get('protocol')}, signed requests")
    return True


def _vend_through(report: E2EReport, api: _Api, transport: str, device_id: str, board: Any,
                  slot: int) -> None:
    """Select one board, vend, and check the answer against the board's own motor journal."""
    name = f"Vend over {transport}"
    result = report.result
    status, body = api.call("POST", "/esp32/devices/select", {"device_id": device_id})
    if status != 200:
        result.add(FAIL, name, f"selecting {device_id} answered {status}: {body.get('detail')}", E2E_FIX)
        return
    started = time.monotonic()
    status, body = api.call("POST", f"/vend/{slot}?wait=10", timeout=20.0)
    elapsed_ms = (time.monotonic() - started) * 1000
    txn = body.get("transaction_id")
    runs = [r for r in board.motor_runs if r.request_id == txn]
    vend = {"transport": transport, "device_id": body.get("device_id"), "slot": slot,
            "transaction_id": txn, "status": body.get("status"), "http_status": status,
            "communication": body.get("communication"), "motor_runs": len(runs),
            "milliseconds": round(elapsed_ms)}
    report.vends.append(vend)
    problems = []
    if status != 200 or body.get("status") != "success":
        why = body.get("detail") or body.get("message")
        problems.append(f"answered {status} {body.get('status')}: {why}")
    if body.get("communication") != transport or body.get("device_id") != device_id:
        problems.append(f"went to {body.get('device_id')} over {body.get('communication')}")
    if [r.slot for r in runs] != [slot]:
        problems.append(f"the board ran its motor {len(runs)} time(s) for it")
    vend["ok"] = not problems
    if problems:
        result.add(FAIL, name, f"slot {slot} on {device_id}: {'; '.join(problems)}", E2E_FIX)
        return
    result.add(OK, name, f"slot {slot} on {device_id}: success in {elapsed_ms:.0f} ms,"
               f" transaction {txn}, the motor ran once")


def _check_recorded(result: TestResult, api: _Api, vends: list[dict[str, Any]]) -> None:
    """Each vend is in the database with the outcome the API answered."""
    status, body = api.call("GET", "/transactions?limit=50")
    stored = {t.get("transaction_id"): t.get("status") for t in body.get("transactions", [])}
    wrong = [f"{v['transaction_id']} ({stored.get(v['transaction_id'], 'missing')})"
             for v in vends if stored.get(v["transaction_id"]) != v["status"]]
    if status != 200 or wrong:
        result.add(FAIL, "Transactions recorded", f"GET /transactions answered {status};"
                   f" not as answered: {', '.join(wrong) or '-'}", E2E_FIX)
    else:
        result.add(OK, "Transactions recorded", f"{len(vends)} vend(s) in the database as answered")


def _e2e_cleanup(result: TestResult, before: set[threading.Thread], tmp: Path, serial_board: Any,
                 wifi_board: Any, app: Any, server: Any) -> None:
    """Stop everything the self-test started, then say whether anything was left behind."""
    problems = []
    steps: list[tuple[str, Callable[[], None]]] = []
    if wifi_board is not None:
        steps.append(("WiFi board", wifi_board.request_stop))
    if app is not None:
        steps.append(("controller", app.extensions["vending"].stop))  # ends held polls at once
    if wifi_board is not None:
        steps.append(("WiFi board", wifi_board.stop))
    if server is not None:
        steps.append(("HTTP server", server.stop))
    if serial_board is not None:
        steps.append(("serial board", serial_board.stop))
    for what, stop in steps:
        try:
            stop()
        except Exception as exc:
            problems.append(f"stopping the {what}: {error_text(exc)}")
    left = _wait_for(lambda: not [t for t in threading.enumerate() if t not in before and t.is_alive()],
                     timeout=5.0)
    if not left:
        names = sorted(t.name for t in threading.enumerate() if t not in before and t.is_alive())
        problems.append(f"threads still running: {', '.join(names)}")
    shutil.rmtree(tmp, ignore_errors=True)
    if tmp.exists():
        problems.append(f"could not remove {tmp}")
    if problems:
        result.add(WARN, "Clean-up", "; ".join(problems), "report this: the self-test leaks")
    else:
        pty = ", pty closed" if serial_board is not None else ""
        result.add(OK, "Clean-up", f"server, boards and threads stopped{pty}, {tmp} removed")
