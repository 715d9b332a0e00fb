"""The one site harness of tests and benches: a real ``edge.site.Site`` on ``SimHardware``.

Two ways to drive it:

``SteppedSite``   no threads and no broker: a ``FakeClock`` and ``loop.run_pending()`` move
                  everything, a :class:`FakeUplink` records publishes (``connect()``,
                  ``ack_mid()``, ``command()`` play the broker's part).
``ThreadedSite``  the core loop on a thread with the real uplink (a real broker, or a dead
                  URL), the wall clock or a ``FakeClock`` the test moves (``advance()``);
                  optionally under cProfile (benches).
``SimProcess``    ``ansim-edge sim`` as a child process (to SIGKILL it).

Both take a ``SiteConfig`` or a config dict; ``site_dict`` builds the stock shelter config,
``make_keys`` / ``command`` the keys and signed commands the centre uses.
"""

from __future__ import annotations

import cProfile
import functools
import json
import os
import resource
import sqlite3
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.config import SiteConfig, TrustedKey, parse_config
from edge.core.clock import FakeClock, rfc3339
from edge.core.commands import LoadedKey, load_keys
from edge.core.signing import generate_keypair, load_private_key, sign_command
from edge.site import Site
from simulator.factories import lockers as locker_hw
from simulator.factories import modem as modem_hw
from simulator.hardware import SimHardware
from simulator.modem_device import SimTimings
from tests.support.mqtt import free_port
from tests.support.process import ChildProcess
from tests.support.wait import wait_until

__all__ = [
    "REPO",
    "SHELTER_BUTTON",
    "FakeUplink",
    "Keys",
    "Published",
    "SimProcess",
    "SteppedSite",
    "ThreadedSite",
    "centre_key",
    "command",
    "locker_bank",
    "make_keys",
    "on_fake_clock",
    "shelter_config",
    "signed",
    "site_dict",
]

REPO = Path(__file__).resolve().parent.parent.parent


# --------------------------------------------------------------------------- config, keys


@dataclass
class Keys:
    dir: Path
    centre: Ed25519PrivateKey
    tech: Ed25519PrivateKey
    stranger: Ed25519PrivateKey

    def trusted(self) -> list[dict[str, Any]]:
        return [
            {"key_id": "centre", "public_key": str(self.dir / "centre.pub"), "commands": ["*"]},
            {
                "key_id": "tech",
                "public_key": str(self.dir / "tech.pub"),
                "commands": ["site.test_mode", "locker.open"],
            },
        ]


def make_keys(d: Path) -> Keys:
    for name in ("centre", "tech", "stranger"):
        generate_keypair(d / f"{name}.key", d / f"{name}.pub")
    return Keys(
        d,
        load_private_key(d / "centre.key"),
        load_private_key(d / "tech.key"),
        load_private_key(d / "stranger.key"),
    )


def site_dict(
    site_id: str,
    broker_url: str,
    data_dir: Path,
    keys: Keys,
    *,
    protocol: str = "3.1.1",
    debounce_ms: int = 20,
    mode: str = "silent",
    chatter_max: int = 1000,  # the bursts in these tests are deliberate, not chatter
    **broker_extra: Any,
) -> dict[str, Any]:
    """The stock shelter: panic button ``panic-1``, the three lamps, a reset key."""
    return {
        "site": {"id": site_id, "address": "서울특별시 중구 세종대로 110", "cameras": ["cam-1"]},
        "broker": {
            "url": broker_url,
            "protocol": protocol,
            "keepalive_s": 5,
            "reconnect": {"min_s": 0.05, "max_s": 0.5},
            **broker_extra,
        },
        "data_dir": str(data_dir),
        "keys": keys.trusted(),
        "devices": {
            "panic_buttons": [
                {
                    "name": "panic-1",
                    "pin": 17,
                    "contact": "nc",
                    "debounce_ms": debounce_ms,
                    "mode": mode,
                    "chatter_max": chatter_max,
                }
            ],
            "sent_led": {"pin": 22},
            "ack_led": {"pin": 23},
            "buzzer": {"pin": 24},
            "reset_key": {"pin": 27, "contact": "no", "debounce_ms": debounce_ms},
        },
    }


