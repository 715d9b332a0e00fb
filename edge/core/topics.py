"""Every MQTT topic name, in one place.

Every topic level is made of ``[A-Za-z0-9_-]`` only: no ``.``, space, ``+``, ``#`` or empty
level, so every broker takes them (NATS closes the connection on a ``.`` or space in an
MQTT topic; AWS IoT and others restrict topics too). Event types and command names keep
their dotted form in payloads; in topics each dot becomes a level:
``events/alarm/raised``, ``commands/alarm/ack``."""

from __future__ import annotations

import re
from dataclasses import dataclass

# One topic level the site publishes or subscribes under (site.id, each level of
# topic_root, a device name, each part of an event type or command name).
LEVEL_RE = r"[A-Za-z0-9_-]+"
# topic_root: one or more levels.
ROOT_RE = rf"^{LEVEL_RE}(/{LEVEL_RE})*$"
_ROOT = re.compile(ROOT_RE)


def name_levels(name: str) -> str:
    """A dotted event type or command name as topic levels: ``alarm.raised`` ->
    ``alarm/raised``."""
    return name.replace(".", "/")


@dataclass(frozen=True)
class Topics:
    root: str
    site: str

    def __post_init__(self) -> None:
        for what, value in (("topic_root", self.root), ("site id", self.site)):
            if not _ROOT.match(value) or (what == "site id" and "/" in value):
                raise ValueError(f"{what} {value!r} is not a valid MQTT topic level")

    @property
    def base(self) -> str:
        return f"{self.root}/{self.site}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def event(self, type_: str) -> str:
        return f"{self.base}/events/{name_levels(type_)}"

    def state(self, device: str) -> str:
        return f"{self.base}/state/{device}"

    @property
    def commands_filter(self) -> str:
        return f"{self.base}/commands/#"

    def command(self, name: str) -> str:
        return f"{self.base}/commands/{name_levels(name)}"

    def command_levels(self, topic: str) -> str | None:
        """The levels after ``commands/`` of a command topic (``alarm/ack``), "" for the
        bare ``commands`` topic that ``commands/#`` also matches; None for any other
        topic."""
        prefix = f"{self.base}/commands"
        if topic == prefix:
            return ""
        return topic[len(prefix) + 1 :] if topic.startswith(prefix + "/") else None

    @property
    def results(self) -> str:
        return f"{self.base}/results"

    # Home Assistant MQTT discovery (edge/homeassistant.py): the site id is the node id.
    def ha_config(self, prefix: str, component: str, object_id: str) -> str:
        """``<prefix>/<component>/<site>/<object_id>/config``"""
        return f"{prefix}/{component}/{self.site}/{object_id}/config"

    def ha_command(self, prefix: str, component: str, object_id: str) -> str:
        """A command topic Home Assistant publishes to and the site never reads."""
        return f"{prefix}/{component}/{self.site}/{object_id}/set"

    @property
    def heartbeat(self) -> str:
        """The dead-link detector's probe (edge.core.uplink.LinkMonitor); nobody needs it."""
        return f"{self.base}/heartbeat"
