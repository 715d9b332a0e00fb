"""Issue 7.1: a full or failing SD card must not swallow an alarm.

A fault-injecting SQLite connection (``Faults``) makes chosen statements fail the way a
full or broken disk does. Store level: the failed transaction moves into memory, reads
and the outbox keep working on memory, ``recover()`` writes it back. Site level (a whole
Site on simulated GPIO, a fake uplink and a recording modem, driven by a FakeClock): the
lamps, the buzzer and the modem act at once, the alarm is published from memory, the
site reports ``store.fault`` and ``status.store``, retries with backoff and recovers by
itself, with ``seq`` gapless throughout."""

from __future__ import annotations

import functools
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.config import SiteConfig, parse_config
from edge.core.clock import FakeClock, rfc3339
from edge.core.commands import load_keys
from edge.core.outbox import Outbox
from edge.core.signing import generate_keypair, load_private_key, sign_command
from edge.core.store import PRIO_ALARM, PRIO_EVENT, PRIO_RESULT, PRIORITIES, Pending, Store
from edge.core.store_watch import STORE_RETRY_MAX_S
from edge.core.topics import Topics
from tests.support.events import TEST_EVENTS, Alarm, Normal
from tests.support.modem import RecordingHardware as Hardware
from tests.support.site import SteppedSite

DISK_FULL = "database or disk is full"
TOPICS = Topics("ansim/v1", "shelter-1")
BUTTON = "panic-counter"
SMS_TO = "+821011112222"


# --------------------------------------------------------------------------- fault injection


class Faults:
    """Makes statements whose first word is in ``verbs`` raise ``error`` (while set), on
    every connection made through ``connect``; ``open_error`` makes connecting fail."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.verbs: set[str] = {"COMMIT"}
        self.open_error: str | None = None
        self.raised = 0

    def fail(self, error: str = DISK_FULL, *verbs: str) -> None:
        self.error = error
        self.verbs = set(verbs or ("COMMIT",))

    def heal(self) -> None:
        self.error = None
        self.open_error = None

    def check(self, sql: str) -> None:
        words = sql.split(None, 1)
        if self.error and words and words[0].upper() in self.verbs:
            self.raised += 1
            raise sqlite3.OperationalError(self.error)

    def connect(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if self.open_error:
            raise sqlite3.OperationalError(self.open_error)
        faults = self

        class Connection(sqlite3.Connection):
            def execute(self, sql: str, params: Any = (), /) -> sqlite3.Cursor:
                faults.check(sql)
                return super().execute(sql, params)

            def executemany(self, sql: str, params: Any, /) -> sqlite3.Cursor:
                faults.check(sql)
                return super().executemany(sql, params)

            def executescript(self, sql: str, /) -> sqlite3.Cursor:
                faults.check(sql)
                return super().executescript(sql)

        return sqlite3.connect(*args, factory=Connection, **kwargs)


def on_disk(path: Path, sql: str) -> list[Any]:
    """What another process would find in the file (committed data only)."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


# --------------------------------------------------------------------------- store level


class Pub:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        self.sent.append((len(self.sent) + 1, topic, payload))
        return len(self.sent)


@dataclass
class Rig:
    path: Path
    faults: Faults
    store: Store
    outbox: Outbox
    pub: Pub

    def batch(self) -> None:
        self.store.commit()
        self.outbox.drain()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    faults = Faults()
    path = tmp_path / "data" / "store.db"
    store = Store(path, connect=faults.connect)
    pub = Pub()
    outbox = Outbox(store, TOPICS, FakeClock(), pub, events=TEST_EVENTS)
    r = Rig(path, faults, store, outbox, pub)
    yield r
    faults.heal()
    r.store.close()


