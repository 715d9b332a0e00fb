"""Clocks: the core never calls time.* directly, so tests inject a fake clock."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (timers, debounce, pulses)."""
        ...

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC (event timestamps, expiry, fees)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to. Thread-safe."""

    def __init__(self, start: datetime | None = None, mono: float = 1000.0) -> None:
        self._lock = threading.Lock()
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = mono

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def now(self) -> datetime:
        with self._lock:
            return self._wall

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._mono += seconds
            self._wall += timedelta(seconds=seconds)

    def jump(self, seconds: float) -> None:
        """Step only the wall clock, forward or back (NTP, a clock restored at boot);
        monotonic time does not move."""
        with self._lock:
            self._wall += timedelta(seconds=seconds)


# The last second written out by rfc3339 and its text up to the '.' (one tuple: replaced
# whole, so any thread may call rfc3339).
_last_second: tuple[float, str] = (float("nan"), "")


def rfc3339(ts: datetime) -> str:
    """RFC 3339 UTC with milliseconds and a 'Z', e.g. 2026-11-25T16:24:43.123Z.

    Every event's ``ts``: the date and time up to the second are written once per second
    (a third of ``isoformat``'s cost); the same text as
    ``ts.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"`` (tested)."""
    global _last_second
    second = ts.timestamp() // 1
    last = _last_second
    if last[0] != second:
        last = _last_second = (second, ts.astimezone(UTC).isoformat(timespec="seconds")[:19] + ".")
    return f"{last[1]}{ts.microsecond // 1000:03d}Z"
