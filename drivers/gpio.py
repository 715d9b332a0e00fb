"""gpiozero implementations of the driver interfaces. Every device gets the pin factory
passed in (never the global ``Device.pin_factory``), so many sites share a process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from drivers.base import (
    Coil,
    DigitalInput,
    DigitalOutput,
    HardwareFactory,
    InputListener,
    make_kind_hardware,
)
from drivers.errors import GpioUnavailableError, InputFaultError

log = structlog.get_logger(__name__)


class GpioInput:
    """A contact on a GPIO. Logical level: True = active (pressed, loop open, key on).

    NC contact: idle = contact closed; a press or a cut wire opens it -> active.
    NO contact: idle = contact open; a press closes it -> active.
    """

    def __init__(
        self,
        name: str,
        pin: int,
        *,
        contact: str,
        pull_up: bool,
        pin_factory: Any,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from gpiozero import DigitalInputDevice

        self.name = name
        self.pin = pin
        self._nc = contact == "nc"
        self._monotonic = monotonic
        self._listener: InputListener | None = None
        # gpiozero's own bounce_time is left unset: the core debounces (mock pins ignore it).
        self._dev = DigitalInputDevice(pin, pull_up=pull_up, pin_factory=pin_factory)
        self._dev.when_activated = self._changed
        self._dev.when_deactivated = self._changed

    def _level(self, contact_closed: bool) -> bool:
        return not contact_closed if self._nc else contact_closed

    def _changed(self) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener(self._level(bool(self._dev.is_active)), self._monotonic())
        except Exception as exc:
            log.error("input_listener_failed", input=self.name, error=str(exc))

    def read(self) -> bool:
        try:
            return self._level(bool(self._dev.value))
        except Exception as exc:
            raise InputFaultError(f"input {self.name} (GPIO{self.pin}) unreadable: {exc}") from exc

    def set_listener(self, listener: InputListener | None) -> None:
        self._listener = listener

    def close(self) -> None:
        self._listener = None
        self._dev.close()


class GpioOutput:
    """An output that starts off (``initial_value=False``) and is off again on close."""

    def __init__(self, name: str, pin: int, *, active_high: bool, pin_factory: Any) -> None:
        from gpiozero import DigitalOutputDevice

        self.name = name
        self.pin = pin
        self._dev = DigitalOutputDevice(
            pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
        )
        self._closed = False

    @property
    def is_on(self) -> bool:
        return not self._closed and bool(self._dev.value)

    def on(self) -> None:
        if not self._closed:
            self._dev.on()

    def off(self) -> None:
        if not self._closed:
            self._dev.off()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._dev.off()
        finally:
            self._closed = True
            self._dev.close()


class GpioCoil:
    """A solenoid behind a MOSFET/relay. ``pulse`` uses gpiozero's own blink thread, which
    turns the output off after the on-time even if our core loop has died."""

    def __init__(
        self, name: str, pin: int, *, active_high: bool, max_on_s: float, pin_factory: Any
    ) -> None:
        from gpiozero import DigitalOutputDevice

        self.name = name
        self.pin = pin
        self.max_on_s = max_on_s
        self._dev = DigitalOutputDevice(
            pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
        )
        self._closed = False

    def pulse(self, seconds: float) -> None:
        if self._closed:
            return
        on_time = max(0.0, min(seconds, self.max_on_s))
        self._dev.blink(on_time=on_time, off_time=0, n=1, background=True)

    @property
    def is_on(self) -> bool:
        return not self._closed and bool(self._dev.value)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._dev.off()  # stops a running blink, then writes off
        finally:
            self._closed = True
            self._dev.close()


class GpioHardware:
    """The real machine: gpiozero devices on one pin factory (tests pass a MockFactory), and
    each device kind's own hardware from its real factory (``HardwareFactory.real``)."""

    def __init__(self, pin_factory: Any, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.pin_factory = pin_factory
        self.monotonic = monotonic
        self.kinds: dict[str, Any] = {}  # each device kind's own hardware (for_kind)

    def input(self, name: str, pin: int, *, contact: str, pull_up: bool) -> DigitalInput:
        return GpioInput(
            name,
            pin,
            contact=contact,
            pull_up=pull_up,
            pin_factory=self.pin_factory,
            monotonic=self.monotonic,
        )

    def output(self, name: str, pin: int, *, active_high: bool) -> DigitalOutput:
        return GpioOutput(name, pin, active_high=active_high, pin_factory=self.pin_factory)

    def coil(self, name: str, pin: int, *, active_high: bool, max_on_s: float) -> Coil:
        return GpioCoil(
            name, pin, active_high=active_high, max_on_s=max_on_s, pin_factory=self.pin_factory
        )

    def for_kind(self, kind: str, factory: HardwareFactory) -> Any:
        if kind not in self.kinds:
            self.kinds[kind] = make_kind_hardware(factory.real, self)
        return self.kinds[kind]

    def close(self) -> None:
        close = getattr(self.pin_factory, "close", None)
        if close is not None:
            close()


def real_pin_factory() -> Any:
    """The Raspberry Pi's pin factory (lgpio first), or GpioUnavailableError.

    Refuses gpiozero's mock factory: `run` must never fall back to fake hardware."""
    errors: list[str] = []
    for module, cls in (
        ("gpiozero.pins.lgpio", "LGPIOFactory"),
        ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    ):
        try:
            mod = __import__(module, fromlist=[cls])
            return getattr(mod, cls)()
        except Exception as exc:
            errors.append(f"{cls}: {type(exc).__name__}")
    raise GpioUnavailableError(
        "no GPIO on this machine (" + ", ".join(errors) + "); on a Raspberry Pi install the "
        "'pi' extra (pip install 'ansim-edge[pi]'); elsewhere run `ansim-edge sim --config FILE`"
    )
