"""What the benchmarks in bench/ share: statistics, the broker they start, the
MQTT clients that time messages (the subscriber child, the bare paho publisher), the
shelter on the shared ``tests.support.site.ThreadedSite`` (a real ``edge.site.Site`` on a
thread), ``ansim-edge sim`` as a child process, and the frame of a run (work dir, meta,
targets, table, JSON).

    python -m bench.common --subscriber-child HOST PORT [TOPIC_FILTER ...]

runs the independent subscriber (see ``subscriber_child``); ``RemoteSubscriber`` starts it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from edge.models import EventData
from tests.support.mqtt import Mosquitto
from tests.support.site import ThreadedSite
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parent.parent

ROOT = "ansim/v1"
PAYLOAD_BYTES = 96
INFLIGHT = 100

SUBSCRIBER = "separate process, QoS 1, TCP_NODELAY"  # how RemoteSubscriber listens
LOGGING = "daemon structlog config (JSON, info) to a file"  # what work_dir sets up

# --------------------------------------------------------------------------- waiting, figures

_pause = threading.Event()  # never set: .wait(t) is an interruptible sleep


def pause(seconds: float) -> None:
    _pause.wait(seconds)


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


# --------------------------------------------------------------------------- MQTT clients


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


def start_subscriber(
    host: str,
    port: int,
    topic: str | list[str],
    client_id: str,
    on_message: Callable[[Any, Any, Any], None],
    *,
    session: bool = False,
) -> tuple[Any, threading.Event]:
    """A paho client (TCP_NODELAY) subscribing to ``topic`` (one filter or several) at QoS 1,
    its network loop started; the event is set once the broker has granted the subscription.
    ``session``: a persistent session (clean_session off) that reconnects within 0.5 s, so a
    broker restarted with persistence keeps queueing for it while it is away."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    filters = [(t, 1) for t in ([topic] if isinstance(topic, str) else topic)]
    subscribed = threading.Event()

    def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        set_nodelay(c.socket(), True)
        c.subscribe(filters)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not session
    )
    if session:
        client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    client.connect(host, port, 60)
    client.loop_start()
    return client, subscribed


