"""The pty base of the simulated serial devices (simulator.ptydevice): the raw line, the
by-id style link, unplug/replug, the serving thread, close. No sleeps: waits are conditions
with timeouts."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from simulator.ptydevice import PtyDevice

TIMEOUT = 3.0


class Echo(PtyDevice):
    """Answers every chunk with ``<chunk>!``; counts quiet polls when ``poll`` is set."""

    def __init__(
        self, *, poll: float | None = None, link_name: str | None = None, plugged: bool = True
    ) -> None:
        super().__init__(link_name=link_name, plugged=plugged)
        self.poll = poll
        self.cond = threading.Condition()
        self.chunks: list[bytes] = []
        self.quiet = 0
        self._start_serving("echo-sim")

    def _poll_timeout(self) -> float | None:
        return self.poll

    def _on_input(self, data: bytes) -> None:
        with self.cond:
            if data:
                self.chunks.append(data)
            else:
                self.quiet += 1
            self.cond.notify_all()
        if data:
            self._write_some(data + b"!")

    def wait_for(self, predicate: Callable[[], object], what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, TIMEOUT), f"timed out waiting for {what}"


def open_line(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY)


def read_exactly(fd: int, n: int) -> bytes:
    """Blocking reads (the slave fd is blocking) until ``n`` bytes arrived."""
    out = b""
    while len(out) < n:
        out += os.read(fd, n - len(out))
    return out


@pytest.fixture
def echo() -> Iterator[Echo]:
    with Echo() as device:
        yield device


def test_raw_line_served_from_its_own_thread(echo: Echo) -> None:
    assert echo.port == echo.tty and echo.port.startswith("/dev/")
    fd = open_line(echo.port)
    try:
        os.write(fd, b"\x02\x00\r\n\x03")  # raw mode: no CR/LF translation, no echo
        assert read_exactly(fd, 6) == b"\x02\x00\r\n\x03!"
        echo.wait_for(lambda: echo.chunks, "the chunk")
        assert b"".join(echo.chunks) == b"\x02\x00\r\n\x03"
        assert any(t.name == "echo-sim" for t in threading.enumerate())
    finally:
        os.close(fd)


def test_quiet_polls_reach_the_device() -> None:
    with Echo(poll=0.01) as device:
        device.wait_for(lambda: device.quiet >= 3, "three quiet polls")


def test_link_follows_the_pty_across_unplug_and_replug() -> None:
    with Echo(link_name="scanner") as device:
        link = Path(device.port)
        assert link.name == "scanner" and link.is_symlink()
        first = device.tty
        assert first is not None and os.readlink(link) == first
        fd = open_line(device.port)
        device.set_unplugged(True)
        assert not link.exists() and device.tty is None and not device.plugged
        try:  # what pyserial sees for a pulled USB adapter: EIO, or EOF once hung up
            assert os.read(fd, 1) == b""
        except OSError as exc:
            assert exc.errno == errno.EIO
        os.close(fd)
        with pytest.raises(FileNotFoundError):
            open_line(device.port)
        assert device._write_some(b"lost") is None

        device.set_unplugged(False)
        device.set_unplugged(False)  # idempotent
        assert device.plugged and device._plug_count == 2
        assert device.tty is not None and os.readlink(link) == device.tty
        fd = open_line(device.port)
        try:
            os.write(fd, b"again")
            assert read_exactly(fd, 6) == b"again!"  # the serving thread follows the replug
        finally:
            os.close(fd)
        tmpdir = link.parent
    assert not tmpdir.exists()  # close removes the private directory


def test_start_unplugged() -> None:
    with Echo(link_name="modem", plugged=False) as device:
        assert not device.plugged and not Path(device.port).exists()
        device.set_unplugged(False)
        assert Path(device.port).is_symlink()


def test_close_stops_the_thread_and_closes_the_line() -> None:
    device = Echo()
    thread = device._thread
    assert thread is not None and thread.is_alive()
    device.close()
    assert not thread.is_alive()
    assert device._master is None and not device.plugged
    assert device._write_some(b"x") is None
    device.close()  # twice is fine
    with pytest.raises(RuntimeError, match="Echo is closed"):
        device.set_unplugged(False)
