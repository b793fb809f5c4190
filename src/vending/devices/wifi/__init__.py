"""WiFi boards: registration, long-polled commands, confirmations, pairing and approval.

- `device`: one board as the registry sees it (its command FIFO and polls);
- `keys`: the X25519 pairing and which key may sign what;
- `approval`: the waiting list, conflicts, approve, revoke and reject;
- `auth`: signed protocol 2 requests;
- `legacy`: the earlier firmware's protocol 1;
- `hub`: the facade the web layer calls, and the watchdog thread.

Request bodies arrive already parsed into the typed values of `vending.protocol.wifi`.
"""

from ...config import WifiSettings
from .auth import AuthContext, sign_response
from .device import WifiDevice
from .hub import ParkedPoll, WifiHub, build_wifi

__all__ = ["AuthContext", "ParkedPoll", "WifiDevice", "WifiHub", "WifiSettings", "build_wifi",
           "sign_response"]
