"""Scenario files: what a technician does to a simulated site and what the centre must see
(docs/scenarios.md has the full grammar). This module is the format: pydantic models, the
loader and the error messages; ``simulator.scenario_run`` runs a scenario against a
simulated site."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.core.errors import AnsimError

VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILTIN_VARS = ("site",)
OPERATORS = ("regex", "gt", "ge", "lt", "le", "not", "any_of", "present")
MAX_S = 3600.0


class ScenarioError(AnsimError):
    """A scenario file that cannot be read or is not valid."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


Seconds = Annotated[float, Field(gt=0, le=MAX_S)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
SaveMap = dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Name]


class _Step(_Model):
    note: str | None = Field(None, description="Shown in the report after the step.")


# ---- acting on the simulated hardware ----
class Press(_Step):
    press: Name = Field(description="Input name (a panic button, reset_key): set it active.")


class Release(_Step):
    release: Name = Field(description="Input name: set it inactive.")


class TapSpec(_Model):
    input: Name
    times: int = Field(1, ge=1, le=20)
    hold_s: Seconds = 0.2
    gap_s: Seconds = 0.2


def _tap_short(v: Any) -> Any:
    return {"input": v} if isinstance(v, str) else v


class Tap(_Step):
    tap: Annotated[TapSpec, BeforeValidator(_tap_short)] = Field(
        description="Press and release an input (times, hold_s, gap_s); `tap: NAME` once."
    )


class Wait(_Step):
    wait: Seconds = Field(description="Let this many seconds pass.")


class DoorSpec(_Model):
    locker: int = Field(ge=1)
    open: bool


class Door(_Step):
    door: DoorSpec


class ItemSpec(_Model):
    locker: int = Field(ge=1)
    present: bool


class Item(_Step):
    item: ItemSpec


class JamSpec(_Model):
    locker: int = Field(ge=1)
    jammed: bool


class Jam(_Step):
    jam: JamSpec


class BoardSpec(_Model):
    bus: Name
    board: int = Field(ge=0)
    mode: Literal["ok", "silent", "corrupt"]


class Board(_Step):
    board: BoardSpec


class Code(_Step):
    code: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\r\n]+$")] = Field(
        description="Typed on the pickup-code reader."
    )


class ModemSpec(_Model):
    registered: bool | None = None
    signal: int | None = Field(None, ge=0, le=99)
    callee: (
        Literal["answer", "busy", "no_answer", "no_carrier", "no_carrier_ringing", "no_dialtone"]
        | None
    ) = None
    sms_fail: bool | None = None
    silent: bool | None = None

    @model_validator(mode="after")
    def _some(self) -> ModemSpec:
        if not self.model_dump(exclude_none=True):
            raise ValueError("name at least one of registered, signal, callee, sms_fail, silent")
        return self


class Modem(_Step):
    modem: ModemSpec


class CutSpec(_Model):
    for_s: Seconds


def _cut_short(v: Any) -> Any:
    return {"for_s": v} if isinstance(v, int | float) and not isinstance(v, bool) else v


class CutLink(_Step):
    cut_link: Annotated[CutSpec, BeforeValidator(_cut_short)] = Field(
        description="Cut the site's broker link for for_s seconds (the step does not wait)."
    )


class AdvanceSpec(_Model):
    days: float = Field(0, ge=0)
    hours: float = Field(0, ge=0)
    minutes: float = Field(0, ge=0)
    seconds: float = Field(0, ge=0)

    @property
    def total_s(self) -> float:
        return self.days * 86400 + self.hours * 3600 + self.minutes * 60 + self.seconds

    @model_validator(mode="after")
    def _positive(self) -> AdvanceSpec:
        if self.total_s <= 0:
            raise ValueError("move the clock forward by some days, hours, minutes or seconds")
        return self


class AdvanceClock(_Step):
    advance_clock: AdvanceSpec = Field(description="Move the site's wall clock forward.")


# ---- the centre ----
class SendSpec(_Model):
    command: Name
    args: dict[str, Any] = Field(default_factory=dict)
    result: Name = Field(
        "ok", description="ok, an error code the result must have, or any (any result)."
    )
    within_s: Seconds | None = None
    save: SaveMap | None = None
    key: Path | None = Field(None, description="Private key (relative to the scenario file).")
    key_id: Name | None = None


