"""The MQTT payload contract, defined once. JSON Schemas in docs/schemas/ are generated
from these models (``python -m edge.schemas``) and a test fails when they drift."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from edge.clock import rfc3339


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Event(_Payload):
    """Envelope of every event on ``{root}/{site}/events/{type}``."""

    event_id: str = Field(description="UUID, stable across retries: consumers dedup on it.")
    seq: int = Field(ge=1, description="Per-site sequence, +1 per event, never reused or skipped.")
    site: str
    device: str = Field(description="Device the event is about ('site' for the site itself).")
    type: str = Field(description="Event type, also the last topic level, e.g. alarm.raised.")
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
    """A signed command on ``{root}/{site}/commands/{name}``."""

    command_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
    args: dict[str, Any]
    expires_at: AwareDatetime = Field(description="RFC 3339 with a zone; refused from then on.")
    key_id: str = Field(min_length=1, max_length=64)
    sig: str = Field(pattern=r"^[0-9a-f]{128}$", description="Lowercase hex Ed25519 signature.")


class Status(_Payload):
    """Retained on ``{root}/{site}/status``; the last will sets state offline."""

    state: Literal["online", "offline"]
    version: str
    ts: str
    site: str
    clock_synced: bool | None = Field(
        None, description="False when the wall clock is not known to be synchronised."
    )


# ---- event data models (the "data" object of each event type) ----


class AlarmRaised(_Payload):
    alarm_id: str
    button: str
    mode: Literal["silent", "audible"]
    test: bool
    cameras: list[str]


class AlarmAcknowledged(_Payload):
    alarm_id: str
    by: str


class AlarmCleared(_Payload):
    alarm_id: str
    by: str = Field(description="'reset_key' or the command's key id.")


class InputFault(_Payload):
    reason: str


class OutboxOverflow(_Payload):
    dropped: int = Field(description="Messages dropped to stay within outbox.max_events.")
    first_seq: int | None
    last_seq: int | None


class StoreReset(_Payload):
    quarantined: str = Field(description="Where the damaged store file was moved.")


class SiteStarted(_Payload):
    version: str
    restored_alarm: str | None = None


EVENT_DATA: dict[str, type[BaseModel]] = {
    "alarm.raised": AlarmRaised,
    "alarm.acknowledged": AlarmAcknowledged,
    "alarm.cleared": AlarmCleared,
    "input.fault": InputFault,
    "outbox.overflow": OutboxOverflow,
    "site.started": SiteStarted,
    "store.reset": StoreReset,
}


# ---- command argument models ----


class AlarmAckArgs(_Payload):
    alarm_id: str
    by: str = Field(min_length=1, max_length=128)


class AlarmClearArgs(_Payload):
    alarm_id: str | None = Field(None, description="If given, must match the active alarm.")


COMMAND_ARGS: dict[str, type[BaseModel]] = {
    "alarm.ack": AlarmAckArgs,
    "alarm.clear": AlarmClearArgs,
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
