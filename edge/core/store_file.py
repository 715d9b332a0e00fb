"""The store's SQLite file: its tables (``SCHEMA``), the rows read from them, and opening it:
WAL with ``synchronous=FULL``, a ``quick_check`` on every open, a damaged file moved aside
(never silently recreated), and a read-only fallback for a file that cannot be written.

:class:`edge.core.store.Store` runs on this; every name here is re-exported there.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("edge.core.store")

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


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, sqlite3.Error) else f"{type(exc).__name__}: {text}"


def dead_row(d: DeadLetter) -> tuple[Any, ...]:
    return (d.id, d.priority, d.seq, d.event_id, d.type, d.topic, d.payload, d.reason, d.at)


def open_db(connect: Connect, target: str | Path, *, uri: bool = False) -> sqlite3.Connection:
    """Open and check the file (``uri``: a read-only URI, opened as it is)."""
    db = connect(target, uri=uri, isolation_level=None, check_same_thread=False)
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


def quarantine(path: Path, why: str) -> Path:
    """Move a damaged file (and its -wal, -shm) aside; returns where it went."""
    dest = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    log.error("store_corrupt", path=str(path), error=why, moved_to=str(dest))
    os.replace(path, dest)
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            os.replace(side, Path(str(dest) + suffix))
    return dest


def connect_ro(connect: Connect, path: Path) -> sqlite3.Connection:
    """Read what can be read of a store that cannot be opened for writing (read-only
    file system, full disk): plain read-only first, then as an immutable file."""
    base = path.absolute().as_uri()
    last: Exception | None = None
    for query in ("mode=ro", "immutable=1"):
        try:
            db = open_db(connect, f"{base}?{query}", uri=True)
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


def has_history(db: sqlite3.Connection) -> bool:
    """Whether any table holds a row."""
    for table in ("meta", "outbox", "kv", "commands", "dead_letters"):
        if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:
            return True
    return False


def close_quietly(db: sqlite3.Connection) -> None:
    try:
        db.close()
    except DB_ERRORS:
        pass


def write_seq(db: sqlite3.Connection, seq: int) -> None:
    db.execute(
        "INSERT INTO meta(key, value) VALUES('seq', ?) "
        "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        (seq,),
    )
