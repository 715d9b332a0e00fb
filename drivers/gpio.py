"""gpiozero implementations of the driver interfaces. Every device gets the pin factory
passed in (never the global ``Device.pin_factory``), so many sites share a process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from drivers.base import (
    Coil,
    Cu16Listener,
    DigitalInput,
    DigitalOutput,
    InputListener,
    LockBus,
    Modem,
    Startable,
)
from drivers.errors import GpioUnavailableError, InputFaultError

if TYPE_CHECKING:
    from drivers.cu16 import BoardSettings
    from drivers.modbus import ModbusBoardSettings
    from drivers.modem import ModemListener

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
    """Creates gpiozero devices on one pin factory. The simulator passes a MockFactory."""

    def __init__(self, pin_factory: Any, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.pin_factory = pin_factory
        self.monotonic = monotonic

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

    def lock_bus(
        self,
        name: str,
        url: str,
        *,
        baudrate: int,
        boards: list[BoardSettings],
        poll_hz: float,
        max_pulse_ms: int,
        listener: Cu16Listener,
    ) -> LockBus:
        from drivers.cu16 import Cu16Bus

        return Cu16Bus(
            url, boards, listener, poll_hz=poll_hz, max_pulse_ms=max_pulse_ms, baudrate=baudrate
        )

    def modbus_bus(
        self,
        name: str,
        url: str,
        *,
        baudrate: int,
        parity: str,
        boards: list[ModbusBoardSettings],
        poll_hz: float,
        max_pulse_ms: int,
        listener: Cu16Listener,
    ) -> LockBus:
        from drivers.modbus import ModbusBus

        return ModbusBus(
            url,
            boards,
            listener,
            baudrate=baudrate,
            parity=parity,
            poll_hz=poll_hz,
            max_pulse_ms=max_pulse_ms,
        )

    def code_reader(
        self,
        url: str,
        *,
        baudrate: int,
        listener: Callable[[str], None],
        on_fault: Callable[[str], None],
        on_recovered: Callable[[], None],
    ) -> Startable:
        from drivers.codereader import CodeReader

        return CodeReader(
            url, baudrate=baudrate, listener=listener, on_fault=on_fault, on_recovered=on_recovered
        )

    def modem(
        self,
        url: str,
        *,
        baudrate: int,
        check_interval_s: float,
        command_timeout_s: float,
        listener: ModemListener,
    ) -> Modem:
        from drivers.modem import GsmModem, ModemConfig

        cfg = ModemConfig(
            baudrate=baudrate,
            check_interval_s=check_interval_s,
            command_timeout_s=command_timeout_s,
        )
        return GsmModem(url, listener, config=cfg)

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
