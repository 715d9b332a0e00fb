"""Cu16Bus against SimulatedCu16Bus over a real pty: polling, unlocks, faults, polarity.

No sleeps: every wait is a condition polled with short threading.Event waits and a deadline.
"""

from __future__ import annotations

import itertools
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from drivers.cu16 import FRAME_LENGTHS, REPLY_STATUS, BoardSettings, Cu16Bus
from drivers.cu16_protocol import encode_status_query, encode_status_reply, encode_unlock
from edge.core.errors import CoilSafetyError
from simulator.cu16_device import SimulatedCu16Bus
from tests.support.lockbus import BusRecorder as Recorder
from tests.support.wait import wait_until

ALL_CLOSED = (True,) * 16
NO_ITEMS = (False,) * 16
FAST = {"poll_hz": 20.0, "reply_timeout": 0.1}


@pytest.fixture
def device() -> Iterator[SimulatedCu16Bus]:
    dev = SimulatedCu16Bus([0, 1])
    try:
        yield dev
    finally:
        dev.close()


@pytest.fixture
def make_bus() -> Iterator[Callable[..., tuple[Cu16Bus, Recorder]]]:
    buses: list[Cu16Bus] = []

    def factory(
        port: str, boards: list[Any] | None = None, **kwargs: Any
    ) -> tuple[Cu16Bus, Recorder]:
        rec = Recorder()
        bus = Cu16Bus(port, boards if boards is not None else [0, 1], rec, **kwargs)
        buses.append(bus)
        bus.start()
        return bus, rec

    try:
        yield factory
    finally:
        for bus in buses:
            bus.close()


def queries(dev: SimulatedCu16Bus, board: int) -> int:
    count: int = dev.snapshot()["boards"][str(board)]["status_queries"]
    return count


def wait_polls(dev: SimulatedCu16Bus, board: int, n: int) -> None:
    """Wait until ``board`` has received ``n`` more status queries."""
    target = queries(dev, board) + n
    wait_until(lambda: queries(dev, board) >= target, message=f"{n} polls of board {board}")


def test_first_poll_reports_initial_state(device: SimulatedCu16Bus, make_bus: Any) -> None:
    device.set_item(1, 2, True)
    device.open_door(0, 16)
    _, rec = make_bus(device.port)
    wait_until(lambda: rec.of("status", 0) and rec.of("status", 1), message="first readings")
    _, _, closed0, items0, _ = rec.of("status", 0)[0]
    assert closed0 == (*ALL_CLOSED[:15], False)
    assert items0 == NO_ITEMS
    _, _, closed1, items1, _ = rec.of("status", 1)[0]
    assert closed1 == ALL_CLOSED
    assert items1 == (False, True) + (False,) * 14
    wait_polls(device, 1, 2)
    assert len(rec.of("status")) == 2  # unchanged readings are not repeated
    assert rec.of("fault") == []


def test_unlock_pulses_once_and_reports_the_open_door(
    device: SimulatedCu16Bus, make_bus: Any
) -> None:
    bus, rec = make_bus(device.port, **FAST)
    wait_until(lambda: rec.of("status", 1), message="first reading")
    bus.unlock(1, 3)
    wait_until(lambda: rec.door_open(1, 3), message="door 1/3 open")
    assert [e[1:3] for e in rec.of("unlock_sent")] == [(1, 3)]
    closed = rec.closed(1)
    assert closed == (True, True, False) + (True,) * 13
    wait_polls(device, 1, 3)
    unlocks = device.snapshot()["unlocks"]
    assert [(u["board"], u["lock"], u["pulse_ms"]) for u in unlocks] == [(1, 3, 500)]
    assert device.snapshot()["boards"]["1"]["door_open"][2] is True
    # Pushed shut by hand: re-latches and the change is reported.
    device.close_door(1, 3)
    wait_until(lambda: rec.closed(1) == ALL_CLOSED, message="door 1/3 closed")


