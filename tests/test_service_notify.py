"""systemd integration (edge.service): READY only once outputs are safe and the store is open,
watchdog pings from the core loop that stop when it stalls, STATUS lines, STOPPING.

systemd is played by a real AF_UNIX datagram socket (in tmp_path or the abstract
namespace) named in the NOTIFY_SOCKET the code is given."""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.gpio import GpioHardware
from edge.config import parse_config
from edge.core.clock import FakeClock
from edge.core.loop import CoreLoop
from edge.service import (
    PINGS_PER_PERIOD,
    SUPERVISOR_STALE_S,
    Heartbeat,
    Notifier,
    attach,
    watchdog_period,
)
from edge.site import WATCHDOG_S, Site

# (name, pin, active_high) of every output in CONFIG
OUTPUT_PINS = [
    ("sent_led", 22, True),
    ("ack_led", 23, True),
    ("buzzer", 24, False),
    ("coil-1", 5, True),
    ("coil-2", 6, False),
]


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def recv(self, timeout: float) -> dict[str, str] | None:
        """The next message as a dict, or None when none came within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        return dict(line.split("=", 1) for line in data.decode().split("\n"))

    def wait_for(self, key: str, timeout: float = 10.0) -> dict[str, str]:
        """Skip messages until one carries ``key``."""
        while True:
            msg = self.recv(timeout)
            assert msg is not None, f"no {key} within {timeout} s"
            if key in msg:
                return msg

    def drain(self) -> list[dict[str, str]]:
        out = []
        while (msg := self.recv(0.0001)) is not None:
            out.append(msg)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    yield fake
    fake.close()


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd(f"@ansim-test-{uuid.uuid4().hex}")
    yield fake
    fake.close()


def env(fake: FakeSystemd, watchdog_s: float | None = None) -> dict[str, str]:
    out = {"NOTIFY_SOCKET": fake.address}
    if watchdog_s is not None:
        out["WATCHDOG_USEC"] = str(int(watchdog_s * 1_000_000))
        out["WATCHDOG_PID"] = str(os.getpid())
    return out


# ----------------------------------------------------------------- protocol pieces


def test_watchdog_period_only_for_this_process() -> None:
    assert watchdog_period({}) is None
    assert watchdog_period({"WATCHDOG_USEC": "10000000"}) == 10.0
    mine = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_period(mine) == 10.0
    assert watchdog_period({**mine, "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "soon"}) is None


def test_notifier_sends_to_a_path_and_to_the_abstract_namespace(
    systemd: FakeSystemd, abstract_systemd: FakeSystemd
) -> None:
    for fake in (systemd, abstract_systemd):
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": fake.address})
        assert notifier is not None
        assert notifier.send("READY=1", "STATUS=online, 0 pending")
        assert fake.recv(5) == {"READY": "1", "STATUS": "online, 0 pending"}
        notifier.close()


def test_no_notify_socket_means_nothing_to_do() -> None:
    assert Notifier.from_environ({}) is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    fake = FakeSystemd(str(tmp_path / "gone.sock"))
    notifier = Notifier(fake.address)
    fake.close()
    (tmp_path / "gone.sock").unlink()
    assert notifier.send("WATCHDOG=1") is False
    notifier.close()


def test_a_receiver_that_does_not_read_never_blocks_the_sender(systemd: FakeSystemd) -> None:
    notifier = Notifier(systemd.address)
    # The kernel queues a few datagrams per AF_UNIX receiver (net.unix.max_dgram_qlen);
    # after that a blocking send would stall the core thread.
    results = [notifier.send("WATCHDOG=1") for _ in range(2000)]
    assert results[0] is True
    assert results[-1] is False
    notifier.close()


# ----------------------------------------------------------------- heartbeat on a FakeClock


def test_heartbeat_pings_while_healthy_and_withholds_otherwise(systemd: FakeSystemd) -> None:
    clock = FakeClock()
    loop = CoreLoop(clock)
    notifier = Notifier(systemd.address)
    problem: list[str] = []
    status = ["online, 0 pending"]
    hb = Heartbeat(
        loop,
        notifier,
        watchdog_s=9.0,
        health=lambda: problem[0] if problem else None,
        status=lambda: status[0],
    )
    assert hb.interval_s == 9.0 / PINGS_PER_PERIOD == 3.0
    hb.start()
    assert systemd.recv(5) == {"READY": "1", "STATUS": "online, 0 pending"}

    clock.advance(2.9)
    loop.run_pending()
    assert systemd.drain() == []  # not yet due
    clock.advance(0.1)
    loop.run_pending()
    assert systemd.drain() == [{"WATCHDOG": "1"}]  # the status did not change: not repeated

    status[0] = "offline, 3 pending"
    clock.advance(3)
    loop.run_pending()
    assert systemd.drain() == [{"WATCHDOG": "1", "STATUS": "offline, 3 pending"}]

    problem.append("uplink supervisor has not run for 16 s")
    for _ in range(3):
        clock.advance(3)
        loop.run_pending()
    assert systemd.drain() == [{"STATUS": "unhealthy: uplink supervisor has not run for 16 s"}]

    problem.clear()
    clock.advance(3)
    loop.run_pending()
    assert systemd.drain() == [{"WATCHDOG": "1", "STATUS": "offline, 3 pending"}]

    hb.stopping()
    assert systemd.drain() == [{"STOPPING": "1", "STATUS": "stopping"}]
    notifier.close()


def test_a_failing_health_check_withholds_the_ping_and_keeps_the_timer(
    systemd: FakeSystemd,
) -> None:
    clock = FakeClock()
    loop = CoreLoop(clock)
    calls: list[int] = []

    def health() -> str | None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return None

    hb = Heartbeat(loop, Notifier(systemd.address), watchdog_s=3.0, health=health, status=str)
    hb.start()
    systemd.drain()
    clock.advance(1)
    loop.run_pending()
    assert systemd.drain() == [{"STATUS": "unhealthy: health check failed: RuntimeError: boom"}]
    clock.advance(1)
    loop.run_pending()
    assert systemd.drain() == [{"WATCHDOG": "1", "STATUS": ""}]


# ----------------------------------------------------------------- a whole site


CONFIG: dict[str, Any] = {
    "site": {"id": "notify-site"},
    "broker": {"url": "mqtt://127.0.0.1:1"},
    "devices": {
        "panic_buttons": [{"name": "panic-1", "pin": 17, "contact": "nc"}],
        "sent_led": {"pin": 22},
        "ack_led": {"pin": 23},
        "buzzer": {"pin": 24, "active_high": False},
        "lockers": {
            "gpio": [
                {"locker": 1, "solenoid_pin": 5, "door_pin": 12},
                {"locker": 2, "solenoid_pin": 6, "active_high": False, "door_pin": 13},
            ],
        },
    },
}


class GatedUplink:
    """A broker link that never connects; ``start`` (the last step of Site.start) waits
    for ``gate``, and ``check`` (the uplink supervisor) raises while ``broken`` is set."""

    address = "mqtt://127.0.0.1:1883"

    def __init__(self, cfg: Any, **kw: Any) -> None:
        self.connected = False
        self.gate = threading.Event()
        self.broken = threading.Event()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        return None

    def start(self) -> None:
        assert self.gate.wait(10), "test never opened the gate"

    def check(self) -> None:
        if self.broken.is_set():
            raise RuntimeError("supervisor broken")

    def stop(self, last: tuple[str, bytes] | None = None, timeout_s: float = 2.0) -> None:
        pass


def make_site(
    tmp_path: Path, factory: MockFactory, clock: FakeClock | None = None
) -> tuple[Site, list[GatedUplink]]:
    cfg = parse_config({**CONFIG, "data_dir": str(tmp_path / "data")})
    uplinks: list[GatedUplink] = []

    def uplink_factory(broker: Any, **kw: Any) -> GatedUplink:
        uplinks.append(GatedUplink(broker, **kw))
        return uplinks[-1]

    site = Site(
        cfg,
        GpioHardware(factory),
        clock=clock,
        keys={},
        uplink_factory=uplink_factory,  # type: ignore[arg-type]
    )
    return site, uplinks


def leave_outputs_on(factory: MockFactory) -> None:
    """What a SIGKILLed daemon leaves behind: every output driven to its 'on' level."""
    for _, pin, active_high in OUTPUT_PINS:
        factory.pin(pin).output_with_state(active_high)


def outputs_off(factory: MockFactory) -> dict[str, bool]:
    return {
        name: factory.pin(pin).state == (not active_high) for name, pin, active_high in OUTPUT_PINS
    }


def wait_event(event: threading.Event, what: str) -> None:
    assert event.wait(10), f"timed out waiting for {what}"


def test_ready_only_once_outputs_are_off_and_the_store_is_open(
    tmp_path: Path, systemd: FakeSystemd
) -> None:
    factory = MockFactory()
    leave_outputs_on(factory)
    assert not any(outputs_off(factory).values())
    site, uplinks = make_site(tmp_path, factory)
    notified = attach(site, env(systemd, watchdog_s=0.3))
    assert notified is not None
    hb = notified.heartbeat
    site.start_thread()
    try:
        # Site.start() is held at its last step: no READY yet.
        assert systemd.recv(0.5) is None
        assert not hb.ready
        uplinks[0].gate.set()
        msg = systemd.wait_for("READY")
        assert outputs_off(factory) == {name: True for name, _, _ in OUTPUT_PINS}
        db = sqlite3.connect(tmp_path / "data" / "ansim-edge.db")  # committed by Site.start()
        try:
            rows = db.execute("SELECT payload FROM outbox").fetchall()
        finally:
            db.close()
        assert any(b"site.started" in bytes(p) for (p,) in rows)
        assert msg == {"READY": "1", "STATUS": f"offline, {len(rows)} pending"}
    finally:
        uplinks[0].gate.set()
        site.stop_soon()
        site.join(10)
        factory.close()


def test_pings_flow_while_the_core_loop_runs_and_stop_when_it_stalls(
    tmp_path: Path, abstract_systemd: FakeSystemd
) -> None:
    systemd = abstract_systemd
    factory = MockFactory()
    site, uplinks = make_site(tmp_path, factory)
    uplinks[0].gate.set()
    attach(site, env(systemd, watchdog_s=0.3))  # a ping every 0.1 s
    site.start_thread()
    entered, release = threading.Event(), threading.Event()

    def stuck_job() -> None:  # e.g. a commit on a stalled SD card, or a deadlock
        entered.set()
        release.wait(10)

    try:
        systemd.wait_for("READY")
        for _ in range(3):
            systemd.wait_for("WATCHDOG", timeout=5)
        site.loop.post(stuck_job)
        wait_event(entered, "the core loop to run the stuck job")
        systemd.drain()  # pings sent before the job started
        assert systemd.recv(1.0) is None  # ten ping periods: nothing while the loop is stuck
        release.set()
        assert systemd.wait_for("WATCHDOG", timeout=5) == {"WATCHDOG": "1"}
    finally:
        release.set()
        site.stop_soon()
        site.join(10)
        factory.close()


def test_pings_stop_while_the_uplink_supervisor_fails_and_resume_after(
    tmp_path: Path, systemd: FakeSystemd
) -> None:
    clock = FakeClock()
    factory = MockFactory()
    site, uplinks = make_site(tmp_path, factory, clock)
    uplink = uplinks[0]
    uplink.gate.set()
    assert attach(site, env(systemd, watchdog_s=3.0)) is not None  # a ping every 1 s

    def advance(seconds: float) -> list[dict[str, str]]:
        got = []
        for _ in range(int(seconds)):
            clock.advance(1)
            site.loop.run_pending()
            got += systemd.drain()
        return got

    site.start()
    site.loop.run_pending()
    try:
        assert systemd.drain()[0]["READY"] == "1"
        assert [m.get("WATCHDOG") for m in advance(3)] == ["1", "1", "1"]
        uplink.broken.set()
        pings = advance(SUPERVISOR_STALE_S + WATCHDOG_S + 2)
        stalled = [m for m in pings if "WATCHDOG" not in m]
        assert stalled and stalled[0]["STATUS"].startswith("unhealthy: uplink supervisor")
        assert "WATCHDOG" not in pings[-1]
        # The supervisor itself keeps running after a failure, so pings come back with it.
        uplink.broken.clear()
        pings = advance(WATCHDOG_S + 1)
        assert pings[-1].get("WATCHDOG") == "1"
        assert any(m.get("STATUS", "").startswith("offline, ") for m in pings)
    finally:
        site.shutdown(0)
        factory.close()


def test_attach_without_systemd_does_nothing(tmp_path: Path) -> None:
    factory = MockFactory()
    site, _ = make_site(tmp_path, factory)
    try:
        assert attach(site, {}) is None
    finally:
        site.shutdown(0)
        factory.close()


def test_a_stop_request_tells_systemd_before_the_site_stops(
    tmp_path: Path, systemd: FakeSystemd
) -> None:
    factory = MockFactory()
    site, uplinks = make_site(tmp_path, factory)
    uplinks[0].gate.set()
    notified = attach(site, env(systemd))
    assert notified is not None
    thread = threading.Thread(target=notified.run)
    thread.start()
    try:
        systemd.wait_for("READY")
        notified.stop_soon()  # what cli._serve calls on SIGTERM/SIGINT
        assert systemd.wait_for("STOPPING") == {"STOPPING": "1", "STATUS": "stopping"}
        thread.join(10)
        assert not thread.is_alive()
    finally:
        site.stop_soon()
        thread.join(10)
        factory.close()
