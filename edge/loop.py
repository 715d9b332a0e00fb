"""The core loop: one thread owns all state. Other threads only ``post`` into it.

Timers are scheduled on the injected clock's monotonic time, so tests drive the loop
with a FakeClock and ``run_pending()`` instead of sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import queue
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from edge.clock import Clock

log = structlog.get_logger(__name__)

Job = Callable[[], None]


@dataclass(order=True)
class Timer:
    when: float
    order: int
    fn: Job = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class CoreLoop:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._timers: list[Timer] = []
        self._order = itertools.count()
        self._stopping = False
        self.after_batch: list[Job] = []  # run once after each batch (commit, drain)

    # ---- any thread ----
    def post(self, fn: Job) -> None:
        """Hand work to the core thread. Safe from any thread; never blocks."""
        self._queue.put(fn)

    def stop(self) -> None:
        self._stopping = True
        self._queue.put(None)

    # ---- core thread only ----
    def call_later(self, delay_s: float, fn: Job) -> Timer:
        t = Timer(self.clock.monotonic() + max(0.0, delay_s), next(self._order), fn)
        heapq.heappush(self._timers, t)
        return t

    def next_deadline(self) -> float | None:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].when if self._timers else None

    def _run(self, fn: Job) -> None:
        try:
            fn()
        except Exception:
            # One bad handler must not take the site down; it is logged with its traceback.
            log.exception("core_job_failed", job=getattr(fn, "__qualname__", repr(fn)))

    def run_pending(self, max_jobs: int = 10_000) -> int:
        """Run queued jobs, then due timers, without waiting; then the after-batch hooks.

        Queued jobs go first: they carry driver timestamps, so an edge that arrived before
        a timer's deadline is seen before that timer fires, even when the loop runs late."""
        n = 0
        while n < max_jobs:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                continue
            self._run(job)
            n += 1
        now = self.clock.monotonic()
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                break
            self._run(heapq.heappop(self._timers).fn)
            n += 1
        for hook in self.after_batch:
            self._run(hook)
        return n

    def run_once(self, max_wait_s: float) -> int:
        """Wait for work (up to max_wait_s or the next timer), then run a batch."""
        deadline = self.next_deadline()
        wait = max_wait_s
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - self.clock.monotonic()))
        try:
            job = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            job = None
        n = 0
        if job is not None:
            self._run(job)
            n = 1
        return n + self.run_pending()

    def run_forever(self, tick_s: float = 0.5) -> None:
        while not self._stopping:
            self.run_once(tick_s)

    @property
    def stopping(self) -> bool:
        return self._stopping
