"""Running as a systemd service (``Type=notify``): readiness, the watchdog, ``STATUS=`` lines.

The sd_notify protocol (sd_notify(3)) is one datagram of newline-separated ``KEY=VALUE``
lines sent to the AF_UNIX socket named by ``$NOTIFY_SOCKET``, in the abstract namespace when
the name starts with ``@``. It is written out here (a dozen lines) instead of depending on
the ``sdnotify`` package (last release 2017, unmaintained) or on libsystemd bindings (a C
build on the Pi).

- ``READY=1`` goes out from the core thread after ``Site.start()``: every output was
  created in its off state, the store (or degraded mode) is open, the devices are started.
- ``WATCHDOG=1`` goes out from a core-loop timer every ``WatchdogSec/3``, and only while
  the site is healthy: a core loop that hangs (a stuck job, a deadlock, an SD card that
  stalls a commit) runs no timer, the pings stop, and systemd kills and restarts the
  process. The same timer withholds the ping when the uplink's thread supervisor
  (``Site._watchdog``) has not run for ``SUPERVISOR_STALE_S``.
- ``STATUS=`` (shown by ``systemctl status``) is sent with READY and whenever it changes,
  e.g. ``online, 0 pending`` or ``offline, 12 pending, store degraded, 2 faults``.
- ``STOPPING=1`` when a stop is requested (SIGTERM/SIGINT).

Without ``$NOTIFY_SOCKET`` (not started by systemd) nothing is sent and nothing runs.
"""

from __future__ import annotations

import faulthandler
import os
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog

from edge.core.loop import CoreLoop, Timer

if TYPE_CHECKING:
    from edge.site import Site

log = structlog.get_logger(__name__)

PINGS_PER_PERIOD = 3  # ping every WatchdogSec/3: two pings may be late before systemd acts
STATUS_EVERY_S = 5.0  # without a watchdog: how often STATUS= is refreshed
SUPERVISOR_STALE_S = 15.0  # three Site._watchdog periods without the uplink supervisor


class Notifier:
    """Sends sd_notify messages to one socket. Never raises: a failure is logged once per
    distinct error and reported by ``send`` returning False."""

    def __init__(self, address: str) -> None:
        if address.startswith("@"):
            self._address = "\0" + address[1:]  # abstract namespace
        elif address.startswith("/"):
            self._address = address
        else:
            raise ValueError(f"unsupported NOTIFY_SOCKET {address!r} (want /path or @name)")
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # The core thread sends: never wait for a receiver whose queue is full (EAGAIN).
        self._sock.setblocking(False)
        self._last_error: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        """The notifier systemd asked for, or None when there is none (or it is unusable)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        try:
            return cls(address)
        except ValueError as exc:
            log.warning("notify_socket_unsupported", error=str(exc))
            return None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram. Values must not contain newlines."""
        try:
            self._sock.sendto("\n".join(lines).encode("utf-8"), self._address)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc.strerror or exc}"
            if error != self._last_error:
                log.warning("notify_failed", socket=self.address, error=error)
                self._last_error = error
            return False
        self._last_error = None
        return True

    def close(self) -> None:
        self._sock.close()


def watchdog_period(environ: Mapping[str, str] | None = None) -> float | None:
    """``WatchdogSec=`` in seconds when systemd expects pings from this process, else None."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


class Heartbeat:
    """READY, watchdog pings and STATUS lines for one core loop (core thread, except
    ``stopping``, which a signal handler may call)."""

    def __init__(
        self,
        loop: CoreLoop,
        notifier: Notifier,
        *,
        watchdog_s: float | None,
        health: Callable[[], str | None],
        status: Callable[[], str],
    ) -> None:
        self.loop = loop
        self.notifier = notifier
        self.watchdog_s = watchdog_s
        self.interval_s = watchdog_s / PINGS_PER_PERIOD if watchdog_s else STATUS_EVERY_S
        self._health = health
        self._status_of = status
        self._status: str | None = None
        self._problem: str | None = None
        self._timer: Timer | None = None
        self.ready = False

    def start(self) -> None:
        """Core thread, once the site has started: READY=1 and the first STATUS."""
        self._status = self._current_status()
        self.notifier.send("READY=1", f"STATUS={self._status}")
        self.ready = True
        log.info("service_ready", status=self._status, watchdog_s=self.watchdog_s)
        self._timer = self.loop.call_later(self.interval_s, self._tick)

    def _current_status(self) -> str:
        if self._problem is not None:
            return _one_line(f"unhealthy: {self._problem}")
        try:
            return _one_line(self._status_of())
        except Exception as exc:  # a status line must never stop the pings
            return _one_line(f"status unavailable: {exc}")

    def _tick(self) -> None:
        self._timer = self.loop.call_later(self.interval_s, self._tick)  # first: never lost
        try:
            problem = self._health()
        except Exception as exc:
            problem = f"health check failed: {type(exc).__name__}: {exc}"
        if problem != self._problem:
            if problem is not None:
                log.error("watchdog_withheld", reason=problem)
            else:
                log.info("watchdog_resumed")
        self._problem = problem
        lines: list[str] = []
        if problem is None and self.watchdog_s is not None:
            lines.append("WATCHDOG=1")
        status = self._current_status()
        if status != self._status:
            lines.append(f"STATUS={status}")
            self._status = status
        if lines:
            self.notifier.send(*lines)

    def stopping(self) -> None:
        """Any thread or a signal handler: tell systemd the stop has begun."""
        self.notifier.send("STOPPING=1", "STATUS=stopping")

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def site_status(site: Site) -> str:
    """The one-line STATUS= of a site, e.g. ``online, 0 pending``."""
    parts = ["online" if site.outbox.online else "offline", f"{len(site.store)} pending"]
    if site.store.degraded:
        parts.append("store degraded")
    faults = len(site.faults.active())
    if faults:
        parts.append(f"{faults} fault{'s' if faults > 1 else ''}")
    return ", ".join(parts)


def site_problem(site: Site) -> str | None:
    """Why the site should be restarted, or None while it is healthy. The core loop running
    this at all is the main evidence; on top, the uplink's supervisor must be running."""
    age = site.clock.monotonic() - site.uplink_checked_at
    if age > SUPERVISOR_STALE_S:
        return f"uplink supervisor has not run for {age:.0f} s"
    return None


class NotifiedSite:
    """What ``cli._serve`` runs: the site, telling systemd STOPPING=1 when asked to stop."""

    def __init__(self, site: Site, heartbeat: Heartbeat) -> None:
        self.site = site
        self.heartbeat = heartbeat

    def run(self) -> None:
        self.site.run()

    def stop_soon(self) -> None:
        self.heartbeat.stopping()
        self.site.stop_soon()


def attach(site: Site, environ: Mapping[str, str] | None = None) -> NotifiedSite | None:
    """Wire a site to systemd when started by it (``$NOTIFY_SOCKET``); call before
    ``site.run()`` and run the returned object instead. READY is posted to the core loop,
    whose first batch runs right after ``Site.start()``."""
    notifier = Notifier.from_environ(environ)
    if notifier is None:
        return None
    period = watchdog_period(environ)
    if period is not None and not faulthandler.is_enabled():
        # The watchdog kills a hung daemon with SIGABRT: leave every thread's traceback in
        # the journal so the hang can be found.
        faulthandler.enable()
    heartbeat = Heartbeat(
        site.loop,
        notifier,
        watchdog_s=period,
        health=lambda: site_problem(site),
        status=lambda: site_status(site),
    )
    site.loop.post(heartbeat.start)
    return NotifiedSite(site, heartbeat)
