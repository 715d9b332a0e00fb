"""The simulator's link relay (POST /link): bytes pass unchanged; a cut closes every relayed
connection at once and refuses new ones until it ends (by its timer or a restore)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from simulator.link import LinkProxy
from tests.support.wait import wait_until


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A TCP echo server (the broker's stand-in)."""
    server = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    host, port = server.getsockname()[:2]
    yield host, port
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    for c in conns:
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    t.join(5)


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[LinkProxy]:
    p = LinkProxy(*echo)
    p.start()
    yield p
    p.close()


def connect(p: LinkProxy) -> socket.socket:
    s = socket.create_connection(p.address, timeout=5)
    return s


def roundtrip(s: socket.socket, data: bytes) -> bytes:
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_bytes_pass_unchanged_both_ways(proxy: LinkProxy) -> None:
    with connect(proxy) as s:
        payload = bytes(range(256)) * 300
        assert roundtrip(s, payload) == payload
    assert proxy.url.startswith("mqtt://127.0.0.1:")


def test_a_cut_closes_open_connections_refuses_new_ones_and_ends_by_itself(
    proxy: LinkProxy,
) -> None:
    seen: list[dict[str, object]] = []
    proxy.on_change = seen.append
    s = connect(proxy)
    assert roundtrip(s, b"hello") == b"hello"
    wait_until(lambda: proxy.snapshot()["connections"] == 1, timeout=5)
    snap = proxy.cut(0.5)
    assert snap["cut"] is True and snap["until"] and snap["cuts"] == 1
    assert s.recv(10) == b""  # the site's connection is gone at once
    s.close()
    # New connections are taken and closed before a byte passes.
    with connect(proxy) as again:
        again.settimeout(5)
        try:
            again.sendall(b"x")
            assert again.recv(10) == b""
        except ConnectionResetError:
            pass
    assert proxy.snapshot()["refused"] >= 1
    wait_until(lambda: not proxy.is_cut, timeout=5, message="the cut ended by its timer")
    with connect(proxy) as back:
        assert roundtrip(back, b"again") == b"again"
    assert [x["cut"] for x in seen] == [True, False]


def test_cut_zero_restores_at_once_and_a_new_cut_replaces_the_old(proxy: LinkProxy) -> None:
    proxy.cut(3600)
    first_until = proxy.snapshot()["until"]
    proxy.cut(1800)
    assert proxy.snapshot()["until"] != first_until and proxy.snapshot()["cuts"] == 2
    proxy.cut(0)
    assert not proxy.is_cut
    with connect(proxy) as s:
        assert roundtrip(s, b"up") == b"up"


def test_an_unreachable_broker_closes_the_site_connection() -> None:
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    p = LinkProxy("127.0.0.1", port)
    p.start()
    try:
        with connect(p) as s:
            s.settimeout(10)
            try:
                assert s.recv(10) == b""
            except ConnectionResetError:
                pass
    finally:
        p.close()


def test_close_ends_every_thread(echo: tuple[str, int]) -> None:
    before = set(threading.enumerate())
    p = LinkProxy(*echo)
    p.start()
    s = connect(p)
    assert roundtrip(s, b"x") == b"x"
    p.close()
    assert s.recv(10) == b""
    s.close()
    mine = [t for t in set(threading.enumerate()) - before if t.name.startswith("sim-link")]
    wait_until(lambda: not any(t.is_alive() for t in mine), timeout=5, message="relay threads")
