"""Panic buttons, reset key, lamps, buzzer and walk test: the shelter store's alarm."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from edge.devices.kind import BuildContext, DeviceController, DeviceKind, FaultEvents, section
from edge.devices.panic import commands, events
from edge.devices.panic.config import NOTES, OUTPUTS, PanicDevices, pins

if TYPE_CHECKING:
    from drivers.base import Hardware
    from edge.devices.kind import Output


def _outputs(section: BaseModel, hardware: Hardware) -> dict[str, Output]:
    assert isinstance(section, PanicDevices)
    out: dict[str, Output] = {}
    for name in OUTPUTS:
        ocfg = getattr(section, name)
        if ocfg is not None:
            out[name] = hardware.output(name, ocfg.pin, active_high=ocfg.active_high)
    return out


def _controller(ctx: BuildContext) -> DeviceController | None:
    if not section(ctx.cfg.devices, PanicDevices).panic_buttons:
        return None  # no panic buttons: the controller and its machines are never loaded
    from edge.devices.panic.controller import build  # loaded only when a site has them

    return build(ctx)


KIND = DeviceKind(
    name="panic",
    config=PanicDevices,
    controller=_controller,
    needs=("modem",),
    events=(
        events.AlarmRaised,
        events.AlarmAcknowledged,
        events.AlarmCleared,
        events.WiringFault,
        events.WiringRestored,
        events.SiteTestMode,
    ),
    commands={
        "alarm.ack": commands.AlarmAckArgs,
        "alarm.clear": commands.AlarmClearArgs,
        "site.test_mode": commands.SiteTestModeArgs,
    },
    outputs=_outputs,
    pins=pins,
    notes=NOTES,
    faults=(FaultEvents("wiring", events.WiringFault, events.WiringRestored, per_reason=True),),
)