def locker_site_dict(
    site_id: str, broker_url: str, data_dir: Path, keys: Keys, **lockers: Any
) -> dict[str, Any]:
    """A site with a locker bank only (``lockers``: its fields under ``devices.lockers``),
    on a broker it reconnects to quickly."""
    return {
        "site": {"id": site_id},
        "broker": {"url": broker_url, "keepalive_s": 5, "reconnect": {"min_s": 0.05, "max_s": 0.5}},
        "data_dir": str(data_dir),
        "keys": keys.trusted(),
        "devices": {"lockers": lockers},
    }


def command(
    name: str,
    args: dict[str, Any],
    key: Ed25519PrivateKey | None,
    key_id: str = "centre",
    *,
    site: str,
    ttl_s: float = 60.0,
    command_id: str | None = None,
) -> dict[str, Any]:
    """A command for ``site`` (its site.id), signed with ``key`` (None: unsigned)."""
    cmd = {
        "command_id": command_id or str(uuid.uuid4()),
        "site": site,
        "name": name,
        "args": args,
        "expires_at": rfc3339(datetime.now(UTC) + timedelta(seconds=ttl_s)),
        "key_id": key_id,
    }
    return sign_command(cmd, key) if key is not None else cmd


SHELTER_BUTTON = "panic-counter"


def shelter_config(
    tmp_path: Path,
    *,
    mode: str = "silent",
    hold_ms: int = 0,
    contact: str = "nc",
    debounce_ms: int = 50,
    keys: list[dict[str, Any]] | None = None,
) -> SiteConfig:
    """A shelter without a broker (for SteppedSite): button ``SHELTER_BUTTON``, the three
    lamps, a reset key; data in ``tmp_path / "data"``."""
    return parse_config(
        {
            "site": {"id": "shelter-0001", "cameras": ["cctv-1-counter", "cctv-1-door"]},
            "data_dir": str(tmp_path / "data"),
            "keys": keys or [],
            "devices": {
                "panic_buttons": [
                    {
                        "name": SHELTER_BUTTON,
                        "pin": 17,
                        "contact": contact,
                        "debounce_ms": debounce_ms,
                        "hold_ms": hold_ms,
                        "mode": mode,
                    }
                ],
                "sent_led": {"pin": 22},
                "ack_led": {"pin": 23},
                "buzzer": {"pin": 24},
                "reset_key": {"pin": 27, "contact": "no", "debounce_ms": 50},
            },
        }
    )


def centre_key(d: Path) -> tuple[Ed25519PrivateKey, dict[str, LoadedKey]]:
    """A fresh centre key pair in ``d``: the private key and the site's loaded trust list."""
    priv, pub = d / "centre.key", d / "centre.pub"
    generate_keypair(priv, pub)
    return load_private_key(priv), load_keys(
        [TrustedKey(key_id="centre", public_key=pub, commands=["*"])]
    )


def signed(
    key: Any,
    name: str,
    args: dict[str, Any],
    command_id: str,
    *,
    site: str = "shelter-0001",
    ttl: timedelta = timedelta(minutes=10),
) -> dict[str, Any]:
    """A centre command for ``shelter_config``'s site, expiring ``ttl`` after FakeClock's
    start."""
    start = FakeClock().now()
    return sign_command(
        {
            "command_id": command_id,
            "site": site,
            "name": name,
            "args": args,
            "expires_at": rfc3339(start + ttl),
            "key_id": "centre",
        },
        key,
    )


def _config(cfg: SiteConfig | dict[str, Any]) -> SiteConfig:
    return cfg if isinstance(cfg, SiteConfig) else parse_config(cfg)


# --------------------------------------------------------------------------- the fake uplink


@dataclass
class Published:
    mid: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    committed: bool  # for outbox rows: already committed (seen by another connection)?

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed


