"""Uplink pieces that need no broker: backoff, callbacks that never raise."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from edge.config import BrokerConfig
from edge.uplink import Uplink, backoff_delay


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

    def uplink_disconnected(self, reason: str) -> None:
        self.calls.append("disconnected")

    def uplink_acked(self, mid: int, ok: bool) -> None:
        self.calls.append(f"acked {mid} {ok}")

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
    up._on_message(up.client, None, Msg())  # type: ignore[arg-type]
    assert listener.calls == []  # nothing ran on the network thread
    for job in jobs:
        job()
    assert listener.calls == ["acked 7 True", "message a/b"]

    def exploding_post(job: Any) -> None:
        raise RuntimeError("queue broken")

    up2, _ = _uplink(exploding_post)
    # Even when handing over fails, the callback must not raise into paho's thread.
    up2._on_publish(up2.client, None, 1, Rc(), None)
    up2._on_message(up2.client, None, Msg())  # type: ignore[arg-type]
    up2._on_connect(up2.client, None, None, Rc(), None)


def test_publish_when_disconnected_queues_nothing() -> None:
    up, _ = _uplink(lambda job: None)
    assert up.publish("t", b"x") is None


@pytest.mark.parametrize("url", ["http://h:1", "mqtt://", "mqtt://h:99999", "mqtt://u:p@h:1"])
def test_bad_broker_urls_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        BrokerConfig(url=url)
