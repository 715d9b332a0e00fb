"""Retained per-device state on ``{root}/{site}/state/{device}``: published when it
changes and all of it again after every reconnect (a broker restart loses nothing).

A change is published by ``flush``, which the site calls after every core batch, after the
outbox has sent what the batch recorded: a press's ``alarm.raised`` goes out before the
state messages of the same press (they do not wait for the disk, but the alarm does and
must not wait for them as well). Within one batch the last state of a device wins."""

from __future__ import annotations

import json
from typing import Any

from edge.core.clock import Clock, rfc3339
from edge.core.outbox import Publisher
from edge.core.topics import Topics


class StateBoard:
    def __init__(self, topics: Topics, clock: Clock, publisher: Publisher) -> None:
        self.topics = topics
        self.clock = clock
        self.publisher = publisher
        self.online = False
        self._states: dict[str, dict[str, Any]] = {}
        self._ts: dict[str, str] = {}
        self._changed: dict[str, None] = {}  # devices to publish at the next flush, in order

    def set(self, device: str, state: dict[str, Any]) -> None:
        if self._states.get(device) == state:
            return
        self._states[device] = dict(state)
        self._ts[device] = rfc3339(self.clock.now())
        if self.online:
            self._changed[device] = None

    def flush(self) -> None:
        """Publish the states changed since the last flush (core thread, after a batch)."""
        if not self._changed:
            return
        changed, self._changed = self._changed, {}
        if self.online:
            for device in changed:
                self._publish(device)

    def get(self, device: str) -> dict[str, Any] | None:
        return self._states.get(device)

    def all(self) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self._states.items()}

    def _publish(self, device: str) -> None:
        body = {**self._states[device], "device": device, "ts": self._ts[device]}
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.publisher.publish(self.topics.state(device), payload, qos=1, retain=True)

    def on_connected(self) -> None:
        self.online = True
        self._changed.clear()
        for device in self._states:
            self._publish(device)

    def on_disconnected(self) -> None:
        self.online = False
        self._changed.clear()
