"""Pickup-code reader (QR/barcode scanner or keypad on a serial line): framing and driver.

Wire format: one code per line, terminated by CR, LF or CRLF; 9600 8N1 by default. Nothing is
ever written to the reader.

Layers, in the style of ``serial.threaded``:

* **Framing** (pure, no I/O, no threads): :class:`CodeFramer`, fed whatever bytes the line
  produced, returns complete codes. It never raises on input and counts what it threw away.
* **Driver** :class:`CodeReader`: owns one serial port (device path, pty path or
  ``socket://host:port``), reads and frames on its own daemon thread and hands every code to
  a listener. Port failures (missing device, unplugged USB) are reported once and the port is
  reopened with exponential backoff.

Threading rules
---------------
* :class:`CodeFramer` is not thread-safe; it belongs to one thread.
* :class:`CodeReader` public methods (``start``, ``stats``, ``close``) may be called from
  any thread. The serial port and the framer are touched only by the reader thread.
* ``listener``, ``on_fault`` and ``on_recovered`` run **on the reader thread**. They must be
  cheap and must not block (hand the code to the core's queue and return). An exception
  raised by one is logged (without its message) and swallowed; it never stops the reader.

Secrecy
-------
Pickup codes open lockers: **no code, nor any part of one, is ever logged** by this module,
only lengths and counters. That includes exceptions: an exception raised by the listener may
well carry the code in its message (``KeyError('482913')``) and a rich traceback renderer may
print local variables, so listener and internal errors are logged as exception type and
source location only, never with ``exc_info``.

There is no module-level mutable state: any number of readers can live in one process.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Final

import serial
import structlog

_CR: Final = 0x0D
_LF: Final = 0x0A

BAUDRATE: Final = 9600
READ_TIMEOUT_S: Final = 0.2
"""Serial read timeout; bounds how long :meth:`CodeReader.close` waits for the thread."""
MAX_UTF8_BYTES_PER_CHAR: Final = 4
STABLE_S: Final = 5.0
"""A port that stayed open this long before failing restarts the reopen backoff from its
first delay; a port that fails sooner (a flapping connector) keeps backing off."""


# --------------------------------------------------------------------------- framing


class CodeFramer:
    """Splits the reader's byte stream into codes: ``feed(bytes) -> list[str]``.

    * A line ends at CR, LF or CRLF. CRLF is one terminator, also when CR and LF arrive in
      different feeds. Empty (or whitespace-only) lines are dropped silently.
    * A line is decoded as UTF-8 (ASCII is a subset) and stripped of surrounding whitespace.
    * Garbage, counted in ``garbage`` (one per line) and dropped:

      - a line that is not valid UTF-8;
      - a line holding a non-printable character (control bytes, line noise) after
        stripping;
      - a line longer than ``max_len`` characters after stripping. To bound memory, a line
        whose raw bytes exceed ``4 * max_len`` (the most UTF-8 bytes ``max_len`` characters
        can take) is counted as soon as it crosses that bound and everything up to the next
        terminator is discarded.

    The result depends only on the byte stream, never on how it was split into feeds. After
    any garbage, the next terminator resynchronises: the following line is read normally.

    Counters: ``lines`` returned, ``garbage`` lines dropped. :attr:`pending` is the number of
    bytes of an unfinished line.
    """

    def __init__(self, max_len: int = 64) -> None:
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
        self.max_len = max_len
        self._max_raw = max_len * MAX_UTF8_BYTES_PER_CHAR
        self.lines = 0
        self.garbage = 0
        self._buf = bytearray()
        self._discarding = False
        self._after_cr = False

    @property
    def pending(self) -> int:
        """Bytes of a line not yet terminated."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget an unfinished line (after the port was reopened). A non-empty partial line
        is counted as garbage: it was cut off and can never complete."""
        if self._buf:
            self.garbage += 1
        self._buf.clear()
        self._discarding = False
        self._after_cr = False

    def feed(self, data: bytes | bytearray) -> list[str]:
        """Consume ``data``; return the codes completed by it, in order."""
        out: list[str] = []
        buf = self._buf
        for byte in data:
            if byte == _LF and self._after_cr:  # the LF of a CRLF: same terminator
                self._after_cr = False
                continue
            self._after_cr = byte == _CR
            if byte in (_CR, _LF):
                if self._discarding:
                    self._discarding = False
                elif buf:
                    self._finish(out)
                continue
            if self._discarding:
                continue
            buf.append(byte)
            if len(buf) > self._max_raw:
                self.garbage += 1
                buf.clear()
                self._discarding = True
        return out

    def _finish(self, out: list[str]) -> None:
        raw = bytes(self._buf)
        self._buf.clear()
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.garbage += 1
            return
        if not text:
            return
        if len(text) > self.max_len or not text.isprintable():
            self.garbage += 1
            return
        self.lines += 1
        out.append(text)


# --------------------------------------------------------------------------- driver


def _where(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame: a location, never a value."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


class CodeReader:
    """One pickup-code reader on a serial port, read from its own daemon thread.

    ``url`` is anything ``serial.serial_for_url`` opens (``/dev/ttyUSB0``, a
    ``/dev/serial/by-id/...`` symlink, a pty path, ``socket://host:port``); it is opened
    ``baudrate`` 8N1 with a 0.2 s read timeout. Every code is passed to ``listener(code)`` on
    the reader thread, in arrival order.

    Failures: when the port cannot be opened or fails while reading, ``on_fault(reason)`` is
    called **once** (``reason`` describes the port error; it never contains code text) and
    the port is reopened after ``reopen_backoff[0]`` seconds, doubling up to
    ``reopen_backoff[1]``; further failed attempts are only logged at debug level. When the
    port opens again, ``on_recovered()`` is called once. A port that opens on the first try
    produces neither. No exception from I/O or a callback ends the thread. A line cut off by
    a port failure is dropped (counted as garbage).

    ``monotonic`` (injectable) stamps ``stats()`` and decides whether a failed connection was
    up long enough (:data:`STABLE_S`) to restart the backoff; the waits themselves use real
    time.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = BAUDRATE,
        listener: Callable[[str], None],
        max_len: int = 64,
        monotonic: Callable[[], float] = time.monotonic,
        reopen_backoff: tuple[float, float] = (0.5, 30.0),
        on_fault: Callable[[str], None] | None = None,
        on_recovered: Callable[[], None] | None = None,
    ) -> None:
        if isinstance(baudrate, bool) or not isinstance(baudrate, int) or baudrate <= 0:
            raise ValueError(f"baudrate must be a positive int, got {baudrate!r}")
        first, most = reopen_backoff
        if not 0 < first <= most:
            raise ValueError(
                f"reopen_backoff must be (first, max) with 0 < first <= max, got {reopen_backoff!r}"
            )
        self._url = url
        self._baudrate = baudrate
        self._listener = listener
        self._on_fault = on_fault
        self._on_recovered = on_recovered
        self._monotonic = monotonic
        self._backoff_first = first
        self._backoff_max = most
        self._framer = CodeFramer(max_len)  # validates max_len
        # A fresh logger per reader, bound now (structlog's capture_logs sees it in tests).
        self._log = structlog.get_logger(__name__).bind(reader=url)

        # Shared with callers (guarded by _lock).
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._connected = False
        self._faulted = False
        self._faults = 0
        self._port_errors = 0
        self._listener_errors = 0
        self._lines = 0
        self._garbage = 0
        self._last_line_t: float | None = None

        # Reader-thread only.
        self._port: Any = None
        self._backoff = first
        self._opened_t = 0.0

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        return self._url

    def start(self) -> None:
        """Start the reader thread (it opens the port). Calling it again does nothing;
        after :meth:`close` it raises RuntimeError."""
        with self._lock:
            if self._closed:
                raise RuntimeError("CodeReader was closed; make a new one")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"codereader[{self._url}]", daemon=True
            )
            self._thread.start()

    def stats(self) -> dict[str, Any]:
        """Counters: ``lines`` delivered, ``garbage`` lines dropped, ``faults`` (outages
        reported via ``on_fault``), ``connected`` (port open now), plus ``faulted`` (an
        outage is in progress), ``port_errors`` (every failed open/read), ``listener_errors``
        and ``last_line_t`` (``monotonic`` time of the last code, or None)."""
        with self._lock:
            return {
                "lines": self._lines,
                "garbage": self._garbage,
                "faults": self._faults,
                "connected": self._connected,
                "faulted": self._faulted,
                "port_errors": self._port_errors,
                "listener_errors": self._listener_errors,
                "last_line_t": self._last_line_t,
            }

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread and close the port; returns within about one read timeout
        (0.2 s) plus whatever a running callback takes. Safe to call twice. Called from a
        callback (on the reader thread), it only asks the thread to stop."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout)
        if thread.is_alive():
            self._log.warning("codereader_close_timeout", timeout_s=timeout)

    def __enter__(self) -> CodeReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reader thread

    def _run(self) -> None:
        self._log.info("codereader_start", baudrate=self._baudrate)
        try:
            while not self._stop.is_set():
                try:
                    if self._port is None:
                        if not self._open_port():
                            self._wait_backoff()
                        continue
                    try:
                        data = self._port.read(self._port.in_waiting or 1)
                    except Exception as exc:  # SerialException, OSError (EIO on unplug)
                        self._port_failed(exc)
                        continue
                    if data:
                        self._handle(data)
                except Exception as exc:  # a bug here must not kill the reader
                    self._log.error(
                        "codereader_internal_error",
                        error_type=type(exc).__name__,
                        where=_where(exc),
                    )
                    self._stop.wait(0.1)
        finally:
            self._close_port()
            with self._lock:
                self._connected = False
            self._log.info("codereader_stop", **self._counters())

    def _counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "lines": self._lines,
                "garbage": self._garbage,
                "faults": self._faults,
                "port_errors": self._port_errors,
            }

    def _open_port(self) -> bool:
        try:
            port = serial.serial_for_url(
                self._url,
                baudrate=self._baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=READ_TIMEOUT_S,
            )
        except Exception as exc:  # SerialException, OSError, ValueError for a bad URL
            self._fail(f"cannot open port: {exc}")
            return False
        self._port = port
        self._opened_t = self._monotonic()
        self._framer.reset()  # a line cut off by the last failure can never complete
        with self._lock:
            self._garbage = self._framer.garbage
            self._connected = True
            recovered, self._faulted = self._faulted, False
        if recovered:
            self._log.info("codereader_recovered")
            if self._on_recovered is not None:
                self._emit("on_recovered", self._on_recovered)
        else:
            self._log.info("codereader_port_open")
        return True

    def _port_failed(self, exc: BaseException) -> None:
        self._close_port()
        if self._monotonic() - self._opened_t >= STABLE_S:
            self._backoff = self._backoff_first
        self._fail(f"port error: {exc}")
        self._wait_backoff()

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._connected = False
            self._port_errors += 1
            first = not self._faulted
            if first:
                self._faulted = True
                self._faults += 1
        if not first:
            self._log.debug("codereader_retry_failed", reason=reason, retry_s=self._backoff)
            return
        self._log.warning("codereader_fault", reason=reason, retry_s=self._backoff)
        on_fault = self._on_fault
        if on_fault is not None:
            self._emit("on_fault", lambda: on_fault(reason))

    def _wait_backoff(self) -> None:
        self._stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, self._backoff_max)

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:
                self._log.warning("codereader_port_close_failed", error=str(exc))

    def _handle(self, data: bytes) -> None:
        framer = self._framer
        garbage_before = framer.garbage
        codes = framer.feed(data)
        now = self._monotonic() if codes else None
        with self._lock:
            self._lines = framer.lines
            self._garbage = framer.garbage
            if now is not None:
                self._last_line_t = now
        if framer.garbage > garbage_before:
            self._log.debug(
                "codereader_garbage", count=framer.garbage - garbage_before, total=framer.garbage
            )
        for code in codes:
            self._log.debug("codereader_code", length=len(code))
            self._deliver(code)

    def _deliver(self, code: str) -> None:
        try:
            self._listener(code)
        except Exception as exc:
            # Never log the exception's message or exc_info: it may carry the code.
            with self._lock:
                self._listener_errors += 1
            self._log.error(
                "codereader_listener_error",
                callback="listener",
                error_type=type(exc).__name__,
                where=_where(exc),
            )

    def _emit(self, name: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:
            with self._lock:
                self._listener_errors += 1
            self._log.error(
                "codereader_listener_error",
                callback=name,
                error_type=type(exc).__name__,
                where=_where(exc),
            )
