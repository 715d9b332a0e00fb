"""Regression tests for the review of the alarm path (fixed in bae7511), end to end: a whole
Site on its own thread with a FakeClock, SimHardware and the simulated AT modem (a pty
driven by the real GsmModem driver); a real mosquitto where the broker link matters, a
dead broker port (link down) where it does not.

1. A bouncing press is not chatter; a press during chatter is deferred, never dropped.
2. An alarm.ack cancels the call queued behind the SMS.
3. Losing the link while waiting for the ack cannot cause a second call.
4. A restart resumes an escalation (no repeat of what succeeded) and does not cut the
   grace period short.
5. Commands arriving during shutdown are not executed; a coil that cannot be driven fails
   its command.
6. A failed SMS is retried after call_retry_delay_s, and at once when the modem recovers.
Also: the walk test ends on restart; supervision and chatter faults are tracked apart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from edge.config import parse_config
from edge.core.clock import FakeClock
from edge.site import Site
from simulator.hardware import SimHardware
from simulator.modem_device import SimTimings
from tests.support.mqtt import Mosquitto, Subscriber, SubscriberFactory, free_port
from tests.support.site import Keys, command, make_keys, site_dict
from tests.support.wait import wait_until

ROOT = "ansim/v1"
BUTTON = "panic-1"
SMS_TO = "+821011112222"
POLICE = "112"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    (tmp_path / "keys").mkdir()
    return make_keys(tmp_path / "keys")


def dead_broker() -> str:
    """A broker URL nothing listens on: the link stays down."""
    return f"mqtt://127.0.0.1:{free_port()}"


def shelter(
    site: str,
    url: str,
    data: Path,
    keys: Keys,
    *,
    debounce_ms: int = 0,
    button: dict[str, Any] | None = None,
    modem: dict[str, Any] | None = None,
    **esc: Any,
) -> dict[str, Any]:
    d = site_dict(site, url, data, keys, debounce_ms=debounce_ms, chatter_max=10)
    d["devices"]["panic_buttons"][0].update(button or {})
    d["devices"]["modem"] = {"url": "/dev/null", "check_interval_s": 1, **(modem or {})}
    d["escalation"] = {
        "escalate_after_s": 15,
        "sms_numbers": [SMS_TO],
        "call_number": POLICE,
        "call_attempts": 3,
        "call_retry_delay_s": 10,
        "ring_timeout_s": 5,
        "talk_s": 0.2,
        **esc,
    }
    return d


def lockers(site: str, url: str, data: Path, keys: Keys, count: int = 1) -> dict[str, Any]:
    pins = [(5, 6), (13, 19), (20, 21)]
    return {
        "site": {"id": site},
        "broker": {"url": url, "keepalive_s": 5, "reconnect": {"min_s": 0.05, "max_s": 0.5}},
        "data_dir": str(data),
        "keys": keys.trusted(),
        "devices": {
            "lockers": {
                "pulse_ms": 300,
                "cooldown_ms": 200,
                "max_concurrent": 1,
                "gpio": [
                    {"locker": n + 1, "solenoid_pin": coil, "door_pin": door, "debounce_ms": 0}
                    for n, (coil, door) in enumerate(pins[:count])
                ],
            }
        },
    }


class Rig:
    """A running Site; the test moves its FakeClock."""

    def __init__(
        self,
        cfg: dict[str, Any],
        start: datetime | None,
        sms_delay_s: float | None,
        mono: float = 1000.0,
    ) -> None:
        self.clock = FakeClock(start=start or datetime.now(UTC), mono=mono)
        self.hw = SimHardware(monotonic=self.clock.monotonic)
        self.site = Site(parse_config(cfg), self.hw, clock=self.clock)
        self.modem: Any = self.hw.modem_sim  # SimulatedModem, or None
        if sms_delay_s is not None:
            self.modem.timings = SimTimings(sms_delay_s=sms_delay_s)
        self.site.start_thread()
        self.sync()

    def sync(self) -> None:
        """Two round trips through the core loop: everything posted before is handled."""
        self.site.call(lambda: None)
        self.site.call(lambda: None)

    def advance(self, s: float) -> None:
        self.clock.advance(s)
        self.sync()

    def set(self, name: str, active: bool) -> None:
        self.hw.set_input(name, active)
        self.sync()

    def inject(self, payload: dict[str, Any]) -> None:
        """A command as the uplink hands it over (from paho's thread)."""
        topic = self.site.topics.command(payload["name"])
        data = json.dumps(payload).encode()
        self.site.loop.post(lambda: self.site.uplink_message(topic, data))

    # ---- looking (the store holds what the broker has not acknowledged) ----
    def _rows(self) -> list[tuple[str, dict[str, Any]]]:
        def read() -> list[tuple[str, dict[str, Any]]]:
            return [(p.topic, json.loads(p.payload)) for p in self.site.store.pending(1_000_000)]

        return cast(list[tuple[str, dict[str, Any]]], self.site.call(read))

    def events(self, type_: str | None = None, after_seq: int = 0) -> list[dict[str, Any]]:
        return [
            e
            for topic, e in self._rows()
            if "/events/" in topic
            and (type_ is None or e["type"] == type_)
            and e["seq"] > after_seq
        ]

    def escalated(self, after_seq: int = 0, **match: Any) -> list[dict[str, Any]]:
        return [
            e["data"]
            for e in self.events("alarm.escalated", after_seq)
            if all(e["data"].get(k) == v for k, v in match.items())
        ]

    def result(self, command_id: str) -> dict[str, Any] | None:
        found = [r for t, r in self._rows() if t.endswith("/results")]
        return next((r for r in found if r["command_id"] == command_id), None)

    def last_seq(self) -> int:
        return cast(int, self.site.call(self.site.store.last_seq))

    def button(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.site.call(lambda: self.site.states.get(BUTTON)))

    def alarm(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.site.call(lambda: self.site.states.get("alarm")))

    def sms(self) -> list[dict[str, Any]]:
        return list(self.modem.snapshot()["sms"])

    def calls(self) -> list[dict[str, Any]]:
        return list(self.modem.snapshot()["calls"])

    def close(self) -> None:
        self.site.stop_soon()
        self.site.join(10)
        self.hw.close()
        assert self.site._thread is not None and not self.site._thread.is_alive()


@contextmanager
def running(
    cfg: dict[str, Any],
    *,
    start: datetime | None = None,
    sms_delay_s: float | None = None,
    mono: float = 1000.0,
) -> Iterator[Rig]:
    r = Rig(cfg, start, sms_delay_s, mono)
    try:
        yield r
    finally:
        r.close()


def online(sub: Subscriber, site: str) -> None:
    sub.wait_for(lambda m: m.topic == f"{ROOT}/{site}/status" and m.json["state"] == "online")


def caught_up(sub: Subscriber, r: Rig) -> None:
    """Wait until the subscriber has every event the site recorded so far (a negative
    check on published events is only meaningful after this)."""
    last = r.last_seq()
    sub.wait_for(lambda m: "/events/" in m.topic and m.json["seq"] >= last)


def published_escalations(sub: Subscriber, **match: Any) -> list[dict[str, Any]]:
    return [
        m.json["data"]
        for m in sub.messages(f"{ROOT}/+/events/alarm/escalated")
        if all(m.json["data"].get(k) == v for k, v in match.items())
    ]


# --------------------------------------------------------------------------- 1. chatter


def test_a_bouncing_press_raises_the_alarm_and_is_not_chatter(keys: Keys, tmp_path: Path) -> None:
    cfg = site_dict("bounce", dead_broker(), tmp_path / "d", keys, debounce_ms=50, chatter_max=10)
    with running(cfg) as r:
        # One real press: its contact bounces 11 raw transitions within 10 ms, then holds.
        for i in range(11):
            r.hw.set_input(BUTTON, i % 2 == 0)
            r.clock.advance(0.001)
        r.advance(0.2)
        [raised] = r.events("alarm.raised")
        assert raised["data"]["button"] == BUTTON and raised["data"]["test"] is False
        assert r.events("wiring.fault") == []
        assert r.button() == {"active": True, "fault": None, "wiring": None}
        for _ in range(3):  # held for a while: still one alarm, still no fault
            r.advance(30)
        assert len(r.events("alarm.raised")) == 1
        assert r.events("wiring.fault") == []


def chatter(r: Rig, cycles: int = 8) -> None:
    """A loose wire: the button reads pressed / released every 0.2 s (debounced changes)."""
    for _ in range(cycles):
        r.set(BUTTON, True)
        r.advance(0.2)
        r.set(BUTTON, False)
        r.advance(0.2)


@pytest.mark.parametrize("broken", [True, False], ids=["wire-breaks", "wire-calms-down"])
def test_a_press_during_chatter_is_deferred_until_the_button_is_quiet(
    keys: Keys, tmp_path: Path, broken: bool
) -> None:
    # hold_ms: none of the short chatter pulses is a press by itself.
    cfg = site_dict("chatter", dead_broker(), tmp_path / "d", keys, debounce_ms=50, chatter_max=10)
    cfg["devices"]["panic_buttons"][0].update(hold_ms=1000, chatter_window_s=10)
    with running(cfg) as r:
        chatter(r)
        [fault] = r.events("wiring.fault")
        assert fault["data"]["reason"] == "chatter"
        assert r.button()["wiring"] == ["chatter"]
        if broken:
            r.set(BUTTON, True)  # the wire finally breaks: the loop stays open
            r.advance(0.2)
        r.advance(9.0)  # not yet quiet for chatter_window_s
        assert r.events("alarm.raised") == []
        assert r.events("wiring.restored") == []
        r.advance(1.5)
        [restored] = r.events("wiring.restored")
        assert restored["data"] == {"button": BUTTON, "reason": "chatter"}
        assert r.button()["wiring"] is None
        raised = r.events("alarm.raised")
        if broken:
            assert len(raised) == 1 and raised[0]["data"]["test"] is False
            assert r.alarm()["state"] == "active"
        else:
            assert raised == []  # it was chatter after all
            assert r.alarm()["state"] == "idle"
        r.advance(30)
        assert len(r.events("alarm.raised")) == int(broken)
        assert len(r.events("wiring.fault")) == 1


def test_a_deferred_press_is_raised_when_the_quiet_timer_fires_exactly_on_time(
    keys: Keys, tmp_path: Path
) -> None:
    cfg = site_dict("quiet", dead_broker(), tmp_path / "d", keys, debounce_ms=0, chatter_max=3)
    cfg["devices"]["panic_buttons"][0].update(hold_ms=1000, chatter_window_s=10)
    with running(cfg, mono=1014.004) as r:
        for level in (True, False, True, False, True):  # chatter, then the loop stays open
            r.set(BUTTON, level)
        assert r.button()["wiring"] == ["chatter"]
        r.advance(10.0)  # exactly chatter_window_s after the last change
        r.advance(3600)
        assert len(r.events("alarm.raised")) == 1


def test_supervision_and_chatter_faults_are_tracked_apart(keys: Keys, tmp_path: Path) -> None:
    cfg = site_dict("wiring", dead_broker(), tmp_path / "d", keys, debounce_ms=50, chatter_max=10)
    cfg["devices"]["panic_buttons"][0].update(
        hold_ms=1000, chatter_window_s=10, supervision={"pin": 26, "debounce_ms": 0}
    )
    with running(cfg) as r:
        r.set(f"{BUTTON}-supervision", True)  # the supervision loop opens
        assert r.button()["wiring"] == ["supervision"]
        chatter(r)
        assert r.button()["wiring"] == ["chatter", "supervision"]
        r.set(f"{BUTTON}-supervision", False)  # supervision repaired; still chattering
        assert r.button()["wiring"] == ["chatter"]
        r.advance(11)
        assert r.button()["wiring"] is None
        faults = [e["data"]["reason"] for e in r.events("wiring.fault")]
        restored = [e["data"]["reason"] for e in r.events("wiring.restored")]
        assert faults == ["supervision", "chatter"]
        assert restored == ["supervision", "chatter"]


# --------------------------------------------------------------------------- 2. ack


def test_ack_cancels_the_call_queued_behind_the_sms(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory, keys: Keys, tmp_path: Path
) -> None:
    site = "rev-ack"
    sub = subscriber_factory([f"{ROOT}/{site}/#"])
    # The SMS takes 1.5 s to go out: the call waits behind it in the modem's queue.
    with running(shelter(site, mosquitto.url, tmp_path / "d", keys), sms_delay_s=1.5) as r:
        online(sub, site)
        r.set(BUTTON, True)
        raised = sub.wait_for(f"{ROOT}/{site}/events/alarm/raised").json
        r.advance(15.5)  # no ack within escalate_after_s: SMS, then the call
        wait_until(lambda: len(r.sms()) == 1, message="the SMS is being sent")
        alarm_id = raised["data"]["alarm_id"]
        ack = command("alarm.ack", {"alarm_id": alarm_id, "by": "officer"}, keys.centre, site=site)
        sub.publish(f"{ROOT}/{site}/commands/alarm/ack", ack)
        res = sub.wait_for(
            lambda m: m.topic.endswith("/results") and m.json["command_id"] == ack["command_id"]
        ).json
        assert res["ok"] is True and res["data"]["state"] == "acknowledged"

        def call_ended() -> list[dict[str, Any]]:
            return [
                e for e in published_escalations(sub, channel="call") if e["outcome"] != "attempt"
            ]

        [call] = wait_until(call_ended, message="the queued call is answered by the driver")
        assert call["outcome"] == "cancelled" and call["detail"] == "cancelled"
        wait_until(
            lambda: published_escalations(sub, channel="sms", outcome="sent"), message="SMS sent"
        )
        r.advance(30)  # a retry would be due by now
        r.advance(30)
        caught_up(sub, r)
        assert len(published_escalations(sub, channel="call", outcome="attempt")) == 1
        assert r.calls() == []  # 112 was never dialled for the acknowledged alarm


# --------------------------------------------------------------------------- 3. link loss


def test_link_lost_while_waiting_for_the_ack_calls_only_once(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory, keys: Keys, tmp_path: Path
) -> None:
    site = "rev-link"
    sub = subscriber_factory([f"{ROOT}/{site}/#"])
    with running(shelter(site, mosquitto.url, tmp_path / "d", keys)) as r:
        online(sub, site)
        r.set(BUTTON, True)
        sub.wait_for(f"{ROOT}/{site}/events/alarm/raised")
        r.advance(1.0)
        assert r.sms() == []
        mosquitto.stop()  # the link goes down while the centre has 14 s left to ack
        wait_until(
            lambda: r.escalated(channel="call", outcome="attempt"), message="escalation on loss"
        )
        wait_until(
            lambda: r.escalated(channel="call", outcome="answered"), message="the police answer"
        )
        r.advance(20.0)  # the original escalate_after_s timer would fire now
        r.advance(20.0)
        assert len(r.escalated(channel="call", outcome="attempt")) == 1
        assert len(r.escalated(channel="sms", outcome="attempt")) == 1
        assert len(r.calls()) == 1


# --------------------------------------------------------------------------- 4. restart


def test_restart_resumes_the_calls_and_does_not_repeat_the_sms(keys: Keys, tmp_path: Path) -> None:
    cfg = shelter("rev-restart", dead_broker(), tmp_path / "d", keys)
    with running(cfg) as r1:
        r1.modem.set_callee("busy")
        r1.set(BUTTON, True)  # link down at the press: SMS and call at once
        wait_until(lambda: r1.escalated(channel="sms", outcome="sent"), message="SMS sent")
        wait_until(lambda: r1.escalated(channel="call", outcome="busy"), message="call 1 busy")
        alarm_id = r1.alarm()["alarm_id"]
        mark = r1.last_seq()
        later = r1.clock.now() + timedelta(seconds=3)
    # The daemon restarts before the retry (due in call_retry_delay_s) was made.
    with running(cfg, start=later) as r2:
        [started] = r2.events("site.started", mark)
        assert started["data"]["restored_alarm"] == alarm_id
        wait_until(lambda: r2.escalated(mark, outcome="answered"), 15, message="call 2 answered")
        assert r2.escalated(mark, channel="sms") == []
        assert r2.sms() == []
        assert [(e["attempt"], e["outcome"]) for e in r2.escalated(mark)] == [
            (2, "attempt"),
            (2, "answered"),
        ]
        assert {e["alarm_id"] for e in r2.escalated(mark)} == {alarm_id}
        r2.advance(60)
        r2.advance(60)
        assert len(r2.escalated(mark, outcome="attempt")) == 1
        assert len(r2.calls()) == 1


def test_restart_in_the_grace_period_waits_only_the_remaining_time(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory, keys: Keys, tmp_path: Path
) -> None:
    site = "rev-grace"
    cfg = shelter(site, mosquitto.url, tmp_path / "d", keys, escalate_after_s=600)
    sub = subscriber_factory([f"{ROOT}/{site}/#"])
    with running(cfg) as r1:
        online(sub, site)
        r1.set(BUTTON, True)
        alarm_id = sub.wait_for(f"{ROOT}/{site}/events/alarm/raised").json["data"]["alarm_id"]
        r1.advance(100)
        later = r1.clock.now() + timedelta(seconds=5)  # 105 s of the 600 s gone
    with running(cfg, start=later) as r2:
        sub.wait_for(
            lambda m: (
                m.topic.endswith("/events/site/started")
                and m.json["data"]["restored_alarm"] == alarm_id
            )
        )
        caught_up(sub, r2)
        assert published_escalations(sub) == []  # nothing at boot
        r2.advance(480)  # 585 s after the press
        r2.advance(10)  # 595 s
        caught_up(sub, r2)
        assert published_escalations(sub) == [] and r2.sms() == []
        r2.advance(6)  # 601 s
        wait_until(
            lambda: published_escalations(sub, channel="call", outcome="answered"), message="call"
        )
        assert len(r2.sms()) == 1 and r2.sms()[0]["number"] == SMS_TO
        assert {e["alarm_id"] for e in published_escalations(sub)} == {alarm_id}


def test_a_restart_ends_the_walk_test(keys: Keys, tmp_path: Path) -> None:
    cfg = shelter("rev-walk", dead_broker(), tmp_path / "d", keys)
    with running(cfg) as r1:
        for _ in range(3):  # three reset-key turns: walk test on (30 minutes)
            r1.set("reset_key", True)
            r1.set("reset_key", False)
        [on] = r1.events("site.test_mode")
        assert on["data"]["on"] is True and on["data"]["by"] == "reset_key"
        assert r1.alarm()["test_mode_until"] is not None
        mark = r1.last_seq()
        later = r1.clock.now() + timedelta(seconds=60)
    with running(cfg, start=later) as r2:
        [off] = r2.events("site.test_mode", mark)
        assert off["data"] == {"on": False, "until": None, "by": "restart"}
        assert r2.alarm()["test_mode_until"] is None
        r2.set(BUTTON, True)  # a real press after the restart is a real alarm
        [raised] = r2.events("alarm.raised", mark)
        assert raised["data"]["test"] is False
        assert r2.escalated(mark, channel="sms", outcome="attempt")  # link down: at once


# --------------------------------------------------------------------------- 5. commands


def stored(data: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """After the site stopped: the results in its outbox, the command ids it remembers."""
    db = sqlite3.connect(data / "ansim-edge.db")
    try:
        results = [
            json.loads(row[0])
            for row in db.execute("SELECT payload FROM outbox WHERE topic LIKE '%/results'")
        ]
        remembered = [str(row[0]) for row in db.execute("SELECT command_id FROM commands")]
    finally:
        db.close()
    return results, remembered


def coil_pulses(r: Rig) -> list[str]:
    return [c["name"] for c in r.hw.coil_intervals()]


def test_a_command_arriving_during_shutdown_runs_after_the_restart(
    keys: Keys, tmp_path: Path
) -> None:
    data = tmp_path / "d"
    site = "rev-shutdown"
    cfg = lockers(site, dead_broker(), data, keys)
    cmd = command(
        "locker.open", {"locker": 1, "reason": "service"}, keys.centre, site=site, ttl_s=600
    )
    with running(cfg) as r1:
        bank = r1.site.devices.get("lockers")
        assert bank is not None
        stop_inputs = bank.stop

        def sigterm_then_command() -> None:  # the command reaches the core while stopping
            r1.inject(cmd)
            stop_inputs()

        bank.stop = sigterm_then_command  # type: ignore[method-assign]
    assert coil_pulses(r1) == []
    results, remembered = stored(data)
    assert [r for r in results if r["command_id"] == cmd["command_id"]] == []
    assert cmd["command_id"] not in remembered
    # The centre sends it again (same command_id) after the restart: now it runs.
    with running(cfg) as r2:
        r2.inject(cmd)
        r2.sync()
        res = r2.result(cmd["command_id"])
        assert res is not None and res["ok"] is True, res
        wait_until(lambda: coil_pulses(r2) == ["coil-1"], message="the coil pulses")


def test_a_coil_that_cannot_be_driven_fails_its_command(
    keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = "rev-coil"
    with running(lockers(site, dead_broker(), tmp_path / "d", keys)) as r:
        coil = r.site.outputs["coil-1"]

        def broken(seconds: float) -> None:
            raise OSError("gpio: pin 5 not available")

        monkeypatch.setattr(coil, "pulse", broken)
        first = command("locker.open", {"locker": 1, "reason": "service"}, keys.centre, site=site)
        r.inject(first)
        r.sync()
        res = r.result(first["command_id"])
        assert res is not None and res["ok"] is False, res
        assert res["error"]["code"] == "failed"
        [fault] = r.events("lock.fault")
        assert fault["data"]["locker"] == 1 and "pin 5 not available" in fault["data"]["reason"]
        monkeypatch.undo()  # repaired
        r.advance(5)  # past the cooldown
        again = command("locker.open", {"locker": 1, "reason": "service"}, keys.centre, site=site)
        r.inject(again)
        r.sync()
        res = r.result(again["command_id"])
        assert res is not None and res["ok"] is True, res
        wait_until(lambda: coil_pulses(r) == ["coil-1"], message="the coil pulses")


def test_a_failure_of_a_queued_pulse_does_not_fail_a_later_command(
    keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = "rev-stale"
    with running(lockers(site, dead_broker(), tmp_path / "d", keys, count=2)) as r:

        def send(locker: int) -> dict[str, Any]:
            cmd = command(
                "locker.open", {"locker": locker, "reason": "service"}, keys.centre, site=site
            )
            r.inject(cmd)
            r.sync()
            res = r.result(cmd["command_id"])
            assert res is not None
            return res

        def broken(seconds: float) -> None:
            raise OSError("gpio: pin 13 not available")

        assert send(1)["ok"] is True
        monkeypatch.setattr(r.site.outputs["coil-2"], "pulse", broken)
        assert send(2)["ok"] is True  # queued behind locker 1 (one coil at a time)
        # Coil 1 is timed by gpiozero in real time; locker 2 waits until it is really off.
        wait_until(lambda: not r.site.outputs["coil-1"].is_on, message="coil 1 off")
        r.advance(1.0)  # locker 2's pulse is due now and cannot be driven
        [fault] = r.events("lock.fault")  # reported, as its command had answered ok already
        assert fault["device"] == "locker-2" and fault["data"]["locker"] == 2
        assert "pin 13 not available" in fault["data"]["reason"]
        monkeypatch.undo()  # repaired
        r.advance(5.0)
        res = send(2)
        wait_until(lambda: coil_pulses(r) == ["coil-1", "coil-2"], message="coil 2 pulses")
        assert res["ok"] is True, res


# --------------------------------------------------------------------------- 6. SMS retry


def test_a_failed_sms_is_retried_after_the_retry_delay(keys: Keys, tmp_path: Path) -> None:
    cfg = shelter("rev-sms", dead_broker(), tmp_path / "d", keys, call_number=None)
    with running(cfg) as r:
        r.modem.set_sms_fail(True)
        r.set(BUTTON, True)
        wait_until(lambda: r.escalated(outcome="failed"), message="SMS 1 fails")
        r.modem.set_sms_fail(False)
        r.advance(9)
        assert [e["attempt"] for e in r.escalated(outcome="attempt")] == [1]
        r.advance(1.5)
        wait_until(lambda: r.escalated(outcome="sent"), message="SMS 2 sent")
        assert [(e["attempt"], e["outcome"]) for e in r.escalated()] == [
            (1, "attempt"),
            (1, "failed"),
            (2, "attempt"),
            (2, "sent"),
        ]
        assert [s["ok"] for s in r.sms()] == [False, True]
        r.advance(60)
        r.advance(60)
        assert len(r.escalated(outcome="attempt")) == 2
        assert len(r.sms()) == 2


def test_sms_and_call_failed_while_the_modem_was_down_go_out_when_it_recovers(
    keys: Keys, tmp_path: Path
) -> None:
    cfg = shelter(
        "rev-recover", dead_broker(), tmp_path / "d", keys, modem={"command_timeout_s": 0.3}
    )
    with running(cfg) as r:
        r.modem.set_silent(True)  # the module hangs
        wait_until(lambda: r.events("modem.fault"), message="modem fault")
        r.set(BUTTON, True)
        wait_until(lambda: r.escalated(channel="sms", outcome="failed"), message="SMS rejected")
        wait_until(lambda: r.escalated(channel="call", outcome="error"), message="call rejected")
        assert r.escalated(channel="sms", outcome="failed")[0]["detail"].startswith("modem down")
        r.modem.set_silent(False)  # it answers again; the FakeClock does not move
        wait_until(lambda: r.events("modem.recovered"), message="modem recovered")
        wait_until(lambda: r.escalated(channel="sms", outcome="sent"), message="SMS 2 sent")
        wait_until(
            lambda: r.escalated(channel="call", outcome="answered"), message="call 2 answered"
        )
        assert [(e["channel"], e["attempt"], e["outcome"]) for e in r.escalated()] == [
            ("sms", 1, "attempt"),
            ("call", 1, "attempt"),
            ("sms", 1, "failed"),
            ("call", 1, "error"),
            ("sms", 2, "attempt"),
            ("call", 2, "attempt"),
            ("sms", 2, "sent"),
            ("call", 2, "answered"),
        ]
        assert [s["ok"] for s in r.sms()] == [True]
        r.advance(30)  # the retry timer of the failures finds nothing to do
        assert len(r.escalated(outcome="attempt")) == 4
