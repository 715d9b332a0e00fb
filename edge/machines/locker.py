"""The locker bank state machine: plain code, no threads, no I/O.

Per locker: occupancy free / reserved / occupied, in or out of service, and what the door
and item sensors last said. Fed door/item readings, pulse notices, commands and the time;
returns events (``Emit``). The public state adds ``open`` while the door is open and
``out_of_service`` when taken out of service.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from edge.core.clock import rfc3339
from edge.core.errors import CommandError
from edge.devices.lockers.events import (
    DoorClosed,
    DoorForced,
    DoorLeftOpen,
    DoorOpened,
    LockJammed,
    ParcelDeposited,
    ParcelOverdue,
    ParcelPickedUp,
)
from edge.models import Emit

Occupancy = Literal["free", "reserved", "occupied"]
OpenReason = Literal["deposit", "pickup", "service"]


@dataclass
class LockerRec:
    id: int
    occupancy: Occupancy = "free"
    in_service: bool = True
    parcel_id: str | None = None
    # The stored pickup-code hash (edge.devices.lockers.pickup.CodeHash.to_json()); opaque here.
    code_hash: dict[str, Any] | None = None
    deposited_at: str | None = None  # RFC 3339, wall clock
    overdue_reported: bool = False
    # Set by a jam check, cleared when the door is seen open or the locker is put (back) in
    # service. Kept across restarts: the hardware cannot tell it again without a pulse.
    jam: str | None = None
    # Volatile: re-learned from the hardware after a restart.
    door_open: bool | None = field(default=None, metadata={"volatile": True})
    item: bool | None = field(default=None, metadata={"volatile": True})
    fault: str | None = field(default=None, metadata={"volatile": True})
    last_pulse: float | None = field(default=None, metadata={"volatile": True})
    pulse_reason: str | None = field(default=None, metadata={"volatile": True})
    pulse_via: str | None = field(default=None, metadata={"volatile": True})
    opened_at: float | None = field(default=None, metadata={"volatile": True})
    open_reason: str | None = field(default=None, metadata={"volatile": True})
    left_open_reported: bool = field(default=False, metadata={"volatile": True})

    PERSISTED = (
        "id",
        "occupancy",
        "in_service",
        "parcel_id",
        "code_hash",
        "deposited_at",
        "overdue_reported",
        "jam",
    )


def fee_krw(stored_s: float, free_hours: float, fee_per_day: int) -> int:
    """Free for ``free_hours``, then ``fee_per_day`` for every started day after."""
    over = stored_s - free_hours * 3600
    if over <= 0:
        return 0
    return math.ceil(over / 86400) * fee_per_day


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


class LockerMachine:
    def __init__(
        self,
        ids: list[int],
        *,
        forced_window_s: float,
        free_hours: float,
        fee_per_day_krw: int,
        persisted: str | None = None,
    ) -> None:
        self.forced_window_s = forced_window_s
        self.free_hours = free_hours
        self.fee_per_day = fee_per_day_krw
        self.lockers: dict[int, LockerRec] = {i: LockerRec(i) for i in ids}
        if persisted:
            for row in json.loads(persisted):
                if row.get("id") in self.lockers:
                    self.lockers[row["id"]] = LockerRec(
                        **{k: v for k, v in row.items() if k in LockerRec.PERSISTED}
                    )

    def dump(self) -> str:
        rows = []
        for lk in self.lockers.values():
            d = asdict(lk)
            rows.append({k: d[k] for k in LockerRec.PERSISTED})
        return json.dumps(rows, sort_keys=True)

    def get(self, locker: int) -> LockerRec:
        lk = self.lockers.get(locker)
        if lk is None:
            raise CommandError("unknown_locker", f"no locker {locker} at this site")
        return lk

    # ---- public view ----
    def public_state(self, locker: int) -> dict[str, Any]:
        lk = self.lockers[locker]
        if not lk.in_service:
            state = "out_of_service"
        elif lk.door_open:
            state = "open"
        else:
            state = lk.occupancy
        return {
            "locker": lk.id,
            "state": state,
            "occupancy": lk.occupancy,
            "in_service": lk.in_service,
            "door": "unknown"
            if lk.door_open is None or lk.fault is not None
            else ("open" if lk.door_open else "closed"),
            "item": None if lk.fault is not None else lk.item,
            "parcel_id": lk.parcel_id,
            "deposited_at": lk.deposited_at,
            "overdue": lk.overdue_reported,
            "fault": lk.fault if lk.fault is not None else lk.jam,
        }

    # ---- commands (validate fully before changing anything) ----
    def check_open(self, locker: int, reason: OpenReason) -> None:
        lk = self.get(locker)
        if not lk.in_service and reason != "service":
            raise CommandError("out_of_service", f"locker {locker} is out of service")
        if lk.door_open:
            raise CommandError("wrong_state", f"locker {locker} door is already open")
        if lk.fault is not None:
            raise CommandError("fault", f"locker {locker} cannot be driven: {lk.fault}")
        if reason == "pickup" and lk.occupancy != "occupied":
            raise CommandError("wrong_state", f"locker {locker} holds no parcel ({lk.occupancy})")
        if reason == "deposit" and lk.occupancy == "occupied":
            raise CommandError("wrong_state", f"locker {locker} already holds a parcel")

    def check_assign(self, locker: int, parcel_id: str) -> LockerRec:
        lk = self.get(locker)
        if not lk.in_service:
            raise CommandError("out_of_service", f"locker {locker} is out of service")
        if lk.jam is not None:
            raise CommandError("fault", f"locker {locker} cannot take a parcel: {lk.jam}")
        if lk.occupancy != "free" and lk.parcel_id not in (None, parcel_id):
            raise CommandError(
                "wrong_state", f"locker {locker} is {lk.occupancy} for another parcel"
            )
        return lk

    def assign(
        self, locker: int, parcel_id: str, code_hash: dict[str, Any], deposited_at: datetime | None
    ) -> None:
        """Validate, then set. A code_hash equal to another locker's (the same salt and
        hash: the same pre-hashed code sent twice) is a duplicate; codes hashed with
        different salts are compared by the caller (the locker controller), which knows the code."""
        lk = self.check_assign(locker, parcel_id)
        for other in self.lockers.values():
            if other.id != locker and other.code_hash == code_hash:
                raise CommandError("duplicate_code", "that pickup code is in use at this site")
        lk.parcel_id = parcel_id
        lk.code_hash = code_hash
        if deposited_at is not None:
            lk.occupancy = "occupied"
            lk.deposited_at = rfc3339(deposited_at)
            lk.overdue_reported = False
        elif lk.occupancy == "free":
            lk.occupancy = "reserved"

    def release(self, locker: int) -> None:
        lk = self.get(locker)
        self._empty(lk)

    def set_service(self, locker: int, in_service: bool) -> None:
        lk = self.get(locker)
        lk.in_service = in_service
        if in_service:
            lk.jam = None  # serviced

    def stored_codes(self, exclude: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        """Every locker holding a code hash (reserved or occupied), but ``exclude``."""
        return [
            (lk.id, lk.code_hash)
            for lk in self.lockers.values()
            if lk.code_hash is not None and lk.id != exclude
        ]

    def pickup_candidates(self) -> list[tuple[int, dict[str, Any]]]:
        """The lockers a pickup code may open: occupied, in service, with a code hash."""
        return [
            (lk.id, lk.code_hash)
            for lk in self.lockers.values()
            if lk.code_hash is not None and lk.occupancy == "occupied" and lk.in_service
        ]

    # ---- hardware ----
    def pulse_fired(self, locker: int, reason: str, via: str, now: float) -> None:
        lk = self.lockers[locker]
        lk.last_pulse, lk.pulse_reason, lk.pulse_via = now, reason, via

    def jam_check(self, locker: int, pulse_time: float) -> list[Emit]:
        lk = self.lockers[locker]
        if lk.last_pulse != pulse_time:
            return []
        opened = lk.opened_at is not None and lk.opened_at >= pulse_time
        if opened or lk.door_open:
            return []
        lk.last_pulse = None
        lk.jam = f"lock jammed: the door did not open after a {lk.pulse_reason} pulse"
        return [Emit(f"locker-{locker}", LockJammed(locker=locker, reason=lk.pulse_reason))]

    def door(self, locker: int, is_open: bool, now: float, wall: datetime) -> list[Emit]:
        lk = self.lockers[locker]
        first = lk.door_open is None
        if lk.door_open == is_open:
            return []
        lk.door_open = is_open
        if is_open:
            lk.jam = None  # whatever was stuck, the door moved
        if first:
            if is_open:
                lk.opened_at, lk.open_reason = now, None
            return []
        dev = f"locker-{locker}"
        if is_open:
            lk.opened_at, lk.left_open_reported = now, False
            pulsed = lk.last_pulse is not None and now - lk.last_pulse <= self.forced_window_s
            if pulsed:
                lk.open_reason = lk.pulse_reason
                return [
                    Emit(dev, DoorOpened(locker=locker, reason=lk.pulse_reason, via=lk.pulse_via))
                ]
            lk.open_reason = "forced"
            return [Emit(dev, DoorForced(locker=locker, parcel_id=lk.parcel_id), alarm=True)]
        # closed
        open_s = round(now - lk.opened_at, 3) if lk.opened_at is not None else None
        out = [Emit(dev, DoorClosed(locker=locker, open_s=open_s, reason=lk.open_reason))]
        reason = lk.open_reason
        lk.opened_at = lk.open_reason = None
        lk.last_pulse = None
        if reason == "pickup" and lk.occupancy == "occupied" and lk.item is not True:
            out += self._picked_up(lk, wall)
        elif reason == "deposit" and lk.occupancy != "occupied" and lk.item is not False:
            lk.occupancy = "occupied"
            lk.deposited_at = rfc3339(wall)
            lk.overdue_reported = False
            out.append(
                Emit(
                    dev,
                    ParcelDeposited(
                        locker=locker, parcel_id=lk.parcel_id, deposited_at=lk.deposited_at
                    ),
                )
            )
        return out

    def item(self, locker: int, present: bool | None) -> None:
        self.lockers[locker].item = present

    def set_fault(self, locker: int, fault: str | None) -> None:
        # The last known door state is kept (shown as "unknown" while faulted), so a door
        # that changed while the board was unreachable is reported when it answers again.
        self.lockers[locker].fault = fault

    def left_open_check(self, locker: int, opened_at: float, now: float) -> list[Emit]:
        lk = self.lockers[locker]
        if not lk.door_open or lk.opened_at != opened_at or lk.left_open_reported:
            return []
        lk.left_open_reported = True
        return [
            Emit(f"locker-{locker}", DoorLeftOpen(locker=locker, open_s=round(now - opened_at, 3)))
        ]

    def tick(self, wall: datetime) -> list[Emit]:
        out: list[Emit] = []
        for lk in self.lockers.values():
            if lk.occupancy != "occupied" or lk.deposited_at is None or lk.overdue_reported:
                continue
            free_until = _parse(lk.deposited_at) + timedelta(hours=self.free_hours)
            if wall >= free_until:
                lk.overdue_reported = True
                out.append(
                    Emit(
                        f"locker-{lk.id}",
                        ParcelOverdue(
                            locker=lk.id,
                            parcel_id=lk.parcel_id,
                            deposited_at=lk.deposited_at,
                            free_until=rfc3339(free_until),
                            fee_per_day_krw=self.fee_per_day,
                        ),
                    )
                )
        return out

    # ---- helpers ----
    def _picked_up(self, lk: LockerRec, wall: datetime) -> list[Emit]:
        stored_s = 0.0
        if lk.deposited_at is not None:
            stored_s = max(0.0, (wall - _parse(lk.deposited_at)).total_seconds())
        data = ParcelPickedUp(
            locker=lk.id,
            parcel_id=lk.parcel_id,
            deposited_at=lk.deposited_at,
            picked_up_at=rfc3339(wall),
            stored_s=round(stored_s, 3),
            fee_krw=fee_krw(stored_s, self.free_hours, self.fee_per_day),
            via=lk.pulse_via,
        )
        self._empty(lk)
        return [Emit(f"locker-{lk.id}", data)]

    @staticmethod
    def _empty(lk: LockerRec) -> None:
        lk.occupancy = "free"
        lk.parcel_id = lk.code_hash = lk.deposited_at = None
        lk.overdue_reported = False