def test_jammed_lock_fires_but_door_stays_closed(device: SimulatedCu16Bus, make_bus: Any) -> None:
    bus, rec = make_bus(device.port, **FAST)
    wait_until(lambda: rec.of("status", 0), message="first reading")
    device.jam(0, 5)
    bus.unlock(0, 5)
    wait_until(lambda: rec.of("unlock_sent"), message="unlock sent")
    wait_polls(device, 0, 3)
    assert len(device.snapshot()["unlocks"]) == 1
    assert len(rec.of("status", 0)) == 1  # no change reported: the door never opened


def test_unlocks_are_spaced_so_coils_never_overlap(device: SimulatedCu16Bus, make_bus: Any) -> None:
    bus, rec = make_bus(device.port, **FAST)
    bus.set_unlock_time(0, 100)
    bus.set_unlock_time(1, 150)
    wait_until(
        lambda: [b["pulse_ms"] for b in device.snapshot()["boards"].values()] == [100, 150],
        message="pulse times set",
    )
    wait_until(lambda: bus.stats()["boards"][1]["pulse_ms"] == 150, message="0x38 confirmed")
    for board, lock in [(0, 1), (1, 2), (0, 3)]:
        bus.unlock(board, lock)
    wait_until(lambda: len(device.snapshot()["unlocks"]) == 3, message="three pulses")
    unlocks = device.snapshot()["unlocks"]
    assert [(u["board"], u["lock"]) for u in unlocks] == [(0, 1), (1, 2), (0, 3)]
    for first, second in itertools.pairwise(unlocks):
        assert second["t_monotonic"] >= first["t_monotonic"] + first["pulse_ms"] / 1000
    assert device.snapshot()["overlapping_pulses"] == 0
    wait_until(lambda: len(rec.of("unlock_sent")) == 3, message="three on_unlock_sent")
    assert [e[1:3] for e in rec.of("unlock_sent")] == [(0, 1), (1, 2), (0, 3)]


class SlowToFire(SimulatedCu16Bus):
    """Board 0 fires (and answers) an unlock of lock 1 only ``LATENCY_S`` after it arrives,
    like a slow board or USB adapter; board 1 is quick. The latency is the simulated board's
    own processing time, spent in its serving thread."""

    LATENCY_S = 0.3

    def _on_input(self, data: bytes) -> None:
        if encode_unlock(0, 1) in data:
            threading.Event().wait(self.LATENCY_S)
        super()._on_input(data)


def test_a_board_slow_to_fire_delays_the_next_coil_on_the_bus(make_bus: Any) -> None:
    """Regression: coil spacing counted from the write, so the quick board fired while the
    slow board's coil (fired 0.3 s after the write) was still on. It counts from the slow
    board's answer now, and on_unlock_sent (the site's coil scheduler) comes no earlier."""
    dev = SlowToFire([0, 1])
    try:
        bus, rec = make_bus(dev.port, poll_hz=20.0, reply_timeout=1.0)
        wait_until(lambda: len(rec.of("status")) == 2, message="first readings")
        bus.unlock(0, 1)
        bus.unlock(1, 2)
        wait_until(lambda: len(dev.snapshot()["unlocks"]) == 2, message="two pulses")
        first, second = dev.snapshot()["unlocks"]
        assert (first["board"], second["board"]) == (0, 1)
        assert second["t_monotonic"] >= first["t_monotonic"] + first["pulse_ms"] / 1000
        assert dev.snapshot()["overlapping_pulses"] == 0
        wait_until(lambda: len(rec.of("unlock_sent")) == 2, message="two on_unlock_sent")
        assert rec.of("unlock_sent", 0)[0][3] >= first["t_monotonic"]
    finally:
        dev.close()


