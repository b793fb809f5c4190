"""Properties of the discovery parser and the signed discovery reply, with hypothesis.

The parser reads datagrams from anyone on the network, so it must accept exactly the three
documented requests, never raise, and never hand on an id or nonce it did not check.
bench/fuzz_discovery.py drives the same functions with coverage-guided fuzzing.
"""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vending.protocol import wifi as proto

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

device_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
nonces = st.from_regex(r"[0-9a-fA-F]{32}", fullmatch=True)
secrets = st.binary(min_size=32, max_size=32)
ipv4 = st.ip_addresses(v=4).map(str)
ports = st.integers(min_value=1, max_value=65535)
trailing = st.sampled_from(["", "\r\n", "\n", "\x00", " ", "\r\n\x00"])


def _is_well_formed(request: proto.DiscoveryRequest) -> bool:
    if request.form in ("plain", "legacy"):
        return request.device_id is None and request.nonce is None
    return (request.form == "auth" and proto.valid_device_id(request.device_id)
            and request.nonce is not None and proto.is_hex(request.nonce, proto.NONCE_HEX_LEN)
            and request.nonce == request.nonce.lower())


@FAST
@given(st.binary(max_size=400))
def test_whatever_a_datagram_holds_the_parser_returns_none_or_a_checked_request(data):
    request = proto.parse_discovery(data)
    assert request is None or _is_well_formed(request)
    if len(data) > proto.MAX_DATAGRAM:
        assert request is None


@FAST
@given(device_ids, nonces, trailing)
def test_an_authenticated_request_round_trips_with_its_nonce_in_lower_case(device_id, nonce, end):
    request = proto.parse_discovery(proto.auth_request(device_id, nonce) + end.encode())
    assert request == proto.DiscoveryRequest("auth", device_id, nonce.lower())


@FAST
@given(device_ids, nonces, st.data())
def test_one_changed_byte_in_a_request_gives_none_or_another_checked_request(device_id, nonce,
                                                                            data):
    raw = bytearray(proto.auth_request(device_id, nonce))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    request = proto.parse_discovery(bytes(raw))
    assert request is None or _is_well_formed(request)


@FAST
@given(st.sampled_from([proto.PLAIN_REQUEST, proto.LEGACY_REQUEST]), trailing,
       st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=8))
def test_the_plain_requests_are_recognised_only_word_for_word(word, end, extra):
    assert proto.parse_discovery((word + end).encode()) is not None
    assume(extra.strip("\r\n\x00 "))
    assert proto.parse_discovery((word + extra).encode()) is None


@FAST
@given(secrets, device_ids, ipv4, ports, nonces)
def test_a_signed_reply_round_trips_and_verifies_for_the_board_that_asked(secret, device_id, ip,
                                                                          port, nonce):
    reply = proto.parse_auth_reply(proto.auth_reply(secret, device_id, ip, port, nonce))
    assert reply is not None and (reply.ip, reply.port, reply.nonce) == (ip, port, nonce)
    assert proto.verify_auth_reply(reply, secret, device_id, nonce)


@FAST
@given(secrets, device_ids, ipv4, ports, nonces, st.data())
def test_a_reply_changed_anywhere_does_not_verify(secret, device_id, ip, port, nonce, data):
    raw = bytearray(proto.auth_reply(secret, device_id, ip, port, nonce))
    index = data.draw(st.integers(0, len(raw) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != raw[index]))
    raw[index] = replacement
    reply = proto.parse_auth_reply(bytes(raw))
    if reply is None:
        return
    # Case changes in the hex MAC are the one change that keeps the meaning.
    same = (reply.ip, reply.port, reply.nonce, reply.mac.lower()) == (
        ip, port, nonce, proto.discovery_mac(secret, device_id, ip, port, nonce))
    assert proto.verify_auth_reply(reply, secret, device_id, nonce) == same


@FAST
@given(secrets, st.binary(min_size=32, max_size=32), device_ids, ipv4, ports, nonces)
def test_a_reply_signed_with_another_key_or_for_another_nonce_is_refused(secret, other, device_id,
                                                                         ip, port, nonce):
    assume(secret != other)
    forged = proto.parse_auth_reply(proto.auth_reply(other, device_id, ip, port, nonce))
    assert forged is not None and not proto.verify_auth_reply(forged, secret, device_id, nonce)
    genuine = proto.parse_auth_reply(proto.auth_reply(secret, device_id, ip, port, nonce))
    replayed_nonce = "0" * 32 if nonce != "0" * 32 else "1" * 32
    assert not proto.verify_auth_reply(genuine, secret, device_id, replayed_nonce)


@FAST
@given(st.binary(max_size=400), secrets, device_ids, nonces)
def test_verifying_any_parsed_reply_never_raises(data, secret, device_id, nonce):
    reply = proto.parse_auth_reply(data)
    if reply is not None:
        proto.verify_auth_reply(reply, secret, device_id, nonce)
