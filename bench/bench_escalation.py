"""Benchmark of the alarm's second channel (the modem) and of its isolation from the core.

    python -m bench.bench_escalation [--presses 200] [--quick] [--json out.json]

Starts its own mosquitto on a free port and measures, in one run:

1. press -> first AT command of the SMS while the broker is down: a real ``edge.site.Site``
   on ``SimHardware`` with a simulated modem (a pty speaking AT commands, driven by the real
   ``GsmModem`` driver) and ``escalation.sms_numbers``; the broker is stopped, so a press
   texts at once. The simulated modem is subclassed here to stamp every command line it
   receives with ``time.monotonic()`` (same process as the press). Baselines from the same
   run: the raw pty round trip to the simulated modem, and ``GsmModem.send_sms()`` -> first
   AT command with the driver alone (no Site);
2. press -> subscriber (broker up) with the modem healthy vs the modem stalled
   (``set_silent(True)``) while every press starts an escalation, to show that the core loop
   never waits for the modem. Context: the same without escalation, and bare paho QoS 1
   publish -> subscriber.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    SUBSCRIBER,
    RemoteSubscriber,
    ShelterSite,
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
    shelter_devices,
    step,
    summary_ms,
    verdict,
)
from tests.support.mqtt import Mosquitto
from tests.support.wait import wait_until

SMS_TO = "+821011112222"
ADDRESS = "서울특별시 강남구 테헤란로 123"  # Korean: the SMS goes out in UCS2, as in production
FIRST_SMS_COMMAND = "AT+CMGF=1"
RESTORE_CHARSET = 'AT+CSCS="GSM"'  # the driver's last command after a UCS2 SMS
WARMUP = 3

# Targets (see bench/README.md): "about equal". A core loop that waited for the modem would
# lose at least the driver's read timeout (50 ms) and up to its command timeout (2 s).
TARGET_STALLED_P50_RATIO = 1.25
TARGET_STALLED_P99_OVER_MS = 5.0

# The stalled run must outlive the driver's command timeout (2 s) and its AT probe (2 s),
# after which it reports the modem fault; the full run also sees re-init attempts (1 s, 2 s).
MIN_PRESS_GAP_S = 0.04

QUICK = {"presses": 10, "driver_n": 5, "stall_span_s": 5.0}
FULL = {"presses": 200, "driver_n": 50, "stall_span_s": 8.0}


# --------------------------------------------------------------------------- simulated modem


def stamped_modem_class() -> type:
    """A SimulatedModem that stamps every command line it receives (monotonic, line) and can
    signal the first line starting with a given prefix."""
    from simulator.modem_device import SimulatedModem

    class StampedModem(SimulatedModem):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.stamps: list[tuple[float, str]] = []
            self.hit = threading.Event()
            self.hit_t = 0.0
            self._watch: str | None = None
            super().__init__(*args, **kwargs)

        def arm(self, prefix: str) -> None:
            self.hit.clear()
            self._watch = prefix.upper()

        def _command(self, line: str) -> None:  # serving thread, modem lock held
            t = time.monotonic()
            self.stamps.append((t, line))
            watch = self._watch
            if watch is not None and line.upper().startswith(watch):
                self._watch = None
                self.hit_t = t
                self.hit.set()
            super()._command(line)

    return StampedModem


def bench_hardware() -> Any:
    """SimHardware whose modem is a StampedModem (same wiring as SimModemHardware)."""
    from simulator.factories.modem import SimModemHardware
    from simulator.hardware import SimHardware

    modem_class = stamped_modem_class()
    return SimHardware(
        factories={"modem": lambda hw: SimModemHardware(hw, modem_class=modem_class)}
    )


# --------------------------------------------------------------------------- site


def shelter_config(
    site_id: str, broker_url: str, data_dir: Path, escalate_after_s: float
) -> dict[str, Any]:
    """config/examples/shelter.yaml's devices plus a modem and an SMS number; debounce 0;
    chatter detection off (the benchmark presses many times a second on purpose)."""
    return {
        "site": {"id": site_id, "address": ADDRESS, "cameras": ["cam-1"]},
        "broker": {"url": broker_url, "keepalive_s": 30, "reconnect": {"min_s": 1, "max_s": 120}},
        "data_dir": str(data_dir),
        "devices": {**shelter_devices(0), "modem": {"url": "/dev/null"}},
        "escalation": {"escalate_after_s": escalate_after_s, "sms_numbers": [SMS_TO]},
    }


class EscSite(ShelterSite):
    """A real Site on BenchHardware (stamped modem), its core loop on a thread."""

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        super().__init__(cfg_dict, bench_hardware(), keys={})
        self.fb = self.site.devices["modem"]
        wait_until(lambda: self.modem is not None, 15, 0.005, "simulated modem up")
        wait_until(self._ready, 20, 0.01, "site online, outbox empty, modem healthy")

    def _ready(self) -> bool:
        s, fb = self.site, self.fb
        return bool(
            self.call(
                lambda: (
                    s.outbox.online
                    and len(s.store) == 0
                    and fb.health is not None
                    and fb.health["ok"]
                    and fb.health["registered"]
                )
            )
        )

    def online(self) -> bool:
        s = self.site
        return bool(self.call(lambda: s.outbox.online))

    def escalation_started(self) -> bool:
        esc, m = self.fb.esc, self.shelter.machine

        def check() -> bool:
            run = esc.run
            return run is not None and run.started and run.alarm_id == m.s.alarm_id

        return bool(self.call(check))

    def sms_done(self, stamps0: int, sms0: int) -> bool:
        """The SMS of this press is submitted, its result is back at the core, and the driver
        has restored the charset (its last command for a UCS2 text)."""
        esc = self.fb.esc
        if len(self.modem.snapshot()["sms"]) <= sms0:
            return False
        if not self.call(lambda: esc.run is None or not esc.run.pending):
            return False
        lines = [line.upper() for _, line in self.modem.stamps[stamps0:]]
        cmgs = next((i for i, x in enumerate(lines) if x.startswith("AT+CMGS=")), None)
        return cmgs is not None and RESTORE_CHARSET.upper() in lines[cmgs:]


# --------------------------------------------------------------------------- 1. baselines


def pty_round_trip(n: int) -> dict[str, Any]:
    """``AT+CMGF=1\\r`` written straight to a simulated modem's pty (pyserial): until the
    modem has the command line, and until its ``OK`` is read back."""
    import serial

    sim = stamped_modem_class()(echo=False)
    port = serial.serial_for_url(sim.port, baudrate=115200, timeout=1.0)
    rec, reply = [], []
    try:
        for i in range(10 + n):
            sim.arm(FIRST_SMS_COMMAND)
            t0 = time.monotonic()
            port.write(FIRST_SMS_COMMAND.encode() + b"\r")
            if not sim.hit.wait(5):
                raise TimeoutError("simulated modem did not get the command")
            data = b""
            while not data.endswith(b"OK\r\n"):
                chunk = port.read(port.in_waiting or 1)
                if not chunk:
                    raise TimeoutError(f"no OK from the simulated modem: {data!r}")
                data += chunk
            t_reply = time.monotonic()
            if i >= 10:
                rec.append(sim.hit_t - t0)
                reply.append(t_reply - t0)
    finally:
        port.close()
        sim.close()
    return {"write_to_received": summary_ms(rec), "write_to_ok_read": summary_ms(reply)}


class _SmsListener:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.health_ok = threading.Event()

    def on_sms_result(self, request_id: str, ok: bool, detail: str) -> None:
        self.ok = ok
        self.done.set()

    def on_call_result(self, *a: Any) -> None:
        pass

    def on_health(self, health: Any) -> None:
        if health.ok:
            self.health_ok.set()

    def on_modem_fault(self, *a: Any) -> None:
        pass

    def on_modem_recovered(self) -> None:
        pass

    def on_urc(self, *a: Any) -> None:
        pass


def driver_sms_latency(n: int, rng: random.Random) -> dict[str, Any]:
    """``GsmModem.send_sms()`` -> the simulated modem receives ``AT+CMGF=1``: the driver
    alone (its worker notices the request, then writes), at a random phase of its idle
    read cycle."""
    from drivers.modem import GsmModem, ModemConfig

    sim = stamped_modem_class()()
    listener = _SmsListener()
    cfg = ModemConfig(check_interval_s=3600)
    modem = GsmModem(sim.port, listener, config=cfg)
    modem.start()
    samples = []
    failures = 0
    try:
        if not listener.health_ok.wait(15):
            raise TimeoutError("modem driver not ready")
        for i in range(2 + n):
            pause(0.01 + rng.uniform(0, 2 * cfg.read_timeout_s))
            listener.done.clear()
            sim.arm(FIRST_SMS_COMMAND)
            t0 = time.monotonic()
            modem.send_sms(f"bench-{i}", SMS_TO, f"[ansim] bench {i} {ADDRESS}")
            if not sim.hit.wait(10) or not listener.done.wait(30):
                raise TimeoutError("driver SMS did not go out")
            failures += not listener.ok
            # its charset restore after a UCS2 text
            wait_until(
                lambda: sim.stamps[-1][1].upper() == RESTORE_CHARSET.upper(), 10, 0.001, "restore"
            )
            if i >= 2:
                samples.append(sim.hit_t - t0)
    finally:
        modem.close()
        sim.close()
    return {
        **summary_ms(samples),
        "read_timeout_ms": round(cfg.read_timeout_s * 1000, 1),
        "failed": failures,
    }


# --------------------------------------------------------------------------- 2. SMS latency


def sms_latency(
    workdir: Path, n: int, rng: random.Random, broker_factory: Callable[[], Any]
) -> dict[str, Any]:
    """Press -> first AT command of the SMS, broker down (the site is offline)."""
    own = broker_factory()  # this run stops its broker: its own, not the shared one
    es: EscSite | None = None
    try:
        es = EscSite(shelter_config("bench-esc-sms", own.url, workdir / "sms", 15))
        own.stop()
        wait_until(lambda: not es.online(), 15, 0.01, "site offline after the broker stopped")
        modem = es.modem
        to_at, to_cmgs, to_submit = [], [], []
        failed = 0
        for i in range(WARMUP + n):
            # A random phase against the driver's idle read cycle (read_timeout_s).
            pause(0.005 + rng.uniform(0, 0.1))
            stamps0 = len(modem.stamps)
            sms0 = len(modem.snapshot()["sms"])
            modem.arm(FIRST_SMS_COMMAND)
            t0 = time.monotonic()
            es.hw.set_input("panic-1", True)
            if not modem.hit.wait(10):
                raise TimeoutError(f"no {FIRST_SMS_COMMAND} after the press (press {i})")
            t_at = modem.hit_t
            wait_until(lambda s0=stamps0, m0=sms0: es.sms_done(s0, m0), 20, 0.005, "SMS done")
            t_cmgs = next(t for t, x in modem.stamps[stamps0:] if x.upper().startswith("AT+CMGS="))
            record = modem.snapshot()["sms"][sms0]
            failed += not record.get("ok", False)
            es.clear(drained=False, poll_s=0.002)
            if i >= WARMUP:
                to_at.append(t_at - t0)
                to_cmgs.append(t_cmgs - t0)
                to_submit.append(record["t"] - t0)
        pending = es.call(lambda: len(es.site.store))
    finally:
        if es is not None:
            es.close()
        own.close()
    return {
        "n": n,
        "debounce_ms": 0,
        "broker": "stopped (site offline)",
        "press_to_first_at": summary_ms(to_at),
        "press_to_cmgs": summary_ms(to_cmgs),
        "press_to_sms_submitted": summary_ms(to_submit),
        "sms_failed": failed,
        "events_waiting_in_outbox": pending,
    }


# --------------------------------------------------------------------------- 3. isolation


def press_latency(
    name: str,
    url: str,
    sub: RemoteSubscriber,
    workdir: Path,
    n: int,
    *,
    escalate_after_s: float,
    stall: bool,
    wait_sms: bool,
    gap_s: float,
) -> dict[str, Any]:
    """Press -> subscriber (broker up), alarm cleared by the reset key between presses; each
    press follows ``gap_s`` of quiet, the same in every run (an idle core answers a little
    slower than a busy one: the gap must not differ between the runs compared)."""
    site_id = f"bench-esc-{name.replace('_', '-')}"
    es = EscSite(shelter_config(site_id, url, workdir / name, escalate_after_s))
    modem = es.modem
    samples = []
    started = 0
    try:
        received0 = modem.snapshot()["commands_received"]
        if stall:
            modem.set_silent(True)
        t_stall = time.monotonic()
        for i in range(WARMUP + n):
            pause(gap_s)
            stamps0 = len(modem.stamps)
            sms0 = len(modem.snapshot()["sms"])
            latency = es.timed_press(sub)
            if i >= WARMUP:
                samples.append(latency)
                started += es.escalation_started()
            if wait_sms:
                wait_until(lambda s0=stamps0, m0=sms0: es.sms_done(s0, m0), 20, 0.005, "SMS done")
            if stall and i == 0:
                # Clearing the alarm cancels SMS still queued: keep the first one until the
                # driver has sent its first command, so the driver is stuck on the silent
                # modem (command timeout, AT probe, fault, re-init) for the whole run.
                wait_until(
                    lambda: modem.snapshot()["commands_received"] > received0,
                    10,
                    0.002,
                    "the driver writing to the silent modem",
                )
            es.clear(drained=True, poll_s=0.002)
        span = time.monotonic() - t_stall
        snap = modem.snapshot()
        fb = es.fb
        health = es.call(lambda: dict(fb.health or {}))
    finally:
        es.close()
    return {
        "n": n,
        "escalate_after_s": escalate_after_s,
        "modem_silent": stall,
        "press_gap_ms": round(gap_s * 1000, 1),
        "seconds": round(span, 2),
        "latency": summary_ms(samples),
        "escalations_started_at_press": started,
        "sms_sent": len([s for s in snap["sms"] if s.get("ok")]),
        "modem_commands_received": snap["commands_received"] - received0,
        "modem_health_at_end": health,
    }


# --------------------------------------------------------------------------- driver


def run(args: argparse.Namespace) -> dict[str, Any]:
    mode = QUICK if args.quick else FULL
    presses = option(args, mode, "presses")
    driver_n = option(args, mode, "driver_n")
    stall_span = option(args, mode, "stall_span_s")
    rng = random.Random(args.seed)
    results: dict[str, Any] = {}
    with session("ansim-bench-esc-", args, subscriber=SUBSCRIBER, stall_span_s=stall_span) as ss:
        b, sub, workdir, t_start = ss.broker, ss.sub, ss.workdir, ss.t_start
        results["meta"] = ss.meta

        def own_broker() -> Any:
            return Mosquitto(workdir / "broker-down").start()

        step(f"baselines: raw modem pty ({presses}), driver alone ({driver_n} SMS), paho")
        results["baseline"] = {
            "modem_pty_round_trip": pty_round_trip(presses),
            "driver_send_sms_to_first_at": driver_sms_latency(driver_n, rng),
            "mqtt_latency": bare_latency(b.host, b.port, sub, max(presses, 50), True),
        }
        step(f"press -> first AT of the SMS, broker down ({presses} presses)")
        results["sms_latency"] = sms_latency(workdir, presses, rng, own_broker)

        # The same quiet gap before every press in every run; long enough that the
        # stalled run outlives the driver's command timeout, its AT probe (-> modem
        # fault) and a re-init attempt.
        gap = max(MIN_PRESS_GAP_S, stall_span / (presses + WARMUP))
        runs = {}
        for name, esc_s, stall, wait_sms, what in (
            ("healthy", 0.0, False, True, "modem healthy, SMS per press"),
            ("stalled", 0.0, True, False, "modem silent, escalation per press"),
            ("no_escalation", 15.0, False, False, "modem healthy, no escalation"),
        ):
            step(f"press -> subscriber, {what} ({presses} presses)")
            runs[name] = press_latency(
                name,
                b.url,
                sub,
                workdir,
                presses,
                escalate_after_s=esc_s,
                stall=stall,
                wait_sms=wait_sms,
                gap_s=gap,
            )
        h, s, q = (runs[k]["latency"] for k in ("healthy", "stalled", "no_escalation"))
        p50_ratio = round(s["p50_ms"] / h["p50_ms"], 3)
        p99_over = round(s["p99_ms"] - h["p99_ms"], 3)
        passed = p50_ratio <= TARGET_STALLED_P50_RATIO and p99_over <= (TARGET_STALLED_P99_OVER_MS)
        results["isolation"] = {
            **runs,
            "stalled_vs_healthy_p50_ratio": p50_ratio,
            "stalled_vs_healthy_p99_ratio": round(s["p99_ms"] / h["p99_ms"], 3),
            "stalled_minus_healthy_p99_ms": p99_over,
            "stalled_vs_no_escalation_p50_ratio": round(s["p50_ms"] / q["p50_ms"], 3),
            "stalled_vs_no_escalation_p99_ratio": round(s["p99_ms"] / q["p99_ms"], 3),
            "target_p50_ratio": TARGET_STALLED_P50_RATIO,
            "target_p99_over_ms": TARGET_STALLED_P99_OVER_MS,
            "passed": passed,
        }
    results = conclude(results, t_start, core_never_waits_for_modem=results["isolation"]["passed"])
    results["headline"] = headlines(results)
    return results


def headlines(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures ``python -m bench`` puts in its one table."""
    sl, iso = r["sms_latency"], r["isolation"]
    drv = r["baseline"]["driver_send_sms_to_first_at"]
    h, s = iso["healthy"]["latency"], iso["stalled"]["latency"]
    return [
        headline(
            "escalation: press -> first AT of the SMS p99, link down",
            sl["press_to_first_at"]["p99_ms"],
            "ms",
            "driver alone p99",
            drv["p99_ms"],
        ),
        headline(
            "escalation: press -> subscriber p99, modem stalled",
            s["p99_ms"],
            "ms",
            "modem healthy p99",
            h["p99_ms"],
            f"<= healthy p99 + {iso['target_p99_over_ms']:g} ms, "
            f"p50 <= {iso['target_p50_ratio']:g}x",
            iso["passed"],
        ),
    ]


