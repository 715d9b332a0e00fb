"""The site's watch over its store: when the store goes degraded (a write or commit failed,
or it could not be opened) the fault is reported once (``store.fault``, alarm priority), the
site is told (its alarms escalate as if the link were down) and the store is retried with
backoff (``STORE_RETRY_MIN_S`` doubling up to ``STORE_RETRY_MAX_S``) until it recovers:
then ``store.recovered`` (and ``store.reset`` when a damaged file was moved aside meanwhile).
Core thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.core.clock import Clock
from edge.core.loop import CoreLoop, Timer
from edge.core.outbox import Outbox
from edge.core.store import Store
from edge.models import StoreFault, StoreRecovered, StoreReset

# A degraded store is retried after 1 s, doubling up to 30 s (a local resource: no jitter).
STORE_RETRY_MIN_S = 1.0
STORE_RETRY_MAX_S = 30.0


class StoreWatch:
    """``started``: whether the site has started (a fault before is ``at_start``);
    ``on_fault``: the site's reaction to a fault (escalate, publish the status);
    ``on_recovered``: to a recovery (publish the status)."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        loop: CoreLoop,
        clock: Clock,
        log: Any,
        *,
        started: Callable[[], bool],
        on_fault: Callable[[], None],
        on_recovered: Callable[[], None],
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.loop = loop
        self.clock = clock
        self.log = log
        self._started = started
        self._on_fault = on_fault
        self._on_recovered = on_recovered
        self._reported = False
        self._retry: Timer | None = None
        self._delay = STORE_RETRY_MIN_S
        self._degraded_at = 0.0

    def check(self) -> None:
        """The store went degraded: report it, escalate an alarm at once, retry the store
        with backoff."""
        store = self.store
        if not store.degraded or self._reported:
            return
        self._reported = True
        self._degraded_at = self.clock.monotonic()
        self.log.error("store_degraded", error=store.error, in_memory=store.in_memory)
        self.outbox.emit(
            "site",
            StoreFault(error=store.error or "unknown", at_start=not self._started()),
            alarm=True,
        )
        # An alarm the centre may not hear of reliably escalates now, as with the link down.
        self._on_fault()
        self._delay = STORE_RETRY_MIN_S
        self._schedule()

    def _schedule(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self.loop.call_later(self._delay, self._try)

    def _try(self) -> None:
        self._retry = None
        store = self.store
        if not store.degraded:
            return
        quarantined = store.quarantined
        if not store.recover():
            self._delay = min(self._delay * 2, STORE_RETRY_MAX_S)
            self._schedule()
            return
        self._reported = False
        if store.quarantined is not None and store.quarantined != quarantined:
            self.outbox.emit("site", StoreReset(quarantined=str(store.quarantined)))
        degraded_s = round(self.clock.monotonic() - self._degraded_at, 3)
        self.log.info(
            "store_recovered", degraded_s=degraded_s, persisted=store.persisted_on_recovery
        )
        self.outbox.emit(
            "site",
            StoreRecovered(degraded_s=degraded_s, persisted=store.persisted_on_recovery),
        )
        self._on_recovered()
