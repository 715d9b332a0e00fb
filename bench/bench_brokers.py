"""Press -> subscriber latency of a site on every broker of the matrix, in one run.

    python -m bench.bench_brokers [--presses 200] [--bare-latency-n 500] [--quick] [--json out]

For each broker set-up of the test matrix (tests/conftest.py ``broker_matrix``, issue 9.2):
mosquitto with MQTT 3.1.1 and with MQTT 5, a 3-node NATS JetStream cluster with MQTT on every
node (the site and the bare publisher on node 1, the subscriber on node 2) and the embedded
amqtt broker of ``ansim-edge sim``, it measures, one after the other in this run:

1. baseline: bare paho-mqtt 2.x QoS 1 publish (the set-up's protocol, TCP_NODELAY) -> the
   subscriber, one 96-byte message at a time, on the site's address;
2. press -> subscriber: a real ``edge.site.Site`` on ``SimHardware`` (debounce 5 ms) on the
   same address: panic button pressed -> ``alarm.raised`` at the subscriber, one press at a
   time, the alarm cleared and the outbox drained between presses.

The subscriber is the independent child process of bench/common.py (MQTT 3.1.1, QoS 1,
TCP_NODELAY) on the centre's address. Needs mosquitto and nats-server (as the tests do).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    SUBSCRIBER,
    RemoteSubscriber,
    ShelterSite,
    add_quick_and_json,
    add_seed_and_keep,
    arg_parser,
    bare_latency,
    broker,
    headline,
    option,
    p50_p99,
    report,
    report_table,
    run_meta,
    shelter_devices,
    step,
    summary_ms,
    work_dir,
)
from edge.runtime import tune_interpreter
from tests.support.brokers import AmqttBroker, NatsCluster
from tests.support.wait import wait_until

SETUPS: tuple[tuple[str, str, str], ...] = (
    ("mosquitto311", "mosquitto", "3.1.1"),
    ("mosquitto5", "mosquitto", "5"),
    ("nats", "nats", "3.1.1"),
    ("amqtt", "amqtt", "3.1.1"),
)
QUICK = {"presses": 10, "bare_latency_n": 50}
FULL = {"presses": 200, "bare_latency_n": 500}
DEBOUNCE_MS = 5


@contextlib.contextmanager
def endpoints(kind: str, workdir: Path) -> Iterator[tuple[Any, Any, str]]:
    """(site endpoint, centre endpoint, broker description) of a running set-up."""
    if kind == "mosquitto":
        with broker() as b:
            yield b, b, "mosquitto (max_queued_messages 0)"
    elif kind == "nats":
        cluster = NatsCluster(workdir / "nats")
        try:
            cluster.start()
            yield cluster.node("site"), cluster.node("centre"), "NATS 3-node JetStream cluster"
        finally:
            cluster.close()
    else:
        amqtt = AmqttBroker(workdir / "amqtt")
        try:
            amqtt.start()
            yield amqtt, amqtt, "amqtt (embedded broker of sim)"
        finally:
            amqtt.close()


def site_config(site_id: str, url: str, protocol: str, data_dir: Path) -> dict[str, Any]:
    return {
        "site": {"id": site_id, "address": "서울특별시 중구 세종대로 110", "cameras": ["cam-1"]},
        "broker": {
            "url": url,
            "protocol": protocol,
            "keepalive_s": 30,
            "reconnect": {"min_s": 0.05, "max_s": 0.5},
        },
        "data_dir": str(data_dir),
        "devices": shelter_devices(DEBOUNCE_MS),
    }


def press_latency(
    site_ep: Any, protocol: str, sub: RemoteSubscriber, workdir: Path, name: str, n: int
) -> dict[str, Any]:
    from simulator.hardware import SimHardware

    cfg = site_config(f"bench-{name}", site_ep.url, protocol, workdir / f"site-{name}")
    site = ShelterSite(cfg, SimHardware(), keys={})
    s = site.site
    try:
        wait_until(
            lambda: site.call(lambda: s.outbox.online and len(s.store) == 0),
            60,
            0.005,
            "site online with an empty outbox",
        )

        def one() -> float:
            latency = site.timed_press(sub)
            site.clear(drained=True)
            return latency

        for _ in range(5):  # warm-up
            one()
        samples = [one() for _ in range(n)]
    finally:
        site.close()
    deb = DEBOUNCE_MS / 1000
    return {
        "n": n,
        "debounce_ms": DEBOUNCE_MS,
        "latency": summary_ms(samples),
        "beyond_debounce": summary_ms([x - deb for x in samples]),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    mode = QUICK if args.quick else FULL
    presses = option(args, mode, "presses")
    bare_n = option(args, mode, "bare_latency_n")
    t_start = time.monotonic()
    results: dict[str, Any] = {"setups": {}}
    with work_dir("ansim-bench-brokers-", args.keep) as workdir:
        for name, kind, protocol in SETUPS:
            if args.only and name not in args.only:
                continue
            step(f"{name}: start the broker")
            with endpoints(kind, workdir) as (site_ep, centre_ep, what):
                sub = RemoteSubscriber(
                    centre_ep.host, centre_ep.port, f"{ROOT}/+/events/#", "bench/#"
                )
                try:
                    step(f"{name}: bare paho latency ({bare_n} messages)")
                    bare = bare_latency(site_ep.host, site_ep.port, sub, bare_n, True, protocol)
                    step(f"{name}: press -> subscriber ({presses} presses)")
                    press = press_latency(site_ep, protocol, sub, workdir, name, presses)
                finally:
                    sub.close()
            results["setups"][name] = {
                "broker": what,
                "protocol": protocol,
                "site_to_centre": "node 1 -> node 2" if kind == "nats" else "same broker",
                "bare_latency": bare,
                "press_latency": press,
                "press_over_bare_p50_ms": round(press["latency"]["p50_ms"] - bare["p50_ms"], 3),
            }
    meta = run_meta(
        _Binary(),
        args.quick,
        subscriber=SUBSCRIBER,
        debounce_ms=DEBOUNCE_MS,
        presses=presses,
        bare_latency_n=bare_n,
    )
    results["meta"] = {**meta, "wall_s": round(time.monotonic() - t_start, 1)}
    results["headline"] = headlines(results)
    return results


def headlines(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures ``python -m bench`` puts in its one table: per set-up, press ->
    subscriber p99 beyond the debounce against bare paho's p99 on the same set-up."""
    return [
        headline(
            f"brokers: {name}: press p99 beyond the {DEBOUNCE_MS} ms debounce",
            s["press_latency"]["beyond_debounce"]["p99_ms"],
            "ms",
            "bare paho p99",
            s["bare_latency"]["p99_ms"],
        )
        for name, s in r["setups"].items()
    ]


