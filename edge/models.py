"""The MQTT payload contract, defined once. JSON Schemas in docs/schemas/ are generated
from these models (``python -m edge.schemas``) and a test fails when they drift."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from edge.core.clock import rfc3339
from edge.devices.lockers import pickup


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Event(_Payload):
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


class CommandErrorBody(_Payload):
    code: str
    message: str


class Result(_Payload):
    """One per command on ``{root}/{site}/results``."""

    command_id: str | None = Field(description="null only when the command had no readable id.")
    ok: bool
    error: CommandErrorBody | None
    data: dict[str, Any] | None = None
    ts: str


class Command(_Payload):
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


class ModemStatus(_Payload):
    ok: bool = Field(description="The modem answers AT commands.")
    registered: bool
    signal_dbm: int | None
    last_error: str | None


class Fault(_Payload):
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


class Status(_Payload):
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
        None, description="The broker this status went to (broker.url); null offline."
    )
    faults: list[Fault] | None = Field(
        None,
        description="Every active fault, oldest first; [] when none; null offline. A "
        "change re-publishes the online status.",
    )


# ---- event data models (the "data" object of each event type) ----


class EventData(_Payload):
    """The ``data`` object of one event type. ``TYPE`` is the event type, also the last
    level of its topic; the outbox refuses a model whose type is not registered."""

    TYPE: ClassVar[str]


class AlarmRaised(EventData):
    TYPE: ClassVar[str] = "alarm.raised"
    alarm_id: str
    button: str
    mode: Literal["silent", "audible"]
    test: bool
    cameras: list[str]


class AlarmAcknowledged(EventData):
    TYPE: ClassVar[str] = "alarm.acknowledged"
    alarm_id: str
    by: str


class AlarmCleared(EventData):
    TYPE: ClassVar[str] = "alarm.cleared"
    alarm_id: str
    by: str = Field(description="'reset_key' or the command's key id.")


class InputFault(EventData):
    TYPE: ClassVar[str] = "input.fault"
    reason: str


class OutboxOverflow(EventData):
    TYPE: ClassVar[str] = "outbox.overflow"
    dropped: int = Field(description="Messages dropped to stay within outbox.max_events.")
    first_seq: int | None
    last_seq: int | None


class CommandsShed(EventData):
    TYPE: ClassVar[str] = "commands.shed"
    count: int = Field(
        ge=1,
        description="Commands dropped unanswered since the previous commands.shed event.",
    )
    max_queue: int = Field(description="The bound that was full (commands.max_queue).")


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


class DoorOpened(EventData):
    TYPE: ClassVar[str] = "door.opened"
    locker: int
    reason: Literal["deposit", "pickup", "service"] | None
    via: str | None = Field(description="'code' (pickup reader) or the command's key id.")


class DoorClosed(EventData):
    TYPE: ClassVar[str] = "door.closed"
    locker: int
    open_s: float | None = Field(description="How long the door was open.")
    reason: Literal["deposit", "pickup", "service", "forced"] | None


class DoorForced(EventData):
    TYPE: ClassVar[str] = "door.forced"
    locker: int
    parcel_id: str | None


class DoorLeftOpen(EventData):
    TYPE: ClassVar[str] = "door.left_open"
    locker: int
    open_s: float


class LockJammed(EventData):
    TYPE: ClassVar[str] = "lock.jammed"
    locker: int
    reason: str | None = Field(description="Why it was being opened.")


class LockFault(EventData):
    TYPE: ClassVar[str] = "lock.fault"
    locker: int
    reason: str = Field(description="Why the coil could not be driven (driver error).")


class ParcelDeposited(EventData):
    TYPE: ClassVar[str] = "parcel.deposited"
    locker: int
    parcel_id: str | None = Field(description="null when deposited before locker.assign.")
    deposited_at: str


class ParcelPickedUp(EventData):
    TYPE: ClassVar[str] = "parcel.picked_up"
    locker: int
    parcel_id: str | None
    deposited_at: str | None
    picked_up_at: str
    stored_s: float
    fee_krw: int = Field(description="0 within the free period, then per started day.")
    via: str | None = Field(description="'code' (offline pickup) or the command's key id.")


class ParcelOverdue(EventData):
    TYPE: ClassVar[str] = "parcel.overdue"
    locker: int
    parcel_id: str | None
    deposited_at: str
    free_until: str
    fee_per_day_krw: int


class PickupRejected(EventData):
    TYPE: ClassVar[str] = "pickup.rejected"
    reason: str = Field(
        description="unknown_code, locked_out, reader_busy (codes typed faster than they "
        "are checked), ambiguous_code (it matches more than one locker), check_failed, or "
        "why the matching locker could not open."
    )
    locker: int | None


class PickupLockedOut(EventData):
    TYPE: ClassVar[str] = "pickup.locked_out"
    until: str
    failures: int


class BoardFault(EventData):
    TYPE: ClassVar[str] = "board.fault"
    bus: str
    board: int
    reason: str


class BoardRecovered(EventData):
    TYPE: ClassVar[str] = "board.recovered"
    bus: str
    board: int


class InputRestored(EventData):
    TYPE: ClassVar[str] = "input.restored"


class AlarmEscalated(EventData):
    TYPE: ClassVar[str] = "alarm.escalated"
    alarm_id: str
    channel: Literal["sms", "call"]
    number: str
    attempt: int = Field(ge=1)
    outcome: str = Field(
        description="attempt (issued), sent / failed / cancelled (sms), or the call "
        "outcome: cancelled, answered, busy, no_answer, no_carrier, no_dialtone, error, timeout."
    )
    detail: str


class WiringFault(EventData):
    TYPE: ClassVar[str] = "wiring.fault"
    button: str
    reason: Literal["supervision", "chatter", "stuck_active"] = Field(
        description="supervision: the supervision input reports the loop cut or the housing "
        "open; chatter: too many changes; stuck_active: the button still reads active after "
        "its alarm was cleared, so it cannot raise a new alarm until it is released."
    )
    loop_open: bool = Field(description="The button loop itself read open (cut or pressed).")


class WiringRestored(EventData):
    TYPE: ClassVar[str] = "wiring.restored"
    button: str
    reason: str | None


class ModemFault(EventData):
    TYPE: ClassVar[str] = "modem.fault"
    reason: str


class ModemRecovered(EventData):
    TYPE: ClassVar[str] = "modem.recovered"


class SiteTestMode(EventData):
    TYPE: ClassVar[str] = "site.test_mode"
    on: bool
    until: str | None
    by: str = Field(description="Key id of the command, 'reset_key', 'timeout' or 'restart'.")


@dataclass(frozen=True)
class Emit:
    """An event a machine or controller asks to record: its typed data, the device it is
    about, its lane (``alarm``: the alarm priority) and its id (known before it is stored,
    so a machine can wait for its delivery)."""

    device: str
    event: EventData
    alarm: bool = False
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def type(self) -> str:
        return self.event.TYPE

    @property
    def data(self) -> dict[str, Any]:
        """The data object as it goes on the wire."""
        return self.event.model_dump(mode="json")


EVENT_DATA: dict[str, type[EventData]] = {
    model.TYPE: model
    for model in (
        AlarmRaised,
        AlarmAcknowledged,
        AlarmCleared,
        InputFault,
        OutboxOverflow,
        CommandsShed,
        SiteStarted,
        StoreReset,
        StoreFault,
        StoreRecovered,
        InputRestored,
        DoorOpened,
        DoorClosed,
        DoorForced,
        DoorLeftOpen,
        LockJammed,
        LockFault,
        ParcelDeposited,
        ParcelPickedUp,
        ParcelOverdue,
        PickupRejected,
        PickupLockedOut,
        BoardFault,
        BoardRecovered,
        AlarmEscalated,
        WiringFault,
        WiringRestored,
        ModemFault,
        ModemRecovered,
        SiteTestMode,
        CommandsRefused,
    )
}


# ---- command argument models ----


class AlarmAckArgs(_Payload):
    alarm_id: str
    by: str = Field(min_length=1, max_length=128)


class AlarmClearArgs(_Payload):
    alarm_id: str | None = Field(None, description="If given, must match the active alarm.")


class SiteTestModeArgs(_Payload):
    on: bool
    minutes: int = Field(30, ge=1, le=240, description="Ends by itself after this long.")


class LockerOpenArgs(_Payload):
    locker: int = Field(ge=1)
    reason: Literal["deposit", "pickup", "service"]


class PickupCodeHash(_Payload):
    """A pickup code hashed by the centre: scrypt(code, salt, n, r, p), 32 bytes."""

    alg: Literal["scrypt"]
    n: int = Field(ge=pickup.N_MIN, le=pickup.N_MAX, description="scrypt cost N, a power of two.")
    r: int = Field(ge=1, le=pickup.R_MAX, description="scrypt block size r.")
    p: int = Field(ge=1, le=pickup.P_MAX, description="scrypt parallelism p.")
    salt: str = Field(
        min_length=24,
        max_length=88,
        pattern=r"^[A-Za-z0-9+/]+={0,2}$",
        description="Standard base64 (with padding) of 16 to 64 random bytes, new per code.",
    )
    hash: str = Field(
        pattern=r"^[A-Za-z0-9+/]{43}=$", description="Standard base64 of the 32-byte output."
    )

    @model_validator(mode="after")
    def _check(self) -> PickupCodeHash:
        # Bounds on the cost (128*n*r <= 32 MiB, 2^13 <= n*r*p <= 2^18), the salt length.
        pickup.CodeHash.from_json(self.model_dump())
        return self


class LockerAssignArgs(_Payload):
    locker: int = Field(ge=1)
    parcel_id: str = Field(min_length=1, max_length=64)
    pickup_code: str | None = Field(
        None,
        min_length=pickup.CODE_MIN_LEN,
        max_length=pickup.CODE_MAX_LEN,
        pattern=r"^[A-Za-z0-9]+$",
        repr=False,
        description="The code in clear (6-32 letters and digits): the site hashes it and "
        "keeps only the hash. Exactly one of pickup_code and pickup_code_hash.",
    )
    pickup_code_hash: PickupCodeHash | None = Field(
        None,
        description="The code already hashed by the centre, so the code never crosses the "
        "broker. Exactly one of pickup_code and pickup_code_hash.",
    )
    deposited_at: AwareDatetime | None = Field(
        None, description="Set when the parcel is already in (storage time counts from it)."
    )

    @model_validator(mode="after")
    def _one_code(self) -> LockerAssignArgs:
        if (self.pickup_code is None) == (self.pickup_code_hash is None):
            raise ValueError("give exactly one of pickup_code and pickup_code_hash")
        return self


class LockerReleaseArgs(_Payload):
    locker: int = Field(ge=1)


class LockerServiceArgs(_Payload):
    locker: int = Field(ge=1)
    in_service: bool


class LockerStatusArgs(_Payload):
    pass


COMMAND_ARGS: dict[str, type[BaseModel]] = {
    "alarm.ack": AlarmAckArgs,
    "alarm.clear": AlarmClearArgs,
    "site.test_mode": SiteTestModeArgs,
    "locker.open": LockerOpenArgs,
    "locker.assign": LockerAssignArgs,
    "locker.release": LockerReleaseArgs,
    "locker.set_service": LockerServiceArgs,
    "locker.status": LockerStatusArgs,
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
