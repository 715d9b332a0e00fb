"""Events and results: stored first (durable outbox), then published, deleted on PUBACK.

Runs on the core thread only. ``drain`` is called after every core batch (after the
batch's commit, so nothing is published before it is on disk; while the store is degraded
it publishes from memory, see edge.core.store).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from pydantic import BaseModel

from edge.core.clock import Clock, rfc3339
from edge.core.store import PRIO_ALARM, PRIO_EVENT, PRIO_RESULT, Store
from edge.core.topics import Topics
from edge.models import Emit, Event, EventData, OutboxOverflow

log = structlog.get_logger(__name__)

DeliveredListener = Callable[[str], None]
# Called with (device, data, ts) for every event recorded (e.g. edge.health.FaultBoard).
EventObserver = Callable[[str, EventData, str], None]


class UnknownEventError(LookupError):
    """An event whose type (or model) is not in the outbox's event registry: a bug, raised
    before anything is stored, never a silent skip."""


class Publisher(Protocol):
    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> int | None: ...


@dataclass
class _InFlight:
    row_id: int
    event_id: str | None


def dumps(obj: BaseModel | dict[str, Any]) -> bytes:
    if isinstance(obj, BaseModel):
        return obj.model_dump_json().encode("utf-8")
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Outbox:
    def __init__(
        self,
        store: Store,
        topics: Topics,
        clock: Clock,
        publisher: Publisher,
        *,
        events: Mapping[str, type[EventData]],
        window: int = 100,
    ) -> None:
        """``events``: every event type it accepts (the site passes the registry's)."""
        self.store = store
        self.events = events
        self.topics = topics
        self.clock = clock
        self.publisher = publisher
        self.window = window
        self.online = False
        self._inflight: dict[int, _InFlight] = {}  # mid -> row
        self._inflight_rows: set[int] = set()
        self._sent_upto: dict[int, int] = {}  # priority -> highest row id in flight
        self.delivered_listeners: list[DeliveredListener] = []
        self.observers: list[EventObserver] = []
        self.published = 0
        self.acked = 0

    # ---- writing ----
    def emit(
        self,
        device: str,
        data: EventData,
        *,
        alarm: bool = False,
        event_id: str | None = None,
    ) -> Event:
        """Record an event durably-to-be (committed with the batch) and return it.

        ``data`` is the typed data of a registered event type (its model validated it when
        it was built); any other type raises UnknownEventError and stores nothing."""
        type_ = getattr(data, "TYPE", None)
        if type_ is None or self.events.get(type_) is not type(data):
            raise UnknownEventError(
                f"event type {type_!r} ({type(data).__name__}) is not registered; "
                f"known: {sorted(self.events)}"
            )
        event = Event(
            event_id=event_id or str(uuid.uuid4()),
            seq=self.store.next_seq(),
            site=self.topics.site,
            device=device,
            type=type_,
            ts=rfc3339(self.clock.now()),
            data=data.model_dump(mode="json"),
        )
        self.store.append(
            self.topics.event(type_),
            dumps(event),
            PRIO_ALARM if alarm else PRIO_EVENT,
            seq=event.seq,
            event_id=event.event_id,
        )
        # Alarm-priority events at info; routine ones at debug (one log write per event
        # costs a third of the outbox's throughput).
        (log.info if alarm else log.debug)(
            "event", type=type_, device=device, seq=event.seq, event_id=event.event_id
        )
        for observe in self.observers:
            try:
                observe(device, data, event.ts)
            except Exception:
                log.exception("event_observer_failed", type=type_)
        if type_ != "outbox.overflow":  # reporting an overflow must not start another
            self._check_overflow()
        return event

    def record(self, e: Emit) -> Event:
        """``emit`` for an effect a machine returned."""
        return self.emit(e.device, e.event, alarm=e.alarm, event_id=e.event_id)

    def put_result(self, payload: bytes) -> None:
        self.store.append(self.topics.results, payload, PRIO_RESULT)
        self._check_overflow()

    def _check_overflow(self) -> None:
        dropped = self.store.overflow()
        if dropped is None:
            return
        # Rows being dropped may be in flight; forget them (a late PUBACK is then ignored).
        for mid in [m for m, f in self._inflight.items() if f.row_id in dropped.ids]:
            self._inflight_rows.discard(self._inflight.pop(mid).row_id)
        log.error(
            "outbox_overflow",
            dropped=dropped.count,
            first_seq=dropped.first_seq,
            last_seq=dropped.last_seq,
        )
        self.emit(
            "site",
            OutboxOverflow(
                dropped=dropped.count, first_seq=dropped.first_seq, last_seq=dropped.last_seq
            ),
        )

    # ---- uplink events (core thread) ----
    def on_connected(self) -> None:
        self.online = True
        self._forget_inflight()

    def on_disconnected(self) -> None:
        self.online = False
        self._forget_inflight()

    def _forget_inflight(self) -> None:
        """Unacknowledged messages are sent again from the store after a (re)connect."""
        self._inflight.clear()
        self._inflight_rows.clear()
        self._sent_upto.clear()

    def on_acked(self, mid: int, ok: bool) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        self._inflight_rows.discard(entry.row_id)
        if not ok:
            log.error("broker_rejected_publish", row=entry.row_id, event_id=entry.event_id)
        self.store.delete(entry.row_id)
        self.acked += 1
        if ok and entry.event_id is not None:
            for listener in self.delivered_listeners:
                listener(entry.event_id)

    def drain(self) -> None:
        """Publish stored messages in priority order, up to the in-flight window."""
        if not self.online:
            return
        room = self.window - len(self._inflight)
        if room <= 0 or len(self.store) == len(self._inflight_rows):
            return
        for p in self.store.pending(room, self._sent_upto):
            mid = self.publisher.publish(p.topic, p.payload, qos=1)
            if mid is None:
                return  # link went down; uplink_disconnected follows
            self._sent_upto[p.priority] = p.id
            self._inflight[mid] = _InFlight(p.id, p.event_id)
            self._inflight_rows.add(p.id)
            self.published += 1

    @property
    def inflight(self) -> int:
        return len(self._inflight)
