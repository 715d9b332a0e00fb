"""Benchmark of the ansim-edge spine against bare paho-mqtt, in one run, on one broker.

    python -m bench.bench_spine [--presses 1000] [--events 20000] [--quick] [--json out.json]

Starts its own mosquitto on a free port and measures, in the same run:

1. baseline: bare paho-mqtt 2.x QoS 1 (latency one message at a time; throughput with
   inflight 100), with and without TCP_NODELAY on the publisher's socket;
2. press -> subscriber latency through a real ``edge.site.Site`` on ``SimHardware``;
3. sustained events/s through the durable outbox (``durability: group`` and ``per_event``);
4. idle RSS of ``python -m edge.cli sim`` as a child process.

The independent subscriber runs in its own process (as the centre would), so it never
competes with the publisher for the GIL; it stamps every message with ``time.monotonic()``
(system-wide CLOCK_MONOTONIC, comparable across processes). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import math
import os
import platform
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

ROOT = "ansim/v1"
PAYLOAD_BYTES = 96
INFLIGHT = 100

# Targets (see bench/README.md).
TARGET_PRESS_P99_OVER_BARE_MS = 5.0
TARGET_GROUP_RATIO = 0.60
TARGET_RSS_MB = 60.0

QUICK = {"presses": 20, "events": 2000, "bare_latency_n": 200}
FULL = {"presses": 1000, "events": 20000}

_pause = threading.Event()  # never set: .wait(t) is an interruptible sleep


def pause(seconds: float) -> None:
    _pause.wait(seconds)


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.001) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        pause(interval)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "max_ms": round(max(ms), 3) if ms else float("nan"),
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else float("nan"),
    }


def payload_96(i: int) -> bytes:
    head = json.dumps({"seq": i, "site": "bench", "type": "bench.tick", "pad": ""})
    pad = PAYLOAD_BYTES - len(head)
    body = json.dumps({"seq": i, "site": "bench", "type": "bench.tick", "pad": "x" * pad})
    data = body.encode()
    assert len(data) == PAYLOAD_BYTES, len(data)
    return data


def set_nodelay(sock: Any, on: bool) -> None:
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if on else 0)


# --------------------------------------------------------------------------- subscriber child


def subscriber_child(host: str, port: int) -> int:
    """The independent subscriber (own process). Protocol on stdin/stdout, one line each:

    ``arm N SUBSTR`` -> ``armed``; later ``done N T_FIRST T_LAST`` once N messages whose topic
    contains SUBSTR arrived since the arm (times: time.monotonic() at receipt). ``quit``.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    lock = threading.Lock()
    out_lock = threading.Lock()
    state: dict[str, Any] = {"n": 0, "sub": None, "count": 0, "first": 0.0}
    ready = threading.Event()

    def say(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        set_nodelay(c.socket(), True)
        c.subscribe("#", qos=1)

    def on_subscribe(c: Any, u: Any, mid: Any, rcs: Any, p: Any) -> None:
        ready.set()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        t = time.monotonic()
        with lock:
            sub = state["sub"]
            if sub is None or sub not in msg.topic:
                return
            state["count"] += 1
            if state["count"] == 1:
                state["first"] = t
            if state["count"] == state["n"]:
                state["sub"] = None
                say(f"done {state['n']} {state['first']:.9f} {t:.9f}")

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port, 60)
    client.loop_start()
    if not ready.wait(10):
        say("error not subscribed")
        return 1
    say("ready")
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "quit":
            break
        if parts[0] == "stat":
            with lock:
                say(f"count {state['count']} of {state['n']}")
            continue
        if parts[0] == "arm":
            with lock:
                state.update(n=int(parts[1]), sub=parts[2], count=0, first=0.0)
            say("armed")
    client.disconnect()
    client.loop_stop()
    return 0


