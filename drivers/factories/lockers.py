"""The locker bank's hardware on the machine's serial ports: CU16 buses, Modbus RTU relay
buses and the pickup-code reader (the kind's ``LockerHardware``,
``edge/devices/lockers/hardware.py``). Each driver is imported when first asked for:
pymodbus costs memory a site without Modbus boards never uses."""

from __future__ import annotations

from typing import Any

from drivers.base import CodeReaderListener, Cu16Listener, LockBus, Startable
from drivers.settings import Cu16BusSettings, ModbusBusSettings, SerialSettings


class RealLockerHardware:
    def __init__(self, platform: Any) -> None:
        self.platform = platform

    def lock_bus(self, s: Cu16BusSettings, listener: Cu16Listener) -> LockBus:
        """Kerong CU16 boards on one RS-485 line."""
        from drivers.cu16 import Cu16Bus

        return Cu16Bus(
            s.url,
            s.boards,
            listener,
            baudrate=s.baudrate,
            poll_hz=s.poll_hz,
            max_pulse_ms=s.max_pulse_ms,
        )

    def modbus_bus(self, s: ModbusBusSettings, listener: Cu16Listener) -> LockBus:
        """Modbus RTU relay boards on one serial line."""
        from drivers.modbus import ModbusBus

        return ModbusBus(
            s.url,
            s.boards,
            listener,
            baudrate=s.baudrate,
            parity=s.parity,
            poll_hz=s.poll_hz,
            max_pulse_ms=s.max_pulse_ms,
        )

    def code_reader(self, s: SerialSettings, listener: CodeReaderListener) -> Startable:
        from drivers.codereader import CodeReader

        return CodeReader(
            s.url,
            baudrate=s.baudrate,
            listener=listener.on_code,
            on_fault=listener.on_fault,
            on_recovered=listener.on_recovered,
        )
