"""The durable store and the outbox on top of it: sequence numbers, commit-before-publish,
priorities, PUBACK handling, redelivery, the in-flight window and the overflow policy."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from edge.core.clock import FakeClock
from edge.core.outbox import Outbox, UnknownEventError
from edge.core.store import PRIO_ALARM, PRIO_EVENT, PRIO_RESULT, Store
from edge.core.topics import Topics
from edge.devices.panic.events import AlarmRaised
from edge.devices.registry import EVENT_DATA
from tests.support.events import ALARM, NORMAL, TEST_EVENTS, Alarm, Normal, Note

TOPICS = Topics("ansim/v1", "shelter-1")


class Unregistered(Normal):
    TYPE = "test.unregistered"


class Imposter(Normal):
    TYPE = "alarm.raised"


@dataclass
class Sent:
    mid: int
    topic: str
    payload: bytes
    qos: int

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed


class FakePublisher:
    """Returns increasing mids while `up`, None (link down) otherwise."""

    def __init__(self) -> None:
        self.up = True
        self.sent: list[Sent] = []
        self._mid = 0
        self.on_publish: list[Any] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        if not self.up:
            return None
        for hook in self.on_publish:
            hook(topic, payload)
        self._mid += 1
        self.sent.append(Sent(self._mid, topic, payload, qos))
        return self._mid


class Rig:
    def __init__(self, path: Path, **store_kw: Any) -> None:
        self.path = path
        self.store_kw = store_kw
        self.clock = FakeClock()
        self.pub = FakePublisher()
        self.delivered: list[str] = []
        self.open()

    def open(self, window: int = 100) -> None:
        self.store = Store(self.path, **self.store_kw)
        self.outbox = Outbox(
            self.store, TOPICS, self.clock, self.pub, window=window, events=TEST_EVENTS
        )
        self.outbox.delivered_listeners.append(self.delivered.append)

    def reopen(self, window: int = 100) -> None:
        self.store.close()
        self.open(window)

    def batch(self) -> None:
        """What the site does after every core batch: commit, then drain."""
        self.store.commit()
        self.outbox.drain()

    def stored(self) -> list[dict[str, Any]]:
        """Everything in the outbox, in drain order, parsed."""
        return [json.loads(p.payload) for p in self.store.pending(1_000_000)]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path / "store.db")
    yield r
    r.store.close()


def other_connection(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def committed_rows(path: Path) -> int:
    db = other_connection(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


# --------------------------------------------------------------------------- sequence


def test_seq_increments_by_one_and_continues_after_reopen(rig: Rig) -> None:
    seqs = [rig.outbox.emit("door", Normal(i=i)).seq for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    rig.batch()
    rig.reopen()
    assert rig.store.last_seq() == 5
    assert [rig.outbox.emit("door", Normal()).seq for _ in range(3)] == [6, 7, 8]
    rig.reopen()
    assert rig.outbox.emit("door", Normal()).seq == 9


def test_seq_is_shared_by_all_event_types_and_priorities(rig: Rig) -> None:
    a = rig.outbox.emit("panic", Alarm(), alarm=True)
    rig.outbox.put_result(b'{"ok":true}')  # results carry no seq
    b = rig.outbox.emit("door", Normal())
    assert (a.seq, b.seq) == (1, 2)


def test_event_envelope(rig: Rig) -> None:
    rig.clock.advance(1.2345)
    data = {"alarm_id": "x", "button": "panic", "mode": "silent", "test": False, "cameras": []}
    ev = rig.outbox.emit("panic", AlarmRaised(**data), alarm=True, event_id="e-1")
    [p] = rig.store.pending(10)
    assert p.topic == "ansim/v1/shelter-1/events/alarm/raised"
    assert p.event_id == "e-1"
    assert json.loads(p.payload) == {
        "event_id": "e-1",
        "seq": 1,
        "site": "shelter-1",
        "device": "panic",
        "type": "alarm.raised",
        "ts": "2026-01-01T00:00:01.234Z",
        "data": data,
    }
    assert ev.event_id == "e-1"
    # a generated event_id is a fresh UUID each time
    ids = {rig.outbox.emit("d", Normal()).event_id for _ in range(3)}
    assert len(ids) == 3 and "e-1" not in ids


def test_an_unregistered_event_type_is_refused_and_nothing_is_stored(rig: Rig) -> None:
    rig.outbox.emit("door", Normal(n=1))
    with pytest.raises(UnknownEventError, match=r"test\.unregistered"):
        rig.outbox.emit("door", Unregistered(n=2))
    # a registered type name carried by another model is refused too (no look-alikes)
    with pytest.raises(UnknownEventError, match=r"alarm\.raised"):
        rig.outbox.emit("door", Imposter(alarm_id="x"))
    # and untyped data (a plain dict) is no event at all
    with pytest.raises(UnknownEventError):
        rig.outbox.emit("door", {"type": "test.normal"})  # type: ignore[arg-type]
    rig.store.commit()
    assert [e["type"] for e in rig.stored()] == [NORMAL]
    assert rig.outbox.emit("door", Normal(n=3)).seq == 2  # no seq was used up


def test_the_site_registry_knows_every_event_model_once() -> None:
    assert all(t == m.TYPE for t, m in EVENT_DATA.items())
    assert len({m for m in EVENT_DATA.values()}) == len(EVENT_DATA)


def test_korean_data_is_stored_as_utf8(rig: Rig) -> None:
    rig.outbox.emit("site", Note(by="관제센터"))
    [p] = rig.store.pending(1)
    assert "관제센터".encode() in p.payload


# --------------------------------------------------------------------------- commit / publish


def test_emit_publishes_nothing_and_drain_publishes_only_committed_rows(rig: Rig) -> None:
    seen_committed: list[int] = []
    rig.pub.on_publish.append(
        lambda topic, payload: seen_committed.append(committed_rows(rig.path))
    )
    rig.outbox.on_connected()
    rig.outbox.emit("door", Normal())
    rig.outbox.emit("panic", Alarm(), alarm=True)
    assert rig.pub.sent == []
    assert committed_rows(rig.path) == 0  # group durability: not yet on disk
    rig.batch()
    assert len(rig.pub.sent) == 2
    assert seen_committed == [2, 2]  # every publish saw its row committed


def test_nothing_published_while_offline(rig: Rig) -> None:
    rig.outbox.emit("door", Normal())
    rig.batch()
    assert rig.pub.sent == []
    rig.outbox.on_connected()
    rig.outbox.drain()
    assert len(rig.pub.sent) == 1 and rig.pub.sent[0].qos == 1


def test_group_durability_commits_only_on_commit(rig: Rig) -> None:
    rig.outbox.emit("door", Normal())
    assert rig.store.has_uncommitted
    assert committed_rows(rig.path) == 0
    rig.store.commit()
    assert not rig.store.has_uncommitted
    assert committed_rows(rig.path) == 1


class OutboxReads:
    """Counts the reads of the outbox table on connections made through ``connect``."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    def connect(self, *args: Any, **kw: Any) -> sqlite3.Connection:
        db = sqlite3.connect(*args, **kw)
        db.set_trace_callback(self.statements.append)
        return db

    def __call__(self) -> int:
        """Reads since the last call."""
        n = sum(1 for s in self.statements if s.startswith("SELECT") and "FROM outbox" in s)
        self.statements.clear()
        return n


