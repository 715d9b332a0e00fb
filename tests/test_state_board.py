"""Retained device states (edge.core.state.StateBoard): a change is published by ``flush``
(after the batch's events), the last state of a device in a batch wins, nothing is
published offline, and a reconnect publishes every state once."""

from __future__ import annotations

import json

from edge.core.clock import FakeClock
from edge.core.state import StateBoard
from edge.core.topics import Topics


class Recorder:
    """The publisher side: what was published, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object], bool]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        self.sent.append((topic.rsplit("/", 1)[1], json.loads(payload), retain))
        return len(self.sent)


def board() -> tuple[StateBoard, Recorder]:
    rec = Recorder()
    b = StateBoard(Topics("ansim/v1", "state-0001"), FakeClock(), rec)
    return b, rec


def test_a_change_is_published_at_the_flush_not_before() -> None:
    b, rec = board()
    b.on_connected()
    b.set("alarm", {"state": "active"})
    assert rec.sent == [] and b.get("alarm") == {"state": "active"}
    b.flush()
    assert [(d, s["state"], r) for d, s, r in rec.sent] == [("alarm", "active", True)]
    b.flush()
    assert len(rec.sent) == 1  # nothing changed since


def test_in_one_batch_the_last_state_wins_and_the_order_is_the_changes() -> None:
    b, rec = board()
    b.on_connected()
    b.set("panic-1", {"active": True})
    b.set("alarm", {"state": "active"})
    b.set("panic-1", {"active": False})
    b.set("sent_led", {"on": True})
    b.flush()
    assert [(d, s.get("active", s.get("state", s.get("on")))) for d, s, _ in rec.sent] == [
        ("panic-1", False),
        ("alarm", "active"),
        ("sent_led", True),
    ]


def test_offline_changes_wait_for_the_reconnect_which_sends_every_state_once() -> None:
    b, rec = board()
    b.on_connected()
    b.set("alarm", {"state": "idle"})
    b.flush()
    b.set("alarm", {"state": "active"})
    b.on_disconnected()  # before the flush: dropped here, sent by the reconnect
    b.set("sent_led", {"on": True})
    b.flush()
    assert [d for d, _, _ in rec.sent] == ["alarm"]
    b.on_connected()
    b.flush()
    assert [(d, s) for d, s, _ in rec.sent[1:]] == [
        ("alarm", {"state": "active", "device": "alarm", "ts": rec.sent[1][1]["ts"]}),
        ("sent_led", {"on": True, "device": "sent_led", "ts": rec.sent[2][1]["ts"]}),
    ]
