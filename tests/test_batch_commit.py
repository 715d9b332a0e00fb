"""A long core batch is committed as it grows (issue 12.4: 100,000 events recorded while
the broker was down went into one transaction, held twice in memory): after the job that
brings the batch to ``Store.TXN_MAX_ROWS`` new outbox rows, never inside a job, and nothing
is published before the batch ends. FakeClock and ``run_pending()``: no threads, no sleeps."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from edge.core.clock import FakeClock
from edge.core.loop import CoreLoop
from edge.core.store import Store
from tests.support.events import Normal
from tests.support.site import SteppedSite, shelter_config


def test_after_job_runs_after_every_job_of_a_batch_then_after_batch() -> None:
    loop = CoreLoop(FakeClock(), low_max=10)
    ran: list[str] = []
    loop.after_job = lambda: ran.append("|")
    loop.after_batch.append(lambda: ran.append("commit"))
    loop.post(lambda: ran.append("a"))
    loop.post(lambda: ran.append("b"))
    loop.call_later(0.0, lambda: ran.append("timer"))
    loop.post_low(lambda: ran.append("cmd"))
    loop.run_pending()
    assert ran == ["a", "|", "b", "|", "timer", "|", "cmd", "|", "commit"]


def committed_rows(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        con.close()


def test_a_long_batch_is_committed_between_jobs_and_published_after_it(tmp_path: Path) -> None:
    h = SteppedSite(shelter_config(tmp_path))
    site = h.site
    site.outbox.events = {**site.outbox.events, Normal.TYPE: Normal}
    h.start()
    h.connect()
    base = committed_rows(h.db)
    published = len(h.uplink.published)
    per_job = Store.TXN_MAX_ROWS * 6 // 10  # the second job crosses the bound
    seen: list[tuple[int, int]] = []

    def job(k: int) -> Callable[[], None]:
        def run() -> None:
            seen.append((committed_rows(h.db), len(h.uplink.published)))
            for i in range(per_job):
                site.outbox.emit("test", Normal(i=k * per_job + i))
                if i == per_job // 2:  # never inside a job: its writes stay together
                    seen.append((committed_rows(h.db), len(h.uplink.published)))

        return run

    for k in range(3):
        site.loop.post(job(k))
    h.run()  # one batch: the three jobs, then commit and drain
    assert seen == [
        (base, published),
        (base, published),
        (base, published),
        (base, published),
        (base + 2 * per_job, published),  # committed after the job that crossed the bound
        (base + 2 * per_job, published),  # ... and nothing published before the batch ended
    ]
    assert committed_rows(h.db) == base + 3 * per_job
    sent = h.uplink.published[published:]
    assert sent and all(p.committed for p in sent)
    seqs = [p.json["seq"] for p in sent if "/events/test/" in p.topic]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, gapless
    h.shutdown()


def test_a_short_batch_is_still_one_commit(tmp_path: Path) -> None:
    h = SteppedSite(shelter_config(tmp_path))
    site = h.site
    site.outbox.events = {**site.outbox.events, Normal.TYPE: Normal}
    h.start()
    base = committed_rows(h.db)
    counts: list[int] = []

    def job() -> None:
        counts.append(committed_rows(h.db))
        for i in range(10):
            site.outbox.emit("test", Normal(i=i))

    for _ in range(5):
        site.loop.post(job)
    h.run()
    assert counts == [base] * 5  # group commit: nothing committed until the batch ends
    assert committed_rows(h.db) == base + 50
    h.shutdown()
