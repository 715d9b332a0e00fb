"""Small hardware interfaces. Real (gpiozero, pyserial) and simulated implementations
both satisfy them; the core only ever sees these.

Threading rule: driver callbacks may run on any thread (gpiozero's, a serial reader's).
They must only hand the change to the core (``Core.post``), never touch core state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

# Called with (raw_level_active, monotonic_seconds) on every raw change of an input.
InputListener = Callable[[bool, float], None]


class DigitalInput(Protocol):
    name: str

    def read(self) -> bool:
        """Current logical level (True = active: pressed / loop open / key turned).

        Raises InputFaultError when the input cannot be read."""
        ...

    def set_listener(self, listener: InputListener | None) -> None:
        """Deliver every raw change (no debounce: the core debounces)."""
        ...

    def close(self) -> None: ...


class DigitalOutput(Protocol):
    name: str

    @property
    def is_on(self) -> bool: ...

    def on(self) -> None: ...

    def off(self) -> None: ...

    def close(self) -> None:
        """Turn off, then release. Safe to call twice."""
        ...


class Hardware(Protocol):
    """Makes the site's devices. Chosen in one place (the CLI) and injected into the site."""

    def input(self, name: str, pin: int, *, contact: str, pull_up: bool) -> DigitalInput: ...

    def output(self, name: str, pin: int, *, active_high: bool) -> DigitalOutput: ...

    def close(self) -> None: ...
