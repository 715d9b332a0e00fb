"""A TCP relay between a simulated site and its broker, so a scenario can cut the site's
link without touching the broker the centre uses: ``cut(seconds)`` closes the relayed
connections at once (the site sees its connection drop, the broker publishes its last
will) and refuses new ones (accepted, then closed) until the time is up."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import structlog

log = structlog.get_logger(__name__)


class LinkProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0):
        self.upstream = upstream
        self._listener = socket.create_server((host, port))
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._cut_until = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="link-proxy", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"mqtt://{host}:{port}"

    def start(self) -> LinkProxy:
        self._thread.start()
        return self

    @property
    def cut_s(self) -> float:
        """Seconds the link stays cut (0 when it is up)."""
        with self._lock:
            return max(0.0, self._cut_until - time.monotonic())

    def cut(self, seconds: float) -> None:
        """Cut the link now, for ``seconds`` (a later cut extends or shortens it)."""
        with self._lock:
            self._cut_until = time.monotonic() + seconds
            conns, self._conns = self._conns, set()
        for s in conns:
            _kill(s)
        log.warning("link_cut", for_s=seconds, upstream=f"{self.upstream[0]}:{self.upstream[1]}")

    def restore(self) -> None:
        with self._lock:
            self._cut_until = 0.0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, set()
        _kill(self._listener)
        for s in conns:
            _kill(s)
        self._thread.join(2)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._closed or self.cut_s > 0:
                _kill(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _kill(client)
                continue
            with self._lock:
                if self._closed or self._cut_until > time.monotonic():
                    _kill(client)
                    _kill(server)
                    continue
                self._conns.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _kill(src)
            _kill(dst)


def _kill(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
