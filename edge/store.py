"""The durable store: one SQLite file (WAL) in the data dir holding the outbox, the
sequence counter, remembered command ids and the machines' persisted state.

Only the core thread touches a Store. Writes accumulate in one transaction that the
core commits once per loop iteration (``durability: group``) or after every event
(``per_event``); ``synchronous=FULL`` makes every commit an fsync, so a committed
event survives a process crash and a power cut.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from edge.errors import StoreError

log = structlog.get_logger(__name__)

# Priorities: lower drains first. Alarms are never dropped.
PRIO_ALARM = 0
PRIO_RESULT = 1
PRIO_EVENT = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    seq INTEGER,
    event_id TEXT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority, id);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,
    result BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Pending:
    id: int
    topic: str
    payload: bytes
    event_id: str | None
    priority: int


@dataclass(frozen=True)
class Dropped:
    count: int
    first_seq: int | None
    last_seq: int | None
    ids: frozenset[int] = frozenset()


class Store:
    def __init__(self, path: Path, *, max_messages: int = 100_000, durability: str = "group"):
        self.path = path
        self.max_messages = max_messages
        self.per_event = durability == "per_event"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.quarantined: Path | None = None
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError as exc:
            # Never silently recreate: keep the damaged file for inspection, say so loudly.
            self.quarantined = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            log.error(
                "store_corrupt", path=str(path), error=str(exc), moved_to=str(self.quarantined)
            )
            os.replace(path, self.quarantined)
            for suffix in ("-wal", "-shm"):
                side = Path(str(path) + suffix)
                if side.exists():
                    os.replace(side, Path(str(self.quarantined) + suffix))
            self._db = self._open(path)
        self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        row = self._db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        self._seq = int(row[0]) if row else 0  # written with the transaction that uses it
        self._seq_dirty = False
        self._dirty = False
        self._needs_sync = False  # the open transaction holds more than PUBACK deletes
        self._lazy_deletes = 0
        self._deletes: list[tuple[int]] = []

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                db.close()
                raise sqlite3.DatabaseError(f"quick_check: {ok}")
            db.executescript(SCHEMA)
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"{path}: cannot open the store ({exc}); check the data_dir exists and is writable"
            ) from None
        return db

    # ---- transactions ----
    # A transaction holding only PUBACK deletes is not worth an fsync of its own: it rides
    # along with the next real commit (or after LAZY_DELETES, or flush()). Losing such
    # deletes in a crash only re-sends events the broker already has (same event_id).
    LAZY_DELETES = 1000

    def _begin(self, sync: bool = True) -> None:
        if not self._dirty:
            self._db.execute("BEGIN IMMEDIATE")
            self._dirty = True
        self._needs_sync = self._needs_sync or sync

    def commit(self) -> None:
        """Make everything recorded since the last commit durable (one fsync). Deletes
        alone wait for the next commit that records something (see LAZY_DELETES)."""
        if self._dirty and (self._needs_sync or self._lazy_deletes >= self.LAZY_DELETES):
            self.flush()

    def flush(self) -> None:
        """Commit whatever is open, deletes included."""
        if not self._dirty:
            return
        self._apply_deletes()
        if self._seq_dirty:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES('seq', ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (self._seq,),
            )
            self._seq_dirty = False
        self._db.execute("COMMIT")
        self._dirty = False
        self._needs_sync = False
        self._lazy_deletes = 0

    @property
    def has_uncommitted(self) -> bool:
        return self._dirty

    # ---- sequence ----
    def last_seq(self) -> int:
        return self._seq

    def next_seq(self) -> int:
        """The next seq; it is stored by the commit that stores its event."""
        self._begin()
        self._seq += 1
        self._seq_dirty = True
        return self._seq

    # ---- outbox ----
    def append(
        self,
        topic: str,
        payload: bytes,
        priority: int,
        seq: int | None = None,
        event_id: str | None = None,
    ) -> int:
        self._begin()
        cur = self._db.execute(
            "INSERT INTO outbox(priority, seq, event_id, topic, payload) VALUES (?, ?, ?, ?, ?)",
            (priority, seq, event_id, topic, payload),
        )
        self._count += 1
        if self.per_event:
            self.commit()
        return int(cur.lastrowid or 0)

    def overflow(self) -> Dropped | None:
        """Apply the bound: drop the oldest non-alarm messages, lowest priority first,
        down to 99% of max_messages. Alarms are never dropped (the bound may be exceeded
        by alarms alone). Returns what was dropped, so the caller reports the seq range."""
        if self._count <= self.max_messages:
            return None
        target = self._count - int(self.max_messages * 0.99)
        self._begin()
        self._apply_deletes()
        dropped: list[tuple[int, int | None]] = []
        for prio in (PRIO_EVENT, PRIO_RESULT):
            need = target - len(dropped)
            if need <= 0:
                break
            dropped += self._db.execute(
                "SELECT id, seq FROM outbox WHERE priority=? ORDER BY id LIMIT ?", (prio, need)
            ).fetchall()
        if not dropped:
            return None
        self._db.executemany("DELETE FROM outbox WHERE id=?", [(r[0],) for r in dropped])
        self._count -= len(dropped)
        seqs = [s for _, s in dropped if s is not None]
        self.flush()
        return Dropped(
            len(dropped),
            min(seqs) if seqs else None,
            max(seqs) if seqs else None,
            frozenset(r[0] for r in dropped),
        )

    def pending(self, limit: int, after: dict[int, int] | None = None) -> list[Pending]:
        """Oldest first within a priority, highest priority first, skipping in each
        priority the rows up to ``after[priority]`` (already in flight)."""
        after = after or {}
        self._apply_deletes()
        out: list[Pending] = []
        for prio in (PRIO_ALARM, PRIO_RESULT, PRIO_EVENT):
            if len(out) >= limit:
                break
            rows = self._db.execute(
                "SELECT id, topic, payload, event_id FROM outbox WHERE priority=? AND id>? "
                "ORDER BY id LIMIT ?",
                (prio, after.get(prio, 0), limit - len(out)),
            ).fetchall()
            out += [Pending(r[0], r[1], bytes(r[2]), r[3], prio) for r in rows]
        return out

    def delete(self, row_id: int) -> None:
        """Forget an acknowledged row. Deletes are batched: applied before the next read
        of the outbox and before every commit."""
        self._lazy_deletes += 1
        self._begin(sync=False)
        self._deletes.append((row_id,))
        self._count -= 1

    def _apply_deletes(self) -> None:
        if self._deletes:
            self._db.executemany("DELETE FROM outbox WHERE id=?", self._deletes)
            self._deletes.clear()

    def __len__(self) -> int:
        return self._count

    # ---- remembered commands ----
    def command_result(self, command_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT result FROM commands WHERE command_id=?", (command_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    def remember_command(self, command_id: str, expires_at: float, result: bytes) -> None:
        self._begin()
        self._db.execute(
            "INSERT OR REPLACE INTO commands(command_id, expires_at, result) VALUES (?, ?, ?)",
            (command_id, expires_at, result),
        )

    def forget_commands_before(self, epoch: float) -> int:
        self._begin()
        return int(self._db.execute("DELETE FROM commands WHERE expires_at < ?", (epoch,)).rowcount)

    # ---- machine state ----
    def get_state(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def put_state(self, key: str, value: str) -> None:
        self._begin()
        self._db.execute(
            "INSERT INTO kv(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()
