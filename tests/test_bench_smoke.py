"""Smoke test of the benchmark script (bench/bench_spine.py): it runs end to end in quick
mode with tiny N and writes well-formed JSON with every key. No timing thresholds here:
the figures belong to the benchmark's own report, not to a test."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import check_headline
from tests.support.bench import run_bench

pytestmark = pytest.mark.mqtt

LATENCY_KEYS = {"n", "p50_ms", "p99_ms", "max_ms", "mean_ms"}
THROUGHPUT_KEYS = {
    "n",
    "tcp_nodelay",
    "inflight",
    "payload_bytes",
    "seconds_to_last_puback",
    "msg_per_s",
    "seconds_to_subscriber",
    "msg_per_s_to_subscriber",
}
OUTBOX_KEYS = {
    "n",
    "durability",
    "batch_events_per_job",
    "jobs_in_flight",
    "seconds_generating",
    "seconds_to_subscriber",
    "events_per_s",
    "seconds_to_store_empty",
    "published",
    "acked",
    "ratio_vs_bare",
}


def _numbers(d: dict[str, Any], keys: set[str]) -> None:
    for k in keys:
        v = d[k]
        if isinstance(v, bool | str):
            continue
        assert isinstance(v, int | float) and math.isfinite(v), (k, v)


def test_quick_benchmark_completes_and_writes_json(tmp_path: Path, mosquitto_binary: str) -> None:
    out = tmp_path / "bench.json"
    stdout, r = run_bench(
        "bench.bench_spine",
        out,
        [
            "--quick",
            "--presses",
            "3",
            "--events",
            "300",
            "--bare-latency-n",
            "20",
            "--rss-samples",
            "2",
        ],
        timeout=100,
    )
    rows = ("press -> subscriber", "durability group", "daemon idle RSS", "run idle RSS")
    for row in (*rows, "TCP_NODELAY"):
        assert row.lower() in stdout.lower(), stdout

    assert set(r) == {
        "meta",
        "baseline",
        "press_latency",
        "outbox",
        "rss",
        "run_rss",
        "targets",
        "all_passed",
        "headline",
    }
    assert len(check_headline(r["headline"])) == 10
    assert r["run_rss"]["samples"] == 2 and r["run_rss"]["run_rss_max_mb"] > 0
    assert r["run_rss"]["run_rss_plain_max_mb"] > 0 and r["run_rss"]["python_optimize"] == 2
    assert r["meta"]["quick"] is True

    b = r["baseline"]
    assert set(b) == {
        "latency_nodelay",
        "latency_no_nodelay",
        "throughput_nodelay",
        "throughput_no_nodelay",
        "fsync_4k",
    }
    for k in ("latency_nodelay", "latency_no_nodelay"):
        assert set(b[k]) >= LATENCY_KEYS and b[k]["n"] == 20
        _numbers(b[k], LATENCY_KEYS)
    assert set(b["fsync_4k"]) >= LATENCY_KEYS and b["fsync_4k"]["n"] == 20
    assert b["latency_nodelay"]["tcp_nodelay"] is True
    assert b["latency_no_nodelay"]["tcp_nodelay"] is False
    for k in ("throughput_nodelay", "throughput_no_nodelay"):
        assert set(b[k]) >= THROUGHPUT_KEYS and b[k]["n"] == 300
        _numbers(b[k], THROUGHPUT_KEYS)

    p = r["press_latency"]
    assert p["n"] == 3 and p["debounce_ms"] == 5
    for k in ("latency", "beyond_debounce"):
        assert set(p[k]) >= LATENCY_KEYS and p[k]["n"] == 3
        _numbers(p[k], LATENCY_KEYS)
    _numbers(p, {"bare_p99_ms", "beyond_debounce_p99_minus_bare_p99_ms", "target_ms"})
    assert isinstance(p["passed"], bool)

    o = r["outbox"]
    for k in ("group", "per_event"):
        assert set(o[k]) >= OUTBOX_KEYS, set(o[k]) ^ OUTBOX_KEYS
        assert o[k]["durability"] == k and o[k]["n"] == 300
        assert o[k]["published"] >= 300 and o[k]["acked"] >= 300  # every event went out
        _numbers(o[k], OUTBOX_KEYS)
    assert {"rounds_events_per_s", "rounds_ratio_vs_bare", "ratio_of_medians"} <= set(o["group"])
    _numbers(o, {"bare_msg_per_s", "target_ratio"})
    assert isinstance(o["passed"], bool)

    m = r["rss"]
    assert m["samples"] == 2 and len(m["daemon_rss_samples_mb"]) == 2
    _numbers(m, {"daemon_rss_max_mb", "bare_python_paho_rss_mb", "target_mb"})
    assert m["daemon_rss_max_mb"] > 0 and m["bare_python_paho_rss_mb"] > 0

    assert set(r["targets"]) == {"press_latency", "outbox_group_ratio", "daemon_rss", "run_rss"}
    assert all(isinstance(v, bool) for v in r["targets"].values())
    assert r["all_passed"] == all(r["targets"].values())
