"""One pty base for every simulated serial device: the CU16 boards
(:mod:`simulator.cu16_device`), the pickup-code reader (:mod:`simulator.codereader_device`) and
the GSM modem (:mod:`simulator.modem_device`). The real drivers open :attr:`PtyDevice.port`
exactly like a USB serial adapter.

* **The line**: ``pty.openpty()``, the slave in raw mode, the master (the device's side)
  non-blocking. The simulator keeps its own slave fd open, so the line survives the driver
  closing and reopening the port.
* **The path**: :attr:`PtyDevice.port` is the pty slave (``/dev/pts/N``) or, given a
  ``link_name``, a stable symlink in a private temporary directory that points at the current
  slave (:attr:`PtyDevice.tty`), like udev's ``/dev/serial/by-id/usb-...``.
* **Unplugging**: :meth:`PtyDevice.set_unplugged` pulls the device (symlink removed, both pty
  fds closed: a driver reading the old slave gets EIO, what pyserial reports for a pulled USB
  adapter, and opening the link fails with "No such file or directory") or plugs it back in
  (a fresh pty pair behind the same link). ``plugged=False`` starts unplugged.
* **Serving**: a device that answers calls :meth:`PtyDevice._start_serving`; a daemon thread
  then hands everything the driver writes to :meth:`PtyDevice._on_input`, and calls it with
  ``b""`` when :meth:`PtyDevice._poll_timeout` passes without input (timers, a quiet line).
* **Writing**: :meth:`PtyDevice._write_some` writes without blocking (a driver that stops
  reading loses bytes, like a full UART FIFO).
* :meth:`PtyDevice.close` stops the thread and closes every fd; safe to call twice.

Threading: ``_lock`` (reentrant) guards the fds and whatever state a device keeps; the
serving thread reads under it and calls ``_on_input`` without it (the hook takes it as it
needs). No module-level state: any number of devices can live in one process.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import shutil
import tempfile
import threading
import tty
from typing import Self

_CLOSE_JOIN_S = 2.0


class PtyDevice:
    """A simulated serial device on the master side of a pty pair; see the module docstring.

    ``link_name``: serve :attr:`port` as a stable symlink of that name (else the pty slave
    path). ``plugged``: start plugged in.
    """

    def __init__(self, *, link_name: str | None = None, plugged: bool = True) -> None:
        self._lock = threading.RLock()
        self._closed = False
        self._master: int | None = None
        self._slave: int | None = None
        self._tty: str | None = None
        self._generation = 0  # one per pty pair: the serving thread notices a replug
        self._plug_count = 0
        self._thread: threading.Thread | None = None
        self._dir = tempfile.mkdtemp(prefix=f"ansim-{link_name}-") if link_name else None
        self._link = os.path.join(self._dir, link_name) if self._dir and link_name else None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        if plugged:
            try:
                self._plug()
            except BaseException:
                self._release()
                raise

    # ------------------------------------------------------------------ public API

    @property
    def port(self) -> str:
        """The path for the driver: the stable link (absent while unplugged) or the pty
        slave (``/dev/pts/N``)."""
        if self._link is not None:
            return self._link
        with self._lock:
            return self._tty or ""

    @property
    def tty(self) -> str | None:
        """The current pty slave path (``/dev/pts/N``), or None while unplugged."""
        with self._lock:
            return self._tty

    @property
    def plugged(self) -> bool:
        with self._lock:
            return self._master is not None

    def set_unplugged(self, unplugged: bool = True) -> None:
        """Pull the device (link removed, pty closed: the driver's reads fail) or plug it
        back in (a fresh pty behind the same :attr:`port` link). Idempotent."""
        with self._lock:
            self._check_open()
            if unplugged:
                self._unplug()
            elif self._master is None:
                self._plug()
        self._wake()

    def close(self) -> None:
        """Stop the serving thread, unplug for good, close every fd and remove the
        temporary directory. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_CLOSE_JOIN_S)
        with self._lock:
            self._unplug()
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ for devices

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    def _start_serving(self, thread_name: str) -> None:
        """Start the serving thread (call once, when the device's state is ready)."""
        self._thread = threading.Thread(target=self._serve, name=thread_name, daemon=True)
        self._thread.start()

    def _poll_timeout(self) -> float | None:
        """How long the serving thread waits for input before calling ``_on_input(b"")``
        (None: only input wakes it)."""
        return None

    def _on_input(self, data: bytes) -> None:
        """What the driver wrote (or ``b""`` after a quiet ``_poll_timeout``)."""

    def _write_some(self, data: bytes | memoryview) -> int | None:
        """Write what fits now; the number of bytes written, or None when the line is gone
        (unplugged, closed, or the write failed)."""
        master = self._master
        if master is None:
            return None
        try:
            return os.write(master, data)
        except BlockingIOError:
            return 0
        except OSError:
            return None

    # ------------------------------------------------------------------ internals

    def _plug(self) -> None:
        """A fresh pty pair (lock held), behind the link if there is one."""
        master, slave = pty.openpty()
        try:
            tty.setraw(slave)
            os.set_blocking(master, False)
            name = os.ttyname(slave)
            if self._link is not None:
                tmp = self._link + ".new"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                os.symlink(name, tmp)
                os.replace(tmp, self._link)  # atomic: the link never points at a stale pty
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master, self._slave, self._tty = master, slave, name
        self._generation += 1
        self._plug_count += 1

    def _unplug(self) -> None:
        """Remove the link and close the pty pair (lock held)."""
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._link)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = self._tty = None
        self._generation += 1

    def _release(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _serve(self) -> None:
        dead = -1  # generation of a line that reported EOF/EIO: wait for a replug
        while True:
            with self._lock:
                if self._closed:
                    return
                generation, master = self._generation, self._master
            watch = [self._wake_r]
            if master is not None and generation != dead:
                watch.append(master)
            try:
                ready, _, _ = select.select(watch, [], [], self._poll_timeout())
            except (OSError, ValueError):  # an fd closed under us (unplug, close)
                with self._lock:
                    if self._closed or generation == self._generation:
                        return
                continue
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 512)
                continue
            data = b""
            if ready:
                assert master is not None
                with self._lock:
                    if generation != self._generation:
                        continue  # unplugged or replugged meanwhile: look again
                    try:
                        data = os.read(master, 4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                if not data:
                    dead = generation
                    continue
            self._on_input(data)
