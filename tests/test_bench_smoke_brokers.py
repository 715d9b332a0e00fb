"""Smoke test of bench/bench_brokers.py: it runs end to end in quick mode with tiny N on every
broker set-up of the matrix and writes well-formed JSON. No timing thresholds here."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import check_headline
from tests.support.brokers import find_nats_server
from tests.support.mqtt import find_mosquitto

REPO = Path(__file__).resolve().parent.parent
LATENCY_KEYS = {"n", "p50_ms", "p99_ms", "max_ms", "mean_ms"}


def _latency(d: dict[str, Any], n: int) -> None:
    assert set(d) >= LATENCY_KEYS and d["n"] == n, d
    for k in LATENCY_KEYS:
        assert not isinstance(d[k], bool) and math.isfinite(d[k]), (k, d)


def test_quick_broker_matrix_benchmark_completes_and_writes_json(tmp_path: Path) -> None:
    required = os.environ.get("ANSIM_REQUIRE_BROKERS", "").strip().lower() not in {"", "0", "no"}
    if find_mosquitto() is None or find_nats_server() is None:
        if required:
            pytest.fail("ANSIM_REQUIRE_BROKERS is set but mosquitto or nats-server is missing")
        pytest.skip("mosquitto or nats-server not found")
    out = tmp_path / "brokers.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_brokers",
            "--quick",
            "--presses",
            "2",
            "--bare-latency-n",
            "5",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    r = json.loads(out.read_text(encoding="utf-8"))
    assert list(r["setups"]) == ["mosquitto311", "mosquitto5", "nats", "amqtt"]
    for name, s in r["setups"].items():
        _latency(s["bare_latency"], 5)
        _latency(s["press_latency"]["latency"], 2)
        _latency(s["press_latency"]["beyond_debounce"], 2)
        assert s["protocol"] == ("5" if name == "mosquitto5" else "3.1.1")
    assert "press -> subscriber" in proc.stdout and "nats" in proc.stdout
    assert len(check_headline(r["headline"])) == len(r["setups"])