def test_silent_board_faults_once_and_recovers_once(
    device: SimulatedCu16Bus, make_bus: Any
) -> None:
    _, rec = make_bus(device.port, **FAST)
    wait_until(lambda: rec.of("status", 0) and rec.of("status", 1), message="first readings")
    device.set_silent(1)
    wait_until(lambda: rec.of("fault", 1), message="fault of board 1")
    assert "no reply" in rec.of("fault", 1)[0][2]
    # Board 0 keeps being polled and reported while board 1 stays dead.
    device.open_door(0, 7)
    wait_until(lambda: rec.door_open(0, 7), message="board 0 change")
    wait_polls(device, 0, 5)
    assert device.snapshot()["boards"]["1"]["requests"] > 3  # retried every poll
    assert len(rec.of("fault")) == 1
    assert rec.of("recovered") == []
    device.set_silent(1, False)
    wait_until(lambda: rec.of("recovered", 1), message="recovery of board 1")
    wait_polls(device, 1, 3)
    assert len(rec.of("recovered")) == 1
    assert len(rec.of("fault")) == 1
    # After recovery the current state is reported again.
    assert rec.events.index(rec.of("recovered", 1)[0]) < rec.events.index(rec.of("status", 1)[-1])


def test_corrupt_board_is_counted_as_garbage_and_survived(
    device: SimulatedCu16Bus, make_bus: Any
) -> None:
    bus, rec = make_bus(device.port, **FAST)
    wait_until(lambda: rec.of("status", 1), message="first reading")
    device.set_corrupt(1)
    wait_until(lambda: rec.of("fault", 1), message="fault of board 1")
    assert "garbled" in rec.of("fault", 1)[0][2]
    assert sum(e[1] for e in rec.of("garbage")) >= 3 * 12  # 3 junk + 9 bytes per reply
    assert bus.stats()["bad_checksum"] >= 3
    device.open_door(0, 1)
    wait_until(lambda: rec.door_open(0, 1), message="board 0 still reported")
    device.set_corrupt(1, False)
    wait_until(lambda: rec.of("recovered", 1), message="recovery of board 1")
    assert rec.of("fault", 0) == []


def test_polarity_setting_inverts_the_closed_bits(device: SimulatedCu16Bus, make_bus: Any) -> None:
    device.set_polarity(1, 0)  # board 1 reports bit 0 for a closed door
    device.open_door(1, 2)
    bus, rec = make_bus(device.port, [BoardSettings(0), BoardSettings(1, closed_bit=1)])
    wait_until(lambda: rec.of("status", 1), message="reading with the wrong polarity")
    inverted = rec.of("status", 1)[0][2]
    assert inverted == (False, True) + (False,) * 14
    bus.close()
    bus, rec = make_bus(device.port, [BoardSettings(0), BoardSettings(1, closed_bit=0)])
    wait_until(lambda: rec.of("status", 1), message="reading with the right polarity")
    assert rec.of("status", 1)[0][2] == (True, False) + (True,) * 14
    assert rec.of("status", 0)[0][2] == ALL_CLOSED


@pytest.mark.parametrize("driver_expects_reply", [False, True], ids=["configured", "surprised"])
def test_silent_unlock_is_seen_through_a_requery(
    device: SimulatedCu16Bus, make_bus: Any, driver_expects_reply: bool
) -> None:
    device.set_unlock_replies(0, False)
    settings = [BoardSettings(0, unlock_replies=driver_expects_reply), BoardSettings(1)]
    # One poll cycle in 1000 s: after the first readings no periodic poll can come during the
    # test, so only the re-query can show the change (no wall-time race against the next
    # cycle). reply_timeout is the simulated board's (a thread of this process) time to
    # answer: on a loaded machine that thread may wait a scheduler round of several hundred
    # ms, and a reply later than reply_timeout is rightly a miss.
    bus, rec = make_bus(device.port, settings, poll_hz=0.001, reply_timeout=1.0)
    wait_until(lambda: rec.of("status", 0) and rec.of("status", 1), message="first readings")
    before = queries(device, 0)
    bus.unlock(0, 2)
    wait_until(lambda: rec.door_open(0, 2), message="re-query")
    assert queries(device, 0) == before + 1
    assert len(device.snapshot()["unlocks"]) == 1


