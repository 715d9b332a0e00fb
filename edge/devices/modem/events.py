"""The modem kind's events."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from edge.models import EventData


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


class ModemFault(EventData):
    TYPE: ClassVar[str] = "modem.fault"
    reason: str


class ModemRecovered(EventData):
    TYPE: ClassVar[str] = "modem.recovered"