def test_a_failed_commit_moves_the_batch_to_memory_and_nothing_raises(rig: Rig) -> None:
    rig.outbox.emit("door", Normal(n=1))
    rig.batch()
    rig.faults.fail(DISK_FULL, "COMMIT")
    rig.outbox.emit("door", Normal(n=2))
    raised = rig.outbox.emit("panic", Alarm(n=3), alarm=True)
    rig.outbox.put_result(b'{"r":1}')
    rig.store.put_state("alarm", "active")
    rig.store.remember_command("c-1", 4e9, b'{"ok":true}')
    rig.batch()  # COMMIT fails: rolled back, all of it now in memory
    assert rig.store.degraded and rig.store.error == DISK_FULL
    assert on_disk(rig.path, "SELECT COUNT(*) FROM outbox") == [(1,)]
    assert on_disk(rig.path, "SELECT value FROM meta WHERE key='seq'") == [(1,)]
    # Everything still readable through the same interface, alarms first, seq order.
    rows = rig.store.pending(100)
    assert [(r.priority, r.seq) for r in rows] == [
        (PRIO_ALARM, 3),
        (PRIO_RESULT, None),
        (PRIO_EVENT, 1),
        (PRIO_EVENT, 2),
    ]
    assert rig.store.get_state("alarm") == "active"
    assert rig.store.command_result("c-1") == b'{"ok":true}'
    assert len(rig.store) == 4 and rig.store.in_memory == 3
    # Writing on goes to memory (no exception, seq goes on).
    assert rig.outbox.emit("door", Normal(n=4)).seq == 4
    rig.store.put_state("alarm", "acknowledged")
    rig.batch()
    # Published from memory while the broker is up.
    rig.outbox.on_connected()
    rig.outbox.drain()
    sent = [json.loads(p) for _, _, p in rig.pub.sent]
    assert [e.get("seq") for e in sent] == [3, None, 1, 2, 4]
    assert sent[0]["event_id"] == raised.event_id


def test_recovery_writes_what_is_still_unacknowledged_and_the_latest_state(rig: Rig) -> None:
    first = rig.outbox.emit("door", Normal(n=1))
    rig.batch()
    rig.faults.fail(DISK_FULL, "COMMIT")
    rig.outbox.emit("panic", Alarm(n=2), alarm=True)
    rig.outbox.emit("door", Normal(n=3))
    rig.store.put_state("alarm", "active")
    rig.batch()
    assert rig.store.degraded
    rig.outbox.on_connected()
    rig.outbox.drain()
    mids = {json.loads(p)["seq"]: mid for mid, _, p in rig.pub.sent}
    rig.outbox.on_acked(mids[1], True)  # a row of the file, acknowledged while degraded
    rig.outbox.on_acked(mids[2], True)  # a row only in memory
    rig.store.put_state("alarm", "idle")
    rig.store.remember_command("c-9", 4e9, b"{}")
    assert not rig.store.recover()  # still full: nothing lost, still degraded
    assert rig.store.degraded and rig.store.in_memory == 1
    rig.faults.heal()
    assert rig.store.recover()
    assert not rig.store.degraded and rig.store.persisted_on_recovery == 1
    assert on_disk(rig.path, "SELECT seq FROM outbox") == [(3,)]
    assert on_disk(rig.path, "SELECT value FROM meta WHERE key='seq'") == [(3,)]
    assert on_disk(rig.path, "SELECT value FROM kv WHERE key='alarm'") == [("idle",)]
    assert on_disk(rig.path, "SELECT command_id FROM commands") == [("c-9",)]
    # The row in flight keeps its id: its late PUBACK deletes it from the file.
    rig.outbox.on_acked(mids[3], True)
    rig.batch()
    rig.store.flush()
    assert on_disk(rig.path, "SELECT COUNT(*) FROM outbox") == [(0,)]
    assert first.seq == 1 and rig.outbox.emit("door", Normal()).seq == 4
    rig.batch()
    assert on_disk(rig.path, "SELECT seq FROM outbox") == [(4,)]


def test_after_a_failed_commit_the_store_commits_again_once_the_disk_is_back(rig: Rig) -> None:
    """The reported wedge: after one failed COMMIT, every later batch failed with "cannot
    commit - no transaction is active" even once space was freed."""
    rig.faults.fail(DISK_FULL, "COMMIT")
    rig.outbox.emit("door", Normal(n=1))
    rig.batch()
    rig.faults.heal()
    assert rig.store.recover()
    rig.outbox.emit("door", Normal(n=2))
    rig.batch()
    assert not rig.store.degraded
    assert on_disk(rig.path, "SELECT seq FROM outbox ORDER BY id") == [(1,), (2,)]


