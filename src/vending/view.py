"""A read-only view of the machine, for parts that report on it but must not change it
(the MQTT bridge): boards, slots, recent vends, active alerts, the currency and sales today."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .money import Currency

if TYPE_CHECKING:
    from .devices.base import Device
    from .devices.registry import DeviceRegistry
    from .reports import Business
    from .store import Slot, Store, Transaction
    from .store.operations import OperationsStore


class MachineView:
    """Answers questions about the machine; has no method that changes anything."""

    def __init__(self, registry: DeviceRegistry, store: Store, operations: OperationsStore,
                 slot_count: int, business: Business | None = None) -> None:
        self._registry = registry
        self._store = store
        self._operations = operations
        self.slot_count = slot_count
        self._business = business
        self.currency = business.currency if business is not None else Currency()

    def devices(self) -> list[Device]:
        """Every board the registry knows, in its order."""
        return self._registry.devices()

    def communication_mode(self) -> dict[str, Any]:
        """The mode and active board, as /status reports them."""
        return self._registry.communication_mode()

    def slots(self) -> list[Slot]:
        """The configured slots, in order."""
        return self._store.slots(self.slot_count)

    def slot(self, number: int) -> Slot:
        """One slot; InvalidSlot if it does not exist."""
        return self._store.slot(number)

    def recent_transactions(self, limit: int = 20) -> list[Transaction]:
        """The newest vends, newest first."""
        return self._store.transactions(limit=limit)[0]

    def transaction(self, txn_id: str) -> Transaction:
        """One vend by id; NotFound if there is none."""
        return self._store.get(txn_id)

    def active_alert_count(self) -> int:
        """How many alerts are raised and not yet acknowledged or cleared."""
        return self._operations.active_alert_count()

    def sales_today(self) -> dict[int, tuple[int, int]]:
        """Slot -> (count, value in minor units) sold since local midnight."""
        return self._business.today_by_slot() if self._business is not None else {}
