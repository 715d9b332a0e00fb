"""Uplink pieces that need no broker: backoff, callbacks that never raise."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge.config import BrokerConfig
from edge.core.uplink import ConnectFailures, LinkMonitor, Uplink, backoff_delay


def test_full_jitter_backoff_bounds_and_spread() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        cap = min(120.0, 1.0 * 2**attempt)
        samples = [backoff_delay(attempt, 1.0, 120.0, rng) for _ in range(400)]
        assert all(0.0 <= s <= cap for s in samples)
        # Full jitter: spread over the whole window, not clustered at the cap.
        assert min(samples) < cap * 0.1 and max(samples) > cap * 0.9


def test_fleet_does_not_reconnect_in_lockstep() -> None:
    # 1000 sites, same attempt: their delays must not coincide.
    delays = [backoff_delay(5, 1.0, 120.0, random.Random(i)) for i in range(1000)]
    buckets = {int(d) for d in delays}  # 1-second buckets over a 32 s window
    assert len(buckets) >= 30


class _Listener:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def uplink_connected(self) -> None:
        self.calls.append("connected")

    def uplink_disconnected(self, reason: str, dead_link: bool = False) -> None:
        self.calls.append(f"disconnected {reason}" + (" (dead link)" if dead_link else ""))

    def uplink_failed(self, reason: str, broker: str | None = None) -> None:
        self.calls.append(f"failed {reason}")

    def uplink_acked(self, mid: int, ok: bool, reason: str | None = None) -> None:
        self.calls.append(f"acked {mid} {ok}" + (f" {reason}" if reason else ""))

    def uplink_message(self, topic: str, payload: bytes) -> None:
        self.calls.append(f"message {topic}")


def _uplink(post: Callable[[Any], None]) -> tuple[Uplink, _Listener]:
    listener = _Listener()
    up = Uplink(
        BrokerConfig(url="mqtt://127.0.0.1:1"),
        client_id="t",
        post=post,
        listener=listener,
        subscriptions=["a/#"],
        will=lambda: ("s", b"offline"),
    )
    return up, listener


def test_paho_callbacks_only_post_and_never_raise() -> None:
    jobs: list[Any] = []
    up, listener = _uplink(jobs.append)

    class Rc:
        is_failure = False

    class Msg:
        topic = "a/b"
        payload = b"x"

    up._on_publish(up.client, None, 7, Rc(), None)
    up._on_publish(up.client, None, 8, Rc(), None)
    up._on_message(up.client, None, Msg())  # type: ignore[arg-type]
    assert len(jobs) == 1  # the message; PUBACKs wait for the end of the loop turn
    up._hand_over_acks()  # the end of the network thread's loop turn
    up._hand_over_acks()  # nothing new: no second job
    assert len(jobs) == 2
    assert listener.calls == []  # nothing ran on the network thread
    for job in jobs:
        job()
    assert listener.calls == ["message a/b", "acked 7 True", "acked 8 True"]

    def exploding_post(job: Any) -> None:
        raise RuntimeError("queue broken")

    up2, _ = _uplink(exploding_post)
    # Even when handing over fails, the callback must not raise into paho's thread.
    up2._on_publish(up2.client, None, 1, Rc(), None)
    up2._hand_over_acks()
    up2._on_message(up2.client, None, Msg())  # type: ignore[arg-type]
    up2._on_connect(up2.client, None, None, Rc(), None)


def test_connect_failures_are_counted_kept_and_logged_rate_limited() -> None:
    f = ConnectFailures(every_s=60)
    t0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert f.snapshot() == {
        "connect_failures": 0,
        "failures_in_a_row": 0,
        "last_failure": None,
        "last_failure_at": None,
    }
    # The first failure is logged at once.
    assert f.failed("refused", 0.0, t0) == {"reason": "refused", "failures": 1, "suppressed": 0}
    # 51 attempts in 40 s (as in the field): the rest of that minute is one count.
    for i in range(1, 51):
        assert f.failed("unknown ca", i * 0.8, t0 + timedelta(seconds=i * 0.8)) is None
    assert f.snapshot() == {
        "connect_failures": 51,
        "failures_in_a_row": 51,
        "last_failure": "unknown ca",
        "last_failure_at": "2026-11-25T09:00:40.000Z",
    }
    line = f.failed("unknown ca", 60.0, t0 + timedelta(seconds=60))
    assert line == {"reason": "unknown ca", "failures": 52, "suppressed": 50}
    assert f.failed("unknown ca", 119.9, t0) is None
    assert f.failed("unknown ca", 120.0, t0) == {
        "reason": "unknown ca",
        "failures": 54,
        "suppressed": 1,
    }
    # A success ends the run: the next failure is logged at once and counts from 1; the
    # total and the last reason stay.
    assert f.connected() == 54
    assert f.snapshot()["failures_in_a_row"] == 0
    assert f.snapshot()["last_failure"] == "unknown ca"
    assert f.failed("reset", 121.0, t0) == {"reason": "reset", "failures": 1, "suppressed": 0}
    assert f.snapshot()["connect_failures"] == 55
    assert f.connected() == 1 and f.connected() == 0


def test_refusal_and_paho_errors_become_the_reason() -> None:
    jobs: list[Any] = []
    up, listener = _uplink(jobs.append)

    class Refused:
        is_failure = True

        def __str__(self) -> str:
            return "Not authorized"

    up._on_connect(up.client, None, None, Refused(), None)
    assert up._refused == "CONNACK refused: Not authorized"
    assert not up.connected and jobs == []  # reported by the network loop, once
    # paho tells why a socket broke only in its log: the uplink keeps its last error line.
    up.client._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", "tlsv1 alert")
    up.client._easy_log(mqtt.MQTT_LOG_DEBUG, "Sending PINGREQ")
    assert up._paho_error.text == "failed to receive on socket: tlsv1 alert"

    class Lost:
        is_failure = True

        def __str__(self) -> str:
            return "Unspecified error"

    class Flags:
        is_disconnect_packet_from_server = False

    up._connected.set()
    up._on_disconnect(up.client, None, Flags(), Lost(), None)
    for job in jobs:
        job()
    assert listener.calls == ["disconnected failed to receive on socket: tlsv1 alert"]


def test_publish_when_disconnected_queues_nothing() -> None:
    up, _ = _uplink(lambda job: None)
    assert up.publish("t", b"x") is None


@pytest.mark.parametrize("url", ["http://h:1", "mqtt://", "mqtt://h:99999", "mqtt://u:p@h:1"])
def test_bad_broker_urls_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        BrokerConfig(url=url)


# --------------------------------------------------------------------------- dead link


def test_a_silent_link_is_dead_within_1_5_keepalive_idle_or_busy() -> None:
    """Issue 9.5: keepalive 10: a heartbeat after 5 s without anything from the broker,
    dead 7.5 s after the first unanswered publish."""
    m = LinkMonitor(10)
    m.connected(100.0)
    assert m.due(104.9) is None
    assert m.due(105.0) == "heartbeat"  # idle 5 s: probe
    m.sent(105.0)
    assert m.due(105.05) is None  # no second heartbeat while one is out
    m.acked(105.1)  # its PUBACK: alive
    assert m.due(110.0) is None and m.due(110.1) == "heartbeat"
    # The link goes silent at 110.5; the heartbeat at 110.1 is never answered.
    m.sent(110.1)
    assert m.due(117.5) is None
    assert m.due(117.6) == "dead"  # 7.1 s after the silence began, within 15 s


def test_acks_keep_a_busy_link_alive_and_their_absence_kills_it() -> None:
    m = LinkMonitor(10)
    m.connected(0.0)
    for t in range(100):  # a publish every second, each acknowledged 0.5 s later
        m.sent(float(t))
        assert m.due(t + 0.4) is None
        m.acked(t + 0.5)
    # 100 in flight, PUBACKs keep coming (older ones still outstanding): alive.
    for t in range(100, 110):
        m.sent(float(t))
        m.sent(t + 0.1)
        m.acked(t + 0.5)
        assert m.due(t + 0.9) is None
    # PUBACKs stop at 109.5 while messages are outstanding: dead 7.5 s later.
    assert m.due(116.9) is None
    assert m.due(117.0) == "dead"


def test_the_pubacks_of_one_loop_turn_count_together() -> None:
    """The network thread reports the PUBACKs of a loop turn at once (Uplink._hand_over_acks):
    three answered of four in flight still leave one outstanding; the fourth clears it."""
    m = LinkMonitor(10)
    m.connected(0.0)
    for _ in range(4):
        m.sent(1.0)
    m.acked(1.5, 3)
    assert m.due(8.9) is None and m.due(9.0) == "dead"  # the fourth, unanswered since 1.5
    m.acked(9.5, 1)
    assert m.due(14.4) is None and m.due(14.5) == "heartbeat"  # idle 5 s, nothing in flight


def test_a_failed_send_and_a_message_from_the_broker_count() -> None:
    m = LinkMonitor(10)
    m.connected(0.0)
    m.sent(1.0)
    m.unsent()  # the publish failed: nothing is awaited
    assert m.due(8.6) == "heartbeat"
    m.connected(10.0)
    m.inbound(14.0)  # a command arrived
    assert m.due(18.9) is None and m.due(19.0) == "heartbeat"