@pytest.mark.parametrize("verb", ["BEGIN", "INSERT", "DELETE", "COMMIT"])
def test_any_failing_statement_degrades_instead_of_raising(rig: Rig, verb: str) -> None:
    rig.outbox.emit("door", Normal(n=1))
    rig.outbox.on_connected()
    rig.batch()
    rig.faults.fail("disk I/O error", verb)
    rig.outbox.on_acked(rig.pub.sent[0][0], True)
    ev = rig.outbox.emit("panic", Alarm(), alarm=True)
    rig.store.put_state("k", "v")
    rig.batch()
    rig.store.flush()
    assert rig.store.degraded
    assert rig.pub.sent[-1][2] == ev.payload
    assert json.loads(ev.payload) == {
        "event_id": ev.event_id,
        "seq": 2,
        "site": TOPICS.site,
        "device": "panic",
        "type": Alarm.TYPE,
        "ts": ev.ts,
        "data": {},
    }
    rig.faults.heal()
    assert rig.store.recover()
    assert on_disk(rig.path, "SELECT seq FROM outbox") == [(2,)]
    assert on_disk(rig.path, "SELECT value FROM kv") == [("v",)]


def test_overflow_in_degraded_mode_drops_results_then_events_never_alarms(tmp_path: Path) -> None:
    faults = Faults()
    store = Store(tmp_path / "s.db", max_messages=100, connect=faults.connect)
    outbox = Outbox(store, TOPICS, FakeClock(), Pub(), events=TEST_EVENTS)

    def stored() -> list[tuple[int, dict[str, Any]]]:
        return [(r.priority, json.loads(r.payload)) for r in store.pending(1000)]

    try:
        for i in range(40):
            outbox.emit("door", Normal(n=i))
        store.commit()  # these 40 are in the file
        faults.fail(DISK_FULL, "COMMIT", "BEGIN")
        for i in range(20):
            outbox.put_result(json.dumps({"r": i}).encode())
        for i in range(40):
            outbox.emit("panic", Alarm(n=i), alarm=True)
        assert store.degraded and len(store) == 100 and store.in_memory == 60
        outbox.emit("door", Normal(n=40))  # 101: the two oldest results go
        rows = stored()
        assert [p["r"] for prio, p in rows if prio == PRIO_RESULT] == list(range(2, 20))
        [ov] = [p for _, p in rows if p.get("type") == "outbox.overflow"]
        assert ov["data"] == {"dropped": 2, "first_seq": None, "last_seq": None}
        for i in range(41, 80):
            outbox.emit("door", Normal(n=i))
            assert len(store) <= 100
        rows = stored()
        assert [p["data"]["n"] for prio, p in rows if prio == PRIO_ALARM] == list(range(40))
        assert [p for prio, p in rows if prio == PRIO_RESULT] == []
        normal = [p["data"]["n"] for _, p in rows if p.get("type") == "test.normal"]
        assert normal == list(range(80 - len(normal), 80)) and normal[0] > 0
        assert len(store) == len(rows)
        faults.heal()
        assert store.recover()
        assert on_disk(tmp_path / "s.db", "SELECT COUNT(*) FROM outbox") == [(len(rows),)]
    finally:
        faults.heal()
        store.close()