class FakeUplink:
    """Stands in for edge.core.uplink.Uplink: records publishes, returns mids while connected.

    ``check_commits``: note for each outbox row whether it was committed (read through a
    connection of its own); off where the data dir cannot be read (a failing disk).
    """

    def __init__(
        self,
        db_path: Path,
        cfg: Any,
        *,
        client_id: str,
        post: Callable[[Callable[[], None]], None],
        listener: Any,
        subscriptions: list[str],
        will: Callable[[], tuple[str, bytes]],
        rng: Any = None,
        post_message: Callable[[Callable[[], None]], object] | None = None,
        max_payload_bytes: int | None = None,
        check_commits: bool = True,
        heartbeat: str | None = None,
    ) -> None:
        self.db_path = db_path
        self.check_commits = check_commits
        self.address = cfg.addresses[0]  # the broker address "in use"
        self.listener = listener
        self.post_message = post_message or post
        self.max_payload_bytes = max_payload_bytes
        self.client_id = client_id
        self.subscriptions = subscriptions
        self.will = will
        self.connected = False
        self.started = False
        self.stopped_with: tuple[str, bytes] | None = None
        self.published: list[Published] = []
        self._mid = 0

    def _committed(self, payload: bytes) -> bool:
        db = sqlite3.connect(self.db_path)
        try:
            row = db.execute("SELECT COUNT(*) FROM outbox WHERE payload = ?", (payload,)).fetchone()
            return int(row[0]) > 0
        finally:
            db.close()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        if not self.connected:
            return None
        self._mid += 1
        from_outbox = "/events/" in topic or topic.endswith("/results")
        committed = self._committed(payload) if from_outbox and self.check_commits else True
        self.published.append(Published(self._mid, topic, payload, qos, retain, committed))
        return self._mid

    def start(self) -> None:
        self.started = True

    def check(self) -> None:
        pass

    def stop(self, last: tuple[str, bytes] | None = None, timeout_s: float = 2.0) -> None:
        self.stopped_with = last
        self.connected = False


# --------------------------------------------------------------------------- stepped