def test_pending_reads_the_file_only_for_priorities_with_rows_beyond_those_in_flight(
    tmp_path: Path,
) -> None:
    """One query per priority that has something to send, none for the others (a drain
    after every burst of PUBACKs asked all three)."""
    reads = OutboxReads()

    path = tmp_path / "store.db"
    store = Store(path, connect=reads.connect)
    try:
        for i in range(3):
            store.append("t/normal", b"n", PRIO_EVENT, seq=i + 1)
        store.commit()
        reads()
        rows = store.pending(10)
        assert [r.priority for r in rows] == [PRIO_EVENT] * 3
        assert reads() == 1  # not the alarms' nor the results'
        in_flight = {PRIO_EVENT: rows[-1].id}
        assert store.pending(10, in_flight) == []
        assert reads() == 0
        store.append("t/alarm", b"a", PRIO_ALARM, seq=4)
        store.commit()
        assert [r.payload for r in store.pending(10, in_flight)] == [b"a"]
        assert reads() == 1
    finally:
        store.close()
    reopened = Store(path)  # what is in the file at start is found
    try:
        assert [r.payload for r in reopened.pending(10)] == [b"a", b"n", b"n", b"n"]
    finally:
        reopened.close()


def test_rows_stored_since_a_full_read_are_handed_out_without_reading_the_file(
    tmp_path: Path,
) -> None:
    """The drain after every commit takes what the core has just written from memory, not
    back from the file; the file is read again after a reconnect (rows in flight are sent
    again) and once more rows wait than memory keeps."""
    reads = OutboxReads()

    store = Store(tmp_path / "store.db", connect=reads.connect)
    try:
        store.append("t", b"0", PRIO_EVENT, seq=1)
        store.commit()
        reads()
        first = store.pending(10)
        assert [r.payload for r in first] == [b"0"]
        assert reads() == 1  # the first read finds every row: from now on they are known
        in_flight = {PRIO_EVENT: first[-1].id}
        for i in range(1, 6):
            store.append("t", str(i).encode(), PRIO_EVENT, seq=i + 1)
        store.commit()
        two = store.pending(2, in_flight)
        in_flight[PRIO_EVENT] = two[-1].id
        rest = store.pending(10, in_flight)
        assert [r.payload for r in two + rest] == [b"1", b"2", b"3", b"4", b"5"]
        assert reads() == 0
        store.delete(first[0].id)
        store.delete(two[0].id)
        store.commit()
        # reconnect: everything unacknowledged again, from the file
        assert [r.payload for r in store.pending(10)] == [b"2", b"3", b"4", b"5"]
        assert reads() == 1
        # more waiting than memory keeps: read from the file again
        in_flight = {PRIO_EVENT: rest[-1].id}
        many = store.TXN_MAX_ROWS + 1
        for i in range(many):
            store.append("t", b"m", PRIO_EVENT, seq=100 + i)
        store.commit()
        assert len(store.pending(many + 10, in_flight)) == many
        assert reads() == 1
    finally:
        store.close()