@pytest.mark.parametrize("seed", range(6))
def test_pending_always_hands_out_what_is_stored_in_order(tmp_path: Path, seed: int) -> None:
    """Against a model of what is stored, through thousands of random steps: rows stored,
    handed out a few at a time (some not sent: the link went down), acknowledged,
    re-sent after a reconnect, dropped by the bound, moved to the dead letters, commits
    that fail (degraded mode) and recoveries, rows deleted before they were handed out.
    ``pending`` serves recent rows from memory (Store._unsent) and older ones from the
    file; both must agree with the model."""
    rnd = random.Random(seed)
    faults = Faults()
    store = Store(tmp_path / "store.db", max_messages=60, connect=faults.connect)
    stored: dict[int, tuple[int, bytes]] = {}  # row id -> (priority, payload)
    sent_upto: dict[int, int] = {}
    in_flight: dict[int, Pending] = {}
    rank = {p: i for i, p in enumerate(PRIORITIES)}

    def expected(limit: int) -> list[tuple[int, bytes]]:
        rows = sorted(
            (rank[prio], rid, payload)
            for rid, (prio, payload) in stored.items()
            if rid > sent_upto.get(prio, 0)
        )
        return [(rid, payload) for _, rid, payload in rows[:limit]]

    try:
        for step in range(2500):
            op = rnd.random()
            if op < 0.40:
                prio = rnd.choice(PRIORITIES)
                payload = f"{seed}-{step}".encode()
                rid = store.append("t", payload, prio, seq=step)
                stored[rid] = (prio, payload)
                dropped = store.overflow()
                for gone in dropped.ids if dropped else ():
                    del stored[gone]
                    in_flight.pop(gone, None)
            elif op < 0.55:
                limit = rnd.randint(1, 25)
                got = store.pending(limit, sent_upto)
                assert [(r.id, r.payload) for r in got] == expected(limit), step
                for row in got[: rnd.randint(0, len(got))]:  # the rest: the link went down
                    sent_upto[row.priority] = row.id
                    in_flight[row.id] = row
            elif op < 0.75 and in_flight:
                row = in_flight.pop(rnd.choice(list(in_flight)))
                if rnd.random() < 0.05:
                    store.dead_letter(row, "t", "refused", "2026-01-01T00:00:00.000Z")
                else:
                    store.delete(row.id)
                del stored[row.id]
            elif op < 0.77 and stored:
                rid = rnd.choice(list(stored))  # deleted whether handed out or not
                store.delete(rid)
                del stored[rid]
                in_flight.pop(rid, None)
            elif op < 0.80:
                sent_upto.clear()  # a reconnect: whatever is unacknowledged goes again
                in_flight.clear()
            elif op < 0.97:
                store.commit()
            elif op < 0.985:
                faults.fail(DISK_FULL, "COMMIT", "INSERT", "DELETE")
                rid = store.append("t", b"x", PRIO_RESULT)  # fails: degraded from here on
                stored[rid] = (PRIO_RESULT, b"x")
                faults.heal()
                assert store.degraded
            else:
                store.recover()
            assert len(store) == len(stored), step
        sent_upto.clear()
        assert [(r.id, r.payload) for r in store.pending(10**6)] == expected(10**6)
    finally:
        store.close()


def test_a_store_that_cannot_be_written_at_start_runs_from_what_it_can_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    healthy = Store(path)
    outbox = Outbox(healthy, TOPICS, FakeClock(), Pub(), events=TEST_EVENTS)
    outbox.emit("door", Normal(n=1))
    outbox.emit("panic", Alarm(n=2), alarm=True)
    healthy.put_state("alarm", "active")
    healthy.close()
    faults = Faults()
    faults.fail("attempt to write a readonly database", "CREATE", "BEGIN")
    store = Store(path, connect=faults.connect)
    try:
        assert store.degraded and store.fault_at_start
        assert store.last_seq() == 2 and len(store) == 2
        assert store.get_state("alarm") == "active"
        assert [r.seq for r in store.pending(10)] == [2, 1]
        outbox = Outbox(store, TOPICS, FakeClock(), Pub(), events=TEST_EVENTS)
        assert outbox.emit("door", Normal()).seq == 3
        faults.heal()
        assert store.recover()
        assert on_disk(path, "SELECT seq FROM outbox ORDER BY id") == [(1,), (2,), (3,)]
    finally:
        store.close()


