"""The durable store: one SQLite file (WAL) in the data dir holding the outbox, the
sequence counter, remembered command ids and the machines' persisted state.

(Longer than 500 lines on purpose: every operation here is one decision between the file
and memory inside the one open transaction, and reads of both layers merge; split up, each
piece would reach into the others' state. What stands alone lives apart: the file, its
tables and rows in :mod:`edge.core.store_file`, degraded mode's memory in
:mod:`edge.core.store_memory`; their public names are re-exported here.)

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

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog

from edge.core.store_file import (
    DB_ERRORS,
    DEAD_DROPPED_KEY,
    DROP_ORDER,
    PRIO_ALARM,
    PRIO_EVENT,
    PRIO_RESULT,
    PRIORITIES,
    PRIORITY_NAMES,
    SCHEMA,
    Connect,
    DeadLetter,
    Dropped,
    Pending,
    close_quietly,
    connect_ro,
    dead_row,
    describe,
    has_history,
    open_db,
    quarantine,
    write_seq,
)
from edge.core.store_memory import Memory, Txn, Unsent

__all__ = [
    "DB_ERRORS",
    "DEAD_DROPPED_KEY",
    "DROP_ORDER",
    "PRIORITIES",
    "PRIORITY_NAMES",
    "PRIO_ALARM",
    "PRIO_EVENT",
    "PRIO_RESULT",
    "SCHEMA",
    "DeadLetter",
    "Dropped",
    "Pending",
    "Store",
]

log = structlog.get_logger(__name__)


def id_runs(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Distinct ids as runs of consecutive ones: ``[5, 3, 4, 9]`` -> ``[(3, 5), (9, 9)]``."""
    runs: list[tuple[int, int]] = []
    first = last = None
    for i in sorted(set(ids)):
        if last is not None and i == last + 1:
            last = i
            continue
        if first is not None and last is not None:
            runs.append((first, last))
        first = last = i
    if first is not None and last is not None:
        runs.append((first, last))
    return runs


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
        self._mem = Memory()  # what waits in memory while degraded
        self._txn = Txn()  # what the open transaction wrote
        self._db: sqlite3.Connection | None = None
        self._readonly = False
        self._loaded = False  # seq, ids and rows come from the file (not a blank start)
        self._count = 0
        self._seq = 0
        self._max_id = 0  # highest outbox id ever handed out: memory rows continue from it
        # Per priority, the highest outbox id handed out or found in the file: ``pending``
        # reads the file only for the priorities with a row beyond the ones in flight.
        self._top: dict[int, int] = dict.fromkeys(PRIORITIES, 0)
        self._seq_dirty = False
        self._dirty = False
        self._needs_sync = False  # the open transaction holds more than PUBACK deletes
        self._lazy_deletes = 0
        self._deletes: list[int] = []
        # The rows ``pending`` has not handed out yet, while all are known (the drain after
        # each commit reads them from memory, not back from the file).
        self._unsent = Unsent(self.TXN_MAX_ROWS)
        try:
            self._db = self._connect_rw()
            self._load(self._db)
        except DB_ERRORS as exc:
            self._start_degraded(exc)

    # ---- opening ----
    def _open(self, target: str | Path, *, uri: bool = False) -> sqlite3.Connection:
        return open_db(self._connect, target, uri=uri)

    def _connect_rw(self) -> sqlite3.Connection:
        """Open (creating the data dir and the file if needed). A file found corrupt is
        moved aside, never silently recreated."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._open(self.path)
        except sqlite3.OperationalError:
            raise  # cannot open / write / disk full: not a damaged file
        except sqlite3.DatabaseError as exc:
            self.quarantined = quarantine(self.path, str(exc))
            return self._open(self.path)

    def _load(self, db: sqlite3.Connection) -> None:
        self._count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        row = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        self._seq = max(self._seq, int(row[0]) if row else 0)
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        top = db.execute("SELECT MAX(id) FROM outbox").fetchone()[0]
        self._max_id = max(self._max_id, int(row[0]) if row else 0, int(top or 0))
        self._load_tops(db)
        self._loaded = True

    def _load_tops(self, db: sqlite3.Connection) -> None:
        for prio, top_id in db.execute("SELECT priority, MAX(id) FROM outbox GROUP BY priority"):
            self._top[prio] = max(self._top.get(prio, 0), int(top_id))

    def _start_degraded(self, exc: Exception) -> None:
        """The store cannot be opened for writing: run from memory, on top of whatever
        the file still lets us read (seq, machine state, unsent rows)."""
        self.fault_at_start = True
        self._fault(exc)
        if self._db is not None:  # opened, but could not even be read
            close_quietly(self._db)
            self._db = None
        ro: sqlite3.Connection | None = None
        try:
            ro = connect_ro(self._connect, self.path)
            self._load(ro)
            self._db, self._readonly = ro, True
        except DB_ERRORS as ro_exc:
            if ro is not None:
                close_quietly(ro)
            self._count = 0
            log.warning("store_unreadable", path=str(self.path), error=describe(ro_exc))

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
        moved = self._mem.absorb(self._txn, self._deletes)
        self._deletes.clear()
        self._unsent.forget_all()
        self._dirty = False
        self._needs_sync = False
        self._lazy_deletes = 0
        self._seq_dirty = True  # recover() writes the counter whatever happens
        self.error = describe(exc)
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

    def recover(self) -> bool:
        """Write what is only in memory back to the store and leave degraded mode.
        False (still degraded, nothing lost) when the store still cannot write."""
        if not self.degraded:
            return True
        try:
            db = self._writable()
            db.execute("BEGIN IMMEDIATE")
            persisted = self._mem.write_back(db)
            write_seq(db, self._seq)
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
            self.error = describe(exc)
            log.warning("store_still_failing", path=str(self.path), error=self.error)
            return False
        self.persisted_on_recovery = persisted
        self._mem.clear()
        self._seq_dirty = False
        self.degraded = False
        self.error = None
        try:
            self._count = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except DB_ERRORS:
            pass
        log.info("store_recovered", path=str(self.path), persisted=persisted, seq=self._seq)
        return True

    def _writable(self) -> sqlite3.Connection:
        """The read-write connection, opening it if the store was unusable until now."""
        if self._db is not None and not self._readonly:
            return self._db
        db = self._connect_rw()
        try:
            if not self._loaded and has_history(db):
                # This run numbered its events from 1 without being able to read the file:
                # its history cannot be merged. Keep it aside, as for a damaged file.
                db.close()
                self.quarantined = quarantine(
                    self.path, "could not be read at start; this run started a new store"
                )
                db = self._open(self.path)
            if not self._loaded:
                row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
                self._max_id = max(self._max_id, int(row[0]) if row else 0)
                self._load_tops(db)
        except BaseException:
            close_quietly(db)
            raise
        if self._db is not None:
            close_quietly(self._db)
        self._db = db
        self._readonly = False
        self._loaded = True
        return db

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
            log.warning("store_unreadable", path=str(self.path), error=describe(exc))

    # ---- transactions ----
    # A transaction holding only PUBACK deletes is not worth an fsync of its own: it rides
    # along with the next real commit (or after LAZY_DELETES, or flush()). Losing such
    # deletes in a crash only re-sends events the broker already has (same event_id).
    LAZY_DELETES = 1000
    # A core batch that has recorded this many outbox rows is committed after the job that
    # crossed it (edge.site), not only at its end: a long burst (posted jobs that keep the
    # queue from running dry, events recorded while offline) must not grow one
    # transaction, and the copy of its rows kept in memory, without bound.
    TXN_MAX_ROWS = 1000

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
                write_seq(db, self._seq)
            db.execute("COMMIT")
        except DB_ERRORS as exc:
            self._fault(exc)
            return
        self._seq_dirty = False
        self._dirty = False
        self._needs_sync = False
        self._lazy_deletes = 0
        self._txn.clear()

    @property
    def has_uncommitted(self) -> bool:
        return self._dirty

    @property
    def uncommitted_rows(self) -> int:
        """Outbox rows the open transaction has added."""
        return len(self._txn.rows)

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
                self._top[priority] = max(self._top.get(priority, 0), row_id)
                row = Pending(row_id, topic, payload, event_id, priority, seq)
                self._txn.rows.append(row)
                self._unsent.add(row)
                self._count += 1
                if self.per_event:
                    self.commit()
                return row_id
        self._max_id += 1
        self._top[priority] = self._max_id
        self._mem.rows[priority][self._max_id] = Pending(
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
        self._unsent.forget_all()  # known again at the next full read of the file
        ids = [r.id for r in dropped]
        if not self.degraded:
            try:
                assert self._db is not None
                self._db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])
                self._txn.deleted += ids
            except DB_ERRORS as exc:
                self._fault(exc)
        if self.degraded:
            for i in ids:
                self._mem.forget_row(i)
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
            skip = after.get(prio, 0)
            if skip >= self._top.get(prio, 0):
                continue  # no row of this priority beyond the ones in flight: no query
            want = limit - len(out)
            if self.degraded:
                out += self._rows(prio, skip, want)
            elif self._unsent.serves(prio, skip):
                self._unsent.take(prio, skip, limit, out)
            else:
                got = self._rows(prio, skip, want)
                if not self.degraded:  # (the read did not fail)
                    self._unsent.found(prio, skip, got, len(got) < want)
                out += got
        return out

    def _rows(self, prio: int, after: int, limit: int) -> list[Pending]:
        """Stored rows of one priority with id > after, oldest first: those in the file
        (less the ones deleted while degraded), then those only in memory (their ids are
        higher than any in the file)."""
        out = self._file_rows(prio, after, limit)
        self._mem.rows_after(prio, after, limit, out)
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
            if not self._mem.gone:
                rows = db.execute(sql + " LIMIT ?", (prio, after, limit)).fetchall()
                return [Pending(r[0], r[1], bytes(r[2]), r[3], prio, r[4]) for r in rows]
            for r in db.execute(sql, (prio, after)):
                if r[0] in self._mem.gone:
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
        self._unsent.forget(row_id)
        if not self.degraded:
            try:
                self._begin(sync=False)
            except DB_ERRORS as exc:
                self._fault(exc)
            else:
                self._lazy_deletes += 1
                self._deletes.append(row_id)
                return
        self._mem.forget_row(row_id)

    def _apply_deletes(self) -> None:
        if self._deletes:
            assert self._db is not None
            # Acknowledged rows mostly come in runs of consecutive ids: one statement per
            # run, not per row.
            self._db.executemany(
                "DELETE FROM outbox WHERE id BETWEEN ? AND ?", id_runs(self._deletes)
            )
            self._txn.deleted += self._deletes
            self._deletes.clear()

    def __len__(self) -> int:
        return self._count

    @property
    def in_memory(self) -> int:
        """Messages held only in memory (degraded mode)."""
        return len(self._mem)

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
                    dead_row(dl),
                )
            except DB_ERRORS as exc:
                self._fault(exc)
            else:
                self._txn.dead.append(dl)
        if self.degraded:
            self._mem.gone_dead.discard(dl.id)
            self._mem.dead[dl.id] = dl
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
            (after, limit + len(self._mem.gone_dead)),
        )
        for r in rows or []:
            if r[0] not in self._mem.gone_dead and r[0] not in self._mem.dead:
                out.append(DeadLetter(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7], r[8]))
        out += [d for d in self._mem.dead.values() if d.id > after]
        out.sort(key=lambda d: d.id)
        return out[:limit]

    def dead_letter_count(self) -> int:
        rows = self._read("SELECT id FROM dead_letters")
        in_file = {r[0] for r in rows or []} - self._mem.gone_dead
        return len(in_file | set(self._mem.dead))

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
                self._txn.dead_deleted += ids
                return
        self._mem.forget_dead(ids)

    # ---- remembered commands ----
    def command_result(self, command_id: str) -> bytes | None:
        kept = self._mem.commands.get(command_id)
        if kept is not None:
            return kept[1]
        rows = self._read("SELECT result FROM commands WHERE command_id=?", (command_id,))
        if not rows:
            kept = self._mem.commands.get(command_id)  # a failed read moved the txn here
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
                self._txn.commands[command_id] = (expires_at, result)
                return
        self._mem.commands[command_id] = (expires_at, result)

    def forget_commands_before(self, epoch: float) -> int:
        old = [cid for cid, (exp, _) in self._mem.commands.items() if exp < epoch]
        for cid in old:
            del self._mem.commands[cid]
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
        if key in self._mem.kv:
            return self._mem.kv[key]
        rows = self._read("SELECT value FROM kv WHERE key=?", (key,))
        if not rows:
            return self._mem.kv.get(key)
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
                self._txn.kv[key] = value
                return
        self._mem.kv[key] = value

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
                close_quietly(self._db)
                self._db = None
