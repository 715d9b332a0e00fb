"""The locker bank's hardware on the machine's serial ports: CU16 buses, Modbus RTU relay
buses and the pickup-code reader (the kind's ``LockerHardware``,
``edge/devices/lockers/hardware.py``). The functions wire a driver to its settings; the
simulated hardware (``simulator/factories/lockers.py``) calls them with its pty's
``port`` and clock. Each driver is imported when first asked for: pymodbus costs memory a
site without Modbus boards never uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from drivers.base import CodeReaderListener, Cu16Listener, LockBus, Startable
from drivers.settings import BusSettings, Cu16BusSettings, ModbusBusSettings, SerialSettings

Clock = Callable[[], float]


def _bus_options(s: BusSettings, monotonic: Clock) -> dict[str, Any]:
    return {
        "poll_hz": s.poll_hz,
        "max_pulse_ms": s.max_pulse_ms,
        "baudrate": s.baudrate,
        "monotonic": monotonic,
    }


def cu16_bus(
    s: Cu16BusSettings, listener: Cu16Listener, *, port: str = "", monotonic: Clock = time.monotonic
) -> LockBus:
    """Kerong CU16 boards on one RS-485 line (``port``: instead of the configured url)."""
    from drivers.cu16 import Cu16Bus

    return Cu16Bus(port or s.url, s.boards, listener, **_bus_options(s, monotonic))


def modbus_bus(
    s: ModbusBusSettings,
    listener: Cu16Listener,
    *,
    port: str = "",
    monotonic: Clock = time.monotonic,
) -> LockBus:
    """Modbus RTU relay boards on one serial line."""
    from drivers.modbus import ModbusBus

    return ModbusBus(
        port or s.url, s.boards, listener, parity=s.parity, **_bus_options(s, monotonic)
    )


def code_reader(s: SerialSettings, listener: CodeReaderListener, *, port: str = "") -> Startable:
    """The pickup-code reader."""
    from drivers.codereader import CodeReader

    return CodeReader(
        port or s.url,
        baudrate=s.baudrate,
        listener=listener.on_code,
        on_fault=listener.on_fault,
        on_recovered=listener.on_recovered,
    )


class RealLockerHardware:
    def __init__(self, platform: Any) -> None:
        self.platform = platform

    def lock_bus(self, s: Cu16BusSettings, listener: Cu16Listener) -> LockBus:
        return cu16_bus(s, listener)

    def modbus_bus(self, s: ModbusBusSettings, listener: Cu16Listener) -> LockBus:
        return modbus_bus(s, listener)

    def code_reader(self, s: SerialSettings, listener: CodeReaderListener) -> Startable:
        return code_reader(s, listener)
