"""What the modem kind asks of its hardware: the modem. Made by
``drivers/factories/modem.py`` on the machine's port and by ``simulator/factories/modem.py``
on a simulated modem (``KIND.hardware``)."""

from __future__ import annotations

from typing import Protocol

from drivers.base import Modem, ModemListener
from drivers.settings import ModemSettings


class ModemHardware(Protocol):
    def modem(self, s: ModemSettings, listener: ModemListener) -> Modem: ...
