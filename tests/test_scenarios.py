"""Scenarios (docs/scenarios.md): every scenario shipped in simulator/scenarios/ passes
against a real simulated site on a real mosquitto; a scenario expecting the wrong thing
fails with a readable report; a scenario file with mistakes is refused with the step
number and the field."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from edge.cli import main as cli_main
from edge.core.errors import ConfigError
from simulator.scenario import ScenarioError, load_scenario, parse_scenario, scenario_dir
from simulator.scenario_cli import config_with, merged, run_file
from simulator.scenario_run import MISSING, mismatch
from tests.support.mqtt import Mosquitto

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted(scenario_dir().glob("*.yaml"))
WRONG = Path(__file__).resolve().parent / "scenarios" / "wrong-expectation.yaml"
SHELTER = "../../config/examples/shelter.yaml"


def main(argv: list[str]) -> int:
    """edge.cli.main without its logging setup: it would point structlog, with logger
    caching on, at this test's captured stderr, and the loggers of a site running in this
    process meanwhile would keep writing there after the test (closed by then)."""
    with mock.patch("edge.logs.configure"):
        return cli_main(argv)


def test_the_seven_scenarios_of_the_issue_are_shipped() -> None:
    names = {p.stem for p in SHIPPED}
    assert names >= {
        "alarm-acknowledged",
        "alarm-outage-escalated",
        "deposit-offline-pickup-fee",
        "jammed-door",
        "forced-door",
        "board-failure",
        "walk-test",
    }


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_scenario_passes(path: Path, mosquitto: Mosquitto) -> None:
    out = io.StringIO()
    report = run_file(path, broker_url=mosquitto.url, out=out)
    assert report.ok, out.getvalue()
    assert report.steps and all(s.status == "ok" for s in report.steps)
    assert out.getvalue().rstrip().splitlines()[-1].startswith("PASSED: ")


def test_a_scenario_expecting_the_wrong_thing_fails_readably(mosquitto: Mosquitto) -> None:
    out = io.StringIO()
    report = run_file(WRONG, broker_url=mosquitto.url, out=out)
    text = out.getvalue()
    assert not report.ok, text
    failed = [s for s in report.steps if s.status == "FAIL"]
    assert [s.number for s in failed] == [4]
    # Why, in words: what was expected, what came, and the step that was not run.
    assert "no alarm.raised event within 2 s" in failed[0].detail
    assert 'mode: expected "audible", got "silent"' in failed[0].detail
    assert report.steps[4].status == "skip"
    lines = text.rstrip().splitlines()
    assert lines[-1].startswith("FAILED at step 4 of 5 (expect event alarm.raised")
    assert any(ln.split()[:2] == ["5", "skip"] for ln in lines), text


def test_scenario_run_cli_exit_codes(
    mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scenario", "run", str(WRONG), "--broker", mosquitto.url]) == 1
    assert "FAILED at step 4 of 5" in capsys.readouterr().out
    ok = scenario_dir() / "forced-door.yaml"
    assert main(["scenario", "run", str(ok), "--broker", mosquitto.url]) == 0
    out = capsys.readouterr().out
    assert "PASSED: 11 steps" in out and "scenario: A forced door" in out


def test_scenario_check_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["scenario", "check", str(scenario_dir() / "walk-test.yaml")]) == 0
    assert "walk-test.yaml: ok (" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: x\nconfig: {REPO}/config/examples/shelter.yaml\nsteps:\n  - presss: a\n")
    assert main(["scenario", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "step 1: unknown action 'presss'" in err


# --------------------------------------------------------------------------- the format


def errors_of(steps: list[Any], **top: Any) -> str:
    data = {"name": "t", "config": SHELTER, "steps": steps, **top}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data)
    return str(info.value)


def test_errors_name_the_step_and_the_field() -> None:
    text = errors_of(
        [
            {"press": "panic-counter"},
            {"expect": {"event": "alarm.raised", "within_s": 0}},
            {"send": {"command": "alarm.ack", "argz": {}}},
            {"wait": "long"},
            {"door": {"locker": 0, "open": True}},
            "press",
            {"press": "a", "release": "a"},
            {"expect": {"event": "x", "state": "alarm"}},
            {"expect": {"output": {"sent_led": "maybe"}}},
        ]
    )
    assert "step 2 (expect): expect.within_s: Input should be greater than 0" in text
    assert "step 3 (send): send.argz: unknown field" in text
    assert "step 4 (wait): wait: Input should be a valid number" in text
    assert "step 5 (door): door.locker: Input should be greater than or equal to 1" in text
    assert "step 6: 'press' needs a value" in text
    assert "step 7: a step has exactly one action" in text
    assert "step 8 (expect): expect: expect exactly one of event, state" in text
    assert "step 9 (expect): expect.output.sent_led: Input should be a valid boolean" in text
    assert "step 1 " not in text


def test_a_variable_must_be_saved_before_it_is_used() -> None:
    text = errors_of([{"send": {"command": "alarm.ack", "args": {"alarm_id": "${alarm}"}}}])
    assert "step 1 (send) uses ${alarm}, which no earlier step saves" in text
    ok = parse_scenario(
        {
            "name": "t",
            "config": SHELTER,
            "steps": [
                {"expect": {"event": "alarm.raised", "save": {"alarm": "data.alarm_id"}}},
                {
                    "send": {
                        "command": "alarm.ack",
                        "args": {"alarm_id": "${alarm}", "by": "${site}"},
                    }
                },
            ],
        }
    )
    assert len(ok.steps) == 2


def test_top_level_mistakes() -> None:
    assert "steps: List should have at least 1 item" in errors_of([])
    assert "config: Value error, config names a site config" not in errors_of(
        [{"wait": 1}], config="shelter.json"
    )
    assert "config: config names a site config file (.yaml)" in errors_of(
        [{"wait": 1}], config="shelter.json"
    )
    assert "colour: unknown field" in errors_of([{"wait": 1}], colour="red")


def test_only_true_and_false_are_booleans_in_a_scenario_file(tmp_path: Path) -> None:
    # YAML 1.1 reads on/off/yes/no as booleans: `on:` (site.test_mode's data) would be
    # the key True. Scenario files read them as text.
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: t\nconfig: {REPO}/config/examples/shelter.yaml\nsteps:\n"
        "  - expect: {event: site.test_mode, data: {on: true, by: no}}\n"
        "  - expect: {output: {sent_led: on, ack_led: off}}\n"
        "  - modem: {callee: no_answer}\n",
        encoding="utf-8",
    )
    sc = load_scenario(path)
    assert sc.steps[0].expect.data == {"on": True, "by": "no"}  # type: ignore[union-attr]
    assert sc.steps[1].expect.output == {"sent_led": True, "ack_led": False}  # type: ignore[union-attr]
    assert sc.config == (REPO / "config" / "examples" / "shelter.yaml").resolve()
    assert yaml.safe_load("on: true") == {True: True}  # what plain YAML would have done


def test_every_shipped_scenario_is_valid_and_names_an_example_config() -> None:
    for path in SHIPPED:
        sc = load_scenario(path)
        assert sc.config.parent == (REPO / "config" / "examples").resolve(), path
        assert sc.config.exists(), path


@pytest.mark.parametrize(
    ("expected", "actual", "why"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, None),
        ({"a": {"b": True}}, {"a": {"b": True, "c": 0}}, None),
        ({"a": 1}, {"a": 2}, "a: expected 1, got 2"),
        ({"a": 1}, {"b": 1}, "a: missing (expected 1)"),
        ({"a": True}, {"a": 1}, "a: expected true, got 1"),
        ({"a": 2000}, {"a": 2000.0}, None),
        ({"a": None}, {"a": None}, None),
        ({"a": [1, 2]}, {"a": [1, 2]}, None),
        ({"a": [1]}, {"a": [1, 2]}, "a: expected [1], got [1,2]"),
        ({"f": {"regex": "jam"}}, {"f": "lock jammed: x"}, None),
        ({"f": {"regex": "^x"}}, {"f": "lock"}, 'f: "lock" does not match /^x/'),
        ({"n": {"ge": 3, "lt": 5}}, {"n": 4}, None),
        ({"n": {"gt": 4}}, {"n": 4}, "n: 4 is not gt 4"),
        ({"n": {"gt": 4}}, {"n": "5"}, 'n: "5" is not a number to compare (gt 4)'),
        ({"x": {"present": True}}, {"x": 0}, None),
        ({"x": {"present": True}}, {"x": None}, "x: missing or null"),
        ({"x": {"present": False}}, {}, None),
        ({"x": {"not": None}}, {"x": 3}, None),
        ({"x": {"not": 3}}, {"x": 3}, "x: is 3 (expected not)"),
        ({"x": {"any_of": ["a", "b"]}}, {"x": "b"}, None),
        ({"x": {"any_of": ["a", "b"]}}, {"x": "c"}, 'x: "c" is none of ["a","b"]'),
    ],
)
def test_matching(expected: Any, actual: Any, why: str | None) -> None:
    assert mismatch(expected, actual) == why
    assert MISSING is not None


def test_config_overrides_are_merged_and_validated(tmp_path: Path) -> None:
    shelter = REPO / "config" / "examples" / "shelter.yaml"
    cfg = config_with(shelter, {"broker": {"reconnect": {"max_s": 2}}, "site": {"name": "x"}})
    assert cfg.broker.reconnect.max_s == 2 and cfg.broker.reconnect.min_s == 1
    assert cfg.broker.keepalive_s == 30  # the rest of the mapping kept
    assert cfg.site.id == "shelter-gangnam-0001" and cfg.site.name == "x"
    assert cfg.data_dir == (REPO / "data" / "shelter-gangnam-0001").resolve()  # as in the file
    with pytest.raises(ConfigError) as info:
        config_with(shelter, {"broker": {"reconnect": {"max_s": -1}}})
    assert str(info.value).startswith(f"{shelter}: ")
    assert "broker.reconnect.max_s" in str(info.value)
    assert merged({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": 3}, "d": [2]}) == {
        "a": {"b": 3, "c": 2},
        "d": [2],
    }
