"""The site's network link in the simulator: a TCP relay between the site and its broker,
so the link can be cut on purpose (``POST /link``, docs/simulator-api.md#post-link).

``sim`` points the site at the relay (``mqtt://127.0.0.1:<free port>``), and the relay
passes bytes to the real broker unchanged. A cut closes every relayed connection at once
(the site sees its connection reset, as when a router reboots) and, until it ends, takes
each new connection and closes it before a byte is passed (the site's reconnect attempts
fail: "connection closed before CONNACK"). Nothing in the site knows about the relay.

Threads: one accept thread, two pump threads per relayed connection, one timer per cut.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from edge.core.clock import rfc3339

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 5.0
MAX_CUT_S = 3600.0


def _close(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on it
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One relayed connection: the site's socket and the broker's."""

    def __init__(self, down: socket.socket) -> None:
        self.down = down
        self.up: socket.socket | None = None
        self.closed = False
        self._lock = threading.Lock()

    def attach(self, up: socket.socket) -> bool:
        with self._lock:
            if self.closed:
                return False
            self.up = up
            return True

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            socks = (self.down, self.up)
        for s in socks:
            _close(s)


class LinkProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self.on_change = on_change
        self._listener = socket.create_server((host, 0))
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._cut_until: float | None = None  # monotonic
        self._cut_until_wall: datetime | None = None
        self._timer: threading.Timer | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.cuts = 0
        self.refused = 0  # connections taken and closed during a cut
        self.relayed = 0  # connections passed to the broker

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"mqtt://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name="sim-link", daemon=True)
        self._thread.start()

    # ---- cutting ----
    @property
    def is_cut(self) -> bool:
        with self._lock:
            return self._cut_until is not None

    def cut(self, seconds: float) -> dict[str, Any]:
        """Cut the link for ``seconds`` (a cut in progress is replaced); 0 restores it."""
        if seconds <= 0:
            self.restore()
            return self.snapshot()
        seconds = min(float(seconds), MAX_CUT_S)
        with self._lock:
            if self._closed:
                return self.snapshot_locked()
            if self._timer is not None:
                self._timer.cancel()
            self._cut_until = time.monotonic() + seconds
            self._cut_until_wall = datetime.now(UTC) + timedelta(seconds=seconds)
            self.cuts += 1
            timer = threading.Timer(seconds, self._timer_fired)
            timer.daemon = True
            timer.name = "sim-link-cut"
            self._timer = timer
            pairs = list(self._pairs)
            self._pairs.clear()
        timer.start()
        for pair in pairs:
            pair.close()
        log.warning("sim_link_cut", seconds=seconds, connections_closed=len(pairs))
        snap = self.snapshot()
        self._changed(snap)
        return snap

    def _timer_fired(self) -> None:
        with self._lock:
            due = self._cut_until is not None and time.monotonic() >= self._cut_until - 0.05
        if due:
            self.restore()

    def restore(self) -> None:
        with self._lock:
            was_cut = self._cut_until is not None
            self._cut_until = self._cut_until_wall = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if was_cut:
            log.info("sim_link_restored")
            self._changed(self.snapshot())

    def _changed(self, snap: dict[str, Any]) -> None:
        if self.on_change is not None:
            try:
                self.on_change(snap)
            except Exception:
                log.exception("sim_link_observer_failed")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.snapshot_locked()

    def snapshot_locked(self) -> dict[str, Any]:
        return {
            "cut": self._cut_until is not None,
            "until": rfc3339(self._cut_until_wall) if self._cut_until_wall else None,
            "cuts": self.cuts,
            "connections": len(self._pairs),
            "relayed": self.relayed,
            "refused": self.refused,
            "relay": "{}:{}".format(*self.address),
            "broker": "{}:{}".format(*self.target),
        }

    # ---- relaying ----
    def _accept_loop(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                closed, cut = self._closed, self._cut_until is not None
                if cut:
                    self.refused += 1
            if closed or cut:
                _close(down)
                continue
            pair = _Pair(down)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(
                target=self._relay, args=(pair,), name="sim-link-relay", daemon=True
            ).start()

    def _relay(self, pair: _Pair) -> None:
        try:
            up = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            broker = "{}:{}".format(*self.target)
            log.warning("sim_link_broker_unreachable", broker=broker, error=str(exc))
            self._drop(pair)
            return
        up.settimeout(None)
        with contextlib.suppress(OSError):
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair.down.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not pair.attach(up):
            _close(up)  # cut while connecting
            return
        with self._lock:
            self.relayed += 1
        back = threading.Thread(
            target=self._pump, args=(pair, up, pair.down), name="sim-link-pump", daemon=True
        )
        back.start()
        self._pump(pair, pair.down, up)
        back.join()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        self._drop(pair)

    def _drop(self, pair: _Pair) -> None:
        pair.close()
        with self._lock:
            self._pairs.discard(pair)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            pairs = list(self._pairs)
            self._pairs.clear()
        _close(self._listener)
        for pair in pairs:
            pair.close()
        if self._thread is not None:
            self._thread.join(5)
