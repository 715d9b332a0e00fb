"""The alarm escalation end to end: a whole Site on its own thread with a FakeClock and
SimHardware, the simulated modem on a pty speaking AT commands to the real GsmModem driver;
a real mosquitto where the broker link matters, a dead broker port (link down) where not.

Escalation over SMS and call, acknowledgement, walk test, wiring supervision and chatter;
and the alarm-path review (fixed in bae7511): an ack cancels the call queued behind the
SMS; losing the link while waiting for the ack calls only once; a restart resumes an
escalation without repeating what succeeded nor cutting the grace period short, and ends
the walk test; a failed SMS is retried after call_retry_delay_s, and at once when the
modem recovers.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.mqtt import (
    Mosquitto,
    SessionSubscriber,
    Subscriber,
    SubscriberFactory,
    dead_broker_url,
    persistent_broker,
)
from tests.support.site import Keys, ThreadedSite, command, make_keys, on_fake_clock, site_dict
from tests.support.wait import wait_until

ROOT = "ansim/v1"
BUTTON = "panic-1"
SMS_TO = "+821011112222"
POLICE = "112"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def shelter(
    site: str, url: str, data: Path, keys: Keys, modem: dict[str, Any] | None = None, **esc: Any
) -> dict[str, Any]:
    d = site_dict(site, url, data, keys, debounce_ms=0)
    d["site"]["address"] = "서울특별시 강남구 테헤란로 123"
    d["devices"]["modem"] = {"url": "/dev/null", "check_interval_s": 1, **(modem or {})}
    d["escalation"] = {
        "escalate_after_s": 15,
        "sms_numbers": [SMS_TO],
        "call_number": POLICE,
        "call_attempts": 3,
        "call_retry_delay_s": 5,
        "ring_timeout_s": 5,
        "talk_s": 0.2,
        **esc,
    }
    return d


def alarm_id(s: ThreadedSite) -> str:
    bank = s.site.devices.get("panic")
    assert bank is not None
    return str(s.call(lambda: bank.machine.s.alarm_id))


def online(sub: Subscriber, site: str) -> None:
    sub.wait_for(lambda m: m.topic == f"{ROOT}/{site}/status" and m.json["state"] == "online")


def caught_up(sub: Subscriber, r: ThreadedSite) -> None:
    """Wait until the subscriber has every event the site recorded so far (a negative
    check on published events is only meaningful after this)."""
    last = r.last_seq()
    sub.wait_for(lambda m: "/events/" in m.topic and m.json["seq"] >= last)


def escalated(sub: Subscriber, **match: Any) -> list[dict[str, Any]]:
    return [
        m.json["data"]
        for m in sub.messages(f"{ROOT}/+/events/alarm/escalated")
        if all(m.json["data"].get(k) == v for k, v in match.items())
    ]


# --------------------------------------------------------------------------- escalation


def test_no_ack_escalates_after_the_delay_with_sms_and_call(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    site = "esc-delay"
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with on_fake_clock(shelter(site, mosquitto.url, tmp_path / "d", keys)) as s:
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
        assert site in text and alarm_id(s)[:8] in text and "테헤란로" in text
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
        with on_fake_clock(shelter(site, broker.url, tmp_path / "d", keys)) as s:
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
    with on_fake_clock(shelter(site, mosquitto.url, tmp_path / "d", keys)) as s:
        online(sub, site)
        s.modem.set_callee("busy")
        s.hw.set_input("panic-1", True)
        sub.wait_for(f"{ROOT}/{site}/events/alarm/raised")
        s.advance(16)
        wait_until(lambda: escalated(sub, channel="call", outcome="busy"), timeout=15)
        cmd = command(
            "alarm.ack", {"alarm_id": alarm_id(s), "by": "officer"}, keys.centre, site=site
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
    with on_fake_clock(shelter(site, mosquitto.url, tmp_path / "d", keys, call_attempts=2)) as s:
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
    with on_fake_clock(shelter(site, mosquitto.url, tmp_path / "d", keys)) as s:
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
    with on_fake_clock(shelter(site, mosquitto.url, tmp_path / "d", keys)) as s:
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
    with on_fake_clock(cfg) as s:
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
    with on_fake_clock(cfg) as s:
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


# --------------------------------------------------------------------------- ack


def test_ack_cancels_the_call_queued_behind_the_sms(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory, keys: Keys, tmp_path: Path
) -> None:
    site = "rev-ack"
    sub = subscriber_factory([f"{ROOT}/{site}/#"])
    # The SMS takes 1.5 s to go out: the call waits behind it in the modem's queue.
    with on_fake_clock(shelter(site, mosquitto.url, tmp_path / "d", keys), sms_delay_s=1.5) as r:
        online(sub, site)
        r.set_input(BUTTON, True)
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
            return [e for e in escalated(sub, channel="call") if e["outcome"] != "attempt"]

        [call] = wait_until(call_ended, message="the queued call is answered by the driver")
        assert call["outcome"] == "cancelled" and call["detail"] == "cancelled"
        wait_until(lambda: escalated(sub, channel="sms", outcome="sent"), message="SMS sent")
        r.advance(30)  # a retry would be due by now
        r.advance(30)
        caught_up(sub, r)
        assert len(escalated(sub, channel="call", outcome="attempt")) == 1
        assert r.calls() == []  # 112 was never dialled for the acknowledged alarm


# --------------------------------------------------------------------------- link loss


def test_link_lost_while_waiting_for_the_ack_calls_only_once(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory, keys: Keys, tmp_path: Path
) -> None:
    site = "rev-link"
    sub = subscriber_factory([f"{ROOT}/{site}/#"])
    with on_fake_clock(shelter(site, mosquitto.url, tmp_path / "d", keys)) as r:
        online(sub, site)
        r.set_input(BUTTON, True)
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


# --------------------------------------------------------------------------- restart


def test_restart_resumes_the_calls_and_does_not_repeat_the_sms(keys: Keys, tmp_path: Path) -> None:
    cfg = shelter("rev-restart", dead_broker_url(), tmp_path / "d", keys, call_retry_delay_s=10)
    with on_fake_clock(cfg) as r1:
        r1.modem.set_callee("busy")
        r1.set_input(BUTTON, True)  # link down at the press: SMS and call at once
        wait_until(lambda: r1.escalated(channel="sms", outcome="sent"), message="SMS sent")
        wait_until(lambda: r1.escalated(channel="call", outcome="busy"), message="call 1 busy")
        alarm_id = r1.alarm()["alarm_id"]
        mark = r1.last_seq()
        later = r1.clock.now() + timedelta(seconds=3)
    # The daemon restarts before the retry (due in call_retry_delay_s) was made.
    with on_fake_clock(cfg, start=later) as r2:
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
    with on_fake_clock(cfg) as r1:
        online(sub, site)
        r1.set_input(BUTTON, True)
        alarm_id = sub.wait_for(f"{ROOT}/{site}/events/alarm/raised").json["data"]["alarm_id"]
        r1.advance(100)
        later = r1.clock.now() + timedelta(seconds=5)  # 105 s of the 600 s gone
    with on_fake_clock(cfg, start=later) as r2:
        sub.wait_for(
            lambda m: (
                m.topic.endswith("/events/site/started")
                and m.json["data"]["restored_alarm"] == alarm_id
            )
        )
        caught_up(sub, r2)
        assert escalated(sub) == []  # nothing at boot
        r2.advance(480)  # 585 s after the press
        r2.advance(10)  # 595 s
        caught_up(sub, r2)
        assert escalated(sub) == [] and r2.sms() == []
        r2.advance(6)  # 601 s
        wait_until(lambda: escalated(sub, channel="call", outcome="answered"), message="call")
        assert len(r2.sms()) == 1 and r2.sms()[0]["number"] == SMS_TO
        assert {e["alarm_id"] for e in escalated(sub)} == {alarm_id}


def test_a_restart_ends_the_walk_test(keys: Keys, tmp_path: Path) -> None:
    cfg = shelter("rev-walk", dead_broker_url(), tmp_path / "d", keys)
    with on_fake_clock(cfg) as r1:
        for _ in range(3):  # three reset-key turns: walk test on (30 minutes)
            r1.set_input("reset_key", True)
            r1.set_input("reset_key", False)
        [on] = r1.events("site.test_mode")
        assert on["data"]["on"] is True and on["data"]["by"] == "reset_key"
        assert r1.alarm()["test_mode_until"] is not None
        mark = r1.last_seq()
        later = r1.clock.now() + timedelta(seconds=60)
    with on_fake_clock(cfg, start=later) as r2:
        [off] = r2.events("site.test_mode", mark)
        assert off["data"] == {"on": False, "until": None, "by": "restart"}
        assert r2.alarm()["test_mode_until"] is None
        r2.set_input(BUTTON, True)  # a real press after the restart is a real alarm
        [raised] = r2.events("alarm.raised", mark)
        assert raised["data"]["test"] is False
        assert r2.escalated(mark, channel="sms", outcome="attempt")  # link down: at once


# --------------------------------------------------------------------------- SMS retry


def test_a_failed_sms_is_retried_after_the_retry_delay(keys: Keys, tmp_path: Path) -> None:
    cfg = shelter(
        "rev-sms", dead_broker_url(), tmp_path / "d", keys, call_number=None, call_retry_delay_s=10
    )
    with on_fake_clock(cfg) as r:
        r.modem.set_sms_fail(True)
        r.set_input(BUTTON, True)
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
        "rev-recover", dead_broker_url(), tmp_path / "d", keys, modem={"command_timeout_s": 0.3}
    )
    with on_fake_clock(cfg) as r:
        r.modem.set_silent(True)  # the module hangs
        wait_until(lambda: r.events("modem.fault"), message="modem fault")
        r.set_input(BUTTON, True)
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
