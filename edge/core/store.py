"""The durable store: one SQLite file (WAL) in the data dir holding the outbox, the
sequence counter, remembered command ids and the machines' persisted state.

Only the core thread touches a Store. Writes accumulate in one transaction that the
core commits once per loop iteration (``durability: group``) or after every event
(``per_event``); ``synchronous=FULL`` makes every commit an fsync, so a committed
event survives a process crash and a power cut.

**Degraded mode.** A store that cannot write (disk full, I/O error, read-only file
system, corruption found mid-run) or cannot be opened at all never raises into the
site: the open transaction is rolled back and everything it held (events and results,
machine state, remembered commands, PUBACK deletes) moves into memory, and from then on
the same interface works on memory, on top of whatever committed rows can still be
read. ``recover()`` (the site retries it with backoff) writes what is still in memory
back in one transaction and returns to normal operation. ``seq`` lives in memory all
along, so it stays gapless and monotonic across a fault and its recovery.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

# Priorities: lower drains first. Alarms are never dropped.
PRIO_ALARM = 0
PRIO_RESULT = 1
PRIO_EVENT = 2
PRIORITIES = (PRIO_ALARM, PRIO_RESULT, PRIO_EVENT)
PRIORITY_NAMES = {PRIO_ALARM: "alarm", PRIO_RESULT: "result", PRIO_EVENT: "normal"}
# On overflow, results go first (a flood of command results must not push events out),
# then normal events; alarms never.
DROP_ORDER = (PRIO_RESULT, PRIO_EVENT)

# What a failing disk, file system or database file raises.
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)

Connect = Callable[..., sqlite3.Connection]

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
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    seq INTEGER,
    event_id TEXT,
    type TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
"""
# kv key of the number of dead letters dropped (oldest first) to stay within the bound.
DEAD_DROPPED_KEY = "dead_letters_dropped"


