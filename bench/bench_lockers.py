"""Benchmark of the locker bank: command -> coil latency, "open all" time, idle CPU.

    python -m bench.bench_lockers [--commands 200] [--quick] [--json out.json]

Starts its own mosquitto on a free port and measures, in one run:

1. command -> coil energised: signed ``locker.open`` commands published by a centre client
   (paho, QoS 1) through the broker to a real ``edge.site.Site`` on ``SimHardware``; the
   simulated CU16 board stamps the unlock frame it receives (``t_monotonic``). Both stamps
   are ``time.monotonic()`` in this process. Baselines from the same run: bare paho QoS 1
   publish -> subscriber (both in this process, as the centre client and the site are), the
   raw pty round trip to a simulated board, and ``Cu16Bus.unlock()`` -> board (the driver
   alone, no MQTT, no Site);
2. "open all": 36 ``locker.open`` commands at once (32 CU16 + 4 GPIO, config derived from
   config/examples/locker.yaml, ``max_concurrent: 1``) until the last ``door.opened``
   reaches an independent subscriber process, against the floor 36 x (pulse + settle);
3. idle CPU of ``ansim-edge sim`` (locker.yaml) as a child process, whole process and per
   thread: the daemon's threads (core loop, uplink, CU16 bus, code reader) apart from the
   simulator's (simulated boards, control API). Context: an idle Python interpreter over the
   same window.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    LOGGING,
    REPO,
    ROOT,
    BareClient,
    RemoteSubscriber,
    SimDaemon,
    ThreadedSite,
    add_quick_and_json,
    add_seed_and_keep,
    arg_parser,
    broker,
    conclude,
    headline,
    idle_python,
    option,
    p50_p99,
    pause,
    payload_96,
    report,
    report_table,
    run_meta,
    start_subscriber,
    step,
    stop_process,
    summary_ms,
    verdict,
    work_dir,
)
from edge.runtime import tune_interpreter
from tests.support.wait import wait_until

EXAMPLE = REPO / "config" / "examples" / "locker.yaml"
BUS = "rs485-0"  # the bus name in locker.yaml
CU16_LOCKERS = 32
ALL_LOCKERS = 36
WARMUP = 3

# Target (see bench/README.md).
TARGET_DAEMON_CPU_PCT = 2.0

QUICK = {"commands": 5, "pulse_ms": 100, "cpu_window_s": 3.0, "baseline_n": 30}
FULL = {"commands": 200, "pulse_ms": 500, "cpu_window_s": 20.0, "baseline_n": 200}

# Thread names (Python-level) of the `sim` process, by side. Anything else is "other".
DAEMON_THREADS = ("MainThread", "ansim-uplink", "cu16-bus[", "codereader[", "modem-")
SIM_THREADS = ("cu16-sim[", "sim-control", "sim-modem", "embedded-broker")
BENCH_THREADS = ("bench-threads",)


# --------------------------------------------------------------------------- simulated parts


def notifying_bus_class() -> type:
    """A SimulatedCu16Bus that signals every pulse it records (for waiting without polling)."""
    from simulator.cu16_device import SimulatedCu16Bus

    class NotifyingCu16Bus(SimulatedCu16Bus):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.unlocked = threading.Event()
            self.last_unlock: tuple[int, int, float] | None = None
            super().__init__(*args, **kwargs)

        def _pulse(self, b: Any, index: int) -> None:  # I/O thread, sim lock held
            super()._pulse(b, index)
            entry = self._history[-1]
            self.last_unlock = (entry["board"], entry["lock"], entry["t_monotonic"])
            self.unlocked.set()

    return NotifyingCu16Bus


def bench_hardware() -> Any:
    """SimHardware whose CU16 buses are NotifyingCu16Bus (same wiring as SimLockerHardware)."""
    from simulator.factories.lockers import SimLockerHardware
    from simulator.hardware import SimHardware

    bus_class = notifying_bus_class()
    return SimHardware(
        factories={"lockers": lambda hw: SimLockerHardware(hw, cu16_bus_class=bus_class)}
    )


# --------------------------------------------------------------------------- config, keys


def example_config() -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def locker_config(
    site_id: str, broker_url: str, data_dir: Path, pub: Path | None, pulse_ms: int | None
) -> dict[str, Any]:
    """config/examples/locker.yaml with this run's site id, broker, data dir and key."""
    cfg = copy.deepcopy(example_config())
    cfg["site"]["id"] = site_id
    cfg["broker"]["url"] = broker_url
    cfg["data_dir"] = str(data_dir)
    cfg["keys"] = [{"key_id": "centre", "public_key": str(pub), "commands": ["*"]}] if pub else []
    if pulse_ms is not None:
        cfg["devices"]["lockers"]["pulse_ms"] = pulse_ms
    return cfg


