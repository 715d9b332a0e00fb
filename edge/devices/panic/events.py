"""The panic kind's events (the data of each; the envelope is edge.models.Event)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from edge.models import EventData


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


class SiteTestMode(EventData):
    TYPE: ClassVar[str] = "site.test_mode"
    on: bool
    until: str | None
    by: str = Field(description="Key id of the command, 'reset_key', 'timeout' or 'restart'.")
