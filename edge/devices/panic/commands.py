"""The panic kind's command arguments."""

from __future__ import annotations

from pydantic import Field

from edge.models import Payload


class AlarmAckArgs(Payload):
    alarm_id: str
    by: str = Field(min_length=1, max_length=128)


class AlarmClearArgs(Payload):
    alarm_id: str | None = Field(None, description="If given, must match the active alarm.")


class SiteTestModeArgs(Payload):
    on: bool
    minutes: int = Field(30, ge=1, le=240, description="Ends by itself after this long.")
