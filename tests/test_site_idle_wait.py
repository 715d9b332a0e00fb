"""The core thread's longest idle sleep in ``Site.run`` (``edge.site.IDLE_WAIT_S``): 0.2 s
in the daemon; a process holding many sites (bench/bench_fleet.py) sets it longer, and a
site sleeping that long still stops at once on ``stop_soon``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import edge.site
from tests.support.site import SteppedSite, ThreadedSite, make_keys, shelter_config, site_dict


def test_the_daemon_sleeps_at_most_a_fifth_of_a_second() -> None:
    assert edge.site.IDLE_WAIT_S == 0.2


def test_run_waits_at_most_idle_wait_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge.site, "IDLE_WAIT_S", 7.5)
    ss = SteppedSite(shelter_config(tmp_path))
    loop = ss.site.loop
    real = loop.run_once
    waits: list[float] = []
    stop = threading.Event()

    def spy(max_wait_s: float) -> int:
        waits.append(max_wait_s)
        stop.set()
        return real(0.0)

    loop.run_once = spy  # type: ignore[method-assign]
    ss.site.run(stop)
    assert waits == [7.5]


def test_a_long_idle_wait_still_stops_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge.site, "IDLE_WAIT_S", 3600.0)
    keys = make_keys(tmp_path)
    cfg = site_dict("idle-1", "mqtt://127.0.0.1:9", tmp_path / "data", keys)  # no broker
    ts = ThreadedSite(cfg)
    ts.sync()  # running, its core thread asleep between timers
    t0 = time.monotonic()
    ts.site.stop_soon(flush_s=0.0)
    ts.thread.join(10)
    assert not ts.thread.is_alive()
    assert time.monotonic() - t0 < 5.0  # woken by the stop, not by the hour's timeout
    ts.hw.close()
