"""The parcel-locker bank: CU16 and Modbus lock boards, GPIO lockers, the pickup-code reader."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from drivers.base import HardwareFactory
from edge.devices.kind import BuildContext, DeviceController, DeviceKind, FaultEvents, section
from edge.devices.lockers import commands, events
from edge.devices.lockers.config import LockersDevices, pins

if TYPE_CHECKING:
    from drivers.base import Hardware
    from edge.devices.kind import Output


def _outputs(section: BaseModel, hardware: Hardware) -> dict[str, Output]:
    assert isinstance(section, LockersDevices)
    out: dict[str, Output] = {}
    if section.lockers is not None:
        max_on_s = section.lockers.coil_policy().max_on_s
        for g in section.lockers.gpio:
            name = f"coil-{g.locker}"
            out[name] = hardware.coil(
                name, g.solenoid_pin, active_high=g.active_high, max_on_s=max_on_s
            )
    return out


def _controller(ctx: BuildContext) -> DeviceController | None:
    if section(ctx.cfg.devices, LockersDevices).lockers is None:
        return None  # no lockers: the controller and its drivers are never loaded
    from edge.devices.lockers.controller import build  # loaded only when a site has lockers

    return build(ctx)


KIND = DeviceKind(
    name="lockers",
    config=LockersDevices,
    controller=_controller,
    events=(
        events.DoorOpened,
        events.DoorClosed,
        events.DoorForced,
        events.DoorLeftOpen,
        events.LockJammed,
        events.LockFault,
        events.ParcelDeposited,
        events.ParcelPickedUp,
        events.ParcelOverdue,
        events.PickupRejected,
        events.PickupLockedOut,
        events.BoardFault,
        events.BoardRecovered,
    ),
    commands={
        "locker.open": commands.LockerOpenArgs,
        "locker.assign": commands.LockerAssignArgs,
        "locker.release": commands.LockerReleaseArgs,
        "locker.set_service": commands.LockerServiceArgs,
        "locker.status": commands.LockerStatusArgs,
    },
    outputs=_outputs,
    pins=pins,
    hardware=HardwareFactory(
        real="drivers.factories.lockers:RealLockerHardware",
        sim="simulator.factories.lockers:SimLockerHardware",
    ),
    faults=(FaultEvents("board", events.BoardFault, events.BoardRecovered),),
)
