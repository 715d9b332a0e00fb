"""Debounce as plain logic (gpiozero's mock pins ignore bounce_time, and real contacts
bounce): a level counts once it has been stable for ``debounce_s``."""

from __future__ import annotations


class Debouncer:
    def __init__(self, debounce_s: float, initial: bool) -> None:
        self.debounce_s = debounce_s
        self.stable = initial
        self.raw = initial
        self.deadline: float | None = None
        self.transitions: list[float] = []  # raw change times, for chatter detection

    def feed(self, level: bool, t: float) -> float | None:
        """A raw edge at time t. Returns the time to call ``poll`` at, or None."""
        if level == self.raw:
            return self.deadline
        self.raw = level
        self.transitions.append(t)
        if len(self.transitions) > 64:
            del self.transitions[:32]
        if level == self.stable:
            self.deadline = None  # bounced back: nothing happened
        else:
            self.deadline = t + self.debounce_s
        return self.deadline

    def poll(self, now: float) -> bool | None:
        """The new stable level if it changed by ``now``, else None."""
        if self.deadline is None or now < self.deadline:
            return None
        self.deadline = None
        if self.raw != self.stable:
            self.stable = self.raw
            return self.stable
        return None
