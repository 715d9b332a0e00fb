"""The core loop: one thread owns all state. Other threads only ``post`` into it.

Two lanes lead into the core thread. ``post`` is the main lane (inputs, timers' owners,
uplink events, replies from worker threads): unbounded, always served first. ``post_low``
is the low-priority lane for inbound commands: bounded, served only when nothing in the
main lane waits and no timer is due, a few jobs per batch. A flood of commands therefore
never delays a button, a door, the code reader or the modem by more than the one command
being handled, and never grows memory: past its bound the lane sheds (drops and counts).

Timers are scheduled on the injected clock's monotonic time, so tests drive the loop
with a FakeClock and ``run_pending()`` instead of sleeping.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from edge.core.clock import Clock

log = structlog.get_logger(__name__)

Job = Callable[[], None]

# Default bound of the low-priority lane (commands.max_queue) and the most low-priority
# jobs one batch runs (one commit per batch).
LOW_MAX_DEFAULT = 100
LOW_PER_BATCH = 50


def _wake() -> None:
    """Put into the main lane to wake a sleeping core thread for the low-priority lane."""


@dataclass(order=True)
class Timer:
    when: float
    order: int
    fn: Job = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class CoreLoop:
    def __init__(
        self, clock: Clock, *, low_max: int = LOW_MAX_DEFAULT, low_per_batch: int = LOW_PER_BATCH
    ) -> None:
        self.clock = clock
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._timers: list[Timer] = []
        self._order = itertools.count()
        self._stopping = False
        self.after_batch: list[Job] = []  # run once after each batch (commit, drain)
        # Run after each job of a batch but its last (a commit of a batch grown large).
        self.after_job: Job | None = None
        # The low-priority lane. Its lock is never taken by ``stop`` (signal-safe).
        self._low: collections.deque[Job] = collections.deque()
        self._low_lock = threading.Lock()
        self._low_max = low_max
        self._low_per_batch = low_per_batch
        self._sleeping = False  # the core thread waits in run_once: post_low must wake it
        self._shed = 0  # since the last take_shed()
        self.shed_total = 0

    # ---- any thread ----
    def post(self, fn: Job) -> None:
        """Hand work to the core thread. Safe from any thread; never blocks."""
        self._queue.put(fn)

    def post_low(self, fn: Job) -> bool:
        """Hand low-priority work (an inbound command) to the core thread, behind every
        ``post``ed job and due timer. Safe from any thread; never blocks. When ``low_max``
        jobs already wait, ``fn`` is dropped and counted (``take_shed``): returns False."""
        with self._low_lock:
            if len(self._low) >= self._low_max:
                self._shed += 1
                self.shed_total += 1
                return False
            self._low.append(fn)
            wake, self._sleeping = self._sleeping, False
        if wake:
            self._queue.put(_wake)
        return True

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

    @property
    def low_waiting(self) -> int:
        """Jobs waiting in the low-priority lane."""
        return len(self._low)

    def take_shed(self) -> int:
        """Low-priority jobs shed since the last call (and reset that count)."""
        with self._low_lock:
            n, self._shed = self._shed, 0
        return n

    def _run(self, fn: Job) -> None:
        try:
            fn()
        except Exception:
            # One bad handler must not take the site down; it is logged with its traceback.
            log.exception("core_job_failed", job=getattr(fn, "__qualname__", repr(fn)))

    def _run_queued(self, max_jobs: int) -> int:
        n = 0
        while n < max_jobs:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None or job is _wake:
                continue
            self._job(job)
            n += 1
        return n

    def _job(self, fn: Job) -> None:
        """One job of a batch, then ``after_job``."""
        self._run(fn)
        if self.after_job is not None:
            self._run(self.after_job)

    def _run_due_timers(self) -> int:
        n = 0
        now = self.clock.monotonic()
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                return n
            self._job(heapq.heappop(self._timers).fn)
            n += 1

    def _take_low(self) -> Job | None:
        with self._low_lock:
            return self._low.popleft() if self._low else None

    def run_pending(self, max_jobs: int = 10_000) -> int:
        """Run one batch without waiting: queued jobs, then due timers, then low-priority
        jobs (up to ``low_per_batch``) while nothing else waits; then the after-batch hooks.

        Queued jobs go first: they carry driver timestamps, so an edge that arrived before
        a timer's deadline is seen before that timer fires, even when the loop runs late.
        A job posted while a low-priority job runs is run right after it, and the batch
        ends there, so that it is committed and published without waiting for more
        low-priority work."""
        n = self._run_queued(max_jobs)
        n += self._run_due_timers()
        low = 0
        while low < self._low_per_batch and self._queue.empty():
            deadline = self.next_deadline()
            if deadline is not None and deadline <= self.clock.monotonic():
                break
            job = self._take_low()
            if job is None:
                break
            self._job(job)
            low += 1
        if low:
            n += low + self._run_queued(max(0, max_jobs - n))
            n += self._run_due_timers()
        for hook in self.after_batch:
            self._run(hook)
        return n

    def run_once(self, max_wait_s: float) -> int:
        """Wait for work (up to max_wait_s or the next timer), then run a batch."""
        deadline = self.next_deadline()
        wait = max_wait_s
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - self.clock.monotonic()))
        with self._low_lock:
            if self._low:
                wait = 0.0
            self._sleeping = wait > 0
        try:
            job = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
        except queue.Empty:
            job = None
        finally:
            with self._low_lock:
                self._sleeping = False
        n = 0
        if job is not None and job is not _wake:
            self._job(job)
            n = 1
        return n + self.run_pending()

    def run_forever(self, tick_s: float = 0.5) -> None:
        while not self._stopping:
            self.run_once(tick_s)

    @property
    def stopping(self) -> bool:
        return self._stopping
