"""The knobs of the serial path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...protocol.exchange import ExchangeSettings


@dataclass
class SerialSettings:
    """Serial knobs, taken from Config by Runtime (tests shorten the timeouts)."""

    baudrate: int = 115200
    ack_timeout: float = 0.3
    max_retries: int = 3
    handshake_timeout: float = 2.0
    ping_interval: float = 5.0
    rescan_interval: float = 2.0
    vend_grace: float = 5.0  # extra wait when the board says a vend is still running

    @classmethod
    def from_config(cls, config: Any) -> SerialSettings:
        """The serial_* fields of a Config."""
        return cls(
            baudrate=config.serial_baudrate,
            ack_timeout=config.serial_ack_timeout,
            max_retries=config.serial_max_retries,
            handshake_timeout=config.serial_handshake_timeout,
            ping_interval=config.serial_ping_interval,
            rescan_interval=config.serial_rescan_interval,
        )

    @property
    def exchange(self) -> ExchangeSettings:
        """The timing the pure vend exchange needs."""
        return ExchangeSettings(self.ack_timeout, self.max_retries, self.vend_grace)
