"""Benchmark: a panic press under a sustained flood of junk commands, and one oversized
command, each against its baseline measured in the same run, on one broker.

    python -m bench.bench_flood [--presses 300] [--floods 3000:1,20000:0] [--quick]
                                [--json out.json]

Starts its own mosquitto on a free port and measures:

1. baseline: bare paho-mqtt QoS 1 publish -> subscriber latency (TCP_NODELAY);
2. press -> subscriber latency through a real ``edge.site.Site`` on ``SimHardware``, in
   rounds: presses with **no flood**, then presses under each flood of ``--floods`` in turn.
   During a flood a separate process (the attacker, ``--flood-child``) publishes RATE junk
   commands a second at QOS to the site's command topic: a rotation of garbage bytes, JSON
   that is no command, commands from an unknown key and commands naming a trusted key with a
   wrong signature (the dearest refusal: an Ed25519 verification). After each flood the
   broker's backlog for the site drains before the next measurement;
3. peak RSS (VmHWM) of ``python -m edge.cli sim`` as a child process around one oversized
   command (``--big-mib``), under MQTT 3.1.1 and MQTT 5. A small signed command follows the
   big one; its result shows the site is still answering.

The subscriber that times ``alarm.raised`` runs in its own process (subscribed to the
events, not to the flood), as the centre would. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    ROOT,
    RemoteSubscriber,
    ShelterSite,
    SimDaemon,
    add_quick_and_json,
    add_seed_and_keep,
    arg_parser,
    bare_latency,
    bench_main,
    conclude,
    headline,
    option,
    p50_p99,
    pause,
    report_table,
    session,
    shelter_config,
    start_subscriber,
    step,
    stop_process,
    summary_ms,
    verdict,
)
from tests.support.wait import wait_until

# Target (issue 7): a press under a sustained flood of junk commands is published within
# 50 ms p99.
TARGET_FLOOD_P99_MS = 50.0

QUICK = {
    "presses": 10,
    "floods": "1000:0",
    "rounds": 1,
    "warmup_s": 0.5,
    "bare_latency_n": 100,
    "big_mib": 8,
}
FULL = {
    "presses": 300,
    "floods": "3000:1,20000:0",
    "rounds": 2,
    "warmup_s": 2.0,
    "bare_latency_n": 1000,
    "big_mib": 64,
}
JUNK_KINDS = ("garbage", "not_a_command", "unknown_key", "bad_signature")
# The subscriber listens to the sites' events and the bare baseline, not to the flood.
SUBSCRIBER_TOPICS = (f"{ROOT}/+/events/#", "bench/#")


# --------------------------------------------------------------------------- the attacker


def junk_payloads(site_id: str, per_kind: int, rng: random.Random) -> list[bytes]:
    """Junk for ``commands/alarm/clear``, the kinds interleaved: garbage bytes (bad_json),
    JSON that is no command (bad_schema), a command from an unknown key (unknown_key), a
    command naming the trusted key ``centre`` with a random signature (bad_signature)."""
    from edge.core.clock import rfc3339
    from edge.models import Command

    expires = rfc3339(datetime.now(UTC) + timedelta(seconds=300))
    out: list[bytes] = []
    for _ in range(per_kind):
        cmd: dict[str, Any] = {
            "command_id": str(uuid.uuid4()),
            "name": "alarm.clear",
            "args": {"alarm_id": str(uuid.uuid4())},
            "expires_at": expires,
            "key_id": "attacker",
            "sig": rng.randbytes(64).hex(),
        }
        if "site" in Command.model_fields:  # the envelope names its target site
            cmd["site"] = site_id
        out.append(rng.randbytes(200))
        out.append(json.dumps({"hello": "world", "n": rng.random()}).encode())
        out.append(json.dumps(cmd).encode())
        out.append(json.dumps({**cmd, "key_id": "centre", "sig": rng.randbytes(64).hex()}).encode())
    return out


def flood_child(host: str, port: int, site_id: str) -> int:
    """The attacker (own process). stdin/stdout: prints ``ready``; ``go RATE QOS`` starts
    publishing RATE junk commands a second at QOS; ``stop`` stops and prints
    ``sent N SECONDS``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    payloads = junk_payloads(site_id, 250, random.Random(7))
    topic = f"{ROOT}/{site_id}/commands/alarm/clear"
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-flood-{os.getpid()}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_connect = lambda *a: connected.set()
    client.connect(host, port, 60)
    client.loop_start()
    if not connected.wait(10):
        print("error not connected", flush=True)
        return 1
    print("ready", flush=True)
    stop = threading.Event()
    sent = [0, 0.0]

    def flood(rate: float, qos: int) -> None:
        t0 = time.monotonic()
        i = 0
        while not stop.is_set():
            due = int((time.monotonic() - t0) * rate)
            while i < due:
                client.publish(topic, payloads[i % len(payloads)], qos=qos)
                i += 1
            stop.wait(0.001)
        sent[0], sent[1] = i, time.monotonic() - t0

    thread: threading.Thread | None = None
    for line in sys.stdin:
        word, *args = line.split() or [""]
        if word == "go" and thread is None:
            stop.clear()
            rate, qos = float(args[0]), int(args[1])
            thread = threading.Thread(target=flood, args=(rate, qos), name="flood", daemon=True)
            thread.start()
        elif word == "stop" and thread is not None:
            stop.set()
            thread.join()
            thread = None
            print(f"sent {sent[0]} {sent[1]:.6f}", flush=True)
        elif word == "quit":
            break
    client.disconnect()
    client.loop_stop()
    return 0


