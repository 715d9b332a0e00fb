"""Commands the core loop shed (its command queue was full, ``commands.max_queue``) become
one ``commands.shed`` event (and one log line) at most every ``SHED_REPORT_S``; what is shed
meanwhile goes into the next. Core thread only: :meth:`ShedReport.report` runs after every
batch of the core loop.
"""

from __future__ import annotations

from typing import Any

from edge.core.clock import Clock
from edge.core.loop import CoreLoop
from edge.core.outbox import Outbox
from edge.models import CommandsShed

SHED_REPORT_S = 10.0  # at most one commands.shed event per this many seconds


class ShedReport:
    def __init__(
        self, loop: CoreLoop, clock: Clock, outbox: Outbox, max_queue: int, log: Any
    ) -> None:
        self.loop = loop
        self.clock = clock
        self.outbox = outbox
        self.max_queue = max_queue
        self.log = log
        self._count = 0  # commands shed, not yet reported
        self._reported_at: float | None = None
        self._timer_set = False

    def report(self) -> None:
        """One commands.shed event for the commands shed since the last one, unless one
        went out less than SHED_REPORT_S ago (then a timer makes a batch run when it may)."""
        self._count += self.loop.take_shed()
        if not self._count:
            return
        now = self.clock.monotonic()
        last = self._reported_at
        if last is not None and now - last < SHED_REPORT_S:
            if not self._timer_set:
                self._timer_set = True
                self.loop.call_later(last + SHED_REPORT_S - now, self._timer_fired)
            return
        count, self._count = self._count, 0
        self._reported_at = now
        self.log.warning("commands_shed", count=count, max_queue=self.max_queue)
        self.outbox.emit("site", CommandsShed(count=count, max_queue=self.max_queue))

    def _timer_fired(self) -> None:
        self._timer_set = False  # the batch's report() reports what is waiting
