"""Site configuration: pydantic v2 models loaded from YAML.

One place for every setting. ``load_config`` fails fast with every error's field path
(``ConfigError``), never a traceback. ``docs/config.md`` documents the file.
"""

from __future__ import annotations

import fnmatch
import io
import ssl
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge.core.errors import ConfigError, KeyFileError
from edge.core.signing import load_public_key
from edge.core.topics import ROOT_RE
from edge.datadir import data_dir_problem
from edge.devices.lockers import pickup
from edge.machines.coils import CoilPolicy
from edge.models import COMMAND_ARGS
from edge.published_keys import fingerprint, published_where

SITE_ID_RE = r"^[a-z0-9-]{1,64}$"
NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"

DeviceName = Annotated[str, Field(pattern=NAME_RE)]

# Pins are BCM GPIO numbers. The 40-pin header of every Raspberry Pi since the B+ carries
# GPIO 0-27; higher numbers exist only on boards such as the Compute Modules, so a number
# above 27 is almost always a physical header pin number typed by mistake.
HEADER_MAX_GPIO = 27
# physical header pin -> the BCM GPIO on it (the pins that carry a GPIO)
HEADER_PIN_TO_GPIO = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
    21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
    36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip
ALLOW_ANY_PIN = "allow_any_pin"  # validation-context flag, from devices.allow_any_pin


def on_header(v: int, info: ValidationInfo) -> int:
    context = info.context if isinstance(info.context, dict) else {}
    if v <= HEADER_MAX_GPIO or context.get(ALLOW_ANY_PIN):
        return v
    physical = HEADER_PIN_TO_GPIO.get(v)
    hint = f" (physical pin {v} is GPIO {physical})" if physical is not None else ""
    raise ValueError(
        f"GPIO {v} is not on the 40-pin header: pins are BCM GPIO numbers 0-27, not "
        f"physical pin numbers{hint}; for a board with more GPIOs (a Compute Module) set "
        "devices.allow_any_pin: true"
    )


Pin = Annotated[int, Field(ge=0, le=53), AfterValidator(on_header)]


def _known_command(pattern: str) -> str:
    if not any(fnmatch.fnmatchcase(name, pattern) for name in COMMAND_ARGS):
        raise ValueError(
            f"{pattern!r} matches no command (commands: {', '.join(sorted(COMMAND_ARGS))})"
        )
    return pattern