class Flood:
    """Parent side of the flood child."""

    def __init__(self, host: str, port: int, site_id: str) -> None:
        argv = [sys.executable, "-m", "bench.bench_flood", "--flood-child", host, str(port)]
        argv.append(site_id)
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True, bufsize=1
        )
        self._expect("ready")

    def _say(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def _expect(self, word: str) -> list[str]:
        assert self.proc.stdout is not None
        parts = self.proc.stdout.readline().split()
        if parts[:1] != [word]:
            raise RuntimeError(f"flood child: {parts!r}")
        return parts

    def go(self, rate: float, qos: int) -> None:
        self._say(f"go {rate} {qos}")

    def stop(self) -> tuple[int, float]:
        self._say("stop")
        parts = self._expect("sent")
        return int(parts[1]), float(parts[2])

    def close(self) -> None:
        stop_process(self.proc)


# --------------------------------------------------------------------------- the site


def site_config(site_id: str, broker_url: str, data_dir: Path, keydir: Path) -> dict[str, Any]:
    centre = {"key_id": "centre", "public_key": str(keydir / "centre.pub"), "commands": ["*"]}
    return shelter_config(site_id, broker_url, data_dir, 0, keys=[centre])


class FloodSite(ShelterSite):
    """A real Site on SimHardware that counts the commands it handles (core thread) and,
    where the core loop sheds commands, the ones it shed."""

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        from simulator.hardware import SimHardware

        super().__init__(cfg_dict, SimHardware())
        site = self.site
        self.handled = 0
        inner = site.uplink_message

        def counting(topic: str, payload: bytes) -> None:
            self.handled += 1
            inner(topic, payload)

        site.uplink_message = counting  # type: ignore[method-assign]
        wait_until(lambda: self.call(lambda: site.outbox.online), 15, 0.005, "site online")

    def call(self, fn: Callable[[], Any], timeout: float = 300.0) -> Any:
        # Behind a long core queue (a loop without a separate lane for inputs) an answer
        # can take long: wait for it rather than fail the run.
        return self.site.call(fn, timeout=timeout)

    def shed(self) -> int:
        """Commands the core loop refused to queue so far (0 where it has no bound)."""
        return int(getattr(self.site.loop, "shed_total", 0))

    def queued(self) -> int:
        """Jobs waiting for the core thread right now (both lanes where there are two)."""
        loop: Any = self.site.loop
        n = loop._queue.qsize()
        low = getattr(loop, "_low", None)
        return int(n + (len(low) if low is not None else 0))

    def counts(self) -> tuple[int, int]:
        return int(self.call(lambda: self.handled)), self.shed()

    def press_once(self, sub: RemoteSubscriber, timeout: float) -> float:
        """Press: seconds until ``alarm.raised`` reaches the subscriber; then clear it
        (reset key) and wait until ``alarm.cleared`` has reached the subscriber too."""
        latency = self.timed_press(sub, timeout)
        sub.arm(1, self.alarm_topic.replace("alarm/raised", "alarm/cleared"))
        self.hw.set_input("reset_key", True)
        sub.wait_done(timeout)
        self.hw.set_input("reset_key", False)
        self.hw.set_input("panic-1", False)
        wait_until(lambda: self.idle(False), timeout, 0.001, "site idle after a press")
        return latency


def press_round(
    bs: FloodSite, sub: RemoteSubscriber, n: int, rng: random.Random, timeout: float
) -> tuple[list[float], list[int]]:
    samples: list[float] = []
    queued: list[int] = []
    for _ in range(n):
        pause(rng.uniform(0.0, 0.02))  # a random phase against the core's batches
        queued.append(bs.queued())
        samples.append(bs.press_once(sub, timeout))
    return samples, queued


def flood_round(
    bs: FloodSite,
    flood: Flood,
    spec: tuple[float, int],
    sub: RemoteSubscriber,
    presses: int,
    warmup_s: float,
    rng: random.Random,
    timeout: float,
) -> tuple[list[float], list[int], dict[str, Any]]:
    """Flood on; after ``warmup_s`` time the presses; flood off; wait until every junk
    command the attacker sent has reached the site (handled or shed)."""
    h0, s0 = bs.counts()
    t0 = time.monotonic()
    flood.go(*spec)
    pause(warmup_s)
    samples, queued = press_round(bs, sub, presses, rng, timeout)
    sent, flood_s = flood.stop()
    h1, s1 = bs.counts()
    t1 = time.monotonic()

    def received() -> bool:
        h, s = bs.counts()
        return h - h0 + s - s0 >= sent

    wait_until(received, max(60.0, sent / 200), 0.01, "the flood's backlog drained")
    t_drained = time.monotonic()
    h2, s2 = bs.counts()
    stats = {
        "sent": sent,
        "flood_s": round(flood_s, 3),
        "sent_per_s": round(sent / flood_s, 1),
        "handled_during": h1 - h0,
        "handled_per_s_during": round((h1 - h0) / (t1 - t0), 1),
        "shed_during": s1 - s0,
        "handled_total": h2 - h0,
        "shed_total": s2 - s0,
        "seconds_to_drain_after_stop": round(t_drained - t1, 3),
    }
    wait_until(lambda: bs.idle(True), 120, 0.01, "outbox empty after the flood")
    return samples, queued, stats


def flood_rounds(
    url: str,
    host: str,
    port: int,
    sub: RemoteSubscriber,
    workdir: Path,
    *,
    presses: int,
    floods: list[tuple[float, int]],
    rounds: int,
    warmup_s: float,
    rng: random.Random,
) -> dict[str, Any]:
    """``rounds`` times: presses without a flood, then presses under each flood in turn."""
    site_id = "bench-flood"
    bs = FloodSite(site_config(site_id, url, workdir / "flood", workdir / "keys"))
    flood = Flood(host, port, site_id)
    quiet: list[float] = []
    q_quiet: list[int] = []
    loud: list[dict[str, Any]] = [{"samples": [], "queued": [], "stats": []} for _ in floods]
    # Under the flood a press may wait for the whole core queue: allow for that.
    timeout = 120.0
    try:
        for _ in range(3):  # warm-up
            bs.press_once(sub, timeout)
        for r in range(rounds):
            step(f"round {r + 1}/{rounds}: {presses} presses, no flood")
            s, q = press_round(bs, sub, presses, rng, timeout)
            quiet += s
            q_quiet += q
            for spec, acc in zip(floods, loud, strict=True):
                rate, qos = spec
                step(f"round {r + 1}/{rounds}: {presses} presses under {rate:g}/s junk, QoS {qos}")
                s, q, st = flood_round(bs, flood, spec, sub, presses, warmup_s, rng, timeout)
                acc["samples"] += s
                acc["queued"] += q
                acc["stats"].append(st)
    finally:
        flood.close()
        bs.close()
    no_flood = {"latency": summary_ms(quiet), "queued_at_press": int_summary(q_quiet)}
    out = []
    for (rate, qos), acc in zip(floods, loud, strict=True):
        stats = acc["stats"]
        lat = summary_ms(acc["samples"])
        out.append(
            {
                "rate_target_per_s": rate,
                "qos": qos,
                "latency": lat,
                "vs_no_flood_p50": round(lat["p50_ms"] / no_flood["latency"]["p50_ms"], 2),
                "vs_no_flood_p99": round(lat["p99_ms"] / no_flood["latency"]["p99_ms"], 2),
                "queued_at_press": int_summary(acc["queued"]),
                "rounds": stats,
                "sent": sum(x["sent"] for x in stats),
                "sent_per_s": round(
                    sum(x["sent"] for x in stats) / sum(x["flood_s"] for x in stats), 1
                ),
                "handled_per_s_during": round(
                    sum(x["handled_per_s_during"] for x in stats) / len(stats), 1
                ),
                "shed": sum(x["shed_total"] for x in stats),
                "seconds_to_drain_after_stop": max(x["seconds_to_drain_after_stop"] for x in stats),
            }
        )
    return {
        "presses_per_round": presses,
        "rounds": rounds,
        "warmup_s": warmup_s,
        "junk_kinds": list(JUNK_KINDS),
        "no_flood": no_flood,
        "floods": out,
    }


def int_summary(values: list[int]) -> dict[str, Any]:
    s = sorted(values)
    return {"n": len(s), "p50": s[(len(s) - 1) // 2] if s else 0, "max": s[-1] if s else 0}


# --------------------------------------------------------------------------- oversized


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def signed_clear(keydir: Path, site_id: str) -> bytes:
    """A well-signed ``alarm.clear`` for an idle site: answered ``wrong_state`` (a handler
    refusal, which every version answers one by one)."""
    from edge.core.clock import rfc3339
    from edge.core.signing import load_private_key, sign_command
    from edge.models import Command

    cmd: dict[str, Any] = {
        "command_id": str(uuid.uuid4()),
        "name": "alarm.clear",
        "args": {},
        "expires_at": rfc3339(datetime.now(UTC) + timedelta(seconds=300)),
        "key_id": "centre",
    }
    if "site" in Command.model_fields:
        cmd["site"] = site_id
    return json.dumps(sign_command(cmd, load_private_key(keydir / "centre.key"))).encode()


class Results:
    """Result codes on one site's results topic (a paho client in this process)."""

    def __init__(self, host: str, port: int, site_id: str) -> None:
        self.lock = threading.Lock()
        self.codes: list[str | None] = []
        topic = f"{ROOT}/{site_id}/results"
        self.client, ready = start_subscriber(
            host, port, topic, f"bench-results-{os.getpid()}", self._on_message
        )
        if not ready.wait(10):
            raise RuntimeError("results subscriber not subscribed")

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        r = json.loads(msg.payload)
        with self.lock:
            self.codes.append((r.get("error") or {}).get("code"))

    def seen(self) -> list[str | None]:
        with self.lock:
            return list(self.codes)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def oversized_one(
    url: str, host: str, port: int, workdir: Path, protocol: str, big: bytes
) -> dict[str, Any]:
    site_id = f"bench-big-{protocol.replace('.', '')}"
    d = workdir / site_id
    cfg = site_config(site_id, url, d / "data", workdir / "keys")
    cfg["broker"]["protocol"] = protocol
    results = Results(host, port, site_id)
    daemon = SimDaemon(d, cfg, url, ["-m", "edge.cli"])
    try:
        daemon.wait_online_idle()
        pause(0.5)
        before_kb = vm_kb(daemon.proc.pid, "VmHWM")
        topic = f"{ROOT}/{site_id}/commands/alarm/clear"
        results.client.publish(topic, big, qos=1)
        results.client.publish(topic, signed_clear(workdir / "keys", site_id), qos=1)
        wait_until(lambda: "wrong_state" in results.seen(), 60, 0.01, "the small command's result")
        pause(0.5)  # a late too_large result would arrive meanwhile
        after_kb = vm_kb(daemon.proc.pid, "VmHWM")
        codes = results.seen()
    finally:
        daemon.close()
        results.close()
    return {
        "vm_hwm_before_mb": round(before_kb / 1024, 1),
        "vm_hwm_after_mb": round(after_kb / 1024, 1),
        "vm_hwm_growth_mb": round((after_kb - before_kb) / 1024, 1),
        "big_delivered": "too_large" in codes,
        "result_codes": codes,
    }


def oversized(url: str, host: str, port: int, workdir: Path, big_mib: int) -> dict[str, Any]:
    """Per protocol: the sim daemon's VmHWM before and after one command of ``big_mib``
    MiB followed by a small signed command, and which results came back."""
    out: dict[str, Any] = {"big_bytes": big_mib * 1024 * 1024}
    big = b"x" * out["big_bytes"]
    for protocol in ("3.1.1", "5"):
        step(f"one {big_mib} MiB command, MQTT {protocol}")
        out[f"mqtt{protocol.replace('.', '')}"] = oversized_one(
            url, host, port, workdir, protocol, big
        )
    return out


# --------------------------------------------------------------------------- driver


def parse_floods(text: str) -> list[tuple[float, int]]:
    """``RATE:QOS,...`` (QoS 0 or 1), e.g. ``3000:1,20000:0``."""
    out = []
    for part in text.split(","):
        rate, _, qos = part.strip().partition(":")
        if float(rate) <= 0 or qos not in ("0", "1"):
            raise argparse.ArgumentTypeError(f"bad flood {part!r}: want RATE:QOS, QoS 0 or 1")
        out.append((float(rate), int(qos)))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    mode = QUICK if args.quick else FULL
    presses = option(args, mode, "presses")
    floods = parse_floods(option(args, mode, "floods"))
    rounds = option(args, mode, "rounds")
    warmup_s = option(args, mode, "warmup_s")
    lat_n = option(args, mode, "bare_latency_n")
    big_mib = option(args, mode, "big_mib")
    rng = random.Random(args.seed)
    results: dict[str, Any] = {}
    with session(
        "ansim-bench-fl-",
        args,
        SUBSCRIBER_TOPICS,
        subscriber="separate process, QoS 1, TCP_NODELAY, " + " ".join(SUBSCRIBER_TOPICS),
        attacker="separate process, paho",
    ) as s:
        from edge.core.signing import generate_keypair

        b, workdir, t_start = s.broker, s.workdir, s.t_start
        results["meta"] = s.meta
        (workdir / "keys").mkdir()
        generate_keypair(workdir / "keys" / "centre.key", workdir / "keys" / "centre.pub")
        step(f"baseline latency, bare paho ({lat_n} messages)")
        bare = bare_latency(b.host, b.port, s.sub, lat_n, True)
        results["baseline"] = {"mqtt_latency": bare}
        fl = flood_rounds(
            b.url,
            b.host,
            b.port,
            s.sub,
            workdir,
            presses=presses,
            floods=floods,
            rounds=rounds,
            warmup_s=warmup_s,
            rng=rng,
        )
        worst = max(f["latency"]["p99_ms"] for f in fl["floods"])
        fl.update(worst_flood_p99_ms=worst, target_p99_ms=TARGET_FLOOD_P99_MS, passed=worst <= 50.0)
        results["press_latency"] = fl
        results["oversized"] = oversized(b.url, b.host, b.port, workdir, big_mib)
    results = conclude(results, t_start, press_p99_under_flood=results["press_latency"]["passed"])
    results["headline"] = headlines(results)
    return results


def headlines(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures ``python -m bench`` puts in its one table."""
    pl, big = r["press_latency"], r["oversized"]
    quiet = pl["no_flood"]["latency"]
    out = [
        headline(
            "flood: press -> subscriber p99, no flood",
            quiet["p99_ms"],
            "ms",
            "bare paho p99",
            r["baseline"]["mqtt_latency"]["p99_ms"],
        )
    ]
    for f in pl["floods"]:
        out.append(
            headline(
                f"flood: press p99 under {f['rate_target_per_s']:g}/s junk, QoS {f['qos']}",
                f["latency"]["p99_ms"],
                "ms",
                "no flood p99",
                quiet["p99_ms"],
                f"<= {pl['target_p99_ms']:g} ms",
                f["latency"]["p99_ms"] <= pl["target_p99_ms"],
            )
        )
    for key, label in (("mqtt311", "MQTT 3.1.1"), ("mqtt5", "MQTT 5")):
        o = big[key]
        out.append(
            headline(
                f"flood: peak RSS growth, one {big['big_bytes'] >> 20} MiB command, {label}",
                o["vm_hwm_growth_mb"],
                "MB",
                "peak RSS before",
                o["vm_hwm_before_mb"],
            )
        )
    return out


def table(r: dict[str, Any]) -> str:
    base = r["baseline"]["mqtt_latency"]
    p = r["press_latency"]
    q = p["no_flood"]
    o = r["oversized"]
    o3, o5 = o["mqtt311"], o["mqtt5"]
    mib = o["big_bytes"] // (1024 * 1024)

    def big(x: dict[str, Any]) -> str:
        what = "delivered, refused too_large" if x["big_delivered"] else "never delivered"
        return f"{what}; results {x['result_codes']}"

    def queued(x: dict[str, Any]) -> str:
        return f"core queue at press p50 {x['p50']}, max {x['max']}"

    rows = [
        ("bare paho QoS1 pub -> sub, NODELAY", p50_p99(base), f"n={base['n']}", "", ""),
        (
            "press -> subscriber, no flood",
            p50_p99(q["latency"]),
            f"n={q['latency']['n']}; {queued(q['queued_at_press'])}",
            "(baseline)",
            "",
        ),
    ]
    for f in p["floods"]:
        rows += [
            (
                f"press -> subscriber, {f['rate_target_per_s']:g}/s junk, QoS {f['qos']}",
                p50_p99(f["latency"]),
                f"n={f['latency']['n']}; x{f['vs_no_flood_p50']:.2f} p50, "
                f"x{f['vs_no_flood_p99']:.2f} p99 vs no flood; {queued(f['queued_at_press'])}",
                f"p99 <= {p['target_p99_ms']:.0f} ms",
                verdict(f["latency"]["p99_ms"] <= p["target_p99_ms"]),
            ),
            (
                "  that flood",
                f"{f['sent_per_s']:,.0f} sent/s",
                f"site handled {f['handled_per_s_during']:,.0f} cmd/s during it; shed "
                f"{f['shed']:,} of {f['sent']:,}; backlog drained "
                f"{f['seconds_to_drain_after_stop']:.2f} s after the stop",
                "(report)",
                "",
            ),
        ]
    rows += [
        (
            f"one {mib} MiB command, MQTT 3.1.1: VmHWM",
            f"+{o3['vm_hwm_growth_mb']:.1f} MB",
            f"{o3['vm_hwm_before_mb']:.1f} -> {o3['vm_hwm_after_mb']:.1f} MB; {big(o3)}",
            "(report)",
            "",
        ),
        (
            f"one {mib} MiB command, MQTT 5: VmHWM",
            f"+{o5['vm_hwm_growth_mb']:.1f} MB",
            f"{o5['vm_hwm_before_mb']:.1f} -> {o5['vm_hwm_after_mb']:.1f} MB; {big(o5)}",
            "(report)",
            "",
        ),
    ]
    notes = [f"subscriber: {r['meta']['subscriber']}", f"attacker: {r['meta']['attacker']}"]
    return report_table("flood", r["meta"], notes, rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser("bench.bench_flood", __doc__)
    p.add_argument("--presses", type=int, help="presses per round and condition (300; quick 10)")
    p.add_argument(
        "--floods",
        help="floods to press under, RATE:QOS,... (3000:1,20000:0; quick 1000:0)",
    )
    p.add_argument("--rounds", type=int, help="rounds of no flood + each flood (2; quick 1)")
    p.add_argument("--warmup-s", type=float, help="flood before the first timed press (2; 0.5)")
    p.add_argument("--bare-latency-n", type=int, help="bare paho baseline messages (1000; 100)")
    p.add_argument("--big-mib", type=int, help="size of the oversized command, MiB (64; quick 8)")
    add_quick_and_json(p, "small N, under ~30 s")
    add_seed_and_keep(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--flood-child"]:
        return flood_child(argv[1], int(argv[2]), argv[3])
    return bench_main(argv, parse_args, run, table)


if __name__ == "__main__":
    sys.exit(main())
