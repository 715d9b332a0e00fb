"""Replay: events queued in the durable outbox during an outage drain when the broker returns.

    python -m bench.bench_replay [--events 100000] [--quick] [--json out.json]

Starts its own mosquitto (persistence on, so the centre's session survives a kill) and, in
the same run:

1. baseline: bare paho-mqtt QoS 1 throughput (inflight 100, TCP_NODELAY), one round before
   the outage and one after the drain;
2. a real ``edge.site.Site`` in a child process (nothing else in it: its RSS is the site's)
   goes online and sends a warm-up of events; the broker is SIGKILLed; while it is down the
   site records ``--events`` events (outbox, ``durability: group``); the broker is started
   again on the same port; the time until the independent subscriber (persistent session)
   has every one of them, distinct, gives the drain rate. The child's VmRSS is sampled
   throughout: before queueing, the peak, and after the drain.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    LOGGING,
    REPO,
    RemoteSubscriber,
    add_quick_and_json,
    add_seed_and_keep,
    arg_parser,
    bare_throughput,
    conclude,
    configure_logging,
    headline,
    make_ticks,
    option,
    pause,
    register_ticks,
    report,
    report_table,
    run_meta,
    shelter_config,
    step,
    stop_process,
    tick_job,
    verdict,
    work_dir,
)
from edge.runtime import tune_interpreter
from tests.support.mqtt import Mosquitto
from tests.support.wait import wait_until

TARGET_RSS_GROWTH_MB = 20.0

QUICK = {"events": 2000, "warmup": 200, "bare_n": 2000}
FULL = {"events": 100_000, "warmup": 2000, "bare_n": 100_000}
JOB = 500  # events per core job while filling the outbox
DEPTH = 4  # jobs posted ahead
SITE_ID = "bench-replay"
SESSION = "bench-replay-centre"
TICK_TOPIC = f"/{SITE_ID}/events/bench/tick"
RSS_EVERY_S = 0.02


def site_config(broker_url: str, data_dir: Path, events: int) -> dict[str, Any]:
    # The bound on stored messages (default 100,000) above what is queued here: the
    # overflow policy is not what this measures (the site's own events queue too).
    outbox = {"max_events": max(100_000, events + 10_000)}
    return shelter_config(SITE_ID, broker_url, data_dir, 5, outbox=outbox)


# --------------------------------------------------------------------------- the site child


def site_child(cfg_path: str, log_path: str) -> int:
    """The site, alone in this process. Lines on stdout: ``ready``; ``online T``,
    ``offline T`` (uplink events, time.monotonic()); ``emitted T PENDING`` after ``emit N``;
    ``empty T`` after ``watch-empty`` once the outbox is empty (nothing stored or in flight).
    ``quit`` stops the site."""
    from simulator.hardware import SimHardware
    from tests.support.site import ThreadedSite

    tune_interpreter()
    configure_logging(Path(log_path))
    out_lock = threading.Lock()

    def say(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    cfg = json.loads(Path(cfg_path).read_text(encoding="utf-8"))
    ts = ThreadedSite(cfg, hw=SimHardware(), start=False, keys={})
    site = ts.site
    register_ticks(site)
    watching = [False]

    def empty() -> bool:
        return len(site.store) == 0 and site.outbox.inflight == 0

    connected, disconnected, acked = (
        site.uplink_connected,
        site.uplink_disconnected,
        site.uplink_acked,
    )

    def on_connected() -> None:
        connected()
        say(f"online {time.monotonic():.9f}")

    def on_disconnected(reason: str, dead_link: bool = False) -> None:
        disconnected(reason, dead_link)
        say(f"offline {time.monotonic():.9f}")

    def on_acked(mid: int, ok: bool, reason: str | None = None) -> None:
        acked(mid, ok, reason)
        if watching[0] and empty():
            watching[0] = False
            say(f"empty {time.monotonic():.9f}")

    site.uplink_connected = on_connected  # type: ignore[method-assign]
    site.uplink_disconnected = on_disconnected  # type: ignore[method-assign]
    site.uplink_acked = on_acked  # type: ignore[method-assign]
    ts.start()
    wait_until(
        lambda: bool(ts.call(lambda: site.outbox.online and empty())), 30, 0.01, "site ready"
    )
    say("ready")
    next_i = 0
    credit = threading.Semaphore(DEPTH)

    def watch() -> None:
        if empty():
            say(f"empty {time.monotonic():.9f}")
        else:
            watching[0] = True

    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "quit":
            break
        if parts[0] == "emit":
            n = int(parts[1])
            for start in range(next_i, next_i + n, JOB):
                credit.acquire()
                site.loop.post(
                    tick_job(site, make_ticks(start, min(JOB, next_i + n - start)), credit)
                )
            next_i += n
            pending = ts.call(lambda: len(site.store), timeout=120)  # after every job
            say(f"emitted {time.monotonic():.9f} {pending}")
        elif parts[0] == "watch-empty":
            site.loop.post(watch)
        elif parts[0] == "stats":
            stats = ts.call(
                lambda: {
                    "published": site.outbox.published,
                    "acked": site.outbox.acked,
                    "pending": len(site.store),
                    "last_seq": site.store.last_seq(),
                }
            )
            say("stats " + json.dumps(stats))
    ts.close()
    return 0


class SiteChild:
    """Parent side of the site child: its lines, by first word, as they arrive."""

    def __init__(self, d: Path, cfg: dict[str, Any]) -> None:
        d.mkdir(parents=True, exist_ok=True)
        (d / "site.json").write_text(json.dumps(cfg), encoding="utf-8")
        self.stderr = (d / "child.stderr").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bench_replay",
                "--site-child",
                str(d / "site.json"),
                str(d / "site.log"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=REPO,
            text=True,
            bufsize=1,
        )
        self._seen: dict[str, list[list[str]]] = {}
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="replay-child", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split(maxsplit=1)
            if parts:
                with self._cond:
                    self._seen.setdefault(parts[0], []).append(parts[1:])
                    self._cond.notify_all()
        with self._cond:
            self._seen.setdefault("eof", []).append([])
            self._cond.notify_all()

    def count(self, word: str) -> int:
        with self._cond:
            return len(self._seen.get(word, []))

    def wait(self, word: str, nth: int, timeout: float) -> list[str]:
        """The ``nth`` (1-based) line starting with ``word``: its rest, split."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len(self._seen.get(word, [])) >= nth or "eof" in self._seen, timeout
            )
            if not ok or len(self._seen.get(word, [])) < nth:
                raise TimeoutError(f"site child: no {word!r} #{nth} (see {self.stderr.name})")
            rest = self._seen[word][nth - 1]
        return rest[0].split() if rest else []

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.send("quit")
            self.proc.wait(30)
        except Exception:
            stop_process(self.proc)
        self.stderr.close()


