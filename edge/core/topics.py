"""Every MQTT topic name, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    root: str
    site: str

    @property
    def base(self) -> str:
        return f"{self.root}/{self.site}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def event(self, type_: str) -> str:
        return f"{self.base}/events/{type_}"

    def state(self, device: str) -> str:
        return f"{self.base}/state/{device}"

    @property
    def commands_filter(self) -> str:
        return f"{self.base}/commands/+"

    def command(self, name: str) -> str:
        return f"{self.base}/commands/{name}"

    def command_name(self, topic: str) -> str | None:
        prefix = f"{self.base}/commands/"
        return topic[len(prefix) :] if topic.startswith(prefix) else None

    @property
    def results(self) -> str:
        return f"{self.base}/results"
