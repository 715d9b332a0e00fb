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
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.core.errors import ConfigError, KeyFileError
from edge.core.signing import load_public_key
from edge.core.topics import ROOT_RE
from edge.datadir import data_dir_problem
from edge.devices.common import ALLOW_ANY_PIN
from edge.devices.common import ConfigModel as _Model
from edge.devices.kind import section
from edge.devices.modem.config import EscalationConfig
from edge.devices.panic.config import PanicDevices, TestModeConfig
from edge.devices.registry import COMMAND_ARGS, DevicesConfig
from edge.published_keys import fingerprint, published_where

SITE_ID_RE = r"^[a-z0-9-]{1,64}$"


def _known_command(pattern: str) -> str:
    if not any(fnmatch.fnmatchcase(name, pattern) for name in COMMAND_ARGS):
        raise ValueError(
            f"{pattern!r} matches no command (commands: {', '.join(sorted(COMMAND_ARGS))})"
        )
    return pattern


CommandPattern = Annotated[str, AfterValidator(_known_command)]


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


def _broker_url(url: str) -> str:
    parse_broker_url(url)
    return url


BrokerUrl = Annotated[str, AfterValidator(_broker_url)]
DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"


class BrokerConfig(_Model):
    url: BrokerUrl = Field(DEFAULT_BROKER_URL, description="mqtt://host:port or mqtts://host:port")
    urls: list[BrokerUrl] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="Several addresses of one broker service, tried in turn.",
    )
    client_id: str | None = Field(None, max_length=64)
    keepalive_s: int = Field(30, ge=5, le=3600)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    tls: TlsConfig | None = None
    username: str | None = None
    password_file: Path | None = None
    reconnect: ReconnectConfig = ReconnectConfig()
    max_inflight: int = Field(100, ge=1, le=1000)

    @model_validator(mode="before")
    @classmethod
    def _url_or_urls(cls, data: Any) -> Any:
        if isinstance(data, dict) and "url" in data and data.get("urls") is not None:
            raise ValueError("give url (one address) or urls (several), not both")
        return data

    @field_validator("urls")
    @classmethod
    def _distinct_same_scheme(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        seen: dict[tuple[str, str, int], str] = {}
        for url in v:
            parsed = parse_broker_url(url)
            if parsed in seen:
                raise ValueError(f"{url} and {seen[parsed]} are the same address")
            seen[parsed] = url
        if len({scheme for scheme, _, _ in seen}) > 1:
            raise ValueError("mixes mqtt:// and mqtts://: all addresses use TLS or none does")
        return v

    @property
    def addresses(self) -> list[str]:
        """Every broker address, in the order tried: ``urls``, or ``[url]``."""
        return list(self.urls) if self.urls is not None else [self.url]

    @property
    def host(self) -> str:
        """Host of the first address."""
        return parse_broker_url(self.addresses[0])[1]

    @property
    def port(self) -> int:
        """Port of the first address."""
        return parse_broker_url(self.addresses[0])[2]

    @property
    def uses_tls(self) -> bool:
        """The addresses are mqtts:// (all are, or none is)."""
        return parse_broker_url(self.addresses[0])[0] == "mqtts"


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
    reject_after_drops: int = Field(
        3,
        ge=2,
        le=100,
        description="A message after which the broker closed the connection this many times in "
        "a row (each within reject_window_s of sending it, before its PUBACK) is moved to the "
        "dead letters.",
    )
    reject_window_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="'Right after': a connection closed by the broker or the network within "
        "this many seconds of sending a message that has no PUBACK yet.",
    )
    dead_letters_max: int = Field(
        1000,
        ge=10,
        le=100_000,
        description="Dead letters kept at most (refused messages); the oldest go first, counted.",
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


class HomeAssistantConfig(_Model):
    enabled: bool = Field(
        False, description="Publish Home Assistant MQTT discovery configs (docs/homeassistant.md)."
    )
    prefix: str = Field(
        "homeassistant", pattern=ROOT_RE, description="Home Assistant's discovery prefix."
    )
    birth_topic: str = Field(
        "homeassistant/status",
        pattern=ROOT_RE,
        description="Home Assistant's birth message topic: 'online' there re-publishes every "
        "discovery config.",
    )
    republish_delay_max_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="After a birth message, re-publish after a random delay up to this, so "
        "many sites do not publish at the same moment.",
    )


class SiteConfig(_Model):
    site: SiteInfo
    broker: BrokerConfig = BrokerConfig()
    topic_root: str = Field("ansim/v1", pattern=ROOT_RE)
    data_dir: Path = Path("/var/lib/ansim-edge")
    outbox: OutboxConfig = OutboxConfig()
    commands: CommandsConfig = CommandsConfig()
    keys: list[TrustedKey] = Field(default_factory=list)
    devices: DevicesConfig = DevicesConfig()  # every registered kind's fields
    escalation: EscalationConfig = Field(
        default_factory=EscalationConfig, description="When and how an alarm escalates."
    )
    test_mode: TestModeConfig = Field(
        default_factory=TestModeConfig, description="Walk test started by the reset key."
    )
    self_check_s: float = Field(
        60, ge=1, le=3600, description="Period of the input self-check (faults, supervision)."
    )
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig,
        description="Home Assistant MQTT discovery (opt-in).",
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
        data["broker"]["urls"] = None  # one address replaces the list
    elif data["broker"]["urls"] is not None:
        del data["broker"]["url"]  # the dump carries url's default next to urls
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
    for i, button in enumerate(section(cfg.devices, PanicDevices).panic_buttons):
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
