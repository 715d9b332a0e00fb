"""`ansim-edge safe-outputs`: drive every GPIO output a config names (locker solenoids, the
lamps, the buzzer) to its off level, without starting the site.

systemd runs it as ``ExecStopPost=`` after every exit of the daemon, including SIGKILL, an
OOM kill and a watchdog kill, when the daemon's own shutdown never ran: a Raspberry Pi keeps
a GPIO output driven after the process that set it dies (unless ``dtparam=strict_gpiod``,
docs/wiring.md), and an energised fail-secure lock is an open door.

Each line is claimed as an output at its off level (low for ``active_high: true``, high
for ``active_high: false``) and left claimed: when the command exits the kernel releases
the lines, and they keep the off level (or, with ``strict_gpiod``, revert to inputs and
the gate pull-down holds the driver off).

Modbus relay boards: a relay switched on by the driver (``pulse: driver``) stays on when
the daemon dies before switching it off, so every Modbus bus gets the driver's own
relays-off passes (at port open for driver-timed boards, at close for every board). CU16
boards and Modbus boards with ``pulse: board`` time their own pulses (they are switched off
all the same); the modem needs nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

from drivers.base import Hardware
from edge.config import SiteConfig
from edge.devices.kind import section
from edge.devices.lockers.config import LockersDevices, ModbusBusConfig
from edge.devices.registry import KINDS

MODBUS_TIMEOUT_S = 5.0  # per bus: long enough for a silent board to be declared faulted


@dataclass(frozen=True)
class OutputPin:
    name: str  # as in the logs: sent_led, ack_led, buzzer, coil-<locker>
    pin: int  # BCM GPIO number
    active_high: bool

    @property
    def off_level(self) -> bool:
        """The pin level that switches the output off (True = high)."""
        return not self.active_high


@dataclass(frozen=True)
class Result:
    output: OutputPin
    error: str | None  # None: driven to its off level


class _PinRecorder:
    """Stands in for the hardware a kind's ``outputs`` hook claims its outputs from: notes
    each pin instead of driving it (the site's own order: kind by kind)."""

    def __init__(self) -> None:
        self.pins: list[OutputPin] = []

    def output(self, name: str, pin: int, *, active_high: bool) -> Any:
        self.pins.append(OutputPin(name, pin, active_high))

    def coil(self, name: str, pin: int, *, active_high: bool, max_on_s: float) -> Any:
        self.pins.append(OutputPin(name, pin, active_high))


def configured_outputs(cfg: SiteConfig) -> list[OutputPin]:
    """Every GPIO output of the site, in the order the site creates them."""
    recorder = _PinRecorder()
    for kind in KINDS:
        if kind.outputs is not None:
            kind.outputs(section(cfg.devices, kind.config), cast(Hardware, recorder))
    return recorder.pins


def drive_off(outputs: list[OutputPin], pin_factory: Any) -> list[Result]:
    """Claim each pin as an output at its off level. One pin that fails (e.g. still held by
    a running daemon: 'GPIO busy') does not stop the others."""
    results: list[Result] = []
    for out in outputs:
        try:
            pin = pin_factory.pin(out.pin)
            pin.output_with_state(out.off_level)
        except Exception as exc:
            results.append(Result(out, f"{type(exc).__name__}: {exc}"))
        else:
            results.append(Result(out, None))
    return results


def describe(result: Result) -> str:
    out = result.output
    level = "high" if out.off_level else "low"
    head = f"{out.name} (GPIO{out.pin}, active_{'high' if out.active_high else 'low'})"
    if result.error is None:
        return f"{head}: off ({level})"
    return f"{head}: FAILED to drive {level}: {result.error}"


@dataclass(frozen=True)
class BoardResult:
    bus: str
    slave_id: int
    error: str | None  # None: the board answered, its relays were switched off


class _FirstAnswer:
    """A lock-bus listener that records which boards answered (after the driver's relays-off
    pass, which it sends before anything else) or were declared faulted."""

    def __init__(self, slaves: list[int]) -> None:
        self._lock = threading.Lock()
        self.pending = set(slaves)
        self.faults: dict[int, str] = {}
        self.done = threading.Event()

    def _settle(self, board: int, fault: str | None = None) -> None:
        with self._lock:
            if board in self.pending:
                self.pending.discard(board)
                if fault is not None:
                    self.faults[board] = fault
            if not self.pending:
                self.done.set()

    def on_status(
        self, board: int, closed: tuple[bool, ...], items: tuple[bool, ...], t: float
    ) -> None:
        self._settle(board)

    def on_board_fault(self, board: int, reason: str) -> None:
        self._settle(board, reason)

    def on_unlock_sent(self, board: int, lock: int, t: float) -> None:
        pass

    def on_board_recovered(self, board: int) -> None:
        pass

    def on_garbage(self, count: int) -> None:
        pass


def modbus_off(
    cfg: SiteConfig, *, timeout_s: float = MODBUS_TIMEOUT_S, **bus_options: Any
) -> list[BoardResult]:
    """Every relay of every Modbus board off, through the real driver: it opens the port,
    switches driver-timed boards' relays off, reads each board once and, at close, switches
    every board's relays off again. ``bus_options`` go to ModbusBus (tests: timings)."""
    lockers = section(cfg.devices, LockersDevices).lockers
    if lockers is None or not lockers.modbus_buses:
        return []
    policy = lockers.coil_policy()
    results: list[BoardResult] = []
    for mb in lockers.modbus_buses:
        results.extend(_one_bus(mb, policy.pulse_ms, policy.max_on_ms, timeout_s, bus_options))
    return results


def _one_bus(
    mb: ModbusBusConfig,
    pulse_ms: int,
    max_on_ms: int,
    timeout_s: float,
    bus_options: dict[str, Any],
) -> list[BoardResult]:
    from drivers.modbus import ModbusBoardSettings, ModbusBus

    slaves = [b.slave_id for b in mb.boards]
    listener = _FirstAnswer(slaves)
    boards = [
        ModbusBoardSettings(
            slave_id=b.slave_id,
            relays=b.locks,
            pulse=b.pulse,
            closed_bit=b.closed_bit,
            pulse_ms=pulse_ms,
        )
        for b in mb.boards
    ]
    bus = ModbusBus(
        mb.url,
        boards,
        listener,
        baudrate=mb.baudrate,
        parity=mb.parity,
        poll_hz=mb.poll_hz,
        max_pulse_ms=max_on_ms,
        **bus_options,
    )
    bus.start()
    try:
        listener.done.wait(timeout_s)
    finally:
        bus.close()
    out = []
    for slave in slaves:
        if slave in listener.faults:
            error: str | None = listener.faults[slave]
        elif slave in listener.pending:
            error = f"no answer within {timeout_s:g} s"
        else:
            error = None
        out.append(BoardResult(mb.name, slave, error))
    return out


def describe_board(result: BoardResult) -> str:
    head = f"modbus {result.bus} slave {result.slave_id}"
    if result.error is None:
        return f"{head}: relays off"
    return f"{head}: FAILED to switch relays off: {result.error}"
