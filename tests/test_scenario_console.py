"""Scenarios from the simulator's control API (docs/simulator-api.md, "Scenarios"): the
shipped scenarios are listed with whether they fit the site, one runs against the running
simulator in the background, its steps on the event stream, one at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.console import Sim, SseReader, running_sim
from tests.support.mqtt import Mosquitto
from tests.support.site import REPO
from tests.support.wait import wait_until


def example(name: str, broker: str, data: Path) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load((REPO / "config" / "examples" / name).read_text("utf-8"))
    cfg["data_dir"] = str(data)
    cfg["broker"]["url"] = broker
    return cfg


@pytest.fixture
def shelter(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Sim]:
    with running_sim(example("shelter.yaml", mosquitto.url, tmp_path / "d")) as sim:
        yield sim


def test_the_list_says_which_scenarios_fit_this_site(shelter: Sim) -> None:
    answer = shelter.get("/scenarios")
    assert answer.status == 200
    body = answer.body
    assert body["site"] == "shelter-gangnam-0001" and body["run"] is None
    fits = {s["file"]: s["fits"] for s in body["scenarios"]}
    assert fits["alarm-acknowledged.yaml"] and fits["walk-test.yaml"]
    assert fits["alarm-outage-escalated.yaml"]
    assert not fits["jammed-door.yaml"] and not fits["board-failure.yaml"]
    ack = next(s for s in body["scenarios"] if s["file"] == "alarm-acknowledged.yaml")
    assert ack["name"] == "An alarm acknowledged by the centre"
    assert ack["config"] == "shelter.yaml" and ack["site"] == "shelter-gangnam-0001"
    assert ack["steps"] == 15


def test_a_scenario_runs_against_the_running_sim(shelter: Sim) -> None:
    stream = SseReader(shelter.host, shelter.port)
    try:
        wait_until(lambda: stream.of("hello"), message="the stream greets")
        answer = shelter.post("/scenarios/run", {"file": "alarm-acknowledged.yaml"})
        assert (answer.status, answer.body) == (
            202,
            {"started": "alarm-acknowledged.yaml", "steps": 15},
        )
        busy = shelter.post("/scenarios/run", {"file": "walk-test.yaml"})
        assert busy.status == 409 and busy.body == {
            "error": "a scenario is running: alarm-acknowledged.yaml"
        }

        def ended() -> Any:
            run = shelter.get("/scenarios/run").body["run"]
            return run if run and not run["running"] else None

        run = wait_until(ended, timeout=60, message="the scenario to end")
        assert run["ok"] is True, run
        assert run["summary"].startswith("PASSED: 15 steps in ")
        assert [s["status"] for s in run["steps"]] == ["ok"] * 15
        # the site is as the scenario left it: idle, its lamps off
        assert shelter.state()["site"]["states"]["alarm"]["state"] == "idle"
        # the stream told it step by step
        events = wait_until(lambda: [e for e in stream.of("scenario") if "done" in e])
        assert events[0]["done"]["ok"] is True
        steps = [e["step"] for e in stream.of("scenario") if "step" in e]
        assert [s["number"] for s in steps] == list(range(1, 16))
        started = [e for e in stream.of("scenario") if "started" in e]
        assert started == [
            {
                "file": "alarm-acknowledged.yaml",
                "name": "An alarm acknowledged by the centre",
                "started": 15,
            }
        ]
        # and the presses it made are the console's actions too
        assert any(a["path"] == "/inputs/panic-counter" for a in stream.of("action"))
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"file": "jammed-door.yaml"}, 409, "jammed-door.yaml is for site locker-seoulstation-01"),
        ({"file": "../../config/examples/shelter.yaml"}, 404, "no scenario"),
        ({"file": "nope.yaml"}, 404, "no scenario 'nope.yaml'; see GET /scenarios"),
        ({}, 400, 'body must be {"file": "<a scenario file name>"}'),
    ],
)
def test_refusals(shelter: Sim, body: Any, status: int, error: str) -> None:
    answer = shelter.post("/scenarios/run", body)
    assert answer.status == status
    assert answer.body["error"].startswith(error), answer.body