def test_per_event_durability_commits_each_append(tmp_path: Path) -> None:
    r = Rig(tmp_path / "store.db", durability="per_event")
    try:
        for i in range(1, 4):
            r.outbox.emit("door", Normal(i=i))
            assert committed_rows(r.path) == i
            db = other_connection(r.path)
            seq = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]
            db.close()
            assert seq == i  # the sequence counter is committed with it
        r.outbox.put_result(b"{}")
        assert committed_rows(r.path) == 4
    finally:
        r.store.close()


def test_uncommitted_events_are_lost_with_the_process_but_committed_ones_survive(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    r = Rig(path)
    r.outbox.emit("door", Normal(n=1))
    r.store.commit()
    r.outbox.emit("door", Normal(n=2))
    # A second process (crash recovery) sees only the committed one.
    survivor = Store(tmp_path / "store.db")  # opens the same file
    try:
        assert [json.loads(p.payload)["data"] for p in survivor.pending(10)] == [{"n": 1}]
    finally:
        survivor.close()
        r.store.close()


# --------------------------------------------------------------------------- priorities


def test_priority_order_alarms_first_fifo_within_priority(rig: Rig) -> None:
    rig.outbox.emit("door", Normal(n=1))
    rig.outbox.emit("door", Normal(n=2))
    rig.outbox.put_result(b'{"r":1}')
    rig.outbox.emit("panic", Alarm(n=3), alarm=True)
    rig.outbox.emit("door", Normal(n=4))
    rig.outbox.put_result(b'{"r":2}')
    rig.outbox.emit("panic", Alarm(n=5), alarm=True)
    rig.outbox.on_connected()
    rig.batch()
    got = [
        s.event["data"]["n"] if "events" in s.topic else s.payload.decode() for s in rig.pub.sent
    ]
    assert got == [3, 5, '{"r":1}', '{"r":2}', 1, 2, 4]
    assert rig.pub.sent[2].topic == "ansim/v1/shelter-1/results"


def test_priority_constants_order() -> None:
    assert PRIO_ALARM < PRIO_RESULT < PRIO_EVENT


# --------------------------------------------------------------------------- acks, redelivery


def test_on_acked_deletes_and_notifies_delivered(rig: Rig) -> None:
    a = rig.outbox.emit("panic", Alarm(), alarm=True)
    b = rig.outbox.emit("door", Normal())
    rig.outbox.on_connected()
    rig.batch()
    by_id = {s.event["event_id"]: s.mid for s in rig.pub.sent}
    rig.outbox.on_acked(by_id[b.event_id], True)
    assert rig.delivered == [b.event_id]
    assert [e["event_id"] for e in rig.stored()] == [a.event_id]
    assert len(rig.store) == 1
    rig.outbox.on_acked(by_id[a.event_id], True)
    assert rig.delivered == [b.event_id, a.event_id]
    assert len(rig.store) == 0 and rig.stored() == []
    assert rig.outbox.acked == 2 and rig.outbox.inflight == 0


def test_unknown_and_repeated_acks_are_ignored(rig: Rig) -> None:
    rig.outbox.emit("door", Normal())
    rig.outbox.emit("door", Normal())
    rig.outbox.on_connected()
    rig.batch()
    rig.outbox.on_acked(999, True)
    rig.outbox.on_acked(rig.pub.sent[0].mid, True)
    rig.outbox.on_acked(rig.pub.sent[0].mid, True)
    assert len(rig.store) == 1
    assert len(rig.delivered) == 1


def test_rejected_publish_is_dropped_without_delivered(rig: Rig) -> None:
    rig.outbox.emit("door", Normal())
    rig.outbox.on_connected()
    rig.batch()
    rig.outbox.on_acked(rig.pub.sent[0].mid, False)
    assert len(rig.store) == 0
    assert rig.delivered == []


def test_results_are_acked_without_delivered_notification(rig: Rig) -> None:
    rig.outbox.put_result(b'{"ok":true}')
    rig.outbox.on_connected()
    rig.batch()
    rig.outbox.on_acked(rig.pub.sent[0].mid, True)
    assert len(rig.store) == 0
    assert rig.delivered == []


def test_reconnect_redelivers_only_unacked(rig: Rig) -> None:
    events = [rig.outbox.emit("door", Normal(n=i)) for i in range(5)]
    rig.outbox.on_connected()
    rig.batch()
    assert len(rig.pub.sent) == 5
    rig.outbox.on_acked(rig.pub.sent[0].mid, True)
    rig.outbox.on_acked(rig.pub.sent[3].mid, True)
    rig.outbox.on_disconnected()
    rig.outbox.drain()  # offline: nothing
    assert len(rig.pub.sent) == 5
    rig.outbox.on_connected()
    rig.outbox.drain()
    again = rig.pub.sent[5:]
    expected = [events[i].event_id for i in (1, 2, 4)]
    assert [s.event["event_id"] for s in again] == expected
    assert [s.payload for s in again] == [rig.pub.sent[i].payload for i in (1, 2, 4)]
    # acks for mids of the old connection are ignored; new ones delete
    rig.outbox.on_acked(rig.pub.sent[1].mid, True)
    assert len(rig.store) == 3
    for s in again:
        rig.outbox.on_acked(s.mid, True)
    assert len(rig.store) == 0
    assert sorted(rig.delivered) == sorted(e.event_id for e in events)


def test_a_new_connection_republishes_unacked_even_without_a_disconnect_notice(
    rig: Rig,
) -> None:
    events = [rig.outbox.emit("door", Normal(n=i)) for i in range(3)]
    rig.outbox.on_connected()
    rig.batch()
    rig.outbox.on_acked(rig.pub.sent[0].mid, True)
    rig.outbox.on_connected()  # the link dropped and came back; only "connected" was seen
    rig.outbox.drain()
    assert [s.event["event_id"] for s in rig.pub.sent[3:]] == [e.event_id for e in events[1:]]


def test_drain_does_not_republish_in_flight_rows(rig: Rig) -> None:
    rig.outbox.emit("door", Normal())
    rig.outbox.on_connected()
    rig.batch()
    rig.batch()
    rig.batch()
    assert len(rig.pub.sent) == 1


def test_unacked_rows_survive_a_restart_and_are_sent_again(rig: Rig) -> None:
    ev = rig.outbox.emit("panic", Alarm(), alarm=True)
    rig.outbox.on_connected()
    rig.batch()
    rig.reopen()
    rig.outbox.on_connected()
    rig.batch()
    assert [s.event["event_id"] for s in rig.pub.sent] == [ev.event_id, ev.event_id]


def test_publisher_returning_none_stops_the_drain(rig: Rig) -> None:
    for i in range(3):
        rig.outbox.emit("door", Normal(n=i))
    rig.outbox.on_connected()
    rig.pub.up = False
    rig.batch()
    assert rig.pub.sent == [] and rig.outbox.inflight == 0
    rig.pub.up = True
    rig.outbox.drain()
    assert [s.event["data"]["n"] for s in rig.pub.sent] == [0, 1, 2]


def test_window_limits_in_flight(tmp_path: Path) -> None:
    r = Rig(tmp_path / "store.db")
    r.outbox.window = 3
    try:
        for i in range(10):
            r.outbox.emit("door", Normal(n=i))
        r.outbox.on_connected()
        r.batch()
        assert [s.event["data"]["n"] for s in r.pub.sent] == [0, 1, 2]
        assert r.outbox.inflight == 3
        r.batch()
        assert len(r.pub.sent) == 3
        r.outbox.on_acked(r.pub.sent[1].mid, True)
        r.batch()
        assert [s.event["data"]["n"] for s in r.pub.sent] == [0, 1, 2, 3]
        for s in list(r.pub.sent):
            r.outbox.on_acked(s.mid, True)
        r.batch()
        assert [s.event["data"]["n"] for s in r.pub.sent[4:]] == [4, 5, 6]
        assert r.outbox.inflight == 3
    finally:
        r.store.close()


def test_alarm_emitted_while_window_full_goes_next(tmp_path: Path) -> None:
    r = Rig(tmp_path / "store.db")
    r.outbox.window = 2
    try:
        for i in range(5):
            r.outbox.emit("door", Normal(n=i))
        r.outbox.on_connected()
        r.batch()
        r.outbox.emit("panic", Alarm(n="alarm"), alarm=True)
        r.batch()
        assert len(r.pub.sent) == 2
        r.outbox.on_acked(r.pub.sent[0].mid, True)
        r.batch()
        assert r.pub.sent[2].event["data"]["n"] == "alarm"
    finally:
        r.store.close()


# --------------------------------------------------------------------------- overflow


def overflow_events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("type") == "outbox.overflow"]


