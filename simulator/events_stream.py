"""Server-Sent Events for the simulator's control port (``GET /events``,
docs/simulator-api.md#get-events): a thread-safe fan-out of what the console shows.

:class:`EventHub` ``publish`` never blocks and never raises for a client: every client has
its own bounded queue; when a client's queue is full the newer messages are dropped for that
client alone and counted, and the client is told how many it missed (a ``dropped`` event)
right after the messages it still had queued. The site's threads therefore never wait on a
browser.

:func:`serve_sse` writes one client's stream on its HTTP request thread. The thread ends,
and the client is unsubscribed, when the client disconnects (seen at the next message, ping
or check, at most ``check_s`` later), when it stops reading for ``write_timeout_s`` (its
socket buffer full: a stuck or hostile client), or when the hub closes.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import structlog

log = structlog.get_logger(__name__)

QUEUE_SIZE = 1000  # messages per client
PING_S = 15.0  # a comment line when nothing else was sent for this long
WRITE_TIMEOUT_S = 10.0  # a client that takes nothing for this long is disconnected
CHECK_S = 1.0  # how often an idle stream looks whether its client has gone
RETRY_MS = 1000  # what EventSource waits before reconnecting


class HubClosed(Exception):
    """The hub is closed: no new subscriptions."""


def to_json(data: Any) -> str:
    """Compact JSON, non-ASCII as is; no newline can occur (one ``data:`` line)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Message:
    event: str
    data: str  # JSON text, one line
    id: int | None = None

    def encode(self) -> bytes:
        head = f"id: {self.id}\n" if self.id is not None else ""
        return f"{head}event: {self.event}\ndata: {self.data}\n\n".encode()


class Subscription:
    """One client's queue. ``take`` is for the client's thread; the hub offers."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._cond = threading.Condition()
        self._queue: deque[Message] = deque()
        self._missed = 0  # dropped since the client was last told
        self.dropped = 0  # dropped in all
        self.delivered = 0
        self.closed = False

    def offer(self, msg: Message) -> bool:
        """Queue ``msg``; False (and counted) when the queue is full or closed."""
        with self._cond:
            if self.closed:
                return False
            if len(self._queue) >= self.maxsize:
                self._missed += 1
                self.dropped += 1
                return False
            self._queue.append(msg)
            self._cond.notify()
            return True

    def take(self, timeout: float) -> list[Message] | None:
        """Everything queued, waiting up to ``timeout`` s for something ([] on timeout);
        a ``dropped`` notice follows the queued messages when some were lost. None once
        closed."""
        with self._cond:
            if not self._queue and not self._missed and not self.closed:
                self._cond.wait(timeout)
            if self.closed:
                return None
            out = list(self._queue)
            self._queue.clear()
            if self._missed:
                out.append(
                    Message("dropped", to_json({"dropped": self._missed, "total": self.dropped}))
                )
                self._missed = 0
            self.delivered += len(out)
            return out

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._queue.clear()
            self._cond.notify_all()


class EventHub:
    """Fan-out of named JSON events to any number of subscribers (thread-safe)."""

    def __init__(
        self,
        queue_size: int = QUEUE_SIZE,
        *,
        history: int = 0,
        history_events: Iterable[str] = (),
    ) -> None:
        """``history``: how many of the latest ``history_events`` a new subscriber gets
        first (what a log shows), after its greeting and before anything new."""
        self.queue_size = queue_size
        self.instance = uuid.uuid4().hex  # tells a client that ids started again
        self._history: deque[Message] = deque(maxlen=history)
        self._history_events = frozenset(history_events)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._subs: set[Subscription] = set()
        self._next_id = 0
        self._published = 0
        self._dropped = 0
        self.closed = False

    def message(self, event: str, data: Any) -> Message:
        """A numbered message, not sent to anyone (for one client's greeting)."""
        with self._lock:
            self._next_id += 1
            return Message(event, to_json(data), self._next_id)

    def publish(self, event: str, data: Any) -> int:
        """Queue the event for every subscriber; returns how many took it. Never blocks
        on a client (only on the short locks of the queues)."""
        text = to_json(data)
        with self._lock:
            if self.closed:
                return 0
            self._next_id += 1
            self._published += 1
            msg = Message(event, text, self._next_id)
            if event in self._history_events and self._history.maxlen:
                self._history.append(msg)
            subs = list(self._subs)
        took = 0
        for sub in subs:
            if sub.offer(msg):
                took += 1
        if took < len(subs):
            with self._lock:
                self._dropped += len(subs) - took
        return took

    def subscribe(self) -> Subscription:
        with self._lock:
            if self.closed:
                raise HubClosed("the event stream is shutting down")
            sub = Subscription(self.queue_size)
            for msg in self._history:  # under the lock: no message twice, none missed
                sub.offer(msg)
            self._subs.add(sub)
            self._changed.notify_all()
            return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        with self._lock:
            self._subs.discard(sub)
            self._changed.notify_all()

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._subs)

    def wait_for_clients(self, timeout: float) -> bool:
        """True as soon as at least one client is subscribed (False after ``timeout``)."""
        with self._changed:
            if not self._subs and not self.closed:
                self._changed.wait(timeout)
            return bool(self._subs) and not self.closed

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "clients": len(self._subs),
                "published": self._published,
                "dropped": self._dropped,
            }

    def close(self) -> None:
        """Wake and end every stream; refuse new subscriptions."""
        with self._lock:
            self.closed = True
            subs = list(self._subs)
            self._changed.notify_all()
        for sub in subs:
            sub.close()


def _peer_closed(sock: socket.socket) -> bool:
    """The client closed its side (EventSource never sends anything after its request)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def serve_sse(
    handler: BaseHTTPRequestHandler,
    hub: EventHub,
    greeting: Callable[[], Iterable[tuple[str, Any]]],
    *,
    ping_s: float = PING_S,
    write_timeout_s: float = WRITE_TIMEOUT_S,
    check_s: float = CHECK_S,
) -> None:
    """Stream ``hub`` to the client of ``handler`` until it goes away or the hub closes.
    ``greeting()`` gives the first events of this client (after it is subscribed, so
    nothing published meanwhile is missed)."""
    try:
        sub = hub.subscribe()
    except HubClosed as exc:
        body = to_json({"error": str(exc)}).encode()
        handler.send_response(503)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return
    try:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("X-Accel-Buffering", "no")
        handler.end_headers()
        sock: socket.socket = handler.connection
        sock.settimeout(write_timeout_s)  # a send that makes no progress this long fails
        out = handler.wfile
        first = [f"retry: {RETRY_MS}\n\n".encode()]
        try:
            first += [hub.message(event, data).encode() for event, data in greeting()]
        except Exception as exc:
            log.exception("sse_greeting_failed")
            error = {"error": f"{type(exc).__name__}: {exc}"}
            first.append(Message("error", to_json(error)).encode())
        out.write(b"".join(first))
        last_write = time.monotonic()
        while True:
            batch = sub.take(min(check_s, ping_s))
            if batch is None:
                break
            now = time.monotonic()
            if batch:
                out.write(b"".join(m.encode() for m in batch))
                last_write = now
            elif now - last_write >= ping_s:
                out.write(b": ping\n\n")
                last_write = now
            if _peer_closed(sock):
                break
    except (OSError, ValueError):
        pass  # the client went away or stopped reading (timeout): end its stream
    finally:
        hub.unsubscribe(sub)
        handler.close_connection = True