def subscriber_child(host: str, port: int, *topics: str) -> int:
    """The independent subscriber (own process), subscribed to ``topics`` (default: every
    topic). Protocol on stdin/stdout, one line each:

    ``arm N SUBSTR`` -> ``armed``; later ``done N T_FIRST T_LAST DUPS`` once N messages whose
    topic contains SUBSTR arrived since the arm (times: time.monotonic() at receipt).
    ``arm N SUBSTR unique``: the same, counting distinct payloads (DUPS: the repeats seen,
    e.g. QoS 1 sent again after a reconnect). ``quit``.

    A first topic ``--session=CLIENT_ID``: a persistent session under that client id (see
    ``start_subscriber``).
    """
    session = None
    if topics and topics[0].startswith("--session="):
        session, topics = topics[0].removeprefix("--session="), topics[1:]
    lock = threading.Lock()
    out_lock = threading.Lock()
    state: dict[str, Any] = {"n": 0, "sub": None, "count": 0, "first": 0.0, "seen": None}
    dups = [0]

    def say(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        t = time.monotonic()
        with lock:
            sub = state["sub"]
            if sub is None or sub not in msg.topic:
                return
            seen = state["seen"]
            if seen is not None:
                key = hash(msg.payload)
                if key in seen:
                    dups[0] += 1
                    return
                seen.add(key)
            state["count"] += 1
            if state["count"] == 1:
                state["first"] = t
            if state["count"] == state["n"]:
                state["sub"] = None
                say(f"done {state['n']} {state['first']:.9f} {t:.9f} {dups[0]}")

    client, ready = start_subscriber(
        host,
        port,
        list(topics) or ["#"],
        session or f"bench-sub-{os.getpid()}",
        on_message,
        session=session is not None,
    )
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
            unique = parts[3:4] == ["unique"]
            with lock:
                state.update(
                    n=int(parts[1]),
                    sub=parts[2],
                    count=0,
                    first=0.0,
                    seen=set() if unique else None,
                )
                dups[0] = 0
            say("armed")
    client.disconnect()
    client.loop_stop()
    return 0


class RemoteSubscriber:
    """Parent side of the subscriber child (subscribed to ``topics``, default every topic;
    ``session``: a persistent session under that client id)."""

    def __init__(self, host: str, port: int, *topics: str, session: str | None = None) -> None:
        head = [f"--session={session}"] if session else []
        self.duplicates = 0  # repeats seen by the last ``arm ... unique``
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.common",
                "--subscriber-child",
                host,
                str(port),
                *head,
                *topics,
            ],
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

    def arm(self, n: int, substr: str, unique: bool = False) -> None:
        """Wait for ``n`` messages on topics containing ``substr`` (``unique``: n distinct
        payloads; the repeats are counted in ``duplicates``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"arm {n} {substr}{' unique' if unique else ''}\n")
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
        self.duplicates = int(parts[4]) if len(parts) > 4 else 0
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


class BareClient:
    """Bare paho-mqtt 2.x publisher (MQTT 3.1.1 or ``protocol`` "5", inflight INFLIGHT),
    network loop started."""

    def __init__(
        self, host: str, port: int, nodelay: bool, name: str, protocol: str = "3.1.1"
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{name}-{os.getpid()}", protocol=version
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

    @property
    def acked(self) -> int:
        return self._acked

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


def bare_latency(
    host: str, port: int, sub: RemoteSubscriber, n: int, nodelay: bool, protocol: str = "3.1.1"
) -> dict:
    """Bare paho QoS 1 publish -> the subscriber child, one 96-byte message at a time."""
    c = BareClient(host, port, nodelay, "bench-lat", protocol)
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


# Messages a bare client queues at most ahead of its PUBACKs: MQTT packet ids are 16-bit,
# and paho keys its queue by them (more than 65,535 queued at once overwrite each other).
QUEUE_AHEAD = 50_000


def bare_throughput(host: str, port: int, sub: RemoteSubscriber, n: int, nodelay: bool) -> dict:
    """Bare paho QoS 1: N 96-byte messages (inflight INFLIGHT), first publish -> last PUBACK.
    Past QUEUE_AHEAD queued, ``publish()`` waits for PUBACKs (only for N above it)."""
    c = BareClient(host, port, nodelay, "bench-tput")
    topic = f"bench/tput/{'nd' if nodelay else 'nagle'}"
    payloads = [payload_96(i) for i in range(n)]
    timeout = max(120.0, n / 500)
    try:
        sub.arm(n, topic)
        c.expect_acks(n)
        t0 = time.monotonic()
        if n <= QUEUE_AHEAD:
            for p in payloads:
                c.client.publish(topic, p, qos=1)
        else:
            for i, p in enumerate(payloads):
                if i - c.acked >= QUEUE_AHEAD:
                    wait_until(lambda k=i: k - c.acked < QUEUE_AHEAD, timeout, 0.001, "PUBACKs")
                c.client.publish(topic, p, qos=1)
        t_ack = c.wait_acks(timeout)
        _, t_sub = sub.wait_done(timeout)
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


# --------------------------------------------------------------------------- the broker


@contextlib.contextmanager
def broker() -> Iterator[Any]:
    # Queue without a bound for slow subscribers (mosquitto drops QoS 1 messages past 1000
    # queued per client by default): every message must reach the subscriber.
    b = Mosquitto(extra_config="max_queued_messages 0")
    try:
        b.start()
        yield b
    finally:
        b.close()


def mosquitto_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5).stdout
        return out.splitlines()[0].strip()
    except Exception:
        return "unknown"


# --------------------------------------------------------------------------- a site in process


def known_fields(model: str, **values: Any) -> dict[str, Any]:
    """Only the settings this version of the config knows (it forbids unknown ones). The
    model is looked up in edge.config, or (since the device registry) the kinds' packages."""
    import importlib

    from edge import config

    found = getattr(config, model, None)
    for kind in ("panic", "lockers", "modem"):
        if found is None:
            try:
                found = getattr(importlib.import_module(f"edge.devices.{kind}.config"), model, None)
            except ImportError:
                continue
    fields = found.model_fields
    return {k: v for k, v in values.items() if k in fields}


def shelter_devices(debounce_ms: int) -> dict[str, Any]:
    """The shelter's panic button, LEDs, buzzer and reset key (pins of
    config/examples/shelter.yaml), both inputs debounced at ``debounce_ms``."""
    return {
        "panic_buttons": [
            {
                "name": "panic-1",
                "pin": 17,
                "contact": "nc",
                "debounce_ms": debounce_ms,
                # The benchmarks press many times a second on purpose: switch chatter
                # detection off where the config has it (it would ignore the presses).
                **known_fields("PanicButtonConfig", chatter_max=1000, chatter_window_s=0.001),
            }
        ],
        "sent_led": {"pin": 22},
        "ack_led": {"pin": 23},
        "buzzer": {"pin": 24},
        "reset_key": {"pin": 27, "contact": "no", "debounce_ms": debounce_ms},
    }


