"""Smoke test of bench/bench_fleet.py: a tiny fleet (6 sites, quick, mosquitto, with the
reconnect storm) runs end to end, writes well-formed JSON with the ``headline`` rows the one
table reads, and nothing is lost. No timing thresholds: the figures belong to the
benchmark's own report, not to a test."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.bench_fleet import (
    fleet_kinds,
    nats_mqtt_options,
    no_jitter_schedule,
    peak_per_bucket,
    site_config,
)
from edge.config import SiteConfig
from tests.support.bench import run_bench
from tests.support.brokers import NatsCluster

LATENCY_KEYS = {"n", "p50_ms", "p99_ms", "max_ms", "mean_ms"}
HEADLINE_KEYS = {"name", "value", "unit", "baseline_name", "baseline", "target", "pass"}


def test_fleet_mix_is_the_city_s() -> None:
    kinds = fleet_kinds(1170)
    assert kinds.count("shelter") == 938 and kinds.count("locker") == 232
    six = fleet_kinds(6)
    assert six.count("locker") == 1 and six[-1] == "locker"  # 6 * 232 / 1170 = 1.19


def test_no_jitter_schedule_is_the_full_backoff() -> None:
    # Down at 10, up at 15; delays 1, 2, 4: attempts at 11, 13, 17 -> back at 17.
    assert no_jitter_schedule(10.0, 15.0, 1.0, 120.0) == 17.0
    # Capped at max_s: 1, 2, 2, 2 -> 11, 13, 15.
    assert no_jitter_schedule(10.0, 14.5, 1.0, 2.0) == 15.0
    assert peak_per_bucket([0.01, 0.05, 0.09, 0.15, 1.0]) == 3
    assert peak_per_bucket([]) == 0


def test_nats_mqtt_options_reach_every_node_s_mqtt_block(tmp_path: Path) -> None:
    options = nats_mqtt_options(["consumer_replicas=1", " consumer_memory_storage = true"])
    assert options == {"consumer_replicas": "1", "consumer_memory_storage": "true"}
    cluster = NatsCluster(tmp_path, binary="/bin/true", mqtt_options=options)
    for node in cluster.nodes:
        text = node.config_text()
        mqtt = text[text.index("mqtt {") : text.index("}", text.index("mqtt {"))]
        assert f"listen: {node.host}:{node.port}" in mqtt
        assert "consumer_replicas: 1" in mqtt and "consumer_memory_storage: true" in mqtt
    plain = NatsCluster(tmp_path / "plain", binary="/bin/true").nodes[0].config_text()
    assert "consumer_replicas" not in plain
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        nats_mqtt_options(["consumer_replicas"])


def test_poll_hz_sets_every_locker_bus_and_leaves_shelters_alone(tmp_path: Path) -> None:
    def buses(cfg: dict) -> list[float]:
        site = SiteConfig.model_validate(cfg)  # still a valid site config
        assert site.devices.lockers is not None
        return [bus.poll_hz for bus in site.devices.lockers.buses]

    args = ("mqtt://127.0.0.1:1883", tmp_path, tmp_path / "centre.pub", 5)
    assert buses(site_config("locker", "locker-0001", *args)) == [4.0]  # the example's
    assert buses(site_config("locker", "locker-0001", *args, poll_hz=0.5)) == [0.5]
    shelter = site_config("shelter", "shelter-0001", *args, poll_hz=0.5)
    assert "lockers" not in shelter["devices"]


@pytest.mark.mqtt
def test_quick_fleet_completes_and_writes_json(tmp_path: Path, mosquitto_binary: str) -> None:
    out = tmp_path / "fleet.json"
    stdout, r = run_bench(
        "bench.bench_fleet",
        out,
        [
            "--quick",
            "--broker",
            "mosquitto",
            "--sites",
            "6",
            "--workers",
            "2",
            "--duration-s",
            "3",
            "--press-rate",
            "2",
            "--open-rate",
            "1",
            "--idle-s",
            "0.5",
            "--outage-s",
            "1",
            "--outage-presses",
            "2",
        ],
        timeout=120,
    )
    assert "fleet sites connected" in stdout, stdout

    assert set(r) == {"fleets", "meta", "targets", "all_passed", "headline"}
    assert r["meta"]["quick"] is True
    f = r["fleets"]["mosquitto"]
    assert (f["sites"], f["shelters"], f["lockers"], f["workers"]) == (6, 5, 1, 2)
    assert f["connect"]["connected"] == 6
    assert f["memory"]["rss_per_site_mb"] > 0 and f["memory"]["threads"] > 12

    load = f["load"]
    for k in ("press_to_centre", "command_to_result"):
        assert set(load[k]) >= LATENCY_KEYS, load[k]
    assert load["presses_unmatched"] == 0
    # Every alarm.raised was acknowledged by a signed command with a result.
    assert load["results"] == load["commands_sent"]

    storm = f["storm"]
    assert storm["sites_disconnected"] == 6 and storm["sites_back"] == 6
    assert storm["presses_during_outage"] == 2 and storm["presses_unmatched_after_storm"] == 0
    assert storm["peak_connects_per_100ms"] >= 1
    assert storm["no_jitter_peak_connects_per_100ms"] >= 1

    # Nothing lost: every seq of every site reached the centre.
    acc = f["accounting"]
    assert acc["missing"] == 0 and acc["events_expected"] >= 6 + 2 * 2
    assert acc["event_types"]["site.started"] == 6

    rows = {h["name"]: h for h in r["headline"]}
    for name in (
        "fleet sites connected",
        "fleet events/s",
        "fleet press->centre p99 ms",
        "fleet command->result p99 ms",
        "fleet RSS per site MB",
        "fleet events lost",
        "storm all back s",
        "storm peak connects/100ms",
        "storm outage events lost",
    ):
        assert set(rows[name]) == HEADLINE_KEYS, rows[name]
    for h in r["headline"]:
        assert isinstance(h["name"], str) and isinstance(h["unit"], str)
        assert h["value"] is None or (isinstance(h["value"], float) and math.isfinite(h["value"]))
        assert h["pass"] in (True, False, None)
    assert rows["fleet sites connected"]["pass"] is True
    assert rows["fleet events lost"]["value"] == 0.0 and rows["fleet events lost"]["pass"] is True
    assert rows["fleet events/s"]["pass"] is None  # not judged in quick mode
    assert rows["storm peak connects/100ms"]["baseline_name"] == "without jitter"
    assert r["all_passed"] == all(r["targets"].values())
