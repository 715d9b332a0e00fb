"""Smoke test of bench/bench_replay.py: quick mode, tiny N, well-formed JSON with every key
(the broker really is killed and started again). No timing or memory thresholds here: the
figures belong to the benchmark's own report."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import check_headline

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.mqtt


def _no_nan(constant: str) -> Any:
    raise ValueError(f"not JSON: {constant}")


def test_quick_replay_benchmark_completes_and_writes_json(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    out = tmp_path / "replay.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_replay",
            "--quick",
            "--events",
            "150",
            "--warmup",
            "10",
            "--bare-n",
            "50",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    for row in ("broker down", "drain after the broker returns", "site RSS", "distinct"):
        assert row.lower() in proc.stdout.lower(), proc.stdout

    r = json.loads(out.read_text(encoding="utf-8"), parse_constant=_no_nan)
    assert set(r) == {"meta", "baseline", "replay", "targets", "all_passed", "headline"}
    assert r["meta"]["quick"] is True
    assert [b["n"] for b in r["baseline"]["throughput_nodelay"]] == [50, 50]
    rp = r["replay"]
    assert rp["n"] == 150 and rp["warmup_events"] == 10
    assert rp["pending_after_fill"] >= 150  # every one recorded while the broker was down
    assert rp["delivered_distinct"] == 150 and rp["nothing_lost"] is True
    assert rp["site"]["pending"] == 0 and rp["site"]["acked"] >= 160
    for k in (
        "drain_events_per_s",
        "bare_msg_per_s",
        "drain_ratio_vs_bare",
        "seconds_online_to_last",
        "seconds_restart_to_online",
    ):
        assert isinstance(rp[k], int | float) and math.isfinite(rp[k]) and rp[k] >= 0, k
    rss = rp["rss"]
    for k in ("before_mb", "filled_mb", "peak_mb", "after_mb"):
        assert rss[k] > 0, k
    assert isinstance(rss["passed"], bool)
    assert set(r["targets"]) == {"rss_growth", "nothing_lost"}
    assert r["all_passed"] == all(r["targets"].values())
    names = [h["name"] for h in check_headline(r["headline"])]
    assert len(names) == 2 and "drain" in names[0] and "RSS" in names[1]
