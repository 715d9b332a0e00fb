"""``python -m bench``: runs each benchmark as a child process with ``--json``, reads the
``headline`` of its JSON and prints one table (and JSON). Tested with a stand-in benchmark
(tests/support/fake_bench.py) and fake results: no broker, no timing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import bench.__main__ as runner
from tests.support.fake_bench import HEADLINE

META = {
    "date": "2026-11-29 08:00 UTC",
    "cpus": 2,
    "cpu_model": "Fake CPU",
    "machine": "x86_64",
    "python": "3.11.7",
    "mosquitto": "mosquitto version 2.0.11",
    "load_avg_1m_at_start": 0.5,
}


def row(**over: Any) -> dict[str, Any]:
    return {**HEADLINE[0], **over}


def test_check_headline_accepts_the_shape_and_refuses_anything_else() -> None:
    assert runner.check_headline(HEADLINE) == HEADLINE
    assert runner.check_headline([]) == []
    bad: list[Any] = [
        {"name": "x"},  # not a list
        [{k: v for k, v in HEADLINE[0].items() if k != "target"}],  # a key missing
        [row(extra=1)],  # a key too many
        [row(value="1.0")],
        [row(value=True)],
        [row(value=None)],
        [row(**{"pass": "yes"})],
        ["not an object"],
    ]
    for rows in bad:
        with pytest.raises(ValueError):
            runner.check_headline(rows)


def test_the_table_has_every_headline_row_with_its_baseline_and_verdict() -> None:
    benches = {
        "spine": {
            "ok": True,
            "error": None,
            "wall_s": 61.0,
            "headline": [
                row(name="press p99", value=3.5, baseline=0.3, **{"pass": False}),
                row(name="outbox / bare", value=88.2, unit="%", baseline=None, baseline_name=None),
            ],
        },
        "replay": {"ok": True, "error": None, "wall_s": 30.0, "headline": [HEADLINE[1]]},
        "fleet": {"ok": False, "error": "exit status 1", "wall_s": 2.0, "headline": []},
    }
    combined = runner.combine(META, benches)
    assert [(r["bench"], r["name"]) for r in combined["headline"]] == [
        ("spine", "press p99"),
        ("spine", "outbox / bare"),
        ("replay", "fake throughput"),
        ("fleet", "fleet: did not run to the end (exit status 1)"),
    ]
    json.dumps(combined, allow_nan=False)  # JSON as it is
    text = runner.render(combined)
    lines = text.splitlines()
    assert "2 CPUs (Fake CPU)" in lines[0] and "mosquitto version 2.0.11" in lines[0]
    assert "2026-11-29" in lines[0]
    press = next(line for line in lines if "press p99" in line)
    assert "3.50 ms" in press and "bare paho p99: 0.30 ms" in press
    assert "<= bare p99 + 2 ms" in press and press.rstrip().endswith("FAIL")
    assert "88.2 %" in next(line for line in lines if "outbox / bare" in line)
    assert "12,346 ev/s" in next(line for line in lines if "fake throughput" in line)
    failed = next(line for line in lines if "did not run" in line)
    assert failed.rstrip().endswith("FAIL")
    assert "FAILED to run: fleet" in lines[-1]


def test_run_one_reads_the_json_of_a_benchmark_and_says_what_went_wrong() -> None:
    ok = runner.run_one("fake", [sys.executable, "-m", "tests.support.fake_bench"], 60)
    assert ok["ok"] and ok["error"] is None
    assert ok["headline"] == HEADLINE and ok["results"]["figure"] == 1
    assert "own table" in ok["output"]

    gone = runner.run_one("gone", [sys.executable, "-m", "tests.support.no_such_bench"], 60)
    assert not gone["ok"] and gone["error"] == "exit status 1" and gone["headline"] == []

    script = "import sys; open(sys.argv[-1], 'w').write('{\"headline\": [{\"name\": 1}]}')"
    bad = runner.run_one("bad", [sys.executable, "-c", script], 60)
    assert not bad["ok"] and "want the keys" in bad["error"]


def test_main_runs_each_benchmark_and_writes_one_table_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        runner,
        "available",
        lambda: {"fake": "tests.support.fake_bench", "broken": "tests.support.no_such_bench"},
    )
    out = tmp_path / "all.json"
    assert runner.main(["--quick", "--json", str(out)]) == 1  # one benchmark did not run
    text = capsys.readouterr().out
    assert "fake latency p99" in text and "broken: did not run to the end" in text
    r = json.loads(out.read_text(encoding="utf-8"))
    assert set(r) == {"meta", "benches", "headline"}
    assert r["meta"]["quick"] is True and r["meta"]["benches"] == ["fake", "broken"]
    assert r["benches"]["fake"]["results"]["meta"]["quick"] is True  # --quick passed on
    assert [x["bench"] for x in r["headline"]] == ["fake", "fake", "broken"]

    assert runner.main(["--only", "fake"]) == 0
    assert "broken" not in capsys.readouterr().out


def test_the_fleet_benchmark_joins_once_its_module_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "OPTIONAL", {"fleet": "tests.support.fake_bench"})
    assert list(runner.available())[-1] == "fleet"
    monkeypatch.setattr(runner, "OPTIONAL", {"fleet": "tests.support.no_such_bench"})
    assert "fleet" not in runner.available()
