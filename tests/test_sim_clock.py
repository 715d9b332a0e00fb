"""The simulator's clock control (POST /clock, docs/simulator-api.md): the site's wall
clock moved forward, never back, kept in the data dir so that a restart neither loses
the site's time nor finds its clock behind its high-water mark."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.core.clock import SystemClock
from edge.core.commands import CLOCK_MARK_KEY
from edge.site import Site
from simulator.clock import FILE, MAX_ADVANCE_S, SimClock, add_clock_routes
from simulator.control import ControlApi
from simulator.hardware import SimHardware
from tests.support.console import running_sim
from tests.support.mqtt import Mosquitto, free_port
from tests.support.site import make_keys, site_dict
from tests.support.wait import wait_until


def ahead(clock: SimClock) -> float:
    return (clock.now() - datetime.now(UTC)).total_seconds()


def test_advance_moves_only_forward_and_is_kept(tmp_path: Path) -> None:
    clock = SimClock(tmp_path)
    assert clock.offset_s == 0 and abs(ahead(clock)) < 1
    assert clock.advance(3600) == 3600
    assert clock.advance(60) == 3660
    assert 3659 < ahead(clock) < 3661
    for bad in (0, -1, math.nan, math.inf, MAX_ADVANCE_S + 1):
        with pytest.raises(ValueError):
            clock.advance(bad)
    assert clock.offset_s == 3660
    assert json.loads((tmp_path / FILE).read_text()) == {"offset_s": 3660}
    assert SimClock(tmp_path).offset_s == 3660  # a restart keeps it
    assert SimClock(None).offset_s == 0


@pytest.mark.parametrize("text", ["junk", '{"offset_s": -5}', '{"offset_s": "NaN"}', "{}"])
def test_an_unreadable_offset_file_starts_from_zero(tmp_path: Path, text: str) -> None:
    (tmp_path / FILE).write_text(text)
    assert SimClock(tmp_path).offset_s == 0


def test_the_clock_routes() -> None:
    clock = SimClock(None)
    api = ControlApi("127.0.0.1", 0)
    try:
        add_clock_routes(api, clock)
        status, body = api.dispatch("POST", "/clock", b'{"advance_s": 262800}')
        assert status == 200 and body["offset_s"] == 262800
        assert body["now"].endswith("Z") and body["now"] > datetime.now(UTC).isoformat()
        status, body = api.dispatch("GET", "/clock", b"")
        assert status == 200 and body["offset_s"] == 262800
        for bad in (
            b'{"advance_s": 0}',
            b'{"advance_s": true}',
            b"{}",
            b"[]",
            b'{"advance_s": -3}',
        ):
            status, body = api.dispatch("POST", "/clock", bad)
            assert status == 400, bad
        status, body = api.dispatch("POST", "/clock", b"{}")
        assert body == {"error": 'body must be {"advance_s": <seconds forward, > 0>}'}
        assert clock.offset_s == 262800
    finally:
        api.server.server_close()


def test_a_restart_keeps_the_site_trusting_its_moved_clock(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    data = tmp_path / "data"
    cfg = parse_config(site_dict("clock-1", f"mqtt://127.0.0.1:{free_port()}", data, keys))
    SimClock(data).advance(7200)  # before the site starts: its first view is two hours ahead
    hw = SimHardware()
    site = Site(cfg, hw, clock=SimClock(data))
    site.start_thread()
    try:
        # the site persists its clock's high-water mark (the first purge, 1 s after start)
        def mark() -> float:
            raw = site.call(lambda: site.store.get_state(CLOCK_MARK_KEY))
            return float(str(raw)) if raw is not None else 0.0

        assert wait_until(mark, timeout=10) > datetime.now(UTC).timestamp() + 7000
    finally:
        site.stop_soon()
        site.join(10)
        hw.close()

    def trusted(clock: SystemClock) -> bool:
        hw = SimHardware()
        again = Site(cfg, hw, clock=clock)
        try:
            return again.commands.clock_trusted
        finally:
            again.store.close()
            hw.close()

    assert trusted(SimClock(data))  # the moved clock, kept in the data dir
    assert not trusted(SystemClock())  # what a forgotten offset would do: commands refused


def test_the_console_signs_with_the_moved_clock(mosquitto: Mosquitto, tmp_path: Path) -> None:
    # The console's control centre signs with the site's time: after a move of 73 h its
    # commands are not 'expired' (they were, signed with this machine's clock).
    keys = make_keys(tmp_path / "keys")
    cfg = site_dict("clock-2", mosquitto.url, tmp_path / "d", keys)
    cfg["keys"] = []  # the simulator's development key
    with running_sim(cfg) as sim:
        assert sim.post("/clock", {"advance_s": 262800}).status == 200
        answer = sim.post(
            "/centre/commands",
            {"name": "site.test_mode", "args": {"on": True, "minutes": 5}, "key": "dev"},
        )
        assert answer.status == 200, answer.body
        assert answer.body["result"]["ok"] is True, answer.body["result"]