@dataclass(frozen=True)
class Pending:
    id: int
    topic: str
    payload: bytes
    event_id: str | None
    priority: int
    seq: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A message the broker refused, moved out of the outbox (it keeps its outbox row id)."""

    id: int
    priority: int
    seq: int | None
    event_id: str | None
    type: str  # the event type, "result", or "unknown"
    topic: str
    payload: bytes
    reason: str
    at: str  # RFC 3339, when it was moved


@dataclass(frozen=True)
class Dropped:
    count: int
    first_seq: int | None
    last_seq: int | None
    ids: frozenset[int] = frozenset()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, sqlite3.Error) else f"{type(exc).__name__}: {text}"


class Store:
    def __init__(
        self,
        path: Path,
        *,
        max_messages: int = 100_000,
        durability: str = "group",
        connect: Connect = sqlite3.connect,
        max_dead_letters: int = 1000,
    ):
        self.path = path
        self.max_messages = max_messages
        self.max_dead_letters = max_dead_letters
        self.per_event = durability == "per_event"
        self._connect = connect
        self.quarantined: Path | None = None
        # ---- degraded mode (public: the site reports it) ----
        self.degraded = False
        self.error: str | None = None  # what put the store in degraded mode (latest error)
        self.fault_at_start = False
        self.persisted_on_recovery = 0  # messages the last recover() wrote from memory
        self._read_error_logged = False
        # Memory layer: rows by priority (id order), DB rows deleted meanwhile, state.
        self._mem: dict[int, dict[int, Pending]] = {p: {} for p in PRIORITIES}
        self._gone: set[int] = set()
        self._mem_kv: dict[str, str] = {}
        self._mem_commands: dict[str, tuple[float, bytes]] = {}
        self._mem_dead: dict[int, DeadLetter] = {}
        self._gone_dead: set[int] = set()  # dead letters in the file deleted while degraded
        # What the open transaction wrote, to move into memory if it cannot commit.
        self._txn_rows: list[Pending] = []
        self._txn_deleted: list[int] = []
        self._txn_kv: dict[str, str] = {}
        self._txn_commands: dict[str, tuple[float, bytes]] = {}
        self._txn_dead: list[DeadLetter] = []
        self._txn_dead_deleted: list[int] = []
        self._db: sqlite3.Connection | None = None
        self._readonly = False
        self._loaded = False  # seq, ids and rows come from the file (not a blank start)
        self._count = 0
        self._seq = 0
        self._max_id = 0  # highest outbox id ever handed out: memory rows continue from it
        self._seq_dirty = False
        self._dirty = False
        self._needs_sync = False  # the open transaction holds more than PUBACK deletes
        self._lazy_deletes = 0
        self._deletes: list[tuple[int]] = []
        try:
            self._db = self._connect_rw()
            self._load(self._db)
        except DB_ERRORS as exc:
            self._start_degraded(exc)

    # ---- opening ----
    def _open(self, target: str | Path, *, uri: bool = False) -> sqlite3.Connection:
        db = self._connect(target, uri=uri, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            if uri:
                return db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {ok}")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _connect_rw(self) -> sqlite3.Connection:
        """Open (creating the data dir and the file if needed). A file found corrupt is
        moved aside, never silently recreated."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._open(self.path)
        except sqlite3.OperationalError:
            raise  # cannot open / write / disk full: not a damaged file
        except sqlite3.DatabaseError as exc:
            self._quarantine(str(exc))
            return self._open(self.path)

    def _quarantine(self, why: str) -> None:
        dest = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.error("store_corrupt", path=str(self.path), error=why, moved_to=str(dest))
        os.replace(self.path, dest)
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.replace(side, Path(str(dest) + suffix))
        self.quarantined = dest

    def _connect_ro(self) -> sqlite3.Connection:
        """Read what can be read of a store that cannot be opened for writing (read-only
        file system, full disk): plain read-only first, then as an immutable file."""
        base = self.path.absolute().as_uri()
        last: Exception | None = None
        for query in ("mode=ro", "immutable=1"):
            try:
                db = self._open(f"{base}?{query}", uri=True)
            except DB_ERRORS as exc:
                last = exc
                continue
            try:
                db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            except DB_ERRORS as exc:
                db.close()
                last = exc
                continue
            return db
        assert last is not None
        raise last

    def _load(self, db: sqlite3.Connection) -> None:
        self._count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        row = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        self._seq = max(self._seq, int(row[0]) if row else 0)
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        top = db.execute("SELECT MAX(id) FROM outbox").fetchone()[0]
        self._max_id = max(self._max_id, int(row[0]) if row else 0, int(top or 0))
        self._loaded = True

    def _start_degraded(self, exc: Exception) -> None:
        """The store cannot be opened for writing: run from memory, on top of whatever
        the file still lets us read (seq, machine state, unsent rows)."""
        self.fault_at_start = True
        self._fault(exc)
        if self._db is not None:  # opened, but could not even be read
            self._close_quietly(self._db)
            self._db = None
        ro: sqlite3.Connection | None = None
        try:
            ro = self._connect_ro()
            self._load(ro)
            self._db, self._readonly = ro, True
        except DB_ERRORS as ro_exc:
            if ro is not None:
                self._close_quietly(ro)
            self._count = 0
            log.warning("store_unreadable", path=str(self.path), error=_describe(ro_exc))

    @staticmethod
    def _close_quietly(db: sqlite3.Connection) -> None:
        try:
            db.close()
        except DB_ERRORS:
            pass

    # ---- degraded mode ----
    def _fault(self, exc: BaseException) -> None:
        """A write failed: roll back, move the open transaction into memory, run from
        memory until recover() succeeds. Never raises."""
        db = self._db
        if db is not None and not self._readonly:
            try:
                if db.in_transaction:
                    db.execute("ROLLBACK")
            except DB_ERRORS:
                pass
        deleted = set(self._txn_deleted)
        deleted.update(d[0] for d in self._deletes)
        moved = 0
        for row in self._txn_rows:
            if row.id in deleted:
                deleted.discard(row.id)
            else:
                self._mem[row.priority][row.id] = row
                moved += 1
        self._gone |= deleted
        self._mem_kv.update(self._txn_kv)
        self._mem_commands.update(self._txn_commands)
        dead_deleted = set(self._txn_dead_deleted)
        for dl in self._txn_dead:
            if dl.id in dead_deleted:
                dead_deleted.discard(dl.id)
            else:
                self._mem_dead[dl.id] = dl
        self._gone_dead |= dead_deleted
        self._clear_txn()
        self._deletes.clear()
        self._dirty = False
        self._needs_sync = False
        self._lazy_deletes = 0
        self._seq_dirty = True  # recover() writes the counter whatever happens
        self.error = _describe(exc)
        if not self.degraded:
            self.degraded = True
            self._read_error_logged = False
            log.error(
                "store_fault",
                path=str(self.path),
                error=self.error,
                moved_to_memory=moved,
                hint="check the data_dir's disk (full? read-only? failing SD card?)",
            )

    def _clear_txn(self) -> None:
        self._txn_rows.clear()
        self._txn_deleted.clear()
        self._txn_kv.clear()
        self._txn_commands.clear()
        self._txn_dead.clear()
        self._txn_dead_deleted.clear()

    def recover(self) -> bool:
        """Write what is only in memory back to the store and leave degraded mode.
        False (still degraded, nothing lost) when the store still cannot write."""
        if not self.degraded:
            return True
        try:
            db = self._writable()
            rows = sorted((r for d in self._mem.values() for r in d.values()), key=lambda r: r.id)
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in sorted(self._gone)])
            db.executemany(
                "INSERT INTO outbox(id, priority, seq, event_id, topic, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(r.id, r.priority, r.seq, r.event_id, r.topic, r.payload) for r in rows],
            )
            db.executemany(
                "INSERT INTO kv(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                list(self._mem_kv.items()),
            )
            db.executemany(
                "INSERT OR REPLACE INTO commands(command_id, expires_at, result) VALUES (?, ?, ?)",
                [(cid, exp, res) for cid, (exp, res) in self._mem_commands.items()],
            )
            db.executemany(
                "DELETE FROM dead_letters WHERE id=?", [(i,) for i in sorted(self._gone_dead)]
            )
            db.executemany(
                "INSERT OR REPLACE INTO dead_letters(id, priority, seq, event_id, type, topic, "
                "payload, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_dead_row(d) for d in self._mem_dead.values()],
            )
            self._write_seq(db)
            # Row ids go on above every id handed out, in memory too (the outbox skips
            # ids it has already sent: a reused id would wait for the next reconnect).
            db.execute(
                "UPDATE sqlite_sequence SET seq=MAX(seq, ?) WHERE name='outbox'", (self._max_id,)
            )
            db.execute(
                "INSERT INTO sqlite_sequence(name, seq) SELECT 'outbox', ? "
                "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name='outbox')",
                (self._max_id,),
            )
            db.execute("COMMIT")
        except DB_ERRORS as exc:
            if self._db is not None and not self._readonly:
                try:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                except DB_ERRORS:
                    pass
            self.error = _describe(exc)
            log.warning("store_still_failing", path=str(self.path), error=self.error)
            return False
        self.persisted_on_recovery = len(rows)
        for d in self._mem.values():
            d.clear()
        self._gone.clear()
        self._mem_kv.clear()
        self._mem_commands.clear()
        self._mem_dead.clear()
        self._gone_dead.clear()
        self._seq_dirty = False
        self.degraded = False
        self.error = None
        try:
            self._count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except DB_ERRORS:
            pass
        log.info("store_recovered", path=str(self.path), persisted=len(rows), seq=self._seq)
        return True

    def _writable(self) -> sqlite3.Connection:
        """The read-write connection, opening it if the store was unusable until now."""
        if self._db is not None and not self._readonly:
            return self._db
        db = self._connect_rw()
        try:
            if not self._loaded and self._has_history(db):
                # This run numbered its events from 1 without being able to read the file:
                # its history cannot be merged. Keep it aside, as for a damaged file.
                db.close()
                self._quarantine("could not be read at start; this run started a new store")
                db = self._open(self.path)
            if not self._loaded:
                row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
                self._max_id = max(self._max_id, int(row[0]) if row else 0)
        except BaseException:
            self._close_quietly(db)
            raise
        if self._db is not None:
            self._close_quietly(self._db)
        self._db = db
        self._readonly = False
        self._loaded = True
        return db

    @staticmethod
    def _has_history(db: sqlite3.Connection) -> bool:
        for sql in (
            "SELECT 1 FROM meta LIMIT 1",
            "SELECT 1 FROM outbox LIMIT 1",
            "SELECT 1 FROM kv LIMIT 1",
            "SELECT 1 FROM commands LIMIT 1",
            "SELECT 1 FROM dead_letters LIMIT 1",
        ):
            if db.execute(sql).fetchone() is not None:
                return True
        return False

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[Any] | None:
        """A read from the file; None when there is no file to read or it fails (a
        failure while healthy puts the store in degraded mode)."""
        if self._db is None:
            return None
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except DB_ERRORS as exc:
            self._read_failed(exc)
            return None

    def _read_failed(self, exc: Exception) -> None:
        if not self.degraded:
            self._fault(exc)
        elif not self._read_error_logged:
            self._read_error_logged = True
            log.warning("store_unreadable", path=str(self.path), error=_describe(exc))

    # ---- transactions ----
    # A transaction holding only PUBACK deletes is not worth an fsync of its own: it rides
    # along with the next real commit (or after LAZY_DELETES, or flush()). Losing such
    # deletes in a crash only re-sends events the broker already has (same event_id).
    LAZY_DELETES = 1000

    def _begin(self, sync: bool = True) -> sqlite3.Connection:
        db = self._db
        assert db is not None and not self.degraded
        if not self._dirty:
            db.execute("BEGIN IMMEDIATE")
            self._dirty = True
        self._needs_sync = self._needs_sync or sync
        return db

    def commit(self) -> None:
        """Make everything recorded since the last commit durable (one fsync). Deletes
        alone wait for the next commit that records something (see LAZY_DELETES)."""
        if self._dirty and (self._needs_sync or self._lazy_deletes >= self.LAZY_DELETES):
            self.flush()

    def flush(self) -> None:
        """Commit whatever is open, deletes included. A commit that fails puts the store
        in degraded mode (nothing is lost: it moves into memory)."""
        if not self._dirty or self._db is None:
            return
        db = self._db
        try:
            self._apply_deletes()
            if self._seq_dirty:
                self._write_seq(db)
            db.execute("COMMIT")
        except DB_ERRORS as exc:
            self._fault(exc)
            return
        self._seq_dirty = False
        self._dirty = False
        self._needs_sync = False
        self._lazy_deletes = 0
        self._clear_txn()

    def _write_seq(self, db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO meta(key, value) VALUES('seq', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (self._seq,),
        )

    @property
    def has_uncommitted(self) -> bool:
        return self._dirty

    # ---- sequence ----
    def last_seq(self) -> int:
        return self._seq

    def next_seq(self) -> int:
        """The next seq; it is stored by the commit that stores its event."""
        if not self.degraded:
            try:
                self._begin()
            except DB_ERRORS as exc:
                self._fault(exc)
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
        if not self.degraded:
            try:
                db = self._begin()
                cur = db.execute(
                    "INSERT INTO outbox(priority, seq, event_id, topic, payload) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (priority, seq, event_id, topic, payload),
                )
                row_id = int(cur.lastrowid or 0)
            except DB_ERRORS as exc:
                self._fault(exc)
            else:
                self._max_id = max(self._max_id, row_id)
                self._txn_rows.append(Pending(row_id, topic, payload, event_id, priority, seq))
                self._count += 1
                if self.per_event:
                    self.commit()
                return row_id
        self._max_id += 1
        self._mem[priority][self._max_id] = Pending(
            self._max_id, topic, payload, event_id, priority, seq
        )
        self._count += 1
        return self._max_id

    def overflow(self) -> Dropped | None:
        """Apply the bound: drop the oldest non-alarm messages, results first, then normal
        events, down to 99% of max_messages. Alarms are never dropped (the bound may be
        exceeded by alarms alone). Returns what was dropped, so the caller reports the seq
        range."""
        if self._count <= self.max_messages:
            return None
        target = self._count - int(self.max_messages * 0.99)
        if not self.degraded:
            try:
                self._begin()
                self._apply_deletes()
            except DB_ERRORS as exc:
                self._fault(exc)
        dropped: list[Pending] = []
        for prio in DROP_ORDER:
            need = target - len(dropped)
            if need <= 0:
                break
            dropped += self._rows(prio, 0, need)
        if not dropped:
            return None
        ids = [r.id for r in dropped]
        if not self.degraded:
            try:
                assert self._db is not None
                self._db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])
                self._txn_deleted += ids
            except DB_ERRORS as exc:
                self._fault(exc)
        if self.degraded:
            for i in ids:
                self._forget_row(i)
        self._count -= len(dropped)
        self.flush()
        seqs = [r.seq for r in dropped if r.seq is not None]
        return Dropped(
            len(dropped),
            min(seqs) if seqs else None,
            max(seqs) if seqs else None,
            frozenset(ids),
        )

    def pending(self, limit: int, after: dict[int, int] | None = None) -> list[Pending]:
        """Oldest first within a priority, highest priority first, skipping in each
        priority the rows up to ``after[priority]`` (already in flight)."""
        after = after or {}
        if not self.degraded and self._deletes:
            try:
                self._apply_deletes()
            except DB_ERRORS as exc:
                self._fault(exc)
        out: list[Pending] = []
        for prio in PRIORITIES:
            if len(out) >= limit:
                break
            out += self._rows(prio, after.get(prio, 0), limit - len(out))
        return out

    def _rows(self, prio: int, after: int, limit: int) -> list[Pending]:
        """Stored rows of one priority with id > after, oldest first: those in the file
        (less the ones deleted while degraded), then those only in memory (their ids are
        higher than any in the file)."""
        out = self._file_rows(prio, after, limit)
        if len(out) < limit and self._mem[prio]:
            for row in self._mem[prio].values():
                if row.id > after:
                    out.append(row)
                    if len(out) >= limit:
                        break
        return out

    def _file_rows(self, prio: int, after: int, limit: int) -> list[Pending]:
        db = self._db
        if db is None:
            return []
        sql = (
            "SELECT id, topic, payload, event_id, seq FROM outbox WHERE priority=? AND id>? "
            "ORDER BY id"
        )
        out: list[Pending] = []
        try:
            if not self._gone:
                rows = db.execute(sql + " LIMIT ?", (prio, after, limit)).fetchall()
                return [Pending(r[0], r[1], bytes(r[2]), r[3], prio, r[4]) for r in rows]
            for r in db.execute(sql, (prio, after)):
                if r[0] in self._gone:
                    continue
                out.append(Pending(r[0], r[1], bytes(r[2]), r[3], prio, r[4]))
                if len(out) >= limit:
                    break
        except DB_ERRORS as exc:
            self._read_failed(exc)
            return []
        return out

    def delete(self, row_id: int) -> None:
        """Forget an acknowledged row. Deletes are batched: applied before the next read
        of the outbox and before every commit."""
        self._count -= 1
        if not self.degraded:
            try:
                self._begin(sync=False)
            except DB_ERRORS as exc:
                self._fault(exc)
            else:
                self._lazy_deletes += 1
                self._deletes.append((row_id,))
                return
        self._forget_row(row_id)

    def _forget_row(self, row_id: int) -> None:
        for rows in self._mem.values():
            if rows.pop(row_id, None) is not None:
                return
        self._gone.add(row_id)

    def _apply_deletes(self) -> None:
        if self._deletes:
            assert self._db is not None
            self._db.executemany("DELETE FROM outbox WHERE id=?", self._deletes)
            self._txn_deleted += [d[0] for d in self._deletes]
            self._deletes.clear()

    def __len__(self) -> int:
        return self._count

    @property
    def in_memory(self) -> int:
        """Messages held only in memory (degraded mode)."""
        return sum(len(d) for d in self._mem.values())

    # ---- dead letters ----
    def dead_letter(self, row: Pending, type_: str, reason: str, at: str) -> DeadLetter:
        """Move a stored outbox row (a message the broker refused) into the dead letters,
        in the open transaction, keeping at most ``max_dead_letters`` (the oldest go, and
        are counted). Never raises; while degraded it goes into memory."""
        dl = DeadLetter(
            row.id, row.priority, row.seq, row.event_id, type_, row.topic, row.payload, reason, at
        )
        self.delete(row.id)
        if not self.degraded:
            try:
                db = self._begin()
                self._apply_deletes()
                db.execute(
                    "INSERT OR REPLACE INTO dead_letters(id, priority, seq, event_id, type, "
                    "topic, payload, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _dead_row(dl),
                )
            except DB_ERRORS as exc:
                self._fault(exc)
            else:
                self._txn_dead.append(dl)
        if self.degraded:
            self._gone_dead.discard(dl.id)
            self._mem_dead[dl.id] = dl
        over = self.dead_letter_count() - self.max_dead_letters
        if over > 0:
            oldest = [d.id for d in self.dead_letters(0, over)]
            self._delete_dead(oldest)
            dropped = self.dead_letters_dropped() + len(oldest)
            self.put_state(DEAD_DROPPED_KEY, str(dropped))
            log.warning("dead_letters_dropped", count=len(oldest), total=dropped)
        if self.per_event:
            self.commit()
        return dl

    def dead_letters(self, after: int = 0, limit: int = 100) -> list[DeadLetter]:
        """Dead letters with an id above ``after``, oldest first."""
        out: list[DeadLetter] = []
        rows = self._read(
            "SELECT id, priority, seq, event_id, type, topic, payload, reason, at "
            "FROM dead_letters WHERE id>? ORDER BY id LIMIT ?",
            (after, limit + len(self._gone_dead)),
        )
        for r in rows or []:
            if r[0] not in self._gone_dead and r[0] not in self._mem_dead:
                out.append(DeadLetter(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7], r[8]))
        out += [d for d in self._mem_dead.values() if d.id > after]
        out.sort(key=lambda d: d.id)
        return out[:limit]

    def dead_letter_count(self) -> int:
        rows = self._read("SELECT id FROM dead_letters")
        in_file = {r[0] for r in rows or []} - self._gone_dead
        return len(in_file | set(self._mem_dead))

    def dead_letters_dropped(self) -> int:
        value = self.get_state(DEAD_DROPPED_KEY)
        return int(value) if value is not None else 0

    def resend_dead_letters(self, ids: list[int] | None) -> list[int]:
        """Put dead letters back into the outbox (same priority, seq and event_id; a new row
        id, so they queue behind what is stored) and forget them. ``None``: every one.
        Returns the ids moved (the others were not found)."""
        if ids is None:
            found = self.dead_letters(0, self.dead_letter_count() + 1)
        else:
            wanted = set(ids)
            found = [
                d for d in self.dead_letters(0, self.dead_letter_count() + 1) if d.id in wanted
            ]
        for d in found:
            self.append(d.topic, d.payload, d.priority, seq=d.seq, event_id=d.event_id)
        self._delete_dead([d.id for d in found])
        return [d.id for d in found]

    def _delete_dead(self, ids: list[int]) -> None:
        if not ids:
            return
        if not self.degraded:
            try:
                self._begin().executemany(
                    "DELETE FROM dead_letters WHERE id=?", [(i,) for i in ids]
                )
            except DB_ERRORS as exc:
                self._fault(exc)
            else:
                self._txn_dead_deleted += ids
                return
        for i in ids:
            if self._mem_dead.pop(i, None) is None:
                self._gone_dead.add(i)

    # ---- remembered commands ----
    def command_result(self, command_id: str) -> bytes | None:
        kept = self._mem_commands.get(command_id)
        if kept is not None:
            return kept[1]
        rows = self._read("SELECT result FROM commands WHERE command_id=?", (command_id,))
        if not rows:
            kept = self._mem_commands.get(command_id)  # a failed read moved the txn here
            return kept[1] if kept is not None else None
        return bytes(rows[0][0])

    def remember_command(self, command_id: str, expires_at: float, result: bytes) -> None:
        if not self.degraded:
            try:
                self._begin().execute(
                    "INSERT OR REPLACE INTO commands(command_id, expires_at, result) "
                    "VALUES (?, ?, ?)",
                    (command_id, expires_at, result),
                )
            except DB_ERRORS as exc:
                self._fault(exc)
            else:
                self._txn_commands[command_id] = (expires_at, result)
                return
        self._mem_commands[command_id] = (expires_at, result)

    def forget_commands_before(self, epoch: float) -> int:
        old = [cid for cid, (exp, _) in self._mem_commands.items() if exp < epoch]
        for cid in old:
            del self._mem_commands[cid]
        if self.degraded:
            return len(old)  # the file's are purged after recovery
        try:
            cur = self._begin().execute("DELETE FROM commands WHERE expires_at < ?", (epoch,))
        except DB_ERRORS as exc:
            self._fault(exc)
            return len(old)
        return len(old) + int(cur.rowcount)

    # ---- machine state ----
    def get_state(self, key: str) -> str | None:
        if key in self._mem_kv:
            return self._mem_kv[key]
        rows = self._read("SELECT value FROM kv WHERE key=?", (key,))
        if not rows:
            return self._mem_kv.get(key)
        return str(rows[0][0])

    def put_state(self, key: str, value: str) -> None:
        """Never raises: while degraded the latest value waits in memory for recovery."""
        if not self.degraded:
            try:
                self._begin().execute(
                    "INSERT INTO kv(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, value),
                )
            except DB_ERRORS as exc:
                self._fault(exc)
            else:
                self._txn_kv[key] = value
                return
        self._mem_kv[key] = value

    def close(self) -> None:
        """Commit; when degraded, one last attempt to write what is only in memory."""
        try:
            if self.degraded:
                self.recover()
            else:
                self.flush()
            if self.degraded:
                log.error(
                    "store_lost_on_exit",
                    path=str(self.path),
                    messages=self.in_memory,
                    seq=self._seq,
                    error=self.error,
                )
        finally:
            if self._db is not None:
                self._close_quietly(self._db)
                self._db = None


def _dead_row(d: DeadLetter) -> tuple[Any, ...]:
    return (d.id, d.priority, d.seq, d.event_id, d.type, d.topic, d.payload, d.reason, d.at)
