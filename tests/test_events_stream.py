"""The simulator's event stream (GET /events): the hub's fan-out never waits on a client,
a slow client loses only its own messages (dropped and counted, then told), a client that
goes away or stops reading is unsubscribed and its thread ends."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from simulator.control import ControlApi
from simulator.events_stream import EventHub, HubClosed, Message, serve_sse
from tests.support.wait import wait_until


def events(batch: list[Message] | None) -> list[tuple[str, Any]]:
    assert batch is not None
    return [(m.event, json.loads(m.data)) for m in batch]


def test_every_subscriber_gets_every_message_in_order_with_increasing_ids() -> None:
    hub = EventHub()
    a, b = hub.subscribe(), hub.subscribe()
    for i in range(5):
        assert hub.publish("mqtt", {"n": i}) == 2
    for sub in (a, b):
        batch = sub.take(1.0)
        assert events(batch) == [("mqtt", {"n": i}) for i in range(5)]
        ids = [m.id for m in batch or []]
        assert ids == sorted(ids) and len(set(ids)) == 5


def test_a_slow_client_loses_only_its_own_messages_counted_and_then_told() -> None:
    hub = EventHub(queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    for i in range(10):
        hub.publish("state", {"n": i})
        assert [d["n"] for _, d in events(fast.take(1.0))] == [i]  # the fast one keeps up
    # The slow one never took anything: it keeps the first 3, the 7 newer are dropped.
    batch = events(slow.take(1.0))
    assert batch[:3] == [("state", {"n": 0}), ("state", {"n": 1}), ("state", {"n": 2})]
    assert batch[3] == ("dropped", {"dropped": 7, "total": 7})
    assert slow.dropped == 7 and fast.dropped == 0
    assert hub.stats() == {"clients": 2, "published": 10, "dropped": 7}
    # Caught up: it gets everything again, and no further notice until it falls behind.
    hub.publish("state", {"n": 10})
    assert events(slow.take(1.0)) == [("state", {"n": 10})]


def test_publish_never_waits_for_a_client_that_takes_nothing() -> None:
    hub = EventHub(queue_size=10)
    stuck = hub.subscribe()
    done = threading.Event()

    def flood() -> None:
        for i in range(5000):
            hub.publish("mqtt", {"n": i})
        done.set()

    t = threading.Thread(target=flood)
    t.start()
    assert done.wait(10), "publish blocked on a client that takes nothing"
    t.join()
    assert stuck.pending() == 10 and stuck.dropped == 4990


def test_a_new_client_gets_the_recent_log_history_once_then_live_messages() -> None:
    hub = EventHub(history=3, history_events=("mqtt", "action"))
    for i in range(5):
        hub.publish("mqtt", {"n": i})
        hub.publish("state", {"n": i})  # state is not history: the greeting carries it
    sub = hub.subscribe()
    hub.publish("mqtt", {"n": 5})
    got = events(sub.take(1.0))
    assert got == [("mqtt", {"n": 2}), ("mqtt", {"n": 3}), ("mqtt", {"n": 4}), ("mqtt", {"n": 5})]


def test_close_wakes_a_waiting_client_and_refuses_new_ones() -> None:
    hub = EventHub()
    sub = hub.subscribe()
    results: list[Any] = []
    t = threading.Thread(target=lambda: results.append(sub.take(30.0)))
    t.start()
    wait_until(lambda: t.is_alive(), timeout=5)
    hub.close()
    t.join(5)
    assert not t.is_alive() and results == [None]
    with pytest.raises(HubClosed):
        hub.subscribe()
    assert hub.publish("mqtt", {}) == 0


# ---------------------------------------------------------------- over HTTP


@contextmanager
def stream_server(hub: EventHub, **kwargs: Any) -> Iterator[tuple[str, int]]:
    api = ControlApi("127.0.0.1", 0)
    api.raw_route(
        "GET",
        "/events",
        lambda h, p: serve_sse(h, hub, lambda: [("hello", {"hi": 1})], **kwargs),
    )
    api.start()
    try:
        yield api.address
    finally:
        hub.close()
        api.close()


def open_stream(address: tuple[str, int], rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(address)
    sock.sendall(b"GET /events HTTP/1.0\r\nHost: x\r\n\r\n")
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"stream ended before {marker!r}: {data!r}"
        data += chunk
    return data


def serving_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "process_request" in t.name}


def test_the_stream_sends_headers_greeting_and_live_events() -> None:
    hub = EventHub()
    with stream_server(hub) as address:
        sock = open_stream(address)
        try:
            head = read_until(sock, b"event: hello")
            assert head.startswith(b"HTTP/1.0 200")
            assert b"Content-Type: text/event-stream; charset=utf-8" in head
            assert b"retry: 1000" in head
            wait_until(lambda: hub.clients == 1, timeout=5)
            hub.publish("mqtt", {"topic": "ansim/v1/s/events/alarm.raised", "text": "경보"})
            data = read_until(sock, "경보".encode())
            assert b"event: mqtt\ndata: " in data
            assert 'data: {"topic":"ansim/v1/s/events/alarm.raised","text":"경보"}\n\n' in (
                data.decode()
            )
        finally:
            sock.close()


def test_a_client_that_disconnects_is_unsubscribed_and_its_thread_ends() -> None:
    hub = EventHub()
    before = serving_threads()
    with stream_server(hub, check_s=0.05) as address:
        sock = open_stream(address)
        read_until(sock, b"event: hello")
        wait_until(lambda: hub.clients == 1, timeout=5)
        mine = serving_threads() - before
        assert len(mine) == 1
        sock.close()  # no event is published: the idle check alone must notice
        wait_until(lambda: hub.clients == 0, timeout=5, message="client unsubscribed")
        wait_until(lambda: not any(t.is_alive() for t in mine), timeout=5, message="thread ended")


def test_a_client_that_stops_reading_is_dropped_without_blocking_the_publisher() -> None:
    hub = EventHub(queue_size=8)
    big = {"blob": "x" * 65536}
    with stream_server(hub, write_timeout_s=0.3) as address:
        sock = open_stream(address, rcvbuf=4096)
        try:
            read_until(sock, b"event: hello")
            wait_until(lambda: hub.clients == 1, timeout=5)
            # It reads nothing more: the socket buffers fill, the server's send times out
            # and the client is dropped; publish stays instant all along.

            def dropped() -> bool:
                hub.publish("mqtt", big)
                return hub.clients == 0

            wait_until(dropped, timeout=20, message="stuck client dropped")
            assert hub.stats()["dropped"] > 0
        finally:
            sock.close()


def test_a_closed_hub_answers_503() -> None:
    hub = EventHub()
    with stream_server(hub) as address:
        hub.close()
        sock = open_stream(address)
        try:
            data = read_until(sock, b"}")
        finally:
            sock.close()
        assert data.startswith(b"HTTP/1.0 503")
        assert b'"error"' in data