class RemoteSubscriber:
    """Parent side of the subscriber child."""

    def __init__(self, host: str, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_spine", "--subscriber-child", host, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="bench-sub-reader", daemon=True)
        self._reader.start()
        first = self._get(15)
        if first != "ready":
            raise RuntimeError(f"subscriber child did not start: {first!r}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put("eof")

    def _get(self, timeout: float) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("subscriber child did not answer") from None

    def arm(self, n: int, substr: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"arm {n} {substr}\n")
        self.proc.stdin.flush()
        line = self._get(10)
        if line != "armed":
            raise RuntimeError(f"subscriber child: {line!r}")

    def wait_done(self, timeout: float) -> tuple[float, float]:
        try:
            line = self._get(timeout)
        except TimeoutError:
            assert self.proc.stdin is not None
            self.proc.stdin.write("stat\n")
            self.proc.stdin.flush()
            raise TimeoutError(f"subscriber child: {self._get(5)}") from None
        parts = line.split()
        if parts[:1] != ["done"]:
            raise RuntimeError(f"subscriber child: {line!r}")
        return float(parts[2]), float(parts[3])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --------------------------------------------------------------------------- 1. bare paho


class BareClient:
    def __init__(self, host: str, port: int, nodelay: bool, name: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{name}-{os.getpid()}", protocol=mqtt.MQTTv311
        )
        self.client.max_inflight_messages_set(INFLIGHT)
        self.client.max_queued_messages_set(0)
        self._connected = threading.Event()
        self._acked = 0
        self._target = 0
        self._done = threading.Event()
        self.t_last_ack = 0.0
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.on_publish = self._on_publish
        self.client.connect(host, port, 60)
        set_nodelay(self.client.socket(), nodelay)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("bare client did not connect")

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, p: Any) -> None:
        self._acked += 1
        if self._acked == self._target:
            self.t_last_ack = time.monotonic()
            self._done.set()

    def expect_acks(self, n: int) -> None:
        self._acked = 0
        self._target = n
        self._done.clear()

    def wait_acks(self, timeout: float) -> float:
        if not self._done.wait(timeout):
            raise TimeoutError(f"bare client: {self._acked}/{self._target} PUBACKs")
        return self.t_last_ack

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def bare_latency(host: str, port: int, sub: RemoteSubscriber, n: int, nodelay: bool) -> dict:
    c = BareClient(host, port, nodelay, "bench-lat")
    topic = f"bench/lat/{'nd' if nodelay else 'nagle'}"
    try:
        for i in range(10):  # warm-up
            sub.arm(1, topic)
            c.client.publish(topic, payload_96(i), qos=1)
            sub.wait_done(10)
        samples = []
        for i in range(n):
            sub.arm(1, topic)
            t0 = time.monotonic()
            c.client.publish(topic, payload_96(i), qos=1)
            _, t = sub.wait_done(10)
            samples.append(t - t0)
    finally:
        c.close()
    return {**summary_ms(samples), "tcp_nodelay": nodelay}


def bare_throughput(host: str, port: int, sub: RemoteSubscriber, n: int, nodelay: bool) -> dict:
    c = BareClient(host, port, nodelay, "bench-tput")
    topic = f"bench/tput/{'nd' if nodelay else 'nagle'}"
    payloads = [payload_96(i) for i in range(n)]
    try:
        sub.arm(n, topic)
        c.expect_acks(n)
        t0 = time.monotonic()
        for p in payloads:
            c.client.publish(topic, p, qos=1)
        t_ack = c.wait_acks(120)
        _, t_sub = sub.wait_done(120)
    finally:
        c.close()
    return {
        "n": n,
        "tcp_nodelay": nodelay,
        "inflight": INFLIGHT,
        "payload_bytes": PAYLOAD_BYTES,
        "seconds_to_last_puback": round(t_ack - t0, 4),
        "msg_per_s": round(n / (t_ack - t0), 1),
        "seconds_to_subscriber": round(t_sub - t0, 4),
        "msg_per_s_to_subscriber": round(n / (t_sub - t0), 1),
    }


# --------------------------------------------------------------------------- ansim-edge site


def known_fields(model: str, **values: Any) -> dict[str, Any]:
    """Only the settings this version of edge.config knows (it forbids unknown ones)."""
    from edge import config

    fields = getattr(config, model).model_fields
    return {k: v for k, v in values.items() if k in fields}


def site_config(site_id: str, broker_url: str, data_dir: Path, debounce_ms: int, **outbox: Any):
    return {
        "site": {"id": site_id, "address": "서울특별시 중구 세종대로 110", "cameras": ["cam-1"]},
        "broker": {
            "url": broker_url,
            "keepalive_s": 30,
            "reconnect": {"min_s": 0.05, "max_s": 0.5},
            "max_inflight": INFLIGHT,
        },
        "data_dir": str(data_dir),
        "outbox": outbox,
        "devices": {
            "panic_buttons": [
                {
                    "name": "panic-1",
                    "pin": 17,
                    "contact": "nc",
                    "debounce_ms": debounce_ms,
                    # The benchmark presses ~50 times a second on purpose: switch chatter
                    # detection off where the config has it (it would ignore the presses).
                    **known_fields("PanicButtonConfig", chatter_max=1000, chatter_window_s=0.001),
                }
            ],
            "sent_led": {"pin": 22},
            "ack_led": {"pin": 23},
            "buzzer": {"pin": 24},
            "reset_key": {"pin": 27, "contact": "no", "debounce_ms": debounce_ms},
        },
    }


class BenchSite:
    """A real Site on SimHardware, its core loop on a thread (optionally under cProfile)."""

    def __init__(self, cfg_dict: dict[str, Any], profile: Path | None = None) -> None:
        from edge.config import parse_config
        from edge.site import Site
        from simulator.hardware import SimHardware

        self.hw = SimHardware()
        self.site = Site(parse_config(cfg_dict), self.hw, keys={})
        self.profile = profile
        self._prof: cProfile.Profile | None = None
        self._thread = threading.Thread(target=self._run, name="bench-site", daemon=True)
        self._thread.start()
        wait_for(self._online_and_empty, 15, "site online with an empty outbox", 0.005)

    def _run(self) -> None:
        if self.profile is None:
            self.site.run()
            return
        self._prof = cProfile.Profile()
        self._prof.enable()
        try:
            self.site.run()
        finally:
            self._prof.disable()
            self._prof.dump_stats(str(self.profile))

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.site.call(fn, timeout=30)

    def _online_and_empty(self) -> bool:
        s = self.site
        return bool(self.call(lambda: s.outbox.online and len(s.store) == 0))

    def drained(self) -> bool:
        s = self.site
        return bool(self.call(lambda: len(s.store) == 0 and s.outbox.inflight == 0))

    def stop(self) -> None:
        self.site.stop_soon()
        self._thread.join(15)
        self.hw.close()


def press_latency(
    broker_url: str, sub: RemoteSubscriber, workdir: Path, n: int, debounce_ms: int
) -> dict:
    site_id = "bench-press"
    bs = BenchSite(site_config(site_id, broker_url, workdir / "press", debounce_ms))
    site, hw = bs.site, bs.hw
    shelter = site.shelter
    assert shelter is not None
    button = shelter.buttons["panic-1"].inp
    key = shelter.reset_key
    assert key is not None
    topic = f"{ROOT}/{site_id}/events/alarm.raised"

    def machine_state() -> str:
        return str(bs.call(lambda: shelter.machine.s.state))

    def idle() -> bool:
        def check() -> bool:
            m = shelter.machine.s
            return (
                m.state == "idle"
                and not m.await_release
                and not button.level
                and button.deb.deadline is None
                and not key.level
                and key.deb.deadline is None
                and len(site.store) == 0
                and site.outbox.inflight == 0
            )

        return bool(bs.call(check))

    def diagnose() -> str:
        def snap() -> dict[str, Any]:
            return {
                "machine": shelter.machine.public_state(),
                "await_release": list(shelter.machine.s.await_release),
                "button": [button.level, button.deb.raw, button.deb.deadline],
                "key": [key.level, key.deb.raw, key.deb.deadline],
                "pending": len(site.store),
                "online": site.outbox.online,
            }

        return json.dumps(bs.call(snap), default=str)

    def one_press() -> float:
        sub.arm(1, topic)
        t0 = time.monotonic()
        hw.set_input("panic-1", True)
        try:
            _, t = sub.wait_done(10)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; site: {diagnose()}") from None
        hw.set_input("reset_key", True)
        wait_for(lambda: machine_state() == "idle", 10, "alarm cleared by the reset key")
        hw.set_input("reset_key", False)
        hw.set_input("panic-1", False)
        wait_for(idle, 10, "site idle after a press")
        return t - t0

    try:
        for _ in range(5):  # warm-up
            one_press()
        samples = [one_press() for _ in range(n)]
    finally:
        bs.stop()
    deb = debounce_ms / 1000
    lat = summary_ms(samples)
    beyond = summary_ms([s - deb for s in samples])
    return {"n": n, "debounce_ms": debounce_ms, "latency": lat, "beyond_debounce": beyond}


def outbox_throughput(
    broker_url: str,
    sub: RemoteSubscriber,
    workdir: Path,
    n: int,
    durability: str,
    batch: int,
    depth: int,
    profile: Path | None,
) -> dict:
    site_id = f"bench-{durability.replace('_', '-')}"
    bs = BenchSite(
        site_config(site_id, broker_url, workdir / durability, 5, durability=durability),
        profile=profile,
    )
    site = bs.site
    credit = threading.Semaphore(depth)

    def job(start: int, count: int) -> Callable[[], None]:
        def run() -> None:
            try:
                emit = site.outbox.emit
                for i in range(start, start + count):
                    emit("bench", "bench.tick", {"i": i})
            finally:
                credit.release()

        return run

    try:
        sub.arm(n, f"/{site_id}/events/bench.tick")
        t0 = time.monotonic()
        for start in range(0, n, batch):
            credit.acquire()
            site.loop.post(job(start, min(batch, n - start)))
        t_posted = time.monotonic()
        _, t_sub = sub.wait_done(max(120.0, n / 100))
        wait_for(bs.drained, 60, "outbox empty", 0.002)
        t_empty = time.monotonic()
        stats = bs.call(lambda: {"published": site.outbox.published, "acked": site.outbox.acked})
    finally:
        bs.stop()
    return {
        "n": n,
        "durability": durability,
        "batch_events_per_job": batch,
        "jobs_in_flight": depth,
        "seconds_generating": round(t_posted - t0, 4),
        "seconds_to_subscriber": round(t_sub - t0, 4),
        "events_per_s": round(n / (t_sub - t0), 1),
        "seconds_to_store_empty": round(t_empty - t0, 4),
        "published": stats["published"],
        "acked": stats["acked"],
    }


# --------------------------------------------------------------------------- 4. RSS


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def daemon_rss(broker_url: str, workdir: Path, samples: int, interval_s: float) -> dict:
    d = workdir / "rss"
    d.mkdir(parents=True, exist_ok=True)
    cfg = site_config("bench-rss", broker_url, d / "data", 20)
    cfg_path = d / "site.yaml"
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    port = free_port()
    log = (d / "sim.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "sim",
            "--config",
            str(cfg_path),
            "--broker",
            broker_url,
            "--control",
            f"127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:

        def online_idle() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited {proc.returncode}: see {d / 'sim.log'}")
            try:
                st = http_json(f"http://127.0.0.1:{port}/state")
            except OSError:
                return False
            core = st["site"]
            return bool(core["online"] and core["outbox_pending"] == 0)

        wait_for(online_idle, 30, "daemon online and idle", 0.05)
        pause(0.5)  # let start-up garbage settle; the daemon is idle now
        kb = []
        for _ in range(samples):
            kb.append(vm_rss_kb(proc.pid))
            pause(interval_s)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()

    bare = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, paho.mqtt.client; print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bare.stdout is not None and bare.stdin is not None
        bare.stdout.readline()
        bare_kb = max(vm_rss_kb(bare.pid) for _ in range(3))
        bare.stdin.close()
        bare.wait(5)
    finally:
        if bare.poll() is None:
            bare.kill()
            bare.wait(5)
    return {
        "samples": len(kb),
        "daemon_rss_max_mb": round(max(kb) / 1024, 1),
        "daemon_rss_samples_mb": [round(k / 1024, 1) for k in kb],
        "bare_python_paho_rss_mb": round(bare_kb / 1024, 1),
    }


# --------------------------------------------------------------------------- driver


@contextlib.contextmanager
def broker() -> Iterator[Any]:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from mqtt_helpers import Mosquitto

    # Queue without a bound for slow subscribers (mosquitto drops QoS 1 messages past 1000
    # queued per client by default): every message must reach the subscriber.
    b = Mosquitto(extra_config="max_queued_messages 0")
    try:
        b.start()
        yield b
    finally:
        b.close()


def configure_logging(path: Path) -> None:
    """The daemon's own structlog setup (JSON at info), written to a file, not a terminal."""
    import structlog

    from edge.logs import configure

    configure("info", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=path.open("w")))


def mosquitto_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5).stdout
        return out.splitlines()[0].strip()
    except Exception:
        return "unknown"


