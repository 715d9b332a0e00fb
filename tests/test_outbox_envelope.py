"""The outbox writes each event's envelope out directly (edge.core.outbox.Outbox.emit), not
through the ``Event`` model: the bytes must be exactly what the model would publish, for any
data, device, event id and site, so that the contract (edge.models.Event, its JSON Schema in
docs/schemas) and the payload on the wire can never drift apart."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from edge.core.clock import FakeClock
from edge.core.outbox import Outbox
from edge.core.store import Store
from edge.core.topics import Topics
from edge.devices.lockers.events import DoorOpened
from edge.devices.panic.events import AlarmRaised
from edge.models import (
    Event,
    EventData,
    InputFault,
    OutboxOverflow,
    OutboxRejected,
    new_event_id,
)
from tests.support.events import TEST_EVENTS, Normal


class Pub:
    def __init__(self) -> None:
        self.mid = 0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        self.mid += 1
        return self.mid


def model_bytes(site: str, device: str, data: EventData, event_id: str, seq: int, ts: str) -> bytes:
    """What the envelope model publishes for the same event."""
    return (
        Event(
            event_id=event_id,
            seq=seq,
            site=site,
            device=device,
            type=data.TYPE,
            ts=ts,
            data=data.model_dump(mode="json"),
        )
        .model_dump_json()
        .encode("utf-8")
    )


ODD = 'quote " backslash \\ slash / tab \t newline \n nul \x00 esc \x1b del \x7f'
DATA: list[EventData] = [
    Normal(),
    Normal(n=1, f=0.1, big=2**70, neg=-3, yes=True, no=False, none=None),
    Normal(text=ODD, korean="비상벨 눌림", emoji="🚨", sep="\u2028\u2029", bom="\ufeff"),
    Normal(nested={"a": [1, {"b": None}], "c": {"d": "é"}}, empty_list=[], empty={}),
    Normal(floats=[1.0, 1e300, -0.0, 2.5e-8, float("inf"), float("nan")]),
    AlarmRaised(alarm_id="a-1", button="panic", mode="silent", test=False, cameras=["cam-1"]),
    OutboxRejected(
        count=2,
        type="alarm.raised",
        reason=f"refused: {ODD}",
        first_seq=3,
        last_seq=None,
        dead_letters=[1, 2],
    ),
    OutboxOverflow(dropped=5, first_seq=None, last_seq=None),
    InputFault(reason="비정상 " + ODD),
    DoorOpened(locker=7, reason="pickup", via="code"),
]


@pytest.mark.parametrize("data", DATA, ids=lambda d: type(d).__name__)
@pytest.mark.parametrize(
    ("site", "device", "event_id"),
    [
        ("shelter-1", "panic-1", None),
        ("locker_2", 'door "3" \\ 문', 'id "quoted" \\ é\n'),
        ("s", "", "e-1"),
        # printable ASCII (the fast path of json_text) with and without what needs escaping
        ("site", 'dev "q"', 'ascii "quoted"'),
        ("site", "back\\slash", "a\\b"),
        ("s-1", "del\x7f ~!@#$%^&*()", "/<>'`?{}|+="),
    ],
)
def test_the_payload_is_byte_for_byte_the_envelope_models(
    tmp_path: Path, data: EventData, site: str, device: str, event_id: str | None
) -> None:
    clock = FakeClock()
    clock.advance(1.2345)
    store = Store(tmp_path / "s.db")
    events: dict[str, type[EventData]] = {**TEST_EVENTS, type(data).TYPE: type(data)}
    outbox = Outbox(store, Topics("ansim/v1", site), clock, Pub(), events=events)
    try:
        outbox.emit("other", Normal(n=0))  # a cached envelope of another device comes first
        rec = outbox.emit(device, data, event_id=event_id)
        [row] = [p for p in store.pending(10) if p.seq == rec.seq]
    finally:
        store.close()
    assert rec.seq == 2
    assert row.payload == rec.payload
    assert rec.payload == model_bytes(site, device, data, rec.event_id, 2, rec.ts)
    assert Event.model_validate_json(rec.payload).data == json.loads(rec.payload)["data"]
    if event_id is not None:
        assert rec.event_id == event_id


def test_the_envelope_follows_a_new_topics_object(tmp_path: Path) -> None:
    """The cached envelope parts belong to the outbox's ``topics``: another one is used at
    once (the site id in the payload and the topic match it)."""
    store = Store(tmp_path / "s.db")
    outbox = Outbox(store, Topics("ansim/v1", "site-a"), FakeClock(), Pub(), events=TEST_EVENTS)
    try:
        a = outbox.emit("door", Normal())
        outbox.topics = Topics("ansim/v2", "site-b")
        b = outbox.emit("door", Normal())
    finally:
        store.close()
    assert a.topic == "ansim/v1/site-a/events/test/normal"
    assert json.loads(a.payload)["site"] == "site-a"
    assert b.topic == "ansim/v2/site-b/events/test/normal"
    assert json.loads(b.payload)["site"] == "site-b"


def test_event_ids_are_random_version_4_uuids() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        u = uuid.UUID(text)
        assert (u.version, u.variant) == (4, uuid.RFC_4122)
        assert str(u) == text  # lower-case, hyphenated: as str(uuid.uuid4()) writes it
    # every one of the 122 random bits takes both values
    bits = [uuid.UUID(t).int for t in ids]
    fixed = (0xF << 76) | (0x3 << 62)
    varying = ~fixed & ((1 << 128) - 1)
    assert all(any(b >> k & 1 for b in bits) for k in range(128) if varying >> k & 1)
    assert all(not all(b >> k & 1 for b in bits) for k in range(128) if varying >> k & 1)


def test_a_refused_event_uses_up_no_seq_even_when_its_data_cannot_be_written(
    tmp_path: Path,
) -> None:
    """Data that cannot be serialised (a lone surrogate in a string) raises before the seq
    is taken: the next event gets the next seq, nothing is stored."""
    store = Store(tmp_path / "s.db")
    outbox = Outbox(store, Topics("ansim/v1", "s"), FakeClock(), Pub(), events=TEST_EVENTS)
    try:
        outbox.emit("door", Normal())
        with pytest.raises(Exception, match="surrogate"):
            outbox.emit("door", Normal(), event_id="bad \ud800")
        with pytest.raises(Exception, match=re.compile("surrogate|serializ", re.I)):
            outbox.emit("door", Normal(text="bad \udfff"))
        assert outbox.emit("door", Normal()).seq == 2
        assert len(store) == 2
    finally:
        store.close()