def shelter_config(
    site_id: str, broker_url: str, data_dir: Path, debounce_ms: int, **more: Any
) -> dict[str, Any]:
    """A site config with the shelter of ``shelter_devices`` on ``broker_url`` (short
    reconnect backoff, in-flight window INFLIGHT); ``more``: further top-level sections."""
    return {
        "site": {"id": site_id, "address": "서울특별시 중구 세종대로 110", "cameras": ["cam-1"]},
        "broker": {
            "url": broker_url,
            "keepalive_s": 30,
            "reconnect": {"min_s": 0.05, "max_s": 0.5},
            "max_inflight": INFLIGHT,
        },
        "data_dir": str(data_dir),
        "devices": shelter_devices(debounce_ms),
        **more,
    }


class ShelterSite(ThreadedSite):
    """The shared ThreadedSite (tests/support/site.py) with the shelter of
    ``shelter_devices``: press the panic button, time ``alarm.raised`` at the subscriber,
    clear the alarm with the reset key."""

    def __init__(
        self, cfg_dict: dict[str, Any], hw: Any, profile: Path | None = None, **site_kw: Any
    ) -> None:
        super().__init__(cfg_dict, hw=hw, profile=profile, **site_kw)
        shelter = self.site.devices.get("panic")
        assert shelter is not None and shelter.reset_key is not None
        self.shelter = shelter
        self.button = shelter.buttons["panic-1"].inp
        self.key = shelter.reset_key
        self.alarm_topic = f"{ROOT}/{self.site.cfg.site.id}/events/alarm/raised"

    def alarm_state(self) -> str:
        m = self.shelter.machine
        return str(self.call(lambda: m.s.state))

    def idle(self, drained: bool) -> bool:
        """Alarm idle, both inputs released and stable; with ``drained`` the outbox empty."""
        m, b, k, s = self.shelter.machine, self.button, self.key, self.site

        def check() -> bool:
            return (
                m.s.state == "idle"
                and not m.s.await_release
                and not b.level
                and b.deb.deadline is None
                and not k.level
                and k.deb.deadline is None
                and (not drained or (len(s.store) == 0 and s.outbox.inflight == 0))
            )

        return bool(self.call(check))

    def diagnose(self) -> str:
        m, b, k, s = self.shelter.machine, self.button, self.key, self.site

        def snap() -> dict[str, Any]:
            return {
                "machine": m.public_state(),
                "await_release": list(m.s.await_release),
                "button": [b.level, b.deb.raw, b.deb.deadline],
                "key": [k.level, k.deb.raw, k.deb.deadline],
                "pending": len(s.store),
                "online": s.outbox.online,
            }

        return json.dumps(self.call(snap), default=str)

    def timed_press(self, sub: RemoteSubscriber, timeout: float = 10) -> float:
        """Press the panic button: seconds until ``alarm.raised`` reaches the subscriber."""
        sub.arm(1, self.alarm_topic)
        t0 = time.monotonic()
        self.hw.set_input("panic-1", True)
        try:
            _, t = sub.wait_done(timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; site: {self.diagnose()}") from None
        return t - t0

    def clear(self, drained: bool, poll_s: float = 0.001) -> None:
        """Reset key: the alarm clears (an escalation stops); then key and button let go."""
        self.hw.set_input("reset_key", True)
        wait_until(
            lambda: self.alarm_state() == "idle", 10, 0.001, "alarm cleared by the reset key"
        )
        self.hw.set_input("reset_key", False)
        self.hw.set_input("panic-1", False)
        wait_until(lambda: self.idle(drained), 10, poll_s, "site idle after a press")


class BenchTick(EventData):
    """The benchmarks' own event type (registered on the site's outbox like a device's)."""

    TYPE = "bench.tick"
    i: int


def register_ticks(site: Any) -> None:
    """Register BenchTick on the site's outbox (it refuses event types it does not know)."""
    site.outbox.events = {**site.outbox.events, BenchTick.TYPE: BenchTick}


def make_ticks(start: int, count: int) -> list[BenchTick]:
    """The data of BenchTick events ``start`` .. ``start + count - 1``."""
    return [BenchTick(i=i) for i in range(start, start + count)]


def tick_job(
    site: Any, ticks: Sequence[BenchTick], credit: threading.Semaphore
) -> Callable[[], None]:
    """A core job recording one event per BenchTick in ``ticks`` (as a burst of inputs
    would), then releasing ``credit`` (the poster's limit of jobs ahead). The ticks are
    built beforehand (``make_ticks``), as bare paho's payloads are: what is timed is the
    outbox, from the event's data to its PUBACK."""

    def run() -> None:
        try:
            emit = site.outbox.emit
            for data in ticks:
                emit("bench", data)
        finally:
            credit.release()

    return run


# --------------------------------------------------------------------------- child processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Close its stdin (if piped), terminate it; kill it if it is still there after 15 s."""
    if proc.stdin is not None:
        proc.stdin.close()
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def idle_python(*modules: str) -> subprocess.Popen[str]:
    """An idle Python interpreter as a child process (context for the daemon's figures),
    ``modules`` imported, ready, reading its stdin until it is closed."""
    code = f"import {', '.join(('sys', *modules))}; print('ready', flush=True); sys.stdin.read()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


class SimDaemon:
    """``ansim-edge sim`` as a child process: ``cfg`` written to ``d/site.yaml``, its output to
    ``d/sim.log``, its control API on a free local port. ``launcher`` is what runs it after
    the interpreter (``-m edge.cli``, or a wrapper module that calls ``edge.cli.main``)."""

    def __init__(
        self,
        d: Path,
        cfg: dict[str, Any],
        broker_url: str,
        launcher: list[str],
        *,
        pipe_stdin: bool = False,
    ) -> None:
        d.mkdir(parents=True, exist_ok=True)
        cfg_path = d / "site.yaml"
        cfg_path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
        self.log_path = d / "sim.log"
        self.port = free_port()
        self._log = self.log_path.open("wb")
        argv = ["sim", "--config", str(cfg_path), "--broker", broker_url]
        argv += ["--control", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            [sys.executable, *launcher, *argv],
            stdin=subprocess.PIPE if pipe_stdin else None,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            text=True,
        )

    def state(self) -> Any:
        """The control API's /state; None while it does not answer yet."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited {self.proc.returncode}: see {self.log_path}")
        try:
            return http_json(f"http://127.0.0.1:{self.port}/state")
        except OSError:
            return None

    def wait_online_idle(self) -> None:
        def online_idle() -> bool:
            st = self.state()
            if st is None:
                return False
            core = st["site"]
            return bool(core["online"] and core["outbox_pending"] == 0)

        wait_until(online_idle, 30, 0.05, "daemon online and idle")

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()


# --------------------------------------------------------------------------- process figures


def proc_stats(pid: int) -> dict[str, Any]:
    """A process's VmRSS (kB), thread count and CPU time (user + system, s) from /proc."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    # /proc/PID/stat: the fields after the command (in parentheses) start at "state".
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "cpu_s": (int(stat[11]) + int(stat[12])) / ticks,  # utime, stime
    }


