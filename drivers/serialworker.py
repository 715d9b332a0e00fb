"""One serial-worker runtime for every serial driver: the CU16 lock bus (:mod:`drivers.cu16`),
the pickup-code reader (:mod:`drivers.codereader`) and the GSM modem (:mod:`drivers.modem`).

:class:`SerialWorker` owns one serial port (a device path, a pty path or
``socket://host:port``, anything ``serial.serial_for_url`` opens) and the one daemon thread
that touches it. A driver subclasses it and writes only its protocol work:

* :meth:`SerialWorker._serve` does one unit of work on the open port (read and frame, poll a
  board, ...). The default :meth:`SerialWorker._step` opens the port first when there is
  none; a driver with a life cycle of its own (the modem's init / fault / re-init state
  machine) overrides ``_step`` and uses the pieces below directly.
* Port failures: a :class:`PortFailure`, or an ``OSError`` (pyserial's ``SerialException``
  is one), raised by a step closes the port and reports a fault; the port is reopened after
  a backoff of ``reopen_backoff[0]`` seconds, doubling up to ``reopen_backoff[1]``. The
  backoff restarts from its first delay when the port that failed had stayed open at least
  ``stable_s`` seconds (by ``monotonic``; ``0`` restarts it after every good open), so a
  flapping connector keeps backing off.
* Faults are reported once per outage: the first failed open (or the failure of an open
  port) logs ``<name>_fault`` at warning and calls :meth:`SerialWorker._on_fault`; further
  failed attempts log ``<name>_retry_failed`` at debug only. When the port opens again,
  ``<name>_recovered`` is logged and :meth:`SerialWorker._on_recovered` is called; a port
  that opens on the first try produces neither (``<name>_port_open``).
* The callback guard :meth:`SerialWorker._emit`: every call into the core (a listener)
  goes through it. A callback that raises is counted (``listener_errors``) and logged once
  (one ``<name>_listener_error`` line per failure); it never stops the worker. With
  ``redact_errors`` the log line names the exception type and source location only, never
  its message or traceback (the code reader's exceptions may carry a pickup code).
* Any other exception in a step is a bug: logged as ``<name>_internal_error``, then the
  worker pauses 0.1 s and carries on. :class:`WorkerStopped` raised in a step ends the loop.

Threading rules
---------------
* :meth:`start` and :meth:`close` may be called from any thread, :meth:`close` also from a
  callback on the worker thread (then it only asks the thread to stop).
* ``_lock`` guards what callers share with the worker; ``_cond`` (on the same lock) is what
  the worker waits on: :meth:`close` notifies it, and a driver may notify it to wake the
  worker early (the CU16 bus does for a queued unlock).
* The port (``_port``) is touched only by the worker thread.

No module-level mutable state: any number of workers can live in one process.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, ClassVar, Self

import serial

INTERNAL_ERROR_PAUSE_S = 0.1
"""How long the worker pauses after an unexpected exception (a bug) before carrying on."""


class PortFailure(Exception):
    """The serial port failed: it cannot be opened, was unplugged, or a write timed out."""


class WorkerStopped(Exception):
    """:meth:`SerialWorker.close` was called: unwinds the worker's current step."""


class Backoff:
    """Exponential backoff: ``delay`` starts at ``first`` and doubles up to ``most``."""

    def __init__(self, first: float, most: float) -> None:
        if not 0 < first <= most:
            raise ValueError(
                f"reopen_backoff must be (first, max) with 0 < first <= max, got {(first, most)!r}"
            )
        self.first = first
        self.most = most
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    def grow(self) -> None:
        self.delay = min(self.delay * 2, self.most)


