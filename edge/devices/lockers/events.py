"""The locker kind's events."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from edge.models import EventData


class DoorOpened(EventData):
    TYPE: ClassVar[str] = "door.opened"
    locker: int
    reason: Literal["deposit", "pickup", "service"] | None
    via: str | None = Field(description="'code' (pickup reader) or the command's key id.")


class DoorClosed(EventData):
    TYPE: ClassVar[str] = "door.closed"
    locker: int
    open_s: float | None = Field(description="How long the door was open.")
    reason: Literal["deposit", "pickup", "service", "forced"] | None


class DoorForced(EventData):
    TYPE: ClassVar[str] = "door.forced"
    locker: int
    parcel_id: str | None


class DoorLeftOpen(EventData):
    TYPE: ClassVar[str] = "door.left_open"
    locker: int
    open_s: float


class LockJammed(EventData):
    TYPE: ClassVar[str] = "lock.jammed"
    locker: int
    reason: str | None = Field(description="Why it was being opened.")


class LockFault(EventData):
    TYPE: ClassVar[str] = "lock.fault"
    locker: int
    reason: str = Field(description="Why the coil could not be driven (driver error).")


class ParcelDeposited(EventData):
    TYPE: ClassVar[str] = "parcel.deposited"
    locker: int
    parcel_id: str | None = Field(description="null when deposited before locker.assign.")
    deposited_at: str


class ParcelPickedUp(EventData):
    TYPE: ClassVar[str] = "parcel.picked_up"
    locker: int
    parcel_id: str | None
    deposited_at: str | None
    picked_up_at: str
    stored_s: float
    fee_krw: int = Field(description="0 within the free period, then per started day.")
    via: str | None = Field(description="'code' (offline pickup) or the command's key id.")


class ParcelOverdue(EventData):
    TYPE: ClassVar[str] = "parcel.overdue"
    locker: int
    parcel_id: str | None
    deposited_at: str
    free_until: str
    fee_per_day_krw: int


class PickupRejected(EventData):
    TYPE: ClassVar[str] = "pickup.rejected"
    reason: str = Field(
        description="unknown_code, locked_out, reader_busy (codes typed faster than they "
        "are checked), ambiguous_code (it matches more than one locker), check_failed, or "
        "why the matching locker could not open."
    )
    locker: int | None


class PickupLockedOut(EventData):
    TYPE: ClassVar[str] = "pickup.locked_out"
    until: str
    failures: int


class BoardFault(EventData):
    TYPE: ClassVar[str] = "board.fault"
    bus: str
    board: int
    reason: str


class BoardRecovered(EventData):
    TYPE: ClassVar[str] = "board.recovered"
    bus: str
    board: int
