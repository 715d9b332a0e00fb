"""THE list of device kinds, one line per kind, and what is assembled from it: the
``devices`` section of the site config, the event types the outbox accepts, the command
names and their argument models (and from those, the JSON Schemas and docs tables of
``edge.schemas`` and the simulator's control routes, ``simulator/routes/<kind>.py``).

Order matters once: it is the order of the kinds' fields under ``devices`` (the config
file's schema and table). Sites build and start kinds in this order too, except that a kind
comes after the kinds it ``needs``; they stop in reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, Field, create_model, model_validator

from edge.devices import lockers, modem, panic
from edge.devices.common import ConfigModel
from edge.devices.kind import DeviceKind, section
from edge.models import CORE_COMMANDS, CORE_EVENTS, EventData

KINDS: tuple[DeviceKind, ...] = (
    panic.KIND,
    lockers.KIND,
    modem.KIND,
)


def _event_data(kinds: tuple[DeviceKind, ...]) -> dict[str, type[EventData]]:
    out: dict[str, type[EventData]] = {}
    for model in (*CORE_EVENTS, *(e for k in kinds for e in k.events)):
        if model.TYPE in out:
            raise ValueError(f"event type {model.TYPE} registered twice")
        out[model.TYPE] = model
    return out


def _command_args(kinds: tuple[DeviceKind, ...]) -> dict[str, type[BaseModel]]:
    out: dict[str, type[BaseModel]] = dict(CORE_COMMANDS)
    for k in kinds:
        for name, model in k.commands.items():
            if name in out:
                raise ValueError(f"command {name} registered twice")
            out[name] = model
    return out


# Every event type the outbox accepts (the core's and every kind's) by type.
EVENT_DATA = _event_data(KINDS)
# Every command name and its args model.
COMMAND_ARGS = _command_args(KINDS)


class DevicesBase(ConfigModel):
    """What ``devices`` holds besides the kinds' fields; checks that span kinds."""

    allow_any_pin: bool = Field(
        False,
        description="Accept BCM GPIO numbers above 27 (boards with more GPIOs than the header).",
    )

    @model_validator(mode="after")
    def _one_pin_one_device(self) -> DevicesBase:
        pins: dict[int, str] = {}
        for name, pin in pin_map(self):
            if pin in pins:
                raise ValueError(f"GPIO {pin} used by both {pins[pin]} and {name}")
            pins[pin] = name
        return self


def pin_map(devices: BaseModel) -> list[tuple[str, int]]:
    """Every GPIO the config uses, with the device using it, kind by kind."""
    out: list[tuple[str, int]] = []
    for k in KINDS:
        if k.pins is not None:
            out += k.pins(section(devices, k.config))
    return out


def _devices_config(kinds: tuple[DeviceKind, ...]) -> type[DevicesBase]:
    # A subclass of every kind's config model: pydantic collects fields base-most first, so
    # the bases go in reverse (the fields then read panic..., lockers, modem, allow_any_pin).
    bases: tuple[type[BaseModel], ...] = (DevicesBase, *(k.config for k in reversed(kinds)))
    model: Any = create_model("DevicesConfig", __base__=bases)
    return cast(type[DevicesBase], model)


# The ``devices`` section of the site file: every kind's fields (``section`` gives a kind
# its typed part; the type checker sees the common base only).
if TYPE_CHECKING:
    DevicesConfig = DevicesBase
else:
    DevicesConfig = _devices_config(KINDS)
