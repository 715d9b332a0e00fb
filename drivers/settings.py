"""Settings a site gives its serial devices: the lock boards (Kerong CU16 boards, Modbus
RTU relay boards) and their buses, the code reader, the modem. Interface types like those
in ``drivers.base``: ``edge/`` builds them from its config, a kind's hardware factory
hands them to the drivers, and importing them loads no driver (nor pymodbus)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.cu16_protocol import check_board, check_ms

__all__ = [
    "FLASH_UNIT_MS",
    "MAX_RELAYS",
    "MAX_SLAVE",
    "PULSE_MODES",
    "BoardSettings",
    "BusSettings",
    "Cu16BusSettings",
    "ModbusBoardSettings",
    "ModbusBusSettings",
    "ModemSettings",
    "SerialSettings",
    "check_int",
    "check_pulse",
]

# Modbus RTU relay boards
FLASH_UNIT_MS = 100  # the "flash on" command's time unit
MAX_SLAVE = 255  # 0 is broadcast; 248-255 are reserved by the spec, yet some boards ship as 255
MAX_RELAYS = 32
PULSE_MODES = ("board", "driver")


@dataclass(frozen=True, slots=True)
class BoardSettings:
    """Per-board settings of a CU16 board, where field sources disagree.

    ``closed_bit``: the lock-feedback bit value that means "door closed/latched" (0 or 1).
    ``unlock_replies``: the board answers an unlock with a status frame; when False the bus
    re-queries status ``requery_delay`` after an unlock instead of waiting for a reply.
    ``pulse_ms``: the pulse time the board is assumed to use until :meth:`Cu16Bus.set_unlock_time`
    changes it (the bus spaces unlocks by it so two coils are never energised together)."""

    board_id: int
    closed_bit: int = 1
    unlock_replies: bool = True
    pulse_ms: int = 500

    def __post_init__(self) -> None:
        check_board(self.board_id)
        if self.closed_bit not in (0, 1) or isinstance(self.closed_bit, bool):
            raise ValueError(f"closed_bit must be 0 or 1, got {self.closed_bit!r}")
        check_ms(self.pulse_ms)


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """``value`` if it is an int (not a bool) in ``lo..hi``, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in {lo}..{hi}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class ModbusBoardSettings:
    """One relay board: its slave id (1-255), the relays wired to locks (1..``relays``,
    door switch *n* on discrete input *n*), who times the pulse (``board`` / ``driver``),
    the input value meaning "door closed", and the pulse until ``set_unlock_time``."""

    slave_id: int
    relays: int = 8
    pulse: str = "board"
    closed_bit: int = 1
    pulse_ms: int = 500

    def __post_init__(self) -> None:
        check_int("slave_id", self.slave_id, 1, MAX_SLAVE)
        check_int("relays", self.relays, 1, MAX_RELAYS)
        if self.pulse not in PULSE_MODES:
            raise ValueError(f"pulse must be 'board' or 'driver', got {self.pulse!r}")
        if self.closed_bit not in (0, 1) or isinstance(self.closed_bit, bool):
            raise ValueError(f"closed_bit must be 0 or 1, got {self.closed_bit!r}")
        check_pulse(self.pulse, self.pulse_ms)


def check_pulse(mode: str, ms: object) -> int:
    value = check_int("ms", ms, 10, 600_000)
    if mode == "board" and value % FLASH_UNIT_MS:
        raise ValueError(f"a board-timed pulse is a multiple of {FLASH_UNIT_MS} ms, got {value!r}")
    return value


# ------------------------------------------------------------------ what a kind's factory is given


@dataclass(frozen=True)
class BusSettings:
    """One serial line of lock boards. ``max_pulse_ms``: the driver's own limit on any
    pulse it sends."""

    name: str
    url: str
    baudrate: int
    poll_hz: float
    max_pulse_ms: int


@dataclass(frozen=True)
class Cu16BusSettings(BusSettings):
    """Kerong CU16 boards on one RS-485 line (``drivers.cu16.Cu16Bus``)."""

    boards: tuple[BoardSettings, ...]


@dataclass(frozen=True)
class ModbusBusSettings(BusSettings):
    """Modbus RTU relay boards on one serial line (``drivers.modbus.ModbusBus``)."""

    parity: str
    boards: tuple[ModbusBoardSettings, ...]


@dataclass(frozen=True)
class SerialSettings:
    """A device on one serial port: the pickup-code reader."""

    url: str
    baudrate: int


@dataclass(frozen=True)
class ModemSettings:
    """The GSM/LTE modem (``drivers.modem.GsmModem``): its port and health-check timings."""

    url: str
    baudrate: int
    check_interval_s: float
    command_timeout_s: float
