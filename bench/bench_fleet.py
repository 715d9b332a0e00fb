"""A city-sized fleet of simulated sites on one broker: throughput, latency, memory, CPU and
a reconnect storm (issue 12, parts 1-3).

    python -m bench.bench_fleet [--sites 1170] [--quick] [--broker mosquitto|nats|both]
                                [--json out.json] ...

N sites (the shelter and locker examples of config/examples mixed like the city: 938
shelters to 232 locker banks), each a real ``edge.site.Site`` on ``SimHardware`` with its
own site id, data dir (SQLite store) and MQTT client, run as ``tests.support.site.
ThreadedSite`` objects in a few worker processes (``--workers``). A centre process
subscribes to every site's events and results, acknowledges every ``alarm.raised`` with a
signed ``alarm.ack`` and opens lockers with signed ``locker.open`` commands. The load:
Poisson panic presses on the shelters (each cleared by the reset key later), locker opens
by the centre (each door shut again by the worker a second later).

Per broker it measures: sites connected, events/s delivered to the centre, press -> centre
p50/p99, command -> result p50/p99, RSS per site, CPU of workers, centre and broker, threads,
and that nothing was lost (every ``seq`` of every site at the centre). Against mosquitto it
then restarts the broker under the fleet (the reconnect storm): time until every site is
back, peak connects per 100 ms against the same sites' reconnect schedule without jitter,
and no event lost (events raised during the outage arrive, ``seq`` gapless per site).

Internal modes: ``--worker`` (holds sites; JSON lines on stdin/stdout) and ``--centre HOST
PORT KEY`` (the centre). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import os
import queue
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
    add_quick_and_json,
    add_seed_and_keep,
    arg_parser,
    conclude,
    option,
    pause,
    pct,
    proc_stats,
    report,
    report_table,
    run_meta,
    step,
    summary_ms,
    verdict,
    work_dir,
)

CITY_SHELTERS = 938
CITY_LOCKERS = 232
CITY = CITY_SHELTERS + CITY_LOCKERS
SHELTER_EXAMPLE = REPO / "config" / "examples" / "shelter.yaml"
LOCKER_EXAMPLE = REPO / "config" / "examples" / "locker.yaml"
GPIO_LOCKERS = (33, 34, 35, 36)  # the locker example's GPIO lockers: the centre opens these
BUCKET_S = 0.1  # connects are counted per 100 ms

QUICK: dict[str, Any] = {
    "sites": 12,
    "sites_per_worker": 6,
    "duration_s": 8.0,
    "press_rate": 3.0,
    "open_rate": 1.0,
    "idle_s": 2.0,
    "outage_s": 2.0,
    "outage_presses": 4,
}
FULL: dict[str, Any] = {
    "sites": CITY,
    "sites_per_worker": 100,
    "duration_s": 60.0,
    "press_rate": 20.0,
    "open_rate": 5.0,
    "idle_s": 10.0,
    "outage_s": 5.0,
    "outage_presses": 100,
}
TARGET_EVENTS_S = 50.0  # full runs only: the quick fleet is too small to carry it
TARGET_P99_MS = 100.0
PRESS_S = 0.3  # a panic button is held this long (the alarm latches)
CLEAR_S = 1.5  # the reset key clears the alarm this long after the press
KEY_S = 0.2  # and is held this long
DOOR_OPEN_S = 1.0  # a door opened by the centre is shut again this long after


# --------------------------------------------------------------------------- the fleet


def fleet_kinds(n: int) -> list[str]:
    """``n`` site kinds mixed like the city (938 shelters : 232 lockers), spread evenly:
    site i is a locker when the running share of lockers steps up at i."""
    return [
        "locker" if (i + 1) * CITY_LOCKERS // CITY > i * CITY_LOCKERS // CITY else "shelter"
        for i in range(n)
    ]


def site_config(
    kind: str,
    site_id: str,
    url: str,
    data_dir: Path,
    centre_pub: Path,
    debounce_ms: int,
    poll_hz: float | None = None,
) -> dict[str, Any]:
    """The example config of ``kind`` for one site of the fleet: its own id, data dir and
    broker address, the centre's key. The shelter's modem (and its escalation) is left out:
    its pty simulator would add two threads per site, and it is the alarm's second channel,
    not the MQTT path measured here. Inputs are debounced at ``debounce_ms`` (as the other
    benchmarks do), so the press latency is the spine's, not the debounce's. ``poll_hz``:
    the locker's board buses poll at this rate instead of the example's (4 per board)."""
    import yaml

    raw = yaml.safe_load((SHELTER_EXAMPLE if kind == "shelter" else LOCKER_EXAMPLE).read_text())
    raw["site"]["id"] = site_id
    raw["broker"]["url"] = url
    raw["data_dir"] = str(data_dir)
    raw["keys"] = [{"key_id": "centre", "public_key": str(centre_pub), "commands": ["*"]}]
    devices = raw["devices"]
    if kind == "shelter":
        devices.pop("modem", None)
        raw.pop("escalation", None)
        for button in devices["panic_buttons"]:
            button["debounce_ms"] = debounce_ms
        devices["reset_key"]["debounce_ms"] = debounce_ms
    elif poll_hz is not None:
        for bus in devices["lockers"]["buses"]:
            bus["poll_hz"] = poll_hz
    return dict(raw)


class NoJitter(random.Random):
    """The reconnect backoff without jitter: ``uniform(a, b)`` is always ``b`` (the full
    delay min(max_s, min_s * 2**attempt)), as a site without jitter would wait."""

    def uniform(self, a: float, b: float) -> float:
        return b


def no_jitter_schedule(
    down_at: float, up_at: float, min_s: float, max_s: float, attempts: int = 40
) -> float:
    """When a site that lost its link at ``down_at`` reconnects without jitter to a broker
    accepting again from ``up_at``: its attempts come at down_at + d0, + d0 + d1, ...
    (d_k = min(max_s, min_s * 2**k)); the first one at or after ``up_at`` succeeds."""
    t = down_at
    for k in range(attempts):
        t += min(max_s, min_s * 2 ** min(k, 30))
        if t >= up_at:
            return float(t)
    return float(t)


def peak_per_bucket(times: list[float], bucket_s: float = BUCKET_S) -> int:
    counts: dict[int, int] = {}
    for t in times:
        b = math.floor(t / bucket_s)
        counts[b] = counts.get(b, 0) + 1
    return max(counts.values()) if counts else 0


# --------------------------------------------------------------------------- worker process


class Worker:
    """Worker side (``--worker``): holds sites, presses buttons, shuts doors, answers the
    parent's JSON-line requests on stdin/stdout."""

    def __init__(self) -> None:
        self.sites: dict[str, Any] = {}  # id -> ThreadedSite
        self.kinds: dict[str, str] = {}
        self.connects: dict[str, list[float]] = {}  # id -> monotonic times of uplink_connected
        self.disconnects: dict[str, list[float]] = {}
        self.presses: dict[str, list[float]] = {}  # id -> monotonic press times
        self.busy: set[str] = set()  # shelters in a press cycle
        self.skipped = 0  # presses that found no idle shelter
        self._lock = threading.Lock()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._order = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._driver = threading.Thread(target=self._drive, name="fleet-driver", daemon=True)
        self._driver.start()

    # ---- the driver thread: timed actions ----
    def at(self, t: float, fn: Callable[[], None]) -> None:
        with self._lock:
            self._order += 1
            heapq.heappush(self._timers, (t, self._order, fn))
        self._wake.set()

    def _drive(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                due = self._timers[0][0] if self._timers else None
            now = time.monotonic()
            if due is None or due > now:
                self._wake.wait(0.5 if due is None else due - now)
                self._wake.clear()
                continue
            with self._lock:
                _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception as exc:  # a bench action must not end the driver
                print(json.dumps({"op": "warning", "error": repr(exc)}), file=sys.stderr)

    # ---- building ----
    def build(self, req: dict[str, Any]) -> dict[str, Any]:
        import edge.core.uplink
        import edge.site
        from bench.common import configure_logging
        from tests.support.site import ThreadedSite

        configure_logging(Path(req["log"]))
        sys.setswitchinterval(req["switch_interval_s"])
        # Fewer idle wake-ups per site (the daemon's 0.2 s each): see bench/README.md.
        edge.site.IDLE_WAIT_S = req["idle_wait_s"]
        edge.core.uplink.LOOP_S = req["net_loop_s"]
        rss0 = proc_stats(os.getpid())
        t0 = time.monotonic()
        for spec in req["sites"]:
            sid = spec["id"]
            cfg = site_config(
                spec["kind"],
                sid,
                spec["url"],
                Path(spec["data_dir"]),
                Path(req["centre_pub"]),
                req["debounce_ms"],
                req["poll_hz"],
            )
            rng = NoJitter() if not req["jitter"] else random.Random(spec["seed"])
            ts = ThreadedSite(cfg, rng=rng, start=False)
            self._watch_link(sid, ts)
            if spec["kind"] == "locker":
                self._watch_doors(sid, ts)
            self.sites[sid] = ts
            self.kinds[sid] = spec["kind"]
            self.presses[sid] = []
            ts.start()
        return {
            "op": "built",
            "build_s": round(time.monotonic() - t0, 3),
            "before": rss0,
            "after": proc_stats(os.getpid()),
        }

    def _watch_link(self, sid: str, ts: Any) -> None:
        """Note when the site's core thread hears of each connect and disconnect (wrapping
        the listener methods the uplink posts; the site itself is unchanged)."""
        site = ts.site
        connects = self.connects.setdefault(sid, [])
        disconnects = self.disconnects.setdefault(sid, [])
        on_connected, on_disconnected = site.uplink_connected, site.uplink_disconnected

        def connected() -> None:
            connects.append(time.monotonic())
            on_connected()

        def disconnected(reason: str, dead_link: bool = False) -> None:
            disconnects.append(time.monotonic())
            on_disconnected(reason, dead_link)

        site.uplink_connected = connected
        site.uplink_disconnected = disconnected

    def _watch_doors(self, sid: str, ts: Any) -> None:
        """A GPIO door the centre opened is shut again DOOR_OPEN_S later (a person takes
        the parcel and closes the door)."""
        hw = ts.hw
        for gl in ts.site.cfg.devices.lockers.gpio:
            name, locker = f"door-{gl.locker}", gl.locker
            pin = hw.factory.pin(gl.door_pin)

            def changed(level: bool, name: str = name, locker: int = locker) -> None:
                def shut() -> None:
                    if not hw.snapshot()["inputs"][name]["active"]:  # active: shut
                        hw.set_gpio_door(locker, False)

                self.at(time.monotonic() + DOOR_OPEN_S, shut)

            pin.observers.append(changed)

    def online(self) -> dict[str, Any]:
        """How many sites are connected (and, for lockers, have read every door)."""
        n = 0
        for sid, ts in self.sites.items():
            if not ts.site.uplink.connected:
                continue
            if self.kinds[sid] == "locker" and not ts.doors_known():
                continue
            n += 1
        return {"op": "online", "online": n, "sites": len(self.sites)}

    # ---- load ----
    def press(self, sid: str) -> None:
        """One press cycle: press, let go after PRESS_S; the reset key clears the alarm at
        CLEAR_S (the centre has acknowledged it by then)."""
        ts = self.sites[sid]
        button = ts.site.cfg.devices.panic_buttons[0].name
        with self._lock:
            self.busy.add(sid)
        t0 = time.monotonic()
        self.presses[sid].append(t0)
        ts.hw.set_input(button, True)

        def release() -> None:
            ts.hw.set_input(button, False)

        def key_on() -> None:
            ts.hw.set_input("reset_key", True)

        def key_off() -> None:
            ts.hw.set_input("reset_key", False)

        def idle_again() -> None:
            with self._lock:
                self.busy.discard(sid)

        self.at(t0 + PRESS_S, release)
        self.at(t0 + CLEAR_S, key_on)
        self.at(t0 + CLEAR_S + KEY_S, key_off)
        self.at(t0 + CLEAR_S + KEY_S + 0.3, idle_again)  # past the key's debounce

    def pick_idle(self, rng: random.Random) -> str | None:
        with self._lock:
            idle = [s for s, k in self.kinds.items() if k == "shelter" and s not in self.busy]
        return rng.choice(idle) if idle else None

    def load(self, req: dict[str, Any]) -> dict[str, Any]:
        """Poisson presses at ``rate``/s for ``duration_s`` on idle shelters (``count``
        instead: that many presses at once, e.g. during an outage); returns when every
        cycle has ended."""
        rng = random.Random(req["seed"])
        start = time.monotonic()
        pressed = 0
        if req.get("count") is not None:
            for _ in range(req["count"]):
                sid = self.pick_idle(rng)
                if sid is None:
                    self.skipped += 1
                    continue
                self.press(sid)
                pressed += 1
        else:
            rate, end = req["rate"], start + req["duration_s"]
            t = start + (rng.expovariate(rate) if rate > 0 else req["duration_s"])
            while t < end:
                pause(max(0.0, t - time.monotonic()))
                sid = self.pick_idle(rng)
                if sid is None:
                    self.skipped += 1
                else:
                    self.press(sid)
                    pressed += 1
                t += rng.expovariate(rate)
            pause(max(0.0, end - time.monotonic()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self._lock:
                if not self.busy:
                    break
            pause(0.05)
        return {"op": "loaded", "pressed": pressed, "skipped": self.skipped}

    # ---- looking ----
    def drained(self) -> dict[str, Any]:
        """Sites whose outbox is not empty yet (and how much waits)."""
        pending = 0
        sites = 0
        for ts in self.sites.values():
            n = len(ts.site.store)  # a read of a counter: the bench may race the core thread
            if n:
                pending += n
                sites += 1
        return {"op": "drained", "pending": pending, "sites": sites}

    def report(self, seqs: bool) -> dict[str, Any]:
        """Presses, connects, disconnects; with ``seqs`` each site's last seq (a call into
        every core thread: only at the end, not while polling)."""
        last_seq = (
            {sid: ts.call(ts.site.store.last_seq) for sid, ts in self.sites.items()} if seqs else {}
        )
        return {
            "op": "report",
            "last_seq": last_seq,
            "presses": self.presses,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "stats": proc_stats(os.getpid()),
        }

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        errors = []
        for ts in self.sites.values():
            ts.site.stop_soon(flush_s=0.0)
        for sid, ts in self.sites.items():
            try:
                ts.close()
            except Exception as exc:
                errors.append(f"{sid}: {exc!r}")
        if errors:
            print(json.dumps({"op": "warning", "errors": errors[:5]}), file=sys.stderr)


def worker_main() -> int:
    w = Worker()

    def say(msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    say({"op": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        op = req["op"]
        if op == "build":
            say(w.build(req))
        elif op == "online":
            say(w.online())
        elif op == "load":
            say(w.load(req))
        elif op == "drained":
            say(w.drained())
        elif op == "stats":
            say({"op": "stats", **proc_stats(os.getpid())})
        elif op == "report":
            say(w.report(bool(req.get("seqs"))))
        elif op == "stop":
            w.close()
            say({"op": "stopped"})
            break
    return 0


# --------------------------------------------------------------------------- centre process


class Centre:
    """The centre (``--centre``): one paho client (persistent session) subscribed to every
    site's events and results. Every ``alarm.raised`` gets a signed ``alarm.ack`` at once;
    ``open`` sends signed ``locker.open`` commands to locker sites at a rate."""

    def __init__(self, host: str, port: int, key_path: Path) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from bench.common import set_nodelay
        from edge.core.signing import load_private_key

        self.key = load_private_key(key_path)
        self.lock = threading.Lock()
        self.seqs: dict[str, list[int]] = {}
        self.raised: dict[str, list[float]] = {}
        self.event_times: list[float] = []
        self.types: dict[str, int] = {}
        self.sent: dict[str, tuple[str, float]] = {}  # command_id -> (name, monotonic)
        self.results: list[dict[str, Any]] = []
        self.connects: list[float] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="fleet-centre", clean_session=False
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 1)  # paho takes whole seconds

        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            set_nodelay(c.socket(), True)
            self.connects.append(time.monotonic())
            c.subscribe([(f"{ROOT}/+/events/#", 1), (f"{ROOT}/+/results", 1)])

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self.on_message
        self.client.connect(host, port, 30)
        self.client.loop_start()

    def command(self, site: str, name: str, args: dict[str, Any]) -> None:
        from edge.core.clock import rfc3339
        from edge.core.signing import sign_command

        cmd = sign_command(
            {
                "command_id": str(uuid.uuid4()),
                "site": site,
                "name": name,
                "args": args,
                "expires_at": rfc3339(datetime.now(UTC) + timedelta(seconds=120)),
                "key_id": "centre",
            },
            self.key,
        )
        data = json.dumps(cmd).encode()
        topic = f"{ROOT}/{site}/commands/{name.replace('.', '/')}"
        with self.lock:
            self.sent[cmd["command_id"]] = (name, time.monotonic())
        self.client.publish(topic, data, qos=1)

    def on_message(self, c: Any, u: Any, msg: Any) -> None:
        t = time.monotonic()
        try:
            parts = msg.topic.split("/")
            site = parts[2]
            body = json.loads(msg.payload)
            if parts[3] == "results":
                with self.lock:
                    sent = self.sent.get(body.get("command_id") or "")
                    if sent is not None:
                        error = body.get("error") or {}
                        self.results.append(
                            {"name": sent[0], "s": t - sent[1], "error": error.get("code")}
                        )
                return
            with self.lock:
                self.seqs.setdefault(site, []).append(int(body["seq"]))
                self.event_times.append(t)
                self.types[body["type"]] = self.types.get(body["type"], 0) + 1
                if body["type"] == "alarm.raised":
                    self.raised.setdefault(site, []).append(t)
            if body["type"] == "alarm.raised":
                args = {"alarm_id": body["data"]["alarm_id"], "by": "fleet-centre"}
                self.command(site, "alarm.ack", args)
        except Exception as exc:  # a callback never raises
            print(f"centre: {exc!r}", file=sys.stderr)

    def open_lockers(self, sites: list[str], rate: float, duration_s: float, seed: int) -> int:
        """Poisson ``locker.open`` (a GPIO locker, reason service) at ``rate``/s."""
        rng = random.Random(seed)
        start = time.monotonic()
        end = start + duration_s
        n = 0
        if not sites or rate <= 0:
            return 0
        t = start + rng.expovariate(rate)
        while t < end:
            pause(max(0.0, t - time.monotonic()))
            locker = rng.choice(GPIO_LOCKERS)
            self.command(rng.choice(sites), "locker.open", {"locker": locker, "reason": "service"})
            n += 1
            t += rng.expovariate(rate)
        return n

    def report(self) -> dict[str, Any]:
        with self.lock:
            return {
                "op": "report",
                "seqs": self.seqs,
                "raised": self.raised,
                "event_times": self.event_times,
                "types": self.types,
                "results": self.results,
                "commands_sent": len(self.sent),
                "connects": self.connects,
                "stats": proc_stats(os.getpid()),
            }


def centre_main(host: str, port: int, key: Path) -> int:
    centre = Centre(host, port, key)

    def say(msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    if not centre.subscribed.wait(30):
        say({"op": "error", "error": "not subscribed"})
        return 1
    say({"op": "ready", "pid": os.getpid()})
    opener: threading.Thread | None = None
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req["op"] == "open":
            args = (req["sites"], req["rate"], req["duration_s"], req["seed"])
            opener = threading.Thread(target=centre.open_lockers, args=args, daemon=True)
            opener.start()
            say({"op": "opening"})
        elif req["op"] == "report":
            if opener is not None:
                opener.join()
            say(centre.report())
        elif req["op"] == "stop":
            break
    centre.client.disconnect()
    centre.client.loop_stop()
    return 0


# --------------------------------------------------------------------------- parent side


class Child:
    """A child process of this module speaking JSON lines (a worker or the centre)."""

    def __init__(self, argv: list[str], name: str, stderr: Path) -> None:
        self.name = name
        self._err = stderr.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_fleet", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            cwd=REPO,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, name=f"{name}-reader", daemon=True).start()
        ready = self.get(60)
        if ready.get("op") != "ready":
            raise RuntimeError(f"{name} did not start: {ready} (see {stderr})")
        self.pid = int(ready["pid"])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def get(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name} did not answer in {timeout} s") from None
        if not line:
            raise RuntimeError(f"{self.name} exited ({self.proc.poll()})")
        msg: dict[str, Any] = json.loads(line)
        return msg

    def ask(self, msg: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        self.send(msg)
        return self.get(timeout)

    def close(self, timeout: float = 120.0) -> None:
        with contextlib.suppress(Exception):
            self.ask({"op": "stop"}, timeout)
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._err.close()


def ask_all(
    children: list[Child], msgs: list[dict[str, Any]], timeout: float
) -> list[dict[str, Any]]:
    """Send each child its message, then collect every answer (they work in parallel)."""
    for c, m in zip(children, msgs, strict=True):
        c.send(m)
    return [c.get(timeout) for c in children]


class Brokers:
    """The broker(s) of a run: mosquitto (persistent, so the centre's session and its queue
    survive a restart) or the 3-node NATS cluster of the broker matrix."""

    def __init__(self, kind: str, workdir: Path, nats_mqtt: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.workdir = workdir
        self.nats_mqtt = dict(nats_mqtt or {})
        self.mosq: Any = None
        self.nats: Any = None

    def start(self) -> None:
        if self.kind == "mosquitto":
            from tests.support.mqtt import Mosquitto

            d = self.workdir / "mosquitto"
            d.mkdir(parents=True, exist_ok=True)
            self.mosq = Mosquitto(
                d,
                extra_config="\n".join(
                    [
                        # Queue without a bound for a slow subscriber (the centre).
                        "max_queued_messages 0",
                        # Without it the broker's small writes wait for the peer's delayed
                        # ACK (Nagle): about 40 ms on a command right after a PUBACK.
                        "set_tcp_nodelay true",
                        "persistence true",
                        f"persistence_location {d}/",
                        "autosave_interval 0",
                    ]
                ),
            )
            self.mosq.start()
        else:
            from tests.support.brokers import NatsCluster

            self.nats = NatsCluster(
                self.workdir / "nats", start_timeout=120.0, mqtt_options=self.nats_mqtt
            )
            self.nats.start()

    @property
    def description(self) -> str:
        if self.kind == "mosquitto":
            return "mosquitto (persistence, max_queued_messages 0)"
        options = "".join(f", mqtt {k}: {v}" for k, v in self.nats_mqtt.items())
        return (
            "NATS 3-node JetStream cluster (sites spread over the nodes, centre on node 2"
            f"{options})"
        )

    def site_url(self, i: int) -> str:
        if self.mosq is not None:
            return str(self.mosq.url)
        return str(self.nats.nodes[i % len(self.nats.nodes)].url)

    def centre_address(self) -> tuple[str, int]:
        if self.mosq is not None:
            return self.mosq.host, self.mosq.port
        node = self.nats.node("centre")
        return node.host, node.port

    def pids(self) -> list[int]:
        if self.mosq is not None:
            return [self.mosq.pid] if self.mosq.pid else []
        return [n.pid for n in self.nats.nodes if n.pid]

    def close(self) -> None:
        if self.mosq is not None:
            self.mosq.close()
        if self.nats is not None:
            self.nats.close()


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += proc_stats(pid)["cpu_s"]
    return total


def wait_for(what: str, fn: Callable[[], bool], timeout: float, poll_s: float = 0.2) -> float:
    """Poll ``fn`` until true; the seconds it took. TimeoutError names ``what``."""
    t0 = time.monotonic()
    while not fn():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        pause(poll_s)
    return time.monotonic() - t0


def accounting(last_seq: dict[str, int], seqs: dict[str, list[int]]) -> dict[str, Any]:
    """Every seq 1..last_seq of every site at the centre? Missing and duplicate counts."""
    missing = 0
    dup = 0
    sites_missing: list[str] = []
    total = 0
    for sid, last in last_seq.items():
        got = seqs.get(sid, [])
        total += last
        seen = set(got)
        dup += len(got) - len(seen)
        gone = [s for s in range(1, last + 1) if s not in seen]
        if gone:
            missing += len(gone)
            sites_missing.append(sid)
    return {
        "events_expected": total,
        "missing": missing,
        "duplicates": dup,
        "sites_with_missing": sites_missing[:20],
    }


def run_fleet(
    kind: str, args: argparse.Namespace, mode: dict[str, Any], workdir: Path, storm: bool
) -> dict[str, Any]:
    """One fleet against one broker kind: connect, idle, load, (storm), account."""
    from edge.core.signing import generate_keypair

    n = option(args, mode, "sites")
    per = option(args, mode, "sites_per_worker")
    n_workers = max(1, min(args.workers or math.ceil(n / per), n))
    d = workdir / kind
    d.mkdir(parents=True, exist_ok=True)
    generate_keypair(d / "centre.key", d / "centre.pub")
    kinds = fleet_kinds(n)
    ids = [f"{'shelter' if k == 'shelter' else 'locker'}-{i + 1:04d}" for i, k in enumerate(kinds)]
    out: dict[str, Any] = {"broker": kind, "sites": n, "workers": n_workers}
    out["shelters"] = kinds.count("shelter")
    out["lockers"] = kinds.count("locker")
    brokers = Brokers(kind, d, nats_mqtt_options(args.nats_mqtt))
    centre: Child | None = None
    workers: list[Child] = []
    step(f"{kind}: starting the broker")
    brokers.start()
    try:
        out["broker_description"] = brokers.description
        host, port = brokers.centre_address()
        centre = Child(
            ["--centre", host, str(port), str(d / "centre.key")], "centre", d / "centre.err"
        )
        step(f"{kind}: {n} sites in {n_workers} workers")
        workers = [
            Child(["--worker"], f"worker-{w}", d / f"worker-{w}.err") for w in range(n_workers)
        ]
        base = [proc_stats(w.pid) for w in workers]
        specs: list[list[dict[str, Any]]] = [[] for _ in workers]
        for i, sid in enumerate(ids):
            specs[i % n_workers].append(
                {
                    "id": sid,
                    "kind": kinds[i],
                    "url": brokers.site_url(i),
                    "data_dir": str(d / "sites" / sid),
                    "seed": args.seed * 100_000 + i,
                }
            )
        t0 = time.monotonic()
        built = []
        for w, s in enumerate(specs):  # one worker at a time: 2 cores, many processes
            req = {
                "op": "build",
                "sites": s,
                "log": str(d / f"worker-{w}.log"),
                "centre_pub": str(d / "centre.pub"),
                "debounce_ms": args.debounce_ms,
                "poll_hz": args.poll_hz,
                "jitter": not args.no_jitter,
                "switch_interval_s": args.switch_interval_ms / 1000,
                "idle_wait_s": args.idle_wait_s,
                "net_loop_s": args.net_loop_s,
            }
            built.append(workers[w].ask(req, timeout=600))
            # Its sites connect before the next worker builds (no oversubscribed start).
            with contextlib.suppress(TimeoutError):
                wait_for(f"worker {w} online", worker_online(workers[w], len(s)), 120, 0.5)
            step(f"{kind}: worker {w + 1}/{n_workers}: {len(s)} sites built and online")

        def online() -> int:
            return sum(r["online"] for r in ask_all(workers, [{"op": "online"}] * n_workers, 60))

        connected = 0

        def all_online() -> bool:
            nonlocal connected
            connected = online()
            return bool(connected == n)

        try:
            wait_for("every site connected", all_online, args.connect_timeout_s, 1.0)
        except TimeoutError:
            pass
        out["connect"] = {
            "connected": connected,
            "seconds_to_all": round(time.monotonic() - t0, 2),
            "build_s": max(b["build_s"] for b in built),
        }
        step(f"{kind}: {connected}/{n} sites connected")
        stats = [proc_stats(w.pid) for w in workers]
        rss_sites_kb = sum(s["rss_kb"] - b["rss_kb"] for s, b in zip(stats, base, strict=True))
        out["memory"] = {
            "workers_rss_mb": round(sum(s["rss_kb"] for s in stats) / 1024, 1),
            "workers_rss_empty_mb": round(sum(b["rss_kb"] for b in base) / 1024, 1),
            "rss_per_site_mb": round(rss_sites_kb / 1024 / n, 3),
            "threads": sum(s["threads"] for s in stats),
            "threads_per_site": round(
                sum(s["threads"] - b["threads"] for s, b in zip(stats, base, strict=True)) / n, 2
            ),
        }
        # Idle: every site connected, no load: what do the threads cost?
        idle_s = option(args, mode, "idle_s")
        pause(min(2.0, idle_s))  # the connect burst settles (site.started drains)
        w_pids = [w.pid for w in workers]
        cpu0 = (cpu_of(w_pids), cpu_of([centre.pid]), cpu_of(brokers.pids()))
        pause(idle_s)
        cpu1 = (cpu_of(w_pids), cpu_of([centre.pid]), cpu_of(brokers.pids()))
        out["idle"] = cpu_block(cpu0, cpu1, idle_s, n)
        step(f"{kind}: idle {out['idle']['workers_cpu_pct']}% CPU in the workers")
        # Load.
        duration = option(args, mode, "duration_s")
        press_rate = option(args, mode, "press_rate")
        open_rate = option(args, mode, "open_rate")
        lockers = [sid for sid, k in zip(ids, kinds, strict=True) if k == "locker"]
        step(f"{kind}: load {duration} s: {press_rate} presses/s, {open_rate} opens/s")
        before = centre.ask({"op": "report"})
        n_before = len(before["event_times"])
        cpu0 = (cpu_of(w_pids), cpu_of([centre.pid]), cpu_of(brokers.pids()))
        t_load = time.monotonic()
        centre.ask(
            {
                "op": "open",
                "sites": lockers,
                "rate": open_rate,
                "duration_s": duration,
                "seed": args.seed,
            }
        )
        loaded = ask_all(
            workers,
            [
                {
                    "op": "load",
                    "rate": press_rate / n_workers,
                    "duration_s": duration,
                    "seed": args.seed * 1000 + w,
                }
                for w in range(n_workers)
            ],
            timeout=duration + 120,
        )
        cpu1 = (cpu_of(w_pids), cpu_of([centre.pid]), cpu_of(brokers.pids()))
        load_wall = time.monotonic() - t_load
        drain_s = wait_drained(workers, 120)
        mid = settle(workers, centre, 120)[1]
        window = [t for t in mid["event_times"][n_before:] if t_load <= t <= t_load + duration]
        out["load"] = {
            "duration_s": duration,
            "press_rate": press_rate,
            "open_rate": open_rate,
            "presses": sum(r["pressed"] for r in loaded),
            "presses_skipped": sum(r["skipped"] for r in loaded),
            "events_in_window": len(window),
            "events_per_s": round(len(window) / duration, 2),
            "drain_s": round(drain_s, 2),
            "cpu": cpu_block(cpu0, cpu1, load_wall, n),
        }
        load_reports = ask_all(workers, [{"op": "report"}] * n_workers, 120)
        press_lat, unmatched = match_presses(load_reports, mid["raised"])
        out["load"]["press_to_centre"] = summary_ms(press_lat)
        out["load"]["presses_unmatched"] = unmatched
        results = [r for r in mid["results"]]
        out["load"]["command_to_result"] = summary_ms([r["s"] for r in results])
        out["load"]["command_to_result_by_name"] = {
            name: {
                **summary_ms([r["s"] for r in results if r["name"] == name]),
                "errors": errors_by_code([r for r in results if r["name"] == name]),
            }
            for name in sorted({r["name"] for r in results})
        }
        out["load"]["commands_sent"] = mid["commands_sent"]
        out["load"]["results"] = len(results)
        step(
            f"{kind}: {out['load']['events_per_s']} events/s, press->centre "
            f"p99 {out['load']['press_to_centre']['p99_ms']} ms"
        )
        if storm:
            out["storm"] = run_storm(brokers, workers, centre, args, mode, n)
        # Accounting: every seq of every site at the centre.
        step(f"{kind}: accounting")
        final, rep = settle(workers, centre, 60)
        last_seq: dict[str, int] = {}
        for r in final:
            last_seq.update(r["last_seq"])
        out["accounting"] = accounting(last_seq, rep["seqs"])
        out["accounting"]["event_types"] = rep["types"]
        if "storm" in out:
            _, unmatched = match_presses(final, rep["raised"])
            out["storm"]["presses_unmatched_after_storm"] = unmatched
        stats = [r["stats"] for r in final]
        out["memory"]["workers_rss_end_mb"] = round(sum(s["rss_kb"] for s in stats) / 1024, 1)
    finally:
        step(f"{kind}: stopping")
        for child in workers:
            child.send({"op": "stop"})
        for child in workers:
            child.close()
        if centre is not None:
            centre.close()
        brokers.close()
    return out


def settle(
    workers: list[Child], centre: Child, timeout: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Wait (up to ``timeout``) until every seq the sites have handed out so far has reached
    the centre and every command sent has its result; the workers' reports (with each
    site's last seq) and the centre's report then."""
    final = ask_all(workers, [{"op": "report", "seqs": True}] * len(workers), 120)
    last_seq: dict[str, int] = {}
    for r in final:
        last_seq.update(r["last_seq"])
    rep: dict[str, Any] = {}

    def arrived() -> bool:
        nonlocal rep
        rep = centre.ask({"op": "report"}, 120)
        done = accounting(last_seq, rep["seqs"])["missing"] == 0
        return bool(done and len(rep["results"]) >= rep["commands_sent"])

    with contextlib.suppress(TimeoutError):
        wait_for("every seq and result at the centre", arrived, timeout, 1.0)
    return final, rep


def worker_online(child: Child, n: int) -> Callable[[], bool]:
    def online() -> bool:
        return bool(child.ask({"op": "online"})["online"] == n)

    return online


def errors_by_code(results: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        code = r["error"] or "ok"
        out[code] = out.get(code, 0) + 1
    return out


def cpu_block(
    cpu0: tuple[float, float, float], cpu1: tuple[float, float, float], wall: float, n: int
) -> dict[str, float]:
    w, c, b = (cpu1[i] - cpu0[i] for i in range(3))
    return {
        "wall_s": round(wall, 2),
        "workers_cpu_pct": round(100 * w / wall, 1),
        "centre_cpu_pct": round(100 * c / wall, 1),
        "broker_cpu_pct": round(100 * b / wall, 1),
        "workers_cpu_ms_per_site_s": round(1000 * w / wall / n, 4),
    }


def match_presses(
    reports: list[dict[str, Any]], raised: dict[str, list[float]]
) -> tuple[list[float], int]:
    """Press i of a site -> the i-th ``alarm.raised`` of that site at the centre."""
    lat: list[float] = []
    unmatched = 0
    for r in reports:
        for sid, times in r["presses"].items():
            got = raised.get(sid, [])
            for k, t in enumerate(times):
                if k < len(got):
                    lat.append(got[k] - t)
                else:
                    unmatched += 1
    return lat, unmatched


def wait_drained(workers: list[Child], timeout: float) -> float:
    def drained() -> bool:
        return all(
            r["pending"] == 0 for r in ask_all(workers, [{"op": "drained"}] * len(workers), 60)
        )

    try:
        return wait_for("every outbox empty", drained, timeout, 0.5)
    except TimeoutError:
        return float("nan")


def run_storm(
    brokers: Brokers,
    workers: list[Child],
    centre: Child,
    args: argparse.Namespace,
    mode: dict[str, Any],
    n: int,
) -> dict[str, Any]:
    """Restart the broker under the fleet; presses while it is down."""
    assert brokers.mosq is not None
    outage_s = option(args, mode, "outage_s")
    count = option(args, mode, "outage_presses")
    before = ask_all(workers, [{"op": "report"}] * len(workers), 120)
    n_conn0 = {sid: len(v) for r in before for sid, v in r["connects"].items()}
    step(f"storm: broker stopped for {outage_s} s, {count} presses meanwhile")
    t_down = time.monotonic()
    brokers.mosq.stop()  # SIGTERM: it saves its persistence (the centre's session)
    t_stopped = time.monotonic()
    per = [
        count // len(workers) + (1 if w < count % len(workers) else 0) for w in range(len(workers))
    ]
    ask_all(
        workers,
        [{"op": "load", "count": c, "seed": args.seed + w} for w, c in enumerate(per)],
        timeout=120,
    )
    pause(max(0.0, t_down + outage_s - time.monotonic()))
    t_start = time.monotonic()
    brokers.mosq.start()
    t_up = time.monotonic()
    step(f"storm: broker up again ({t_up - t_start:.2f} s to start)")

    def all_back() -> bool:
        reps = ask_all(workers, [{"op": "report"}] * len(workers), 120)
        back = sum(
            1 for r in reps for sid, v in r["connects"].items() if len(v) > n_conn0.get(sid, 0)
        )
        return back == n

    with contextlib.suppress(TimeoutError):
        wait_for("every site back", all_back, args.storm_timeout_s, 1.0)
    reps = ask_all(workers, [{"op": "report"}] * len(workers), 120)
    connects: list[float] = []
    downs: list[float] = []
    for r in reps:
        for sid, v in r["connects"].items():
            new = v[n_conn0.get(sid, 0) :]
            if new:
                connects.append(new[0])
        for v in r["disconnects"].values():
            after = [t for t in v if t >= t_down - 1]
            if after:
                downs.append(after[0])
    drain_s = wait_drained(workers, 180)
    min_s, max_s = 1.0, 120.0  # both examples: reconnect {min_s: 1, max_s: 120}
    nj = [no_jitter_schedule(t, t_up, min_s, max_s) for t in downs]
    back_s = (max(connects) - t_up) if len(connects) == n else float("nan")
    return {
        "outage_s": outage_s,
        "broker_stop_s": round(t_stopped - t_down, 3),
        "broker_start_s": round(t_up - t_start, 3),
        "presses_during_outage": count,
        "sites_disconnected": len(downs),
        "sites_back": len(connects),
        "all_back_s": round(back_s, 2),
        "p50_back_s": round(pct([t - t_up for t in connects], 50), 2) if connects else None,
        "peak_connects_per_100ms": peak_per_bucket(connects),
        "no_jitter_peak_connects_per_100ms": peak_per_bucket(nj),
        "no_jitter_all_back_s": round(max(nj) - t_up, 2) if nj else None,
        "drain_s": round(drain_s, 2),
        "jitter": not args.no_jitter,
    }


# --------------------------------------------------------------------------- the run


def fleet_targets(f: dict[str, Any], quick: bool) -> dict[str, bool | None]:
    """The targets of one fleet (None: not judged, the events/s target in quick mode)."""
    n = f["sites"]
    p99 = f["load"]["press_to_centre"]["p99_ms"]
    out: dict[str, bool | None] = {
        "all_connected": f["connect"]["connected"] == n,
        "events_per_s": None if quick else f["load"]["events_per_s"] >= TARGET_EVENTS_S,
        "press_p99": bool(math.isfinite(p99) and p99 < TARGET_P99_MS),
        "nothing_lost": f["accounting"]["missing"] == 0,
    }
    storm = f.get("storm")
    if storm is not None:
        out["storm_all_back"] = storm["sites_back"] == n
        out["storm_outage_events_arrived"] = storm["presses_unmatched_after_storm"] == 0
    return out


def headline(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures the one table (issue 12.5) reads: stable names."""
    rows: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float | None,
        unit: str,
        target: str | None = None,
        ok: bool | None = None,
        baseline_name: str | None = None,
        baseline: float | None = None,
    ) -> None:
        v = float("nan") if value is None else float(value)
        rows.append(
            {
                "name": name,
                "value": v if math.isfinite(v) else None,
                "unit": unit,
                "baseline_name": baseline_name,
                "baseline": baseline,
                "target": target,
                "pass": ok,
            }
        )

    quick = bool(results["meta"]["quick"])
    for kind, f in results["fleets"].items():
        pre = "fleet" if kind == "mosquitto" else "nats fleet"
        n = f["sites"]
        load = f["load"]
        acc = f["accounting"]
        ok = fleet_targets(f, quick)
        add(
            f"{pre} sites connected",
            f["connect"]["connected"],
            "sites",
            f"= {n}",
            ok["all_connected"],
        )
        add(
            f"{pre} events/s",
            load["events_per_s"],
            "events/s",
            f">= {TARGET_EVENTS_S:g}" + (" (full run)" if quick else ""),
            ok["events_per_s"],
        )
        p99 = load["press_to_centre"]["p99_ms"]
        add(f"{pre} press->centre p50 ms", load["press_to_centre"]["p50_ms"], "ms")
        add(
            f"{pre} press->centre p99 ms",
            p99,
            "ms",
            f"< {TARGET_P99_MS:g}",
            ok["press_p99"],
        )
        add(f"{pre} command->result p99 ms", load["command_to_result"]["p99_ms"], "ms")
        add(f"{pre} events lost", acc["missing"], "events", "= 0", ok["nothing_lost"])
        add(f"{pre} RSS per site MB", f["memory"]["rss_per_site_mb"], "MB")
        add(f"{pre} idle CPU %", f["idle"]["workers_cpu_pct"], "% of one core")
        add(f"{pre} load CPU %", load["cpu"]["workers_cpu_pct"], "% of one core")
        s = f.get("storm")
        if s is not None:
            add("storm all back s", s["all_back_s"], "s", "every site", ok["storm_all_back"])
            add(
                "storm peak connects/100ms",
                s["peak_connects_per_100ms"],
                "connects",
                None,
                None,
                "without jitter",
                float(s["no_jitter_peak_connects_per_100ms"]),
            )
            add(
                "storm outage events lost",
                s["presses_unmatched_after_storm"],
                "events",
                "= 0",
                ok["storm_outage_events_arrived"],
            )
    return rows


def nats_mqtt_options(pairs: list[str]) -> dict[str, str]:
    """``--nats-mqtt KEY=VALUE`` options as a dict (SystemExit naming a malformed one)."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SystemExit(f"--nats-mqtt {pair!r}: expected KEY=VALUE, e.g. consumer_replicas=1")
        options[key.strip()] = value.strip()
    return options


def run(args: argparse.Namespace) -> dict[str, Any]:
    mode = QUICK if args.quick else FULL
    kinds = ["mosquitto", "nats"] if args.broker == "both" else [args.broker]
    t_start = time.monotonic()
    results: dict[str, Any] = {"fleets": {}}
    with work_dir("ansim-fleet-", args.keep) as wd:
        from tests.support.mqtt import find_mosquitto

        for kind in kinds:
            storm = kind == "mosquitto" and not args.no_storm
            results["fleets"][kind] = run_fleet(kind, args, mode, wd, storm)
    results["meta"] = run_meta_fleet(args, find_mosquitto())
    targets: dict[str, bool] = {}
    for kind, f in results["fleets"].items():
        for name, ok in fleet_targets(f, args.quick).items():
            if ok is not None:
                targets[f"{kind}_{name}"] = ok
    conclude(results, t_start, **targets)
    results["headline"] = headline(results)
    out: dict[str, Any] = finite(results)
    return out


def finite(x: Any) -> Any:
    """NaN and infinities (a figure with no samples) as null: the JSON stays strict."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


def run_meta_fleet(args: argparse.Namespace, mosquitto: str | None) -> dict[str, Any]:
    class _B:
        binary = mosquitto or "mosquitto"

    return run_meta(
        _B(),
        args.quick,
        seed=args.seed,
        debounce_ms=args.debounce_ms,
        poll_hz=args.poll_hz,
        switch_interval_ms=args.switch_interval_ms,
        idle_wait_s=args.idle_wait_s,
        net_loop_s=args.net_loop_s,
        jitter=not args.no_jitter,
        nats_mqtt=nats_mqtt_options(args.nats_mqtt),
    )


def table(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    for h in r["headline"]:
        v = h["value"]
        value = "n/a" if v is None else f"{v:g} {h['unit']}"
        base = "" if h["baseline"] is None else f"{h['baseline_name']}: {h['baseline']:g}"
        res = "" if h["pass"] is None else verdict(h["pass"])
        rows.append((h["name"], value, base, h["target"] or "", res))
    notes = []
    for kind, f in r["fleets"].items():
        notes.append(
            f"{kind}: {f['sites']} sites ({f['shelters']} shelters, {f['lockers']} lockers) "
            f"in {f['workers']} workers, {f['memory']['threads']} threads"
        )
    return report_table("fleet", r["meta"], notes, rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = arg_parser("bench.bench_fleet", __doc__)
    add_quick_and_json(p, "small fleet, short load (about a minute with both brokers)")
    add_seed_and_keep(p)
    p.add_argument("--sites", type=int, help=f"sites in the fleet (default {CITY}, quick 12)")
    p.add_argument(
        "--sites-per-worker",
        dest="sites_per_worker",
        type=int,
        help="sites per worker process (default 100, quick 6); see bench/README.md for why",
    )
    p.add_argument("--workers", type=int, help="worker processes (overrides --sites-per-worker)")
    p.add_argument(
        "--broker", choices=("mosquitto", "nats", "both"), default="both", help="default both"
    )
    p.add_argument("--duration-s", dest="duration_s", type=float, help="load seconds (60)")
    p.add_argument("--press-rate", dest="press_rate", type=float, help="presses/s (20)")
    p.add_argument("--open-rate", dest="open_rate", type=float, help="locker opens/s (5)")
    p.add_argument("--idle-s", dest="idle_s", type=float, help="idle CPU window (10)")
    p.add_argument("--outage-s", dest="outage_s", type=float, help="storm: broker down (5)")
    p.add_argument(
        "--outage-presses", dest="outage_presses", type=int, help="storm: presses meanwhile"
    )
    p.add_argument("--no-storm", action="store_true", help="skip the reconnect storm")
    p.add_argument("--no-jitter", action="store_true", help="sites reconnect without jitter")
    p.add_argument(
        "--switch-interval-ms",
        type=float,
        default=50.0,
        help="the workers' sys.setswitchinterval (default 50; CPython's 5, the daemon's 0.5)",
    )
    p.add_argument(
        "--idle-wait-s",
        type=float,
        default=5.0,
        help="edge.site.IDLE_WAIT_S in the workers (default 5; the daemon's 0.2)",
    )
    p.add_argument(
        "--net-loop-s",
        type=float,
        default=1.0,
        help="edge.core.uplink.LOOP_S in the workers (default 1; the daemon's 0.2)",
    )
    p.add_argument(
        "--nats-mqtt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further setting of every NATS node's mqtt {} block, e.g. consumer_replicas=1 "
        "(repeatable; default none: the broker matrix's cluster)",
    )
    p.add_argument("--debounce-ms", type=int, default=5, help="inputs' debounce (default 5)")
    p.add_argument(
        "--poll-hz",
        type=float,
        help="the lockers' board polls per second per board (default: the example's 4)",
    )
    p.add_argument("--connect-timeout-s", type=float, default=300.0)
    p.add_argument("--storm-timeout-s", type=float, default=300.0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main()
    if argv[:1] == ["--centre"]:
        return centre_main(argv[1], int(argv[2]), Path(argv[3]))
    args = parse_args(argv)
    return report(run(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
