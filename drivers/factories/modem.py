"""The escalation modem on the machine's serial port (the kind's ``ModemHardware``,
``edge/devices/modem/hardware.py``); the simulated one (``simulator/factories/modem.py``)
calls :func:`gsm_modem` with its pty's ``port``."""

from __future__ import annotations

from typing import Any

from drivers.base import Modem, ModemListener
from drivers.settings import ModemSettings


def gsm_modem(s: ModemSettings, listener: ModemListener, *, port: str = "") -> Modem:
    from drivers.modem import GsmModem, ModemConfig

    cfg = ModemConfig(
        baudrate=s.baudrate,
        check_interval_s=s.check_interval_s,
        command_timeout_s=s.command_timeout_s,
    )
    return GsmModem(port or s.url, listener, config=cfg)


class RealModemHardware:
    def __init__(self, platform: Any) -> None:
        self.platform = platform

    def modem(self, s: ModemSettings, listener: ModemListener) -> Modem:
        return gsm_modem(s, listener)