# --------------------------------------------------------------------------- a run


def option(args: argparse.Namespace, mode: dict[str, Any], name: str) -> Any:
    """``--name`` as given, else its default in ``mode`` (QUICK or FULL)."""
    value = getattr(args, name)
    return mode[name] if value is None else value


def configure_logging(path: Path) -> None:
    """The daemon's own structlog setup (JSON at info), written to a file, not a terminal."""
    import structlog

    from edge.logs import configure

    configure("info", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=path.open("w")))


@contextlib.contextmanager
def work_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A temp work dir, the daemon's logging set up in it; removed at the end unless kept."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    configure_logging(workdir / "site.log")
    try:
        yield workdir
    finally:
        if keep:
            print(f"work dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclasses.dataclass
class Session:
    """What ``session`` sets up for a run: its work dir, broker, subscriber child, meta and
    start time."""

    workdir: Path
    broker: Any
    sub: RemoteSubscriber
    meta: dict[str, Any]
    t_start: float


@contextlib.contextmanager
def session(
    prefix: str, args: argparse.Namespace, topics: tuple[str, ...] = (), **meta: Any
) -> Iterator[Session]:
    """The frame of a run on one broker: a work dir (the daemon's logging set up in it),
    the broker, the run's ``meta`` (with ``logging``, ``args.seed`` and ``meta``), the
    subscriber child (on ``topics``, default every topic), closed at the end."""
    with work_dir(prefix, args.keep) as workdir:
        t_start = time.monotonic()
        with broker() as b:
            m = run_meta(b, args.quick, logging=LOGGING, seed=args.seed, **meta)
            sub = RemoteSubscriber(b.host, b.port, *topics)
            try:
                yield Session(workdir, b, sub, m, t_start)
            finally:
                sub.close()


def run_meta(b: Any, quick: bool, **extra: Any) -> dict[str, Any]:
    """The run's ``meta``: versions, machine, load; then the benchmark's own ``extra``."""
    import paho.mqtt

    import edge

    return {
        "quick": bool(quick),
        "python": platform.python_version(),
        "paho_mqtt": paho.mqtt.__version__,
        "ansim_edge": edge.__version__,
        "broker": mosquitto_version(b.binary),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        **extra,
    }


def conclude(results: dict[str, Any], t_start: float, **targets: bool) -> dict[str, Any]:
    """Add the verdict per target, ``all_passed`` and the run's wall time."""
    results["targets"] = targets
    results["all_passed"] = all(targets.values())
    results["meta"]["wall_s"] = round(time.monotonic() - t_start, 1)
    return results


def headline(
    name: str,
    value: float,
    unit: str,
    baseline_name: str | None = None,
    baseline: float | None = None,
    target: str | None = None,
    passed: bool | None = None,
) -> dict[str, Any]:
    """One headline figure of a benchmark's JSON (its top-level ``headline`` list, which
    ``python -m bench`` puts in one table): the value, its baseline from the same run (or
    None), the target as text and whether it was met (None: no target)."""
    return {
        "name": name,
        "value": float(value),
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline": None if baseline is None else float(baseline),
        "target": target,
        "pass": passed,
    }


def step(text: str) -> None:
    print(f"... {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def p50_p99(s: dict[str, Any]) -> str:
    return f"p50 {s['p50_ms']:.2f} / p99 {s['p99_ms']:.2f} ms"


Row = tuple[str, str, str, str, str]
HEADER: Row = ("figure", "value", "baseline / note", "target", "result")


def report_table(what: str, meta: dict[str, Any], notes: list[str], rows: list[Row]) -> str:
    """A head line (versions, machine, ``notes``, load, wall time), then the rows aligned."""
    head = "; ".join(
        [
            f"ansim-edge {meta['ansim_edge']} {what} benchmark — {meta['broker']}, "
            f"paho-mqtt {meta['paho_mqtt']}, Python {meta['python']}, {meta['cpus']} CPUs"
            f"{', QUICK' if meta['quick'] else ''}",
            *notes,
            f"load avg {meta['load_avg_1m_at_start']}",
            f"{meta['wall_s']} s",
        ]
    )
    table = [HEADER, *rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(5)]
    lines = []
    for k, row in enumerate(table):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return head + "\n" + "\n".join(lines)


def arg_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=f"python -m {module}", description=(doc or "").split("\n")[0]
    )


def add_quick_and_json(p: argparse.ArgumentParser, quick_help: str) -> None:
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--json", type=Path, help="also write the results as JSON here")


def add_seed_and_keep(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    if seed:
        p.add_argument("--seed", type=int, default=1, help="random phases (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the temp work dir (logs, db)")


def report(
    results: dict[str, Any], table: Callable[[dict[str, Any]], str], out: Path | None
) -> int:
    """Print the table; with ``--json``, also write the results there."""
    print(table(results))
    if out is not None:
        text = json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False)
        out.write_text(text + "\n", encoding="utf-8")
    return 0


def bench_main(
    argv: list[str] | None,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
) -> int:
    """A benchmark's ``main``: the daemon's interpreter setting (baseline and site share
    the process), its arguments, the run, the table and ``--json``."""
    from edge.runtime import tune_interpreter

    tune_interpreter()
    args = parse_args(argv)
    return report(run(args), table, args.json)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--subscriber-child"] or len(sys.argv) < 4:
        sys.exit("usage: python -m bench.common --subscriber-child HOST PORT [TOPIC_FILTER ...]")
    sys.exit(subscriber_child(sys.argv[2], int(sys.argv[3]), *sys.argv[4:]))
