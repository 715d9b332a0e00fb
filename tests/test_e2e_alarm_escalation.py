"""Issue 4 end to end on a real mosquitto: escalation over the simulated modem (a pty
speaking AT commands), walk test, wiring supervision and chatter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from edge.core.clock import FakeClock
from edge.site import Site
from simulator.hardware import SimHardware
from tests.support.mqtt import Mosquitto, SessionSubscriber, Subscriber, persistent_broker
from tests.support.site import Keys, command, make_keys, site_dict
from tests.support.wait import wait_until

ROOT = "ansim/v1"
SMS_TO = "+821011112222"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def shelter(site: str, url: str, data: Path, keys: Keys, **esc: Any) -> dict[str, Any]:
    d = site_dict(site, url, data, keys, debounce_ms=0)
    d["site"]["address"] = "서울특별시 강남구 테헤란로 123"
    d["devices"]["modem"] = {"url": "/dev/null", "check_interval_s": 1}
    d["escalation"] = {
        "escalate_after_s": 15,
        "sms_numbers": [SMS_TO],
        "call_number": "112",
        "call_attempts": 3,
        "call_retry_delay_s": 5,
        "ring_timeout_s": 5,
        "talk_s": 0.2,
        **esc,
    }
    return d


class Store:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.clock = FakeClock(start=datetime.now(UTC))
        self.hw = SimHardware(monotonic=self.clock.monotonic)
        self.site = Site(parse_config(cfg), self.hw, clock=self.clock)
        self.site.start_thread()
        wait_until(lambda: self.hw.modem_sim is not None)
        self.modem = self.hw.modem_sim

    def sync(self) -> None:
        """Two round trips through the core loop: everything posted before is handled."""
        self.site.call(lambda: None)
        self.site.call(lambda: None)

    def advance(self, s: float) -> None:
        self.clock.advance(s)
        self.sync()

    def sms(self) -> list[dict[str, Any]]:
        return list(self.modem.snapshot()["sms"])

    def calls(self) -> list[dict[str, Any]]:
        return list(self.modem.snapshot()["calls"])

    def alarm_id(self) -> str:
        bank = self.site.devices.get("panic")
        assert bank is not None
        return str(self.site.call(lambda: bank.machine.s.alarm_id))

    def close(self) -> None:
        self.site.stop_soon()
        self.site.join(10)
        self.hw.close()


@contextmanager
def store(cfg: dict[str, Any]) -> Iterator[Store]:
    s = Store(cfg)
    try:
        yield s
    finally:
        s.close()


def online(sub: Subscriber, site: str) -> None:
    sub.wait_for(lambda m: m.topic == f"{ROOT}/{site}/status" and m.json["state"] == "online")


def escalated(sub: Subscriber, **match: Any) -> list[dict[str, Any]]:
    return [
        m.json["data"]
        for m in sub.messages(f"{ROOT}/+/events/alarm/escalated")
        if all(m.json["data"].get(k) == v for k, v in match.items())
    ]


def test_no_ack_escalates_after_the_delay_with_sms_and_call(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    site = "esc-delay"
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with store(shelter(site, mosquitto.url, tmp_path / "d", keys)) as s:
        online(sub, site)
        status = sub.wait_for(
            lambda m: m.topic.endswith("/status") and (m.json.get("modem") or {}).get("registered")
        ).json
        assert status["modem"]["ok"] is True and isinstance(status["modem"]["signal_dbm"], int)
        s.hw.set_input("panic-1", True)
        sub.wait_for(f"{ROOT}/{site}/events/alarm/raised")
        s.advance(14.0)
        assert s.sms() == [] and s.calls() == []  # not yet: the centre has 15 s to ack
        s.advance(1.5)
        wait_until(lambda: len(s.sms()) == 1, message="SMS after escalate_after_s")
        text = s.sms()[0]["text"]
        assert s.sms()[0]["number"] == SMS_TO
        assert site in text and s.alarm_id()[:8] in text and "테헤란로" in text
        wait_until(lambda: s.calls() and s.calls()[0]["outcome"] == "answered", timeout=15)
        assert s.calls()[0]["number"] == "112"
        wait_until(lambda: escalated(sub, channel="call", outcome="answered"), timeout=15)
        assert escalated(sub, channel="sms", outcome="sent")
        assert len(s.calls()) == 1
    sub.close()


def test_broker_down_at_press_texts_at_once_and_reports_later(keys: Keys, tmp_path: Path) -> None:
    site = "esc-down"
    broker = persistent_broker(tmp_path)
    sub = SessionSubscriber(broker, f"{ROOT}/{site}/#")
    try:
        with store(shelter(site, broker.url, tmp_path / "d", keys)) as s:
            online(sub, site)
            broker.stop()
            wait_until(lambda: not s.site.call(lambda: s.site.outbox.online))
            s.hw.set_input("panic-1", True)
            wait_until(lambda: len(s.sms()) == 1, message="immediate SMS, no clock advance")
            wait_until(lambda: s.calls() and s.calls()[0]["outcome"] == "answered", timeout=15)
            broker.start()
            wait_until(lambda: escalated(sub, channel="call", outcome="answered"), timeout=20)
            events = escalated(sub)
            outcomes = sorted((e["channel"], e["outcome"]) for e in events)
            assert outcomes == [
                ("call", "answered"),
                ("call", "attempt"),
                ("sms", "attempt"),
                ("sms", "sent"),
            ]
    finally:
        sub.close()
        broker.close()


def test_ack_during_escalation_stops_further_attempts(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    site = "esc-ack"
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with store(shelter(site, mosquitto.url, tmp_path / "d", keys)) as s:
        online(sub, site)
        s.modem.set_callee("busy")
        s.hw.set_input("panic-1", True)
        sub.wait_for(f"{ROOT}/{site}/events/alarm/raised")
        s.advance(16)
        wait_until(lambda: escalated(sub, channel="call", outcome="busy"), timeout=15)
        cmd = command(
            "alarm.ack", {"alarm_id": s.alarm_id(), "by": "officer"}, keys.centre, site=site
        )
        sub.publish(f"{ROOT}/{site}/commands/alarm/ack", cmd)
        sub.wait_for(lambda m: m.topic.endswith("/results") and m.json["ok"])
        s.advance(6)  # the retry would have been due now
        s.advance(6)
        assert len(s.calls()) == 1, s.calls()
        assert len(escalated(sub, channel="call", outcome="attempt")) == 1


def test_busy_is_retried_up_to_the_limit(mosquitto: Mosquitto, keys: Keys, tmp_path: Path) -> None:
    site = "esc-retry"
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with store(shelter(site, mosquitto.url, tmp_path / "d", keys, call_attempts=2)) as s:
        online(sub, site)
        s.modem.set_callee("busy")
        s.hw.set_input("panic-1", True)
        sub.wait_for(f"{ROOT}/{site}/events/alarm/raised")
        s.advance(16)
        wait_until(lambda: len(escalated(sub, channel="call", outcome="busy")) == 1, timeout=15)
        s.advance(6)
        wait_until(lambda: len(escalated(sub, channel="call", outcome="busy")) == 2, timeout=15)
        s.advance(6)
        s.advance(6)
        assert len(s.calls()) == 2
        assert [e["attempt"] for e in escalated(sub, outcome="busy")] == [1, 2]


def test_walk_test_never_dials(mosquitto: Mosquitto, keys: Keys, tmp_path: Path) -> None:
    site = "esc-walk"
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with store(shelter(site, mosquitto.url, tmp_path / "d", keys)) as s:
        online(sub, site)
        cmd = command("site.test_mode", {"on": True, "minutes": 10}, keys.tech, "tech", site=site)
        sub.publish(f"{ROOT}/{site}/commands/site/test_mode", cmd)
        res = sub.wait_for(lambda m: m.topic.endswith("/results")).json
        assert res["ok"] is True and res["data"]["on"] is True
        s.hw.set_input("panic-1", True)
        raised = sub.wait_for(f"{ROOT}/{site}/events/alarm/raised").json
        assert raised["data"]["test"] is True
        wait_until(lambda: s.hw.snapshot()["outputs"]["sent_led"]["on"])
        s.advance(60)
        assert s.sms() == [] and s.calls() == []
        assert escalated(sub) == []
        # The walk test ends by itself.
        s.advance(10 * 60)
        ended = sub.wait_for(
            lambda m: m.topic.endswith("/events/site/test_mode") and m.json["data"]["on"] is False
        ).json
        assert ended["data"]["by"] == "timeout"


def test_key_sequence_starts_the_walk_test(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    site = "esc-key"
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with store(shelter(site, mosquitto.url, tmp_path / "d", keys)) as s:
        online(sub, site)
        for _ in range(3):
            s.hw.set_input("reset_key", True)
            s.sync()
            s.hw.set_input("reset_key", False)
            s.sync()
        on = sub.wait_for(f"{ROOT}/{site}/events/site/test_mode").json
        assert on["data"]["on"] is True and on["data"]["by"] == "reset_key"


def test_cut_supervision_loop_raises_wiring_fault(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    site = "esc-sup"
    cfg = shelter(site, mosquitto.url, tmp_path / "d", keys)
    cfg["devices"]["panic_buttons"][0]["supervision"] = {"pin": 26, "debounce_ms": 0}
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with store(cfg) as s:
        online(sub, site)
        s.hw.set_input("panic-1-supervision", True)  # the supervision loop opens
        fault = sub.wait_for(f"{ROOT}/{site}/events/wiring/fault").json
        assert fault["data"] == {"button": "panic-1", "reason": "supervision", "loop_open": False}
        assert fault["seq"] > 0
        s.hw.set_input("panic-1-supervision", False)
        restored = sub.wait_for(f"{ROOT}/{site}/events/wiring/restored").json
        assert restored["data"]["reason"] == "supervision"
        # A cut NC loop: the alarm itself, plus the wiring fault.
        s.hw.set_input("panic-1-supervision", True)
        s.hw.set_input("panic-1", True)
        sub.wait_for(f"{ROOT}/{site}/events/alarm/raised")
        sub.wait_count(f"{ROOT}/{site}/events/wiring/fault", 2)
    sub.close()


def test_chattering_button_is_one_fault_not_a_storm(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    site = "esc-chatter"
    cfg = shelter(site, mosquitto.url, tmp_path / "d", keys)
    cfg["devices"]["panic_buttons"][0]["chatter_max"] = 6
    cfg["devices"]["reset_key"]["debounce_ms"] = 0
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with store(cfg) as s:
        online(sub, site)
        for i in range(40):
            s.hw.set_input("panic-1", i % 2 == 0)
            s.sync()
            if i % 4 == 1:  # the clerk keeps resetting: each reset would allow a new alarm
                s.hw.set_input("reset_key", True)
                s.sync()
                s.hw.set_input("reset_key", False)
        s.hw.set_input("panic-1", False)
        sub.wait_for(f"{ROOT}/{site}/events/wiring/fault")
        s.sync()
        faults = sub.messages(f"{ROOT}/{site}/events/wiring/fault")
        assert len(faults) == 1 and faults[0].json["data"]["reason"] == "chatter"
        assert len(sub.messages(f"{ROOT}/{site}/events/alarm/raised")) <= 2
    sub.close()
