"""The words a vend's state is told in: one vocabulary for the wire, the database and the API.

str-valued, so JSON, SQLite and comparisons with plain strings see the same words as before.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A str enum whose str() and format() are its value on every Python from 3.9."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class VendState(_Word):
    """Where a persisted vend stands. Only the vend service moves a vend from one to another."""

    PENDING = "pending"  # persisted, not handed to a board yet
    SENT = "sent"  # committed before the first byte reached a board
    SUCCESS = "success"
    FAILED = "failed"
    UNKNOWN = "unknown"  # sent, never confirmed: a person must look at the machine

    @property
    def is_final(self) -> bool:
        """True for success, failed and unknown."""
        return self in (VendState.SUCCESS, VendState.FAILED, VendState.UNKNOWN)

    @property
    def is_open(self) -> bool:
        """True for pending and sent."""
        return not self.is_final


class Outcome(_Word):
    """What a board (or the lack of one) made of a vend: the final states a board can cause."""

    SUCCESS = "success"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def state(self) -> VendState:
        """The vend state this outcome records."""
        return VendState(self.value)


OPEN_STATES = (VendState.PENDING, VendState.SENT)
FINAL_STATES = (VendState.SUCCESS, VendState.FAILED, VendState.UNKNOWN)
