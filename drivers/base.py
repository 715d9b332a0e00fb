"""Small hardware interfaces. Real (gpiozero, pyserial) and simulated implementations
both satisfy them; the core only ever sees these.

Threading rule: driver callbacks may run on any thread (gpiozero's, a serial reader's).
They must only hand the change to the core (``Core.post``), never touch core state.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

# Called with (raw_level_active, monotonic_seconds) on every raw change of an input.
InputListener = Callable[[bool, float], None]


class DigitalInput(Protocol):
    name: str

    def read(self) -> bool:
        """Current logical level (True = active: pressed / loop open / key turned).

        Raises InputFaultError when the input cannot be read."""
        ...

    def set_listener(self, listener: InputListener | None) -> None:
        """Deliver every raw change (no debounce: the core debounces)."""
        ...

    def close(self) -> None: ...


class DigitalOutput(Protocol):
    name: str

    @property
    def is_on(self) -> bool: ...

    def on(self) -> None: ...

    def off(self) -> None: ...

    def close(self) -> None:
        """Turn off, then release. Safe to call twice."""
        ...


class Coil(Protocol):
    """A solenoid driver output that can only be pulsed. The implementation itself
    turns the coil off after at most its ``max_on_s`` (independent of the core loop)."""

    name: str

    def pulse(self, seconds: float) -> None:
        """Energise for ``min(seconds, max_on_s)``, non-blocking."""
        ...

    @property
    def is_on(self) -> bool: ...

    def close(self) -> None:
        """Off, then release. Safe to call twice."""
        ...


class Cu16Listener(Protocol):
    """What a lock bus (:class:`drivers.cu16.Cu16Bus`) reports. Every callback runs on the bus
    thread: keep it cheap, never block, never call the bus's ``close`` and wait for it from
    here. ``t`` comes from the bus's injectable ``monotonic`` clock."""

    def on_status(
        self, board: int, closed: tuple[bool, ...], items: tuple[bool, ...], t: float
    ) -> None:
        """First good reading of a board (also the first after a fault) and every change.
        ``closed[i]`` / ``items[i]`` are lock/sensor ``i + 1``; polarity already applied."""
        ...

    def on_unlock_sent(self, board: int, lock: int, t: float) -> None:
        """An unlock for ``lock`` (1-16) went out and its coil is on: called once the board
        answered it (or the wait for its answer is over), right after the write when the
        board does not answer unlocks. Coil spacing counts from here."""
        ...

    def on_board_fault(self, board: int, reason: str) -> None:
        """Once, after ``fault_after`` consecutive missed/invalid replies or a port failure."""
        ...

    def on_board_recovered(self, board: int) -> None:
        """Once, when a faulted board answers again (an ``on_status`` follows)."""
        ...

    def on_garbage(self, count: int) -> None:
        """``count`` received bytes were thrown away since the last report."""
        ...


class LockBus(Protocol):
    """A serial lock-control bus: Kerong CU16 boards (drivers.cu16.Cu16Bus) or Modbus RTU
    relay boards (drivers.modbus.ModbusBus)."""

    def start(self) -> None: ...

    def unlock(self, board: int, lock: int) -> None: ...

    def set_unlock_time(self, board: int, ms: int) -> None: ...

    def close(self, timeout: float = 2.0) -> None: ...


class Startable(Protocol):
    def start(self) -> None: ...

    def close(self) -> None: ...


class CallOutcome(StrEnum):
    """How a voice call ended (see :meth:`Modem.call`)."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    NO_CARRIER = "no_carrier"  # dropped before it was answered
    NO_DIALTONE = "no_dialtone"
    ERROR = "error"  # refused, invalid request, modem down, driver closed
    TIMEOUT = "timeout"  # the modem stopped replying during the call


@dataclass(frozen=True)
class ModemHealth:
    """Result of the latest periodic check.

    ``ok``: the modem answers AT commands. ``registered``: network registration stat 1 (home)
    or 5 (roaming) on ``+CREG`` or ``+CEREG``. ``signal_dbm``: from ``+CSQ`` (``None`` when
    unknown). ``last_error``: what went wrong in the latest check or fault, else ``None``.
    ``checked_at``: monotonic time of the latest check (``None`` before the first one).
    """

    ok: bool
    registered: bool
    signal_dbm: int | None
    last_error: str | None
    checked_at: float | None


class ModemListener(Protocol):
    """Receives every result. All methods run on the modem's worker thread: be cheap, never
    block, hand the value over to your own thread. Exceptions are logged and swallowed."""

    def on_call_result(self, request_id: str, outcome: CallOutcome, detail: str) -> None: ...

    def on_sms_result(self, request_id: str, ok: bool, detail: str) -> None: ...

    def on_health(self, health: ModemHealth) -> None: ...

    def on_modem_fault(self, reason: str) -> None:
        """The modem stopped answering (reported once until it recovers)."""
        ...

    def on_modem_recovered(self) -> None:
        """The modem answers again after a fault (reported once)."""
        ...

    def on_urc(self, line: str) -> None:
        """An unsolicited result code (``RING``, ``+CLIP: ...``); may contain numbers."""
        ...


class Modem(Protocol):
    """A GSM/LTE modem (see drivers.modem.GsmModem): every method returns at once;
    outcomes come back through the listener given at creation."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def send_sms(self, request_id: str, number: str, text: str) -> None: ...

    def call(
        self, request_id: str, number: str, ring_timeout_s: float = 30, talk_s: float = 20
    ) -> None: ...

    def hangup(self) -> None: ...

    def cancel(self, request_id: str) -> None: ...


@dataclass(frozen=True)
class CodeReaderListener:
    """What a pickup-code reader reports, on its reader thread: a code typed (never log it),
    a fault (once), a recovery (once)."""

    on_code: Callable[[str], None]
    on_fault: Callable[[str], None]
    on_recovered: Callable[[], None]


@dataclass(frozen=True)
class HardwareFactory:
    """Where a device kind's own hardware is made (its buses, readers, modems: what is not a
    GPIO pin), one for each platform, each named ``"module:attribute"``: ``real`` on the
    machine's ports (``drivers/factories/<kind>.py``), ``sim`` on simulated devices
    (``simulator/factories/<kind>.py``). The attribute is called with the platform (the
    :class:`Hardware`) and returns the object the kind's controller asks for its devices (a
    protocol the kind defines). Imported only when a site on that platform is built, so
    ``run`` never loads the simulator, nor a driver its config does not use."""

    real: str
    sim: str


def make_kind_hardware(spec: str, platform: Hardware) -> Any:
    """Call the factory named ``spec`` ("module:attribute") with the platform."""
    return pkgutil.resolve_name(spec)(platform)


class Hardware(Protocol):
    """The platform a site runs on: its GPIO pins (inputs, outputs, coils) and each device
    kind's own hardware (:meth:`for_kind`). Chosen in one place, the CLI (the real machine
    for ``run``, the simulator for ``sim`` and the tests), and injected into the site."""

    def input(self, name: str, pin: int, *, contact: str, pull_up: bool) -> DigitalInput: ...

    def output(self, name: str, pin: int, *, active_high: bool) -> DigitalOutput: ...

    def coil(self, name: str, pin: int, *, active_high: bool, max_on_s: float) -> Coil: ...

    def for_kind(self, kind: str, factory: HardwareFactory) -> Any:
        """Device kind ``kind``'s own hardware on this platform: made once (by
        ``factory.real`` or ``factory.sim``), then the same object."""
        ...

    def close(self) -> None: ...
