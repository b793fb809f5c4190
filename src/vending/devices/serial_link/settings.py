"""The knobs of the serial path: declared once in config, turned here into the exchange's timing."""

from __future__ import annotations

from ...config import SerialSettings
from ...protocol.exchange import ExchangeSettings

__all__ = ["SerialSettings", "exchange_settings"]


def exchange_settings(settings: SerialSettings) -> ExchangeSettings:
    """The timing the pure vend exchange needs."""
    return ExchangeSettings(settings.ack_timeout, settings.max_retries, settings.vend_grace)
