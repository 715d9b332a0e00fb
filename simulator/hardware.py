"""Simulated hardware for one site: gpiozero devices on its own MockFactory (never the
global one), outputs that record every transition, inputs a technician can drive."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gpiozero.pins.mock import MockFactory

from drivers.base import DigitalInput, DigitalOutput
from drivers.gpio import GpioInput, GpioOutput
from edge.clock import rfc3339


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
    """Implements drivers.base.Hardware on a private MockFactory."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.factory = MockFactory()
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._inputs: dict[str, _SimInput] = {}
        self._outputs: dict[str, _SimOutput] = {}

    # ---- Hardware interface ----
    def input(self, name: str, pin: int, *, contact: str, pull_up: bool) -> DigitalInput:
        dev = GpioInput(
            name,
            pin,
            contact=contact,
            pull_up=pull_up,
            pin_factory=self.factory,
            monotonic=self.monotonic,
        )
        sim = _SimInput(dev, self.factory.pin(pin), contact == "nc", pull_up)
        with self._lock:
            self._inputs[name] = sim
        self._drive(sim, False)  # wired and idle
        return dev

    def output(self, name: str, pin: int, *, active_high: bool) -> DigitalOutput:
        inner = GpioOutput(name, pin, active_high=active_high, pin_factory=self.factory)
        sim = _SimOutput(inner)
        with self._lock:
            self._outputs[name] = sim

        def record(on: bool) -> None:
            with self._lock:
                sim.transitions.append(Transition(on, self.monotonic(), rfc3339(datetime.now(UTC))))

        return RecordingOutput(inner, record)

    def close(self) -> None:
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