class RssSampler:
    """VmRSS of a process every RSS_EVERY_S on a thread: (time.monotonic(), kB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        path = Path(f"/proc/{self.pid}/status")
        while not self._stop.is_set():
            try:
                text = path.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append((time.monotonic(), int(line.split()[1])))
                    break
            self._stop.wait(RSS_EVERY_S)

    def window(self, t0: float, t1: float) -> list[int]:
        return [kb for t, kb in list(self.samples) if t0 <= t <= t1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def mb(kb: float) -> float:
    return round(kb / 1024, 1)


def settle(seconds: float) -> tuple[float, float]:
    t0 = time.monotonic()
    pause(seconds)
    return t0, time.monotonic()


def store_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("*.db*") if p.is_file())


# --------------------------------------------------------------------------- the run


def replay(b: Mosquitto, sub: RemoteSubscriber, d: Path, n: int, warmup: int) -> dict[str, Any]:
    child = SiteChild(d, site_config(b.url, d / "data", n))
    rss = RssSampler(child.proc.pid)
    try:
        child.wait("ready", 1, 60)
        # Warm-up online: a running site has sent events before the outage.
        sub.arm(warmup, TICK_TOPIC, unique=True)
        child.send(f"emit {warmup}")
        child.wait("emitted", 1, 120)
        sub.wait_done(120)
        child.send("watch-empty")
        child.wait("empty", 1, 60)
        before = settle(1.0)

        step("broker killed (SIGKILL)")
        b.kill()
        t_kill = time.monotonic()
        child.wait("offline", 1, 30)
        step(f"{n} events recorded while the broker is down")
        t_fill = time.monotonic()
        child.send(f"emit {n}")
        t_filled, pending = (float(x) for x in child.wait("emitted", 2, max(600.0, n / 50)))
        filled_rss = settle(0.5)
        db_bytes = store_bytes(d / "data")

        sub.arm(n, TICK_TOPIC, unique=True)
        step("broker started again on the same port")
        t_restart0 = time.monotonic()
        b.start()
        t_restart = time.monotonic()
        online = float(child.wait("online", 2, 60)[0])
        child.send("watch-empty")
        t_first, t_last = sub.wait_done(max(600.0, n / 50))
        dups = sub.duplicates
        t_empty = float(child.wait("empty", 2, 120)[0])
        after = settle(1.0)
        child.send("stats")
        stats = json.loads(" ".join(child.wait("stats", 1, 30)))
    finally:
        rss.stop()
        child.close()

    def avg(window: tuple[float, float]) -> float:
        kb = rss.window(*window)
        return sum(kb) / len(kb)

    rss_before = avg(before)
    rss_filled = avg(filled_rss)
    rss_after = avg(after)
    peak = max(rss.window(t_fill, after[1]))
    drain_s = t_last - online
    return {
        "n": n,
        "warmup_events": warmup,
        "events_per_job": JOB,
        "seconds_offline_before_fill": round(t_fill - t_kill, 3),
        "seconds_filling": round(t_filled - t_fill, 3),
        "events_per_s_filling": round(n / (t_filled - t_fill), 1),
        "pending_after_fill": int(pending),
        "store_bytes_after_fill": db_bytes,
        "seconds_broker_start": round(t_restart - t_restart0, 3),
        # From the broker's start command: the site may be back before b.start() has seen
        # the port answer (measured from then it came out -0.001 s under load).
        "seconds_restart_to_online": round(online - t_restart0, 3),
        "seconds_online_to_first": round(t_first - online, 4),
        "seconds_online_to_last": round(drain_s, 3),
        "seconds_online_to_store_empty": round(t_empty - online, 3),
        "seconds_restart_to_last": round(t_last - t_restart, 3),
        "drain_events_per_s": round(n / drain_s, 1),
        "delivered_distinct": n,
        "duplicates_at_subscriber": dups,
        "site": stats,
        "rss": {
            "before_mb": mb(rss_before),
            "filled_mb": mb(rss_filled),
            "peak_mb": mb(peak),
            "after_mb": mb(rss_after),
            "peak_growth_mb": mb(peak - rss_before),
            "after_growth_mb": mb(rss_after - rss_before),
            "samples": len(rss.samples),
            "every_s": RSS_EVERY_S,
        },
    }


def persistent_broker(d: Path) -> Mosquitto:
    """Unbounded queues for slow subscribers (every message must arrive); persistence, so
    the subscriber's session and its subscription survive the SIGKILL (saved every second)."""
    store = d / "broker-store"
    store.mkdir(parents=True)
    return Mosquitto(
        d / "broker",
        extra_config=(
            f"max_queued_messages 0\npersistence true\npersistence_location {store}/\n"
            "autosave_interval 1"
        ),
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    mode = QUICK if args.quick else FULL
    n = option(args, mode, "events")
    warmup = option(args, mode, "warmup")
    bare_n = option(args, mode, "bare_n")
    results: dict[str, Any] = {}
    with work_dir("ansim-bench-replay-", args.keep) as workdir:
        t_start = time.monotonic()
        b = persistent_broker(workdir)
        try:
            b.start()
            results["meta"] = run_meta(
                b,
                args.quick,
                subscriber="separate process, QoS 1, TCP_NODELAY, persistent session",
                site="separate process (ThreadedSite on SimHardware), durability group",
                broker_persistence="on, autosave every 1 s",
                logging=LOGGING,
            )
            sub = RemoteSubscriber(b.host, b.port, session=SESSION)
            try:
                step(f"baseline throughput, bare paho ({bare_n} messages)")
                bare = [bare_throughput(b.host, b.port, sub, bare_n, True)]
                pause(1.5)  # the broker has saved the subscriber's session by now
                r = replay(b, sub, workdir / "site", n, warmup)
                step(f"baseline throughput again, bare paho ({bare_n} messages)")
                bare.append(bare_throughput(b.host, b.port, sub, bare_n, True))
            finally:
                sub.close()
        finally:
            b.close()
        bare_rate = round(sum(x["msg_per_s"] for x in bare) / len(bare), 1)
        r["bare_msg_per_s"] = bare_rate
        r["bare_rounds_msg_per_s"] = [x["msg_per_s"] for x in bare]
        r["drain_ratio_vs_bare"] = round(r["drain_events_per_s"] / bare_rate, 3)
        r["rss"]["target_growth_mb"] = TARGET_RSS_GROWTH_MB
        r["rss"]["passed"] = r["rss"]["peak_growth_mb"] < TARGET_RSS_GROWTH_MB
        r["nothing_lost"] = r["site"]["pending"] == 0
        results["baseline"] = {"throughput_nodelay": bare}
        results["replay"] = r
    results = conclude(
        results,
        t_start,
        rss_growth=r["rss"]["passed"],
        nothing_lost=r["nothing_lost"],
    )
    results["headline"] = headlines(results)
    return results


def headlines(r: dict[str, Any]) -> list[dict[str, Any]]:
    rp = r["replay"]
    rss = rp["rss"]
    return [
        headline(
            f"replay: {rp['n']:,} queued events drain",
            rp["drain_events_per_s"],
            "ev/s",
            "bare paho QoS 1 throughput",
            rp["bare_msg_per_s"],
        ),
        headline(
            "replay: RSS growth, peak - before queueing",
            rss["peak_growth_mb"],
            "MB",
            "RSS before queueing",
            rss["before_mb"],
            f"< {TARGET_RSS_GROWTH_MB:.0f} MB",
            rss["passed"],
        ),
    ]


def table(r: dict[str, Any]) -> str:
    rp = r["replay"]
    rss = rp["rss"]
    rows = [
        (
            "bare paho QoS1 throughput, NODELAY",
            f"{rp['bare_msg_per_s']:,.0f} msg/s",
            "mean of " + ", ".join(f"{x:,.0f}" for x in rp["bare_rounds_msg_per_s"]),
            "",
            "",
        ),
        (
            f"events recorded, broker down ({rp['n']:,})",
            f"{rp['events_per_s_filling']:,.0f} ev/s",
            f"{rp['pending_after_fill']:,} pending, "
            f"store {rp['store_bytes_after_fill'] / 2**20:.1f} MiB on disk",
            "",
            "",
        ),
        (
            "drain after the broker returns",
            f"{rp['drain_events_per_s']:,.0f} ev/s",
            f"{rp['drain_ratio_vs_bare']:.0%} of bare; online -> last at subscriber "
            f"{rp['seconds_online_to_last']:.2f} s (restart -> online "
            f"{rp['seconds_restart_to_online']:.2f} s)",
            "(measured)",
            "",
        ),
        (
            "every event at the subscriber, distinct",
            f"{rp['delivered_distinct']:,}",
            f"{rp['duplicates_at_subscriber']} duplicates; store empty: {rp['nothing_lost']}",
            "all",
            verdict(rp["nothing_lost"]),
        ),
        (
            "site RSS: before / filled / peak / after",
            f"{rss['before_mb']} / {rss['filled_mb']} / {rss['peak_mb']} / {rss['after_mb']} MB",
            f"growth: peak {rss['peak_growth_mb']:+.1f} MB, after {rss['after_growth_mb']:+.1f} MB",
            f"peak growth < {rss['target_growth_mb']:.0f} MB",
            verdict(rss["passed"]),
        ),
    ]
    return report_table("replay", r["meta"], [f"subscriber: {r['meta']['subscriber']}"], rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser("bench.bench_replay", __doc__)
    p.add_argument("--events", type=int, help="events queued while down (100000; quick 2000)")
    p.add_argument("--warmup", type=int, help="events sent before the outage (2000; quick 200)")
    p.add_argument("--bare-n", type=int, help="messages per bare paho round (100000; quick 2000)")
    add_quick_and_json(p, "small N, under ~20 s")
    add_seed_and_keep(p, seed=False)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--site-child"]:
        return site_child(argv[1], argv[2])
    tune_interpreter()  # as the daemon does
    args = parse_args(argv)
    return report(run(args), table, args.json)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
