"""The locker bank's simulated hardware: CU16 and Modbus boards and the pickup-code reader on
ptys, driven by the real drivers (the kind's ``LockerHardware``)."""

from __future__ import annotations

from typing import Any

from drivers.base import CodeReaderListener, Cu16Listener, LockBus, Startable
from drivers.factories import lockers as real
from drivers.settings import Cu16BusSettings, ModbusBusSettings, SerialSettings
from edge.devices.lockers.hardware import LockerHardware
from simulator.cu16_device import SimulatedCu16Bus
from simulator.hardware import SimHardware
from simulator.modbus_device import SimulatedModbusBus


class SimLockerHardware(LockerHardware):
    """``cu16_bus_class``: the simulated CU16 bus to build (benchmarks pass an instrumented
    subclass); the wiring to the real driver stays the same."""

    def __init__(
        self, hw: SimHardware, *, cu16_bus_class: type[SimulatedCu16Bus] = SimulatedCu16Bus
    ) -> None:
        self.hw = hw
        self.cu16_bus_class = cu16_bus_class
        self.buses: dict[str, SimulatedCu16Bus | SimulatedModbusBus] = {}
        self.code_readers: list[Any] = []  # SimulatedCodeReader

    def lock_bus(self, s: Cu16BusSettings, listener: Cu16Listener) -> LockBus:
        """A simulated CU16 bus on a pty, driven by the real Cu16Bus driver."""
        sim = self.cu16_bus_class([b.board_id for b in s.boards], monotonic=self.hw.monotonic)
        for b in s.boards:
            sim.set_polarity(b.board_id, b.closed_bit)
            sim.set_unlock_replies(b.board_id, b.unlock_replies)
        self.buses[s.name] = sim
        self.hw.on_close(sim.close)
        return real.cu16_bus(s, listener, port=sim.port, monotonic=self.hw.monotonic)

    def modbus_bus(self, s: ModbusBusSettings, listener: Cu16Listener) -> LockBus:
        """Simulated Modbus relay boards on a pty, driven by the real ModbusBus driver. A
        board configured ``pulse: driver`` is simulated without the flash command."""
        sim = SimulatedModbusBus(
            [b.slave_id for b in s.boards],
            relays=max(b.relays for b in s.boards),
            monotonic=self.hw.monotonic,
        )
        for b in s.boards:
            sim.set_polarity(b.slave_id, b.closed_bit)
            sim.set_flash(b.slave_id, b.pulse == "board")
        self.buses[s.name] = sim
        self.hw.on_close(sim.close)
        return real.modbus_bus(s, listener, port=sim.port, monotonic=self.hw.monotonic)

    def code_reader(self, s: SerialSettings, listener: CodeReaderListener) -> Startable:
        from simulator.codereader_device import SimulatedCodeReader

        sim = SimulatedCodeReader()
        self.code_readers.append(sim)
        self.hw.on_close(sim.close)
        return real.code_reader(s, listener, port=sim.port)

    def coil_intervals(self) -> list[dict[str, Any]]:
        """Every pulse the simulated boards saw, as {name: "bus/board/lock", start, end}."""
        out: list[dict[str, Any]] = []
        for bus, sim in self.buses.items():
            if isinstance(sim, SimulatedModbusBus):
                out += [
                    {
                        "name": f"{bus}/{p['board']}/{p['lock']}",
                        "start": p["start"],
                        "end": p["end"],
                    }
                    for p in sim.pulses()
                ]
                continue
            for u in sim.snapshot()["unlocks"]:
                start = float(u["t_monotonic"])
                out.append(
                    {
                        "name": f"{bus}/{u['board']}/{u['lock']}",
                        "start": start,
                        "end": start + u["pulse_ms"] / 1000,
                    }
                )
        return out


def of(hw: SimHardware) -> SimLockerHardware:
    """The site's simulated locker hardware (empty when the site has no lockers)."""
    made = hw.kinds.get("lockers")
    return made if isinstance(made, SimLockerHardware) else SimLockerHardware(hw)
