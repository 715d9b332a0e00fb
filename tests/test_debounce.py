"""Debounce logic (edge.machines.debounce.Debouncer) and a DebouncedInput on a CoreLoop driven by a
FakeClock and a simulated GPIO input: no threads, no sleeping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.base import InputListener
from edge.core.clock import FakeClock
from edge.core.errors import InputFaultError
from edge.core.loop import CoreLoop
from edge.devices.inputs import DebouncedInput
from edge.machines.debounce import Debouncer
from simulator.hardware import SimHardware

# --------------------------------------------------------------------------- Debouncer


def test_level_counts_once_stable_for_the_debounce_time() -> None:
    d = Debouncer(0.05, initial=False)
    assert d.stable is False
    assert d.feed(True, 10.0) == pytest.approx(10.05)
    assert d.poll(10.0) is None
    assert d.poll(10.049) is None
    assert d.stable is False
    assert d.poll(10.05) is True
    assert d.stable is True
    assert d.deadline is None
    assert d.poll(11.0) is None  # reported once


def test_same_level_again_is_not_an_edge() -> None:
    d = Debouncer(0.05, initial=False)
    assert d.feed(False, 1.0) is None
    assert d.transitions == []
    deadline = d.feed(True, 2.0)
    assert d.feed(True, 2.01) == deadline  # unchanged deadline
    assert d.transitions == [2.0]


def test_bounce_back_to_stable_cancels() -> None:
    d = Debouncer(0.05, initial=False)
    d.feed(True, 1.0)
    assert d.feed(False, 1.01) is None
    assert d.poll(5.0) is None
    assert d.stable is False


def test_each_raw_change_restarts_the_wait() -> None:
    d = Debouncer(0.05, initial=False)
    d.feed(True, 1.00)
    d.feed(False, 1.01)
    assert d.feed(True, 1.02) == pytest.approx(1.07)
    assert d.poll(1.06) is None
    assert d.poll(1.07) is True


def test_release_is_debounced_too() -> None:
    d = Debouncer(0.05, initial=True)
    d.feed(False, 1.0)
    d.feed(True, 1.02)  # glitch while held
    assert d.poll(2.0) is None and d.stable is True
    d.feed(False, 3.0)
    assert d.poll(3.05) is False


def test_zero_debounce_is_immediate() -> None:
    d = Debouncer(0.0, initial=False)
    assert d.feed(True, 7.0) == 7.0
    assert d.poll(7.0) is True


def test_transition_history_is_bounded() -> None:
    d = Debouncer(0.05, initial=False)
    for i in range(1000):
        d.feed(i % 2 == 0, float(i))
    assert 0 < len(d.transitions) <= 64
    assert d.transitions[-1] == 999.0


EDGES = st.lists(st.tuples(st.booleans(), st.integers(1, 120)), max_size=40)


@given(EDGES, st.integers(0, 60), st.booleans())
@settings(max_examples=300, deadline=None)
def test_debouncer_matches_reference_model(
    edges: list[tuple[bool, int]], debounce: int, initial: bool
) -> None:
    """Driven like the core loop drives it (poll at each deadline before the next edge),
    the reported changes equal those of a direct model: the stable level follows the raw
    level whenever the raw level stays put for at least `debounce` ticks."""
    # integer ticks: no float rounding at the boundary
    d = Debouncer(debounce, initial)
    t = 0
    raw = initial
    times: list[tuple[int, bool]] = []  # raw changes only
    got: list[tuple[int, bool]] = []
    pending = None
    for level, gap in edges:
        t_next = t + gap
        if pending is not None and pending <= t_next:
            changed = d.poll(pending)
            if changed is not None:
                got.append((pending, changed))
            pending = d.deadline
        t = t_next
        pending = d.feed(level, t)
        if level != raw:
            times.append((t, level))
            raw = level
    if pending is not None:
        changed = d.poll(pending)
        if changed is not None:
            got.append((pending, changed))

    expected: list[tuple[int, bool]] = []
    stable = initial
    for i, (t_change, level) in enumerate(times):
        t_following = times[i + 1][0] if i + 1 < len(times) else None
        if level != stable and (t_following is None or t_following - t_change >= debounce):
            # with debounce 0 an edge and the next raw change at the same tick cannot
            # happen (gap >= 1), so >= is the model for every case
            expected.append((t_change + debounce, level))
            stable = level
    assert got == expected
    assert d.stable == (expected[-1][1] if expected else initial)


# --------------------------------------------------------------------------- DebouncedInput


class Rig:
    def __init__(self, debounce_s: float, contact: str = "no", pull_up: bool = True) -> None:
        self.clock = FakeClock()
        self.loop = CoreLoop(self.clock)
        self.hw = SimHardware(monotonic=self.clock.monotonic)
        self.dev = self.hw.input("panic", 17, contact=contact, pull_up=pull_up)
        self.changes: list[tuple[float, bool]] = []
        self.faults: list[str] = []
        self.inp = DebouncedInput(
            self.dev,
            debounce_s,
            self.loop,
            on_change=lambda level: self.changes.append((self.clock.monotonic(), level)),
            on_fault=self.faults.append,
        )

    def set(self, active: bool) -> None:
        """Drive the input; a prompt core loop handles the edge at once."""
        self.hw.set_input("panic", active)
        self.loop.run_pending()

    def step(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.loop.run_pending()

    def close(self) -> None:
        self.inp.stop()
        self.hw.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(0.05)
    yield r
    r.close()


def test_start_reads_the_initial_level(rig: Rig) -> None:
    assert rig.inp.start() is False
    assert rig.inp.level is False
    assert rig.changes == [] and rig.faults == []


def test_start_while_held_reports_active_without_a_change() -> None:
    r = Rig(0.05)
    try:
        r.set(True)
        assert r.inp.start() is True
        assert r.inp.level is True
        r.step(1.0)
        assert r.changes == []
    finally:
        r.close()


def test_edges_before_start_are_not_delivered(rig: Rig) -> None:
    rig.set(True)
    rig.set(False)
    rig.step(1.0)
    assert rig.changes == []


def test_single_press_is_reported_after_the_debounce_time(rig: Rig) -> None:
    rig.inp.start()
    rig.set(True)
    assert rig.changes == []
    rig.step(0.049)
    assert rig.changes == []
    rig.step(0.002)
    assert [level for _, level in rig.changes] == [True]
    assert rig.changes[0][0] == pytest.approx(1000.05, abs=0.0021)
    assert rig.inp.level is True


def test_bounce_train_shorter_than_debounce_gives_exactly_one_change(rig: Rig) -> None:
    rig.inp.start()
    # contact bounce: 9 raw edges within 16 ms, settling on "pressed"
    for level in [True, False, True, False, True, False, True, False, True]:
        rig.set(level)
        rig.step(0.002)
    rig.step(0.040)
    assert rig.changes == []  # 42 ms after the last edge: not yet
    rig.step(0.010)
    assert [level for _, level in rig.changes] == [True]
    rig.step(5.0)
    assert len(rig.changes) == 1


def test_bounce_train_delivered_in_one_batch_gives_one_change(rig: Rig) -> None:
    rig.inp.start()
    rig.hw.bounce("panic", [True, False, True, False, True])
    rig.step(0.051)
    rig.step(1.0)
    assert [level for _, level in rig.changes] == [True]


def test_glitch_returning_to_idle_gives_no_change(rig: Rig) -> None:
    rig.inp.start()
    rig.set(True)
    rig.step(0.02)
    rig.set(False)
    rig.step(0.02)
    rig.set(True)
    rig.step(0.01)
    rig.set(False)
    rig.step(1.0)
    assert rig.changes == []
    assert rig.inp.level is False


def test_press_and_release_each_reported_once(rig: Rig) -> None:
    rig.inp.start()
    rig.set(True)
    rig.step(0.1)
    rig.hw.bounce("panic", [False, True, False])
    rig.loop.run_pending()
    rig.step(0.049)
    assert [level for _, level in rig.changes] == [True]
    rig.step(0.002)
    assert [level for _, level in rig.changes] == [True, False]


def test_zero_debounce_input_is_immediate() -> None:
    r = Rig(0.0)
    try:
        r.inp.start()
        r.set(True)  # handled at once, no clock advance at all
        assert r.changes == [(1000.0, True)]
        r.set(False)
        assert r.changes == [(1000.0, True), (1000.0, False)]
    finally:
        r.close()


@pytest.mark.parametrize(("contact", "pull_up"), [("nc", True), ("nc", False), ("no", False)])
def test_wiring_variants_report_logical_active(contact: str, pull_up: bool) -> None:
    r = Rig(0.05, contact=contact, pull_up=pull_up)
    try:
        assert r.inp.start() is False
        r.set(True)  # pressed / NC loop opened (cut wire)
        r.step(0.06)
        r.step(10.0)  # and it stays active: still one change
        assert [level for _, level in r.changes] == [True]
        assert r.dev.read() is True
    finally:
        r.close()


def test_stop_detaches_the_listener(rig: Rig) -> None:
    rig.inp.start()
    rig.inp.stop()
    rig.set(True)
    rig.step(1.0)
    rig.step(1.0)
    assert rig.changes == []
    assert rig.inp.level is False


def test_stop_cancels_a_pending_debounce_timer(rig: Rig) -> None:
    rig.inp.start()
    rig.set(True)  # edge handled, timer armed
    rig.inp.stop()
    rig.step(1.0)
    assert rig.changes == []


def test_edge_handled_after_its_deadline_passed_is_reported_on_the_next_batch(rig: Rig) -> None:
    # The loop was busy: the edge is only handled 100 ms after it happened.
    rig.inp.start()
    rig.hw.set_input("panic", True)
    rig.clock.advance(0.1)
    rig.loop.run_pending()
    rig.loop.run_pending()
    assert [level for _, level in rig.changes] == [True]


def test_glitch_is_not_reported_when_the_loop_is_late(rig: Rig) -> None:
    rig.inp.start()
    rig.set(True)  # handled at once: debounce timer armed for +50 ms
    rig.clock.advance(0.03)
    rig.hw.set_input("panic", False)  # glitch over after 30 ms (< 50 ms) ...
    rig.clock.advance(0.05)  # ... but the loop only gets to it 50 ms later (e.g. an fsync)
    rig.loop.run_pending()
    rig.step(1.0)
    assert rig.changes == []
    assert rig.inp.level is False


def test_real_press_is_not_lost_when_the_loop_is_late(rig: Rig) -> None:
    rig.inp.start()
    rig.set(True)
    rig.clock.advance(0.06)  # held 60 ms (> 50 ms) ...
    rig.hw.set_input("panic", False)
    rig.clock.advance(0.05)  # ... and the release is handled late
    rig.loop.run_pending()
    rig.step(1.0)
    assert [level for _, level in rig.changes] == [True, False]


class BrokenInput:
    name = "panic"

    def __init__(self) -> None:
        self.listener: InputListener | None = None

    def read(self) -> bool:
        raise InputFaultError("input panic (GPIO17) unreadable: bus error")

    def set_listener(self, listener: InputListener | None) -> None:
        self.listener = listener

    def close(self) -> None:
        pass


def test_unreadable_input_is_a_fault_not_quiet() -> None:
    clock = FakeClock()
    loop = CoreLoop(clock)
    faults: list[str] = []
    dev = BrokenInput()
    inp = DebouncedInput(dev, 0.05, loop, on_change=lambda level: None, on_fault=faults.append)
    assert inp.start() is False
    assert faults == ["input panic (GPIO17) unreadable: bus error"]
    assert inp.fault is not None
    assert dev.listener is not None  # edges are still listened to
