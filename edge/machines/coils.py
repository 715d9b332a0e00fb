"""Coil safety, below the command layer: every unlock becomes a pulse of at most
``max_on_ms``; each lock has a cooldown; at most ``max_concurrent`` coils are energised
at once site-wide, so "open all" opens doors one after another.

``CoilPolicy`` computes the limits once; the scheduler, the GPIO coils (``max_on_s``) and the
lock boards (their unlock time and the bus's own cap) all take them from it. Plain logic on
a monotonic clock; the locker controller fires what ``due`` returns. The drivers enforce the
on-time again on their own (gpiozero's blink thread, the board's pulse timer), so a dead
core loop cannot leave a coil on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from edge.core.errors import CommandError

# Margin added to each pulse before the next coil may start (driver and bus latency).
SETTLE_S = 0.05


@dataclass(frozen=True)
class CoilPolicy:
    """The coil limits of one locker bank. Build it with ``limit``: the pulse is the
    configured pulse capped at ``max_on_ms`` (computed here and nowhere else)."""

    pulse_ms: int  # every unlock pulse, <= max_on_ms
    max_on_ms: int  # the hard cap the drivers and boards enforce on their own
    cooldown_ms: int = 0
    max_concurrent: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.pulse_ms <= self.max_on_ms:
            raise ValueError(f"pulse {self.pulse_ms} ms not within 1..{self.max_on_ms} ms")

    @classmethod
    def limit(
        cls, *, pulse_ms: int, max_on_ms: int, cooldown_ms: int = 0, max_concurrent: int = 1
    ) -> CoilPolicy:
        return cls(min(pulse_ms, max_on_ms), max_on_ms, cooldown_ms, max_concurrent)

    @property
    def pulse_s(self) -> float:
        return self.pulse_ms / 1000

    @property
    def max_on_s(self) -> float:
        return self.max_on_ms / 1000

    @property
    def cooldown_s(self) -> float:
        return self.cooldown_ms / 1000


@dataclass(frozen=True)
class Pulse:
    locker: int
    seconds: float
    reason: str


class CoilScheduler:
    def __init__(self, policy: CoilPolicy) -> None:
        self.policy = policy
        self.pulse_s = policy.pulse_s
        self.cooldown_s = policy.cooldown_s
        self.max_concurrent = policy.max_concurrent
        self._queue: deque[Pulse] = deque()
        self._energised: dict[int, float] = {}  # locker -> energised until
        self._ready_at: dict[int, float] = {}  # locker -> cooldown ends

    def request(self, locker: int, reason: str, now: float) -> int:
        """Queue a pulse; returns its place in the queue (0 = next). Raises CommandError
        when the lock is cooling down or already queued."""
        self._expire(now)
        if any(p.locker == locker for p in self._queue) or locker in self._energised:
            raise CommandError("busy", f"locker {locker} is already being opened")
        ready = self._ready_at.get(locker, 0.0)
        if now < ready:
            raise CommandError(
                "cooldown", f"locker {locker} coil is cooling down for {ready - now:.1f} s more"
            )
        self._queue.append(Pulse(locker, self.pulse_s, reason))
        return len(self._queue) - 1

    def cancel(self, locker: int) -> None:
        self._queue = deque(p for p in self._queue if p.locker != locker)

    def due(self, now: float) -> list[Pulse]:
        """Pulses to fire now (the caller fires them immediately)."""
        self._expire(now)
        out: list[Pulse] = []
        while self._queue and len(self._energised) < self.max_concurrent:
            p = self._queue.popleft()
            self._energised[p.locker] = now + p.seconds + SETTLE_S
            self._ready_at[p.locker] = now + p.seconds + self.cooldown_s
            out.append(p)
        return out

    def hold(self, locker: int, until: float) -> None:
        """Count ``locker`` as energised until ``until`` (a bus pulse whose send time is not
        known yet: the bus may hold an unlock for a while before it goes out)."""
        self._energised[locker] = max(self._energised.get(locker, 0.0), until)
        self._ready_at[locker] = max(self._ready_at.get(locker, 0.0), until + self.cooldown_s)

    def confirm(self, locker: int, sent_at: float) -> None:
        """The bus reports the unlock went out at ``sent_at``: the coil is on from then."""
        self._energised[locker] = sent_at + self.pulse_s + SETTLE_S
        self._ready_at[locker] = sent_at + self.pulse_s + self.cooldown_s

    def _expire(self, now: float) -> None:
        for locker, until in list(self._energised.items()):
            if until <= now:
                del self._energised[locker]

    def next_wake(self) -> float | None:
        """When ``due`` may next return something (the earliest coil to finish)."""
        if not self._queue or not self._energised:
            return None
        return min(self._energised.values())

    @property
    def queued(self) -> int:
        return len(self._queue)

    def energised(self, now: float) -> list[int]:
        return sorted(k for k, until in self._energised.items() if until > now)