def table(r: dict[str, Any]) -> str:
    b, sl, iso = r["baseline"], r["sms_latency"], r["isolation"]
    h, s, q = iso["healthy"], iso["stalled"], iso["no_escalation"]
    drv = b["driver_send_sms_to_first_at"]
    rows = [
        (
            "raw pty: AT+CMGF=1 -> simulated modem",
            p50_p99(b["modem_pty_round_trip"]["write_to_received"]),
            f"-> OK read back: {p50_p99(b['modem_pty_round_trip']['write_to_ok_read'])}",
            "",
            "",
        ),
        (
            "GsmModem.send_sms() -> first AT (driver)",
            p50_p99(drv),
            f"n={drv['n']}; driver alone; its idle read cycle is {drv['read_timeout_ms']:.0f} ms",
            "",
            "",
        ),
        (
            "bare paho QoS1 pub -> sub (other process)",
            p50_p99(b["mqtt_latency"]),
            f"n={b['mqtt_latency']['n']}, NODELAY",
            "",
            "",
        ),
        (
            "press -> first AT of SMS, broker down",
            p50_p99(sl["press_to_first_at"]),
            f"n={sl['n']}, debounce 0; -> AT+CMGS: {p50_p99(sl['press_to_cmgs'])}; -> submitted: "
            f"{p50_p99(sl['press_to_sms_submitted'])}; failed {sl['sms_failed']}",
            "(report)",
            "",
        ),
        (
            "press -> subscriber, modem healthy",
            p50_p99(h["latency"]),
            f"n={h['n']}; every press texts (escalate_after_s 0); {h['sms_sent']} SMS sent",
            "",
            "",
        ),
        (
            "press -> subscriber, modem stalled",
            p50_p99(s["latency"]),
            f"n={s['n']}; set_silent(True); escalation started at "
            f"{s['escalations_started_at_press']} presses; over {s['seconds']:.1f} s the modem "
            f"got {s['modem_commands_received']} unanswered commands; driver fault reported: "
            f"{s['modem_health_at_end'].get('ok') is False}",
            "",
            "",
        ),
        (
            "press -> subscriber, no escalation",
            p50_p99(q["latency"]),
            f"n={q['n']}; context: escalate_after_s 15, nothing sent",
            "",
            "",
        ),
        (
            "stalled vs healthy",
            f"p50 x{iso['stalled_vs_healthy_p50_ratio']:.2f}, p99 "
            f"{iso['stalled_minus_healthy_p99_ms']:+.2f} ms",
            f"p99 x{iso['stalled_vs_healthy_p99_ratio']:.2f}; vs no escalation: p50 "
            f"x{iso['stalled_vs_no_escalation_p50_ratio']:.2f}, p99 "
            f"x{iso['stalled_vs_no_escalation_p99_ratio']:.2f}",
            f"p50 <= x{iso['target_p50_ratio']:.2f}, p99 <= +{iso['target_p99_over_ms']:.0f} ms",
            verdict(iso["passed"]),
        ),
    ]
    return report_table("escalation", r["meta"], [f"subscriber: {r['meta']['subscriber']}"], rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = arg_parser("bench.bench_escalation", __doc__)
    ap.add_argument("--presses", type=int, help="presses per measurement (200; quick 10)")
    add_quick_and_json(ap, "small N, under ~30 s")
    ap.add_argument("--driver-n", type=int, help="SMS sent by the driver alone (50; quick 5)")
    ap.add_argument(
        "--stall-span-s",
        type=float,
        help="minimum length of each press run, so the stalled one outlives the driver's "
        "timeouts (8; quick 5)",
    )
    add_seed_and_keep(ap)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv, parse_args, run, table)


if __name__ == "__main__":
    sys.exit(main())
