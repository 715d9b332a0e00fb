"""Issue 9.4: no poison message. A message the broker refuses (an MQTT 5 failure PUBACK, or
the connection closed right after it was sent N times in a row) moves to the dead letters,
an ``outbox.rejected`` event says so, and the outbox drains on; an alarm that cannot be
delivered escalates over the modem; dead letters are bounded, survive a restart and a
degraded store, and can be listed and re-sent by signed commands.

Store and outbox level with a FakeClock and a scripted broker; site level on a SteppedSite
(FakeClock, fake uplink) with a modem that records what it is asked to send."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from edge.core.clock import FakeClock, rfc3339
from edge.core.commands import load_keys
from edge.core.outbox import Outbox
from edge.core.signing import generate_keypair, load_private_key, sign_command
from edge.core.store import PRIO_ALARM, Store
from edge.core.topics import Topics
from tests.support.events import TEST_EVENTS, Alarm, Normal
from tests.support.modem import RecordingHardware as Hardware
from tests.support.modem import RecordingModem
from tests.support.site import SteppedSite, shelter_config

TOPICS = Topics("ansim/v1", "shelter-1")
SMS_TO = "+821011112222"
POISON = "ansim/v1/shelter-1/events/bad.topic"  # what NATS refuses: a '.' in a level


class Faults:
    """Makes COMMIT fail like a full disk while ``full`` is set (connect through it)."""

    def __init__(self) -> None:
        self.full = False

    def connect(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        faults = self

        class Connection(sqlite3.Connection):
            def execute(self, sql: str, params: Any = (), /) -> sqlite3.Cursor:
                if faults.full and sql.split(None, 1)[0].upper() == "COMMIT":
                    raise sqlite3.OperationalError("database or disk is full")
                return super().execute(sql, params)

        return sqlite3.connect(*args, factory=Connection, **kwargs)


class Broker:
    """Publishes as a broker sees them: ``refuse`` topics get a failure PUBACK (MQTT 5);
    ``close_on`` topics make it close the connection (NATS, AWS IoT): the messages before
    it in the same connection are acknowledged, the rest are lost with the connection."""

    def __init__(self, refuse: set[str] | None = None, close_on: set[str] | None = None) -> None:
        self.refuse = refuse or set()
        self.close_on = close_on or set()
        self.connected = False
        self.sent: list[tuple[int, str, bytes]] = []
        self._mid = 0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        if not self.connected:
            return None
        self._mid += 1
        self.sent.append((self._mid, topic, payload))
        return self._mid


class Rig:
    def __init__(self, path: Path, broker: Broker, **kw: Any) -> None:
        self.path = path
        self.clock = FakeClock()
        self.broker = broker
        self.kw = kw
        self.delivered: list[str] = []
        self.rejected: list[int] = []
        self.connections = 0
        self.open()

    def open(self) -> None:
        store_kw = {k: v for k, v in self.kw.items() if k == "max_dead_letters"}
        self.store = Store(self.path, **store_kw)
        outbox_kw = {k: v for k, v in self.kw.items() if k != "max_dead_letters"}
        self.outbox = Outbox(
            self.store, TOPICS, self.clock, self.broker, events=TEST_EVENTS, **outbox_kw
        )
        self.outbox.delivered_listeners.append(self.delivered.append)
        self.outbox.rejected_listeners.append(lambda dl: self.rejected.append(dl.id))

    def reopen(self) -> None:
        self.store.close()
        self.open()

    def batch(self) -> None:
        """What the site does after every core batch."""
        self.outbox.report_rejected()
        self.store.commit()
        self.outbox.drain()

    def connection(self, dead_link: bool = False) -> bool:
        """One connection: connect, drain, let the broker answer everything in order (and
        send on as PUBACKs free the window) until it closes the connection or all is sent.
        True when the broker closed it."""
        self.connections += 1
        self.broker.connected = True
        self.outbox.on_connected()
        self.batch()
        answered = len(self.broker.sent)
        start = answered - self.outbox.inflight
        while start < len(self.broker.sent):
            mid, topic, _ = self.broker.sent[start]
            start += 1
            if topic in self.broker.close_on:
                self.broker.connected = False
                self.outbox.on_disconnected(dead_link)
                self.batch()
                return True
            ok = topic not in self.broker.refuse
            self.outbox.on_acked(mid, ok, None if ok else "Not authorized (0x87)")
            self.batch()
        self.broker.connected = False
        self.outbox.on_disconnected()
        self.batch()
        return False

    def events(self, type_: str) -> list[dict[str, Any]]:
        out = [json.loads(p.payload) for p in self.store.pending(1_000_000)]
        out += [json.loads(p) for _, topic, p in self.broker.sent if "/events/" in topic]
        seen: dict[str, dict[str, Any]] = {}
        for e in out:
            if "type" in e and e["type"] == type_:
                seen[e["event_id"]] = e
        return sorted(seen.values(), key=lambda e: int(e["seq"]))


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        r.store.close()


@pytest.fixture
def new_rig(tmp_path: Path, rigs: list[Rig]) -> Callable[..., Rig]:
    def factory(broker: Broker, **kw: Any) -> Rig:
        r = Rig(tmp_path / f"store-{len(rigs)}.db", broker, **kw)
        rigs.append(r)
        return r

    return factory


def inject(rig: Rig, topic: str = POISON, alarm: bool = False) -> int:
    """A stored message on a topic the broker will not take, as an event with a seq."""
    seq = rig.store.next_seq()
    body = {"event_id": f"poison-{seq}", "seq": seq, "type": "bad.topic", "data": {}}
    prio = PRIO_ALARM if alarm else 2
    payload = json.dumps(body).encode()
    row = rig.store.append(topic, payload, prio, seq=seq, event_id=f"poison-{seq}")
    rig.store.commit()
    return row


# --------------------------------------------------------------------------- MQTT 5 PUBACK


def test_a_failure_puback_moves_the_message_to_the_dead_letters_and_reports_it(
    new_rig: Callable[..., Rig],
) -> None:
    rig = new_rig(Broker(refuse={POISON}))
    before = rig.outbox.emit("door", Normal(n=1))
    row = inject(rig)
    after = rig.outbox.emit("door", Normal(n=2))
    rig.connection()
    # The refused message is kept, with its reason; the others went through.
    [dl] = rig.store.dead_letters()
    assert (dl.id, dl.seq, dl.event_id, dl.type) == (row, 2, "poison-2", "bad.topic")
    assert dl.topic == POISON
    assert dl.reason == "refused by the broker: PUBACK Not authorized (0x87)"
    assert rig.rejected == [row] and "poison-2" not in rig.delivered
    assert {before.event_id, after.event_id} <= set(rig.delivered)
    # Announced (and the announcement itself delivered), outbox empty.
    [ev] = rig.events("outbox.rejected")
    assert ev["device"] == "site"
    assert ev["data"] == {
        "count": 1,
        "type": "bad.topic",
        "reason": "refused by the broker: PUBACK Not authorized (0x87)",
        "first_seq": 2,
        "last_seq": 2,
        "dead_letters": [row],
    }
    assert len(rig.store) == 0
    # Kept across a restart.
    rig.reopen()
    assert [d.id for d in rig.store.dead_letters()] == [row]


def test_refused_messages_of_one_batch_are_reported_in_one_event_per_type_and_reason(
    new_rig: Callable[..., Rig],
) -> None:
    rig = new_rig(Broker(refuse={POISON, TOPICS.results}))
    rows = [inject(rig) for _ in range(3)]
    rig.outbox.put_result(b'{"command_id":"c-1","ok":true}')
    rig.store.commit()
    rig.broker.connected = True
    rig.outbox.on_connected()
    rig.batch()
    for mid, _, _ in list(rig.broker.sent):  # one burst of PUBACKs, one core batch
        rig.outbox.on_acked(mid, False, "Not authorized (0x87)")
    rig.batch()
    reports = {e["data"]["type"]: e["data"] for e in rig.events("outbox.rejected")}
    assert reports["bad.topic"]["count"] == 3
    assert (reports["bad.topic"]["first_seq"], reports["bad.topic"]["last_seq"]) == (1, 3)
    assert reports["bad.topic"]["dead_letters"] == rows
    assert reports["result"]["count"] == 1 and reports["result"]["first_seq"] is None
    assert rig.store.dead_letter_count() == 4


def test_a_refused_report_is_kept_but_not_reported_again(new_rig: Callable[..., Rig]) -> None:
    # A broker that refuses everything (a wrong ACL): no endless chain of reports.
    rig = new_rig(Broker(refuse={POISON, "ansim/v1/shelter-1/events/outbox/rejected"}))
    inject(rig)
    for _ in range(3):
        rig.connection()
    assert [d.type for d in rig.store.dead_letters()] == ["bad.topic", "outbox.rejected"]
    assert len(rig.store) == 0


# --------------------------------------------------------------------------- closed connection


def test_a_message_after_which_the_broker_closes_the_connection_is_moved_after_n_drops(
    new_rig: Callable[..., Rig],
) -> None:
    rig = new_rig(Broker(close_on={POISON}))
    first = [rig.outbox.emit("door", Normal(n=i)) for i in range(3)]
    row = inject(rig)
    rest = [rig.outbox.emit("door", Normal(n=i)) for i in range(3, 6)]
    drops = 0
    while rig.connection():
        drops += 1
        assert drops < 10, "the outbox never got past the message the broker refuses"
    # Two drops with everything in flight (then one message at a time), three with the
    # poison alone in flight: five connections closed, then it drains.
    assert drops == 5
    [dl] = rig.store.dead_letters()
    assert dl.id == row
    assert dl.reason == "the broker closed the connection right after it was sent, 3 times in a row"
    assert {e.event_id for e in first + rest} <= set(rig.delivered)
    [ev] = rig.events("outbox.rejected")
    assert ev["data"]["dead_letters"] == [row] and ev["data"]["first_seq"] == 4
    assert len(rig.store) == 0
    assert not rig.outbox.probing


@pytest.mark.parametrize("n", [2, 5])
def test_reject_after_drops_is_the_number_of_drops_in_a_row(
    new_rig: Callable[..., Rig], n: int
) -> None:
    rig = new_rig(Broker(close_on={POISON}), reject_after_drops=n)
    inject(rig)
    drops = 0
    while rig.connection():
        drops += 1
        assert drops < 20
    assert drops == n  # the poison was alone from the first drop on
    assert rig.store.dead_letter_count() == 1


def test_a_drop_long_after_the_publish_or_of_a_dead_link_does_not_count(
    new_rig: Callable[..., Rig],
) -> None:
    rig = new_rig(Broker(), reject_window_s=2.0)
    inject(rig)
    rig.broker.connected = True
    for _ in range(5):
        rig.outbox.on_connected()
        rig.batch()
        rig.clock.advance(2.5)  # no PUBACK, and the connection ends later than 2 s after
        rig.outbox.on_disconnected()
    for _ in range(5):
        rig.outbox.on_connected()
        rig.batch()
        rig.clock.advance(0.1)
        rig.outbox.on_disconnected(dead_link=True)  # the site left a silent link itself
    assert rig.store.dead_letter_count() == 0 and len(rig.store) == 1


def test_one_drop_with_messages_in_flight_keeps_the_full_window(
    new_rig: Callable[..., Rig],
) -> None:
    rig = new_rig(Broker())
    for i in range(10):
        rig.outbox.emit("door", Normal(n=i))
    rig.store.commit()
    rig.broker.connected = True
    rig.outbox.on_connected()
    rig.batch()
    assert rig.outbox.inflight == 10
    rig.outbox.on_disconnected()  # a network blip right after publishing
    rig.outbox.on_connected()
    rig.batch()
    assert rig.outbox.inflight == 10 and not rig.outbox.probing


def test_an_acknowledged_message_starts_its_count_again(new_rig: Callable[..., Rig]) -> None:
    rig = new_rig(Broker())
    inject(rig)
    rig.broker.connected = True
    for _ in range(2):  # two drops right after it
        rig.outbox.on_connected()
        rig.batch()
        rig.outbox.on_disconnected()
    rig.outbox.on_connected()
    rig.batch()
    [(mid, _, _)] = rig.broker.sent[-1:]
    rig.outbox.on_acked(mid, True)  # it went through after all
    inject(rig)
    for _ in range(2):
        rig.outbox.on_connected()
        rig.batch()
        rig.outbox.on_disconnected()
    assert rig.store.dead_letter_count() == 0


# --------------------------------------------------------------------------- the table


def test_dead_letters_are_bounded_oldest_first_and_the_dropped_are_counted(
    new_rig: Callable[..., Rig],
) -> None:
    rig = new_rig(Broker(refuse={POISON}), max_dead_letters=10)
    rows = [inject(rig) for _ in range(15)]
    rig.connection()
    assert [d.id for d in rig.store.dead_letters()] == rows[5:]
    assert rig.store.dead_letters_dropped() == 5
    rig.reopen()
    assert rig.store.dead_letter_count() == 10 and rig.store.dead_letters_dropped() == 5
    assert [d.id for d in rig.store.dead_letters(after=rows[10], limit=2)] == rows[11:13]


def test_resent_dead_letters_go_out_again_with_their_seq_and_event_id(
    new_rig: Callable[..., Rig],
) -> None:
    rig = new_rig(Broker(refuse={POISON}))
    a, b = inject(rig), inject(rig)
    rig.connection()
    assert rig.store.dead_letter_count() == 2
    rig.broker.refuse.clear()  # the broker's ACL was fixed
    assert rig.outbox.resend_dead_letters([b, 999]) == [b]
    rig.store.commit()
    assert [d.id for d in rig.store.dead_letters()] == [a]
    rig.connection()
    assert rig.delivered[-1] == "poison-2"
    assert rig.outbox.resend_dead_letters(None) == [a]
    rig.connection()
    assert rig.delivered[-1] == "poison-1"
    assert rig.store.dead_letter_count() == 0 and len(rig.store) == 0
    resent = [json.loads(p) for _, t, p in rig.broker.sent if t == POISON]
    assert [e["seq"] for e in resent] == [1, 2, 2, 1]


def test_a_degraded_store_keeps_dead_letters_in_memory_and_writes_them_on_recovery(
    tmp_path: Path,
) -> None:
    faults = Faults()
    clock = FakeClock()
    store = Store(tmp_path / "s.db", connect=faults.connect)
    broker = Broker(refuse={POISON})
    outbox = Outbox(store, TOPICS, clock, broker, events=TEST_EVENTS)
    try:
        outbox.emit("door", Alarm(), alarm=True)
        store.commit()
        seq = store.next_seq()
        body = json.dumps({"event_id": "p", "seq": seq, "type": "bad.topic"}).encode()
        row = store.append(POISON, body, 2, seq=seq, event_id="p")
        store.commit()
        faults.full = True  # the disk is full from now on
        broker.connected = True
        outbox.on_connected()
        outbox.drain()
        for mid, _, _ in list(broker.sent):
            outbox.on_acked(mid, broker.sent[mid - 1][1] != POISON, "Not authorized (0x87)")
        outbox.report_rejected()
        store.commit()
        assert store.degraded
        assert [d.id for d in store.dead_letters()] == [row]
        assert store.resend_dead_letters([row]) == [row]
        assert store.dead_letter_count() == 0
        outbox.drain()
        [(mid, _, _)] = [s for s in broker.sent[2:] if s[1] == POISON]
        outbox.on_acked(mid, False, "Not authorized (0x87)")  # refused again
        [again] = store.dead_letters()
        faults.full = False
        assert store.recover()
        store.close()
        store = Store(tmp_path / "s.db")
        assert [d.id for d in store.dead_letters()] == [again.id]
        assert store.dead_letters()[0].event_id == "p"
    finally:
        store.close()


# --------------------------------------------------------------------------- site level


@pytest.fixture
def new_site(tmp_path: Path) -> Iterator[Callable[..., tuple[SteppedSite, RecordingModem]]]:
    made: list[SteppedSite] = []

    def factory(keys: list[dict[str, Any]] | None = None) -> tuple[SteppedSite, RecordingModem]:
        raw = shelter_config(tmp_path, keys=keys).model_dump(mode="json", exclude_none=True)
        raw["devices"]["modem"] = {"url": "/dev/null"}
        raw["escalation"] = {"escalate_after_s": 60, "sms_numbers": [SMS_TO]}
        cfg = parse_config(raw)
        clock = FakeClock()
        hw = Hardware(clock.monotonic)
        h = SteppedSite(cfg, load_keys(cfg.keys), clock=clock, hw=hw)
        made.append(h)
        return h, hw.recorder

    yield factory
    for h in made:
        h.shutdown()


def ack_all(h: SteppedSite, refuse: Callable[[dict[str, Any]], str | None]) -> None:
    """The broker answers every publish not answered yet (until nothing new): PUBACK, or a
    failure PUBACK with the reason ``refuse`` returns for an event."""
    done: set[int] = getattr(h, "_answered", set())
    h._answered = done  # type: ignore[attr-defined]
    while True:
        new = [p for p in h.uplink.published if p.mid not in done]
        if not new:
            return
        for p in new:
            done.add(p.mid)
            why = refuse(p.json) if "/events/" in p.topic else None
            h.ack_mid(p.mid, why is None, why)


def signed_now(h: SteppedSite, key: Any, name: str, args: dict[str, Any], cid: str) -> Any:
    cmd = {
        "command_id": cid,
        "site": "shelter-0001",
        "name": name,
        "args": args,
        "expires_at": rfc3339(h.clock.now() + timedelta(seconds=120)),
        "key_id": "centre",
    }
    return sign_command(cmd, key)


def result(h: SteppedSite, cid: str) -> dict[str, Any]:
    [res] = [r for r in h.results() if r["command_id"] == cid]
    return res


def never(event: dict[str, Any]) -> str | None:
    return None


def test_a_refused_alarm_escalates_over_the_modem_and_the_rest_drains_on(
    new_site: Callable[..., tuple[SteppedSite, RecordingModem]],
) -> None:
    h, modem = new_site()
    h.start()
    h.connect()
    ack_all(h, never)
    h.press()
    assert modem.sms == []  # the link is up: escalation waits escalate_after_s
    ack_all(h, lambda e: "Not authorized (0x87)" if e["type"] == "alarm.raised" else None)
    [raised] = h.published_events("alarm.raised")
    # The centre will not hear of it: escalated at once, as with the link down.
    assert modem.sms and modem.sms[0][0] == SMS_TO
    assert not h.outputs()["sent_led"]
    [ev] = h.published_events("outbox.rejected")
    assert ev["data"]["type"] == "alarm.raised" and ev["data"]["first_seq"] == raised["seq"]
    assert len(h.site.store) == 0  # the outbox drained on (the report went out)


def test_dead_letters_are_listed_and_resent_by_signed_commands(
    new_site: Callable[..., tuple[SteppedSite, RecordingModem]], tmp_path: Path
) -> None:
    generate_keypair(tmp_path / "centre.key", tmp_path / "centre.pub")
    key = load_private_key(tmp_path / "centre.key")
    trusted = {"key_id": "centre", "public_key": str(tmp_path / "centre.pub")}
    h, _ = new_site(keys=[{**trusted, "commands": ["outbox.*", "alarm.*"]}])
    h.start()
    h.connect()
    ack_all(h, never)
    for _ in range(3):
        h.press()
        ack_all(h, lambda e: "Quota exceeded (0x97)" if e["type"] == "alarm.raised" else None)
        h.release()
        h.set_input("reset_key", True)
        h.step(0.051)
        h.set_input("reset_key", False)
        h.step(0.051)
        ack_all(h, never)
    raised = h.published_events("alarm.raised")
    assert len(raised) == 3

    h.command(signed_now(h, key, "outbox.dead_letters", {"limit": 2}, "list-1"))
    res = result(h, "list-1")
    assert res["ok"] is True, res
    page = res["data"]
    assert page["total"] == 3 and page["dropped"] == 0
    assert [d["seq"] for d in page["dead_letters"]] == [e["seq"] for e in raised[:2]]
    first = page["dead_letters"][0]
    assert first["type"] == "alarm.raised" and first["priority"] == "alarm"
    assert first["reason"] == "refused by the broker: PUBACK Quota exceeded (0x97)"
    assert first["topic"] == "ansim/v1/shelter-0001/events/alarm/raised"
    assert first["bytes"] > 0 and "payload" not in first
    after = page["next_after_id"]
    assert after == page["dead_letters"][1]["id"]
    h.command(signed_now(h, key, "outbox.dead_letters", {"after_id": after}, "list-2"))
    res2 = result(h, "list-2")
    assert [d["seq"] for d in res2["data"]["dead_letters"]] == [raised[2]["seq"]]
    assert res2["data"]["next_after_id"] is None

    h.command(signed_now(h, key, "outbox.resend", {"ids": [first["id"], 12345]}, "re-1"))
    assert result(h, "re-1")["data"] == {"resent": 1, "missing": [12345]}
    ack_all(h, never)
    again = [e for e in h.published_events("alarm.raised") if e["seq"] == first["seq"]]
    assert len(again) == 2 and again[0]["event_id"] == again[1]["event_id"]
    h.command(signed_now(h, key, "outbox.resend", {"all": True}, "re-2"))
    assert result(h, "re-2")["data"] == {"resent": 2, "missing": []}
    h.command(signed_now(h, key, "outbox.resend", {"ids": [1], "all": True}, "re-3"))
    assert result(h, "re-3")["error"]["code"] == "invalid_args"
    ack_all(h, never)
    assert h.site.store.dead_letter_count() == 0 and len(h.site.store) == 0
