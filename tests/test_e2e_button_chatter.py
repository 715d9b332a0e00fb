"""Panic-button chatter end to end: a whole Site on its own thread with a FakeClock and
SimHardware, the broker link down (nothing here depends on it).

A bouncing press is not chatter; a press during chatter is deferred until the button is
quiet, never dropped; supervision and chatter faults are tracked apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.mqtt import dead_broker_url
from tests.support.site import Keys, ThreadedSite, make_keys, on_fake_clock, site_dict

BUTTON = "panic-1"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def test_a_bouncing_press_raises_the_alarm_and_is_not_chatter(keys: Keys, tmp_path: Path) -> None:
    cfg = site_dict(
        "bounce", dead_broker_url(), tmp_path / "d", keys, debounce_ms=50, chatter_max=10
    )
    with on_fake_clock(cfg) as r:
        # One real press: its contact bounces 11 raw transitions within 10 ms, then holds.
        for i in range(11):
            r.hw.set_input(BUTTON, i % 2 == 0)
            r.clock.advance(0.001)
        r.advance(0.2)
        [raised] = r.events("alarm.raised")
        assert raised["data"]["button"] == BUTTON and raised["data"]["test"] is False
        assert r.events("wiring.fault") == []
        assert r.state(BUTTON) == {"active": True, "fault": None, "wiring": None}
        for _ in range(3):  # held for a while: still one alarm, still no fault
            r.advance(30)
        assert len(r.events("alarm.raised")) == 1
        assert r.events("wiring.fault") == []


def chatter(r: ThreadedSite, cycles: int = 8) -> None:
    """A loose wire: the button reads pressed / released every 0.2 s (debounced changes)."""
    for _ in range(cycles):
        r.set_input(BUTTON, True)
        r.advance(0.2)
        r.set_input(BUTTON, False)
        r.advance(0.2)


@pytest.mark.parametrize("broken", [True, False], ids=["wire-breaks", "wire-calms-down"])
def test_a_press_during_chatter_is_deferred_until_the_button_is_quiet(
    keys: Keys, tmp_path: Path, broken: bool
) -> None:
    # hold_ms: none of the short chatter pulses is a press by itself.
    cfg = site_dict(
        "chatter", dead_broker_url(), tmp_path / "d", keys, debounce_ms=50, chatter_max=10
    )
    cfg["devices"]["panic_buttons"][0].update(hold_ms=1000, chatter_window_s=10)
    with on_fake_clock(cfg) as r:
        chatter(r)
        [fault] = r.events("wiring.fault")
        assert fault["data"]["reason"] == "chatter"
        assert r.state(BUTTON)["wiring"] == ["chatter"]
        if broken:
            r.set_input(BUTTON, True)  # the wire finally breaks: the loop stays open
            r.advance(0.2)
        r.advance(9.0)  # not yet quiet for chatter_window_s
        assert r.events("alarm.raised") == []
        assert r.events("wiring.restored") == []
        r.advance(1.5)
        [restored] = r.events("wiring.restored")
        assert restored["data"] == {"button": BUTTON, "reason": "chatter"}
        assert r.state(BUTTON)["wiring"] is None
        raised = r.events("alarm.raised")
        if broken:
            assert len(raised) == 1 and raised[0]["data"]["test"] is False
            assert r.alarm()["state"] == "active"
        else:
            assert raised == []  # it was chatter after all
            assert r.alarm()["state"] == "idle"
        r.advance(30)
        assert len(r.events("alarm.raised")) == int(broken)
        assert len(r.events("wiring.fault")) == 1


def test_a_deferred_press_is_raised_when_the_quiet_timer_fires_exactly_on_time(
    keys: Keys, tmp_path: Path
) -> None:
    cfg = site_dict("quiet", dead_broker_url(), tmp_path / "d", keys, debounce_ms=0, chatter_max=3)
    cfg["devices"]["panic_buttons"][0].update(hold_ms=1000, chatter_window_s=10)
    with on_fake_clock(cfg, mono=1014.004) as r:
        for level in (True, False, True, False, True):  # chatter, then the loop stays open
            r.set_input(BUTTON, level)
        assert r.state(BUTTON)["wiring"] == ["chatter"]
        r.advance(10.0)  # exactly chatter_window_s after the last change
        r.advance(3600)
        assert len(r.events("alarm.raised")) == 1


def test_supervision_and_chatter_faults_are_tracked_apart(keys: Keys, tmp_path: Path) -> None:
    cfg = site_dict(
        "wiring", dead_broker_url(), tmp_path / "d", keys, debounce_ms=50, chatter_max=10
    )
    cfg["devices"]["panic_buttons"][0].update(
        hold_ms=1000, chatter_window_s=10, supervision={"pin": 26, "debounce_ms": 0}
    )
    with on_fake_clock(cfg) as r:
        r.set_input(f"{BUTTON}-supervision", True)  # the supervision loop opens
        assert r.state(BUTTON)["wiring"] == ["supervision"]
        chatter(r)
        assert r.state(BUTTON)["wiring"] == ["chatter", "supervision"]
        r.set_input(f"{BUTTON}-supervision", False)  # supervision repaired; still chattering
        assert r.state(BUTTON)["wiring"] == ["chatter"]
        r.advance(11)
        assert r.state(BUTTON)["wiring"] is None
        faults = [e["data"]["reason"] for e in r.events("wiring.fault")]
        restored = [e["data"]["reason"] for e in r.events("wiring.restored")]
        assert faults == ["supervision", "chatter"]
        assert restored == ["supervision", "chatter"]