class Centre:
    """The centre: an Ed25519 key and a paho client (QoS 1, TCP_NODELAY) in this process."""

    def __init__(self, host: str, port: int, keydir: Path) -> None:
        from edge.core.signing import generate_keypair, load_private_key

        keydir.mkdir(parents=True, exist_ok=True)
        self.pub = keydir / "centre.pub"
        generate_keypair(keydir / "centre.key", self.pub)
        self.key = load_private_key(keydir / "centre.key")
        self.client = BareClient(host, port, True, "bench-centre")

    def signed(self, site: str, name: str, args: dict[str, Any]) -> bytes:
        from edge.core.clock import rfc3339
        from edge.core.signing import sign_command

        cmd = {
            "command_id": str(uuid.uuid4()),
            "site": site,
            "name": name,
            "args": args,
            "expires_at": rfc3339(datetime.now(UTC) + timedelta(seconds=300)),
            "key_id": "centre",
        }
        return json.dumps(sign_command(cmd, self.key)).encode("utf-8")

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.close()


class LockerSite(ThreadedSite):
    """A real Site (locker.yaml) on BenchHardware, its core loop on a thread."""

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        super().__init__(cfg_dict, hw=bench_hardware())
        bank = self.site.devices.get("lockers")
        assert bank is not None
        self.bank = bank
        from simulator.factories import lockers as locker_hw

        wait_until(lambda: BUS in locker_hw.of(self.hw).buses, 15, 0.005, "simulated bus up")
        wait_until(self._ready, 20, 0.01, "site online, every door known, outbox empty")

    def _ready(self) -> bool:
        s, bank = self.site, self.bank

        def check() -> bool:
            return (
                s.outbox.online
                and len(s.store) == 0
                and all(lk.door_open is False for lk in bank.machine.lockers.values())
            )

        return bool(self.call(check))

    def coil_free(self) -> bool:
        bank, clock = self.bank, self.site.clock
        return bool(
            self.call(
                lambda: bank.sched.queued == 0 and not bank.sched.energised(clock.monotonic())
            )
        )

    def diagnose(self, locker: int) -> str:
        bank = self.bank

        def snap() -> dict[str, Any]:
            return {
                "locker": bank.machine.public_state(locker),
                "queued": bank.sched.queued,
                "online": self.site.outbox.online,
            }

        return json.dumps(self.call(snap), default=str)


def where(locker: int) -> tuple[int, int]:
    """CU16 (board, lock) of locker 1-32 in locker.yaml."""
    return (0, locker) if locker <= 16 else (1, locker - 16)


# --------------------------------------------------------------------------- 1. baselines


def bare_latency_local(host: str, port: int, n: int) -> dict[str, Any]:
    """Bare paho QoS 1 publish -> subscriber, both clients in this process (as the centre
    client and the site are), TCP_NODELAY on both; one 96-byte message at a time."""
    topic = f"bench/lockers/lat/{os.getpid()}"
    got = threading.Event()
    box: list[float] = [0.0]

    def on_message(c: Any, u: Any, msg: Any) -> None:
        box[0] = time.monotonic()
        got.set()

    sub, ready = start_subscriber(host, port, topic, f"bench-lsub-{os.getpid()}", on_message)
    pub = BareClient(host, port, True, "bench-lpub")
    try:
        if not ready.wait(10):
            raise RuntimeError("local subscriber did not subscribe")
        samples = []
        for i in range(10 + n):
            got.clear()
            t0 = time.monotonic()
            pub.client.publish(topic, payload_96(i), qos=1)
            if not got.wait(10):
                raise TimeoutError("bare message not received")
            if i >= 10:
                samples.append(box[0] - t0)
    finally:
        pub.close()
        sub.disconnect()
        sub.loop_stop()
    return {**summary_ms(samples), "tcp_nodelay": True, "subscriber": "same process"}