def test_an_unusable_data_dir_starts_degraded_and_recovers_once_it_is_usable(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file where the data dir's parent should be")
    path = blocker / "data" / "s.db"
    store = Store(path)
    try:
        assert store.degraded and store.fault_at_start
        assert "Not a directory" in (store.error or "")
        outbox = Outbox(store, TOPICS, FakeClock(), Pub(), events=TEST_EVENTS)
        assert outbox.emit("panic", Alarm(), alarm=True).seq == 1
        store.put_state("alarm", "active")
        assert not store.recover()
        blocker.unlink()
        assert store.recover()
        assert on_disk(path, "SELECT seq FROM outbox") == [(1,)]
        assert on_disk(path, "SELECT value FROM kv") == [("active",)]
        assert store.quarantined is None
    finally:
        store.close()


def test_a_corrupt_file_at_start_is_still_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    store = Store(path)
    try:
        assert not store.degraded
        assert store.quarantined is not None and store.quarantined.exists()
        assert store.last_seq() == 0
    finally:
        store.close()


def test_close_while_degraded_makes_a_last_attempt_to_persist(rig: Rig) -> None:
    rig.faults.fail(DISK_FULL, "COMMIT")
    rig.outbox.emit("panic", Alarm(), alarm=True)
    rig.batch()
    assert rig.store.degraded
    rig.faults.heal()
    rig.store.close()
    assert on_disk(rig.path, "SELECT seq FROM outbox") == [(1,)]
    rig.store = Store(rig.path)  # the fixture closes it


# --------------------------------------------------------------------------- site level


class Harness(SteppedSite):
    """The shared SteppedSite on a store whose connections fail as ``faults`` says, with a
    recording modem."""

    def __init__(self, cfg: SiteConfig, faults: Faults, clock: FakeClock | None = None) -> None:
        clock = clock or FakeClock(start=datetime(2026, 1, 1, tzinfo=UTC))
        self.hw: Hardware = Hardware(clock.monotonic)
        super().__init__(
            cfg,
            load_keys(cfg.keys),
            clock=clock,
            hw=self.hw,
            check_commits=False,  # the data dir may be unreadable
            store_factory=functools.partial(Store, connect=faults.connect),
        )
        self.faults = faults

    def turn_key(self) -> None:
        self.press("reset_key")
        self.release("reset_key")

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        return self.published_events(type_)


def shelter_config(data_dir: Path, keys: list[dict[str, Any]] | None = None) -> SiteConfig:
    return parse_config(
        {
            "site": {"id": "shelter-0001", "address": "서울특별시 중구", "cameras": ["cam-1"]},
            "data_dir": str(data_dir),
            "keys": keys or [],
            "devices": {
                "panic_buttons": [
                    {
                        "name": BUTTON,
                        "pin": 17,
                        "contact": "nc",
                        "debounce_ms": 50,
                        "mode": "audible",
                    }
                ],
                "sent_led": {"pin": 22},
                "ack_led": {"pin": 23},
                "buzzer": {"pin": 24},
                "reset_key": {"pin": 27, "contact": "no", "debounce_ms": 50},
                "modem": {"url": "/dev/null"},
            },
            "escalation": {
                "escalate_after_s": 60,
                "sms_numbers": [SMS_TO],
                "call_number": "112",
            },
        }
    )


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for h in reversed(made):
        h.faults.heal()
        h.shutdown()


@pytest.fixture
def new_site(tmp_path: Path, harnesses: list[Harness]) -> Callable[..., Harness]:
    def factory(cfg: SiteConfig | None = None, faults: Faults | None = None, **kw: Any) -> Harness:
        h = Harness(cfg or shelter_config(tmp_path / "data"), faults or Faults(), **kw)
        harnesses.append(h)
        return h

    return factory


def gapless(events: list[dict[str, Any]]) -> list[int]:
    seqs = sorted({e["seq"] for e in events})
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    by_seq: dict[int, str] = {}
    for e in events:  # a re-send carries the same event
        assert by_seq.setdefault(e["seq"], e["event_id"]) == e["event_id"]
    return seqs


@pytest.mark.parametrize("verb", ["COMMIT", "INSERT", "BEGIN"])
def test_disk_full_at_a_press_still_alarms_at_once_and_the_site_recovers_by_itself(
    new_site: Callable[..., Harness], verb: str
) -> None:
    h = new_site()
    h.start()
    h.connect()
    h.ack_all()
    h.step(1.0)  # PUBACK deletes flushed: nothing is left open
    assert h.status()["store"] == "ok" and h.status()["store_error"] is None
    h.faults.fail(DISK_FULL, verb)
    h.press()
    # Lamps, buzzer and modem at once, from the in-memory alarm.
    assert h.output("buzzer")
    assert h.hw.recorder.sms == [(SMS_TO, h.hw.recorder.sms[0][1])]
    assert h.hw.recorder.calls == ["112"]
    # Published from memory (QoS 1) while the broker is up; reported.
    [raised] = h.events("alarm.raised")
    [fault] = h.events("store.fault")
    assert fault["data"] == {"error": DISK_FULL, "at_start": False}
    status = h.status()
    assert status["store"] == "degraded" and status["store_error"] == DISK_FULL
    assert h.site.snapshot()["store"] == "degraded"
    assert on_disk(h.db, "SELECT COUNT(*) FROM outbox") == [(0,)]  # nothing reached the disk
    assert on_disk(h.db, "SELECT value FROM meta WHERE key='seq'") == [(1,)]
    # The broker's PUBACK lights the sent lamp, as always.
    h.ack_all()
    assert h.output("sent_led")
    assert h.site.devices.get("panic") is not None
    alarm_id = raised["data"]["alarm_id"]
    # The clerk clears it while still degraded.
    h.turn_key()
    assert not h.output("buzzer") and not h.output("sent_led")
    [cleared] = h.events("alarm.cleared")
    h.release()
    # Still full at the first retry (1 s): nothing changes, no second store.fault.
    h.step(1.0)
    assert h.site.store.degraded and len(h.events("store.fault")) == 1
    # Space is freed: the next retry (2 s later) persists what the broker has not
    # acknowledged (alarm.cleared and the escalation's last events), nothing else.
    unacked = [
        p.json
        for p in h.uplink.published
        if p.mid not in h.acked and ("/events/" in p.topic or p.topic.endswith("/results"))
    ]
    assert cleared in unacked
    h.faults.heal()
    h.step(2.0)
    [recovered] = h.events("store.recovered")
    assert recovered["data"]["degraded_s"] == pytest.approx(3.0, abs=0.2)
    assert recovered["data"]["persisted"] == len(unacked)
    stored = [json.loads(p) for (p,) in on_disk(h.db, "SELECT payload FROM outbox ORDER BY seq")]
    assert [e["event_id"] for e in stored if e.get("seq", 0) > raised["seq"]] == [
        e["event_id"] for e in sorted(unacked, key=lambda e: e["seq"])
    ] + [recovered["event_id"]]
    assert h.status()["store"] == "ok" and h.status()["store_error"] is None
    assert not h.site.store.degraded
    # The latest alarm state is on disk; the acknowledged events are not re-stored.
    [(state,)] = on_disk(h.db, "SELECT value FROM kv WHERE key='alarm'")
    assert json.loads(state)["state"] == "idle"
    # A new alarm goes through normally: stored (committed) before it is published.
    h.ack_all()
    h.press()
    [_, raised2] = h.events("alarm.raised")
    assert raised2["data"]["alarm_id"] != alarm_id
    assert raised2["seq"] == recovered["seq"] + 1
    assert on_disk(h.db, "SELECT seq FROM outbox WHERE priority=0") == [(raised2["seq"],)]
    assert on_disk(h.db, "SELECT value FROM meta WHERE key='seq'") == [(raised2["seq"],)]
    assert cleared["seq"] > raised["seq"]
    h.ack_all()
    gapless(h.events())


def test_an_alarm_active_when_the_store_fails_escalates_at_once(
    new_site: Callable[..., Harness],
) -> None:
    h = new_site()
    h.start()
    h.connect()
    h.press()
    h.ack_all()
    assert h.output("sent_led") and h.hw.recorder.sms == []  # waiting for the centre's ack
    h.faults.fail(DISK_FULL, "COMMIT")
    h.site.loop.post(lambda: h.site.store.put_state("probe", "x"))  # any write now fails
    h.run()
    assert h.events("store.fault")
    assert [n for n, _ in h.hw.recorder.sms] == [SMS_TO] and h.hw.recorder.calls == ["112"]
    h.ack_all()
    gapless(h.events())


def test_store_retries_back_off_up_to_the_cap(new_site: Callable[..., Harness]) -> None:
    h = new_site()
    h.start()
    h.faults.fail(DISK_FULL, "COMMIT", "BEGIN")
    h.press()
    store = h.site.store
    attempts: list[float] = []
    real = store.recover

    def counting() -> bool:
        attempts.append(h.clock.monotonic())
        return real()

    store.recover = counting  # type: ignore[method-assign]
    t0 = h.clock.monotonic()
    for _ in range(200):
        h.step(0.5)
    gaps = [round(b - a, 1) for a, b in zip([t0, *attempts], attempts, strict=False)]
    assert gaps[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert set(gaps[5:]) == {STORE_RETRY_MAX_S}
    assert store.degraded
    h.faults.heal()
    h.step(STORE_RETRY_MAX_S)
    assert not store.degraded


def test_an_unexpected_error_recording_the_alarm_does_not_stop_lamps_or_modem(
    new_site: Callable[..., Harness],
) -> None:
    """The alarm path acts before recording: even an error the store does not catch
    (a bug) cannot keep the buzzer silent or the modem quiet."""
    h = new_site()
    h.start()

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("bug in the store")

    h.site.store.append = broken  # type: ignore[method-assign]
    h.press()
    assert h.output("buzzer")
    assert (h.site.states.get("alarm") or {})["state"] == "active"
    assert [n for n, _ in h.hw.recorder.sms] == [SMS_TO] and h.hw.recorder.calls == ["112"]


def _keypair(tmp_path: Path) -> tuple[Any, list[dict[str, Any]]]:
    generate_keypair(tmp_path / "centre.key", tmp_path / "centre.pub")
    key = {"key_id": "centre", "public_key": str(tmp_path / "centre.pub"), "commands": ["*"]}
    return load_private_key(tmp_path / "centre.key"), [key]


def test_an_unusable_data_dir_at_start_runs_degraded_and_recovers_without_a_restart(
    tmp_path: Path, new_site: Callable[..., Harness]
) -> None:
    priv, keys = _keypair(tmp_path)
    blocker = tmp_path / "mnt"
    blocker.write_text("the SD card's partition is not mounted: a file sits here")
    h = new_site(shelter_config(blocker / "ansim", keys))
    h.start()  # no exception: degraded from the start
    h.connect()
    assert h.status()["store"] == "degraded" and "Not a directory" in h.status()["store_error"]
    [fault] = h.events("store.fault")
    assert fault["data"]["at_start"] is True and fault["seq"] == 1
    h.press()
    [raised] = h.events("alarm.raised")
    assert h.output("buzzer") and [n for n, _ in h.hw.recorder.sms] == [SMS_TO]
    # A command runs and its result is remembered in memory: a replay gets the same result.
    cmd = sign_command(
        {
            "command_id": "ack-1",
            "site": "shelter-0001",
            "name": "alarm.ack",
            "args": {"alarm_id": raised["data"]["alarm_id"], "by": "centre"},
            "expires_at": rfc3339(h.clock.now() + timedelta(minutes=5)),
            "key_id": "centre",
        },
        priv,
    )
    h.command(cmd)
    h.command(cmd)
    first, again = h.results()
    assert first == again and first["ok"] is True
    assert len(h.events("alarm.acknowledged")) == 1
    h.ack_all()
    # The partition comes back: the site recovers by itself.
    blocker.unlink()
    h.step(1.0)
    assert h.events("store.recovered") and h.status()["store"] == "ok"
    assert h.db.exists()
    [(state,)] = on_disk(h.db, "SELECT value FROM kv WHERE key='alarm'")
    assert json.loads(state)["state"] == "acknowledged"
    assert on_disk(h.db, "SELECT command_id FROM commands") == [("ack-1",)]
    h.ack_all()
    gapless(h.events())


def test_state_persisted_at_recovery_survives_a_restart(
    tmp_path: Path, new_site: Callable[..., Harness], harnesses: list[Harness]
) -> None:
    h = new_site()
    h.start()
    h.connect()
    h.faults.fail(DISK_FULL, "COMMIT")
    h.press()
    alarm_id = h.events("alarm.raised")[0]["data"]["alarm_id"]
    h.faults.heal()
    h.step(1.0)
    assert not h.site.store.degraded
    last = h.site.store.last_seq()
    harnesses.remove(h)
    h.shutdown()
    again = new_site(clock=h.clock)
    again.start()
    again.connect()
    *_, started = again.events("site.started")
    assert started["data"]["restored_alarm"] == alarm_id
    # seq goes on from the counter persisted at recovery (the resumed escalation's
    # alarm.escalated events come first), gapless across both runs.
    assert min(e["seq"] for e in again.events() if e["seq"] > last) == last + 1
    assert started["seq"] > last
    gapless(h.events() + again.events())
    # The alarm.raised that was never acknowledged is still in the outbox: sent again.
    assert [e["data"]["alarm_id"] for e in again.events("alarm.raised")] == [alarm_id]
