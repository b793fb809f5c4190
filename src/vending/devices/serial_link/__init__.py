"""USB serial boards: one reader thread per port, protocol v2 (or legacy v1), hot-plug.

Layers, each with one job, joined by callbacks:
- `transport`: the open port; pyserial's reader thread turns bytes into framed lines.
- `connection`: one port's session (`LinkState`): handshake, keep-alive pings, routing of
  the board's lines to waiting vends. It knows nothing of transactions.
- `device`: one board, keyed by the id it reports (from its MAC), never by port. It runs a
  vend by driving the pure exchange of `protocol/exchange.py` over whichever connection the
  board is on now, and hands outcomes learnt late to the vend service.
- `monitor`: the part Runtime starts. It rescans ports, opens new ones, notices busy ones,
  and hands identified boards to the registry.
"""

from .connection import LOST, REBOOTED, BoardFacts, LinkListener, LinkState, SerialConnection
from .device import MAX_OUTSTANDING, SerialDevice, VendLedger
from .monitor import PortPlaceholder, SerialMonitor
from .settings import SerialSettings

__all__ = [
    "LOST",
    "MAX_OUTSTANDING",
    "REBOOTED",
    "BoardFacts",
    "LinkListener",
    "LinkState",
    "PortPlaceholder",
    "SerialConnection",
    "SerialDevice",
    "SerialMonitor",
    "SerialSettings",
    "VendLedger",
]