class SteppedSite:
    """A Site with a FakeClock and a FakeUplink, driven step by step on the test's thread."""

    def __init__(
        self,
        cfg: SiteConfig | dict[str, Any],
        keys: dict[str, LoadedKey] | None = None,
        *,
        clock: FakeClock | None = None,
        hw: SimHardware | None = None,
        check_commits: bool = True,
        **site_kw: Any,
    ) -> None:
        self.cfg = _config(cfg)
        self.check_commits = check_commits
        self.acked: set[int] = set()
        self.clock = clock or FakeClock()
        self.hw = hw if hw is not None else SimHardware(monotonic=self.clock.monotonic)
        self.uplinks: list[FakeUplink] = []
        site_kw.setdefault("uplink_factory", self._make_uplink)
        self.site = Site(
            self.cfg,
            self.hw,
            clock=self.clock,
            keys=keys if keys is not None else {},
            **site_kw,
        )
        buttons = self.cfg.devices.panic_buttons
        self.button = buttons[0].name if buttons else ""
        self.closed = False

    def _make_uplink(self, cfg: Any, **kw: Any) -> FakeUplink:
        up = FakeUplink(self.db, cfg, check_commits=self.check_commits, **kw)
        self.uplinks.append(up)
        return up

    @property
    def uplink(self) -> FakeUplink:
        [up] = self.uplinks
        return up

    @property
    def db(self) -> Path:
        return self.cfg.data_dir / "ansim-edge.db"

    # ---- driving ----
    def start(self) -> None:
        self.site.start()
        self.site.loop.run_pending()

    def run(self) -> None:
        self.site.loop.run_pending()

    def step(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.site.loop.run_pending()

    def set_input(self, name: str, active: bool) -> None:
        self.hw.set_input(name, active)
        self.site.loop.run_pending()

    def press(self, name: str | None = None, debounce_s: float = 0.05) -> None:
        """Press (and hold) a panic button (default: the first) past its debounce time."""
        self.set_input(name or self.button, True)
        self.step(debounce_s + 0.001)

    def release(self, name: str | None = None, debounce_s: float = 0.05) -> None:
        self.set_input(name or self.button, False)
        self.step(debounce_s + 0.001)

    def connect(self) -> None:
        self.uplink.connected = True
        self.site.loop.post(self.site.uplink_connected)
        self.run()

    def disconnect(self) -> None:
        self.uplink.connected = False
        self.site.loop.post(lambda: self.site.uplink_disconnected("test"))
        self.run()

    def ack_mid(self, mid: int, ok: bool = True, reason: str | None = None) -> None:
        self.site.loop.post(lambda: self.site.uplink_acked(mid, ok, reason))
        self.run()

    def ack_all(self) -> None:
        """The broker acknowledges every QoS 1 publish so far (until nothing new)."""
        while True:
            new = [p.mid for p in self.uplink.published if p.mid not in self.acked]
            if not new:
                return
            for mid in new:
                self.acked.add(mid)
                self.site.loop.post(functools.partial(self.site.uplink_acked, mid, True))
            self.run()

    def ack_event(self, event_id: str) -> None:
        [p] = [p for p in self.uplink.published if p.json.get("event_id") == event_id][-1:]
        self.ack_mid(p.mid)

    def command(self, payload: dict[str, Any]) -> None:
        topic = self.site.topics.command(payload["name"])
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.site.loop.post(lambda: self.site.uplink_message(topic, data))
        self.run()

    def shutdown(self) -> None:
        if self.closed:
            return
        # Offline first: with a FakeClock the online flush loop would wait forever.
        if self.site.outbox.online and self.uplinks:
            self.disconnect()
        self.site.shutdown()
        self.hw.close()
        self.closed = True

    # ---- looking ----
    def stored_events(self, type_: str | None = None) -> list[dict[str, Any]]:
        rows = [
            json.loads(p.payload)
            for p in self.site.store.pending(1_000_000)
            if "/events/" in p.topic
        ]
        return [r for r in rows if type_ is None or r["type"] == type_]

    def published_events(self, type_: str | None = None) -> list[dict[str, Any]]:
        out = []
        for up in self.uplinks:
            for p in up.published:
                if "/events/" in p.topic and (type_ is None or p.json["type"] == type_):
                    out.append(p.json)
        return out

    def results(self) -> list[dict[str, Any]]:
        return [p.json for p in self.uplink.published if p.topic.endswith("/results")]

    def status(self) -> dict[str, Any]:
        """The last status the site published."""
        return [p.json for p in self.uplink.published if p.topic.endswith("/status")][-1]

    def outputs(self) -> dict[str, bool]:
        return {name: out.is_on for name, out in self.site.outputs.items()}

    def output(self, name: str) -> bool:
        return self.site.outputs[name].is_on

    def transitions(self, name: str) -> list[bool]:
        snap = self.hw.snapshot()["outputs"][name]["transitions"]
        return [t["on"] for t in snap]

    @property
    def alarm(self) -> dict[str, Any]:
        state = self.site.states.get("alarm")
        assert state is not None
        return state


# --------------------------------------------------------------------------- threaded


class ThreadedSite:
    """A Site with its core loop on a thread and the real uplink; a context manager.

    ``clock``: a FakeClock the test moves with :meth:`advance` (default: the wall clock).
    ``profile``: run the loop under cProfile and dump the stats there when it ends.
    ``start=False``: build the site but start its thread only with :meth:`start` (e.g. to
    set the simulated modem's timings first).
    """

    def __init__(
        self,
        cfg: SiteConfig | dict[str, Any],
        *,
        clock: FakeClock | None = None,
        hw: SimHardware | None = None,
        profile: Path | None = None,
        start: bool = True,
        **site_kw: Any,
    ) -> None:
        self.cfg = _config(cfg)
        self.clock = clock
        if hw is None:
            hw = SimHardware(monotonic=clock.monotonic) if clock else SimHardware()
        self.hw = hw
        if clock is not None:
            site_kw["clock"] = clock
        self.site = Site(self.cfg, self.hw, **site_kw)
        self.profile = profile
        self.thread = threading.Thread(
            target=self._run, name=f"site-{self.cfg.site.id}", daemon=True
        )
        if start:
            self.thread.start()

    def start(self) -> None:
        """Start the core loop (after ``start=False``: set up the simulated devices first)."""
        self.thread.start()

    def _run(self) -> None:
        if self.profile is None:
            self.site.run()
            return
        prof = cProfile.Profile()
        prof.enable()
        try:
            self.site.run()
        finally:
            prof.disable()
            prof.dump_stats(str(self.profile))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.site.stop_soon()
        self.thread.join(15)
        self.hw.close()
        assert not self.thread.is_alive(), "the core loop did not stop"

    # ---- driving ----
    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` on the core thread; return its result."""
        return self.site.call(fn, timeout=timeout)

    def sync(self) -> None:
        """Two round trips through the core loop: everything posted before is handled."""
        self.call(lambda: None)
        self.call(lambda: None)

    def advance(self, seconds: float) -> None:
        assert self.clock is not None, "advance() needs a FakeClock"
        self.clock.advance(seconds)
        self.sync()

    def set_input(self, name: str, active: bool) -> None:
        self.hw.set_input(name, active)
        self.sync()

    def press(self, active: bool = True, name: str = "panic-1") -> None:
        self.hw.set_input(name, active)

    def inject(self, payload: dict[str, Any]) -> None:
        """A command as the uplink hands it over (from paho's thread)."""
        topic = self.site.topics.command(payload["name"])
        data = json.dumps(payload).encode()
        self.site.loop.post(lambda: self.site.uplink_message(topic, data))

    # ---- looking (the store holds what the broker has not acknowledged) ----
    def state(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.call(lambda: self.site.states.get(name)))

    def alarm(self) -> dict[str, Any]:
        return self.state("alarm")

    def output(self, name: str) -> bool:
        return bool(self.hw.snapshot()["outputs"][name]["on"])

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        def read() -> list[tuple[str, dict[str, Any]]]:
            return [(p.topic, json.loads(p.payload)) for p in self.site.store.pending(1_000_000)]

        return cast(list[tuple[str, dict[str, Any]]], self.call(read))

    def events(self, type_: str | None = None, after_seq: int = 0) -> list[dict[str, Any]]:
        return [
            e
            for topic, e in self.pending()
            if "/events/" in topic
            and (type_ is None or e["type"] == type_)
            and e["seq"] > after_seq
        ]

    def result(self, command_id: str) -> dict[str, Any] | None:
        found = [r for t, r in self.pending() if t.endswith("/results")]
        return next((r for r in found if r["command_id"] == command_id), None)

    def last_seq(self) -> int:
        return cast(int, self.call(self.site.store.last_seq))

    def escalated(self, after_seq: int = 0, **match: Any) -> list[dict[str, Any]]:
        """The data of the ``alarm.escalated`` events after ``after_seq`` matching ``match``."""
        return [
            e["data"]
            for e in self.events("alarm.escalated", after_seq)
            if all(e["data"].get(k) == v for k, v in match.items())
        ]

    # ---- lockers ----
    def bus(self, name: str) -> Any:
        """The simulated board bus ``name`` (a SimulatedCu16Bus or SimulatedModbusBus)."""
        wait_until(lambda: name in locker_hw.of(self.hw).buses, message=f"simulated bus {name}")
        return locker_hw.of(self.hw).buses[name]

    def locker(self, n: int) -> dict[str, Any]:
        """Locker ``n`` as the bank reports it (state, door, ...)."""
        bank = self.site.devices.get("lockers")
        assert bank is not None
        return dict(self.call(lambda: bank.machine.public_state(n)))

    def doors_known(self) -> bool:
        bank = self.site.devices.get("lockers")
        assert bank is not None
        states = self.call(lambda: dict(bank.machine.lockers))
        return all(lk.door_open is not None for lk in states.values())

    # ---- the simulated modem ----
    @property
    def modem(self) -> Any:
        """The SimulatedModem (None without a modem in the config)."""
        return modem_hw.sim_of(self.hw)

    def sms(self) -> list[dict[str, Any]]:
        return list(self.modem.snapshot()["sms"])

    def calls(self) -> list[dict[str, Any]]:
        return list(self.modem.snapshot()["calls"])


def locker_bank(
    cfg: SiteConfig | dict[str, Any], *, clock: FakeClock | None = None
) -> ThreadedSite:
    """A started ThreadedSite whose locker bank is ready: every door read once, the code
    reader's port open (codes typed before it is open are lost, as on a real line)."""
    ts = ThreadedSite(cfg, clock=clock)
    try:
        wait_until(ts.doors_known, message="first reading of every door")
        bank = ts.site.devices.get("lockers")
        reader: Any = bank.reader if bank is not None else None
        if reader is not None:
            wait_until(lambda: reader.stats()["connected"], message="code reader open")
    except BaseException:
        ts.close()
        raise
    return ts


def on_fake_clock(
    cfg: SiteConfig | dict[str, Any],
    *,
    start: datetime | None = None,
    mono: float = 1000.0,
    sms_delay_s: float | None = None,
) -> ThreadedSite:
    """A started ThreadedSite on a FakeClock at ``start`` (default now) and ``mono``;
    ``sms_delay_s``: the simulated modem takes that long to send an SMS."""
    clock = FakeClock(start=start or datetime.now(UTC), mono=mono)
    ts = ThreadedSite(cfg, clock=clock, start=False)
    if sms_delay_s is not None:
        ts.modem.timings = SimTimings(sms_delay_s=sms_delay_s)
    ts.start()
    ts.sync()
    return ts


# --------------------------------------------------------------------------- a child process


class SimProcess(ChildProcess):
    """`ansim-edge sim` as a real child process (for SIGKILL tests).

    Its output goes to ``log_path``, or with ``pipe=True`` through a pipe into ``lines``
    (a log file the sim writes itself would count against a file-size limit set on it).
    """

    def __init__(
        self, cfg_dict: dict[str, Any], workdir: Path, broker_url: str, *, pipe: bool = False
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:6]
        self.cfg_path = workdir / f"site-{name}.yaml"
        self.cfg_path.write_text(json.dumps(cfg_dict), encoding="utf-8")  # JSON is YAML
        self.port = free_port()
        self.log_path: Path | None = None if pipe else workdir / f"sim-{name}.log"
        self.lines: list[str] = []
        self.proc = self._spawn(
            [
                sys.executable,
                "-m",
                "edge.cli",
                "sim",
                "--config",
                str(self.cfg_path),
                "--broker",
                broker_url,
                "--control",
                f"127.0.0.1:{self.port}",
            ],
            self.log_path,
            append=False,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            new_session=False,
        )
        self._reader: threading.Thread | None = None
        if pipe:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        wait_until(self._api_up, timeout=20, message=f"sim control API up ({self.log_path})")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)

    @property
    def log(self) -> str:
        """What the sim wrote so far."""
        if self.log_path is None:
            return "\n".join(self.lines)
        return self.log_path.read_text("utf-8", "replace")

    def _api_up(self) -> bool:
        if self.proc.poll() is not None:
            self._join_reader()
            raise AssertionError(f"sim exited {self.proc.returncode}:\n{self.log}")
        try:
            self.get("/state")
            return True
        except OSError:
            return False

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def post(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def set_input(self, name: str, active: bool) -> None:
        self.post(f"/inputs/{name}", {"active": active})

    def file_size_limit(self, soft: int) -> None:
        """RLIMIT_FSIZE of the sim: writes beyond ``soft`` bytes fail (a full SD card)."""
        _, hard = resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE, (soft, hard))

    def kill(self, timeout: float = 10.0) -> int | None:
        rc = super().kill(timeout)
        self._join_reader()
        return rc

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM; the exit code (SIGKILL after ``timeout``)."""
        rc = self.stop(timeout)
        self._join_reader()
        assert rc is not None
        return rc

    def close(self) -> None:
        self.kill()
