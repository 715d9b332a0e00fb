"""The shelter alarm state machine: plain code, no threads, no I/O.

idle --press--> active --alarm.ack--> acknowledged --reset key / alarm.clear--> idle
                active --reset key / alarm.clear--> idle

Fed inputs with the current wall time, it returns the events to record; the outputs
(sent lamp, acknowledged lamp, buzzer) are a pure function of its state.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from edge.core.errors import CommandError
from edge.devices.panic.events import AlarmAcknowledged, AlarmCleared, AlarmRaised
from edge.models import Emit

State = Literal["idle", "active", "acknowledged"]


@dataclass
class AlarmState:
    state: State = "idle"
    alarm_id: str | None = None
    button: str | None = None
    mode: Literal["silent", "audible"] = "silent"
    test: bool = False
    raised_event_id: str | None = None
    sent: bool = False
    acked_by: str | None = None
    await_release: list[str] = field(default_factory=list)


class AlarmMachine:
    def __init__(self, cameras: list[str], state: AlarmState | None = None) -> None:
        self.cameras = list(cameras)
        self.s = state or AlarmState()

    # ---- persistence ----
    def dump(self) -> str:
        return json.dumps(asdict(self.s), sort_keys=True)

    @classmethod
    def load(cls, cameras: list[str], text: str | None) -> AlarmMachine:
        if not text:
            return cls(cameras)
        return cls(cameras, AlarmState(**json.loads(text)))

    # ---- outputs (derived) ----
    def outputs(self) -> dict[str, bool]:
        active = self.s.state != "idle"
        return {
            "sent_led": active and self.s.sent,
            "ack_led": self.s.state == "acknowledged",
            "buzzer": active and self.s.mode == "audible",
        }

    def public_state(self) -> dict[str, Any]:
        return {
            "state": self.s.state,
            "alarm_id": self.s.alarm_id,
            "button": self.s.button,
            "mode": self.s.mode if self.s.state != "idle" else None,
            "test": self.s.test,
            "sent": self.s.sent,
            "acknowledged_by": self.s.acked_by,
            # Buttons still active after their alarm was cleared: they cannot raise a new
            # alarm until released (a cut loop hidden by a key turn must not look healthy).
            "stuck_buttons": sorted(self.s.await_release) or None,
        }

    # ---- inputs ----
    def press(self, button: str, mode: Literal["silent", "audible"], test: bool) -> list[Emit]:
        """A debounced (and held, if configured) press, or a cut NC loop."""
        if button in self.s.await_release:
            return []
        if self.s.state != "idle":
            return []  # one alarm at a time: a second press or a held button adds nothing
        alarm_id = str(uuid.uuid4())
        emit = Emit(
            button,
            AlarmRaised(
                alarm_id=alarm_id, button=button, mode=mode, test=test, cameras=self.cameras
            ),
            alarm=True,
        )
        self.s = AlarmState(
            state="active",
            alarm_id=alarm_id,
            button=button,
            mode=mode,
            test=test,
            raised_event_id=emit.event_id,
            await_release=self.s.await_release,
        )
        return [emit]

    def release(self, button: str) -> list[Emit]:
        if button in self.s.await_release:
            self.s.await_release = [b for b in self.s.await_release if b != button]
        return []

    def delivered(self, event_id: str) -> bool:
        """The broker acknowledged an event; True if it was this alarm's (sent lamp on)."""
        if self.s.state != "idle" and event_id == self.s.raised_event_id and not self.s.sent:
            self.s.sent = True
            return True
        return False

    def ack(self, alarm_id: str, by: str) -> list[Emit]:
        if self.s.state == "idle" or self.s.alarm_id is None:
            raise CommandError("wrong_state", "no alarm is active at this site")
        if alarm_id != self.s.alarm_id:
            raise CommandError(
                "unknown_alarm", f"alarm {alarm_id} is not the active alarm ({self.s.alarm_id})"
            )
        if self.s.state == "acknowledged":
            return []
        self.s.state = "acknowledged"
        self.s.acked_by = by
        return [
            Emit(
                self.s.button or "alarm",
                AlarmAcknowledged(alarm_id=alarm_id, by=by),
                alarm=True,
            )
        ]

    def clear(self, by: str, held: list[str], alarm_id: str | None = None) -> list[Emit]:
        """Reset key or command. ``held``: buttons still reading active, which must be
        released before they can raise a new alarm (no alarm loop on a latched button)."""
        if self.s.state == "idle" or self.s.alarm_id is None:
            raise CommandError("wrong_state", "no alarm is active at this site")
        if alarm_id is not None and alarm_id != self.s.alarm_id:
            raise CommandError(
                "unknown_alarm", f"alarm {alarm_id} is not the active alarm ({self.s.alarm_id})"
            )
        emit = Emit(
            self.s.button or "alarm",
            AlarmCleared(alarm_id=self.s.alarm_id, by=by),
            alarm=True,  # the whole alarm lifecycle shares one priority, so it stays in order
        )
        self.s = AlarmState(await_release=sorted(set(held)))
        return [emit]
