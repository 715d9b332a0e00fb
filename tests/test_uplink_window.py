"""The outbox's window (``broker.max_inflight``) is the only bound on messages in flight:
paho's client keeps none of its own. A retained state message (published by the site
outside the outbox) therefore goes out at once even while the window is full, and paho does
not rescan every message in flight on each PUBACK.

PUBACKs read in one turn of the network loop reach the core thread in one job (one core
batch, one commit and one drain for all of them).

The broker here is a socket that speaks just enough MQTT 3.1.1 (CONNACK, SUBACK) and
acknowledges nothing until the test says so: what paho sends is exactly what it reads."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from edge.config import BrokerConfig
from edge.core.uplink import Uplink
from tests.support.wait import wait_until

CONNECT, PUBLISH, SUBSCRIBE, PINGREQ = 1, 3, 8, 12


class HoldingBroker:
    """One connection at a time; PUBLISH packets are recorded (topic, mid) and left
    unacknowledged until ``ack_all``."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.published: list[tuple[str, int]] = []
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _read(self, conn: socket.socket, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = conn.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        self._conn = conn
        try:
            while True:
                first = self._read(conn, 1)[0]
                length, shift = 0, 0
                while True:
                    b = self._read(conn, 1)[0]
                    length |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                body = self._read(conn, length)
                kind = first >> 4
                if kind == CONNECT:
                    self._send(b"\x20\x02\x00\x00")
                elif kind == SUBSCRIBE:
                    mid = body[:2]
                    self._send(b"\x90\x03" + mid + b"\x01")
                elif kind == PINGREQ:
                    self._send(b"\xd0\x00")
                elif kind == PUBLISH:
                    (tlen,) = struct.unpack("!H", body[:2])
                    topic = body[2 : 2 + tlen].decode()
                    mid = struct.unpack("!H", body[2 + tlen : 4 + tlen])[0] if first & 0x06 else 0
                    with self._lock:
                        self.published.append((topic, mid))
        except (ConnectionError, OSError):
            return

    def _send(self, data: bytes) -> None:
        assert self._conn is not None
        self._conn.sendall(data)

    def ack_all(self) -> None:
        with self._lock:
            mids = [mid for _, mid in self.published if mid]
        # in one write: the site reads them in one network-loop turn
        self._send(b"".join(b"\x40\x02" + struct.pack("!H", mid) for mid in mids))

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _ in self.published]

    def close(self) -> None:
        self.server.close()
        if self._conn is not None:
            self._conn.close()


class Listener:
    def __init__(self) -> None:
        self.connected = threading.Event()
        self.acked: list[int] = []

    def uplink_connected(self) -> None:
        self.connected.set()

    def uplink_disconnected(self, reason: str, dead_link: bool = False) -> None:
        pass

    def uplink_failed(self, reason: str, broker: str | None = None) -> None:
        pass

    def uplink_acked(self, mid: int, ok: bool, reason: str | None = None) -> None:
        self.acked.append(mid)

    def uplink_message(self, topic: str, payload: bytes) -> None:
        pass


@pytest.fixture
def broker() -> Iterator[HoldingBroker]:
    b = HoldingBroker()
    yield b
    b.close()


class Core:
    """A core thread that runs every job the moment it is posted, counting the jobs that
    delivered PUBACKs."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.ack_jobs = 0

    def post(self, job: Any) -> None:
        before = len(self.listener.acked)
        job()
        self.ack_jobs += len(self.listener.acked) > before


@pytest.fixture
def uplink(broker: HoldingBroker) -> Iterator[tuple[Uplink, Listener, Core]]:
    listener = Listener()
    core = Core(listener)
    up = Uplink(
        BrokerConfig(url=f"mqtt://127.0.0.1:{broker.port}", max_inflight=3, keepalive_s=60),
        client_id="window-test",
        post=core.post,
        listener=listener,
        subscriptions=["a/#"],
        will=lambda: ("s/status", b"offline"),
    )
    up.start()
    try:
        wait_until(listener.connected.is_set, 10, message="CONNACK")
        yield up, listener, core
    finally:
        up.stop(timeout_s=0.5)


def test_a_message_beyond_the_window_is_not_held_back_by_paho(
    broker: HoldingBroker, uplink: tuple[Uplink, Listener, Core]
) -> None:
    up, listener, _ = uplink
    # The outbox fills its window of 3 ...
    mids = [up.publish(f"s/events/e{i}", b"{}", qos=1) for i in range(3)]
    wait_until(lambda: len(broker.topics()) == 3, 10, message="three events")
    # ... and a retained state message still goes out, nothing being acknowledged.
    state = up.publish("s/state/panic-1", b"{}", qos=1, retain=True)
    wait_until(lambda: "s/state/panic-1" in broker.topics(), 10, message="the state message")
    assert broker.topics() == ["s/events/e0", "s/events/e1", "s/events/e2", "s/state/panic-1"]
    broker.ack_all()
    wait_until(lambda: len(listener.acked) == 4, 10, message="four PUBACKs")
    assert sorted(listener.acked) == sorted([*mids, state])


def test_the_pubacks_of_one_loop_turn_reach_the_core_in_one_job(
    broker: HoldingBroker, uplink: tuple[Uplink, Listener, Core]
) -> None:
    """Even with a core that runs each job at once (so the first PUBACK's job would find
    only that one), the PUBACKs read in one turn are handed over together."""
    up, listener, core = uplink
    mids = [up.publish(f"s/events/e{i}", b"{}", qos=1) for i in range(8)]
    wait_until(lambda: len(broker.topics()) == 8, 10, message="eight events")
    broker.ack_all()  # one write: one read, one loop turn
    wait_until(lambda: len(listener.acked) == 8, 10, message="eight PUBACKs")
    assert listener.acked == mids
    assert core.ack_jobs == 1
