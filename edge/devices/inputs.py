"""A raw input made trustworthy on the core thread: debounced, faults reported."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from drivers.base import DigitalInput
from edge.core.errors import InputFaultError
from edge.core.loop import CoreLoop, Timer
from edge.machines.debounce import Debouncer

log = structlog.get_logger(__name__)


class DebouncedInput:
    """Posts raw edges from the driver's thread into the core loop, debounces them there
    and calls ``on_change(level)`` (core thread) when the stable level changes."""

    def __init__(
        self,
        dev: DigitalInput,
        debounce_s: float,
        loop: CoreLoop,
        on_change: Callable[[bool], None],
        on_fault: Callable[[str], None],
    ) -> None:
        self.dev = dev
        self.name = dev.name
        self.loop = loop
        self.on_change = on_change
        self.on_fault = on_fault
        self.fault: str | None = None
        self.deb = Debouncer(debounce_s, False)
        self._timer: Timer | None = None

    def start(self) -> bool:
        """Read the initial level (core thread). Returns it; a read failure is a fault."""
        try:
            level = self.dev.read()
        except InputFaultError as exc:
            self.fault = str(exc)
            log.error("input_fault", input=self.name, error=str(exc))
            self.on_fault(str(exc))
            level = False
        self.deb = Debouncer(self.deb.debounce_s, level)
        self.dev.set_listener(self._from_driver)
        return level

    def check(self) -> str | None:
        """Self-check (core thread): read the input now. Returns the fault, or None.
        A fault is reported once through on_fault; recovery clears it."""
        try:
            self.dev.read()
        except InputFaultError as exc:
            if self.fault is None:
                self.fault = str(exc)
                log.error("input_fault", input=self.name, error=str(exc))
                self.on_fault(str(exc))
            return self.fault
        self.fault = None
        return None

    @property
    def level(self) -> bool:
        return self.deb.stable

    def stop(self) -> None:
        self.dev.set_listener(None)
        if self._timer is not None:
            self._timer.cancel()

    def _from_driver(self, level: bool, t: float) -> None:
        # Driver thread: hand over, nothing else.
        self.loop.post(lambda: self._raw(level, t))

    def _raw(self, level: bool, t: float) -> None:
        # A level that was already stable for the debounce time before this edge counts,
        # even if the core loop is running late and its timer has not fired yet.
        settled = self.deb.poll(t)
        if settled is not None:
            self.on_change(settled)
        deadline = self.deb.feed(level, t)
        if deadline is None:
            return
        if self.deb.debounce_s == 0:
            self._poll()
        elif self._timer is None or self._timer.cancelled or self._timer.when > deadline:
            self._schedule(deadline)

    def _schedule(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(deadline - self.loop.clock.monotonic(), self._poll)

    def _poll(self) -> None:
        self._timer = None
        new = self.deb.poll(self.loop.clock.monotonic())
        if new is not None:
            self.on_change(new)
        elif self.deb.deadline is not None:
            self._schedule(self.deb.deadline)
