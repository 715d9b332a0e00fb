"""LockerMachine (edge/machines/locker.py): the locker bank's state machine, driven with plain
numbers for the monotonic clock and explicit datetimes for the wall clock. No threads,
no hardware, no sleeping."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edge.core.clock import rfc3339
from edge.core.errors import CommandError
from edge.machines.locker import LockerMachine, fee_krw
from edge.models import Emit

FORCED_WINDOW_S = 10.0
FREE_HOURS = 48.0
FEE = 1000
T0 = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)


class Bench:
    """A LockerMachine plus a clock that moves the monotonic and wall time together."""

    def __init__(self, ids: tuple[int, ...] = (1, 2, 3), persisted: str | None = None) -> None:
        self.m = LockerMachine(
            list(ids),
            forced_window_s=FORCED_WINDOW_S,
            free_hours=FREE_HOURS,
            fee_per_day_krw=FEE,
            persisted=persisted,
        )
        self.mono = 5000.0
        self.wall = T0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)

    def boot(self, *ids: int, item: bool | None = False) -> None:
        """First readings: doors closed, item sensors as given. Emits nothing."""
        for i in ids or tuple(self.m.lockers):
            assert self.m.door(i, False, self.mono, self.wall) == []
            self.m.item(i, item)

    def door(self, locker: int, is_open: bool) -> list[Emit]:
        return self.m.door(locker, is_open, self.mono, self.wall)

    def pulse(self, locker: int, reason: str = "deposit", via: str = "centre") -> float:
        self.m.check_open(locker, reason)  # type: ignore[arg-type]
        self.m.pulse_fired(locker, reason, via, self.mono)
        return self.mono

    def state(self, locker: int) -> dict[str, Any]:
        return self.m.public_state(locker)


def types(emits: list[Emit]) -> list[str]:
    return [e.type for e in emits]


def refusal(fn: Callable[..., object], *args: object) -> str:
    """The code of the CommandError that ``fn(*args)`` raises."""
    with pytest.raises(CommandError) as info:
        fn(*args)
    return info.value.code


# --------------------------------------------------------------------------- deposit


def opens(b: Bench, code_hash: object) -> int | None:
    """The locker a pickup with this (opaque) code hash may open, if any."""
    found = [i for i, h in b.m.pickup_candidates() if h == code_hash]
    assert len(found) <= 1
    return found[0] if found else None


def test_deposit_with_item_sensor_assign_first() -> None:
    b = Bench()
    b.boot()
    b.m.assign(1, "P-1", "hash-1", None)
    assert b.state(1)["state"] == "reserved"

    b.advance(1)
    b.pulse(1, "deposit", via="centre-2026")
    b.advance(0.3)
    opened = b.door(1, True)
    assert types(opened) == ["door.opened"]
    assert opened[0].data == {"locker": 1, "reason": "deposit", "via": "centre-2026"}
    assert opened[0].alarm is False
    assert opened[0].device == "locker-1"
    assert b.state(1)["state"] == "open"

    b.m.item(1, True)
    b.advance(4)
    closed = b.door(1, False)
    assert types(closed) == ["door.closed", "parcel.deposited"]
    assert closed[0].data == {"locker": 1, "open_s": 4.0, "reason": "deposit"}
    assert closed[1].data == {
        "locker": 1,
        "parcel_id": "P-1",
        "deposited_at": rfc3339(b.wall),
    }
    st = b.state(1)
    assert st["state"] == "occupied"
    assert st["deposited_at"] == rfc3339(b.wall)
    assert st["door"] == "closed"
    assert st["item"] is True


def test_deposit_without_item_sensor_counts_on_the_door_alone() -> None:
    b = Bench()
    b.boot(item=None)  # no IR sensor fitted (GPIO locker)
    b.pulse(2, "deposit")
    b.door(2, True)
    b.advance(2)
    closed = b.door(2, False)
    assert types(closed) == ["door.closed", "parcel.deposited"]
    # Deposited before any locker.assign: no parcel id yet.
    assert closed[1].data["parcel_id"] is None
    assert b.state(2)["occupancy"] == "occupied"


def test_deposit_door_closed_on_an_empty_compartment_deposits_nothing() -> None:
    b = Bench()
    b.boot(item=False)
    b.m.assign(1, "P-1", "hash-1", None)
    b.pulse(1, "deposit")
    b.door(1, True)
    b.advance(2)
    closed = b.door(1, False)  # item sensor still says empty
    assert types(closed) == ["door.closed"]
    assert b.state(1)["occupancy"] == "reserved"
    assert b.state(1)["deposited_at"] is None


def test_assign_after_deposit_keeps_the_deposit_time() -> None:
    b = Bench()
    b.boot(item=None)
    b.pulse(1, "deposit")
    b.door(1, True)
    b.door(1, False)
    deposited_at = b.state(1)["deposited_at"]
    b.advance(60)
    b.m.assign(1, "P-9", "hash-9", None)
    st = b.state(1)
    assert (st["occupancy"], st["parcel_id"], st["deposited_at"]) == (
        "occupied",
        "P-9",
        deposited_at,
    )
    assert opens(b, "hash-9") == 1


def test_assign_with_deposited_at_makes_the_locker_occupied_at_once() -> None:
    b = Bench()
    b.boot()
    when = T0 - timedelta(hours=3)
    b.m.assign(3, "P-3", "hash-3", when)
    st = b.state(3)
    assert (st["state"], st["deposited_at"]) == ("occupied", rfc3339(when))


# --------------------------------------------------------------------------- pickup


def _occupied_for(b: Bench, locker: int, stored: timedelta, via: str = "code") -> list[Emit]:
    """Pick up a parcel that will have been stored exactly ``stored`` at the close."""
    open_for = timedelta(seconds=3)
    b.m.assign(locker, f"P-{locker}", f"hash-{locker}", b.wall + open_for - stored)
    b.m.item(locker, True)
    b.pulse(locker, "pickup", via=via)
    b.advance(1)
    assert types(b.door(locker, True)) == ["door.opened"]
    b.m.item(locker, False)
    b.advance(2)
    return b.door(locker, False)


@pytest.mark.parametrize(
    ("hours", "fee"),
    [(47, 0), (48, 0), (49, 1000), (100, 3000)],
)
def test_pickup_reports_storage_time_and_fee(hours: int, fee: int) -> None:
    b = Bench()
    b.boot()
    out = _occupied_for(b, 1, timedelta(hours=hours))
    assert types(out) == ["door.closed", "parcel.picked_up"]
    data = out[1].data
    assert data["stored_s"] == hours * 3600
    assert data["fee_krw"] == fee
    assert data["parcel_id"] == "P-1"
    assert data["via"] == "code"
    assert data["picked_up_at"] == rfc3339(b.wall)
    assert out[0].data["reason"] == "pickup"
    st = b.state(1)
    assert (st["state"], st["parcel_id"], st["deposited_at"]) == ("free", None, None)
    assert b.m.lockers[1].code_hash is None
    assert opens(b, "hash-1") is None


def test_pickup_without_item_sensor_counts_on_the_door_alone() -> None:
    b = Bench()
    b.boot(item=None)
    b.m.assign(1, "P-1", "hash-1", T0 - timedelta(hours=1))
    b.pulse(1, "pickup", via="centre-2026")
    b.door(1, True)
    b.advance(2)
    out = b.door(1, False)
    assert types(out) == ["door.closed", "parcel.picked_up"]
    assert out[1].data["via"] == "centre-2026"
    assert out[1].data["stored_s"] == 3602
    assert b.state(1)["occupancy"] == "free"


def test_pickup_with_the_parcel_still_inside_keeps_the_locker_occupied() -> None:
    b = Bench()
    b.boot()
    b.m.assign(1, "P-1", "hash-1", T0)
    b.m.item(1, True)
    b.pulse(1, "pickup")
    b.door(1, True)
    b.advance(5)
    out = b.door(1, False)  # item sensor still sees the parcel
    assert types(out) == ["door.closed"]
    assert b.state(1)["occupancy"] == "occupied"
    assert opens(b, "hash-1") == 1


def test_a_service_opening_changes_no_occupancy() -> None:
    b = Bench()
    b.boot()
    b.m.assign(1, "P-1", "hash-1", T0)
    b.m.item(1, False)
    b.pulse(1, "service")
    b.door(1, True)
    out = b.door(1, False)
    assert types(out) == ["door.closed"]
    assert b.state(1)["occupancy"] == "occupied"


def test_code_finds_only_occupied_in_service_lockers() -> None:
    b = Bench()
    b.boot()
    b.m.assign(1, "P-1", "hash-1", None)  # reserved: nothing in it yet
    assert opens(b, "hash-1") is None
    b.m.assign(2, "P-2", "hash-2", T0)
    assert opens(b, "hash-2") == 2
    b.m.set_service(2, False)
    assert opens(b, "hash-2") is None
    assert opens(b, "nope") is None


# --------------------------------------------------------------------------- forced / jam


def test_opening_without_a_pulse_is_forced_and_an_alarm() -> None:
    b = Bench()
    b.boot()
    b.m.assign(2, "P-2", "hash-2", T0)
    out = b.door(2, True)
    assert types(out) == ["door.forced"]
    assert out[0].alarm is True
    assert out[0].data == {"locker": 2, "parcel_id": "P-2"}
    b.advance(7)
    closed = b.door(2, False)
    assert types(closed) == ["door.closed"]
    assert closed[0].data == {"locker": 2, "open_s": 7.0, "reason": "forced"}
    assert b.state(2)["occupancy"] == "occupied"  # a forced door changes no occupancy


def test_forced_window_edge() -> None:
    b = Bench()
    b.boot()
    b.pulse(1, "service")
    b.advance(FORCED_WINDOW_S)
    assert types(b.door(1, True)) == ["door.opened"]  # exactly at the window: still ours

    b2 = Bench()
    b2.boot()
    b2.pulse(1, "service")
    b2.advance(FORCED_WINDOW_S + 0.01)
    assert types(b2.door(1, True)) == ["door.forced"]


def test_one_pulse_opens_the_door_once() -> None:
    b = Bench()
    b.boot()
    b.pulse(1, "service")
    assert types(b.door(1, True)) == ["door.opened"]
    b.advance(1)
    b.door(1, False)
    b.advance(1)  # well inside the forced window, but the pulse was used up
    assert types(b.door(1, True)) == ["door.forced"]


def test_jam_check_reports_a_door_that_did_not_open() -> None:
    b = Bench()
    b.boot()
    t = b.pulse(1, "deposit")
    b.advance(3.5)
    out = b.m.jam_check(1, t)
    assert types(out) == ["lock.jammed"]
    assert out[0].data == {"locker": 1, "reason": "deposit"}
    assert out[0].alarm is False
    assert b.m.jam_check(1, t) == []  # once


def test_after_lock_jammed_the_pulse_is_spent() -> None:
    # The jam check runs at pulse + open_timeout_s; an opening after it is forced even
    # though it is still inside forced_window_s.
    b = Bench()
    b.boot()
    t = b.pulse(1, "service")
    b.advance(3.5)
    assert types(b.m.jam_check(1, t)) == ["lock.jammed"]
    b.advance(1)
    assert b.mono - t < FORCED_WINDOW_S
    assert types(b.door(1, True)) == ["door.forced"]


def test_jam_check_is_quiet_when_the_door_opened() -> None:
    b = Bench()
    b.boot()
    t = b.pulse(1, "service")
    b.advance(0.4)
    b.door(1, True)
    b.advance(3)
    assert b.m.jam_check(1, t) == []


def test_jam_check_is_quiet_when_the_door_opened_and_closed_again() -> None:
    b = Bench()
    b.boot()
    t = b.pulse(1, "service")
    b.door(1, True)
    b.advance(0.5)
    b.door(1, False)
    b.advance(3)
    assert b.m.jam_check(1, t) == []


JAMMED = "lock jammed: the door did not open after a deposit pulse"


def jammed(b: Bench, locker: int = 1, reason: str = "deposit") -> None:
    t = b.pulse(locker, reason)
    b.advance(3.5)
    assert types(b.m.jam_check(locker, t)) == ["lock.jammed"]


def test_a_jammed_lock_shows_its_fault_and_refuses_assign() -> None:
    b = Bench()
    b.boot(item=False)
    jammed(b)
    state = b.state(1)
    assert state["fault"] == JAMMED
    # The door and item sensors still work: only the lock is suspect.
    assert (state["state"], state["door"], state["item"]) == ("free", "closed", False)
    assert refusal(b.m.assign, 1, "P-1", "hash-1", None) == "fault"
    assert refusal(b.m.assign, 1, "P-1", "hash-1", T0) == "fault"
    assert b.m.lockers[1].parcel_id is None and b.m.lockers[1].code_hash is None
    b.m.check_open(1, "deposit")  # trying the lock again is allowed
    assert b.state(2)["fault"] is None  # the others are fine


def test_a_jam_lasts_until_the_door_is_seen_open() -> None:
    b = Bench()
    b.boot()
    jammed(b)
    b.advance(10)
    b.m.jam_check(1, b.mono)  # a stray check changes nothing
    b.door(1, False)  # closed again: nothing new
    assert b.state(1)["fault"] == JAMMED
    t = b.pulse(1, "deposit")  # the retry works
    assert types(b.door(1, True)) == ["door.opened"]
    assert b.state(1)["fault"] is None
    b.advance(3.5)
    assert b.m.jam_check(1, t) == []
    b.door(1, False)
    b.m.assign(1, "P-1", "hash-1", None)


def test_a_jam_ends_with_a_forced_opening_too() -> None:
    b = Bench()
    b.boot()
    jammed(b, reason="service")
    assert b.state(1)["fault"] == JAMMED.replace("deposit", "service")
    b.advance(60)
    assert types(b.door(1, True)) == ["door.forced"]  # the door was seen open
    assert b.state(1)["fault"] is None


def test_a_jam_is_cleared_by_putting_the_locker_back_in_service() -> None:
    b = Bench()
    b.boot()
    jammed(b)
    b.m.set_service(1, False)  # taken out for the technician: still jammed
    assert b.state(1)["fault"] == JAMMED
    b.m.set_service(1, True)  # serviced
    assert b.state(1)["fault"] is None
    b.m.assign(1, "P-1", "hash-1", None)
    jammed(b, locker=2)
    b.m.set_service(2, True)  # in service already: the centre says it is fine
    assert b.state(2)["fault"] is None


def test_a_board_fault_is_shown_before_a_jam_and_the_jam_after_it() -> None:
    b = Bench()
    b.boot()
    jammed(b)
    b.m.set_fault(1, "board bus0/0: no reply to 3 consecutive requests")
    assert b.state(1)["fault"] == "board bus0/0: no reply to 3 consecutive requests"
    assert b.state(1)["door"] == "unknown"
    b.m.set_fault(1, None)
    assert b.state(1)["fault"] == JAMMED


def test_a_jam_survives_a_restart_until_the_door_is_seen_open() -> None:
    b = Bench()
    b.boot()
    jammed(b)
    again = Bench(persisted=b.m.dump())
    assert again.state(1)["fault"] == JAMMED
    assert refusal(again.m.assign, 1, "P-1", "hash-1", None) == "fault"
    assert again.door(1, True) == []  # first reading: no event, but the door opens
    assert again.state(1)["fault"] is None
    # A store written before jams were kept loads as not jammed.
    rows = json.loads(b.m.dump())
    for row in rows:
        del row["jam"]
    assert Bench(persisted=json.dumps(rows)).state(1)["fault"] is None


def test_jam_check_of_an_older_pulse_is_ignored() -> None:
    b = Bench()
    b.boot()
    first = b.pulse(1, "service")
    b.advance(5)
    second = b.pulse(1, "service")
    assert b.m.jam_check(1, first) == []
    assert types(b.m.jam_check(1, second)) == ["lock.jammed"]


# --------------------------------------------------------------------------- left open


def test_left_open_is_reported_once() -> None:
    b = Bench()
    b.boot()
    b.pulse(1, "service")
    b.door(1, True)
    opened_at = b.mono
    b.advance(120)
    out = b.m.left_open_check(1, opened_at, b.mono)
    assert types(out) == ["door.left_open"]
    assert out[0].data == {"locker": 1, "open_s": 120.0}
    b.advance(120)
    assert b.m.left_open_check(1, opened_at, b.mono) == []


def test_left_open_check_of_an_earlier_opening_is_ignored() -> None:
    b = Bench()
    b.boot()
    b.door(1, True)
    first = b.mono
    b.advance(1)
    b.door(1, False)
    assert b.m.left_open_check(1, first, b.mono) == []  # closed
    b.advance(1)
    b.door(1, True)
    b.advance(120)
    assert b.m.left_open_check(1, first, b.mono) == []  # a different opening
    assert types(b.m.left_open_check(1, b.mono - 120, b.mono)) == ["door.left_open"]


# --------------------------------------------------------------------------- overdue


def test_overdue_not_before_the_free_period_and_only_once() -> None:
    b = Bench()
    b.boot(item=None)
    b.pulse(1, "deposit")
    b.door(1, True)
    b.door(1, False)
    deposited = b.wall
    assert b.m.tick(deposited + timedelta(hours=FREE_HOURS) - timedelta(seconds=1)) == []
    out = b.m.tick(deposited + timedelta(hours=FREE_HOURS))
    assert types(out) == ["parcel.overdue"]
    assert out[0].data == {
        "locker": 1,
        "parcel_id": None,
        "deposited_at": rfc3339(deposited),
        "free_until": rfc3339(deposited + timedelta(hours=FREE_HOURS)),
        "fee_per_day_krw": FEE,
    }
    assert b.state(1)["overdue"] is True
    assert b.m.tick(deposited + timedelta(hours=FREE_HOURS + 30)) == []


def test_reserved_lockers_are_never_overdue() -> None:
    b = Bench()
    b.boot()
    b.m.assign(1, "P-1", "hash-1", None)
    assert b.m.tick(T0 + timedelta(days=30)) == []


def test_a_new_deposit_can_be_overdue_again() -> None:
    b = Bench()
    b.boot()
    b.m.assign(1, "P-1", "hash-1", T0 - timedelta(hours=50))
    assert types(b.m.tick(T0)) == ["parcel.overdue"]
    b.m.release(1)
    b.m.assign(1, "P-2", "hash-2", T0 - timedelta(hours=49))
    assert b.state(1)["overdue"] is False
    assert types(b.m.tick(T0)) == ["parcel.overdue"]


# --------------------------------------------------------------------------- commands


def test_duplicate_code_is_refused_and_changes_nothing() -> None:
    b = Bench()
    b.boot()
    b.m.assign(1, "P-1", "same", None)
    assert refusal(b.m.assign, 2, "P-2", "same", None) == "duplicate_code"
    assert b.state(2)["occupancy"] == "free"
    assert b.m.lockers[2].code_hash is None
    # The same locker may be given its own code again.
    b.m.assign(1, "P-1", "same", None)


def test_a_locker_held_for_another_parcel_is_refused() -> None:
    b = Bench()
    b.boot()
    b.m.assign(1, "P-1", "hash-1", None)
    assert refusal(b.m.assign, 1, "P-2", "hash-2", None) == "wrong_state"
    b.m.assign(2, "P-3", "hash-3", T0)
    assert refusal(b.m.assign, 2, "P-4", "hash-4", None) == "wrong_state"
    assert b.m.lockers[1].parcel_id == "P-1"
    assert b.m.lockers[2].parcel_id == "P-3"
    # Re-assigning the same parcel (e.g. a new code) is fine.
    b.m.assign(1, "P-1", "hash-1b", None)
    assert b.m.lockers[1].code_hash == "hash-1b"


def test_unknown_locker() -> None:
    b = Bench()
    assert refusal(b.m.check_open, 99, "service") == "unknown_locker"
    assert refusal(b.m.assign, 99, "P", "h", None) == "unknown_locker"
    assert refusal(b.m.release, 99) == "unknown_locker"
    assert refusal(b.m.set_service, 99, False) == "unknown_locker"


def test_out_of_service() -> None:
    b = Bench()
    b.boot()
    b.m.set_service(1, False)
    assert b.state(1)["state"] == "out_of_service"
    assert refusal(b.m.check_open, 1, "deposit") == "out_of_service"
    assert refusal(b.m.assign, 1, "P-1", "h", None) == "out_of_service"
    b.m.check_open(1, "service")  # a technician may still open it
    b.m.set_service(1, True)
    assert b.state(1)["state"] == "free"


def test_check_open_refusals() -> None:
    b = Bench()
    b.boot()
    assert refusal(b.m.check_open, 1, "pickup") == "wrong_state"  # nothing in it
    b.m.assign(2, "P-2", "h2", T0)
    assert refusal(b.m.check_open, 2, "deposit") == "wrong_state"  # already holds a parcel
    b.door(3, True)
    assert refusal(b.m.check_open, 3, "service") == "wrong_state"  # already open


def test_release_empties_the_locker() -> None:
    b = Bench()
    b.boot()
    b.m.assign(1, "P-1", "hash-1", T0)
    b.m.release(1)
    st = b.state(1)
    assert (st["state"], st["parcel_id"], st["deposited_at"]) == ("free", None, None)
    assert opens(b, "hash-1") is None


# --------------------------------------------------------------------------- faults


def test_a_fault_makes_the_door_unknown_and_refuses_opening() -> None:
    b = Bench()
    b.boot(item=True)
    b.m.set_fault(1, "board bus0/0: no reply")
    st = b.state(1)
    assert st["door"] == "unknown"
    assert st["item"] is None
    assert st["fault"] == "board bus0/0: no reply"
    assert refusal(b.m.check_open, 1, "service") == "fault"
    b.m.set_fault(1, None)
    b.door(1, False)
    assert b.state(1)["door"] == "closed"
    b.m.check_open(1, "service")


def test_public_state_before_any_reading() -> None:
    b = Bench()
    st = b.state(1)
    assert st == {
        "locker": 1,
        "state": "free",
        "occupancy": "free",
        "in_service": True,
        "door": "unknown",
        "item": None,
        "parcel_id": None,
        "deposited_at": None,
        "overdue": False,
        "fault": None,
    }


# --------------------------------------------------------------------------- persistence


def test_dump_and_load_keep_occupancy_but_not_the_hardware_view() -> None:
    b = Bench()
    b.boot(item=True)
    b.m.assign(1, "P-1", "hash-1", T0 - timedelta(hours=50))
    b.m.tick(T0)  # overdue reported
    b.m.assign(2, "P-2", "hash-2", None)
    b.m.set_service(3, False)
    b.pulse(2, "deposit")
    b.door(2, True)  # open at the time of the dump
    b.m.set_fault(1, "board gone")

    text = b.m.dump()
    rows = json.loads(text)
    assert all("door_open" not in r and "fault" not in r and "item" not in r for r in rows)

    again = Bench(persisted=text)
    one, two, three = (again.m.lockers[i] for i in (1, 2, 3))
    assert (one.occupancy, one.parcel_id, one.code_hash) == ("occupied", "P-1", "hash-1")
    assert one.deposited_at == rfc3339(T0 - timedelta(hours=50))
    assert one.overdue_reported is True
    assert (two.occupancy, two.parcel_id, two.code_hash) == ("reserved", "P-2", "hash-2")
    assert three.in_service is False
    for lk in (one, two, three):
        assert lk.door_open is None and lk.item is None and lk.fault is None
        assert lk.last_pulse is None and lk.opened_at is None
    assert again.m.tick(T0 + timedelta(days=3)) == []  # overdue stays reported
    # The first reading after the restart is not an event, even for an open door.
    assert again.door(2, True) == []
    assert again.state(2)["state"] == "open"


def test_load_ignores_lockers_no_longer_configured() -> None:
    b = Bench(ids=(1, 2, 3))
    b.m.assign(3, "P-3", "hash-3", T0)
    smaller = Bench(ids=(1, 2), persisted=b.m.dump())
    assert set(smaller.m.lockers) == {1, 2}
    bigger = Bench(ids=(1, 2, 3, 4), persisted=b.m.dump())
    assert bigger.m.lockers[3].parcel_id == "P-3"
    assert bigger.m.lockers[4].occupancy == "free"


# --------------------------------------------------------------------------- fee rule


@pytest.mark.parametrize(
    ("stored_s", "free_hours", "per_day", "fee"),
    [
        (0, 48, 1000, 0),
        (-5, 48, 1000, 0),
        (47 * 3600, 48, 1000, 0),
        (48 * 3600, 48, 1000, 0),
        (48 * 3600 + 1, 48, 1000, 1000),
        (48 * 3600 + 0.001, 48, 1000, 1000),
        (49 * 3600, 48, 1000, 1000),
        (72 * 3600, 48, 1000, 1000),
        (72 * 3600 + 1, 48, 1000, 2000),
        (100 * 3600, 48, 1000, 3000),
        (1, 0, 500, 500),
        (86400, 0, 500, 500),
        (86401, 0, 500, 1000),
        (500 * 3600, 48, 0, 0),
        (49 * 3600, 1.5, 1000, 2000),
    ],
)
def test_fee_per_started_day_after_the_free_period(
    stored_s: float, free_hours: float, per_day: int, fee: int
) -> None:
    assert fee_krw(stored_s, free_hours, per_day) == fee
