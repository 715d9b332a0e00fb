"""What the locker bank asks of its hardware besides GPIO pins: its lock buses and its
code reader. Made by ``drivers/factories/lockers.py`` on the machine's ports and by
``simulator/factories/lockers.py`` on simulated boards (``KIND.hardware``)."""

from __future__ import annotations

from typing import Protocol

from drivers.base import CodeReaderListener, Cu16Listener, LockBus, Startable
from drivers.settings import Cu16BusSettings, ModbusBusSettings, SerialSettings


class LockerHardware(Protocol):
    def lock_bus(self, s: Cu16BusSettings, listener: Cu16Listener) -> LockBus:
        """Kerong CU16 boards on one RS-485 line."""
        ...

    def modbus_bus(self, s: ModbusBusSettings, listener: Cu16Listener) -> LockBus:
        """Modbus RTU relay boards on one serial line (the same LockBus interface)."""
        ...

    def code_reader(self, s: SerialSettings, listener: CodeReaderListener) -> Startable:
        """The pickup-code reader."""
        ...