def test_overflow_drops_the_two_oldest_and_records_their_seq_range(tmp_path: Path) -> None:
    r = Rig(tmp_path / "store.db", max_messages=100)
    try:
        for i in range(100):
            r.outbox.emit("door", Normal(n=i))
        assert len(r.store) == 100 and overflow_events(r.stored()) == []
        r.outbox.emit("door", Normal(n=100))  # seq 101: one over the bound
        rows = r.stored()
        assert len(r.store) == len(rows) == 100
        [ov] = overflow_events(rows)
        assert ov["data"] == {"dropped": 2, "first_seq": 1, "last_seq": 2}
        assert ov["seq"] == 102 and ov["device"] == "site"
        assert [row["seq"] for row in rows] == list(range(3, 103))
    finally:
        r.store.close()


def test_overflow_keeps_the_newest_normal_events(tmp_path: Path) -> None:
    r = Rig(tmp_path / "store.db", max_messages=100)
    try:
        emitted = []
        for i in range(150):
            emitted.append(r.outbox.emit("door", Normal(n=i)).seq)
            assert len(r.store) <= 100
        rows = r.stored()
        kept = [row["seq"] for row in rows if row["type"] == NORMAL]
        # what is kept is a contiguous run of the newest events...
        assert kept == emitted[-len(kept) :]
        assert len(kept) >= 50
        # ...every older one was dropped, and the latest overflow event says which.
        overflows = overflow_events(rows)
        assert overflows, "an outbox.overflow event must be recorded"
        latest = overflows[-1]["data"]
        assert latest["dropped"] >= 1
        assert latest["first_seq"] <= latest["last_seq"] < kept[0]
        stored_seqs = {row["seq"] for row in rows}
        assert not stored_seqs & set(range(latest["first_seq"], latest["last_seq"] + 1))
        # the newest stored row carries the last sequence number handed out
        assert r.store.last_seq() == max(stored_seqs)
    finally:
        r.store.close()


