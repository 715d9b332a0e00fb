"""What the command intake trusts: the centre's keys (each allowed a set of command names,
loaded at start so a bad key file fails then) and the site's own wall clock (a high-water
mark kept in the store: a Pi has no RTC and NTP is unauthenticated, so a clock found behind
the mark refuses commands instead of accepting expired ones). Used by
:class:`edge.core.commands.CommandProcessor`, which re-exports these names.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import structlog

from edge.config import TrustedKey
from edge.core.clock import Clock
from edge.core.signing import PublicKey, load_public_key
from edge.core.store import Store

log = structlog.get_logger("edge.core.commands")

# The wall clock may fall this far behind its high-water mark (an NTP step back, a slewed
# second) before commands are refused. It must stay well below PURGE_MARGIN_S: a command
# id is forgotten only once its expires_at is PURGE_MARGIN_S behind the mark, so a clock
# within the tolerance still refuses every forgotten command as expired.
CLOCK_TOLERANCE_S = 5.0
PURGE_MARGIN_S = 60.0
CLOCK_MARK_KEY = "clock.high_water"  # store kv: the mark, Unix seconds
MARK_SAVE_S = 60.0  # tick() persists the mark once it has moved this far


@dataclass(frozen=True)
class LoadedKey:
    key_id: str
    public_key: PublicKey
    patterns: tuple[str, ...]

    def allows(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


def load_keys(keys: list[TrustedKey]) -> dict[str, LoadedKey]:
    """Load every trusted public key now, so a bad key file fails at start."""
    return {
        k.key_id: LoadedKey(k.key_id, load_public_key(k.public_key), tuple(k.commands))
        for k in keys
    }


class WallClockMark:
    """The highest wall-clock time this site has seen, kept in the store so that it
    survives restarts. A Pi has no RTC: after a reboot its clock may start from the last
    saved time, and NTP is unauthenticated. While the clock is more than
    CLOCK_TOLERANCE_S behind the mark it is not trusted (``trusted`` is False)."""

    def __init__(self, store: Store, clock: Clock, tolerance_s: float = CLOCK_TOLERANCE_S):
        self.store = store
        self.clock = clock
        self.tolerance_s = tolerance_s
        raw = store.get_state(CLOCK_MARK_KEY)
        try:
            self.mark = float(raw) if raw is not None else 0.0
        except ValueError:
            self.mark = math.nan
        if not math.isfinite(self.mark):
            log.error("clock_mark_unreadable", value=raw)
            self.mark = 0.0
        self._saved = self.mark
        self.trusted = True
        self.observe()

    def observe(self) -> bool:
        """Read the wall clock: raise the mark (in memory), return whether it is trusted."""
        now = self.clock.now().timestamp()
        self.mark = max(self.mark, now)
        self.trusted = now >= self.mark - self.tolerance_s
        return self.trusted

    def save(self, min_step_s: float = 0.0) -> None:
        """Persist the mark (in the store's open transaction) if it moved more than
        ``min_step_s`` since it was last persisted."""
        if self.mark > self._saved + min_step_s:
            self.store.put_state(CLOCK_MARK_KEY, f"{self.mark:.6f}")
            self._saved = self.mark