def median_round(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round whose ``key`` is the median (lower median for an even count)."""
    ordered = sorted(rounds, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import paho.mqtt

    import edge

    mode = QUICK if args.quick else FULL
    presses = args.presses if args.presses is not None else mode["presses"]
    events = args.events if args.events is not None else mode["events"]
    lat_n = args.bare_latency_n or (QUICK["bare_latency_n"] if args.quick else max(presses, 1000))
    rounds = args.rounds or (1 if args.quick else 3)
    workdir = Path(tempfile.mkdtemp(prefix="ansim-bench-"))
    configure_logging(workdir / "site.log")
    t_start = time.monotonic()
    results: dict[str, Any] = {}
    try:
        with broker() as b:
            host, port, url = b.host, b.port, b.url
            results["meta"] = {
                "quick": bool(args.quick),
                "python": platform.python_version(),
                "paho_mqtt": paho.mqtt.__version__,
                "ansim_edge": edge.__version__,
                "broker": mosquitto_version(b.binary),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
                "subscriber": "separate process, QoS 1, TCP_NODELAY",
                "logging": "daemon structlog config (JSON, info) to a file",
                "throughput_rounds": rounds,
            }
            sub = RemoteSubscriber(host, port)
            try:
                step(f"baseline latency, TCP_NODELAY then Nagle ({lat_n} messages each)")
                lat_nd = bare_latency(host, port, sub, lat_n, True)
                lat_ng = bare_latency(host, port, sub, lat_n, False)
                step(f"baseline throughput, Nagle ({events} messages)")
                tp_ng = bare_throughput(host, port, sub, events, False)

                step(f"press -> subscriber ({presses} presses)")
                pl = press_latency(url, sub, workdir, presses, args.debounce_ms)
                bare_p99 = lat_nd["p99_ms"]
                over = round(pl["beyond_debounce"]["p99_ms"] - bare_p99, 3)
                pl.update(
                    bare_p99_ms=bare_p99,
                    beyond_debounce_p99_minus_bare_p99_ms=over,
                    beyond_debounce_p99_minus_bare_nagle_p99_ms=round(
                        pl["beyond_debounce"]["p99_ms"] - lat_ng["p99_ms"], 3
                    ),
                    target_ms=TARGET_PRESS_P99_OVER_BARE_MS,
                    passed=over <= TARGET_PRESS_P99_OVER_BARE_MS,
                )
                results["press_latency"] = pl

                # Bare and group alternate, so both see the same background load; the
                # verdict is the median of the per-round (paired) ratios.
                bare_rounds: list[dict[str, Any]] = []
                group_rounds: list[dict[str, Any]] = []
                for i in range(rounds):
                    step(f"throughput round {i + 1}/{rounds}: bare paho, then durability=group")
                    bare_rounds.append(bare_throughput(host, port, sub, events, True))
                    g = outbox_throughput(
                        url, sub, workdir / f"r{i}", events, "group", args.batch, args.depth, None
                    )
                    g["ratio_vs_bare"] = round(g["events_per_s"] / bare_rounds[-1]["msg_per_s"], 3)
                    group_rounds.append(g)
                step(f"outbox throughput, durability=per_event ({events} events)")
                pe = outbox_throughput(
                    url, sub, workdir, events, "per_event", args.batch, args.depth, None
                )
                if args.profile is not None:
                    step(f"profiling a further group run (not counted) -> {args.profile}")
                    outbox_throughput(
                        url,
                        sub,
                        workdir / "prof",
                        events,
                        "group",
                        args.batch,
                        args.depth,
                        args.profile,
                    )
            finally:
                sub.close()

            tp_nd = median_round(bare_rounds, "msg_per_s")
            tp_nd["rounds_msg_per_s"] = [r["msg_per_s"] for r in bare_rounds]
            results["baseline"] = {
                "latency_nodelay": lat_nd,
                "latency_no_nodelay": lat_ng,
                "throughput_nodelay": tp_nd,
                "throughput_no_nodelay": tp_ng,
            }
            g = median_round(group_rounds, "events_per_s")
            ratios = sorted(r["ratio_vs_bare"] for r in group_rounds)
            g = {
                **g,
                "rounds_events_per_s": [r["events_per_s"] for r in group_rounds],
                "rounds_ratio_vs_bare": [r["ratio_vs_bare"] for r in group_rounds],
                # verdict figure: median of the paired ratios
                "ratio_vs_bare": ratios[(len(ratios) - 1) // 2],
                "ratio_of_medians": round(g["events_per_s"] / tp_nd["msg_per_s"], 3),
            }
            pe["ratio_vs_bare"] = round(pe["events_per_s"] / tp_nd["msg_per_s"], 3)
            results["outbox"] = {
                "group": g,
                "per_event": pe,
                "bare_msg_per_s": tp_nd["msg_per_s"],
                "target_ratio": TARGET_GROUP_RATIO,
                "passed": g["ratio_vs_bare"] >= TARGET_GROUP_RATIO,
            }

            step("daemon idle RSS")
            rss = daemon_rss(url, workdir, args.rss_samples, 0.2)
            rss.update(target_mb=TARGET_RSS_MB, passed=rss["daemon_rss_max_mb"] < TARGET_RSS_MB)
            results["rss"] = rss
    finally:
        if args.keep:
            print(f"work dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["targets"] = {
        "press_latency": results["press_latency"]["passed"],
        "outbox_group_ratio": results["outbox"]["passed"],
        "daemon_rss": results["rss"]["passed"],
    }
    results["all_passed"] = all(results["targets"].values())
    results["meta"]["wall_s"] = round(time.monotonic() - t_start, 1)
    return results


def step(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


def rounds_txt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:,.0f}" for v in values) + "]"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(r: dict[str, Any]) -> str:
    b = r["baseline"]
    ln, lg = b["latency_nodelay"], b["latency_no_nodelay"]
    tn, tg = b["throughput_nodelay"], b["throughput_no_nodelay"]
    p = r["press_latency"]
    o = r["outbox"]
    g, pe = o["group"], o["per_event"]
    m = r["rss"]
    meta = r["meta"]
    rows = [
        ("figure", "value", "baseline / note", "target", "result"),
        (
            "bare paho QoS1 latency, NODELAY (uplink sets it)",
            f"p50 {ln['p50_ms']:.2f} / p99 {ln['p99_ms']:.2f} ms",
            f"n={ln['n']}",
            "",
            "",
        ),
        (
            "bare paho QoS1 latency, Nagle (no NODELAY)",
            f"p50 {lg['p50_ms']:.2f} / p99 {lg['p99_ms']:.2f} ms",
            f"n={lg['n']}",
            "",
            "",
        ),
        (
            "bare paho QoS1 throughput, NODELAY",
            f"{tn['msg_per_s']:,.0f} msg/s",
            f"median of {rounds_txt(tn['rounds_msg_per_s'])}; {tn['n']} x {tn['payload_bytes']} B, "
            f"inflight {tn['inflight']}, to last PUBACK",
            "",
            "",
        ),
        (
            "bare paho QoS1 throughput, Nagle",
            f"{tg['msg_per_s']:,.0f} msg/s",
            f"one run; to subscriber: {tg['msg_per_s_to_subscriber']:,.0f} msg/s",
            "",
            "",
        ),
        (
            f"press -> subscriber (debounce {p['debounce_ms']} ms)",
            f"p50 {p['latency']['p50_ms']:.2f} / p99 {p['latency']['p99_ms']:.2f} ms",
            f"n={p['n']}",
            "",
            "",
        ),
        (
            "press -> subscriber beyond debounce",
            f"p50 {p['beyond_debounce']['p50_ms']:.2f} / "
            f"p99 {p['beyond_debounce']['p99_ms']:.2f} ms",
            f"p99 - bare p99 = {p['beyond_debounce_p99_minus_bare_p99_ms']:+.2f} ms "
            f"(vs Nagle: {p['beyond_debounce_p99_minus_bare_nagle_p99_ms']:+.2f})",
            f"<= +{p['target_ms']:.0f} ms",
            verdict(p["passed"]),
        ),
        (
            "outbox events/s, durability group",
            f"{g['events_per_s']:,.0f} ev/s",
            f"median of {rounds_txt(g['rounds_events_per_s'])}; paired ratios "
            f"{', '.join(f'{x:.0%}' for x in g['rounds_ratio_vs_bare'])}",
            "",
            "",
        ),
        (
            "outbox group / bare paho (median paired ratio)",
            f"{g['ratio_vs_bare']:.0%}",
            f"ratio of medians {g['ratio_of_medians']:.0%}; store empty after "
            f"{g['seconds_to_store_empty']:.2f} s (median round)",
            f">= {o['target_ratio']:.0%}",
            verdict(o["passed"]),
        ),
        (
            "outbox events/s, durability per_event",
            f"{pe['events_per_s']:,.0f} ev/s",
            f"{pe['ratio_vs_bare']:.0%} of bare; one run",
            "(comparison)",
            "",
        ),
        (
            "daemon idle RSS (edge.cli sim), max",
            f"{m['daemon_rss_max_mb']:.1f} MB",
            f"bare python + paho: {m['bare_python_paho_rss_mb']:.1f} MB; {m['samples']} samples",
            f"< {m['target_mb']:.0f} MB",
            verdict(m["passed"]),
        ),
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    head = (
        f"ansim-edge {meta['ansim_edge']} spine benchmark — {meta['broker']}, "
        f"paho-mqtt {meta['paho_mqtt']}, Python {meta['python']}, {meta['cpus']} CPUs"
        f"{', QUICK' if meta['quick'] else ''}; subscriber: {meta['subscriber']}; "
        f"events {g['n']} in jobs of {g['batch_events_per_job']}; load avg "
        f"{meta['load_avg_1m_at_start']}; {meta['wall_s']} s"
    )
    return head + "\n" + "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_spine", description=__doc__.split("\n")[0]
    )
    p.add_argument("--presses", type=int, help="panic presses to time (default 1000; quick 20)")
    p.add_argument(
        "--events", type=int, help="events through the outbox (default 20000; quick 2000)"
    )
    p.add_argument("--quick", action="store_true", help="small N, well under 20 s")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    p.add_argument("--debounce-ms", type=int, default=5, help="debounce configured (default 5)")
    p.add_argument(
        "--bare-latency-n",
        type=int,
        help="messages for the bare latency baseline (default max(presses, 1000); quick 200)",
    )
    p.add_argument("--batch", type=int, default=50, help="events per core job (default 50)")
    p.add_argument("--depth", type=int, default=4, help="core jobs posted ahead (default 4)")
    p.add_argument(
        "--rounds", type=int, help="bare/group throughput rounds, interleaved (default 3; quick 1)"
    )
    p.add_argument("--rss-samples", type=int, default=5)
    p.add_argument(
        "--profile", type=Path, help="cProfile the core thread in one extra group run, to here"
    )
    p.add_argument("--keep", action="store_true", help="keep the temp work dir (logs, db)")
    p.add_argument("--subscriber-child", nargs=2, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.subscriber_child:
        return subscriber_child(args.subscriber_child[0], int(args.subscriber_child[1]))
    results = run(args)
    print(table(results))
    if args.json is not None:
        text = json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
