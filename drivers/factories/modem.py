"""The escalation modem on the machine's serial port (the kind's ``ModemHardware``,
``edge/devices/modem/hardware.py``)."""

from __future__ import annotations

from typing import Any

from drivers.base import Modem, ModemListener
from drivers.settings import ModemSettings


class RealModemHardware:
    def __init__(self, platform: Any) -> None:
        self.platform = platform

    def modem(self, s: ModemSettings, listener: ModemListener) -> Modem:
        from drivers.modem import GsmModem, ModemConfig

        cfg = ModemConfig(
            baudrate=s.baudrate,
            check_interval_s=s.check_interval_s,
            command_timeout_s=s.command_timeout_s,
        )
        return GsmModem(s.url, listener, config=cfg)
