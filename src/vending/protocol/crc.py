"""CRC-16/CCITT-FALSE, the checksum of v2 machine lines."""

from __future__ import annotations

import binascii


def crc16(data: bytes) -> int:
    """Return CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0) of data."""
    # crc_hqx is the same polynomial, unreflected, computed in C; the init value picks FALSE.
    return binascii.crc_hqx(data, 0xFFFF)


def crc16_hex(data: bytes) -> str:
    """Return the CRC of data as the 4 uppercase hex digits written after `*`."""
    return f"{crc16(data):04X}"