CommandPattern = Annotated[str, AfterValidator(_known_command)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteInfo(_Model):
    id: str = Field(pattern=SITE_ID_RE, description="Site id, also the MQTT topic level.")
    name: str = ""
    address: str = Field("", description="Street address, sent with alarms (may be Korean).")
    cameras: list[str] = Field(
        default_factory=list, description="CCTV camera ids the centre pulls on an alarm."
    )


class TlsConfig(_Model):
    ca: Path = Field(description="CA bundle (PEM) the broker certificate must chain to.")
    cert: Path | None = Field(None, description="Client certificate (PEM).")
    key: Path | None = Field(None, description="Client private key (PEM).")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together")
        return self


class ReconnectConfig(_Model):
    min_s: float = Field(1.0, gt=0, le=600)
    max_s: float = Field(120.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _order(self) -> ReconnectConfig:
        if self.max_s < self.min_s:
            raise ValueError("max_s must be >= min_s")
        return self


class BrokerConfig(_Model):
    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://host:port or mqtts://host:port")
    client_id: str | None = Field(None, max_length=64)
    keepalive_s: int = Field(30, ge=5, le=3600)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    tls: TlsConfig | None = None
    username: str | None = None
    password_file: Path | None = None
    reconnect: ReconnectConfig = ReconnectConfig()
    max_inflight: int = Field(100, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parse_broker_url(v)
        return v

    @property
    def host(self) -> str:
        return parse_broker_url(self.url)[1]

    @property
    def port(self) -> int:
        return parse_broker_url(self.url)[2]

    @property
    def uses_tls(self) -> bool:
        return parse_broker_url(self.url)[0] == "mqtts"


def parse_broker_url(url: str) -> tuple[str, str, int]:
    """``mqtt://host:port`` / ``mqtts://host:port`` -> (scheme, host, port)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError("broker url must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("broker url has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker url has a bad port: {exc}") from None
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(
            "broker url is only scheme://host:port (put credentials in username/password_file)"
        )
    return parts.scheme, parts.hostname, port or (8883 if parts.scheme == "mqtts" else 1883)


class OutboxConfig(_Model):
    max_events: int = Field(
        100_000,
        ge=100,
        description="Bound on stored undelivered messages; see the overflow policy in docs.",
    )
    durability: Literal["group", "per_event"] = Field(
        "group",
        description="group: one fsync per batch the core handles together; per_event: one each.",
    )


class CommandsConfig(_Model):
    max_payload_bytes: int = Field(16384, ge=256, le=1_048_576)
    max_ttl_s: int = Field(
        600,
        ge=10,
        le=86_400,
        description="A command whose expires_at is further ahead than this is refused "
        "(ttl_too_long).",
    )
    max_queue: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Commands waiting for the core thread, at most; more are shed (no result).",
    )


class TrustedKey(_Model):
    key_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    public_key: Path = Field(description="Ed25519 public key, PEM (as `ansim-edge keygen` writes).")
    commands: list[CommandPattern] = Field(
        min_length=1,
        description="Command names this key may issue; shell-style patterns ('*', 'locker.*').",
    )


class InputConfig(_Model):
    pin: Pin
    contact: Literal["nc", "no"] = Field(
        "no", description="nc: normally closed (open loop = active, cut wire = active)."
    )
    pull_up: bool = True
    debounce_ms: int = Field(50, ge=0, le=5000)

    @field_validator("contact", mode="before")
    @classmethod
    def _yaml_no(cls, v: object) -> object:
        # YAML 1.1 reads an unquoted `no` as false; accept it as the contact type it meant.
        return "no" if v is False else v


class SupervisionConfig(InputConfig):
    """A second input watching the button's wiring (end-of-line supervision output, second
    loop or tamper contact): active = the loop is cut, shorted or the housing is open."""

    contact: Literal["nc", "no"] = "nc"


class PanicButtonConfig(InputConfig):
    name: DeviceName
    contact: Literal["nc", "no"] = "nc"
    hold_ms: int = Field(0, ge=0, le=30_000, description="Must stay pressed this long to count.")
    mode: Literal["silent", "audible"] = "silent"
    supervision: SupervisionConfig | None = Field(
        None, description="Optional wiring-supervision / tamper input for this button."
    )
    chatter_max: int = Field(
        10,
        ge=3,
        le=1000,
        description="More changes (after debounce) than this within the window: chatter.",
    )
    chatter_window_s: float = Field(10, gt=0, le=3600, description="Chatter counting window.")


PhoneNumber = Annotated[str, Field(pattern=r"^\+?[0-9]{2,20}$")]


class ModemDeviceConfig(_Model):
    url: str = Field(description="Serial device of the GSM/LTE modem (AT commands).")
    baudrate: int = Field(115200, description="Line speed.")
    check_interval_s: float = Field(
        30, ge=1, le=3600, description="Registration and signal check period."
    )
    command_timeout_s: float = Field(2.0, gt=0, le=60, description="Timeout of simple commands.")


class EscalationConfig(_Model):
    escalate_after_s: float = Field(
        15, ge=0, le=3600, description="No alarm.ack this long after the press: escalate."
    )
    sms_numbers: list[PhoneNumber] = Field(
        default_factory=list, description="Numbers texted on escalation."
    )
    call_number: PhoneNumber | None = Field(
        None, description="Number called on escalation (112 in production)."
    )
    call_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Calls in all on busy / no answer / drop; also tries per SMS number.",
    )
    call_retry_delay_s: float = Field(10, ge=0, le=600, description="Between call attempts.")
    ring_timeout_s: float = Field(30, gt=0, le=300, description="Ring this long, then no_answer.")
    talk_s: float = Field(60, gt=0, le=3600, description="Keep an answered call this long.")


class TestModeConfig(_Model):
    default_minutes: int = Field(30, ge=1, le=240, description="Walk test length by key.")
    key_turns: int = Field(
        3, ge=2, le=10, description="Reset-key turns within key_window_s that start a walk test."
    )
    key_window_s: float = Field(5, gt=0, le=60, description="Window for the key sequence.")


class OutputConfig(_Model):
    pin: Pin
    active_high: bool = True


HARD_MAX_ON_MS = 5000  # no configuration may energise a locker coil longer than this


class Cu16BoardConfig(_Model):
    id: int = Field(ge=0, le=9, description="Board id on the bus (address high nibble).")
    first_locker: int = Field(ge=1, le=9999, description="Locker number of lock 1.")
    locks: int = Field(16, ge=1, le=16, description="Locks wired on this board (1..locks).")
    closed_bit: Literal[0, 1] = Field(1, description="Lock-feedback bit value meaning closed.")
    unlock_replies: bool = Field(True, description="Does the board answer an unlock?")
    item_sensors: bool = Field(True, description="Are the infrared item sensors fitted?")


class Cu16BusConfig(_Model):
    name: DeviceName = Field(description="Bus name (used in board events and the sim API).")
    url: str = Field(description="Serial device path, or socket://host:port for a TCP bridge.")
    baudrate: int = Field(19200, description="Line speed (8N1).")
    poll_hz: float = Field(4.0, gt=0, le=50, description="Status polls per second per board.")
    boards: list[Cu16BoardConfig] = Field(min_length=1, description="Boards on this bus.")


class ModbusBoardConfig(_Model):
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


class ModbusBusConfig(_Model):
    name: DeviceName = Field(description="Bus name (used in board events and the sim API).")
    url: str = Field(description="Serial device path, or socket://host:port for a TCP bridge.")
    baudrate: int = Field(9600, description="Line speed.")
    parity: Literal["N", "E", "O"] = Field("N", description="Parity (8 data bits, 1 stop bit).")
    poll_hz: float = Field(4.0, gt=0, le=50, description="Door-input reads per second per board.")
    boards: list[ModbusBoardConfig] = Field(min_length=1, description="Boards on this bus.")


class GpioLockerConfig(_Model):
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


class CodeReaderConfig(_Model):
    url: str = Field(description="Serial device path (or socket://host:port).")
    baudrate: int = Field(9600, description="Line speed (8N1).")
    max_failures: int = Field(5, ge=1, le=100, description="Wrong codes allowed in the window.")
    failure_window_s: float = Field(600, gt=0, description="Window for counting wrong codes.")
    lockout_s: float = Field(300, gt=0, description="Reader refuses codes this long after.")


class CodeHashConfig(_Model):
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


class LockersConfig(_Model):
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


class DevicesConfig(_Model):
    panic_buttons: list[PanicButtonConfig] = Field(default_factory=list)
    sent_led: OutputConfig | None = None
    ack_led: OutputConfig | None = None
    buzzer: OutputConfig | None = None
    reset_key: InputConfig | None = None
    lockers: LockersConfig | None = Field(None, description="A parcel-locker bank, if any.")
    modem: ModemDeviceConfig | None = Field(
        None, description="GSM/LTE modem: the alarm's second channel (SMS, voice call)."
    )
    allow_any_pin: bool = Field(
        False,
        description="Accept BCM GPIO numbers above 27 (boards with more GPIOs than the header).",
    )

    @model_validator(mode="after")
    def _unique(self) -> DevicesConfig:
        names = [b.name for b in self.panic_buttons]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate device names: {sorted(dup)}")
        reserved = {"sent_led", "ack_led", "buzzer", "reset_key", "alarm"} & set(names)
        if reserved:
            raise ValueError(f"device names reserved for built-in devices: {sorted(reserved)}")
        pins: dict[int, str] = {}
        for name, pin in self.pin_map():
            if pin in pins:
                raise ValueError(f"GPIO {pin} used by both {pins[pin]} and {name}")
            pins[pin] = name
        return self

    def pin_map(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = [(b.name, b.pin) for b in self.panic_buttons]
        out += [
            (f"{b.name} supervision", b.supervision.pin)
            for b in self.panic_buttons
            if b.supervision is not None
        ]
        for name in ("sent_led", "ack_led", "buzzer", "reset_key"):
            dev = getattr(self, name)
            if dev is not None:
                out.append((name, dev.pin))
        if self.lockers is not None:
            for g in self.lockers.gpio:
                out.append((f"locker {g.locker} solenoid", g.solenoid_pin))
                out.append((f"locker {g.locker} door", g.door_pin))
        return out


class SiteConfig(_Model):
    site: SiteInfo
    broker: BrokerConfig = BrokerConfig()
    topic_root: str = Field("ansim/v1", pattern=ROOT_RE)
    data_dir: Path = Path("/var/lib/ansim-edge")
    outbox: OutboxConfig = OutboxConfig()
    commands: CommandsConfig = CommandsConfig()
    keys: list[TrustedKey] = Field(default_factory=list)
    devices: DevicesConfig = DevicesConfig()
    escalation: EscalationConfig = Field(
        default_factory=EscalationConfig, description="When and how an alarm escalates."
    )
    test_mode: TestModeConfig = Field(
        default_factory=TestModeConfig, description="Walk test started by the reset key."
    )
    self_check_s: float = Field(
        60, ge=1, le=3600, description="Period of the input self-check (faults, supervision)."
    )

    @model_validator(mode="after")
    def _keys_unique(self) -> SiteConfig:
        ids = [k.key_id for k in self.keys]
        if len(ids) != len(set(ids)):
            raise ValueError("keys: key_id values must be unique")
        return self


PIN_FIELDS = ("pin", "solenoid_pin", "door_pin")
MISSING_HINTS = {
    "commands": 'list the commands this key may issue, e.g. ["alarm.*"] (["*"] for all)',
}


def format_problems(source: Path, problems: list[tuple[str, str]]) -> str:
    """``<file>: N error(s) in the configuration:`` and one ``  path: message`` line each."""
    lines = [f"{source}: {len(problems)} error(s) in the configuration:"]
    lines += [f"  {where}: {msg}" for where, msg in problems]
    return "\n".join(lines)


def _format_errors(path: Path, exc: ValidationError) -> str:
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        last = err["loc"][-1] if err["loc"] else None
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling against docs/config.md)"
        elif err["type"] == "missing" and last in MISSING_HINTS:
            msg = f"{msg}: {MISSING_HINTS[str(last)]}"
        elif last in PIN_FIELDS and "BCM" not in msg:
            msg = f"{msg} (pins are BCM GPIO numbers)"
        problems.append((loc, msg))
    return format_problems(path, problems)


def _context(data: dict[Any, Any]) -> dict[str, Any]:
    devices = data.get("devices")
    allow = isinstance(devices, dict) and devices.get("allow_any_pin") is True
    return {ALLOW_ANY_PIN: allow}


def parse_config(data: object, source: Path = Path("<config>")) -> SiteConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must be a YAML mapping (site:, broker:, ...)")
    try:
        cfg = SiteConfig.model_validate(data, context=_context(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
    base = source.parent if source.name != "<config>" else Path.cwd()
    return _resolve_paths(cfg, base)


def load_config(path: str | Path) -> SiteConfig:
    """Read and validate a YAML config. Raises ConfigError naming every bad field path."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    stream = io.StringIO(text)
    stream.name = str(p)  # the parser's messages name the file, not "<unicode string>"
    try:
        data = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_config(data, p)


def _resolve_paths(cfg: SiteConfig, base: Path) -> SiteConfig:
    """Relative paths in the file are relative to the file's directory."""

    def fix(p: Path | None) -> Path | None:
        if p is None or p.is_absolute():
            return p
        return (base / p).resolve()

    keys = [k.model_copy(update={"public_key": fix(k.public_key)}) for k in cfg.keys]
    broker = cfg.broker
    if broker.tls is not None:
        tls = broker.tls.model_copy(
            update={
                "ca": fix(broker.tls.ca),
                "cert": fix(broker.tls.cert),
                "key": fix(broker.tls.key),
            }
        )
        broker = broker.model_copy(update={"tls": tls})
    if broker.password_file is not None:
        broker = broker.model_copy(update={"password_file": fix(broker.password_file)})
    return cfg.model_copy(update={"keys": keys, "broker": broker, "data_dir": fix(cfg.data_dir)})


def with_overrides(
    cfg: SiteConfig, *, broker_url: str | None = None, data_dir: Path | None = None
) -> SiteConfig:
    """Apply command-line overrides, re-validating the result."""
    data = cfg.model_dump()
    if broker_url is not None:
        data["broker"]["url"] = broker_url
    if data_dir is not None:
        data["data_dir"] = data_dir.resolve()
    try:
        return SiteConfig.model_validate(data, context=_context(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(Path("<command line>"), exc)) from None


# --------------------------------------------------------------------------- beyond the file


def file_problems(
    cfg: SiteConfig, *, broker_files: bool = True, data_dir: bool = True
) -> list[tuple[str, str]]:
    """What the files the config names would make ``run`` fail on: (field path, message).

    Every trusted key file (readable, an Ed25519 PEM public key, not a published example
    key); with ``broker_files`` the password file and the TLS files; with ``data_dir``
    whether the data dir can be created and written by this user.
    """
    problems: list[tuple[str, str]] = []
    for i, k in enumerate(cfg.keys):
        where = f"keys.{i}.public_key"
        try:
            key = load_public_key(k.public_key)
        except KeyFileError as exc:
            problems.append((where, str(exc)))
            continue
        published = published_where(key)
        if published is not None:
            problems.append(
                (
                    where,
                    f"{k.public_key} is the example key of {published} (fingerprint "
                    f"{fingerprint(key)}): its private key is public, anyone could sign "
                    "commands with it; make your own with `ansim-edge keygen`",
                )
            )
    b = cfg.broker
    if broker_files and b.username and b.password_file is not None:
        try:
            b.password_file.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(
                ("broker.password_file", f"cannot read {b.password_file} ({exc.strerror})")
            )
        except UnicodeDecodeError:
            problems.append(("broker.password_file", f"{b.password_file} is not UTF-8 text"))
    if broker_files and b.tls is not None:
        problems += _tls_problems(b.tls)
    if data_dir:
        problem = data_dir_problem(cfg.data_dir)
        if problem is not None:
            problems.append(("data_dir", problem))
    return problems


def _tls_problems(tls: TlsConfig) -> list[tuple[str, str]]:
    """Load the TLS files the way the MQTT client will (an ssl context), so a file that
    would stop ``run`` is named here instead."""
    ctx = ssl.create_default_context()
    try:
        ctx.load_verify_locations(cafile=str(tls.ca))
    except ssl.SSLError as exc:  # (an OSError too)
        return [("broker.tls.ca", f"{tls.ca} is not a PEM CA certificate bundle ({exc})")]
    except OSError as exc:
        return [("broker.tls.ca", f"cannot read {tls.ca} ({exc.strerror})")]
    if tls.cert is None or tls.key is None:
        return []
    for where, path in (("broker.tls.cert", tls.cert), ("broker.tls.key", tls.key)):
        try:
            path.read_bytes()
        except OSError as exc:
            return [(where, f"cannot read {path} ({exc.strerror})")]
    try:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    except (OSError, ssl.SSLError) as exc:
        return [
            (
                "broker.tls.cert",
                f"{tls.cert} with {tls.key} is not a usable client certificate and "
                f"unencrypted private key ({exc})",
            )
        ]
    return []


def check_files(
    cfg: SiteConfig, source: Path, *, broker_files: bool = True, data_dir: bool = True
) -> None:
    """Raise ConfigError listing every :func:`file_problems` at once."""
    problems = file_problems(cfg, broker_files=broker_files, data_dir=data_dir)
    if problems:
        raise ConfigError(format_problems(source, problems))


def config_warnings(cfg: SiteConfig) -> list[tuple[str, str]]:
    """Valid but risky settings: (field path, message)."""
    out: list[tuple[str, str]] = []
    for i, button in enumerate(cfg.devices.panic_buttons):
        if button.contact == "no" and button.supervision is None:
            out.append(
                (
                    f"devices.panic_buttons.{i}",
                    f'{button.name}: contact "no" without supervision: a cut or unplugged '
                    "wire looks exactly like an idle button and nothing reports it; wire the "
                    "button nc, or add supervision",
                )
            )
    b = cfg.broker
    if b.password_file is not None and not b.username:
        out.append(("broker.password_file", "set without broker.username: no credentials are sent"))
    return out