def test_overflow_never_drops_alarms(tmp_path: Path) -> None:
    r = Rig(tmp_path / "store.db", max_messages=100)
    try:
        alarms = []
        for i in range(60):
            r.outbox.emit("door", Normal(n=i))
            alarms.append(r.outbox.emit("panic", Alarm(n=i), alarm=True).event_id)
        rows = r.stored()
        assert [row["event_id"] for row in rows if row["type"] == ALARM] == alarms
        assert len(r.store) <= 100
        assert overflow_events(rows)
    finally:
        r.store.close()


def test_alarms_alone_may_exceed_the_bound(tmp_path: Path) -> None:
    r = Rig(tmp_path / "store.db", max_messages=100)
    try:
        for i in range(150):
            r.outbox.emit("panic", Alarm(n=i), alarm=True)
        rows = r.stored()
        assert len(rows) == len(r.store) == 150
        assert [row["data"]["n"] for row in rows] == list(range(150))
        assert overflow_events(rows) == []
    finally:
        r.store.close()


def test_overflow_drops_results_before_normal_events(tmp_path: Path) -> None:
    """Issue 7: a flood of command results must not push events out of the outbox."""
    r = Rig(tmp_path / "store.db", max_messages=100)
    try:
        for i in range(50):
            r.outbox.emit("door", Normal(n=i))
        for i in range(51):
            r.outbox.put_result(json.dumps({"r": i}).encode())
        rows = r.store.pending(1000)
        results = [json.loads(p.payload)["r"] for p in rows if p.topic.endswith("/results")]
        assert results == list(range(2, 51))  # the two oldest results went
        events = [json.loads(p.payload) for p in rows if "/events/" in p.topic]
        assert [e["data"]["n"] for e in events if e["type"] == NORMAL] == list(range(50))
        [ov] = overflow_events(r.stored())
        assert ov["data"] == {"dropped": 2, "first_seq": None, "last_seq": None}
    finally:
        r.store.close()


