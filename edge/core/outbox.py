"""Events and results: stored first (durable outbox), then published, deleted on PUBACK.

A message the broker refuses never blocks the ones behind it: a failure PUBACK (MQTT 5),
or the connection closed right after it was sent ``reject_after_drops`` times in a row
(any protocol: what NATS and AWS IoT do with a topic they refuse), moves it to the dead
letters (edge.core.store) and an ``outbox.rejected`` event says so. To tell which message
makes the broker close the connection, the outbox sends one message at a time after two
such drops in a row, until every message in flight at the last one has been acknowledged
or moved.

Runs on the core thread only. ``drain`` is called after every core batch (after the
batch's commit, so nothing is published before it is on disk; while the store is degraded
it publishes from memory, see edge.core.store).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import structlog

from edge.core.clock import Clock, rfc3339
from edge.core.store import PRIO_ALARM, PRIO_EVENT, PRIO_RESULT, DeadLetter, Pending, Store
from edge.core.topics import Topics
from edge.models import Emit, EventData, OutboxOverflow, OutboxRejected, new_event_id

log = structlog.get_logger(__name__)

DeliveredListener = Callable[[str], None]
RejectedListener = Callable[[DeadLetter], None]
REJECTED_TYPE = OutboxRejected.TYPE
# Defaults of outbox.reject_after_drops / outbox.reject_window_s (edge.config).
REJECT_AFTER_DROPS = 3
REJECT_WINDOW_S = 2.0
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
    row: Pending
    sent_at: float  # clock.monotonic()

    @property
    def row_id(self) -> int:
        return self.row.id


def message_type(row: Pending) -> str:
    """The event type of a stored message, "result" for a result, else "unknown"."""
    if row.topic.endswith("/results"):
        return "result"
    try:
        type_ = json.loads(row.payload).get("type")
    except (ValueError, AttributeError):
        return "unknown"
    return type_ if isinstance(type_, str) else "unknown"


class Recorded(NamedTuple):
    """An event as ``Outbox.emit`` stored it: ``payload`` is its envelope
    (edge.models.Event) as JSON, published on ``topic``."""

    event_id: str
    seq: int
    ts: str
    topic: str
    payload: bytes


def json_text(s: str) -> str:
    """A JSON string exactly as pydantic writes it (UTF-8, not escaped to ASCII)."""
    if s.isascii() and s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'  # nothing to escape (an event id): a fifth of json.dumps's cost
    return json.dumps(s, ensure_ascii=False)


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
        reject_after_drops: int = REJECT_AFTER_DROPS,
        reject_window_s: float = REJECT_WINDOW_S,
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
        self.rejected_listeners: list[RejectedListener] = []
        self.observers: list[EventObserver] = []
        self.published = 0
        self.acked = 0
        self.rejected = 0
        self.reject_after_drops = reject_after_drops
        self.reject_window_s = reject_window_s
        # Rows in flight when the broker closed the connection right after a publish: while
        # any is left, one message at a time is in flight (which one makes it close?).
        self._suspects: set[int] = set()
        self._strikes: tuple[int, int] | None = None  # (row id, drops in a row right after it)
        self._drops_in_a_row = 0  # connections in a row closed right after a publish
        self._to_report: list[DeadLetter] = []
        # (device, type) -> (topic, the envelope's bytes from "site" to "ts"), for ``topics``
        self._envelopes: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._envelopes_for = topics
        # Logging is configured once, before the site is built (edge.cli).
        self._log_debug = log.is_enabled_for(logging.DEBUG)

    # ---- writing ----
    def _envelope(self, device: str, type_: str) -> tuple[str, bytes]:
        if self._envelopes_for is not self.topics:
            self._envelopes, self._envelopes_for = {}, self.topics
        key = (device, type_)
        got = self._envelopes.get(key)
        if got is None:
            site = self.topics.site
            middle = f',"site":{json_text(site)},"device":{json_text(device)},'
            middle += f'"type":{json_text(type_)},"ts":"'
            got = self._envelopes[key] = (self.topics.event(type_), middle.encode("utf-8"))
        return got

    def emit(
        self,
        device: str,
        data: EventData,
        *,
        alarm: bool = False,
        event_id: str | None = None,
    ) -> Recorded:
        """Record an event durably-to-be (committed with the batch) and return it.

        ``data`` is the typed data of a registered event type (its model validated it when
        it was built); any other type raises UnknownEventError and stores nothing."""
        type_ = getattr(data, "TYPE", None)
        if type_ is None or self.events.get(type_) is not type(data):
            raise UnknownEventError(
                f"event type {type_!r} ({type(data).__name__}) is not registered; "
                f"known: {sorted(self.events)}"
            )
        # The envelope (edge.models.Event) is written out directly: building the model to
        # dump it cost a tenth of the outbox's throughput. The same bytes as
        # ``Event(...).model_dump_json()`` (tests/test_outbox_envelope.py). Everything that
        # can fail is done before ``next_seq``: a refused event uses up no seq.
        topic, middle = self._envelope(device, type_)
        event_id = event_id or new_event_id()
        head = f'{{"event_id":{json_text(event_id)},"seq":'.encode()
        body = data.__pydantic_serializer__.to_json(data)
        seq = self.store.next_seq()
        ts = rfc3339(self.clock.now())
        payload = b"".join((head, str(seq).encode(), middle, ts.encode(), b'","data":', body, b"}"))
        self.store.append(
            topic,
            payload,
            PRIO_ALARM if alarm else PRIO_EVENT,
            seq=seq,
            event_id=event_id,
        )
        # Alarm-priority events at info; routine ones at debug (one log write per event
        # costs a third of the outbox's throughput; even a filtered-out call costs 2%).
        if alarm:
            log.info("event", type=type_, device=device, seq=seq, event_id=event_id)
        elif self._log_debug:
            log.debug("event", type=type_, device=device, seq=seq, event_id=event_id)
        for observe in self.observers:
            try:
                observe(device, data, ts)
            except Exception:
                log.exception("event_observer_failed", type=type_)
        if type_ != "outbox.overflow":  # reporting an overflow must not start another
            self._check_overflow()
        return Recorded(event_id, seq, ts, topic, payload)

    def record(self, e: Emit) -> Recorded:
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
        self._suspects -= dropped.ids
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

    def on_disconnected(self, dead_link: bool = False) -> None:
        """The connection ended. ``dead_link``: the site itself left a silent link (then
        nothing in flight is to blame)."""
        self.online = False
        if not dead_link:
            self._judge_drop()
        self._forget_inflight()

    def _judge_drop(self) -> None:
        """Did the broker close the connection right after a message was sent (within
        reject_window_s, before its PUBACK)? If it was the only message in flight, that is
        one more drop in a row for it (at reject_after_drops it is moved to the dead
        letters). From the second such connection in a row on, every message in flight
        right before the drop is a suspect, sent alone."""
        now = self.clock.monotonic()
        recent = [f for f in self._inflight.values() if now - f.sent_at <= self.reject_window_s]
        if not recent:
            self._drops_in_a_row = 0
            return
        self._drops_in_a_row += 1
        if len(self._inflight) == 1:
            row = recent[0].row
            strikes = self._strikes
            n = strikes[1] + 1 if strikes is not None and strikes[0] == row.id else 1
            self._strikes = (row.id, n)
            log.warning(
                "outbox_connection_closed_after_publish",
                row=row.id,
                seq=row.seq,
                drops_in_a_row=n,
                reject_after_drops=self.reject_after_drops,
            )
            if n >= self.reject_after_drops:
                self._strikes = None
                self._reject(
                    row,
                    f"the broker closed the connection right after it was sent, {n} times in a row",
                )
                return
        if self._suspects or self._drops_in_a_row >= 2:
            self._suspects.update(f.row_id for f in recent)

    def _forget_inflight(self) -> None:
        """Unacknowledged messages are sent again from the store after a (re)connect."""
        self._inflight.clear()
        self._inflight_rows.clear()
        self._sent_upto.clear()

    def on_acked(self, mid: int, ok: bool, reason: str | None = None) -> None:
        """A PUBACK. ``ok`` False: the broker refused the message (MQTT 5 reason code
        0x80 or above, described by ``reason``): it moves to the dead letters."""
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        row = entry.row
        self._inflight_rows.discard(row.id)
        self._suspects.discard(row.id)
        if self._strikes is not None and self._strikes[0] == row.id:
            self._strikes = None
        if not ok:
            self._reject(row, f"refused by the broker: PUBACK {reason or 'failure'}")
            return
        self.store.delete(row.id)
        self.acked += 1
        if row.event_id is not None:
            for listener in self.delivered_listeners:
                listener(row.event_id)

    def _reject(self, row: Pending, reason: str) -> None:
        type_ = message_type(row)
        dl = self.store.dead_letter(row, type_, reason, rfc3339(self.clock.now()))
        self._suspects.discard(row.id)
        self.rejected += 1
        log.error(
            "outbox_rejected",
            dead_letter=dl.id,
            type=type_,
            seq=dl.seq,
            event_id=dl.event_id,
            alarm=dl.priority == PRIO_ALARM,
            reason=reason,
        )
        if type_ != REJECTED_TYPE:  # a refused report is not reported again (no loop)
            self._to_report.append(dl)
        for listener in self.rejected_listeners:
            try:
                listener(dl)
            except Exception:
                log.exception("rejected_listener_failed", dead_letter=dl.id)

    def report_rejected(self) -> None:
        """One ``outbox.rejected`` event per type and reason for the messages moved to the
        dead letters since the last call. The site calls it after every core batch, before
        the commit."""
        if not self._to_report:
            return
        groups: dict[tuple[str, str], list[DeadLetter]] = defaultdict(list)
        for dl in self._to_report:
            groups[(dl.type, dl.reason)].append(dl)
        self._to_report = []
        for (type_, reason), dls in groups.items():
            seqs = [d.seq for d in dls if d.seq is not None]
            self.emit(
                "site",
                OutboxRejected(
                    count=len(dls),
                    type=type_,
                    reason=reason,
                    first_seq=min(seqs) if seqs else None,
                    last_seq=max(seqs) if seqs else None,
                    dead_letters=[d.id for d in dls],
                ),
            )

    def resend_dead_letters(self, ids: list[int] | None) -> list[int]:
        """Back into the outbox (they are sent again like any stored message)."""
        moved = self.store.resend_dead_letters(ids)
        if moved:
            log.info("dead_letters_resent", count=len(moved))
        return moved

    def drain(self) -> None:
        """Publish stored messages in priority order, up to the in-flight window."""
        if not self.online:
            return
        if self._suspects:
            window = 1
        else:
            window = self.window
            if self._drops_in_a_row >= 2:
                self._drops_in_a_row = 0  # every suspect is answered: start counting again
        room = window - len(self._inflight)
        if room <= 0 or len(self.store) == len(self._inflight_rows):
            return
        now = self.clock.monotonic()
        for p in self.store.pending(room, self._sent_upto):
            mid = self.publisher.publish(p.topic, p.payload, qos=1)
            if mid is None:
                return  # link went down; uplink_disconnected follows
            self._sent_upto[p.priority] = p.id
            self._inflight[mid] = _InFlight(p, now)
            self._inflight_rows.add(p.id)
            self.published += 1

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def probing(self) -> bool:
        """Sending one message at a time to find the one the broker refuses."""
        return bool(self._suspects)
