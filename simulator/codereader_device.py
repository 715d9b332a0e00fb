"""A simulated pickup-code reader (keypad or QR/barcode scanner) behind a pty pair.

:class:`SimulatedCodeReader`, a :class:`~simulator.ptydevice.PtyDevice`, writes what a reader
would send to the master side of a pty pair: each typed code followed by the terminator
(CR by default). The driver under test opens :attr:`SimulatedCodeReader.port` exactly like a
USB scanner.

Stable port path and unplugging
-------------------------------
A real installation opens a udev symlink (``/dev/serial/by-id/usb-...``) that disappears when
the USB device is pulled and comes back, pointing at a possibly different ``/dev/ttyUSBn``,
when it is plugged in again. The simulator does the same: :attr:`port` is a symlink in a
private temporary directory that points at the current pty slave (:attr:`tty`); the pty base
does the plugging.

``set_unplugged(True)`` removes the symlink and closes both pty fds: a driver reading the old
slave gets EIO (what pyserial reports for a pulled USB adapter), and opening :attr:`port`
fails with "No such file or directory". ``set_unplugged(False)`` opens a fresh pty pair and
recreates the symlink, so a driver that reopens :attr:`port` finds the device again.
``SimulatedCodeReader(plugged=False)`` starts unplugged (a reader missing at boot).

Keystrokes while unplugged are lost (counted in ``lost``), like on real hardware.

The reader never receives anything from the driver, so there is no serving thread: the
public methods write to the master fd directly, under one lock. They are thread-safe and
never block for long: if the driver stops reading and the pty buffer stays full for
``write_timeout`` seconds, the rest of that write is dropped and counted.

Secrecy: like the driver, the simulator keeps no code text; :meth:`snapshot` holds counts.
No module-level state: any number of simulated readers can live in one process.
"""

from __future__ import annotations

import select
import time
from typing import Any

from simulator.ptydevice import PtyDevice


class SimulatedCodeReader(PtyDevice):
    """A pickup-code reader on a pty. See the module docstring.

    ``terminator``: what the device sends after each code (``b"\\r"``, ``b"\\n"`` or
    ``b"\\r\\n"``; any non-empty bytes are accepted). ``plugged``: start plugged in.
    ``write_timeout``: how long one write may wait for a full pty buffer to drain.
    """

    LINK_NAME = "codereader"

    def __init__(
        self,
        terminator: bytes = b"\r",
        *,
        plugged: bool = True,
        write_timeout: float = 1.0,
    ) -> None:
        self._terminator = self._check_terminator(terminator)
        if not write_timeout > 0:
            raise ValueError(f"write_timeout must be > 0, got {write_timeout!r}")
        self._write_timeout = write_timeout
        self._typed = 0
        self._lost = 0
        self._raw_writes = 0
        self._bytes_written = 0
        self._dropped_bytes = 0
        super().__init__(link_name=self.LINK_NAME, plugged=plugged)

    # ------------------------------------------------------------------ public API

    def type_code(self, code: str, *, terminator: bytes | None = None) -> bool:
        """Send ``code`` followed by the terminator (the device's default, or ``terminator``
        for this one code). Returns False when the keystrokes went nowhere (unplugged) or
        were cut short (pty buffer full); True when every byte was written."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, got {type(code).__name__}")
        end = self._terminator if terminator is None else self._check_terminator(terminator)
        data = code.encode("utf-8") + end
        with self._lock:
            self._check_open()
            if self._master is None:
                self._lost += 1
                return False
            complete = self._write(data)
            if complete:
                self._typed += 1
            else:
                self._lost += 1
            return complete

    def send_raw(self, data: bytes) -> bool:
        """Send arbitrary bytes (line noise, a wrong baud rate, half a code). Returns False
        when unplugged or cut short."""
        raw = bytes(data)
        with self._lock:
            self._check_open()
            if self._master is None:
                return False
            self._raw_writes += 1
            return self._write(raw)

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable counters; never code text. ``typed`` codes fully written,
        ``lost`` codes typed while unplugged or cut short, ``raw_writes`` / ``bytes_written``
        / ``dropped_bytes`` for everything sent, ``plugged``, ``plug_count`` (pty pairs
        opened so far), ``port`` and ``tty``."""
        with self._lock:
            return {
                "port": self.port,
                "tty": self._tty,
                "plugged": self._master is not None,
                "plug_count": self._plug_count,
                "typed": self._typed,
                "lost": self._lost,
                "raw_writes": self._raw_writes,
                "bytes_written": self._bytes_written,
                "dropped_bytes": self._dropped_bytes,
            }

    # ------------------------------------------------------------------ internals (lock held)

    @staticmethod
    def _check_terminator(terminator: bytes) -> bytes:
        if not isinstance(terminator, bytes) or not terminator:
            raise ValueError(f"terminator must be non-empty bytes, got {terminator!r}")
        return terminator

    def _write(self, data: bytes) -> bool:
        """Write all of ``data`` to the master, waiting up to ``write_timeout`` for room."""
        master = self._master
        assert master is not None
        view = memoryview(data)
        deadline = time.monotonic() + self._write_timeout
        while view:
            n = self._write_some(view)
            if n is None:
                break
            self._bytes_written += n
            view = view[n:]
            if not view:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                select.select([], [master], [], remaining)
            except (OSError, ValueError):
                pass
        self._dropped_bytes += len(view)
        return not view
