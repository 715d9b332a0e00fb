"""The one wait helper of tests and benches: poll a condition, never sleep a fixed time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["WaitTimeout", "wait_until"]

T = TypeVar("T")


class WaitTimeout(AssertionError, TimeoutError):
    """A condition did not hold in time: a test failure (AssertionError) and, for benches,
    a TimeoutError."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.005,
    message: str = "",
) -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy; return
    that value.

    An exception from ``predicate`` counts as "not yet" (a message that has not arrived, a file
    half written). On timeout raises :class:`WaitTimeout` naming ``message`` (or the
    predicate) and the last exception, if any.
    """
    pause = threading.Event()  # never set: .wait(t) is an interruptible pause
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # keep polling; report the last error on timeout
            last_exc = exc
        else:
            if value:
                return value
            last_exc = None
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc is not None else ""
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        pause.wait(interval)
