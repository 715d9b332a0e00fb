"""``rfc3339`` (every event's ``ts``) writes each second's text once and reuses it: the
result must be exactly what ``isoformat`` gives, across second, day and year boundaries,
before 1970, in other time zones and when times go back."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from edge.core.clock import rfc3339


def reference(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def test_the_same_text_as_isoformat_whatever_came_before() -> None:
    rnd = random.Random(7)
    seoul = timezone(timedelta(hours=9))
    around = [
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, 0, 500, tzinfo=UTC),
    ]
    times = []
    for base in around:  # each microsecond step across a boundary, both ways
        times += [base + timedelta(microseconds=d) for d in range(-1500, 1500, 7)]
        times += [base - timedelta(microseconds=d) for d in range(0, 1500, 13)]
    start = datetime(2026, 11, 29, 12, tzinfo=UTC)
    times += [start + timedelta(microseconds=rnd.randrange(10**12)) for _ in range(5000)]
    times += [t.astimezone(seoul) for t in times[::3]]
    for ts in times + rnd.sample(times, len(times)):  # in order, then in any order
        assert rfc3339(ts) == reference(ts), ts


def test_a_known_value() -> None:
    ts = datetime(2026, 11, 25, 16, 24, 43, 123_999, tzinfo=UTC)
    assert rfc3339(ts) == "2026-11-25T16:24:43.123Z"
    assert rfc3339(ts.astimezone(timezone(timedelta(hours=9)))) == "2026-11-25T16:24:43.123Z"