def where(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame: a location, never a value."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


class SerialWorker:
    """Base of the serial drivers: one port, one daemon thread. See the module docstring.

    ``name`` prefixes every log event (``codereader``, ``cu16``, ``modem``); ``log`` is the
    driver's bound structlog logger; ``thread_name`` names the thread. The port is opened
    ``baudrate`` 8N1 with ``read_timeout`` (which bounds how long a stop takes to be seen)
    and ``write_timeout``. ``close_timeout`` is the default join timeout of :meth:`close`.
    """

    OPEN_FAILED: ClassVar[str] = "cannot open port"
    """How the fault reason of a failed open starts (``"<OPEN_FAILED>: <error>"``); a port
    that fails once open is reported as ``"port error: <error>"``."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        thread_name: str,
        log: Any,
        baudrate: int,
        read_timeout: float,
        write_timeout: float | None = None,
        parity: str = serial.PARITY_NONE,
        reopen_backoff: tuple[float, float] = (0.5, 30.0),
        stable_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        close_timeout: float = 1.0,
        redact_errors: bool = False,
    ) -> None:
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive int, got {baudrate!r}")
        self._url = url
        self._name = name
        self._thread_name = thread_name
        self._log = log
        self._baudrate = baudrate
        self._parity = parity
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._backoff = Backoff(*reopen_backoff)
        self._stable_s = stable_s
        self._monotonic = monotonic
        self._close_timeout = close_timeout
        self._redact_errors = redact_errors

        # Shared with callers (guarded by _lock; _cond waits on the same lock).
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._connected = False
        self._faulted = False
        self._faults = 0
        self._port_errors = 0
        self._listener_errors = 0

        # Worker-thread only.
        self._port: Any = None
        self._opened_t = 0.0

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        return self._url

    def start(self) -> None:
        """Start the worker thread (it opens the port). Calling it again does nothing;
        after :meth:`close` it raises RuntimeError."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{type(self).__name__} was closed; make a new one")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker and close the port, waiting up to ``timeout`` seconds (the
        driver's default when None) for the thread. Safe to call twice. Called from a
        callback (on the worker thread), it only asks the thread to stop."""
        with self._cond:
            self._closed = True
            self._stop.set()
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            self._closed_before_start()
            return
        if thread is threading.current_thread():
            return
        join_s = self._close_timeout if timeout is None else timeout
        thread.join(join_s)
        if thread.is_alive():
            self._log.warning(f"{self._name}_close_timeout", timeout_s=join_s)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ driver hooks

    def _step(self) -> None:
        """One turn of the worker loop: open the port if there is none, else serve it."""
        if self._port is None:
            self._reopen()
        else:
            self._serve()

    def _serve(self) -> None:
        """One unit of work on the open port. Raise PortFailure (or let an OSError out)
        when the port fails."""
        raise NotImplementedError

    def _port_opened(self) -> None:
        """The port was (re)opened (on the worker thread): forget partial frames, reset
        schedules."""

    def _on_fault(self, reason: str) -> None:
        """First failure of an outage (after it was logged)."""

    def _on_recovered(self) -> None:
        """The port opened again after an outage (after it was logged)."""

    def _on_stop(self) -> None:
        """The worker is ending (before the port is closed)."""

    def _closed_before_start(self) -> None:
        """:meth:`close` was called and the worker never started."""

    def _start_fields(self) -> dict[str, Any]:
        """Extra fields of the ``<name>_start`` log line."""
        return {}

    def _stop_fields(self) -> dict[str, Any]:
        """Extra fields of the ``<name>_stop`` log line."""
        return {}

    # ------------------------------------------------------------------ worker thread

    def _run(self) -> None:
        self._log.info(f"{self._name}_start", baudrate=self._baudrate, **self._start_fields())
        try:
            while not self._stop.is_set():
                try:
                    self._turn()
                except WorkerStopped:
                    break
        finally:
            self._shutdown()

    def _turn(self) -> None:
        """One turn of the loop: a step, its port failure handled, a bug logged. Only
        WorkerStopped gets out."""
        try:
            try:
                self._step()
            except (PortFailure, OSError) as exc:
                self._port_failed(exc)
        except WorkerStopped:
            raise
        except Exception as exc:  # a bug here must not kill the worker
            self._log_error(f"{self._name}_internal_error", exc)
            self._wait(INTERNAL_ERROR_PAUSE_S)

    def _shutdown(self) -> None:
        try:
            self._on_stop()
        except Exception as exc:
            self._log_error(f"{self._name}_shutdown_error", exc)
        self._close_port()
        with self._lock:
            self._connected = False
        self._log.info(f"{self._name}_stop", **self._stop_fields())

    def _wait(self, seconds: float) -> None:
        """Wait up to ``seconds``; returns at once when stopping (or when notified)."""
        with self._cond:
            if not self._stop.is_set() and seconds > 0:
                self._cond.wait(seconds)

    def _stopping(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ port

    def _open_port(self) -> None:
        """Open the port (no-op when open). Raises PortFailure."""
        if self._port is not None:
            return
        try:
            port = self._make_port()
        except Exception as exc:  # SerialException, OSError, ValueError for a bad URL
            raise PortFailure(str(exc)) from exc
        self._port = port
        self._opened_t = self._monotonic()
        self._port_opened()

    def _make_port(self) -> Any:
        """A new open port object (pyserial's; a test may hand in its own)."""
        return serial.serial_for_url(
            self._url,
            baudrate=self._baudrate,
            bytesize=serial.EIGHTBITS,
            parity=self._parity,
            stopbits=serial.STOPBITS_ONE,
            timeout=self._read_timeout,
            write_timeout=self._write_timeout,
        )

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:
                self._log.warning(f"{self._name}_port_close_failed", error=str(exc))

    def _read_available(self) -> bytes:
        """What arrives within one read timeout (at least one byte is waited for)."""
        port = self._port
        if port is None:
            raise PortFailure("port not open")
        try:
            data: bytes = port.read(port.in_waiting or 1)
        except Exception as exc:  # SerialException, OSError (EIO on unplug)
            raise PortFailure(str(exc)) from exc
        return data

    def _write(self, data: bytes) -> None:
        port = self._port
        if port is None:
            raise PortFailure("port not open")
        try:
            port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise PortFailure(str(exc)) from exc

    # ------------------------------------------------------------------ open, faults, backoff

    def _reopen(self) -> None:
        """Open the port; on failure report it and wait out the backoff."""
        try:
            self._open_port()
        except PortFailure as exc:
            self._port_fault(f"{self.OPEN_FAILED}: {exc}")
            self._backoff_wait()
            return
        with self._lock:
            self._connected = True
            recovered, self._faulted = self._faulted, False
        if recovered:
            self._log.info(f"{self._name}_recovered")
            self._on_recovered()
        else:
            self._log.info(f"{self._name}_port_open")

    def _port_failed(self, exc: BaseException) -> None:
        """The open port failed: close it, report, wait out the backoff."""
        self._close_port()
        if self._monotonic() - self._opened_t >= self._stable_s:
            self._backoff.reset()
        self._port_fault(f"port error: {exc}")
        self._backoff_wait()

    def _port_fault(self, reason: str) -> None:
        """Count a failed open / port failure; report only the first of an outage."""
        with self._lock:
            self._connected = False
            self._port_errors += 1
            first = not self._faulted
            if first:
                self._faulted = True
                self._faults += 1
        if not first:
            self._log.debug(
                f"{self._name}_retry_failed", reason=reason, retry_s=self._backoff.delay
            )
            return
        self._log.warning(f"{self._name}_fault", reason=reason, retry_s=self._backoff.delay)
        self._on_fault(reason)

    def _backoff_wait(self) -> None:
        self._wait(self._backoff.delay)
        self._backoff.grow()

    # ------------------------------------------------------------------ callback guard

    def _emit(self, name: str, call: Callable[[], None]) -> None:
        """Run a callback into the core; an exception is counted and logged, never raised."""
        try:
            call()
        except Exception as exc:
            with self._lock:
                self._listener_errors += 1
            self._log_error(f"{self._name}_listener_error", exc, callback=name)

    def _log_error(self, event: str, exc: BaseException, **fields: Any) -> None:
        if self._redact_errors:
            # Never the message or exc_info: it may carry a secret (a pickup code).
            self._log.error(event, error_type=type(exc).__name__, where=where(exc), **fields)
        else:
            self._log.error(event, exc_info=exc, **fields)
