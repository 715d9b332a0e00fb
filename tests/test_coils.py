"""CoilScheduler (edge/machines/coils.py): pulse cap, per-lock cooldown, site-wide concurrency.
Time is a plain float passed in; nothing sleeps."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.core.errors import CommandError
from edge.machines.coils import SETTLE_S, CoilPolicy, CoilScheduler, Pulse


def sched(
    *, pulse_ms: int = 500, max_on_ms: int = 2000, cooldown_ms: int = 2000, max_concurrent: int = 1
) -> CoilScheduler:
    return CoilScheduler(
        CoilPolicy.limit(
            pulse_ms=pulse_ms,
            max_on_ms=max_on_ms,
            cooldown_ms=cooldown_ms,
            max_concurrent=max_concurrent,
        )
    )


def refusal(s: CoilScheduler, locker: int, now: float) -> str:
    with pytest.raises(CommandError) as info:
        s.request(locker, "service", now)
    return info.value.code


def test_pulse_is_pulse_ms_when_below_the_cap() -> None:
    s = sched(pulse_ms=500, max_on_ms=2000)
    s.request(1, "deposit", 0.0)
    assert s.due(0.0) == [Pulse(1, 0.5, "deposit")]


def test_pulse_is_capped_by_max_on_ms() -> None:
    # LockersConfig refuses pulse_ms > max_on_ms, but the scheduler caps on its own too.
    s = sched(pulse_ms=4000, max_on_ms=1200)
    s.request(1, "pickup", 0.0)
    (p,) = s.due(0.0)
    assert p.seconds == pytest.approx(1.2)


def test_request_returns_the_place_in_the_queue() -> None:
    s = sched(max_concurrent=1)
    assert s.request(1, "service", 0.0) == 0
    assert s.request(2, "service", 0.0) == 1
    assert s.request(3, "service", 0.0) == 2
    assert s.queued == 3
    assert [p.locker for p in s.due(0.0)] == [1]
    assert s.queued == 2
    # Lock 1 is energised now, not queued: the next request is again second in line.
    assert s.request(4, "service", 0.1) == 2


def test_busy_while_queued_and_while_energised() -> None:
    s = sched(max_concurrent=1)
    s.request(1, "service", 0.0)
    s.request(2, "service", 0.0)
    assert refusal(s, 2, 0.0) == "busy"  # queued
    s.due(0.0)
    assert s.energised(0.1) == [1]
    assert refusal(s, 1, 0.1) == "busy"  # energised
    assert refusal(s, 1, 0.5 + SETTLE_S - 0.001) == "busy"


def test_cooldown_after_the_pulse() -> None:
    s = sched(pulse_ms=500, cooldown_ms=2000)
    s.request(1, "service", 10.0)
    s.due(10.0)
    assert refusal(s, 1, 10.0 + 0.5 + SETTLE_S) == "cooldown"
    assert refusal(s, 1, 10.0 + 0.5 + 2.0 - 0.001) == "cooldown"
    assert s.request(1, "service", 10.0 + 0.5 + 2.0) == 0


def test_cooldown_is_per_lock() -> None:
    s = sched(max_concurrent=2)
    s.request(1, "service", 0.0)
    s.due(0.0)
    assert s.request(2, "service", 1.0) == 0
    assert [p.locker for p in s.due(1.0)] == [2]


def test_a_refused_request_changes_nothing() -> None:
    s = sched()
    s.request(1, "service", 0.0)
    s.due(0.0)
    assert refusal(s, 1, 1.0) == "cooldown"
    assert s.queued == 0
    assert s.due(5.0) == []


def test_max_concurrent_opens_one_after_another() -> None:
    s = sched(pulse_ms=500, max_concurrent=1)
    for locker in (1, 2, 3):
        s.request(locker, "service", 0.0)
    assert [p.locker for p in s.due(0.0)] == [1]
    assert s.due(0.5) == []  # coil 1 just finished: the settle margin is not over
    assert s.next_wake() == pytest.approx(0.5 + SETTLE_S)
    assert [p.locker for p in s.due(0.5 + SETTLE_S)] == [2]
    assert s.due(1.0) == []  # coil 2 still on
    assert [p.locker for p in s.due(1.2)] == [3]
    assert s.next_wake() is None  # nothing left to wait for


def test_max_concurrent_two() -> None:
    s = sched(max_concurrent=2)
    for locker in (1, 2, 3):
        s.request(locker, "service", 0.0)
    assert [p.locker for p in s.due(0.0)] == [1, 2]
    assert s.energised(0.1) == [1, 2]
    assert s.due(0.2) == []


def test_cancel_drops_a_queued_pulse() -> None:
    s = sched()
    s.request(1, "service", 0.0)
    s.request(2, "service", 0.0)
    s.cancel(2)
    assert [p.locker for p in s.due(0.0)] == [1]
    assert s.due(10.0) == []
    assert s.request(2, "service", 10.0) == 0  # no cooldown: it never fired


# --------------------------------------------------------------------------- property


@dataclass(frozen=True)
class Fired:
    locker: int
    start: float
    seconds: float

    @property
    def end(self) -> float:
        return self.start + self.seconds


op = st.one_of(
    st.tuples(st.just("request"), st.integers(1, 6)),
    st.tuples(st.just("advance"), st.floats(0.0, 3.0, allow_nan=False)),
    st.tuples(st.just("due"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(
    max_concurrent=st.integers(1, 3),
    pulse_ms=st.integers(50, 5000),
    max_on_ms=st.integers(50, 5000),
    cooldown_ms=st.integers(0, 5000),
    ops=st.lists(op, max_size=80),
)
def test_never_more_coils_than_max_concurrent(
    max_concurrent: int,
    pulse_ms: int,
    max_on_ms: int,
    cooldown_ms: int,
    ops: list[tuple[str, float]],
) -> None:
    s = sched(
        pulse_ms=pulse_ms,
        max_on_ms=max_on_ms,
        cooldown_ms=cooldown_ms,
        max_concurrent=max_concurrent,
    )
    now = 0.0
    fired: list[Fired] = []
    for kind, value in ops:
        if kind == "advance":
            now += value
        elif kind == "request":
            try:
                s.request(int(value), "service", now)
            except CommandError as exc:
                assert exc.code in ("busy", "cooldown")
        else:
            fired += [Fired(p.locker, now, p.seconds) for p in s.due(now)]
    fired += [Fired(p.locker, now + 1000, p.seconds) for p in s.due(now + 1000)]

    cap_s = min(pulse_ms, max_on_ms) / 1000
    for f in fired:
        assert f.seconds <= max_on_ms / 1000
        assert f.seconds == pytest.approx(cap_s)
        # Coils on at the instant this one starts (intervals are [start, end)).
        on = [g for g in fired if g.start <= f.start < g.end]
        assert len(on) <= max_concurrent, (f, on)
    for locker in {f.locker for f in fired}:
        mine = sorted(f.start for f in fired if f.locker == locker)
        for a, b in itertools.pairwise(mine):
            # Never overlapping itself, and the cooldown is kept after each pulse.
            assert b - a >= cap_s + cooldown_ms / 1000 - 1e-9


def test_policy_computes_the_pulse_once_capped_by_max_on_ms() -> None:
    assert CoilPolicy.limit(pulse_ms=500, max_on_ms=2000).pulse_ms == 500
    capped = CoilPolicy.limit(pulse_ms=3000, max_on_ms=2000, cooldown_ms=1500)
    assert (capped.pulse_ms, capped.pulse_s, capped.max_on_s, capped.cooldown_s) == (
        2000,
        2.0,
        2.0,
        1.5,
    )
    with pytest.raises(ValueError, match="pulse"):
        CoilPolicy(pulse_ms=2500, max_on_ms=2000)  # built by hand past the cap: refused


def test_bank_config_gives_scheduler_coils_and_boards_one_policy() -> None:
    from edge.devices.lockers.config import LockersConfig

    cfg = LockersConfig.model_validate(
        {"pulse_ms": 700, "max_on_ms": 900, "cooldown_ms": 100, "max_concurrent": 2}
    )
    policy = cfg.coil_policy()
    assert policy == CoilPolicy(pulse_ms=700, max_on_ms=900, cooldown_ms=100, max_concurrent=2)
    s = CoilScheduler(policy)
    s.request(1, "service", 0.0)
    assert s.due(0.0) == [Pulse(1, 0.7, "service")]