def pty_round_trip(n: int) -> dict[str, Any]:
    """Unlock frame written straight to a simulated board's pty (pyserial): until the board
    records the unlock, and until its status reply is read back."""
    import serial

    from drivers.cu16 import encode_unlock

    sim = notifying_bus_class()([0, 1])
    port = serial.serial_for_url(sim.port, baudrate=19200, timeout=1.0)
    rec, reply = [], []
    try:
        for i in range(10 + n):
            board, lock = i % 2, i % 16 + 1
            sim.close_door(board, lock)
            sim.unlocked.clear()
            t0 = time.monotonic()
            port.write(encode_unlock(board, lock))
            if not sim.unlocked.wait(5) or sim.last_unlock is None:
                raise TimeoutError("simulated board did not record the unlock")
            t_rec = sim.last_unlock[2]
            data = port.read(9)
            t_reply = time.monotonic()
            if len(data) != 9:
                raise TimeoutError(f"status reply: got {len(data)} bytes")
            if i >= 10:
                rec.append(t_rec - t0)
                reply.append(t_reply - t0)
    finally:
        port.close()
        sim.close()
    return {"write_to_recorded": summary_ms(rec), "write_to_reply_read": summary_ms(reply)}


class _NullListener:
    def on_status(self, *a: Any) -> None:
        pass

    def on_unlock_sent(self, *a: Any) -> None:
        pass

    def on_board_fault(self, *a: Any) -> None:
        pass

    def on_board_recovered(self, *a: Any) -> None:
        pass

    def on_garbage(self, *a: Any) -> None:
        pass


def driver_latency(n: int, poll_hz: float, rng: random.Random) -> dict[str, Any]:
    """``Cu16Bus.unlock()`` -> the simulated board records it: the driver alone (its thread
    wakes, waits for any poll in flight, writes the frame), polling two boards at poll_hz."""
    from drivers.cu16 import BoardSettings, Cu16Bus

    pulse_ms = 10  # the bus spaces unlocks by the pulse: keep it short to run fast
    sim = notifying_bus_class()([0, 1], pulse_ms=pulse_ms)
    bus = Cu16Bus(
        sim.port,
        [BoardSettings(0, pulse_ms=pulse_ms), BoardSettings(1, pulse_ms=pulse_ms)],
        _NullListener(),
        poll_hz=poll_hz,
    )
    bus.start()
    samples = []
    try:
        wait_until(lambda: bus.stats()["polls"] >= 2, 10, 0.01, "driver polling")
        for i in range(10 + n):
            board, lock = i % 2, i % 16 + 1
            sim.close_door(board, lock)
            # Random phase against the poll cycle; the bus spaces coils by pulse + 50 ms.
            pause(0.07 + rng.uniform(0, 1 / poll_hz))
            sim.unlocked.clear()
            t0 = time.monotonic()
            bus.unlock(board, lock)
            if not sim.unlocked.wait(5) or sim.last_unlock is None:
                raise TimeoutError("driver unlock not recorded")
            if i >= 10:
                samples.append(sim.last_unlock[2] - t0)
    finally:
        bus.close()
        sim.close()
    return {**summary_ms(samples), "poll_hz": poll_hz}


# --------------------------------------------------------------------------- 2. latency


