"""The shelter alarm through a whole Site on simulated GPIO, with a fake uplink instead of a
broker: a FakeClock and ``loop.run_pending()`` drive everything (no threads, no sleeping)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import SiteConfig, parse_config
from edge.core.commands import REFUSED_BURST, REPORT_S, LoadedKey
from edge.site import COMMANDS_TICK_S
from tests.support.site import SHELTER_BUTTON as BUTTON
from tests.support.site import SteppedSite, centre_key, shelter_config, signed

OUTPUTS = ("sent_led", "ack_led", "buzzer")
NewSite = Callable[..., SteppedSite]


@pytest.fixture
def harnesses() -> Iterator[list[SteppedSite]]:
    made: list[SteppedSite] = []
    yield made
    for h in reversed(made):
        h.shutdown()


@pytest.fixture
def new_site(tmp_path: Path, harnesses: list[SteppedSite]) -> NewSite:
    def factory(
        cfg: SiteConfig | None = None, keys: dict[str, LoadedKey] | None = None, **kw: Any
    ) -> SteppedSite:
        h = SteppedSite(cfg or shelter_config(tmp_path, **kw), keys)
        harnesses.append(h)
        return h

    return factory


@pytest.fixture
def alarm_online(new_site: NewSite) -> NewSite:
    """A new site (``new_site``'s arguments), started and connected, its button pressed."""

    def factory(**kw: Any) -> SteppedSite:
        h = new_site(**kw)
        h.start()
        h.connect()
        h.press()
        return h

    return factory


def raised_publish(h: SteppedSite) -> Any:
    """The one publish of the one alarm.raised event."""
    [raised] = h.published_events("alarm.raised")
    [pub] = [p for p in h.uplink.published if p.json.get("event_id") == raised["event_id"]]
    return pub


# --------------------------------------------------------------------------- construction, start


def test_outputs_off_at_construction_and_start(new_site: NewSite) -> None:
    h = new_site()
    snap = h.hw.snapshot()["outputs"]
    assert set(snap) == set(OUTPUTS)
    for name in OUTPUTS:
        assert snap[name]["on"] is False
        assert snap[name]["transitions"] == []
    h.start()
    assert h.outputs() == dict.fromkeys(OUTPUTS, False)
    assert all(h.transitions(n) == [] for n in OUTPUTS)
    assert h.uplink.started
    [started] = h.stored_events("site.started")
    assert started["data"]["restored_alarm"] is None
    assert started["seq"] == 1
    assert h.alarm["state"] == "idle"


def test_quiet_site_raises_nothing(new_site: NewSite) -> None:
    h = new_site()
    h.start()
    for _ in range(20):
        h.step(1.0)
    assert h.stored_events("alarm.raised") == []


# --------------------------------------------------------------------------- inputs -> alarm


def test_bounce_train_raises_exactly_one_alarm(new_site: NewSite) -> None:
    h = new_site()
    h.start()
    for level in [True, False, True, False, True, False, True]:
        h.set_input(BUTTON, level)
        h.step(0.003)
    h.step(0.040)  # 43 ms after the last edge: still debouncing
    assert h.stored_events("alarm.raised") == []
    h.step(0.010)
    [raised] = h.stored_events("alarm.raised")
    assert raised["device"] == BUTTON
    assert raised["data"]["button"] == BUTTON
    assert raised["data"]["mode"] == "silent"
    assert raised["data"]["test"] is False
    assert raised["data"]["cameras"] == ["cctv-1-counter", "cctv-1-door"]
    assert raised["data"]["alarm_id"] == h.alarm["alarm_id"]
    assert h.alarm["state"] == "active"
    # the button keeps bouncing and is held for a minute: still one alarm
    h.hw.bounce(BUTTON, [False, True, False, True])
    for _ in range(60):
        h.step(1.0)
    assert len(h.stored_events("alarm.raised")) == 1


def test_glitch_shorter_than_debounce_raises_nothing(new_site: NewSite) -> None:
    h = new_site()
    h.start()
    h.set_input(BUTTON, True)
    h.step(0.03)
    h.set_input(BUTTON, False)
    h.step(5.0)
    assert h.stored_events("alarm.raised") == []
    assert h.alarm["state"] == "idle"


def test_nc_cut_wire_raises_the_alarm_once(new_site: NewSite) -> None:
    h = new_site(contact="nc")
    h.start()
    h.set_input(BUTTON, True)  # the NC loop opens and stays open
    h.step(0.051)
    assert len(h.stored_events("alarm.raised")) == 1
    for _ in range(30):
        h.step(2.0)
    assert len(h.stored_events("alarm.raised")) == 1
    assert h.site.states.get(BUTTON) == {"active": True, "fault": None, "wiring": None}


def test_wire_already_cut_at_boot_raises_the_alarm(new_site: NewSite) -> None:
    h = new_site(contact="nc")
    h.hw.set_input(BUTTON, True)
    h.start()
    assert len(h.stored_events("alarm.raised")) == 1
    h.step(10.0)
    assert len(h.stored_events("alarm.raised")) == 1


def test_no_contact_button_press(new_site: NewSite) -> None:
    h = new_site(contact="no")
    h.start()
    h.press()
    assert len(h.stored_events("alarm.raised")) == 1


# --------------------------------------------------------------------------- sent lamp


def test_sent_led_only_after_the_raised_event_is_acked(
    new_site: NewSite,
) -> None:
    h = new_site()
    h.start()
    h.press()
    [raised] = h.stored_events("alarm.raised")
    assert h.outputs()["sent_led"] is False  # stored, not delivered

    h.connect()
    assert [e["type"] for e in h.published_events()] == ["alarm.raised", "site.started"]
    assert all(p.committed for p in h.uplink.published)  # nothing published before commit
    assert h.outputs()["sent_led"] is False  # published, not acked

    h.ack_event(h.published_events("site.started")[0]["event_id"])
    assert h.outputs()["sent_led"] is False  # another event's PUBACK
    h.ack_event(raised["event_id"])
    assert h.outputs()["sent_led"] is True
    assert h.transitions("sent_led") == [True]
    assert h.alarm["sent"] is True
    assert h.stored_events() == []  # both deleted on PUBACK


def test_press_while_connected_publishes_after_commit(alarm_online: NewSite) -> None:
    h = alarm_online()
    pub = raised_publish(h)
    assert pub.committed and pub.qos == 1 and not pub.retain
    assert pub.topic == "ansim/v1/shelter-0001/events/alarm/raised"
    assert h.outputs()["sent_led"] is False
    h.ack_mid(pub.mid)
    assert h.outputs()["sent_led"] is True


def test_rejected_publish_does_not_light_sent(alarm_online: NewSite) -> None:
    h = alarm_online()
    pub = raised_publish(h)
    h.ack_mid(pub.mid, ok=False)
    assert h.outputs()["sent_led"] is False


def test_ack_of_a_lost_connection_does_not_light_sent(alarm_online: NewSite) -> None:
    h = alarm_online()
    first = raised_publish(h)
    event_id = first.json["event_id"]
    h.disconnect()
    h.connect()
    h.ack_mid(first.mid)  # a PUBACK from the previous connection means nothing now
    assert h.outputs()["sent_led"] is False
    assert len(h.published_events("alarm.raised")) == 2  # redelivered, same event
    assert {e["event_id"] for e in h.published_events("alarm.raised")} == {event_id}
    h.ack_event(event_id)
    assert h.outputs()["sent_led"] is True


# --------------------------------------------------------------------------- reset key, buzzer


def test_reset_key_clears_the_alarm(new_site: NewSite) -> None:
    h = new_site()
    h.start()
    h.press()
    h.release()
    h.connect()
    h.ack_event(h.stored_events("alarm.raised")[0]["event_id"])
    assert h.outputs()["sent_led"] is True
    alarm_id = h.alarm["alarm_id"]

    h.set_input("reset_key", True)
    h.step(0.03)
    assert h.alarm["state"] == "active"  # key debounced too
    h.step(0.03)
    assert h.alarm["state"] == "idle"
    assert h.outputs() == dict.fromkeys(OUTPUTS, False)
    [cleared] = h.published_events("alarm.cleared")
    assert cleared["data"] == {"alarm_id": alarm_id, "by": "reset_key"}
    h.release("reset_key")
    # a new press raises a new alarm
    h.press()
    assert len(h.published_events("alarm.raised")) == 2
    assert h.alarm["alarm_id"] != alarm_id


def test_reset_key_without_an_alarm_does_nothing(new_site: NewSite) -> None:
    h = new_site()
    h.start()
    h.press("reset_key")
    h.release("reset_key")
    assert h.stored_events("alarm.cleared") == []
    assert h.alarm["state"] == "idle"


def test_button_still_held_at_clear_must_be_released_first(
    new_site: NewSite,
) -> None:
    h = new_site()
    h.start()
    h.press()  # and keeps holding it
    h.press("reset_key")
    h.release("reset_key")
    assert h.alarm["state"] == "idle"
    h.step(30.0)
    assert len(h.stored_events("alarm.raised")) == 1  # no alarm loop on a latched button
    h.release()
    h.press()
    assert len(h.stored_events("alarm.raised")) == 2


def test_releasing_the_reset_key_does_not_clear(new_site: NewSite) -> None:
    h = new_site()
    h.start()
    h.press("reset_key")  # key left turned with no alarm
    h.press()
    assert h.alarm["state"] == "active"
    h.release("reset_key")  # only turning it (inactive -> active) clears
    assert h.alarm["state"] == "active"
    assert h.stored_events("alarm.cleared") == []
    h.press("reset_key")
    assert h.alarm["state"] == "idle"


def test_audible_mode_buzzer_on_then_off(new_site: NewSite) -> None:
    h = new_site(mode="audible")
    h.start()
    h.press()
    assert h.outputs()["buzzer"] is True
    [raised] = h.stored_events("alarm.raised")
    assert raised["data"]["mode"] == "audible"
    h.press("reset_key")
    assert h.outputs()["buzzer"] is False
    assert h.transitions("buzzer") == [True, False]


def test_silent_mode_never_sounds_the_buzzer(new_site: NewSite) -> None:
    h = new_site(mode="silent")
    h.start()
    h.press()
    h.connect()
    h.ack_event(h.stored_events("alarm.raised")[0]["event_id"])
    h.press("reset_key")
    h.shutdown()
    assert h.transitions("buzzer") == []
    assert h.transitions("sent_led") == [True, False]


# --------------------------------------------------------------------------- hold_ms


def test_press_shorter_than_hold_does_nothing(new_site: NewSite) -> None:
    h = new_site(hold_ms=2000)
    h.start()
    h.set_input(BUTTON, True)
    h.step(1.5)
    h.set_input(BUTTON, False)
    h.step(10.0)
    assert h.stored_events("alarm.raised") == []
    # pressing again briefly does not add up with the earlier press
    h.set_input(BUTTON, True)
    h.step(1.0)
    h.set_input(BUTTON, False)
    h.step(10.0)
    assert h.stored_events("alarm.raised") == []


def test_release_and_press_again_restarts_the_hold_time(
    new_site: NewSite,
) -> None:
    h = new_site(hold_ms=2000)
    h.start()
    h.press()  # debounced at ~+0.05 s: this hold would end at ~+2.05 s
    h.step(0.949)
    h.release()  # at +1.0 s
    h.step(0.449)
    h.press()  # at +1.5 s, debounced at ~+1.55 s: the new hold ends at ~+3.55 s
    h.step(1.0)  # ~+2.55 s: past the first press's hold end
    assert h.stored_events("alarm.raised") == []
    h.step(0.9)  # ~+3.45 s
    assert h.stored_events("alarm.raised") == []
    h.step(0.2)  # ~+3.65 s
    assert len(h.stored_events("alarm.raised")) == 1


def test_press_longer_than_hold_raises(new_site: NewSite) -> None:
    h = new_site(hold_ms=2000)
    h.start()
    h.set_input(BUTTON, True)
    h.step(0.05)  # debounced at +50 ms
    h.step(1.99)
    assert h.stored_events("alarm.raised") == []  # +2.04 s
    h.step(0.02)
    assert len(h.stored_events("alarm.raised")) == 1  # +2.06 s
    h.step(10.0)
    assert len(h.stored_events("alarm.raised")) == 1


# --------------------------------------------------------------------------- commands


@pytest.fixture
def centre(tmp_path: Path) -> tuple[Any, dict[str, LoadedKey]]:
    return centre_key(tmp_path / "keys")


def test_ack_and_clear_commands(
    alarm_online: NewSite, centre: tuple[Any, dict[str, LoadedKey]]
) -> None:
    key, keys = centre
    h = alarm_online(keys=keys)
    alarm_id = h.alarm["alarm_id"]

    h.command(signed(key, "alarm.ack", {"alarm_id": "wrong", "by": "관제센터"}, "c1"))
    assert h.results()[-1]["error"]["code"] == "unknown_alarm"
    assert h.outputs()["ack_led"] is False

    h.command(signed(key, "alarm.ack", {"alarm_id": alarm_id, "by": "관제센터"}, "c2"))
    assert h.results()[-1]["ok"] is True
    assert h.results()[-1]["data"] == {"alarm_id": alarm_id, "state": "acknowledged"}
    assert h.outputs()["ack_led"] is True

    h.command(signed(key, "alarm.clear", {"alarm_id": alarm_id}, "c3"))
    assert h.results()[-1]["ok"] is True
    assert all(p.committed for p in h.uplink.published)  # results too: commit, then publish
    assert h.outputs() == dict.fromkeys(OUTPUTS, False)
    [cleared] = h.published_events("alarm.cleared")
    assert cleared["data"] == {"alarm_id": alarm_id, "by": "centre"}
    # the alarm lifecycle is published in order
    lifecycle = [e for e in h.published_events() if e["type"].startswith("alarm.")]
    assert [e["type"] for e in lifecycle] == [
        "alarm.raised",
        "alarm.acknowledged",
        "alarm.cleared",
    ]
    assert [e["seq"] for e in lifecycle] == sorted(e["seq"] for e in lifecycle)


# --------------------------------------------------------------------------- restart, shutdown


def test_shutdown_turns_every_output_off(new_site: NewSite) -> None:
    h = new_site(mode="audible")
    h.start()
    h.connect()
    h.press()
    h.ack_event(h.published_events("alarm.raised")[0]["event_id"])
    assert h.outputs() == {"sent_led": True, "ack_led": False, "buzzer": True}
    h.shutdown()
    snap = h.hw.snapshot()["outputs"]
    assert {n: snap[n]["on"] for n in OUTPUTS} == dict.fromkeys(OUTPUTS, False)
    assert h.transitions("sent_led") == [True, False]
    assert h.transitions("buzzer") == [True, False]
    assert h.uplink.stopped_with is not None
    topic, payload = h.uplink.stopped_with
    assert topic == "ansim/v1/shelter-0001/status"
    assert json.loads(payload)["state"] == "offline"


def test_restart_with_a_sent_alarm_keeps_it_and_restores_outputs(
    tmp_path: Path, new_site: NewSite
) -> None:
    cfg = shelter_config(tmp_path, mode="audible")
    first = new_site(cfg)
    first.start()
    first.connect()
    first.press()
    first.release()
    [raised] = first.published_events("alarm.raised")
    first.ack_event(raised["event_id"])
    alarm_id = first.alarm["alarm_id"]
    first.shutdown()

    second = new_site(cfg)
    assert all(second.transitions(n) == [] for n in OUTPUTS)  # nothing on before start
    second.start()
    assert second.alarm["state"] == "active"
    assert second.alarm["alarm_id"] == alarm_id
    assert second.outputs() == {"sent_led": True, "ack_led": False, "buzzer": True}
    # the first run's site.started is still unacked; the second run's is the newest
    started = second.stored_events("site.started")[-1]
    assert started["data"]["restored_alarm"] == alarm_id
    assert second.stored_events("alarm.raised") == []  # no second raise
    second.press()
    second.connect()
    assert second.published_events("alarm.raised") == []
    assert started["seq"] > raised["seq"]  # the sequence continued


def test_restart_with_an_unsent_alarm_lights_sent_when_it_is_finally_acked(
    tmp_path: Path, new_site: NewSite
) -> None:
    cfg = shelter_config(tmp_path)
    first = new_site(cfg)
    first.start()
    first.press()  # never connected
    [raised] = first.stored_events("alarm.raised")
    first.shutdown()

    second = new_site(cfg)
    second.start()
    assert second.outputs()["sent_led"] is False
    assert [e["event_id"] for e in second.stored_events("alarm.raised")] == [raised["event_id"]]
    second.connect()
    second.ack_event(raised["event_id"])
    assert second.outputs()["sent_led"] is True
    assert len(second.published_events("alarm.raised")) == 1


def test_restart_with_an_acknowledged_alarm_restores_the_ack_led(
    tmp_path: Path,
    new_site: NewSite,
    centre: tuple[Any, dict[str, LoadedKey]],
) -> None:
    key, keys = centre
    cfg = shelter_config(tmp_path)
    first = new_site(cfg, keys=keys)
    first.start()
    first.connect()
    first.press()
    first.ack_event(first.published_events("alarm.raised")[0]["event_id"])
    alarm_id = first.alarm["alarm_id"]
    first.command(signed(key, "alarm.ack", {"alarm_id": alarm_id, "by": "centre"}, "c1"))
    [acked] = first.published_events("alarm.acknowledged")
    first_result = first.results()[-1]
    assert first_result["ok"] is True
    first.shutdown()

    second = new_site(cfg, keys=keys)
    second.start()
    assert second.outputs() == {"sent_led": True, "ack_led": True, "buzzer": False}
    assert second.alarm["state"] == "acknowledged"
    # the same command again is answered from the replay memory, not re-run
    second.connect()
    second.command(signed(key, "alarm.ack", {"alarm_id": alarm_id, "by": "centre"}, "c1"))
    assert second.results()[-1] == first_result
    # only the (unacked, redelivered) acknowledged event from before the restart
    assert {e["event_id"] for e in second.published_events("alarm.acknowledged")} == {
        acked["event_id"]
    }


def test_button_released_while_the_site_was_down_raises_on_next_press(
    tmp_path: Path, new_site: NewSite
) -> None:
    cfg = shelter_config(tmp_path)
    first = new_site(cfg)
    first.start()
    first.press()  # held...
    first.press("reset_key")  # ...while the clerk clears the alarm
    assert first.alarm["state"] == "idle"
    [old] = first.stored_events("alarm.raised")
    first.shutdown()  # the button is released while the daemon is down

    second = new_site(cfg)
    second.start()
    second.press()  # a new emergency
    assert second.alarm["state"] == "active"
    new_alarms = [
        e
        for e in second.stored_events("alarm.raised")
        if e["data"]["alarm_id"] != old["data"]["alarm_id"]
    ]
    assert len(new_alarms) == 1


# --------------------------------------------------------------------------- stuck button


STOCK_SHELTER = Path(__file__).resolve().parent.parent / "config" / "examples" / "shelter.yaml"


def stock_config(tmp_path: Path) -> SiteConfig:
    """config/examples/shelter.yaml as shipped, with its data in tmp_path."""
    raw = yaml.safe_load(STOCK_SHELTER.read_text(encoding="utf-8"))
    raw["data_dir"] = str(tmp_path / "stock-data")
    return parse_config(raw, STOCK_SHELTER)


def priorities(h: SteppedSite, type_: str) -> list[int]:
    return [
        p.priority
        for p in h.site.store.pending(1_000_000)
        if p.topic.endswith(f"/events/{type_.replace('.', '/')}")
    ]


def test_cut_loop_hidden_by_the_reset_key_is_reported_until_repaired(
    tmp_path: Path, new_site: NewSite
) -> None:
    """Issue 7 §6: with the stock config, cutting the NC loop raises an alarm, the clerk's
    key clears it, and the dead button must not look healthy."""
    h = new_site(stock_config(tmp_path))
    button = "panic-counter"
    h.start()
    h.set_input(button, True)  # the NC loop is cut and stays open
    h.step(0.051)
    [raised] = h.stored_events("alarm.raised")
    h.press("reset_key")
    assert h.alarm["state"] == "idle"
    [cleared] = h.stored_events("alarm.cleared")

    [fault] = h.stored_events("wiring.fault")
    assert fault["device"] == button
    assert fault["data"] == {"button": button, "reason": "stuck_active", "loop_open": True}
    assert fault["seq"] > cleared["seq"] > raised["seq"]
    assert priorities(h, "wiring.fault") == priorities(h, "alarm.raised")  # alarm priority
    assert h.site.states.get(button) == {"active": True, "fault": None, "wiring": ["stuck_active"]}
    assert h.alarm["stuck_buttons"] == [button]

    h.release("reset_key")
    for _ in range(30):  # reported once, not again at every self-check
        h.step(2.0)
    assert len(h.stored_events("wiring.fault")) == 1
    assert len(h.stored_events("alarm.raised")) == 1
    assert h.alarm["stuck_buttons"] == [button]

    h.set_input(button, False)  # the loop is repaired
    h.step(0.051)
    [restored] = h.stored_events("wiring.restored")
    assert restored["data"] == {"button": button, "reason": "stuck_active"}
    assert h.site.states.get(button) == {"active": False, "fault": None, "wiring": None}
    assert h.alarm["stuck_buttons"] is None

    h.set_input(button, True)  # and the next emergency raises a new alarm as usual
    h.step(0.051)
    assert h.alarm["state"] == "active"
    assert len(h.stored_events("alarm.raised")) == 2
    assert len(h.stored_events("wiring.fault")) == 1


def test_no_stuck_report_when_the_button_was_released_before_the_clear(
    new_site: NewSite,
) -> None:
    h = new_site()
    h.start()
    h.press()
    h.release()
    h.press("reset_key")
    assert h.alarm["state"] == "idle"
    assert h.stored_events("wiring.fault") == []
    assert h.alarm["stuck_buttons"] is None
    assert h.site.states.get(BUTTON) == {"active": False, "fault": None, "wiring": None}


def test_alarm_clear_command_with_a_held_button_reports_it_stuck(
    alarm_online: NewSite, centre: tuple[Any, dict[str, LoadedKey]]
) -> None:
    key, keys = centre
    h = alarm_online(keys=keys)  # the button held
    alarm_id = h.alarm["alarm_id"]
    h.command(signed(key, "alarm.clear", {"alarm_id": alarm_id}, "c-stuck"))
    assert h.results()[-1]["ok"] is True
    [fault] = h.published_events("wiring.fault")
    assert fault["data"]["reason"] == "stuck_active"
    assert h.site.states.get(BUTTON)["wiring"] == ["stuck_active"]  # type: ignore[index]
    assert h.alarm["stuck_buttons"] == [BUTTON]
    h.release()
    assert [e["data"]["reason"] for e in h.published_events("wiring.restored")] == ["stuck_active"]
    h.press()
    assert h.alarm["state"] == "active" and h.alarm["alarm_id"] != alarm_id


def test_stuck_button_is_reported_again_after_a_restart(tmp_path: Path, new_site: NewSite) -> None:
    cfg = shelter_config(tmp_path)
    first = new_site(cfg)
    first.start()
    first.press()  # cut and stays cut
    first.press("reset_key")
    assert len(first.stored_events("wiring.fault")) == 1
    first.shutdown()

    second = new_site(cfg)
    second.hw.set_input(BUTTON, True)  # still cut when the site comes back
    second.start()
    assert second.alarm["state"] == "idle"
    assert second.alarm["stuck_buttons"] == [BUTTON]
    assert second.site.states.get(BUTTON)["wiring"] == ["stuck_active"]  # type: ignore[index]
    faults = second.stored_events("wiring.fault")
    assert len(faults) == 2 and faults[-1]["data"]["loop_open"] is True
    assert len(second.stored_events("alarm.raised")) == 1  # no alarm loop on a dead button
    second.release()
    [restored] = second.stored_events("wiring.restored")
    assert restored["data"]["reason"] == "stuck_active"
    second.press()
    assert second.alarm["state"] == "active"


def test_stuck_button_repaired_while_the_site_was_down_is_restored_at_start(
    tmp_path: Path, new_site: NewSite
) -> None:
    cfg = shelter_config(tmp_path)
    first = new_site(cfg)
    first.start()
    first.press()
    first.press("reset_key")
    first.shutdown()

    second = new_site(cfg)  # the loop was repaired while the daemon was down
    second.start()
    assert len(second.stored_events("wiring.fault")) == 1  # the first run's, not a new one
    [restored] = second.stored_events("wiring.restored")
    assert restored["data"] == {"button": BUTTON, "reason": "stuck_active"}
    assert second.alarm["stuck_buttons"] is None
    assert second.site.states.get(BUTTON) == {"active": False, "fault": None, "wiring": None}


# --------------------------------------------------------------------------- commands: one site,
# a clock that may lie, floods of junk


def other_site(tmp_path: Path, site_id: str) -> SiteConfig:
    cfg = shelter_config(tmp_path / site_id)
    return cfg.model_copy(update={"site": cfg.site.model_copy(update={"id": site_id})})


def statuses(h: SteppedSite) -> list[dict[str, Any]]:
    return [p.json for p in h.uplink.published if p.topic.endswith("/status")]


def test_a_command_for_one_site_changes_nothing_at_another(
    tmp_path: Path, new_site: NewSite, centre: tuple[Any, dict[str, LoadedKey]]
) -> None:
    key, keys = centre
    a = new_site(keys=keys)  # shelter-0001
    b = new_site(other_site(tmp_path, "shelter-0002"), keys=keys)
    for h in (a, b):
        h.start()
        h.connect()
        h.press()
    clear_a = signed(key, "alarm.clear", {}, "c1")
    walk_test_a = signed(key, "site.test_mode", {"on": True, "minutes": 240}, "c2")
    a.command(clear_a)
    assert a.results()[-1]["ok"] is True and a.alarm["state"] == "idle"
    # The same bytes, captured from the broker and replayed at site B:
    for cmd in (clear_a, walk_test_a):
        b.command(cmd)
        assert b.results()[-1]["error"]["code"] == "wrong_site"
    assert b.alarm["state"] == "active" and b.alarm["test_mode_until"] is None
    assert b.published_events("alarm.cleared") == []
    assert b.site.store.command_result("c1") is None  # not remembered at B
    # A command for B with the same id runs there.
    b.command(signed(key, "alarm.clear", {}, "c1", site="shelter-0002"))
    assert b.results()[-1]["ok"] is True and b.alarm["state"] == "idle"


def test_a_clear_replayed_after_the_clock_went_forward_and_back_does_not_run(
    new_site: NewSite, centre: tuple[Any, dict[str, LoadedKey]]
) -> None:
    # The reproduction, with the site's own purge timer.
    key, keys = centre
    h = new_site(keys=keys)
    h.start()
    h.connect()
    assert statuses(h)[-1]["clock_trusted"] is True
    h.press()
    clear = signed(key, "alarm.clear", {}, "c1", ttl=timedelta(minutes=5))
    h.command(clear)
    assert h.results()[-1]["ok"] is True and h.alarm["state"] == "idle"
    h.release()
    h.clock.jump(3600)  # (unauthenticated) NTP steps the clock an hour ahead...
    h.step(1.0)  # ...the purge runs (1 s after start) and forgets c1 (expired by this clock)
    assert h.site.store.command_result("c1") is None
    h.clock.jump(-3600)  # ...and back
    h.press()  # a new emergency
    h.command(clear)  # the captured clear, replayed
    assert h.results()[-1]["error"]["code"] == "clock_untrusted"
    assert h.alarm["state"] == "active"
    assert len(h.published_events("alarm.cleared")) == 1
    # The retained status says so (at the next tick), and again when the clock is right.
    h.step(COMMANDS_TICK_S)
    assert statuses(h)[-1]["clock_trusted"] is False
    h.clock.jump(3600)
    h.step(COMMANDS_TICK_S)
    assert statuses(h)[-1]["clock_trusted"] is True
    h.command(clear)
    assert h.results()[-1]["error"]["code"] == "expired"
    assert h.alarm["state"] == "active"


def test_a_site_restarted_with_its_clock_behind_refuses_commands(
    tmp_path: Path, new_site: NewSite, centre: tuple[Any, dict[str, LoadedKey]]
) -> None:
    key, keys = centre
    cfg = shelter_config(tmp_path)
    first = new_site(cfg, keys=keys)
    first.start()
    first.step(3600)  # an hour of uptime; the mark is persisted as it goes
    first.shutdown()
    second = new_site(cfg, keys=keys)  # a new FakeClock: back at 2026-01-01T00:00:00Z
    second.start()
    second.connect()
    assert statuses(second)[-1]["clock_trusted"] is False
    second.command(signed(key, "site.test_mode", {"on": True}, "c1"))
    assert second.results()[-1]["error"]["code"] == "clock_untrusted"
    assert second.alarm["test_mode_until"] is None


def test_a_junk_flood_is_answered_up_to_the_limit_then_counted_in_one_event(
    new_site: NewSite,
) -> None:
    h = new_site()
    h.start()  # offline: every result stays in the store
    rows = len(h.site.store)
    topic = h.site.topics.command("alarm.ack")
    for _ in range(500):
        h.site.loop.post(lambda: h.site.uplink_message(topic, b'{"junk": '))
    h.run()
    assert len(h.site.store) - rows == REFUSED_BURST  # no store write for the rest
    h.step(REPORT_S + COMMANDS_TICK_S)
    [event] = h.stored_events("commands.refused")
    assert event["device"] == "site"
    assert event["data"]["suppressed"] == 500 - REFUSED_BURST
    assert event["data"]["codes"] == {"bad_json": 500 - REFUSED_BURST}
