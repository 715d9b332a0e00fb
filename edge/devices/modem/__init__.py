"""The GSM/LTE modem: the alarm's second channel (escalation by SMS and voice call)."""

from __future__ import annotations

from drivers.base import HardwareFactory
from edge.devices.kind import BuildContext, DeviceController, DeviceKind, FaultEvents
from edge.devices.modem import events
from edge.devices.modem.config import ModemDevices


def _controller(ctx: BuildContext) -> DeviceController | None:
    from edge.devices.modem.controller import build  # loaded only when a site is built

    return build(ctx)


KIND = DeviceKind(
    name="modem",
    config=ModemDevices,
    controller=_controller,
    events=(events.AlarmEscalated, events.ModemFault, events.ModemRecovered),
    hardware=HardwareFactory(
        real="drivers.factories.modem:RealModemHardware",
        sim="simulator.factories.modem:SimModemHardware",
    ),
    faults=(FaultEvents("modem", events.ModemFault, events.ModemRecovered),),
)
