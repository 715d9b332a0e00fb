"""What a device kind is to the site: the ``DeviceController`` a site runs and the
``DeviceKind`` a kind registers in ``edge/devices/registry.py`` (docs/architecture.md,
"Adding a device kind").

This module imports nothing of the core at run time (only for type checking): the config
file and the schema tools read the kinds' models without loading any controller, and the
registry can be imported from ``edge.config`` without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from drivers.base import Coil, DigitalOutput, HardwareFactory

if TYPE_CHECKING:
    from drivers.base import Hardware
    from edge.config import SiteConfig
    from edge.core.ports import Ports
    from edge.models import EventData

Output = DigitalOutput | Coil  # what a kind's ``outputs`` hook claims

S = TypeVar("S", bound=BaseModel)


class DeviceController(Protocol):
    """One kind's running part on a site. Every method runs on the core thread."""

    def start(self) -> None:
        """Bring the devices up (inputs read, buses started, state published)."""
        ...

    def stop(self) -> None:
        """No more input: stop reading (called in reverse build order, before outputs go
        off and the command intake closes)."""
        ...

    def close(self) -> None:
        """Release what is left after the outputs are off (e.g. the modem)."""
        ...

    def status(self, online: bool) -> dict[str, Any]:
        """Fields this kind adds to the retained site status (``online``: the status says
        online; offline statuses carry nothing a closed device cannot vouch for)."""
        ...

    def site_started(self) -> dict[str, Any]:
        """Fields this kind adds to the ``site.started`` event."""
        ...

    def link_lost(self) -> None:
        """The centre may not hear of events (link down or the store degraded)."""
        ...


class ControllerBase:
    """Defaults for the optional parts of :class:`DeviceController`."""

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def close(self) -> None:
        return None

    def status(self, online: bool) -> dict[str, Any]:
        return {}

    def site_started(self) -> dict[str, Any]:
        return {}

    def link_lost(self) -> None:
        return None


@dataclass(frozen=True)
class BuildContext:
    """What a kind's controller factory is given."""

    cfg: SiteConfig
    hardware: Hardware
    ports: Ports
    outputs: Mapping[str, Output]  # what this kind's ``outputs`` hook claimed
    devices: Mapping[str, DeviceController]  # the controllers built before it, by kind
    link_up: Callable[[], bool]  # the centre will hear of an event (link up, store ok)
    publish_status: Callable[[], None]  # re-publish the site status (a status() changed)

    def kind_hardware(self, kind: DeviceKind) -> Any:
        """``kind``'s own hardware (``DeviceKind.hardware``) on this site's platform: the real
        factory's object under ``run``, the simulated one under ``sim``. The kind types it
        with its own protocol (e.g. ``edge/devices/lockers/hardware.py``)."""
        if kind.hardware is None:
            raise TypeError(f"device kind {kind.name} declares no hardware factory")
        return self.hardware.for_kind(kind.name, kind.hardware)


@dataclass(frozen=True)
class FaultEvents:
    """A fault a kind reports and the event that ends it: the site status lists the active
    ones (``faults``, edge/health.py). ``kind``: the fault's ``kind`` in the status (one of
    ``edge.models.Fault``'s). ``reason``: the fault event's field the status quotes.
    ``per_reason``: a device may have several at once, one per reason, and the recovery
    names the reason it ends (a panic button's wiring); otherwise the recovery ends every
    fault of its kind on that device."""

    kind: str
    fault: type[EventData]
    recovered: type[EventData]
    reason: str = "reason"
    per_reason: bool = False


@dataclass(frozen=True)
class DeviceKind:
    """One device kind, registered by one line in ``edge/devices/registry.py``.

    ``config``: a model whose fields are the kind's fields under ``devices:`` in the site
    file (the registry makes ``DevicesConfig`` a subclass of every kind's model, so
    :func:`section` gives a kind its typed part). ``events``: the event data models it
    emits. ``commands``: its command names and argument models. ``controller``: builds its
    controller for a site (None: nothing configured); ``needs``: the kinds it
    finds in ``BuildContext.devices``. ``outputs``: claims its output pins
    first thing when a site is built, so they are off before anything else happens.
    ``pins``: the GPIOs its config uses, for the one-pin-one-device check. ``notes``: rows
    of the config table (``docs/config.md``) that need more than a field description.
    ``faults``: its fault and recovery events, for the status's list of active faults.
    ``hardware``: where its own hardware is made (buses, readers, modems; GPIO pins come
    from the platform), real and simulated; :meth:`BuildContext.kind_hardware` gives it.
    """

    name: str
    config: type[BaseModel]
    controller: Callable[[BuildContext], DeviceController | None]
    needs: tuple[str, ...] = ()  # kinds whose controllers it uses: built and started first
    events: tuple[type[EventData], ...] = ()
    commands: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    outputs: Callable[[BaseModel, Hardware], dict[str, Output]] | None = None
    pins: Callable[[Any], list[tuple[str, int]]] | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    faults: tuple[FaultEvents, ...] = ()
    hardware: HardwareFactory | None = None


def section(devices: object, model: type[S]) -> S:
    """A kind's typed part of the site's ``devices`` config."""
    if not isinstance(devices, model):
        raise TypeError(f"{type(devices).__name__} does not hold {model.__name__}")
    return devices


def build_order(kinds: tuple[DeviceKind, ...]) -> list[DeviceKind]:
    """The registry's order, but every kind after the kinds it ``needs``."""
    by_name = {k.name: k for k in kinds}
    out: list[DeviceKind] = []

    def add(kind: DeviceKind, path: tuple[str, ...]) -> None:
        if kind in out:
            return
        if kind.name in path:
            raise ValueError(f"device kinds need each other: {' -> '.join((*path, kind.name))}")
        for need in kind.needs:
            add(by_name[need], (*path, kind.name))
        out.append(kind)

    for kind in kinds:
        add(kind, ())
    return out
