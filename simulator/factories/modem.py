"""The escalation modem, simulated: a SimulatedModem on a pty driven by the real GsmModem
driver (the kind's ``ModemHardware``)."""

from __future__ import annotations

from typing import Any

from drivers.base import Modem, ModemListener
from drivers.factories.modem import gsm_modem
from drivers.settings import ModemSettings
from edge.devices.modem.hardware import ModemHardware
from simulator.hardware import SimHardware


class SimModemHardware(ModemHardware):
    """``modem_class``: the simulated modem to build (benchmarks pass an instrumented
    subclass); ``sim``: the one built (None until the site asks for its modem)."""

    def __init__(self, hw: SimHardware, *, modem_class: Any = None) -> None:
        self.hw = hw
        self.modem_class = modem_class
        self.sim: Any = None  # SimulatedModem

    def modem(self, s: ModemSettings, listener: ModemListener) -> Modem:
        """A simulated modem on a pty, driven by the real GsmModem driver (real time: call
        progress is real I/O timing)."""
        from simulator.modem_device import SimulatedModem

        sim = (self.modem_class or SimulatedModem)()
        self.sim = sim
        self.hw.on_close(sim.close)
        return gsm_modem(s, listener, port=sim.port)


def sim_of(hw: SimHardware) -> Any:
    """The site's SimulatedModem, None without a modem."""
    made = hw.kinds.get("modem")
    return made.sim if isinstance(made, SimModemHardware) else None
