"""The locker kind's config: the bank, its buses and boards, GPIO lockers, the code reader."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge.devices.common import ConfigModel, DeviceName, Pin
from edge.devices.lockers import pickup
from edge.machines.coils import CoilPolicy

HARD_MAX_ON_MS = 5000  # no configuration may energise a locker coil longer than this


class Cu16BoardConfig(ConfigModel):
    id: int = Field(ge=0, le=9, description="Board id on the bus (address high nibble).")
    first_locker: int = Field(ge=1, le=9999, description="Locker number of lock 1.")
    locks: int = Field(16, ge=1, le=16, description="Locks wired on this board (1..locks).")
    closed_bit: Literal[0, 1] = Field(1, description="Lock-feedback bit value meaning closed.")
    unlock_replies: bool = Field(True, description="Does the board answer an unlock?")
    item_sensors: bool = Field(True, description="Are the infrared item sensors fitted?")


class Cu16BusConfig(ConfigModel):
    name: DeviceName = Field(description="Bus name (used in board events and the sim API).")
    url: str = Field(description="Serial device path, or socket://host:port for a TCP bridge.")
    baudrate: int = Field(19200, description="Line speed (8N1).")
    poll_hz: float = Field(4.0, gt=0, le=50, description="Status polls per second per board.")
    boards: list[Cu16BoardConfig] = Field(min_length=1, description="Boards on this bus.")


class ModbusBoardConfig(ConfigModel):
    slave_id: int = Field(ge=1, le=255, description="Modbus slave address of the relay board.")
    first_locker: int = Field(ge=1, le=9999, description="Locker number of relay 1.")
    locks: int = Field(
        8,
        ge=1,
        le=32,
        description="Locks wired on this board: relay n and door input n serve locker "
        "first_locker + n - 1.",
    )
    pulse: Literal["board", "driver"] = Field(
        "board",
        description="Who times the unlock pulse: board (the board's 'flash on' command, "
        "100 ms steps) or driver (relay on, then off).",
    )
    closed_bit: Literal[0, 1] = Field(1, description="Door-input value meaning closed.")

    @property
    def item_sensors(self) -> bool:
        """Relay boards have door inputs only (the locker bank asks every board)."""
        return False


class ModbusBusConfig(ConfigModel):
    name: DeviceName = Field(description="Bus name (used in board events and the sim API).")
    url: str = Field(description="Serial device path, or socket://host:port for a TCP bridge.")
    baudrate: int = Field(9600, description="Line speed.")
    parity: Literal["N", "E", "O"] = Field("N", description="Parity (8 data bits, 1 stop bit).")
    poll_hz: float = Field(4.0, gt=0, le=50, description="Door-input reads per second per board.")
    boards: list[ModbusBoardConfig] = Field(min_length=1, description="Boards on this bus.")


class GpioLockerConfig(ConfigModel):
    locker: int = Field(ge=1, le=9999, description="Locker number.")
    solenoid_pin: Pin = Field(description="GPIO driving the solenoid's MOSFET/relay.")
    active_high: bool = Field(True, description="Solenoid driver is on when the pin is high.")
    door_pin: Pin = Field(description="GPIO of the door switch.")
    door_contact: Literal["nc", "no"] = Field(
        "no", description="Door switch contact when the door is closed: no = closes when shut."
    )
    pull_up: bool = Field(True, description="Internal pull-up (switch wired to ground).")
    debounce_ms: int = Field(50, ge=0, le=5000, description="Door switch debounce.")

    @field_validator("door_contact", mode="before")
    @classmethod
    def _yaml_no(cls, v: object) -> object:
        return "no" if v is False else v


class CodeReaderConfig(ConfigModel):
    url: str = Field(description="Serial device path (or socket://host:port).")
    baudrate: int = Field(9600, description="Line speed (8N1).")
    max_failures: int = Field(5, ge=1, le=100, description="Wrong codes allowed in the window.")
    failure_window_s: float = Field(600, gt=0, description="Window for counting wrong codes.")
    lockout_s: float = Field(300, gt=0, description="Reader refuses codes this long after.")


class CodeHashConfig(ConfigModel):
    n: int = Field(
        pickup.DEFAULT_N,
        ge=pickup.N_MIN,
        le=pickup.N_MAX,
        description="scrypt cost N (a power of two) for codes hashed at the site.",
    )
    r: int = Field(pickup.DEFAULT_R, ge=1, le=pickup.R_MAX, description="scrypt block size r.")
    p: int = Field(pickup.DEFAULT_P, ge=1, le=pickup.P_MAX, description="scrypt parallelism p.")

    @model_validator(mode="after")
    def _check(self) -> CodeHashConfig:
        pickup.check_params(self.n, self.r, self.p)
        return self


class LockersConfig(ConfigModel):
    pulse_ms: int = Field(500, ge=50, le=HARD_MAX_ON_MS, description="Unlock pulse length.")
    max_on_ms: int = Field(
        2000, ge=50, le=HARD_MAX_ON_MS, description="Hard cap on any coil's on-time."
    )
    cooldown_ms: int = Field(2000, ge=0, le=600_000, description="Per lock, between pulses.")
    max_concurrent: int = Field(1, ge=1, le=8, description="Coils energised at once, site-wide.")
    open_timeout_s: float = Field(
        3.0, gt=0, le=60, description="Door must open this soon after a pulse, else lock.jammed."
    )
    left_open_s: float = Field(120, gt=0, description="door.left_open after this long open.")
    forced_window_s: float = Field(
        10, gt=0, description="An opening with no pulse in this window before it is door.forced."
    )
    free_hours: float = Field(48, ge=0, description="Free storage period.")
    fee_per_day_krw: int = Field(1000, ge=0, description="Per started day after the free period.")
    buses: list[Cu16BusConfig] = Field(
        default_factory=list, description="Kerong CU16 RS-485 buses and their boards."
    )
    modbus_buses: list[ModbusBusConfig] = Field(
        default_factory=list, description="Modbus RTU relay-board buses and their boards."
    )
    gpio: list[GpioLockerConfig] = Field(
        default_factory=list, description="Lockers wired straight to GPIO (solenoid + door)."
    )
    code_reader: CodeReaderConfig | None = Field(
        None, description="Serial pickup-code reader (scanner or keypad), one line per code."
    )
    code_hash: CodeHashConfig = Field(
        default_factory=CodeHashConfig,
        description="Cost of the scrypt hash of pickup codes sent in clear (locker.assign "
        "pickup_code). Each hash keeps its own parameters, so a change applies to new codes.",
    )

    @model_validator(mode="after")
    def _check(self) -> LockersConfig:
        if self.pulse_ms > self.max_on_ms:
            raise ValueError(f"pulse_ms ({self.pulse_ms}) exceeds max_on_ms ({self.max_on_ms})")
        if self.buses and self.pulse_ms % 10:
            raise ValueError(
                f"pulse_ms ({self.pulse_ms}) must be a multiple of 10 (CU16 boards count 10 ms)"
            )
        seen: dict[int, str] = {}
        for bus in self.buses:
            ids = [b.id for b in bus.boards]
            if len(ids) != len(set(ids)):
                raise ValueError(f"bus {bus.name}: board ids must be unique")
            for b in bus.boards:
                for n in range(b.first_locker, b.first_locker + b.locks):
                    where = f"bus {bus.name} board {b.id}"
                    if n in seen:
                        raise ValueError(f"locker {n} defined twice ({seen[n]} and {where})")
                    seen[n] = where
        for mb in self.modbus_buses:
            slaves = [b.slave_id for b in mb.boards]
            if len(slaves) != len(set(slaves)):
                raise ValueError(f"bus {mb.name}: slave ids must be unique")
            for mbb in mb.boards:
                if mbb.pulse == "board" and self.pulse_ms % 100:
                    raise ValueError(
                        f"pulse_ms ({self.pulse_ms}) must be a multiple of 100 for bus "
                        f"{mb.name} slave {mbb.slave_id} (pulse: board counts 100 ms)"
                    )
                for n in range(mbb.first_locker, mbb.first_locker + mbb.locks):
                    where = f"bus {mb.name} slave {mbb.slave_id}"
                    if n in seen:
                        raise ValueError(f"locker {n} defined twice ({seen[n]} and {where})")
                    seen[n] = where
        for g in self.gpio:
            if g.locker in seen:
                raise ValueError(f"locker {g.locker} defined twice ({seen[g.locker]} and gpio)")
            seen[g.locker] = "gpio"
        names = [b.name for b in self.buses] + [b.name for b in self.modbus_buses]
        if len(names) != len(set(names)):
            raise ValueError("bus names must be unique")
        return self

    def coil_policy(self) -> CoilPolicy:
        """The coil limits of this bank, computed once (scheduler, coils and boards)."""
        return CoilPolicy.limit(
            pulse_ms=self.pulse_ms,
            max_on_ms=self.max_on_ms,
            cooldown_ms=self.cooldown_ms,
            max_concurrent=self.max_concurrent,
        )

    def locker_ids(self) -> list[int]:
        ids = [g.locker for g in self.gpio]
        for bus in self.buses:
            for b in bus.boards:
                ids += range(b.first_locker, b.first_locker + b.locks)
        for mb in self.modbus_buses:
            for mbb in mb.boards:
                ids += range(mbb.first_locker, mbb.first_locker + mbb.locks)
        return sorted(ids)


class LockersDevices(ConfigModel):
    """The locker kind's field under ``devices``."""

    lockers: LockersConfig | None = Field(None, description="A parcel-locker bank, if any.")


def pins(d: LockersDevices) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    if d.lockers is not None:
        for g in d.lockers.gpio:
            out.append((f"locker {g.locker} solenoid", g.solenoid_pin))
            out.append((f"locker {g.locker} door", g.door_pin))
    return out
