"""Home Assistant MQTT discovery (opt-in: ``homeassistant.enabled``; docs/homeassistant.md).

The site announces its devices to Home Assistant as entities of one HA device per site:
every entity reads a topic the site publishes anyway (``state/{device}``, ``status``)
through a ``value_template``; nothing new is sent for Home Assistant but the discovery
configs themselves. They are published retained on every connection and again, after a
random delay, whenever Home Assistant's birth message (``online`` on
``homeassistant.birth_topic``) says it (re)started.

Home Assistant cannot sign commands, so it can never open a locker: a ``lock`` entity's
``command_topic`` (required by HA's lock schema) is a topic the site never subscribes to.

Core thread only (``on_connected``, ``handle``), like the state board.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import structlog

from edge.config import SiteConfig
from edge.core.loop import CoreLoop, Timer
from edge.core.outbox import Publisher
from edge.core.topics import Topics
from edge.devices.kind import section
from edge.devices.lockers.config import LockersDevices
from edge.devices.modem.config import ModemDevices
from edge.devices.panic.config import PanicDevices

log = structlog.get_logger(__name__)

ORIGIN_NAME = "ansim-edge"

# value_templates (Jinja, rendered by Home Assistant) over the site's retained payloads.
# "None" resets a lock or binary_sensor to unknown (HA's payload_reset default).
LOCK_TEMPLATE = (
    "{% if (value_json.fault or '').startswith('lock jammed') %}JAMMED"
    "{% elif value_json.door == 'open' %}UNLOCKED"
    "{% elif value_json.door == 'closed' %}LOCKED"
    "{% else %}None{% endif %}"
)
DOOR_TEMPLATE = (
    "{% if value_json.door == 'open' %}ON"
    "{% elif value_json.door == 'closed' %}OFF"
    "{% else %}None{% endif %}"
)
BUTTON_TEMPLATE = (
    "{% if value_json.fault %}None{% elif value_json.active %}ON{% else %}OFF{% endif %}"
)
WIRING_TEMPLATE = "{{ 'ON' if value_json.wiring or value_json.fault else 'OFF' }}"
ALARM_TEMPLATE = "{{ 'OFF' if value_json.state == 'idle' else 'ON' }}"
STORE_TEMPLATE = "{{ 'ON' if value_json.store == 'degraded' else 'OFF' }}"
OUTBOX_TEMPLATE = "{{ value_json.outbox_depth }}"
SIGNAL_TEMPLATE = "{{ value_json.signal_dbm }}"  # null renders None: unknown
AVAILABILITY_TEMPLATE = "{{ value_json.state }}"


@dataclass(frozen=True)
class Entity:
    component: str  # "lock", "binary_sensor", "sensor"
    object_id: str  # [a-z0-9_-]: unique per site across components (prefixes never overlap)
    config: dict[str, Any]


def entities(cfg: SiteConfig, topics: Topics, version: str) -> list[Entity]:
    """Every entity this site's config makes, with its discovery payload."""
    ha = cfg.homeassistant
    site = cfg.site.id
    device: dict[str, Any] = {
        "identifiers": [site],
        "name": cfg.site.name or site,
        "manufacturer": "ansim-edge",
        "model": "ansim-edge site",
        "sw_version": version,
    }
    common: dict[str, Any] = {
        "device": device,
        "origin": {"name": ORIGIN_NAME, "sw_version": version},
        "availability": [
            {
                "topic": topics.status,
                "value_template": AVAILABILITY_TEMPLATE,
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "qos": 1,
    }
    out: list[Entity] = []

    def add(component: str, object_id: str, name: str, **conf: Any) -> None:
        body = {"name": name, "unique_id": f"ansim-edge-{site}-{object_id}", **common, **conf}
        out.append(Entity(component, object_id, body))

    buttons = section(cfg.devices, PanicDevices).panic_buttons
    lockers = section(cfg.devices, LockersDevices).lockers
    modem = section(cfg.devices, ModemDevices).modem
    if buttons:
        alarm = topics.state("alarm")
        add(
            "binary_sensor",
            "alarm",
            "Alarm",
            state_topic=alarm,
            value_template=ALARM_TEMPLATE,
            device_class="safety",
            json_attributes_topic=alarm,
        )
    for b in buttons:
        state = topics.state(b.name)
        add(
            "binary_sensor",
            f"button-{b.name}",
            f"Panic button {b.name}",
            state_topic=state,
            value_template=BUTTON_TEMPLATE,
            device_class="safety",
            json_attributes_topic=state,
        )
        add(
            "binary_sensor",
            f"wiring-{b.name}",
            f"Panic button {b.name} wiring",
            state_topic=state,
            value_template=WIRING_TEMPLATE,
            device_class="problem",
            json_attributes_topic=state,
        )
    if lockers is not None:
        for n in lockers.locker_ids():
            state = topics.state(f"locker-{n}")
            add(
                "lock",
                f"locker-{n}",
                f"Locker {n}",
                state_topic=state,
                value_template=LOCK_TEMPLATE,
                # Required by HA's lock schema; the site never reads it (HA cannot sign).
                command_topic=topics.ha_command(ha.prefix, "lock", f"locker-{n}"),
                optimistic=False,
                json_attributes_topic=state,
            )
            add(
                "binary_sensor",
                f"door-{n}",
                f"Locker {n} door",
                state_topic=state,
                value_template=DOOR_TEMPLATE,
                device_class="door",
            )
    add(
        "binary_sensor",
        "store",
        "Store",
        state_topic=topics.status,
        value_template=STORE_TEMPLATE,
        device_class="problem",
        entity_category="diagnostic",
    )
    add(
        "sensor",
        "outbox",
        "Outbox depth",
        state_topic=topics.status,
        value_template=OUTBOX_TEMPLATE,
        state_class="measurement",
        unit_of_measurement="messages",
        entity_category="diagnostic",
    )
    if modem is not None:
        add(
            "sensor",
            "modem-signal",
            "Modem signal",
            state_topic=topics.state("modem"),
            value_template=SIGNAL_TEMPLATE,
            device_class="signal_strength",
            state_class="measurement",
            unit_of_measurement="dBm",
            entity_category="diagnostic",
        )
    return out


class Discovery:
    """Publishes the discovery configs (retained, QoS 1) and answers HA's birth message."""

    def __init__(
        self,
        cfg: SiteConfig,
        topics: Topics,
        version: str,
        publisher: Publisher,
        loop: CoreLoop,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg.homeassistant
        self.topics = topics
        self.publisher = publisher
        self.loop = loop
        self.rng = rng or random.Random()
        self.entities = entities(cfg, topics, version)
        self.online = False
        self._timer: Timer | None = None
        self.published = 0  # configs handed to the uplink since start

    @property
    def subscriptions(self) -> list[str]:
        return [self.cfg.birth_topic]

    def config_topics(self) -> list[str]:
        return [
            self.topics.ha_config(self.cfg.prefix, e.component, e.object_id) for e in self.entities
        ]

    def publish_all(self) -> None:
        if not self.online:
            return
        for e, topic in zip(self.entities, self.config_topics(), strict=True):
            payload = json.dumps(e.config, ensure_ascii=False, separators=(",", ":"))
            self.publisher.publish(topic, payload.encode("utf-8"), qos=1, retain=True)
            self.published += 1

    def on_connected(self) -> None:
        self.online = True
        self.publish_all()

    def on_disconnected(self) -> None:
        self.online = False

    def handle(self, topic: str, payload: bytes) -> bool:
        """An inbound message: True when it was Home Assistant's birth (or will) message."""
        if topic != self.cfg.birth_topic:
            return False
        if payload.strip() == b"online" and self._timer is None:
            delay = self.rng.uniform(0.0, self.cfg.republish_delay_max_s)
            self._timer = self.loop.call_later(delay, self._republish)
        return True

    def _republish(self) -> None:
        self._timer = None
        self.publish_all()
        log.info("homeassistant_discovery_published", entities=len(self.entities))