class _Binary:
    """run_meta names the mosquitto binary's version; the set-ups name their own brokers."""

    @property
    def binary(self) -> str:
        from tests.support.mqtt import find_mosquitto

        return find_mosquitto() or "mosquitto"


def table(r: dict[str, Any]) -> str:
    rows = []
    for name, s in r["setups"].items():
        p = s["press_latency"]
        where = f"{s['protocol']}, {s['site_to_centre']}"
        rows.append(
            (
                f"{name}: press -> subscriber",
                p50_p99(p["latency"]),
                f"bare paho {p50_p99(s['bare_latency'])} ({where})",
                "",
                "",
            )
        )
        rows.append((f"{name}: beyond debounce", p50_p99(p["beyond_debounce"]), "", "", ""))
    notes = [f"{r['meta']['presses']} presses, debounce {r['meta']['debounce_ms']} ms"]
    return report_table("broker matrix", r["meta"], notes, rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser("bench.bench_brokers", __doc__)
    p.add_argument("--presses", type=int, help="presses timed per set-up (default 200)")
    p.add_argument("--bare-latency-n", type=int, help="bare paho messages per set-up (default 500)")
    p.add_argument(
        "--only",
        nargs="+",
        choices=[s[0] for s in SETUPS],
        help="measure only these set-ups",
    )
    add_quick_and_json(p, "10 presses and 50 bare messages per set-up")
    add_seed_and_keep(p, seed=False)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    tune_interpreter()  # as the daemon does; baseline and site share the process
    args = parse_args(argv)
    return report(run(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
