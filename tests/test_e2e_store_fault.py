"""Issue 7.1 on a real `ansim-edge sim` process and a real mosquitto: a full disk and an
unusable data dir must not swallow an alarm.

The disk is "filled" for the sim process alone with ``prlimit(RLIMIT_FSIZE)``: with a
1-byte file size limit every write that grows a file fails with EFBIG (Python ignores
SIGXFSZ), exactly what SQLite meets on a full SD card; raising the limit again "frees the
space". The process logs to a pipe (a pipe is not subject to the limit)."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.mqtt import Mosquitto, Subscriber, SubscriberFactory
from tests.support.site import Keys, SimProcess, make_keys, site_dict
from tests.support.wait import wait_until

ROOT = "ansim/v1"
SMS_TO = "+821011112222"


@pytest.fixture
def sims() -> Iterator[list[SimProcess]]:
    made: list[SimProcess] = []
    yield made
    for s in made:
        s.kill()


def shelter(site: str, url: str, data: Path, keys: Keys) -> dict[str, Any]:
    d = site_dict(site, url, data, keys, debounce_ms=0)
    d["devices"]["modem"] = {"url": "/dev/null", "check_interval_s": 1}
    # Much longer than the test: an SMS within it can only be the at-once escalation.
    d["escalation"] = {
        "escalate_after_s": 600,
        "sms_numbers": [SMS_TO],
        "call_number": "112",
        "ring_timeout_s": 5,
        "talk_s": 0.2,
    }
    return d


def events(sub: Subscriber, site: str, type_: str = "#") -> list[dict[str, Any]]:
    return [m.json for m in sub.messages(f"{ROOT}/{site}/events/{type_.replace('.', '/')}")]


def status(sub: Subscriber, site: str, **match: Any) -> dict[str, Any]:
    msg = sub.wait_for(
        lambda m: (
            m.topic == f"{ROOT}/{site}/status"
            and m.json.get("state") == "online"
            and all(m.json.get(k) == v for k, v in match.items())
        ),
        timeout=40,
    )
    return dict(msg.json)


def gapless(evs: list[dict[str, Any]]) -> list[int]:
    by_seq: dict[int, str] = {}
    for e in evs:
        assert by_seq.setdefault(e["seq"], e["event_id"]) == e["event_id"], e
    seqs = sorted(by_seq)
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    return seqs


def test_disk_full_press_still_alarms_and_the_site_recovers_when_space_is_freed(
    mosquitto: Mosquitto,
    subscriber_factory: SubscriberFactory,
    tmp_path: Path,
    sims: list[SimProcess],
) -> None:
    site = "store-full"
    keys = make_keys(tmp_path / "keys")
    cfg = shelter(site, mosquitto.url, tmp_path / "data", keys)
    sub = subscriber_factory([f"{ROOT}/{site}/#"])
    sim = SimProcess(cfg, tmp_path / "w", mosquitto.url, pipe=True)
    sims.append(sim)
    assert status(sub, site)["store"] == "ok"
    sub.wait_for(f"{ROOT}/{site}/events/site/started")

    sim.file_size_limit(1)  # the SD card is full
    sim.set_input("panic-1", True)
    raised = sub.wait_for(f"{ROOT}/{site}/events/alarm/raised").json
    fault = sub.wait_for(f"{ROOT}/{site}/events/store/fault").json
    assert fault["data"]["error"] and fault["data"]["at_start"] is False
    degraded = status(sub, site, store="degraded")
    assert degraded["store_error"] == fault["data"]["error"]
    # Escalated over the modem at once (escalate_after_s is 600 s).
    wait_until(lambda: sim.get("/modem")["sms"], timeout=15, message="SMS at once")
    assert sim.get("/modem")["sms"][0]["number"] == SMS_TO
    # The broker acknowledged the alarm published from memory: the sent lamp is lit.
    wait_until(lambda: sim.get("/state")["outputs"]["sent_led"]["on"], message="sent lamp")
    state = sim.get("/state")["site"]
    assert state["store"] == "degraded" and state["states"]["alarm"]["state"] == "active"

    # Retrying while still full fails and changes nothing (the site does not wedge).
    wait_until(lambda: "store_still_failing" in sim.log, timeout=10, message="a failed retry")
    sim.file_size_limit(resource.RLIM_INFINITY)  # space freed
    recovered = sub.wait_for(f"{ROOT}/{site}/events/store/recovered", timeout=40).json
    assert recovered["data"]["degraded_s"] > 0
    status(sub, site, store="ok", store_error=None)
    # A clear and a new alarm go through normally.
    sim.set_input("reset_key", True)
    sim.set_input("reset_key", False)
    sub.wait_for(f"{ROOT}/{site}/events/alarm/cleared")
    sim.set_input("panic-1", False)
    wait_until(lambda: not sim.get("/state")["site"]["states"]["panic-1"]["active"])
    sim.set_input("panic-1", True)
    second = sub.wait_count(f"{ROOT}/{site}/events/alarm/raised", 2)[-1].json
    assert second["data"]["alarm_id"] != raised["data"]["alarm_id"]
    assert second["seq"] > recovered["seq"]
    seqs = gapless(events(sub, site))
    assert sim.get("/state")["site"]["last_seq"] == seqs[-1]

    # What recovery persisted survives a kill: the second alarm comes back, seq goes on.
    assert sim.kill() != 0
    again = SimProcess(cfg, tmp_path / "w", mosquitto.url, pipe=True)
    sims.append(again)
    started = sub.wait_for(
        lambda m: m.topic.endswith("/events/site/started") and m.json["seq"] > seqs[-1]
    ).json
    assert started["data"]["restored_alarm"] == second["data"]["alarm_id"]
    gapless(events(sub, site))


def test_unusable_data_dir_at_start_runs_degraded_and_alarms(
    mosquitto: Mosquitto,
    subscriber_factory: SubscriberFactory,
    tmp_path: Path,
    sims: list[SimProcess],
) -> None:
    site = "store-unusable"
    keys = make_keys(tmp_path / "keys")
    blocker = tmp_path / "mnt"
    blocker.write_text("not a directory")
    cfg = shelter(site, mosquitto.url, blocker / "ansim", keys)
    sub = subscriber_factory([f"{ROOT}/{site}/#"])
    sim = SimProcess(cfg, tmp_path / "w", mosquitto.url, pipe=True)
    sims.append(sim)
    st = status(sub, site, store="degraded")
    assert "Not a directory" in st["store_error"]
    fault = sub.wait_for(f"{ROOT}/{site}/events/store/fault").json
    assert fault["data"]["at_start"] is True
    sim.set_input("panic-1", True)
    raised = sub.wait_for(f"{ROOT}/{site}/events/alarm/raised").json
    assert raised["data"]["button"] == "panic-1"
    wait_until(lambda: sim.get("/modem")["sms"], timeout=15, message="SMS at once")
    wait_until(lambda: sim.get("/state")["outputs"]["sent_led"]["on"], message="sent lamp")
    gapless(events(sub, site))
    # A clean stop, never a crash or a restart loop.
    assert sim.terminate() == 0
    assert "Traceback" not in sim.log
    assert "store_lost_on_exit" in sim.log
