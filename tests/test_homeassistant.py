"""Home Assistant MQTT discovery: payloads checked against Home Assistant's documented keys,
the state mapping of the value_templates (rendered with Jinja, as Home Assistant does), the
birth-message re-publish, and end to end on a real mosquitto."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge import __version__
from edge.config import HomeAssistantConfig, SiteConfig, load_config, parse_config
from edge.core.clock import FakeClock
from edge.core.loop import CoreLoop
from edge.core.topics import Topics
from edge.homeassistant import Discovery, entities
from edge.machines.locker import LockerMachine
from tests.support.mqtt import Mosquitto
from tests.support.site import Keys, ThreadedSite, make_keys, site_dict
from tests.support.wait import wait_until

# ---------------------------------------------------------------------------------------
# Allowed keys and their JSON types, per component, from Home Assistant's documentation
# (home-assistant.io, source/_integrations/): lock.mqtt.markdown, binary_sensor.mqtt.markdown,
# sensor.mqtt.markdown ("Configuration Variables"), and mqtt.markdown ("Discovery payload":
# the `origin` keys name / sw_version / support_url). `platform` is left out: it is only for
# device-based discovery, and the site sends one discovery message per component.
STR, BOOL, INT, LIST, DICT, NULLSTR = (str,), (bool,), (int,), (list,), (dict,), (str, type(None))
AVAILABILITY_ITEM = {
    "topic": STR,
    "payload_available": STR,
    "payload_not_available": STR,
    "value_template": STR,
}
DEVICE = {
    "configuration_url": STR,
    "connections": LIST,
    "hw_version": STR,
    "identifiers": (list, str),
    "manufacturer": STR,
    "model": STR,
    "model_id": STR,
    "name": STR,
    "serial_number": STR,
    "suggested_area": STR,
    "sw_version": STR,
    "via_device": STR,
}
ORIGIN = {"name": STR, "sw_version": STR, "support_url": STR}
COMMON = {
    "availability": LIST,
    "availability_mode": STR,
    "availability_template": STR,
    "availability_topic": STR,
    "device": DICT,
    "enabled_by_default": BOOL,
    "encoding": STR,
    "entity_category": STR,
    "entity_picture": STR,
    "icon": STR,
    "json_attributes_template": STR,
    "json_attributes_topic": STR,
    "name": NULLSTR,
    "object_id": STR,
    "origin": DICT,
    "payload_available": STR,
    "payload_not_available": STR,
    "qos": INT,
    "unique_id": STR,
}
ALLOWED: dict[str, dict[str, tuple[type, ...]]] = {
    "lock": {
        **COMMON,
        "code_format": STR,
        "command_template": STR,
        "command_topic": STR,
        "optimistic": BOOL,
        "payload_lock": STR,
        "payload_open": STR,
        "payload_reset": STR,
        "payload_unlock": STR,
        "retain": BOOL,
        "state_jammed": STR,
        "state_locked": STR,
        "state_locking": STR,
        "state_topic": STR,
        "state_unlocked": STR,
        "state_unlocking": STR,
        "value_template": STR,
    },
    "binary_sensor": {
        **COMMON,
        "device_class": NULLSTR,
        "expire_after": INT,
        "force_update": BOOL,
        "off_delay": INT,
        "payload_off": STR,
        "payload_on": STR,
        "state_topic": STR,
        "value_template": STR,
    },
    "sensor": {
        **COMMON,
        "device_class": NULLSTR,
        "expire_after": INT,
        "force_update": BOOL,
        "last_reset_value_template": STR,
        "options": LIST,
        "suggested_display_precision": INT,
        "state_class": STR,
        "state_topic": STR,
        "unit_of_measurement": NULLSTR,
        "value_template": STR,
    },
}
REQUIRED = {"lock": {"command_topic"}, "binary_sensor": {"state_topic"}, "sensor": {"state_topic"}}
# Values the docs list for the options the site sets (binary_sensor and sensor device
# classes, sensor state classes, entity categories).
DEVICE_CLASSES = {
    "binary_sensor": {"door", "safety", "problem"},
    "sensor": {"signal_strength"},
}
STATE_CLASSES = {"measurement", "total", "total_increasing", "measurement_angle"}
ENTITY_CATEGORIES = {"config", "diagnostic"}

JINJA = ImmutableSandboxedEnvironment()


def render(template: str, payload: dict[str, Any]) -> str:
    """As Home Assistant renders an MQTT value_template (value and value_json)."""
    return JINJA.from_string(template).render(value=json.dumps(payload), value_json=payload)


def check_keys(component: str, config: dict[str, Any]) -> None:
    allowed = ALLOWED[component]
    for key, value in config.items():
        assert key in allowed, f"{component}: {key!r} is not a documented key"
        assert isinstance(value, allowed[key]), f"{component}.{key}: {type(value).__name__}"
        assert not isinstance(value, bool) or bool in allowed[key], f"{component}.{key}"
    missing = REQUIRED[component] - set(config)
    assert not missing, f"{component}: required keys missing: {missing}"
    for item in config.get("availability", []):
        assert set(item) <= set(AVAILABILITY_ITEM) and "topic" in item, item
        for k, v in item.items():
            assert isinstance(v, AVAILABILITY_ITEM[k]), (k, v)
    for k, v in config["device"].items():
        assert k in DEVICE and isinstance(v, DEVICE[k]), (k, v)
    for k, v in config["origin"].items():
        assert k in ORIGIN and isinstance(v, ORIGIN[k]), (k, v)
    assert "name" in config["origin"]  # required by the docs
    if "device_class" in config:
        assert config["device_class"] in DEVICE_CLASSES[component], config["device_class"]
    if "state_class" in config:
        assert config["state_class"] in STATE_CLASSES
    if "entity_category" in config:
        assert config["entity_category"] in ENTITY_CATEGORIES
    # Home Assistant's unique_id must be unique; the site's are site-qualified.
    assert config["unique_id"].startswith("ansim-edge-")


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def full_dict(url: str, data: Path, keys: Keys, **ha: Any) -> dict[str, Any]:
    """Panic button, GPIO lockers, a modem and Home Assistant discovery."""
    cfg = site_dict("ha-site-1", url, data, keys)
    cfg["site"]["name"] = "GS25 역삼역점"
    cfg["devices"]["lockers"] = {
        "pulse_ms": 100,
        "cooldown_ms": 0,
        "open_timeout_s": 0.3,
        "gpio": [
            {"locker": 33, "solenoid_pin": 5, "door_pin": 6, "debounce_ms": 0},
            {"locker": 34, "solenoid_pin": 13, "door_pin": 19, "debounce_ms": 0},
        ],
    }
    cfg["devices"]["modem"] = {"url": "/dev/null", "check_interval_s": 1}
    cfg["homeassistant"] = {"enabled": True, "republish_delay_max_s": 0, **ha}
    return cfg


def full_cfg(tmp_path: Path, keys: Keys) -> SiteConfig:
    return parse_config(full_dict("mqtt://127.0.0.1:1", tmp_path / "data", keys))


# ---------------------------------------------------------------------------------- unit


def test_every_payload_has_only_documented_keys(tmp_path: Path, keys: Keys) -> None:
    cfg = full_cfg(tmp_path, keys)
    ents = entities(cfg, Topics(cfg.topic_root, cfg.site.id), __version__)
    kinds = [(e.component, e.config.get("device_class")) for e in ents]
    assert kinds.count(("lock", None)) == 2
    assert kinds.count(("binary_sensor", "door")) == 2
    assert kinds.count(("binary_sensor", "safety")) == 2  # the button and the alarm
    assert ("binary_sensor", "problem") in kinds
    assert ("sensor", "signal_strength") in kinds
    ids = [e.config["unique_id"] for e in ents]
    assert len(ids) == len(set(ids))
    for e in ents:
        check_keys(e.component, e.config)
        assert e.config["device"]["identifiers"] == ["ha-site-1"]


def test_a_key_home_assistant_does_not_document_is_caught(tmp_path: Path, keys: Keys) -> None:
    cfg = full_cfg(tmp_path, keys)
    lock = next(e for e in entities(cfg, Topics("r", "ha-site-1"), "1") if e.component == "lock")
    with pytest.raises(AssertionError, match="not a documented key"):
        check_keys("lock", {**lock.config, "device_class": "lock"})
    with pytest.raises(AssertionError, match="required keys missing"):
        check_keys("lock", {k: v for k, v in lock.config.items() if k != "command_topic"})


def _lock_template(tmp_path: Path, keys: Keys, component: str, object_id: str) -> str:
    cfg = full_cfg(tmp_path, keys)
    ents = entities(cfg, Topics(cfg.topic_root, cfg.site.id), __version__)
    e = next(e for e in ents if e.component == component and e.object_id == object_id)
    return str(e.config["value_template"])


def test_lock_and_door_follow_the_locker_state(tmp_path: Path, keys: Keys) -> None:
    lock = _lock_template(tmp_path, keys, "lock", "locker-33")
    door = _lock_template(tmp_path, keys, "binary_sensor", "door-33")
    m = LockerMachine([33], forced_window_s=10, free_hours=48, fee_per_day_krw=1000)

    def both() -> tuple[str, str]:
        s = m.public_state(33)
        return render(lock, s), render(door, s)

    assert both() == ("None", "None")  # no reading yet: unknown
    m.lockers[33].door_open = False
    assert both() == ("LOCKED", "OFF")
    m.lockers[33].door_open = True
    assert both() == ("UNLOCKED", "ON")
    m.lockers[33].door_open = False
    m.lockers[33].jam = "lock jammed: the door did not open after a service pulse"
    assert both() == ("JAMMED", "OFF")
    m.lockers[33].fault = "board bus0/0: no reply"  # a board fault hides the jam: unknown
    assert both() == ("None", "None")


def test_buttons_wiring_alarm_store_outbox_and_signal_templates(tmp_path: Path, keys: Keys) -> None:
    t = {
        e.object_id: str(e.config["value_template"])
        for e in entities(full_cfg(tmp_path, keys), Topics("r", "s"), "1")
    }
    btn = {"active": False, "fault": None, "wiring": None}
    assert render(t["button-panic-1"], btn) == "OFF"
    assert render(t["button-panic-1"], {**btn, "active": True}) == "ON"
    assert render(t["button-panic-1"], {**btn, "fault": "read failed"}) == "None"
    assert render(t["wiring-panic-1"], btn) == "OFF"
    assert render(t["wiring-panic-1"], {**btn, "wiring": ["supervision"]}) == "ON"
    assert render(t["wiring-panic-1"], {**btn, "fault": "read failed"}) == "ON"
    assert render(t["alarm"], {"state": "idle"}) == "OFF"
    assert render(t["alarm"], {"state": "acknowledged"}) == "ON"
    assert render(t["store"], {"store": "degraded"}) == "ON"
    assert render(t["outbox"], {"outbox_depth": 7}) == "7"
    assert render(t["modem-signal"], {"signal_dbm": -73}) == "-73"
    assert render(t["modem-signal"], {"signal_dbm": None}) == "None"


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        self.sent.append((topic, payload, qos, retain))
        return len(self.sent)


def test_birth_message_republishes_after_a_random_delay_once(tmp_path: Path, keys: Keys) -> None:
    d = full_dict("mqtt://127.0.0.1:1", tmp_path / "data", keys, republish_delay_max_s=5)
    cfg = parse_config(d)
    clock = FakeClock()
    loop = CoreLoop(clock)
    pub = _Recorder()
    disc = Discovery(cfg, Topics("r", "ha-site-1"), "1", pub, loop, random.Random(3))
    n = len(disc.entities)
    disc.on_connected()
    assert len(pub.sent) == n and all(qos == 1 and retain for _, _, qos, retain in pub.sent)
    assert disc.handle("homeassistant/status", b"offline") is True
    assert disc.handle("homeassistant/status", b"online") is True
    assert disc.handle("homeassistant/status", b"online") is True  # coalesced
    assert disc.handle("r/ha-site-1/commands/alarm.ack", b"{}") is False
    loop.run_pending()
    assert len(pub.sent) == n  # not at once: after a random delay
    clock.advance(5.0)
    loop.run_pending()
    assert len(pub.sent) == 2 * n
    disc.on_disconnected()
    disc.handle("homeassistant/status", b"online")
    clock.advance(5.0)
    loop.run_pending()
    assert len(pub.sent) == 2 * n  # offline: nothing to publish to


def test_disabled_by_default_and_prefix_validated(tmp_path: Path, keys: Keys) -> None:
    d = full_dict("mqtt://127.0.0.1:1", tmp_path / "data", keys)
    del d["homeassistant"]
    assert parse_config(d).homeassistant.enabled is False
    d["homeassistant"] = {"enabled": True, "prefix": "home assistant/#"}
    with pytest.raises(Exception, match=r"homeassistant\.prefix"):
        parse_config(d)


# ------------------------------------------------------------------------- on mosquitto


def _configs(sub: Any) -> dict[str, Any]:
    """The latest discovery config per topic a subscriber got."""
    return {m.topic: m for m in sub.messages() if m.topic.startswith("homeassistant/")}


def _retained(sub: Any) -> dict[str, Any]:
    return {m.topic: m.json for m in sub.messages() if m.retain}


@pytest.mark.mqtt
def test_discovery_on_mosquitto(
    mosquitto: Mosquitto, subscriber_factory: Any, tmp_path: Path, keys: Keys
) -> None:
    base = "ansim/v1/ha-site-1"
    live = subscriber_factory("homeassistant/#")
    with ThreadedSite(full_dict(mosquitto.url, tmp_path / "data", keys)) as rs:
        assert rs.site.discovery is not None
        expected = set(rs.site.discovery.config_topics())
        assert len(expected) == 10  # alarm, button, wiring, 2 locks, 2 doors, store, outbox, modem
        wait_until(lambda: set(_configs(live)) == expected, message="discovery configs")
        rs.hw.set_gpio_door(33, False)
        rs.hw.set_gpio_door(34, True)
        wait_until(lambda: rs.site.call(lambda: rs.site.states.get("modem")), timeout=20)

        # Retained: a subscriber arriving now gets every config, flagged retained, QoS 1.
        late = subscriber_factory("homeassistant/#")
        wait_until(lambda: set(_configs(late)) == expected, message="retained configs")
        configs = _configs(late)
        assert all(m.retain and m.qos == 1 for m in configs.values())

        states = subscriber_factory(f"{base}/#")
        retained = wait_until(
            lambda: (
                (r := _retained(states)).get(f"{base}/state/modem")
                and r.get(f"{base}/state/locker-34", {}).get("door") == "open"
                and r
            ),
            message="retained site state",
        )
        for topic, msg in configs.items():
            component = topic.split("/")[1]
            conf = msg.json
            check_keys(component, conf)
            assert conf["device"]["identifiers"] == ["ha-site-1"]
            assert conf["device"]["name"] == "GS25 역삼역점"
            avail = conf["availability"][0]
            assert avail["topic"] == f"{base}/status"
            assert render(avail["value_template"], retained[f"{base}/status"]) == "online"
            # Every entity reads a topic the site keeps retained, and renders a valid state.
            payload = retained[conf["state_topic"]]
            value = render(conf["value_template"], payload)
            valid = {
                "lock": {"LOCKED", "UNLOCKED", "JAMMED", "None"},
                "binary_sensor": {"ON", "OFF", "None"},
            }.get(component)
            if valid is not None:
                assert value in valid, (topic, value)
            else:
                assert value.lstrip("-").isdigit(), (topic, value)
            # A command topic HA would publish to is one the site never subscribes to.
            assert not conf.get("command_topic", "").startswith("ansim/v1/")

        def lock(n: int) -> str:
            conf = configs[f"homeassistant/lock/ha-site-1/locker-{n}/config"].json
            return render(conf["value_template"], retained[conf["state_topic"]])

        assert (lock(33), lock(34)) == ("LOCKED", "UNLOCKED")

        # Home Assistant restarts: its birth message re-publishes every config.
        n = len(live.messages())
        assert n == len(expected)
        live.publish("homeassistant/status", b"online")
        live.wait_count(lambda m: m.topic in expected, 2 * n)


def test_docs_example_is_what_the_code_sends() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs/homeassistant.md").read_text("utf-8")
    example = text.split("<!-- example: homeassistant lock -->\n```json\n", 1)[1]
    example = example.split("\n```", 1)[0]
    cfg = load_config(Path(__file__).resolve().parent.parent / "config/examples/locker.yaml")
    cfg = cfg.model_copy(update={"homeassistant": HomeAssistantConfig(enabled=True)})
    ents = entities(cfg, Topics(cfg.topic_root, cfg.site.id), __version__)
    assert json.loads(example) == ents[0].config
    assert (ents[0].component, ents[0].object_id) == ("lock", "locker-1")