def command_latency(
    url: str, centre: Centre, workdir: Path, n: int, pulse_ms: int, rng: random.Random
) -> dict[str, Any]:
    from edge.machines.coils import SETTLE_S

    site_id = "bench-lk-lat"
    ls = LockerSite(locker_config(site_id, url, workdir / "lat", centre.pub, pulse_ms))
    machine = ls.bank.machine
    bus = ls.bus(BUS)
    poll_s = 1 / float(example_config()["devices"]["lockers"]["buses"][0]["poll_hz"])
    topic = f"{ROOT}/{site_id}/commands/locker/open"
    samples: list[float] = []
    try:
        for i in range(WARMUP + n):
            locker = i % CU16_LOCKERS + 1  # rotate: every lock rests ~32 cycles (cooldown)
            board, lock = where(locker)
            payload = centre.signed(site_id, "locker.open", {"locker": locker, "reason": "service"})
            wait_until(ls.coil_free, 10, 0.005, "no coil energised or queued")
            pause(rng.uniform(0, poll_s))  # random phase against the 4 Hz status poll
            bus.unlocked.clear()
            t0 = time.monotonic()
            centre.publish(topic, payload)
            if not bus.unlocked.wait(10) or bus.last_unlock is None:
                raise TimeoutError(f"locker {locker} not unlocked: {ls.diagnose(locker)}")
            b, lk, t = bus.last_unlock
            if (b, lk) != (board, lock):
                raise RuntimeError(f"unlocked board {b} lock {lk}, expected {board}/{lock}")
            if i >= WARMUP:
                samples.append(t - t0)
            # The site sees the door spring open; then it is pushed shut by hand.
            wait_until(
                lambda n=locker: ls.call(lambda: machine.lockers[n].door_open) is True,
                10,
                0.005,
                f"locker {locker} seen open",
            )
            bus.close_door(board, lock)
            # The bus and the scheduler keep the coil busy for pulse + settle after the send.
            pause(max(0.0, t + pulse_ms / 1000 + SETTLE_S + 0.02 - time.monotonic()))
        overlapping = bus.snapshot()["overlapping_pulses"]
    finally:
        ls.close()
    return {
        "n": n,
        "pulse_ms": pulse_ms,
        "lockers_rotated": CU16_LOCKERS,
        "latency": summary_ms(samples),
        "overlapping_pulses": overlapping,
    }


# --------------------------------------------------------------------------- 3. open all


def open_all(
    url: str, centre: Centre, sub: RemoteSubscriber, workdir: Path, pulse_ms: int
) -> dict[str, Any]:
    from edge.machines.coils import SETTLE_S

    site_id = "bench-lk-all"
    cfg = locker_config(site_id, url, workdir / "all", centre.pub, pulse_ms)
    lcfg = cfg["devices"]["lockers"]
    ls = LockerSite(cfg)
    topic = f"{ROOT}/{site_id}/commands/locker/open"
    try:
        payloads = [
            centre.signed(site_id, "locker.open", {"locker": n, "reason": "service"})
            for n in range(1, ALL_LOCKERS + 1)
        ]
        sub.arm(ALL_LOCKERS, f"/{site_id}/events/door/opened")
        t0 = time.monotonic()
        for p in payloads:
            centre.publish(topic, p)
        t_first, t_last = sub.wait_done(60 + ALL_LOCKERS * 3 * pulse_ms / 1000)
        wait_until(
            lambda: all(c["end"] is not None for c in ls.hw.coil_intervals()),
            10,
            0.001,
            "coils off",
        )
        coils = ls.hw.coil_intervals()
    finally:
        ls.close()
    starts = [c["start"] for c in coils]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    overlaps = sum(1 for a, b in itertools.pairwise(coils) if b["start"] < a["end"])
    pulse_s = pulse_ms / 1000
    per_door = pulse_s + SETTLE_S
    floor = ALL_LOCKERS * per_door
    seconds = t_last - t0
    return {
        "doors": ALL_LOCKERS,
        "pulse_ms": pulse_ms,
        "settle_ms": round(SETTLE_S * 1000, 1),
        "max_concurrent": lcfg["max_concurrent"],
        "seconds_to_last_door_opened": round(seconds, 3),
        "seconds_to_first_door_opened": round(t_first - t0, 4),
        "floor_s": round(floor, 3),
        "ratio_vs_floor": round(seconds / floor, 3),
        "coil_pulses": len(coils),
        "overlapping_coils": overlaps,
        "first_coil_after_s": round(starts[0] - t0, 4) if starts else None,
        "last_coil_after_s": round(starts[-1] - t0, 4) if starts else None,
        "coil_gap": summary_ms(gaps),
        "overhead_per_door_ms_mean": round((sum(gaps) / len(gaps) - per_door) * 1000, 2)
        if gaps
        else None,
    }


