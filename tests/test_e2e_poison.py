"""Issue 9.4 end to end, on real brokers: a message the broker will not take never blocks
the ones behind it.

- mosquitto under MQTT 5 with an ACL that denies one topic answers its publish with PUBACK
  0x87 (Not authorized); the site used to delete the row (the alarm was lost without a
  trace); now it moves it to the dead letters, reports ``outbox.rejected`` and escalates
  the alarm over the modem.
- NATS closes the connection on a topic with a '.' (as AWS IoT does for a topic its policy
  denies); the site used to reconnect forever with that message at the head of its outbox.
  A store written by an older version (a dotted topic in the outbox) shows it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge.core.store import PRIO_ALARM, Store
from tests.support.brokers import NatsCluster
from tests.support.mqtt import Mosquitto, Subscriber
from tests.support.site import Keys, ThreadedSite, make_keys, site_dict
from tests.support.wait import wait_until

ROOT = "ansim/v1"
SMS_TO = "+821055556666"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def shelter(site: str, url: str, data: Path, keys: Keys, protocol: str) -> dict[str, Any]:
    d = site_dict(site, url, data, keys, protocol=protocol, debounce_ms=0)
    d["devices"]["modem"] = {"url": "/dev/null", "check_interval_s": 1}
    d["escalation"] = {"escalate_after_s": 600, "sms_numbers": [SMS_TO], "talk_s": 0.2}
    return d


def test_mqtt5_refused_alarm_is_kept_reported_and_escalated(
    mosquitto_factory: Callable[..., Mosquitto], keys: Keys, tmp_path: Path
) -> None:
    site = "poison-acl"
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite #\ntopic deny {ROOT}/+/events/alarm/raised\n")
    broker = mosquitto_factory(acl_file=acl)
    sub = Subscriber.for_broker(broker, [f"{ROOT}/{site}/#"], protocol="5")
    with ThreadedSite(shelter(site, broker.url, tmp_path / "d", keys, "5")) as rs:
        sub.wait_for(lambda m: m.topic.endswith("/status") and m.json["state"] == "online")
        wait_until(
            lambda: (rs.state("modem") or {}).get("registered"),
            message="modem registered",
        )
        rs.press()
        report = sub.wait_for(f"{ROOT}/{site}/events/outbox/rejected", timeout=20).json
        data = report["data"]
        assert data["type"] == "alarm.raised" and data["count"] == 1
        assert data["reason"] == "refused by the broker: PUBACK Not authorized (0x87)"
        [dl] = rs.site.call(rs.site.store.dead_letters)  # type: ignore[misc]
        assert dl.seq == data["first_seq"] == data["last_seq"] and dl.id in data["dead_letters"]
        assert json.loads(dl.payload)["type"] == "alarm.raised"
        # The centre does not hear of the alarm: escalated over the modem at once.
        modem = rs.modem
        assert modem is not None
        sms = wait_until(lambda: modem.snapshot()["sms"], message="an SMS for the alarm")
        assert sms[0]["number"] == SMS_TO
        assert not rs.output("sent_led")
        # The outbox drains on: the clear after the reset key goes through.
        rs.hw.set_input("reset_key", True)
        rs.hw.set_input("reset_key", False)
        sub.wait_for(f"{ROOT}/{site}/events/alarm/cleared", timeout=20)
        wait_until(lambda: rs.site.call(lambda: len(rs.site.store)) == 0, message="outbox empty")
    assert sub.messages(f"{ROOT}/{site}/events/alarm/raised") == []


def test_nats_closing_the_connection_on_one_message_does_not_block_the_alarm_behind_it(
    nats_cluster: NatsCluster, keys: Keys, tmp_path: Path
) -> None:
    site = "poison-nats"
    data_dir = tmp_path / "d"
    # An outbox left by an older version: its first message has a dotted topic.
    store = Store(data_dir / "ansim-edge.db")
    seq = store.next_seq()
    old = {"event_id": "old-1", "seq": seq, "site": site, "type": "alarm.raised", "data": {}}
    poison = store.append(
        f"{ROOT}/{site}/events/alarm.raised",
        json.dumps(old).encode(),
        PRIO_ALARM,
        seq=seq,
        event_id="old-1",
    )
    store.close()
    node = nats_cluster.node("site")
    centre = Subscriber.for_broker(nats_cluster.node("centre"), [f"{ROOT}/{site}/#"])
    cfg = shelter(site, node.url, data_dir, keys, "3.1.1")
    # 'Right after' is judged when the core thread handles the drop; on a loaded machine that
    # came more than the default 2 s after the send once, so that drop did not count and the
    # two-drops-in-a-row search began again (8 connections). The window is not what this
    # test is about (tests/test_dead_letters.py pins it with an injected clock).
    cfg["outbox"] = {"reject_window_s": 15}
    with ThreadedSite(cfg) as rs:
        rs.press()  # an alarm queued behind the message NATS refuses
        raised = centre.wait_for(f"{ROOT}/{site}/events/alarm/raised", timeout=60).json
        report = centre.wait_for(f"{ROOT}/{site}/events/outbox/rejected", timeout=30).json
        assert report["data"] == {
            "count": 1,
            "type": "alarm.raised",
            "reason": "the broker closed the connection right after it was sent, 3 times in a row",
            "first_seq": seq,
            "last_seq": seq,
            "dead_letters": [poison],
        }
        assert raised["seq"] > seq
        wait_until(lambda: rs.output("sent_led"), message="sent lamp: the alarm was delivered")
        wait_until(lambda: rs.site.call(lambda: len(rs.site.store)) == 0, message="outbox empty")
        # The refused one is kept; the site drains normally afterwards (one connection).
        [dl] = rs.site.call(rs.site.store.dead_letters)  # type: ignore[misc]
        assert (dl.id, dl.event_id, dl.topic) == (
            poison,
            "old-1",
            f"{ROOT}/{site}/events/alarm.raised",
        )
        online = centre.messages(
            lambda m: m.topic.endswith("/status") and m.json["state"] == "online"
        )
        assert len(online) <= 7, f"{len(online)} connections"
    log = node.log_text()
    assert log.count("characters ' ' and '.' not supported for MQTT topics") >= 3
