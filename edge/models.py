"""The MQTT payload contract's core: envelope, result, command, status and the core's own
events (each device kind defines its events and command args in its package,
edge/devices/<kind>/). JSON Schemas in docs/schemas/ are generated
from these models (``python -m edge.schemas``) and a test fails when they drift."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from edge.core.clock import rfc3339


class Payload(BaseModel):  # every payload model: unknown fields are refused
    model_config = ConfigDict(extra="forbid")


class Event(Payload):
    """Envelope of every event on ``{root}/{site}/events/{type}`` (each dot of the type a
    topic level: ``events/alarm/raised``)."""

    event_id: str = Field(description="UUID, stable across retries: consumers dedup on it.")
    seq: int = Field(ge=1, description="Per-site sequence, +1 per event, never reused or skipped.")
    site: str
    device: str = Field(description="Device the event is about ('site' for the site itself).")
    type: str = Field(
        description="Event type, e.g. alarm.raised; in the topic each dot is a level: "
        "events/alarm/raised."
    )
    ts: str = Field(description="When it happened: RFC 3339 UTC with milliseconds.")
    data: dict[str, Any] = Field(default_factory=dict)


class CommandErrorBody(Payload):
    code: str
    message: str


class Result(Payload):
    """One per command on ``{root}/{site}/results``."""

    command_id: str | None = Field(description="null only when the command had no readable id.")
    ok: bool
    error: CommandErrorBody | None
    data: dict[str, Any] | None = None
    ts: str


class Command(Payload):
    """A signed command on ``{root}/{site}/commands/{name}`` (each dot of the name a topic
    level: ``commands/alarm/ack``)."""

    command_id: str = Field(min_length=1, max_length=64)
    site: str = Field(
        pattern=r"^[a-z0-9-]{1,64}$",
        description="The site.id of the one site it is for; any other site refuses it.",
    )
    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$",
        description="The command; the topic is commands/ + the name with each dot a level.",
    )
    args: dict[str, Any]
    expires_at: AwareDatetime = Field(description="RFC 3339 with a zone; refused from then on.")
    key_id: str = Field(min_length=1, max_length=64)
    sig: str = Field(pattern=r"^[0-9a-f]{128}$", description="Lowercase hex Ed25519 signature.")


class ModemStatus(Payload):
    ok: bool = Field(description="The modem answers AT commands.")
    registered: bool
    signal_dbm: int | None
    last_error: str | None


class Fault(Payload):
    kind: Literal["board", "input", "wiring", "modem", "store"] = Field(
        description="board: a lock board stopped answering (board.fault); input: a door "
        "switch, a button or the code reader cannot be read (input.fault); wiring: a panic "
        "button's supervision, chatter or stuck_active fault (wiring.fault); modem: the "
        "escalation modem stopped answering (modem.fault); store: the durable store is "
        "degraded (store.fault)."
    )
    device: str = Field(description="The device of the fault's event ('site' for the store).")
    reason: str = Field(description="The reason from the fault's event.")
    since: str = Field(description="When it was first reported (the event's ts).")


class Status(Payload):
    """Retained on ``{root}/{site}/status``; the last will sets state offline."""

    state: Literal["online", "offline"]
    version: str
    ts: str
    site: str
    clock_synced: bool | None = Field(
        None, description="False when the wall clock is not known to be synchronised."
    )
    clock_trusted: bool = Field(
        True,
        description="False while the wall clock is behind its persisted high-water mark "
        "(set back): signed commands are refused (clock_untrusted) until it catches up.",
    )
    modem: ModemStatus | None = Field(None, description="The fallback modem's health, if any.")
    store: Literal["ok", "degraded"] = Field(
        "ok",
        description="degraded: the durable store cannot be written (or opened); events and "
        "state are kept in memory and sent from there until it works again.",
    )
    store_error: str | None = Field(
        None, description="While degraded: the store's latest error, e.g. disk full."
    )
    outbox_depth: int = Field(
        0,
        ge=0,
        description="Messages (events and results) in the outbox not yet acknowledged by "
        "the broker when this status was made.",
    )
    uptime_s: int | None = Field(
        None, description="Seconds the site had run when this status was made (null offline)."
    )
    oldest_pending_s: float | None = Field(
        None,
        description="Age in seconds of the oldest message in the outbox, from its ts; null "
        "when the outbox is empty (and offline).",
    )
    broker: str | None = Field(
        None,
        description="The broker address this status went to (broker.url, or the one of "
        "broker.urls in use); null offline.",
    )
    faults: list[Fault] | None = Field(
        None,
        description="Every active fault, oldest first; [] when none; null offline. A "
        "change re-publishes the online status.",
    )


# ---- event data models (the "data" object of each event type) ----


class EventData(Payload):
    """The ``data`` object of one event type. ``TYPE`` is the event type, also the last
    level of its topic; the outbox refuses a model whose type is not registered."""

    TYPE: ClassVar[str]


class InputFault(EventData):
    TYPE: ClassVar[str] = "input.fault"
    reason: str


class OutboxOverflow(EventData):
    TYPE: ClassVar[str] = "outbox.overflow"
    dropped: int = Field(description="Messages dropped to stay within outbox.max_events.")
    first_seq: int | None
    last_seq: int | None


class OutboxRejected(EventData):
    TYPE: ClassVar[str] = "outbox.rejected"
    count: int = Field(ge=1, description="Messages of this type moved to the dead letters.")
    type: str = Field(
        description="Their event type (e.g. alarm.raised), 'result' for command results, "
        "'unknown' for a message without one."
    )
    reason: str = Field(
        description="Why: 'refused by the broker: PUBACK <reason code>' (MQTT 5) or 'the "
        "broker closed the connection right after it was sent, N times in a row'."
    )
    first_seq: int | None = Field(description="The lowest seq among them; null for results.")
    last_seq: int | None = Field(description="The highest seq among them; null for results.")
    dead_letters: list[int] = Field(
        description="Their dead-letter ids (outbox.dead_letters lists them, outbox.resend "
        "sends them again)."
    )


class CommandsShed(EventData):
    TYPE: ClassVar[str] = "commands.shed"
    count: int = Field(
        ge=1,
        description="Commands dropped unanswered since the previous commands.shed event.",
    )
    max_queue: int = Field(description="The bound that was full (commands.max_queue).")


class ConfigRejected(EventData):
    TYPE: ClassVar[str] = "config.rejected"
    config: str = Field(description="The config file that was read again (SIGHUP).")
    error: str = Field(
        description="Why it was refused: every bad field path with its problem, as "
        "check-config prints them; the site goes on with the config it had."
    )


class StoreReset(EventData):
    TYPE: ClassVar[str] = "store.reset"
    quarantined: str = Field(description="Where the damaged store file was moved.")


class CommandsRefused(EventData):
    TYPE: ClassVar[str] = "commands.refused"
    suppressed: int = Field(
        ge=1, description="Command messages that got no result and no log line (rate limit)."
    )
    codes: dict[str, int] = Field(
        description="How many of them per error code; 'replay' for copies of a command "
        "already processed."
    )
    since: str = Field(description="When the first of them arrived (RFC 3339).")


class StoreFault(EventData):
    TYPE: ClassVar[str] = "store.fault"
    error: str = Field(description="The SQLite or OS error, e.g. 'database or disk is full'.")
    at_start: bool = Field(
        description="Found while the site was starting (e.g. the store could not be opened)."
    )


class StoreRecovered(EventData):
    TYPE: ClassVar[str] = "store.recovered"
    degraded_s: float = Field(description="How long the store was degraded, in seconds.")
    persisted: int = Field(
        description="Unacknowledged events and results written from memory to the store."
    )


class SiteStarted(EventData):
    TYPE: ClassVar[str] = "site.started"
    version: str
    restored_alarm: str | None = None


class InputRestored(EventData):
    TYPE: ClassVar[str] = "input.restored"


def new_event_id() -> str:
    """A random UUID (version 4), as ``str(uuid.uuid4())`` writes it, for half its cost
    (every event's ``event_id``)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class Emit:
    """An event a machine or controller asks to record: its typed data, the device it is
    about, its lane (``alarm``: the alarm priority) and its id (known before it is stored,
    so a machine can wait for its delivery)."""

    device: str
    event: EventData
    alarm: bool = False
    event_id: str = field(default_factory=new_event_id)

    @property
    def type(self) -> str:
        return self.event.TYPE

    @property
    def data(self) -> dict[str, Any]:
        """The data object as it goes on the wire."""
        return self.event.model_dump(mode="json")


# The core's own events; each device kind registers its own (edge/devices/registry.py
# assembles the full map the outbox accepts).
CORE_EVENTS: tuple[type[EventData], ...] = (
    InputFault,
    OutboxOverflow,
    OutboxRejected,
    CommandsShed,
    SiteStarted,
    StoreReset,
    StoreFault,
    StoreRecovered,
    InputRestored,
    CommandsRefused,
    ConfigRejected,
)


# ---- the core's own commands (each device kind registers its own) ----


class OutboxDeadLettersArgs(Payload):
    after_id: int = Field(0, ge=0, description="List dead letters with a higher id (paging).")
    limit: int = Field(20, ge=1, le=100, description="At most this many in one result.")


class OutboxResendArgs(Payload):
    ids: list[int] | None = Field(
        None, min_length=1, max_length=1000, description="The dead letters to send again."
    )
    all: bool = Field(False, description="true: every dead letter (then no ids).")

    @model_validator(mode="after")
    def _one_of(self) -> OutboxResendArgs:
        if (self.ids is not None) == self.all:
            raise ValueError("give either ids or all: true")
        return self


class DeadLetterInfo(Payload):
    """One dead letter in the outbox.dead_letters result."""

    id: int = Field(description="Its dead-letter id (its outbox row id).")
    type: str = Field(description="Event type, 'result' or 'unknown'.")
    seq: int | None
    event_id: str | None
    priority: str = Field(description="'alarm', 'result' or 'normal'.")
    topic: str
    bytes: int = Field(description="Payload size (the payload itself is not listed).")
    reason: str
    at: str = Field(description="When it was moved to the dead letters.")


# The core's own commands: name -> args model (edge/devices/registry.py adds the kinds').
CORE_COMMANDS: dict[str, type[BaseModel]] = {
    "outbox.dead_letters": OutboxDeadLettersArgs,
    "outbox.resend": OutboxResendArgs,
}


def make_result(
    command_id: str | None,
    now: datetime,
    *,
    error: tuple[str, str] | None = None,
    data: dict[str, Any] | None = None,
) -> Result:
    return Result(
        command_id=command_id,
        ok=error is None,
        error=None if error is None else CommandErrorBody(code=error[0], message=error[1]),
        data=data,
        ts=rfc3339(now),
    )
