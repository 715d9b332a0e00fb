"""Free-form event types for testing the outbox mechanics with any data: registered with
the outbox like a device's events (it refuses any type it does not know)."""

from __future__ import annotations

from pydantic import ConfigDict

from edge.devices.registry import EVENT_DATA
from edge.models import EventData


class Normal(EventData):
    """A routine event with any fields; "alarm" is the priority flag, not the type."""

    TYPE = "test.normal"
    model_config = ConfigDict(extra="allow")


class Alarm(Normal):
    TYPE = "test.alarm"


class Note(Normal):
    TYPE = "note"


# The site's registry plus the test types: pass as Outbox(..., events=TEST_EVENTS).
TEST_EVENTS: dict[str, type[EventData]] = {
    **EVENT_DATA,
    **{m.TYPE: m for m in (Normal, Alarm, Note)},
}
NORMAL, ALARM = Normal.TYPE, Alarm.TYPE