def test_a_reply_already_in_when_the_bus_thread_wakes_late_is_not_a_miss(
    device: SimulatedCu16Bus,
) -> None:
    """A bus thread descheduled past its reply deadline (a loaded machine) takes the reply
    that arrived in time from the port's buffer instead of counting a miss."""

    class WokeLate(Cu16Bus):
        def _await_frame(self, parser: Any, deadline: float, *args: Any, **kw: Any) -> Any:
            port = self._port
            full = FRAME_LENGTHS[REPLY_STATUS]
            wait_until(lambda: port.in_waiting >= full, message="the whole reply in the buffer")
            return super()._await_frame(parser, time.monotonic() - 1.0, *args, **kw)

    rec = Recorder()
    with WokeLate(device.port, [0, 1], rec, poll_hz=20.0, fault_after=1) as bus:
        wait_until(lambda: bus.stats()["polls"] >= 4, message="two poll cycles")
    assert rec.of("status", 0) and rec.of("status", 1)
    assert rec.of("fault") == []


def test_listener_exceptions_never_stop_the_bus(device: SimulatedCu16Bus) -> None:
    class Exploding(Recorder):
        def on_status(
            self, board: int, closed: tuple[bool, ...], items: tuple[bool, ...], t: float
        ) -> None:
            super().on_status(board, closed, items, t)
            raise RuntimeError("listener bug")

        def on_unlock_sent(self, board: int, lock: int, t: float) -> None:
            super().on_unlock_sent(board, lock, t)
            raise RuntimeError("listener bug")

    rec = Exploding()
    with Cu16Bus(device.port, [0, 1], rec, **FAST) as bus:  # type: ignore[arg-type]
        wait_until(lambda: len(rec.of("status")) == 2, message="first readings")
        bus.unlock(0, 9)
        wait_until(lambda: rec.door_open(0, 9), message="door opened")
        assert bus.stats()["listener_errors"] >= 4


def test_port_failure_faults_every_board_and_close_is_prompt(make_bus: Any) -> None:
    dev = SimulatedCu16Bus([0, 1])
    bus, rec = make_bus(dev.port, **FAST)
    wait_until(lambda: len(rec.of("status")) == 2, message="first readings")
    dev.close()  # the adapter is unplugged
    wait_until(lambda: len(rec.of("fault")) == 2, message="both boards faulted")
    assert all("port error" in e[2] for e in rec.of("fault"))
    assert bus.stats()["port_errors"] >= 1
    started = time.monotonic()
    bus.close()
    assert time.monotonic() - started < 1.0
    assert not any(t.name == f"cu16-bus[{dev.port}]" for t in threading.enumerate())


def test_missing_port_at_start_is_a_fault_not_a_crash(make_bus: Any) -> None:
    bus, rec = make_bus("/dev/does-not-exist-cu16", reopen_backoff=(0.05, 0.1))
    wait_until(lambda: len(rec.of("fault")) == 2, message="both boards faulted")
    wait_until(lambda: bus.stats()["port_errors"] >= 3, message="reopen attempts")
    assert len(rec.of("fault")) == 2  # reported once, not per retry
    bus.close()


def test_argument_checks(device: SimulatedCu16Bus, make_bus: Any) -> None:
    bus, _ = make_bus(device.port)
    with pytest.raises(ValueError, match="board 5 is not configured"):
        bus.unlock(5, 1)
    with pytest.raises(ValueError, match=r"^lock "):
        bus.unlock(0, 17)
    with pytest.raises(CoilSafetyError):
        bus.set_unlock_time(0, 5000)
    with pytest.raises(ValueError, match=r"^ms "):
        bus.set_unlock_time(0, 333)
    with pytest.raises(ValueError, match="repeat"):
        Cu16Bus(device.port, [0, BoardSettings(0)], Recorder())
    with pytest.raises(ValueError, match="closed_bit"):
        BoardSettings(0, closed_bit=2)


