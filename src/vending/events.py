"""A small synchronous event bus: parts announce what happened, listeners react.

Listeners run on the publisher's thread, so they must be quick; anything slow (a webhook,
an MQTT publish) queues its own work.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

logger = logging.getLogger("vending.events")

# A vend's state changes only in the vend service, which publishes one of these for each change.
VEND_SENT = "vend.sent"  # data: transaction (dict): pending -> sent
VEND_FINISHED = "vend.finished"  # data: transaction (dict): open -> final (also crash recovery)
VEND_SETTLED = "vend.settled"  # data: transaction (dict), previous: unknown -> success/failed
DEVICE_STATE = "device.state"  # data: device_id, transport, state, previous, detail
DEVICE_ADDED = "device.added"  # data: device (dict)
DEVICE_REMOVED = "device.removed"  # data: device_id
SLOT_CHANGED = "slot.changed"  # data: slot (dict), previous (dict, optional)
SERIAL_RECONNECT = "serial.reconnect"  # data: device_id, port
DEVICE_PENDING_APPROVAL = "device.pending_approval"  # data: device_id, address (optional)
DEVICE_CONFLICT = "device.conflict"  # data: device_id, detail, source (optional)
AUTH_FAILED = "auth.failed"  # data: source (remote address), who (optional)
ALERT_RAISED = "alert.raised"  # data: alert (dict)
STORE_UNAVAILABLE = "store.unavailable"  # data: detail
STORE_RECOVERED = "store.recovered"  # data: since (wall time), written (held outcomes written)
ALERT_ACKNOWLEDGED = "alert.acknowledged"  # data: alert (dict)


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)


Listener = Callable[[Event], None]


class EventBus:
    """Publish/subscribe within one process."""

    def __init__(self) -> None:
        self._listeners: list[tuple[frozenset[str] | None, Listener]] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener, kinds: set[str] | None = None) -> None:
        """Call `listener(event)` for every event, or only for `kinds`."""
        with self._lock:
            self._listeners.append((frozenset(kinds) if kinds else None, listener))

    def publish(self, kind: str, **data: Any) -> Event:
        """Hand an event to every interested listener; a failing listener is logged, not raised."""
        event = Event(kind, data)
        with self._lock:
            listeners = list(self._listeners)
        for kinds, listener in listeners:
            if kinds is None or kind in kinds:
                try:
                    listener(event)
                except Exception:
                    logger.exception("listener %r failed on %s", listener, kind)
        return event
