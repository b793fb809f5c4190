"""The WiFi wire format and the discovery rate limit, without sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from vending.devices.discovery import RateLimiter, facing_address
from vending.protocol import wifi as proto

KEY = bytes(range(32))


def test_the_three_discovery_requests_are_recognised_and_nothing_else():
    assert proto.parse_discovery(b"DISCOVER_FLASK_SERVER").form == "plain"
    assert proto.parse_discovery(b"ESP32_DISCOVERY_REQUEST\r\n").form == "legacy"
    request = proto.parse_discovery(b"VENDING_DISCOVER_V2 ESP32_AABBCCDDEEFF " + b"ab" * 16)
    assert (request.form, request.device_id, request.nonce) == ("auth", "ESP32_AABBCCDDEEFF", "ab" * 16)
    for junk in (b"", b"DISCOVER", b"\xff\xfe", b"VENDING_DISCOVER_V2 id short",
                 b"VENDING_DISCOVER_V2 bad/id " + b"ab" * 16, b"DISCOVER_FLASK_SERVER" * 20):
        assert proto.parse_discovery(junk) is None


@given(st.binary(max_size=600))
def test_no_datagram_makes_the_parser_raise(data):
    proto.parse_discovery(data)
    proto.parse_auth_reply(data)


def test_a_signed_discovery_reply_verifies_only_with_the_right_key_and_nonce():
    nonce = "0f" * 16
    reply = proto.parse_auth_reply(proto.auth_reply(KEY, "B1", "10.0.0.2", 5000, nonce))
    assert (reply.ip, reply.port) == ("10.0.0.2", 5000)
    assert proto.verify_auth_reply(reply, KEY, "B1", nonce)
    assert not proto.verify_auth_reply(reply, b"\x00" * 32, "B1", nonce)
    assert not proto.verify_auth_reply(reply, KEY, "B2", nonce)
    assert not proto.verify_auth_reply(reply, KEY, "B1", "1f" * 16)
    unsigned = proto.parse_auth_reply(proto.auth_reply(None, "B1", "10.0.0.2", 5000, nonce))
    assert unsigned.mac == "-" and not proto.verify_auth_reply(unsigned, KEY, "B1", nonce)


def test_the_request_signature_covers_method_target_counter_and_body():
    sig = proto.sign_request(KEY, "POST", "/esp32/v2/confirm", "B1", 7, b'{"id":"x"}')
    assert proto.check_signature(sig, sig.upper())
    for changed in (("GET", "/esp32/v2/confirm", "B1", 7, b'{"id":"x"}'),
                    ("POST", "/esp32/v2/register", "B1", 7, b'{"id":"x"}'),
                    ("POST", "/esp32/v2/confirm", "B2", 7, b'{"id":"x"}'),
                    ("POST", "/esp32/v2/confirm", "B1", 8, b'{"id":"x"}'),
                    ("POST", "/esp32/v2/confirm", "B1", 7, b'{"id":"y"}')):
        assert not proto.check_signature(proto.sign_request(KEY, *changed), sig)


def test_the_canonical_request_string_is_as_documented():
    text = proto.request_string("get", "/esp32/v2/commands?wait=25", "B1", 4294967297, b"")
    assert text == (b"VEND1-REQ\nGET\n/esp32/v2/commands?wait=25\nB1\n4294967297\n"
                    b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_counters_must_be_plain_positive_decimals():
    assert proto.parse_counter("1") == 1
    for bad in (None, "", "0", "-1", "1e3", "01x", "9" * 20, " 5"):
        assert proto.parse_counter(bad) is None


def test_the_earlier_firmware_mac_maps_to_its_registered_id():
    assert proto.legacy_id_from_mac("24:6f:28:a1:b2:c3") == "ESP32_246F28A1B2C3"
    assert proto.legacy_id_from_mac("ESP32_246F28A1B2C3") is None
    assert proto.mac_from_legacy_id("ESP32_246F28A1B2C3") == "24:6F:28:A1:B2:C3"


def test_the_rate_limiter_allows_a_burst_then_refills_per_sender():
    limiter = RateLimiter(rate=5.0, burst=3.0, max_senders=2)
    assert [limiter.allow("a", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", now=0.0)
    assert not limiter.allow("c", now=0.0)  # table full of senders still busy
    assert limiter.allow("a", now=1.0)
    assert limiter.allow("c", now=10.0)  # refilled senders are forgotten to make room


def test_the_facing_address_of_loopback_is_loopback():
    assert facing_address("127.0.0.1") == "127.0.0.1"


def test_the_simulator_command_line_lists_the_wifi_board():
    src = str(Path(__file__).resolve().parents[1] / "src")
    result = subprocess.run([sys.executable, "-m", "vending.sim", "wifi", "--help"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": src},
                            timeout=30)
    assert result.returncode == 0
    assert "--legacy" in result.stdout and "--discover" in result.stdout


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
_bodies = st.dictionaries(
    st.sampled_from(["device_id", "public_key", "id", "result", "message", "reason", "slot",
                     "slots", "slots_available", "success", "firmware", "ip_address", "status",
                     "fingerprint", "secret", "other"]), _json_values, max_size=8)
_PARSERS = (proto.parse_pair, proto.parse_register, proto.parse_confirm,
            proto.parse_legacy_register, proto.parse_legacy_confirm, proto.parse_legacy_data,
            proto.parse_approve)


@given(_bodies)
def test_every_body_parser_returns_a_typed_value_or_raises_body_error_only(body):
    for parse in _PARSERS:
        try:
            value = parse(body)
        except proto.BodyError as exc:
            assert str(exc)
            continue
        for name, field_value in vars(value).items():
            if name in ("device_id", "public_key", "request_id", "result", "message", "text"):
                assert field_value is None or isinstance(field_value, str)


def test_a_pair_body_becomes_a_typed_request_with_a_lower_case_key():
    request = proto.parse_pair({"device_id": "B1", "public_key": "AB" * 32, "slots": 7,
                                "firmware": 3})
    assert request == proto.PairRequest("B1", "ab" * 32, proto.BoardFacts(None, 7, None))
    assert proto.parse_approve({"fingerprint": "3f2a-91c0"}).fingerprint == "3F2A-91C0"