# --------------------------------------------------------------------------- 4. idle CPU


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(stat_path: Path) -> float:
    """utime + stime in seconds from a /proc .../stat file (clock-tick resolution)."""
    text = stat_path.read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds per live thread: schedstat's run time (ns) where the kernel has it, else
    utime + stime (10 ms ticks are coarse for threads that use a fraction of a percent)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            try:
                out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
            except (FileNotFoundError, IndexError, ValueError):
                out[int(task.name)] = cpu_s(task / "stat")
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def side_of(name: str) -> str:
    if name.startswith(BENCH_THREADS):
        return "bench"
    if name.startswith(SIM_THREADS):
        return "simulator"
    if name.startswith(DAEMON_THREADS):
        return "daemon"
    return "other"


def daemon_child(threads_path: str, argv: list[str]) -> int:
    """``edge.cli.main(argv)`` unchanged, plus an idle thread that writes {native thread id:
    thread name} to ``threads_path`` when the parent writes a line to stdin (CPython 3.11
    does not give its threads OS-level names, so /proc alone cannot tell them apart)."""

    def serve() -> None:
        for _line in sys.stdin:
            names = {t.native_id: t.name for t in threading.enumerate()}
            tmp = threads_path + ".tmp"
            Path(tmp).write_text(json.dumps(names), encoding="utf-8")
            os.replace(tmp, threads_path)

    threading.Thread(target=serve, name="bench-threads", daemon=True).start()
    from edge.cli import main as cli_main

    return cli_main(argv)


def idle_cpu(broker_url: str, workdir: Path, window_s: float, settle_s: float) -> dict[str, Any]:
    d = workdir / "cpu"
    cfg = locker_config("bench-lk-idle", broker_url, d / "data", None, None)
    threads_path = d / "threads.json"
    launcher = ["-m", "bench.bench_lockers", "--daemon-child", str(threads_path)]
    daemon = SimDaemon(d, cfg, broker_url, launcher, pipe_stdin=True)
    proc = daemon.proc
    bare: subprocess.Popen[str] | None = None
    try:
        daemon.wait_online_idle()
        bare = idle_python()
        pause(settle_s)  # start-up is over; let the first garbage collections pass
        assert proc.stdin is not None
        proc.stdin.write("dump\n")
        proc.stdin.flush()
        wait_until(threads_path.exists, 10, 0.01, "thread names from the daemon child")
        names = {int(k): v for k, v in json.loads(threads_path.read_text()).items()}
        polls0 = board_polls(daemon.state())
        # ---- the window: nobody talks to either process ----
        p0, b0, th0, t0 = (
            cpu_s(Path(f"/proc/{proc.pid}/stat")),
            cpu_s(Path(f"/proc/{bare.pid}/stat")),
            thread_cpu_s(proc.pid),
            time.monotonic(),
        )
        pause(window_s)
        p1, b1, th1, t1 = (
            cpu_s(Path(f"/proc/{proc.pid}/stat")),
            cpu_s(Path(f"/proc/{bare.pid}/stat")),
            thread_cpu_s(proc.pid),
            time.monotonic(),
        )
        # ----
        polls1 = board_polls(daemon.state())
    finally:
        daemon.close()
        if bare is not None:
            stop_process(bare)
    window = t1 - t0

    def pct_core(seconds: float) -> float:
        return round(seconds / window * 100, 3)

    threads: dict[str, dict[str, Any]] = {}
    sides = {"daemon": 0.0, "simulator": 0.0, "bench": 0.0, "other": 0.0}
    for tid, used in th1.items():
        delta = used - th0.get(tid, 0.0)
        name = names.get(tid, f"tid {tid} (started after the name dump)")
        side = side_of(name)
        sides[side] += delta
        threads[name] = {"side": side, "cpu_pct": pct_core(delta)}
    return {
        "window_s": round(window, 2),
        "clk_tck": CLK_TCK,
        "thread_cpu_source": "schedstat"
        if Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/schedstat").exists()
        else "stat",
        "poll_hz_configured": float(cfg["devices"]["lockers"]["buses"][0]["poll_hz"]),
        "boards": len(cfg["devices"]["lockers"]["buses"][0]["boards"]),
        "status_polls_per_s": round((polls1 - polls0) / window, 2),
        "process_cpu_pct": pct_core(p1 - p0),
        "daemon_cpu_pct": pct_core(sides["daemon"]),
        "simulator_cpu_pct": pct_core(sides["simulator"]),
        "other_cpu_pct": pct_core(sides["other"]),
        "threads": threads,
        "idle_python_cpu_pct": pct_core(b1 - b0),
    }


