"""A lock-bus listener for driver tests (CU16 and Modbus buses): records every callback."""

from __future__ import annotations

import threading
from typing import Any


class BusRecorder:
    """A ``Cu16Listener`` that records every callback (thread-safe): ``events`` as tuples
    (``("status", board, closed, items, t)``, ``("unlock_sent", board, lock, t)``,
    ``("fault", board, reason)``, ``("recovered", board)``, ``("garbage", count)``) and the
    times of the unlocks sent (``unlock_sent_at``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[Any, ...]] = []
        self.unlock_sent_at: list[float] = []

    def _add(self, *event: Any) -> None:
        with self._lock:
            self.events.append(event)

    def on_status(
        self, board: int, closed: tuple[bool, ...], items: tuple[bool, ...], t: float
    ) -> None:
        self._add("status", board, closed, items, t)

    def on_unlock_sent(self, board: int, lock: int, t: float) -> None:
        self.unlock_sent_at.append(t)
        self._add("unlock_sent", board, lock, t)

    def on_board_fault(self, board: int, reason: str) -> None:
        self._add("fault", board, reason)

    def on_board_recovered(self, board: int) -> None:
        self._add("recovered", board)

    def on_garbage(self, count: int) -> None:
        self._add("garbage", count)

    def of(self, kind: str, board: int | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            return [e for e in self.events if e[0] == kind and (board is None or e[1] == board)]

    def closed(self, board: int) -> tuple[bool, ...]:
        """The latest reported ``closed`` tuple of ``board`` (empty before the first)."""
        statuses = self.of("status", board)
        return tuple(statuses[-1][2]) if statuses else ()

    def door_open(self, board: int, lock: int) -> bool:
        closed = self.closed(board)
        return bool(closed) and not closed[lock - 1]
