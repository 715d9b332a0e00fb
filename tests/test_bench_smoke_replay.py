"""Smoke test of bench/bench_replay.py: quick mode, tiny N, well-formed JSON with every key
(the broker really is killed and started again). No timing or memory thresholds here: the
figures belong to the benchmark's own report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.__main__ import check_headline
from tests.support.bench import run_bench

pytestmark = pytest.mark.mqtt


def test_quick_replay_benchmark_completes_and_writes_json(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    out = tmp_path / "replay.json"
    stdout, r = run_bench(
        "bench.bench_replay",
        out,
        ["--quick", "--events", "150", "--warmup", "10", "--bare-n", "50"],
        timeout=100,
    )
    for row in ("broker down", "drain after the broker returns", "site RSS", "distinct"):
        assert row.lower() in stdout.lower(), stdout

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
