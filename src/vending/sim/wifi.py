"""A WiFi board: discovery, pairing, register, long-poll, confirm (--legacy: the earlier firmware).

Behaves like our WiFi firmware as described in docs/protocol-wifi.md, so tests and users can
try the WiFi path with no hardware. The board remembers the request ids it has run (its
journal, kept across a simulated reboot as the firmware keeps it in NVS) and never runs one
twice; confirmations that could not be delivered wait in an outbox and are sent again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ..protocol import wifi as proto

logger = logging.getLogger("vending.sim.wifi")

JOURNAL_SIZE = 32


class NetworkDown(Exception):
    """The simulated WiFi link is down."""


class AuthRefused(Exception):
    """A 401 that does not prove it comes from our server: the key is kept."""


class NotPaired(Exception):
    """A signed request was due but the key is gone (UNPAIR): pair first."""


class BoardRevoked(AuthRefused):
    """A 401 `revoked` signed with our key: an operator revoked the board."""


@dataclass(frozen=True)
class MotorRun:
    """One motor run of the simulated board."""

    request_id: str | None
    slot: int
    at: float


def _random_mac() -> str:
    raw = bytes([0x24, 0x6F, 0x28]) + secrets.token_bytes(3)
    return ":".join(f"{b:02X}" for b in raw)


class WifiBoard:
    """One simulated board on its own named thread; `legacy=True` for the earlier firmware."""

    def __init__(self, device_id: str | None = None, *, server: tuple[str, int] | None = None,
                 discovery_target: tuple[str, int] = ("255.255.255.255", 12346),
                 http_port: int = 5000, legacy: bool = False, slots: int = 5,
                 motor_time: float = 0.2, secret: bytes | None = None,
                 state_file: Path | None = None, poll_wait: float | None = None,
                 legacy_interval: float = 2.0, source_port: int | None = None,
                 firmware: str | None = None, verbose: bool = False,
                 pair_retry: float = 0.2, retry_max: float = 30.0) -> None:
        self.mac = _random_mac()
        if device_id is None:
            device_id = "ESP32_" + self.mac.replace(":", "")
        elif device_id.startswith("ESP32_") and len(device_id) == 18:
            self.mac = proto.mac_from_legacy_id(device_id)
        self.device_id = device_id
        self.server = server
        self.discovery_target = discovery_target
        self.http_port = http_port
        self.legacy = legacy
        self.slots = slots
        self.motor_time = motor_time
        self.secret = secret
        self.state_file = state_file
        self.poll_wait = poll_wait
        self.legacy_interval = legacy_interval
        self.source_port = 12345 if source_port is None and legacy else source_port
        self.firmware = firmware or ("esp32_wifi_vend 1.0" if legacy else "vending-sim 2.0")
        self.verbose = verbose
        self.pair_retry = pair_retry
        self.retry_max = retry_max

        self.boot = 1
        self.seq = 0
        self.journal: OrderedDict[str, str] = OrderedDict()
        self.outbox: deque[dict[str, Any]] = deque()
        self.motor_runs: list[MotorRun] = []
        self.events: list[str] = []
        self.registered = False
        self.fingerprint: str | None = None
        self.drop_responses = 0
        self.confirm_gate = threading.Event()
        self.confirm_gate.set()
        self.network = threading.Event()
        self.network.set()
        self._private: Any = None
        self._session = requests.Session()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._load_state()

    # Lifecycle

    def start(self) -> WifiBoard:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"sim-wifi-{self.device_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the board's thread to end without waiting for it."""
        self._stop.set()
        self.confirm_gate.set()

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._session.close()

    def unpair(self) -> None:
        """Forget the key and pair again: the firmware's UNPAIR, typed at its serial console."""
        with self._lock:
            self.secret = None
            self._private = None
            self.registered = False
        self._save_state()
        self._event("secret forgotten (UNPAIR): pairing again")

    def reboot(self) -> None:
        """Power-cycle: forget the server and registration; the journal and key survive (NVS)."""
        with self._lock:
            self.boot += 1
            self.seq = 0
            self.registered = False
            self.server = None if self._discovers else self.server
            self._session.close()
            self._session = requests.Session()
        self._event("reboot")
        self._save_state()

    def drop_network(self) -> None:
        self.network.clear()
        self._event("network down")

    def restore_network(self) -> None:
        self.network.set()
        self._event("network up")

    @property
    def _discovers(self) -> bool:
        return self._initial_server is None

    def _event(self, text: str) -> None:
        self.events.append(text)
        if self.verbose:
            print(f"{time.strftime('%H:%M:%S')} {self.device_id}: {text}", flush=True)
        logger.debug("%s: %s", self.device_id, text)

    # Persistence (the firmware's NVS)

    def _load_state(self) -> None:
        self._initial_server = self.server
        if self.state_file is None or not self.state_file.exists():
            return
        data = json.loads(self.state_file.read_text(encoding="utf-8"))
        if data.get("secret") and self.secret is None:
            self.secret = bytes.fromhex(data["secret"])
        self.boot = int(data.get("boot", 0)) + 1
        self.journal = OrderedDict(data.get("journal", []))

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        data = {"device_id": self.device_id, "boot": self.boot,
                "secret": self.secret.hex() if self.secret else None,
                "journal": list(self.journal.items())}
        fd = os.open(str(self.state_file), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)

    # Discovery

    def discover(self, timeout: float = 0.5, attempts: int = 1) -> tuple[str, int] | None:
        """Find the server by UDP; our firmware checks the signed reply when it holds a key."""
        for _ in range(attempts):
            found = self._discover_once(timeout)
            if found is not None:
                return found
        return None

    def _discover_once(self, timeout: float) -> tuple[str, int] | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if self.source_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("", self.source_port))
            nonce = secrets.token_hex(16)
            if self.legacy:
                sock.sendto(proto.LEGACY_REQUEST.encode(), self.discovery_target)
            else:
                sock.sendto(proto.auth_request(self.device_id, nonce), self.discovery_target)
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                sock.settimeout(remaining)
                try:
                    data, addr = sock.recvfrom(512)
                except socket.timeout:
                    return None
                found = self._accept_reply(data, addr, nonce)
                if found is not None:
                    return found
        finally:
            sock.close()

    def _accept_reply(self, data: bytes, addr: tuple[str, int], nonce: str) -> tuple[str, int] | None:
        if self.legacy:
            text = data.decode("ascii", "replace")
            if text.startswith(proto.LEGACY_REPLY_PREFIX):
                ip = text[len(proto.LEGACY_REPLY_PREFIX):].strip()
                self._event(f"discovered server {ip} (legacy)")
                return ip, self.http_port
            return None
        reply = proto.parse_auth_reply(data)
        if reply is None:
            self._event(f"ignored a malformed discovery reply from {addr[0]}")
            return None
        if self.secret is not None:
            if not proto.verify_auth_reply(reply, self.secret, self.device_id, nonce):
                self._event(f"rejected discovery reply from {addr[0]}: bad MAC")
                return None
            self._event(f"discovered server {reply.ip}:{reply.port} (signed reply verified)")
        else:
            if reply.nonce != nonce:
                return None
            self._event(f"discovered server {reply.ip}:{reply.port} (not paired yet: unsigned)")
        return reply.ip, reply.port

    # HTTP

    def _url(self, target: str) -> str:
        assert self.server is not None
        return f"http://{self.server[0]}:{self.server[1]}{target}"

    def _http(self, method: str, target: str, body: Any = None, timeout: float = 5.0,
              signed: bool = False, compact: bool = False) -> requests.Response:
        if not self.network.is_set():
            raise NetworkDown()
        raw = b""
        if body is not None:
            separators = (",", ":") if compact else None
            raw = json.dumps(body, separators=separators).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        counter = 0
        key = self.secret  # UNPAIR may clear it from another thread meanwhile
        if signed:
            if key is None:
                raise NotPaired()
            with self._lock:
                self.seq += 1
                counter = (self.boot << 32) | self.seq
            headers[proto.HEADER_DEVICE] = self.device_id
            headers[proto.HEADER_COUNTER] = str(counter)
            headers[proto.HEADER_SIGNATURE] = proto.sign_request(
                key, method, target, self.device_id, counter, raw)
        response = self._session.request(method, self._url(target), data=raw or None,
                                         headers=headers, timeout=timeout)
        if key is not None and signed:
            if response.status_code == 401:
                given = response.headers.get(proto.HEADER_SIGNATURE, "")
                if proto.is_revoked_answer(key, self.device_id, counter, 401, response.content,
                                           given):
                    raise BoardRevoked(response.text)
                raise AuthRefused(response.text)
            expected = proto.sign_response(key, self.device_id, counter, response.status_code,
                                           response.content)
            given = response.headers.get(proto.HEADER_SIGNATURE, "")
            if not proto.check_signature(expected, given):
                self._event(f"rejected an unsigned or forged answer to {method} {target}")
                raise requests.ConnectionError("response signature check failed")
        return response

    # Our firmware (protocol 2)

    def pair(self, timeout: float = 30.0, retry: float = 0.2) -> bool:
        """Ask to pair until an operator approves; derive the shared secret."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if self._private is None:
            self._private = X25519PrivateKey.generate()
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        self.fingerprint = proto.key_fingerprint(public)
        self._event(f"pairing, key fingerprint {self.fingerprint}")
        deadline = time.monotonic() + timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            response = self._http("POST", "/esp32/v2/pair", {
                "device_id": self.device_id, "public_key": public, "firmware": self.firmware,
                "slots": self.slots, "protocol": 2})
            if response.status_code == 200:
                server_public = bytes.fromhex(response.json()["server_public_key"])
                shared = self._private.exchange(X25519PublicKey.from_public_bytes(server_public))
                self.secret = proto.pairing_secret(shared, self.device_id)
                self._save_state()
                self._event("paired")
                return True
            if response.status_code != 202:
                self._event(f"pairing refused: {response.status_code} {response.text.strip()}")
                return False
            self._stop.wait(retry)
        return False

    def register(self) -> dict[str, Any]:
        response = self._http("POST", "/esp32/v2/register", {
            "device_id": self.device_id, "ip_address": "127.0.0.1", "firmware": self.firmware,
            "protocol": 2, "slots": self.slots}, signed=True)
        response.raise_for_status()
        answer = response.json()
        self.registered = True
        self._event("registered")
        for request_id in answer.get("reconcile", []):
            result = self.journal.get(request_id, "not_received")
            self._event(f"reconcile {request_id}: {result}")
            self.outbox.append({"id": request_id, "result": result})
        return answer

    def poll_once(self) -> dict[str, Any] | None:
        target = "/esp32/v2/commands"
        if self.poll_wait is not None:
            target += f"?wait={self.poll_wait:g}"
        hold = self.poll_wait if self.poll_wait is not None else 25.0
        response = self._http("GET", target, timeout=hold + 10.0, signed=True)
        response.raise_for_status()
        answer = response.json()
        if answer.get("command") != "VEND":
            again = answer.get("poll_again_ms") or 0
            if again:
                self._stop.wait(again / 1000.0)
            return None
        if self.drop_responses > 0:
            self.drop_responses -= 1
            self._event(f"dropped the response carrying {answer.get('id')}")
            return None
        return answer

    def run_command(self, command: dict[str, Any]) -> None:
        """Run a VEND once: a request id already in the journal is confirmed, not run again."""
        request_id = command.get("id")
        slot = command.get("slot")
        if request_id in self.journal:
            self._event(f"{request_id} already done ({self.journal[request_id]}); confirming again")
            self.outbox.append({"id": request_id, "result": self.journal[request_id]})
            return
        if not isinstance(slot, int) or not 1 <= slot <= self.slots:
            result = "failed"
            self._event(f"{request_id}: bad slot {slot!r}")
        else:
            self._motor(request_id, slot)
            result = "success"
        self.journal[request_id] = result
        while len(self.journal) > JOURNAL_SIZE:
            self.journal.popitem(last=False)
        self._save_state()
        self.outbox.append({"id": request_id, "result": result,
                            "message": f"slot {slot} dispensed" if result == "success" else "bad slot"})

    def _motor(self, request_id: str | None, slot: int) -> None:
        self._event(f"motor slot {slot} for {request_id}")
        self.motor_runs.append(MotorRun(request_id, slot, time.time()))
        if self.motor_time > 0:
            self._stop.wait(self.motor_time)

    def flush_outbox(self) -> None:
        """Send every waiting confirmation; keep it when the server cannot be reached."""
        if self.outbox:
            self.confirm_gate.wait()
        while self.outbox and not self._stop.is_set():
            body = self.outbox[0]
            response = self._http("POST", "/esp32/v2/confirm", body, signed=True)
            if response.status_code == 503:
                raise requests.ConnectionError("server busy")
            if response.status_code == 409:
                self._event(f"server reports a conflicting outcome for {body['id']}")
            self.outbox.popleft()
            self._event(f"confirmed {body['id']} {body['result']} -> {response.status_code}")

    def _server_in_reach(self) -> bool:
        """True when the network is up and a server is known; else waits a little (discovering)."""
        if not self.network.is_set():
            self._stop.wait(0.05)
            return False
        if self.server is None:
            self.server = self.discover(timeout=0.5)
            if self.server is None:
                self._stop.wait(0.5)
                return False
        return True

    def _run(self) -> None:
        if self.legacy:
            self._run_legacy()
            return
        failures = 0
        refusals = 0
        while not self._stop.is_set():
            try:
                if not self._server_in_reach():
                    continue
                if self.secret is None:
                    if not self.pair(timeout=3600.0, retry=self.pair_retry):
                        self._stop.wait(1.0)
                    continue
                if not self.registered:
                    self.register()
                self.flush_outbox()
                command = self.poll_once()
                if command is not None:
                    self.run_command(command)
                    self.flush_outbox()
                failures = 0
                refusals = 0
            except NotPaired:
                self.registered = False
            except BoardRevoked:
                self._event("revoked by the server (signed answer): forgetting the key and"
                            " pairing again")
                with self._lock:
                    self.secret = None
                    self._private = None
                    self.registered = False
                self._save_state()
                failures = refusals = 0
            except AuthRefused as exc:
                # Anyone on the LAN can answer 401: keep the key, back off, keep trying.
                refusals += 1
                self.registered = False
                self._event(f"refused by the server (401, not signed with our key): keeping the"
                            f" key. If the server really lost it, type UNPAIR at the board's"
                            f" console and approve the board again. {exc.args[0][:80]!r}")
                if refusals % 3 == 0 and self._discovers:
                    self.server = None  # the signed discovery reply finds the real server
                self._stop.wait(min(self.retry_max, 0.2 * 2 ** min(refusals - 1, 10)))
            except (requests.RequestException, NetworkDown, OSError) as exc:
                failures += 1
                if not isinstance(exc, NetworkDown):
                    self._event(f"server unreachable ({type(exc).__name__})")
                self._stop.wait(min(2.0, 0.1 * failures))
                if failures >= 3 and self._discovers:
                    self.server = None
                    self.registered = False

    # The earlier firmware (protocol 1)

    def _run_legacy(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if not self._server_in_reach():
                    continue
                if not self.registered:
                    status = self._http("GET", "/status", timeout=3.0)
                    if "vending" not in status.text:
                        self._event("the server at the discovered address is not ours")
                        self.server = None
                        continue
                    self._http("POST", "/esp32/register", {
                        "device_id": self.device_id, "ip_address": "127.0.0.1",
                        "status": "ready", "slots_available": self.slots}, timeout=3.0,
                        compact=True)
                    self.registered = True
                    self._event("registered (legacy)")
                response = self._http("GET", f"/esp32/commands/{self.device_id}", timeout=3.0)
                command = response.json() if response.status_code == 200 else None
                if isinstance(command, dict) and command.get("command") == "VEND":
                    slot = int(command.get("slot", 0))
                    self._motor(command.get("id"), slot)
                    self._http("POST", "/esp32/confirm", {
                        "device_id": self.mac, "slot": slot, "success": True,
                        "message": f"Slot {slot} vended successfully",
                        "timestamp": int(time.monotonic() * 1000)}, timeout=3.0, compact=True)
                    self._event(f"confirmed slot {slot} (legacy)")
                failures = 0
            except (requests.RequestException, NetworkDown, OSError, ValueError) as exc:
                failures += 1
                if not isinstance(exc, NetworkDown):
                    self._event(f"server unreachable ({type(exc).__name__})")
                if failures >= 3 and self._discovers:
                    # The earlier firmware never re-registers, but it does rediscover.
                    self.server = None
            self._stop.wait(self.legacy_interval)


# Command line


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m vending.sim wifi`."""
    parser.add_argument("--server", type=_address, metavar="HOST:PORT",
                        help="skip discovery and use this server")
    parser.add_argument("--discover", default="255.255.255.255", metavar="ADDRESS",
                        help="where to send the discovery request (default: broadcast)")
    parser.add_argument("--discovery-port", type=int, default=12346)
    parser.add_argument("--http-port", type=int, default=5000,
                        help="server HTTP port when discovery does not say (legacy)")
    parser.add_argument("--legacy", action="store_true",
                        help="behave like the earlier firmware (protocol 1)")
    parser.add_argument("--device-id", help="board id (default ESP32_<random MAC>)")
    parser.add_argument("--count", type=int, default=1, help="how many boards to run")
    parser.add_argument("--slots", type=int, default=5)
    parser.add_argument("--motor-time", type=float, default=1.0)
    parser.add_argument("--state-dir", default=str(Path.home() / ".vending-sim"),
                        help="where each board keeps its key and journal (its NVS)")
    parser.add_argument("--source-port", type=int, help="UDP source port for discovery")


def run(args: argparse.Namespace) -> int:
    """Run boards until Ctrl+C, printing what each does."""
    logging.basicConfig(level=logging.INFO)
    boards = []
    for index in range(args.count):
        device_id = args.device_id
        if device_id and args.count > 1:
            device_id = f"{device_id}_{index + 1}"
        state = None
        if device_id and not args.legacy:
            state = Path(args.state_dir) / f"{device_id}.json"
        board = WifiBoard(device_id, server=args.server,
                          discovery_target=(args.discover, args.discovery_port),
                          http_port=args.http_port, legacy=args.legacy, slots=args.slots,
                          motor_time=args.motor_time, state_file=state,
                          source_port=args.source_port, verbose=True, pair_retry=2.0)
        print(f"{board.device_id}: starting ({'legacy' if args.legacy else 'protocol 2'})", flush=True)
        boards.append(board.start())
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for board in boards:
            board.stop()
    return 0
