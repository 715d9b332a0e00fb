"""Smoke test of bench/bench_flood.py: it runs end to end in quick mode with tiny N and writes
well-formed JSON with every key. No timing thresholds here: the figures belong to the
benchmark's own report, not to a test."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import check_headline
from tests.support.bench import run_bench

pytestmark = pytest.mark.mqtt

LATENCY_KEYS = {"n", "p50_ms", "p99_ms", "max_ms", "mean_ms"}
ROUND_KEYS = {
    "sent",
    "flood_s",
    "sent_per_s",
    "handled_during",
    "handled_per_s_during",
    "shed_during",
    "handled_total",
    "shed_total",
    "seconds_to_drain_after_stop",
}


def _numbers(d: dict[str, Any], keys: set[str]) -> None:
    for k in keys:
        v = d[k]
        assert not isinstance(v, bool) and isinstance(v, int | float), (k, v)
        assert math.isfinite(v), (k, v)


def _latency(d: dict[str, Any], n: int) -> None:
    assert set(d) >= LATENCY_KEYS, d
    _numbers(d, LATENCY_KEYS)
    assert d["n"] == n, d


def test_quick_flood_benchmark_completes_and_writes_json(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    out = tmp_path / "flood.json"
    stdout, r = run_bench(
        "bench.bench_flood",
        out,
        [
            "--quick",
            "--presses",
            "2",
            "--floods",
            "400:1,800:0",
            "--warmup-s",
            "0.2",
            "--bare-latency-n",
            "10",
            "--big-mib",
            "1",
        ],
        timeout=110,
    )
    for row in ("no flood", "400/s junk, QoS 1", "800/s junk, QoS 0", "MQTT 5: VmHWM"):
        assert row.lower() in stdout.lower(), stdout

    assert set(r) == {
        "meta",
        "baseline",
        "press_latency",
        "oversized",
        "targets",
        "all_passed",
        "headline",
    }
    assert len(check_headline(r["headline"])) == 1 + len(r["press_latency"]["floods"]) + 2
    assert r["meta"]["quick"] is True
    _latency(r["baseline"]["mqtt_latency"], 10)

    p = r["press_latency"]
    assert p["presses_per_round"] == 2 and p["rounds"] == 1
    _latency(p["no_flood"]["latency"], 2)
    assert [(f["rate_target_per_s"], f["qos"]) for f in p["floods"]] == [(400, 1), (800, 0)]
    for f in p["floods"]:
        _latency(f["latency"], 2)
        _numbers(f, {"vs_no_flood_p50", "vs_no_flood_p99", "sent", "sent_per_s", "shed"})
        [rnd] = f["rounds"]
        assert set(rnd) == ROUND_KEYS
        _numbers(rnd, ROUND_KEYS)
        assert rnd["sent"] > 0
        # every junk command the attacker sent reached the site: handled or shed
        assert rnd["handled_total"] + rnd["shed_total"] >= rnd["sent"]
    _numbers(p, {"worst_flood_p99_ms", "target_p99_ms"})
    assert isinstance(p["passed"], bool)

    o = r["oversized"]
    assert o["big_bytes"] == 1024 * 1024
    for k in ("mqtt311", "mqtt5"):
        _numbers(o[k], {"vm_hwm_before_mb", "vm_hwm_after_mb", "vm_hwm_growth_mb"})
        assert "wrong_state" in o[k]["result_codes"]  # the site still answered
    assert o["mqtt311"]["big_delivered"] is True  # MQTT 3.1.1: only the broker can refuse
    assert o["mqtt5"]["big_delivered"] is False  # Maximum Packet Size at CONNECT

    assert set(r["targets"]) == {"press_p99_under_flood"}
    assert r["all_passed"] == all(r["targets"].values())
