"""The serial-worker base every serial driver runs on (drivers.serialworker): open/reopen with
backoff, fault/recovery reporting, the callback guard, close. Driven two ways, both without
sleeps: turn by turn on the test thread (waits recorded, not waited; an injected clock), and
as a real thread over a fake port (every wait is on a condition with a timeout)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest
import structlog

from drivers.serialworker import Backoff, PortFailure, SerialWorker
from edge.core.clock import FakeClock

TIMEOUT = 3.0


class FakePort:
    """A serial port: ``read`` returns what ``feed`` queued (or b"" after the read timeout);
    ``fail`` makes the next read raise like an unplugged USB adapter."""

    def __init__(self, read_timeout: float = 0.05) -> None:
        self.read_timeout = read_timeout
        self.queue: queue.Queue[bytes | BaseException] = queue.Queue()
        self.closed = False
        self.written: list[bytes] = []

    @property
    def in_waiting(self) -> int:
        return 0

    def feed(self, data: bytes) -> None:
        self.queue.put(data)

    def fail(self, exc: BaseException) -> None:
        self.queue.put(exc)

    def read(self, size: int = 1) -> bytes:
        try:
            item = self.queue.get(timeout=self.read_timeout)
        except queue.Empty:
            return b""
        if isinstance(item, BaseException):
            raise item
        return item

    def write(self, data: bytes) -> int:
        self.written.append(data)
        return len(data)

    def close(self) -> None:
        self.closed = True


class Worker(SerialWorker):
    """A minimal driver: every chunk read goes to ``listener``; ``opens`` scripts what each
    attempt to open the port gives (an exception fails it, a FakePort opens it)."""

    def __init__(
        self,
        opens: list[BaseException | FakePort],
        *,
        listener: Callable[[bytes], None] = lambda data: None,
        clock: FakeClock | None = None,
        step_mode: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("reopen_backoff", (0.5, 3.0))
        super().__init__(
            "fake://port",
            name="fake",
            thread_name="fake-worker",
            log=structlog.get_logger("test.serialworker"),
            baudrate=9600,
            read_timeout=0.05,
            monotonic=(clock or FakeClock()).monotonic,
            **kwargs,
        )
        self.opens = opens
        self.listener = listener
        self.step_mode = step_mode
        self.cond = threading.Condition()
        self.events: list[tuple[str, ...]] = []
        self.waits: list[float] = []

    def record(self, *event: str) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, TIMEOUT), f"timed out waiting for {what}"

    def of(self, kind: str) -> list[tuple[str, ...]]:
        with self.cond:
            return [e for e in self.events if e[0] == kind]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connected": self._connected,
                "faulted": self._faulted,
                "faults": self._faults,
                "port_errors": self._port_errors,
                "listener_errors": self._listener_errors,
            }

    # -- SerialWorker hooks

    def _make_port(self) -> Any:
        self.record("open_attempt")
        nxt = self.opens.pop(0) if len(self.opens) > 1 else self.opens[0]
        if isinstance(nxt, BaseException):
            raise nxt
        return nxt

    def _serve(self) -> None:
        data = self._read_available()
        if data:
            self._emit("listener", lambda: self.listener(data))
            self.record("data", data.decode())

    def _on_fault(self, reason: str) -> None:
        self.record("fault", reason)

    def _on_recovered(self) -> None:
        self.record("recovered")

    def _wait(self, seconds: float) -> None:
        if self.step_mode:  # the test drives the steps: record the wait instead of waiting
            self.waits.append(seconds)
        else:
            super()._wait(seconds)


def missing() -> FileNotFoundError:
    return FileNotFoundError(2, "No such file or directory")


# --------------------------------------------------------------------------- step by step


def test_open_fails_backs_off_doubling_to_the_cap_then_reopens_and_recovers() -> None:
    port = FakePort()
    worker = Worker([missing()] * 5 + [port], step_mode=True)
    with structlog.testing.capture_logs() as logs:
        for _ in range(6):
            worker._turn()
    assert worker.waits == [0.5, 1.0, 2.0, 3.0, 3.0]  # doubling, capped at max
    reason = "cannot open port: [Errno 2] No such file or directory"
    assert worker.of("fault") == [("fault", reason)]
    assert worker.of("recovered") == [("recovered",)]
    assert worker.stats() == {
        "connected": True,
        "faulted": False,
        "faults": 1,
        "port_errors": 5,
        "listener_errors": 0,
    }
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [
        ("fake_fault", "warning"),
        *[("fake_retry_failed", "debug")] * 4,
        ("fake_recovered", "info"),
    ]


def test_a_port_that_opens_at_once_reports_neither_fault_nor_recovery() -> None:
    worker = Worker([FakePort()], step_mode=True)
    worker._turn()
    assert worker.of("fault") == [] and worker.of("recovered") == []
    assert worker.waits == [] and worker.stats()["connected"]


def test_backoff_restarts_only_after_a_connection_that_was_stable() -> None:
    clock = FakeClock()
    ports = [FakePort() for _ in range(4)]
    worker = Worker(list(ports), clock=clock, stable_s=5.0, step_mode=True)

    def open_then_fail_after(seconds: float, port: FakePort) -> None:
        worker._turn()  # opens
        assert worker._port is port
        clock.advance(seconds)
        port.fail(OSError(5, "Input/output error"))
        worker._turn()  # the read fails: port closed, fault, backoff

    open_then_fail_after(1.0, ports[0])  # flapping: keeps backing off
    open_then_fail_after(1.0, ports[1])
    open_then_fail_after(1.0, ports[2])
    assert worker.waits == [0.5, 1.0, 2.0]
    open_then_fail_after(5.0, ports[3])  # was up 5 s: starts again from the first delay
    assert worker.waits == [0.5, 1.0, 2.0, 0.5]
    assert all(p.closed for p in ports)
    assert worker.of("fault")[0] == ("fault", "port error: [Errno 5] Input/output error")
    assert len(worker.of("fault")) == 4 and len(worker.of("recovered")) == 3


def test_stable_s_zero_restarts_the_backoff_after_every_good_open() -> None:
    ports = [FakePort(), FakePort()]
    worker = Worker([missing(), missing(), *ports], step_mode=True)
    worker._turn()
    worker._turn()
    worker._turn()  # opens
    ports[0].fail(OSError("gone"))
    worker._turn()
    assert worker.waits == [0.5, 1.0, 0.5]


@pytest.mark.parametrize("backoff", [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_backoff_is_validated(backoff: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="reopen_backoff"):
        Backoff(*backoff)
    with pytest.raises(ValueError, match="reopen_backoff"):
        Worker([FakePort()], reopen_backoff=backoff)


# --------------------------------------------------------------------------- threaded


def test_callback_raising_is_survived_counted_and_logged_once() -> None:
    def listener(data: bytes) -> None:
        if data == b"bad":
            raise KeyError("secret-4711")

    port = FakePort()
    worker = Worker([port], listener=listener)
    with structlog.testing.capture_logs() as logs:
        worker.start()
        try:
            port.feed(b"bad")
            port.feed(b"good")
            worker.wait_for(lambda: ("data", "good") in worker.events, "the next chunk")
        finally:
            worker.close()
    assert worker.of("data") == [("data", "bad"), ("data", "good")]
    assert worker.stats()["listener_errors"] == 1
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["event"] == "fake_listener_error" and errors[0]["callback"] == "listener"
    assert isinstance(errors[0]["exc_info"], KeyError)  # with its traceback (not redacted)


def test_redacted_errors_carry_type_and_place_only() -> None:
    def listener(data: bytes) -> None:
        raise KeyError("secret-4711")

    port = FakePort()
    worker = Worker([port], listener=listener, redact_errors=True)
    with structlog.testing.capture_logs() as logs:
        worker.start()
        try:
            port.feed(b"x")
            worker.wait_for(lambda: bool(worker.of("data")), "a chunk")
        finally:
            worker.close()
    errors = [e for e in logs if e["event"] == "fake_listener_error"]
    assert len(errors) == 1
    assert errors[0]["error_type"] == "KeyError" and "in listener" in errors[0]["where"]
    assert "exc_info" not in errors[0] and "secret-4711" not in repr(logs)


def test_a_fault_hook_that_raises_does_not_stop_the_worker() -> None:
    class Exploding(Worker):
        def _on_fault(self, reason: str) -> None:
            super()._on_fault(reason)
            self._emit("on_fault", lambda: 1 / 0)  # type: ignore[func-returns-value]

    port = FakePort()
    worker = Exploding([missing(), port], reopen_backoff=(0.01, 0.01))
    worker.start()
    try:
        worker.wait_for(lambda: bool(worker.of("recovered")), "recovery after the fault")
        port.feed(b"after")
        worker.wait_for(lambda: ("data", "after") in worker.events, "data after recovery")
        assert worker.stats()["listener_errors"] == 1
    finally:
        worker.close()


def test_internal_error_is_logged_and_the_worker_carries_on() -> None:
    class Buggy(Worker):
        bug = True

        def _serve(self) -> None:
            if self.bug:
                self.bug = False
                raise RuntimeError("a bug")
            super()._serve()

    port = FakePort()
    worker = Buggy([port])
    with structlog.testing.capture_logs() as logs:
        worker.start()
        try:
            port.feed(b"still here")
            worker.wait_for(lambda: bool(worker.of("data")), "data after the bug")
        finally:
            worker.close()
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["fake_internal_error"]
    assert worker.stats()["port_errors"] == 0 and port.closed


def test_port_failure_while_serving_closes_reopens_and_recovers() -> None:
    first, second = FakePort(), FakePort()
    worker = Worker([first, second], reopen_backoff=(0.01, 0.01))
    worker.start()
    try:
        worker.wait_for(lambda: len(worker.of("open_attempt")) == 1, "first open")
        first.fail(OSError(5, "Input/output error"))
        worker.wait_for(lambda: bool(worker.of("recovered")), "reopened")
        second.feed(b"again")
        worker.wait_for(lambda: ("data", "again") in worker.events, "data on the new port")
    finally:
        worker.close()
    assert first.closed and second.closed
    assert [e[0] for e in worker.events if e[0] in ("fault", "recovered")] == [
        "fault",
        "recovered",
    ]


def test_close_stops_the_thread_and_closes_the_port() -> None:
    port = FakePort()
    worker = Worker([port])
    worker.start()
    worker.start()  # twice: still one thread
    worker.wait_for(lambda: bool(worker.of("open_attempt")), "open")
    thread = worker._thread
    assert thread is not None and thread.name == "fake-worker"
    worker.close()
    assert not thread.is_alive() and port.closed
    assert not worker.stats()["connected"]
    worker.close()  # twice is fine
    with pytest.raises(RuntimeError, match="Worker was closed"):
        worker.start()


def test_close_during_a_long_backoff_is_prompt() -> None:
    worker = Worker([missing()], reopen_backoff=(30.0, 60.0))
    worker.start()
    worker.wait_for(lambda: bool(worker.of("fault")), "fault")
    thread = worker._thread
    assert thread is not None
    worker.close(timeout=TIMEOUT)
    assert not thread.is_alive()  # woken from its 30 s backoff, not timed out


def test_close_from_a_callback_does_not_deadlock() -> None:
    done = threading.Event()
    holder: list[Worker] = []

    def listener(data: bytes) -> None:
        holder[0].close()  # on the worker thread: only asks it to stop
        done.set()

    port = FakePort()
    worker = Worker([port], listener=listener)
    holder.append(worker)
    worker.start()
    port.feed(b"stop")
    assert done.wait(TIMEOUT)
    thread = worker._thread
    assert thread is not None
    thread.join(TIMEOUT)
    assert not thread.is_alive() and port.closed


def test_close_before_start_never_opens_the_port() -> None:
    worker = Worker([FakePort()])
    worker.close()
    assert worker.events == []
    with pytest.raises(RuntimeError):
        worker.start()


def test_write_and_read_without_a_port_are_port_failures() -> None:
    worker = Worker([FakePort()], step_mode=True)
    with pytest.raises(PortFailure):
        worker._write(b"x")
    with pytest.raises(PortFailure):
        worker._read_available()
    worker._turn()
    worker._write(b"AT\r")
    assert worker._port.written == [b"AT\r"]
