"""The store's degraded mode, its memory side: what the open transaction wrote (:class:`Txn`,
kept so that a transaction that cannot commit loses nothing) and what waits in memory for
the file to work again (:class:`Memory`): outbox rows, rows of the file deleted meanwhile,
machine state, remembered commands, dead letters. :meth:`Memory.absorb` takes in a failed
transaction, :meth:`Memory.write_back` writes everything into the file in the recovery
transaction. See :class:`edge.core.store.Store` (the core thread's only, like the store).
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

from edge.core.store_file import PRIORITIES, DeadLetter, Pending, dead_row


def pop_row(by_priority: Mapping[int, MutableMapping[int, Pending]], row_id: int) -> bool:
    """Take row ``row_id`` out of whichever priority holds it; False if none does. (Once
    per PUBACK: a plain loop, half the cost of ``any`` over a generator.)"""
    for rows in by_priority.values():  # noqa: SIM110 (measured: see the docstring)
        if rows and rows.pop(row_id, None) is not None:
            return True
    return False


@dataclass
class Txn:
    """What the open transaction wrote, to move into memory if it cannot commit."""

    rows: list[Pending] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    kv: dict[str, str] = field(default_factory=dict)
    commands: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    dead_deleted: list[int] = field(default_factory=list)

    def clear(self) -> None:
        self.rows.clear()
        self.deleted.clear()
        self.kv.clear()
        self.commands.clear()
        self.dead.clear()
        self.dead_deleted.clear()


@dataclass
class Memory:
    """What is only in memory while the store is degraded."""

    rows: dict[int, dict[int, Pending]] = field(
        default_factory=lambda: {p: {} for p in PRIORITIES}
    )  # by priority, in id order
    gone: set[int] = field(default_factory=set)  # rows of the file deleted meanwhile
    kv: dict[str, str] = field(default_factory=dict)
    commands: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    dead: dict[int, DeadLetter] = field(default_factory=dict)
    gone_dead: set[int] = field(default_factory=set)  # dead letters of the file deleted

    def __len__(self) -> int:
        """Messages held only in memory."""
        return sum(len(d) for d in self.rows.values())

    def absorb(self, txn: Txn, deletes: Iterable[int]) -> int:
        """Take in a transaction that could not commit (and the PUBACK deletes not yet
        applied); returns how many messages moved into memory. Clears ``txn``."""
        deleted = set(txn.deleted)
        deleted.update(deletes)
        moved = 0
        for row in txn.rows:
            if row.id in deleted:
                deleted.discard(row.id)
            else:
                self.rows[row.priority][row.id] = row
                moved += 1
        self.gone |= deleted
        self.kv.update(txn.kv)
        self.commands.update(txn.commands)
        dead_deleted = set(txn.dead_deleted)
        for dl in txn.dead:
            if dl.id in dead_deleted:
                dead_deleted.discard(dl.id)
            else:
                self.dead[dl.id] = dl
        self.gone_dead |= dead_deleted
        txn.clear()
        return moved

    def write_back(self, db: sqlite3.Connection) -> int:
        """Write everything into ``db``'s open transaction; returns the messages written.
        Memory is left as it is (clear it once the transaction committed)."""
        rows = sorted((r for d in self.rows.values() for r in d.values()), key=lambda r: r.id)
        db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in sorted(self.gone)])
        db.executemany(
            "INSERT INTO outbox(id, priority, seq, event_id, topic, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(r.id, r.priority, r.seq, r.event_id, r.topic, r.payload) for r in rows],
        )
        db.executemany(
            "INSERT INTO kv(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            list(self.kv.items()),
        )
        db.executemany(
            "INSERT OR REPLACE INTO commands(command_id, expires_at, result) VALUES (?, ?, ?)",
            [(cid, exp, res) for cid, (exp, res) in self.commands.items()],
        )
        db.executemany(
            "DELETE FROM dead_letters WHERE id=?", [(i,) for i in sorted(self.gone_dead)]
        )
        db.executemany(
            "INSERT OR REPLACE INTO dead_letters(id, priority, seq, event_id, type, topic, "
            "payload, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [dead_row(d) for d in self.dead.values()],
        )
        return len(rows)

    def clear(self) -> None:
        for d in self.rows.values():
            d.clear()
        self.gone.clear()
        self.kv.clear()
        self.commands.clear()
        self.dead.clear()
        self.gone_dead.clear()

    def forget_row(self, row_id: int) -> None:
        """A row acknowledged or dropped: out of memory, or marked gone from the file."""
        if not pop_row(self.rows, row_id):
            self.gone.add(row_id)

    def rows_after(self, prio: int, after: int, limit: int, out: list[Pending]) -> None:
        """Add to ``out`` (up to ``limit`` in all) the memory rows of ``prio`` above ``after``."""
        for row in self.rows[prio].values():
            if len(out) >= limit:
                return
            if row.id > after:
                out.append(row)

    def forget_dead(self, ids: Iterable[int]) -> None:
        for i in ids:
            if self.dead.pop(i, None) is None:
                self.gone_dead.add(i)


class Unsent:
    """Per priority, the stored rows ``Store.pending`` has not handed out yet, kept in
    memory while every one of them is known: ``pending`` then serves them from here instead
    of reading back from the file what the core has just written to it.

    For a priority ``p`` with ``after[p]`` not None, the stored rows of ``p`` with an id
    above ``after[p]`` are exactly ``rows[p]`` (in id order). None: not known, read the
    file. A priority is known again once a read of the file finds every row beyond what it
    hands out (``Store.pending``); it stops being known past ``cap`` rows, and whenever the
    store leaves the file (degraded mode)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.rows: dict[int, OrderedDict[int, Pending]] = {p: OrderedDict() for p in PRIORITIES}
        self.after: dict[int, int | None] = dict.fromkeys(PRIORITIES)

    def serves(self, prio: int, after: int) -> bool:
        """Can the rows of ``prio`` above ``after`` come from memory?"""
        known = self.after[prio]
        return known is not None and after >= known

    def take(self, prio: int, after: int, limit: int, out: list[Pending]) -> None:
        """Add to ``out`` (up to ``limit`` in all) the rows of ``prio`` above ``after``,
        handing them out (only if ``serves(prio, after)``)."""
        rows = self.rows[prio]
        top = after
        while rows and len(out) < limit:
            row_id, row = rows.popitem(last=False)
            top = row_id
            if row_id > after:
                out.append(row)
        self.after[prio] = top

    def found(self, prio: int, after: int, got: list[Pending], complete: bool) -> None:
        """A read of the file handed out ``got``: the rows of ``prio`` above ``after``,
        all of them if ``complete``."""
        top = got[-1].id if got else after
        if complete:
            self.rows[prio].clear()
            self.after[prio] = top
            return
        known = self.after[prio]
        if known is not None and top >= known:
            rows = self.rows[prio]
            while rows and next(iter(rows)) <= top:
                rows.popitem(last=False)
            self.after[prio] = top

    def add(self, row: Pending) -> None:
        """A row just stored (ids only grow)."""
        if self.after[row.priority] is None:
            return
        rows = self.rows[row.priority]
        rows[row.id] = row
        if len(rows) > self.cap:
            self.forget_priority(row.priority)

    def forget(self, row_id: int) -> None:
        """A row deleted from the store (acknowledged, dropped, moved to the dead letters)."""
        pop_row(self.rows, row_id)

    def forget_priority(self, prio: int) -> None:
        self.rows[prio].clear()
        self.after[prio] = None

    def forget_all(self) -> None:
        for prio in self.rows:
            self.forget_priority(prio)