def test_overflow_drops_normal_events_once_no_result_is_left(tmp_path: Path) -> None:
    r = Rig(tmp_path / "store.db", max_messages=100)
    try:
        r.outbox.put_result(b'{"r":0}')
        for i in range(100):
            r.outbox.emit("door", Normal(n=i))
        rows = r.store.pending(1000)
        assert not [p for p in rows if p.topic.endswith("/results")]
        [ov] = overflow_events(r.stored())
        assert ov["data"] == {"dropped": 2, "first_seq": 1, "last_seq": 1}
    finally:
        r.store.close()


def test_a_normal_event_when_alarms_fill_the_bound_does_not_break_the_outbox(
    tmp_path: Path,
) -> None:
    r = Rig(tmp_path / "store.db", max_messages=100)
    try:
        for i in range(100):
            r.outbox.emit("panic", Alarm(n=i), alarm=True)
        r.outbox.emit("door", Normal())  # raises RecursionError today
        r.outbox.put_result(b'{"ok":true}')
        rows = r.stored()
        assert [row["data"]["n"] for row in rows if row.get("type") == ALARM] == list(range(100))
        assert r.store.last_seq() < 110  # no runaway sequence numbers
    finally:
        r.store.close()


@pytest.mark.parametrize(("level", "expected"), [("debug", ["debug", "info"]), ("info", ["info"])])
def test_each_event_is_logged_routine_ones_only_at_debug(
    tmp_path: Path, level: str, expected: list[str]
) -> None:
    """One line per event (type, device, seq, event_id; never its data): an alarm at info,
    a routine event at debug, left out altogether when debug is off."""
    before = structlog.get_config()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper()))
    )
    try:
        with structlog.testing.capture_logs() as logs:
            store = Store(tmp_path / "s.db")
            outbox = Outbox(store, TOPICS, FakeClock(), FakePublisher(), events=TEST_EVENTS)
            try:
                outbox.emit("door", Normal())
                outbox.emit("panic", Alarm(), alarm=True)
            finally:
                store.close()
    finally:
        structlog.configure(**before)
    lines = [e for e in logs if e["event"] == "event"]
    assert [e["log_level"] for e in lines] == expected
    assert [e["seq"] for e in lines] == [1, 2][-len(expected) :]
    assert all(set(e) == {"event", "log_level", "type", "device", "seq", "event_id"} for e in lines)