def test_idle_bus_costs_almost_no_cpu(device: SimulatedCu16Bus, make_bus: Any) -> None:
    """Two boards at the default 4 Hz: the bus thread must use well under 2% of a core."""
    _, rec = make_bus(device.port)
    wait_until(lambda: len(rec.of("status")) == 2, message="first readings")
    (thread,) = [t for t in threading.enumerate() if t.name == f"cu16-bus[{device.port}]"]
    assert thread.ident is not None
    clock = time.pthread_getcpuclockid(thread.ident)
    cpu0, wall0, rusage0 = time.clock_gettime(clock), time.monotonic(), resource.getrusage(0)
    polls0 = queries(device, 0)
    wait_until(lambda: queries(device, 0) >= polls0 + 6, message="six more polls")
    cpu = time.clock_gettime(clock) - cpu0
    wall = time.monotonic() - wall0
    rusage1 = resource.getrusage(0)
    process = rusage1.ru_utime + rusage1.ru_stime - rusage0.ru_utime - rusage0.ru_stime
    assert cpu / wall < 0.02, f"bus thread used {cpu / wall:.2%} of a core"
    assert process / wall < 0.10, f"process used {process / wall:.2%} of a core"


class TcpBridge:
    """A raw TCP-to-serial bridge (what a TCP-to-RS485 converter does) in front of a tty."""

    def __init__(self, tty_path: str) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        self.fd = os.open(tty_path, os.O_RDWR | os.O_NOCTTY)
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ready, _, _ = select.select([self.server.fileno(), self.stop_r], [], [])
        if self.stop_r in ready:
            return
        conn, _ = self.server.accept()
        with conn:
            while True:
                ready, _, _ = select.select([conn.fileno(), self.fd, self.stop_r], [], [])
                if self.stop_r in ready:
                    return
                if conn.fileno() in ready:
                    data = conn.recv(4096)
                    if not data:
                        return
                    os.write(self.fd, data)
                if self.fd in ready:
                    conn.sendall(os.read(self.fd, 4096))

    def close(self) -> None:
        os.write(self.stop_w, b"x")
        self.thread.join(2.0)
        for fd in (self.fd, self.stop_r, self.stop_w):
            os.close(fd)
        self.server.close()


def test_socket_url_reaches_the_boards_through_a_tcp_bridge(
    device: SimulatedCu16Bus, make_bus: Any
) -> None:
    bridge = TcpBridge(device.port)
    try:
        bus, rec = make_bus(bridge.url, **FAST)
        wait_until(lambda: len(rec.of("status")) == 2, message="first readings over TCP")
        bus.unlock(1, 16)
        wait_until(lambda: rec.door_open(1, 16), message="door 1/16 open over TCP")
        assert [(u["board"], u["lock"]) for u in device.snapshot()["unlocks"]] == [(1, 16)]
        bus.close()
    finally:
        bridge.close()


def test_simulated_board_resyncs_on_a_quiet_line(device: SimulatedCu16Bus) -> None:
    """A truncated status head followed by a query is 8 bytes, one short of the false
    candidate's length: only the quiet line tells the device to resync, and it answers."""
    fd = os.open(device.port, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, bytes.fromhex("02 10 35") + encode_status_query(1))
        reply = b""
        deadline = time.monotonic() + 2.0
        while len(reply) < 9 and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if ready:
                reply += os.read(fd, 64)
        assert reply == encode_status_reply(1, [True] * 16, [False] * 16)
        assert device.snapshot()["garbage_bytes"] == 3
    finally:
        os.close(fd)
