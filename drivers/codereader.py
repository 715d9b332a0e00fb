"""Pickup-code reader (QR/barcode scanner or keypad on a serial line): framing and driver.

Wire format: one code per line, terminated by CR, LF or CRLF; 9600 8N1 by default. Nothing is
ever written to the reader.

Layers, in the style of ``serial.threaded``:

* **Framing** (pure, no I/O, no threads): :class:`~drivers.codereader_protocol.CodeFramer`
  in :mod:`drivers.codereader_protocol` (re-exported here), fed whatever bytes the line
  produced, returns complete codes. It never raises on input and counts what it threw away.
* **Driver** :class:`CodeReader`, a :class:`~drivers.serialworker.SerialWorker`: owns one
  serial port (device path, pty path or ``socket://host:port``), reads and frames on its own
  daemon thread and hands every code to a listener. Port failures (missing device, unplugged
  USB) are reported once and the port is reopened with exponential backoff.

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

import functools
import time
from collections.abc import Callable
from typing import Any, Final

import structlog

from drivers.codereader_protocol import MAX_UTF8_BYTES_PER_CHAR, CodeFramer
from drivers.serialworker import SerialWorker

__all__ = [
    "BAUDRATE",
    "MAX_UTF8_BYTES_PER_CHAR",
    "READ_TIMEOUT_S",
    "STABLE_S",
    "CodeFramer",
    "CodeReader",
]

BAUDRATE: Final = 9600
READ_TIMEOUT_S: Final = 0.2
"""Serial read timeout; bounds how long :meth:`CodeReader.close` waits for the thread."""
STABLE_S: Final = 5.0
"""A port that stayed open this long before failing restarts the reopen backoff from its
first delay; a port that fails sooner (a flapping connector) keeps backing off."""


class CodeReader(SerialWorker):
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
        super().__init__(
            url,
            name="codereader",
            thread_name=f"codereader[{url}]",
            # A fresh logger per reader, bound now (structlog's capture_logs sees it in tests).
            log=structlog.get_logger(__name__).bind(reader=url),
            baudrate=baudrate,
            read_timeout=READ_TIMEOUT_S,
            reopen_backoff=reopen_backoff,
            stable_s=STABLE_S,
            monotonic=monotonic,
            close_timeout=1.0,
            redact_errors=True,  # listener exceptions may carry the code
        )
        self._listener = listener
        self._on_fault_cb = on_fault
        self._on_recovered_cb = on_recovered
        self._framer = CodeFramer(max_len)  # validates max_len; reader-thread only
        # Shared with callers (guarded by _lock).
        self._lines = 0
        self._garbage = 0
        self._last_line_t: float | None = None

    # ------------------------------------------------------------------ public API

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

    # ------------------------------------------------------------------ reader thread

    def _serve(self) -> None:
        data = self._read_available()
        if data:
            self._handle(data)

    def _port_opened(self) -> None:
        self._framer.reset()  # a line cut off by the last failure can never complete
        with self._lock:
            self._garbage = self._framer.garbage

    def _on_fault(self, reason: str) -> None:
        on_fault = self._on_fault_cb
        if on_fault is not None:
            self._emit("on_fault", lambda: on_fault(reason))

    def _on_recovered(self) -> None:
        if self._on_recovered_cb is not None:
            self._emit("on_recovered", self._on_recovered_cb)

    def _stop_fields(self) -> dict[str, Any]:
        stats = self.stats()
        return {k: stats[k] for k in ("lines", "garbage", "faults", "port_errors")}

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
        listener = self._listener
        for code in codes:
            self._log.debug("codereader_code", length=len(code))
            # The guard logs the exception type and location only: it may carry the code.
            self._emit("listener", functools.partial(listener, code))
