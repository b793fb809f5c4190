"""Coverage-guided fuzzing of WiFi discovery with atheris (libFuzzer) for a set time.

Run: PYTHONPATH=src python bench/fuzz_discovery.py --seconds 60
Each input is a datagram as the server's discovery thread gets it (parsed, answered through
DiscoveryService's own handler, with a socket stand-in that keeps the reply) and as a board
gets a reply (parsed and verified). A finding is any exception, a reply to a datagram that is
not one of the three requests, or a reply a board would accept without the server's key.
libFuzzer prints the executions at the end ("Done N runs in S second(s)"); a finding stops
the run with the traceback and writes the input to a crash-* file.
Needs `pip install atheris` (Linux/macOS); tests/test_discovery_properties.py checks the same
properties with hypothesis in CI.
"""

from __future__ import annotations

import argparse
import sys

import atheris

with atheris.instrument_imports():
    from vending.devices.discovery import DiscoveryService
    from vending.protocol import wifi as proto

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
BOARD = "ESP32_FUZZ"
NONCE = "0123456789abcdef0123456789abcdef"


class KeptReply:
    """Stands in for the UDP socket: keeps what the handler would send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, _addr: tuple[str, int]) -> int:
        self.sent.append(data)
        return len(data)


# The limiter is set so it never refuses: the fuzzer is one sender sending very fast.
SERVICE = DiscoveryService(0, 5000, lambda device_id: KEY if device_id == BOARD else None,
                           rate=1e12, burst=1e12)


def one_input(data: bytes) -> None:
    """One datagram, to the server's handler and to a board waiting for a reply."""
    sock = KeptReply()
    SERVICE._handle(sock, data, ("127.0.0.1", 40000))  # type: ignore[arg-type]
    request = proto.parse_discovery(data)
    if request is None:
        assert not sock.sent, f"answered a datagram that is not a request: {data!r}"
    else:
        assert len(sock.sent) == 1
        if request.form == "auth":
            reply = proto.parse_auth_reply(sock.sent[0])
            assert reply is not None and reply.nonce == request.nonce
            signed = request.device_id == BOARD
            assert proto.verify_auth_reply(reply, KEY, BOARD, request.nonce or "") == signed
    # The same bytes as a reply a board receives: only the server's key may make it count.
    reply = proto.parse_auth_reply(data)
    if reply is not None:
        assert not proto.verify_auth_reply(reply, OTHER_KEY, BOARD, NONCE) or \
            reply.mac.lower() == proto.discovery_mac(OTHER_KEY, BOARD, reply.ip, reply.port,
                                                     NONCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    args, rest = parser.parse_known_args()
    atheris.Setup([sys.argv[0], f"-max_total_time={args.seconds}", "-max_len=300", *rest],
                  one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
