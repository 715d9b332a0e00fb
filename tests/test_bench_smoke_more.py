"""Smoke tests of bench/bench_lockers.py and bench/bench_escalation.py: each runs end to end
in quick mode with tiny N and writes well-formed JSON with every key. No timing thresholds
here: the figures belong to the benchmarks' own reports, not to a test."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import check_headline
from tests.support.bench import run_bench

pytestmark = pytest.mark.mqtt

LATENCY_KEYS = {"n", "p50_ms", "p99_ms", "max_ms", "mean_ms"}


def _numbers(d: dict[str, Any], keys: set[str]) -> None:
    for k in keys:
        v = d[k]
        assert not isinstance(v, bool) and isinstance(v, int | float), (k, v)
        assert math.isfinite(v), (k, v)


def _latency(d: dict[str, Any], n: int | None = None) -> None:
    assert set(d) >= LATENCY_KEYS, d
    _numbers(d, LATENCY_KEYS)
    if n is not None:
        assert d["n"] == n, d


def _run(module: str, out: Path, *args: str) -> tuple[str, dict[str, Any]]:
    stdout, r = run_bench(module, out, ["--quick", *args], timeout=110)
    assert r["meta"]["quick"] is True
    assert isinstance(r["meta"]["wall_s"], int | float)
    assert all(isinstance(v, bool) for v in r["targets"].values())
    assert r["all_passed"] == all(r["targets"].values())
    return stdout, r


def test_quick_locker_benchmark_completes_and_writes_json(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    stdout, r = _run(
        "bench.bench_lockers",
        tmp_path / "lockers.json",
        "--commands",
        "2",
        "--baseline-n",
        "5",
        "--cpu-window-s",
        "1",
    )
    for row in ("locker.open", "open all 36 doors", "idle CPU", "bare paho", "raw pty"):
        assert row.lower() in stdout.lower(), stdout
    assert set(r) == {
        "meta",
        "baseline",
        "command_latency",
        "open_all",
        "idle_cpu",
        "targets",
        "all_passed",
        "headline",
    }
    assert len(check_headline(r["headline"])) == 3

    b = r["baseline"]
    assert set(b) == {"mqtt_latency", "pty_round_trip", "driver_unlock"}
    _latency(b["mqtt_latency"], 5)
    _latency(b["pty_round_trip"]["write_to_recorded"], 5)
    _latency(b["pty_round_trip"]["write_to_reply_read"], 5)
    _latency(b["driver_unlock"], 5)

    c = r["command_latency"]
    assert c["n"] == 2 and c["pulse_ms"] == 100
    _latency(c["latency"], 2)
    _numbers(c, {"minus_bare_mqtt_p50_ms", "minus_bare_mqtt_p99_ms", "ratio_vs_bare_mqtt_p50"})
    assert c["overlapping_pulses"] == 0

    a = r["open_all"]
    assert a["doors"] == 36 and a["coil_pulses"] == 36  # every door got exactly one pulse
    assert a["overlapping_coils"] == 0 and a["max_concurrent"] == 1
    _numbers(
        a,
        {
            "seconds_to_last_door_opened",
            "seconds_to_first_door_opened",
            "floor_s",
            "ratio_vs_floor",
            "overhead_per_door_ms_mean",
        },
    )
    _latency(a["coil_gap"], 35)

    u = r["idle_cpu"]
    _numbers(
        u,
        {
            "window_s",
            "process_cpu_pct",
            "daemon_cpu_pct",
            "simulator_cpu_pct",
            "other_cpu_pct",
            "idle_python_cpu_pct",
            "status_polls_per_s",
            "target_pct",
        },
    )
    assert u["status_polls_per_s"] > 0  # the daemon was polling its boards in the window
    names = set(u["threads"])
    assert "MainThread" in names and any(n.startswith("cu16-bus[") for n in names), names
    assert isinstance(u["passed"], bool)
    assert set(r["targets"]) == {"daemon_idle_cpu"}


def test_quick_escalation_benchmark_completes_and_writes_json(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    stdout, r = _run(
        "bench.bench_escalation", tmp_path / "esc.json", "--presses", "3", "--driver-n", "2"
    )
    for row in ("first AT of SMS", "modem healthy", "modem stalled", "stalled vs healthy"):
        assert row.lower() in stdout.lower(), stdout
    assert set(r) == {
        "meta",
        "baseline",
        "sms_latency",
        "isolation",
        "targets",
        "all_passed",
        "headline",
    }
    assert len(check_headline(r["headline"])) == 2

    b = r["baseline"]
    assert set(b) == {"modem_pty_round_trip", "driver_send_sms_to_first_at", "mqtt_latency"}
    _latency(b["modem_pty_round_trip"]["write_to_received"], 3)
    _latency(b["modem_pty_round_trip"]["write_to_ok_read"], 3)
    _latency(b["driver_send_sms_to_first_at"], 2)
    _latency(b["mqtt_latency"])

    s = r["sms_latency"]
    assert s["n"] == 3 and s["debounce_ms"] == 0 and s["sms_failed"] == 0
    for k in ("press_to_first_at", "press_to_cmgs", "press_to_sms_submitted"):
        _latency(s[k], 3)
    assert s["events_waiting_in_outbox"] > 0  # the site really was offline

    iso = r["isolation"]
    for k in ("healthy", "stalled", "no_escalation"):
        _latency(iso[k]["latency"], 3)
    assert iso["stalled"]["modem_silent"] is True
    assert iso["stalled"]["escalations_started_at_press"] == 3
    assert iso["stalled"]["sms_sent"] == 0 and iso["healthy"]["sms_sent"] >= 3
    assert iso["stalled"]["modem_commands_received"] >= 1  # the driver was stuck on it
    _numbers(
        iso,
        {
            "stalled_vs_healthy_p50_ratio",
            "stalled_vs_healthy_p99_ratio",
            "stalled_minus_healthy_p99_ms",
            "stalled_vs_no_escalation_p50_ratio",
            "stalled_vs_no_escalation_p99_ratio",
            "target_p50_ratio",
            "target_p99_over_ms",
        },
    )
    assert isinstance(iso["passed"], bool)
    assert set(r["targets"]) == {"core_never_waits_for_modem"}
