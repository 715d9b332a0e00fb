"""The simulated site's clock: the system clock, with its wall clock moved forward on
request (``POST /clock``, docs/simulator-api.md), e.g. to let a parcel's free 48 hours
pass in a second. Never backward: a site whose wall clock goes back refuses signed
commands until it has caught up with its high-water mark (docs/mqtt-api.md).

The offset is kept in ``<data_dir>/sim-clock.json`` so a restart with the same data dir
keeps the site's time (its high-water mark was raised with it)."""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from edge.core.clock import SystemClock, rfc3339
from simulator.control import ApiError, ControlApi

log = structlog.get_logger(__name__)

FILE = "sim-clock.json"
MAX_ADVANCE_S = 10 * 366 * 86400.0  # ten years at a time


class SimClock(SystemClock):
    def __init__(self, data_dir: Path | None = None) -> None:
        self._lock = threading.Lock()
        self.path = data_dir / FILE if data_dir is not None else None
        self._offset = 0.0
        if self.path is not None and self.path.exists():
            try:
                offset = float(json.loads(self.path.read_text())["offset_s"])
                if not math.isfinite(offset) or offset < 0:
                    raise ValueError(f"offset_s {offset}")
                self._offset = offset
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("sim_clock_unreadable", path=str(self.path), error=str(exc))

    @property
    def offset_s(self) -> float:
        with self._lock:
            return self._offset

    def now(self) -> datetime:
        with self._lock:
            offset = self._offset
        return datetime.now(UTC) + timedelta(seconds=offset)

    def advance(self, seconds: float) -> float:
        """Move the wall clock forward; returns the new offset. Monotonic time (timers,
        debounce, pulses) is not moved."""
        if not math.isfinite(seconds) or not 0 < seconds <= MAX_ADVANCE_S:
            raise ValueError(f"advance_s must be > 0 and at most {MAX_ADVANCE_S:.0f}")
        with self._lock:
            self._offset += seconds
            offset = self._offset
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps({"offset_s": offset}))
            except OSError as exc:
                log.error("sim_clock_not_saved", path=str(self.path), error=str(exc))
        log.warning("sim_clock_advanced", by_s=seconds, offset_s=offset, now=rfc3339(self.now()))
        return offset

    def snapshot(self) -> dict[str, Any]:
        return {"now": rfc3339(self.now()), "offset_s": self.offset_s}


def add_clock_routes(api: ControlApi, clock: SimClock) -> None:
    def get_clock(params: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, clock.snapshot()

    def post_clock(params: dict[str, str], body: Any) -> tuple[int, Any]:
        value = body.get("advance_s") if isinstance(body, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ApiError(400, 'body must be {"advance_s": <seconds forward, > 0>}')
        try:
            clock.advance(float(value))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return 200, clock.snapshot()

    api.route("GET", "/clock", get_clock)
    api.route("POST", "/clock", post_clock)
