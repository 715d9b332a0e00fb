"""Simulated hardware for one site: gpiozero devices on its own MockFactory (never the
global one), outputs that record every transition, inputs a technician can drive, and each
device kind's simulated hardware (``simulator/factories/<kind>.py``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from gpiozero.pins.mock import MockFactory, MockPin

from drivers.base import Coil, DigitalInput, DigitalOutput, HardwareFactory, make_kind_hardware
from drivers.gpio import GpioHardware, GpioInput, GpioOutput
from edge.core.clock import rfc3339


class SimPin(MockPin):  # type: ignore[misc]
    """A MockPin that tells observers about every change (coil physics, history)."""

    def __init__(self, factory: Any, info: Any) -> None:
        self.observers: list[Callable[[bool], None]] = []
        super().__init__(factory, info)

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if changed:
            for fn in list(getattr(self, "observers", ())):
                fn(bool(value))
        return changed


@dataclass
class _SimInput:
    dev: GpioInput
    pin: Any
    nc: bool
    pull_up: bool
    active: bool = False


@dataclass
class Transition:
    on: bool
    t: float  # monotonic
    ts: str  # wall clock, RFC 3339


@dataclass
class _SimOutput:
    dev: GpioOutput
    transitions: list[Transition] = field(default_factory=list)


class RecordingOutput:
    """A GpioOutput that records every change (the simulator's output history)."""

    def __init__(self, inner: GpioOutput, record: Callable[[bool], None]) -> None:
        self.name = inner.name
        self._inner = inner
        self._record = record

    @property
    def is_on(self) -> bool:
        return self._inner.is_on

    def on(self) -> None:
        was = self._inner.is_on
        self._inner.on()
        if not was:
            self._record(True)

    def off(self) -> None:
        was = self._inner.is_on
        self._inner.off()
        if was:
            self._record(False)

    def close(self) -> None:
        was = self._inner.is_on
        self._inner.close()
        if was:
            self._record(False)


class SimHardware:
    """Implements drivers.base.Hardware on a private MockFactory and simulated devices."""

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        factories: Mapping[str, Callable[[SimHardware], Any]] | None = None,
    ) -> None:
        """``factories``: a kind's simulated hardware made by this instead of its
        ``HardwareFactory.sim`` (benchmarks and tests pass instrumented devices)."""
        self.factories = dict(factories or {})
        self.kinds: dict[str, Any] = {}  # each device kind's simulated hardware (for_kind)
        self.factory = MockFactory(pin_class=SimPin)
        self.monotonic = monotonic
        self._gpio = GpioHardware(self.factory, monotonic)  # the real GPIO devices, on SimPins
        self._lock = threading.Lock()
        self._inputs: dict[str, _SimInput] = {}
        self._outputs: dict[str, _SimOutput] = {}
        self._coil_log: list[dict[str, Any]] = []  # {name, on, t}
        self._jammed: set[str] = set()  # coil names whose door will not spring open
        self._closers: list[Callable[[], None]] = []

    # ---- Hardware interface ----
    def input(self, name: str, pin: int, *, contact: str, pull_up: bool) -> DigitalInput:
        dev = cast(GpioInput, self._gpio.input(name, pin, contact=contact, pull_up=pull_up))
        sim = _SimInput(dev, self.factory.pin(pin), contact == "nc", pull_up)
        with self._lock:
            self._inputs[name] = sim
        # Wired and idle; a locker door switch starts shut (its "active" means shut).
        self._drive(sim, name.startswith("door-"))
        return dev

    def output(self, name: str, pin: int, *, active_high: bool) -> DigitalOutput:
        inner = cast(GpioOutput, self._gpio.output(name, pin, active_high=active_high))
        sim = _SimOutput(inner)
        with self._lock:
            self._outputs[name] = sim

        def record(on: bool) -> None:
            with self._lock:
                sim.transitions.append(Transition(on, self.monotonic(), rfc3339(datetime.now(UTC))))

        return RecordingOutput(inner, record)

    def coil(self, name: str, pin: int, *, active_high: bool, max_on_s: float) -> Coil:
        """A GpioCoil on a SimPin. Physics: while ``coil-N`` is energised, the door of
        input ``door-N`` springs open (unless jammed)."""
        coil = self._gpio.coil(name, pin, active_high=active_high, max_on_s=max_on_s)
        sim_pin = self.factory.pin(pin)

        def changed(level: bool) -> None:
            on = level == active_high
            with self._lock:
                self._coil_log.append({"name": name, "on": on, "t": self.monotonic()})
                jammed = name in self._jammed
            door = "door-" + name.removeprefix("coil-")
            if on and not jammed and door in self.input_names():
                self.set_input(door, False)  # door sensor: active = shut

        sim_pin.observers.append(changed)
        return coil

    def for_kind(self, kind: str, factory: HardwareFactory) -> Any:
        """The kind's simulated hardware (``factory.sim``, or the one given for it at
        construction), kept in :attr:`kinds` for the control routes and the console."""
        with self._lock:
            made = self.kinds.get(kind)
        if made is None:
            override = self.factories.get(kind)
            made = override(self) if override is not None else make_kind_hardware(factory.sim, self)
            with self._lock:
                self.kinds[kind] = made
        return made

    def on_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` when the hardware closes (a simulated device's pty)."""
        self._closers.append(fn)

    # ---- locker physics controls (any thread) ----
    def set_gpio_door(self, locker: int, is_open: bool) -> None:
        self.set_input(f"door-{locker}", not is_open)

    def jam_gpio(self, locker: int, jammed: bool) -> None:
        with self._lock:
            (self._jammed.add if jammed else self._jammed.discard)(f"coil-{locker}")

    def gpio_jammed(self, locker: int) -> bool:
        with self._lock:
            return f"coil-{locker}" in self._jammed

    def coil_intervals(self) -> list[dict[str, Any]]:
        """Every coil pulse as {name, start, end} (monotonic s): the GPIO coils' and those
        of every kind's simulated hardware that has ``coil_intervals()`` (lock boards)."""
        with self._lock:
            log = list(self._coil_log)
        out: list[dict[str, Any]] = []
        started: dict[str, float] = {}
        for e in log:
            if e["on"]:
                started[e["name"]] = e["t"]
            elif e["name"] in started:
                out.append({"name": e["name"], "start": started.pop(e["name"]), "end": e["t"]})
        for name, t in started.items():
            out.append({"name": name, "start": t, "end": None})
        with self._lock:
            kinds = list(self.kinds.values())
        for made in kinds:
            more = getattr(made, "coil_intervals", None)
            if more is not None:
                out += more()
        return sorted(out, key=lambda i: i["start"])

    def close(self) -> None:
        for closer in self._closers:
            try:
                closer()
            except Exception:
                pass
        self.factory.close()

    # ---- technician controls (any thread) ----
    def input_names(self) -> list[str]:
        with self._lock:
            return sorted(self._inputs)

    def set_input(self, name: str, active: bool) -> None:
        """Press/release a button, turn the key. For an NC contact 'active' opens the loop."""
        with self._lock:
            sim = self._inputs.get(name)
        if sim is None:
            raise KeyError(name)
        self._drive(sim, active)

    def bounce(self, name: str, levels: list[bool]) -> None:
        """Drive a train of raw levels back to back (contact bounce)."""
        for level in levels:
            self.set_input(name, level)

    def _drive(self, sim: _SimInput, active: bool) -> None:
        sim.active = active
        contact_closed = (not active) if sim.nc else active
        # Contact to ground with pull-up: closed = low. Pull-down wiring: closed = high.
        high = (not contact_closed) if sim.pull_up else contact_closed
        if high:
            sim.pin.drive_high()
        else:
            sim.pin.drive_low()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "inputs": {
                    n: {"active": s.active, "contact": "nc" if s.nc else "no", "pin": s.dev.pin}
                    for n, s in self._inputs.items()
                },
                "coils": [
                    {"name": e["name"], "on": e["on"], "t": round(e["t"], 6)}
                    for e in self._coil_log
                ],
                "outputs": {
                    n: {
                        "on": s.dev.is_on,
                        "pin": s.dev.pin,
                        "transitions": [
                            {"on": t.on, "t": round(t.t, 6), "ts": t.ts} for t in s.transitions
                        ],
                    }
                    for n, s in self._outputs.items()
                },
            }