def board_polls(st: Any) -> int:
    boards = st["boards"][BUS]["boards"]
    return sum(int(b["status_queries"]) for b in boards.values())


# --------------------------------------------------------------------------- driver


def run(args: argparse.Namespace) -> dict[str, Any]:
    mode = QUICK if args.quick else FULL
    n = option(args, mode, "commands")
    pulse_ms = option(args, mode, "pulse_ms")
    window = option(args, mode, "cpu_window_s")
    base_n = option(args, mode, "baseline_n")
    rng = random.Random(args.seed)
    poll_hz = float(example_config()["devices"]["lockers"]["buses"][0]["poll_hz"])
    results: dict[str, Any] = {}
    with work_dir("ansim-bench-lk-", args.keep) as workdir:
        t_start = time.monotonic()
        with broker() as b:
            results["meta"] = run_meta(
                b,
                args.quick,
                config=str(EXAMPLE.relative_to(REPO)),
                logging=LOGGING,
                seed=args.seed,
            )
            step(f"baselines: bare paho in-process, raw pty, Cu16Bus driver ({base_n} each)")
            baseline = {
                "mqtt_latency": bare_latency_local(b.host, b.port, base_n),
                "pty_round_trip": pty_round_trip(base_n),
                "driver_unlock": driver_latency(base_n, poll_hz, rng),
            }
            results["baseline"] = baseline
            centre = Centre(b.host, b.port, workdir / "keys")
            sub = RemoteSubscriber(b.host, b.port)
            try:
                step(f"command -> coil energised ({n} commands, pulse {pulse_ms} ms)")
                cl = command_latency(b.url, centre, workdir, n, pulse_ms, rng)
                lat, bare = cl["latency"], baseline["mqtt_latency"]
                cl["minus_bare_mqtt_p50_ms"] = round(lat["p50_ms"] - bare["p50_ms"], 3)
                cl["minus_bare_mqtt_p99_ms"] = round(lat["p99_ms"] - bare["p99_ms"], 3)
                cl["ratio_vs_bare_mqtt_p50"] = round(lat["p50_ms"] / bare["p50_ms"], 2)
                results["command_latency"] = cl
                step(f"open all {ALL_LOCKERS} doors one by one (pulse {pulse_ms} ms)")
                results["open_all"] = open_all(b.url, centre, sub, workdir, pulse_ms)
            finally:
                sub.close()
                centre.close()
            step(f"idle CPU of `ansim-edge sim` (locker.yaml), {window:g} s window")
            cpu = idle_cpu(b.url, workdir, window, 0.5 if args.quick else 2.0)
            cpu.update(
                target_pct=TARGET_DAEMON_CPU_PCT,
                passed=cpu["daemon_cpu_pct"] < TARGET_DAEMON_CPU_PCT,
            )
            results["idle_cpu"] = cpu
    results = conclude(results, t_start, daemon_idle_cpu=results["idle_cpu"]["passed"])
    results["headline"] = headlines(results)
    return results


