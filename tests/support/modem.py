"""A recording modem for site-level tests: the modem kind's hardware answered by an object
that records the SMS and calls it is asked for (no pty, no threads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.hardware import SimHardware


class RecordingModem:
    """drivers.base.Modem that records requests (no pty, no threads)."""

    def __init__(self) -> None:
        self.sms: list[tuple[str, str]] = []
        self.calls: list[str] = []

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send_sms(self, request_id: str, number: str, text: str) -> None:
        self.sms.append((number, text))

    def call(
        self, request_id: str, number: str, ring_timeout_s: float = 30, talk_s: float = 20
    ) -> None:
        self.calls.append(number)

    def hangup(self) -> None:
        pass

    def cancel(self, request_id: str) -> None:
        pass


class RecordingModemHardware:
    """The modem kind's hardware, with a recording modem."""

    def __init__(self, recorder: RecordingModem) -> None:
        self.recorder = recorder

    def modem(self, s: Any, listener: Any) -> RecordingModem:
        return self.recorder


class RecordingHardware(SimHardware):
    """The simulated hardware with the modem kind's replaced by a :class:`RecordingModem`
    (``.recorder``)."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self.recorder = RecordingModem()
        hw = RecordingModemHardware(self.recorder)
        super().__init__(monotonic, factories={"modem": lambda _platform: hw})
