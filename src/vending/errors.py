"""One hierarchy of the failures a caller may handle, each with its HTTP status."""

from __future__ import annotations

from typing import Any


class VendingError(Exception):
    """Root of every error the controller reports to a client."""

    status = 500
    code = "internal_error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: {"error": ..., "detail": ...} plus any extra fields."""
        return {"error": self.code, "detail": self.detail, **self.extra}


class BadRequest(VendingError):
    status = 400
    code = "bad_request"


class InvalidSlot(BadRequest):
    code = "invalid_slot"


class NotFound(VendingError):
    status = 404
    code = "not_found"


class Conflict(VendingError):
    status = 409
    code = "conflict"


class SoldOut(Conflict):
    code = "sold_out"


class IdempotencyKeyInFlight(Conflict):
    code = "idempotency_key_in_use"


class IdempotencyKeyMismatch(VendingError):
    status = 422
    code = "idempotency_key_reused"


class QueueFull(VendingError):
    status = 429
    code = "device_queue_full"


class NoDeviceAvailable(VendingError):
    status = 503
    code = "no_device_available"


class StoreUnavailable(VendingError):
    """The database cannot commit (disk full, locked by another program, I/O error)."""

    status = 503
    code = "store_unavailable"


class ShuttingDown(VendingError):
    status = 503
    code = "shutting_down"


class DeviceError(VendingError):
    """Something went wrong talking to a board."""

    status = 502
    code = "device_error"


class DeviceOffline(DeviceError):
    status = 409
    code = "device_offline"


class DeviceNotReady(DeviceError):
    """The board cannot take a vend now (pending approval, port busy, ...)."""

    status = 409
    code = "device_not_ready"


class Unauthorized(VendingError):
    """A board request without a valid signature, or a replayed one."""

    status = 401
    code = "unauthorized"


class Revoked(Unauthorized):
    """A genuine request from a board an operator revoked; the answer is signed with its old key."""

    code = "revoked"
    context: Any = None  # the board's AuthContext, so the answer can be signed


class Forbidden(VendingError):
    status = 403
    code = "forbidden"


class ServiceBusy(VendingError):
    """Try the same request again shortly."""

    status = 503
    code = "busy"


class KeyConflict(Conflict):
    """Two boards claim one id, or a request would change a board's protocol: an operator chooses."""

    code = "key_conflict"


class FingerprintMismatch(Conflict):
    """The operator approved a key fingerprint that is not the board's (any more)."""

    code = "fingerprint_mismatch"


class TooManyWaiting(VendingError):
    """One network address already has its share of boards waiting for approval."""

    status = 429
    code = "too_many_waiting"