class Send(_Step):
    send: SendSpec


class ExpectSpec(_Model):
    event: Name | None = None
    device: Name | None = None
    data: dict[str, Any] | None = None
    save: SaveMap | None = None
    state: Name | None = None
    match: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    output: dict[Name, bool] | None = Field(
        None, description="Outputs (sent_led, ack_led, buzzer) and whether each is on."
    )
    site: dict[str, Any] | None = None
    sms: dict[str, Any] | None = None
    call: dict[str, Any] | None = None
    within_s: Seconds | None = None

    @property
    def kind(self) -> str:
        for k in ("event", "state", "status", "output", "site", "sms", "call"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated")

    @model_validator(mode="after")
    def _one_kind(self) -> ExpectSpec:
        kinds = [
            k
            for k in ("event", "state", "status", "output", "site", "sms", "call")
            if getattr(self, k) is not None
        ]
        if len(kinds) != 1:
            raise ValueError(
                "expect exactly one of event, state, status, output, site, sms, call; "
                f"got {kinds or 'none'}"
            )
        kind = kinds[0]
        for extra, allowed in (
            ("device", "event"),
            ("data", "event"),
            ("save", "event"),
            ("match", "state"),
        ):
            if getattr(self, extra) is not None and kind != allowed:
                raise ValueError(f"{extra} goes with {allowed}, not with {kind}")
        if kind == "output" and not self.output:
            raise ValueError("output needs at least one output, e.g. {sent_led: on}")
        if kind == "state" and self.match is None:
            raise ValueError("state needs match: {field: value, ...}")
        return self


class Expect(_Step):
    expect: ExpectSpec


class ExpectNoneSpec(_Model):
    event: Name | None = None
    device: Name | None = None
    data: dict[str, Any] | None = None
    sms: dict[str, Any] | None = None
    call: dict[str, Any] | None = None
    for_s: Seconds

    @property
    def kind(self) -> str:
        return "event" if self.event is not None else "sms" if self.sms is not None else "call"

    @model_validator(mode="after")
    def _one_kind(self) -> ExpectNoneSpec:
        kinds = [k for k in ("event", "sms", "call") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"expect_none takes exactly one of event, sms, call; got {kinds}")
        if (self.device is not None or self.data is not None) and kinds[0] != "event":
            raise ValueError("device and data go with event")
        return self


class ExpectNone(_Step):
    expect_none: ExpectNoneSpec


ACTIONS: dict[str, type[_Step]] = {
    "press": Press,
    "release": Release,
    "tap": Tap,
    "wait": Wait,
    "expect": Expect,
    "expect_none": ExpectNone,
    "send": Send,
    "cut_link": CutLink,
    "modem": Modem,
    "door": Door,
    "item": Item,
    "jam": Jam,
    "board": Board,
    "code": Code,
    "advance_clock": AdvanceClock,
}


def _action(v: Any) -> str | None:
    if isinstance(v, dict):
        keys = [k for k in v if k != "note"]
        if len(keys) == 1 and keys[0] in ACTIONS:
            return str(keys[0])
    return None


def _check_step(v: Any) -> Any:
    if isinstance(v, str) and v in ACTIONS:
        raise ValueError(f"'{v}' needs a value: write '{v}: ...'")
    if not isinstance(v, dict):
        raise ValueError("a step is a mapping with one action, e.g. 'press: panic-counter'")
    keys = [k for k in v if k != "note"]
    if len(keys) != 1:
        raise ValueError(f"a step has exactly one action (and an optional note); got {keys}")
    if keys[0] not in ACTIONS:
        raise ValueError(f"unknown action {keys[0]!r}; actions: {', '.join(ACTIONS)}")
    return v


Step = Annotated[
    Annotated[Press, Tag("press")]
    | Annotated[Release, Tag("release")]
    | Annotated[Tap, Tag("tap")]
    | Annotated[Wait, Tag("wait")]
    | Annotated[Expect, Tag("expect")]
    | Annotated[ExpectNone, Tag("expect_none")]
    | Annotated[Send, Tag("send")]
    | Annotated[CutLink, Tag("cut_link")]
    | Annotated[Modem, Tag("modem")]
    | Annotated[Door, Tag("door")]
    | Annotated[Item, Tag("item")]
    | Annotated[Jam, Tag("jam")]
    | Annotated[Board, Tag("board")]
    | Annotated[Code, Tag("code")]
    | Annotated[AdvanceClock, Tag("advance_clock")],
    Discriminator(_action),
    BeforeValidator(_check_step),
]


def action_of(step: _Step) -> str:
    for name, cls in ACTIONS.items():
        if type(step) is cls:
            return name
    raise AssertionError(type(step))


class Scenario(_Model):
    name: Name
    description: str | None = None
    config: Path = Field(description="The site config, relative to the scenario file.")
    config_overrides: dict[str, Any] | None = Field(
        None,
        description="Merged into the site config for `scenario run` (mappings key by key), "
        "e.g. a short reconnect backoff.",
    )
    timeout_s: Seconds = Field(5.0, description="Default within_s of expect and send steps.")
    steps: list[Step] = Field(min_length=1)

    @field_validator("config")
    @classmethod
    def _yaml(cls, v: Path) -> Path:
        if v.suffix not in (".yaml", ".yml"):
            raise ValueError("config names a site config file (.yaml)")
        return v

    @model_validator(mode="after")
    def _variables(self) -> Scenario:
        """Every ${var} used is saved by an earlier step (or is a built-in)."""
        known = set(BUILTIN_VARS)
        for i, step in enumerate(self.steps, 1):
            spec = getattr(step, action_of(step))
            for name in _used_vars(spec.model_dump(exclude={"save"}) if _is_model(spec) else spec):
                if name not in known:
                    raise ValueError(
                        f"step {i} ({action_of(step)}) uses ${{{name}}}, which no earlier step "
                        f"saves (save: {{{name}: ...}}); built-in: {', '.join(BUILTIN_VARS)}"
                    )
            save = getattr(spec, "save", None)
            if save:
                known.update(save)
        return self


def _is_model(v: Any) -> bool:
    return isinstance(v, BaseModel)


def _used_vars(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return VAR_RE.findall(obj)
    if isinstance(obj, dict):
        return [n for k, v in obj.items() for n in (*_used_vars(k), *_used_vars(v))]
    if isinstance(obj, list | tuple):
        return [n for v in obj for n in _used_vars(v)]
    return []


def format_errors(source: Path, exc: ValidationError) -> str:
    lines = [f"{source}: {exc.error_count()} error(s) in the scenario:"]
    for err in exc.errors():
        loc = list(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (see docs/scenarios.md)"
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            where = f"step {loc[1] + 1}"
            rest = [str(p) for p in loc[2:]]
            if rest:  # the tag, then the path inside the step
                where += f" ({rest[0]})"
                field = ".".join(rest[1:])
                where += f": {field}" if field else ""
        else:
            where = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


class _Loader(yaml.SafeLoader):
    """YAML with only true and false as booleans (as in YAML 1.2): on, off, yes and no
    stay text, so `on:` can be a key (site.test_mode's data) and `callee: no_answer` text."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_scenario(data: Any, source: Path = Path("<scenario>")) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a YAML mapping (name:, config:, steps:)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(format_errors(source, exc)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; its ``config`` becomes an absolute path."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read the scenario ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{p}: not valid YAML: {exc}") from None
    sc = parse_scenario(data, p)
    base = p.resolve().parent
    steps = [_resolve_key(s, base) for s in sc.steps]
    return sc.model_copy(update={"config": (base / sc.config).resolve(), "steps": steps})


def _resolve_key(step: Any, base: Path) -> Any:
    if isinstance(step, Send) and step.send.key is not None and not step.send.key.is_absolute():
        spec = step.send.model_copy(update={"key": (base / step.send.key).resolve()})
        return step.model_copy(update={"send": spec})
    return step


def scenario_dir() -> Path:
    """The scenarios shipped with the simulator."""
    return Path(__file__).resolve().parent / "scenarios"