def headlines(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures ``python -m bench`` puts in its one table."""
    c, a, u = r["command_latency"], r["open_all"], r["idle_cpu"]
    bare = r["baseline"]["mqtt_latency"]
    return [
        headline(
            "lockers: command -> coil energised p99",
            c["latency"]["p99_ms"],
            "ms",
            "bare paho p99 (in process)",
            bare["p99_ms"],
        ),
        headline(
            f"lockers: open all {ALL_LOCKERS} doors",
            a["seconds_to_last_door_opened"],
            "s",
            f"floor {a['doors']} x (pulse + settle)",
            a["floor_s"],
        ),
        headline(
            "lockers: daemon idle CPU",
            u["daemon_cpu_pct"],
            "% of a core",
            target=f"< {u['target_pct']:g} %",
            passed=u["passed"],
        ),
    ]


def table(r: dict[str, Any]) -> str:
    b = r["baseline"]
    c, a, u = r["command_latency"], r["open_all"], r["idle_cpu"]
    top = sorted(u["threads"].items(), key=lambda kv: -kv[1]["cpu_pct"])
    per_thread = ", ".join(f"{k} {v['cpu_pct']:.2f}%" for k, v in top[:5])
    rows = [
        (
            "bare paho QoS1 pub -> sub, same process",
            p50_p99(b["mqtt_latency"]),
            f"n={b['mqtt_latency']['n']}, NODELAY",
            "",
            "",
        ),
        (
            "raw pty: unlock frame -> board records",
            p50_p99(b["pty_round_trip"]["write_to_recorded"]),
            f"-> status reply read: {p50_p99(b['pty_round_trip']['write_to_reply_read'])}",
            "",
            "",
        ),
        (
            "Cu16Bus.unlock() -> board records",
            p50_p99(b["driver_unlock"]),
            f"driver alone, polling 2 boards at {b['driver_unlock']['poll_hz']:g} Hz",
            "",
            "",
        ),
        (
            "locker.open (signed) -> coil energised",
            p50_p99(c["latency"]),
            f"n={c['n']}; minus bare MQTT: p50 {c['minus_bare_mqtt_p50_ms']:+.2f} / "
            f"p99 {c['minus_bare_mqtt_p99_ms']:+.2f} ms ({c['ratio_vs_bare_mqtt_p50']:.1f}x p50)",
            "(report)",
            "",
        ),
        (
            f"open all {a['doors']} doors (pulse {a['pulse_ms']} ms)",
            f"{a['seconds_to_last_door_opened']:.2f} s",
            f"floor {a['doors']} x ({a['pulse_ms']}+{a['settle_ms']:.0f} ms) = {a['floor_s']:.2f} s"
            f" -> {a['ratio_vs_floor']:.3f}x; coil gap p50 {a['coil_gap']['p50_ms']:.1f} / max "
            f"{a['coil_gap']['max_ms']:.1f} ms; overlaps {a['overlapping_coils']}",
            "(report)",
            "",
        ),
        (
            "idle CPU, daemon threads (sim, 2 boards)",
            f"{u['daemon_cpu_pct']:.2f} % of a core",
            f"whole process {u['process_cpu_pct']:.2f} %, simulator threads "
            f"{u['simulator_cpu_pct']:.2f} %; {u['status_polls_per_s']:.1f} polls/s",
            f"< {u['target_pct']:.0f} %",
            verdict(u["passed"]),
        ),
        (
            "idle CPU, idle Python interpreter",
            f"{u['idle_python_cpu_pct']:.2f} % of a core",
            f"same {u['window_s']:.0f} s window; top threads: {per_thread}",
            "",
            "",
        ),
    ]
    return report_table("locker", r["meta"], [r["meta"]["config"]], rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = arg_parser("bench.bench_lockers", __doc__)
    ap.add_argument("--commands", type=int, help="locker.open commands timed (200; quick 5)")
    add_quick_and_json(ap, "small N, 100 ms pulses, under ~30 s")
    ap.add_argument(
        "--pulse-ms", type=int, help="pulse_ms for the latency and open-all runs (500; quick 100)"
    )
    ap.add_argument("--cpu-window-s", type=float, help="idle CPU window (20; quick 3)")
    ap.add_argument("--baseline-n", type=int, help="samples per baseline (200; quick 30)")
    add_seed_and_keep(ap)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--daemon-child"]:
        return daemon_child(argv[1], argv[2:])
    tune_interpreter()  # as the daemon does; baseline and site share the process
    args = parse_args(argv)
    return report(run(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
