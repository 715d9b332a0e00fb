"""Tests of the broker fixtures themselves (tests/support/brokers.py), with bare paho clients.

They pin down what each broker of the matrix does, independently of the site: a QoS 1
round trip (for NATS from the site's node to the centre's node across the cluster), a
broker restart, and today's NATS refusal of '.' and ' ' in topics. The TCP proxy is tested
on plain sockets and with a paho client.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.brokers import AmqttBroker, BrokerHandle, NatsCluster, TcpProxy
from tests.support.mqtt import Mosquitto, Subscriber
from tests.support.wait import wait_until

TESTS_DIR = Path(__file__).resolve().parent
# NATS carries MQTT QoS 1 through JetStream (3 replicas): a PUBACK or a delivery may wait
# for a stream or consumer leader (created, or re-elected after a node died or rejoined).
# A few seconds, much longer on a loaded 2-core machine: wait generously for the condition.
JETSTREAM_S = 60.0
ProxyFactory = Callable[[str, int], TcpProxy]


def _topic(kind: str) -> str:
    return f"ansim/site-{uuid.uuid4().hex[:6]}/{kind}"


# --------------------------------------------------------------------------- the matrix


def test_qos1_roundtrip_site_to_centre_and_back(broker_matrix: BrokerHandle) -> None:
    b = broker_matrix
    if b.kind == "nats":
        assert b.url_for_site == b.cluster.nodes[0].url
        assert b.url_for_centre == b.cluster.nodes[1].url
        assert b.url_for_site != b.url_for_centre
        assert b.urls == [n.url for n in b.cluster.nodes] and len(b.urls) == 3
    else:
        assert b.url_for_site == b.url_for_centre == b.urls[0]
    assert b.protocol == ("5" if b.name == "mosquitto5" else "3.1.1")

    event = _topic("events/alarm/raised")
    command = event.replace("events/alarm/raised", "commands/alarm/ack")
    centre = b.subscriber(event)  # on the centre's node
    site = b.subscriber(command, role="site")

    site.publish(event, {"type": "alarm.raised", "seq": 1})
    got = centre.wait_for(event)
    assert got.json == {"type": "alarm.raised", "seq": 1}
    assert got.qos == 1

    centre.publish(command, {"name": "alarm.ack"})
    assert site.wait_for(command).json == {"name": "alarm.ack"}


def test_site_broker_killed_and_restarted(broker_matrix: BrokerHandle) -> None:
    b = broker_matrix
    event = _topic("events/x")
    centre = b.subscriber(event)
    site = b.subscriber([], role="site")
    site.publish(event, b"before")
    centre.wait_for(event)

    site_connects, centre_connects = site.connect_count, centre.connect_count
    b.kill("site")
    wait_until(lambda: not site.connected, timeout=10, message="site client to notice the kill")
    b.restart("site")
    site.wait_subscribed(timeout=30, connect_count=site_connects + 1)
    if b.kind != "nats":  # one broker: the centre was cut off too and comes back
        centre.wait_subscribed(timeout=30, connect_count=centre_connects + 1)
    else:  # the centre's node stayed up: its connection never dropped
        assert centre.connected and centre.connect_count == centre_connects

    site.publish(event, b"after", timeout=20)
    assert centre.wait_for(lambda m: m.payload == b"after", timeout=20).topic == event


# --------------------------------------------------------------------------- NATS specifics


def test_nats_cluster_carries_traffic_between_every_pair_of_nodes(
    nats_cluster: NatsCluster,
) -> None:
    nodes = nats_cluster.nodes
    assert len(nodes) == 3 and len({n.port for n in nodes}) == 3
    leaders = {n.meta_leader() for n in nodes}
    assert len(leaders) == 1 and leaders <= {n.name for n in nodes}
    topic = _topic("events/pair")
    subs = [Subscriber.for_broker(n, topic, timeout=JETSTREAM_S) for n in nodes]

    def senders(sub: Subscriber) -> set[str]:
        return {m.text.partition(":")[0] for m in sub.messages(topic)}

    # A subscription made on one node reaches the other nodes' interest tables a moment
    # later (NATS propagates it over the routes asynchronously): a message published on
    # another node in that moment goes to nobody there. Under load this once lost one of
    # the three. So each node publishes again (a new payload) while some subscriber still
    # misses it, up to 5 rounds; every pair must be carried in the end.
    everyone = {"0", "1", "2"}
    for attempt in range(5):
        for i, node in enumerate(nodes):
            if any(str(i) not in senders(sub) for sub in subs):
                with Subscriber.for_broker(node, [], timeout=JETSTREAM_S) as pub:
                    pub.publish(topic, f"{i}:{attempt}")
        try:
            wait_until(lambda: all(senders(s) == everyone for s in subs), timeout=10.0)
            break
        except AssertionError:
            continue
    assert [senders(sub) for sub in subs] == [everyone] * 3

    # NATS 2.9 speaks MQTT 3.1.1 only (paho sees the refusing CONNACK or just the close).
    with pytest.raises(ConnectionError, match=r"Unsupported protocol version|disconnected"):
        Subscriber.for_broker(nats_cluster.node("site"), [], protocol="5")
    assert "unacceptable protocol version of 5" in nats_cluster.node("site").log_text()


def test_nats_keeps_working_with_one_node_down(nats_cluster: NatsCluster) -> None:
    spare = nats_cluster.node("spare")
    topic = _topic("events/quorum")
    centre = Subscriber.for_broker(nats_cluster.node("centre"), topic, timeout=JETSTREAM_S)
    site = Subscriber.for_broker(nats_cluster.node("site"), [], timeout=JETSTREAM_S)

    spare.kill()
    assert not spare.running and spare.meta_leader() is None
    # JetStream keeps its quorum with 2 of 3 nodes; if the killed node led the meta group or
    # an MQTT stream, the others elect a new leader first (seconds, more on a loaded
    # machine): the PUBACK and the delivery wait for that, so the waits are generous.
    site.publish(topic, b"two of three", timeout=JETSTREAM_S)
    centre.wait_for(topic, timeout=JETSTREAM_S)

    spare.restart()  # returns once the node knows the meta leader and carries MQTT
    assert spare.meta_leader() in {n.name for n in nats_cluster.nodes}
    with Subscriber.for_broker(spare, topic, timeout=JETSTREAM_S) as on_spare:
        site.publish(topic, b"three again", timeout=JETSTREAM_S)
        on_spare.wait_for(lambda m: m.payload == b"three again", timeout=JETSTREAM_S)


def test_nats_closes_the_connection_on_a_dot_or_space_in_a_topic(
    nats_cluster: NatsCluster,
) -> None:
    """The dotted topics of earlier versions (events/alarm.raised) are refused by NATS: the
    broker drops the connection, and because the client re-sends the unacknowledged QoS 1
    message after every reconnect it is dropped again and again (issue 9, points 1 and 4)."""
    node = nats_cluster.node("site")
    centre = Subscriber.for_broker(nats_cluster.node("centre"), "ansim/#")
    for bad in ("ansim/site-1/events/alarm.raised", "ansim/site 1/events/alarm/raised"):
        client = Subscriber.for_broker(node, [])
        with pytest.raises(AssertionError, match="not acknowledged"):
            client.publish(bad, b"{}", timeout=3)
        wait_until(lambda c=client: c.connect_count >= 2, timeout=20, message="a reconnect")
        wait_until(lambda c=client: not c.connected, timeout=20, message="dropped again")
        client.close()
    log = node.log_text()
    assert log.count("characters ' ' and '.' not supported for MQTT topics") >= 4
    assert centre.messages() == []

    # The same level structure without the dot goes through.
    with Subscriber.for_broker(node, []) as client:
        client.publish("ansim/site-1/events/alarm/raised", b"{}")
    centre.wait_for("ansim/site-1/events/alarm/raised")


@pytest.mark.skipif(
    not os.environ.get("ANSIM_FIXTURE_PROBE"), reason="run in a subprocess by the test below"
)
def test_nats_cluster_fixture_probe(nats_cluster: NatsCluster) -> None:
    raise AssertionError("the nats_cluster fixture should not have started")


def test_nats_config_in_the_docs_is_valid(nats_server_binary: str, tmp_path: Path) -> None:
    doc = (TESTS_DIR.parent / "docs" / "brokers.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```conf\n(.*?)```", doc, re.S)
    assert len(blocks) == 1 and "mqtt {" in blocks[0] and "server_name:" in blocks[0]
    conf = tmp_path / "nats.conf"
    conf.write_text(blocks[0], encoding="utf-8")
    checked = subprocess.run(
        [nats_server_binary, "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "is valid" in checked.stdout + checked.stderr


def test_mosquitto_accepts_dots_and_spaces(mosquitto: Mosquitto) -> None:
    # The contrast to NATS: the dotted topics of earlier versions worked on mosquitto.
    with Subscriber.for_broker(mosquitto, "#") as sub:
        sub.publish("ansim/site-1/events/alarm.raised", b"{}")
        sub.publish("ansim/site 1/x", b"{}")
        sub.wait_count(None, 2)


def _run_pytest(env_changes: dict[str, str | None], test: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"{__file__}::{test}"],
        env=env,
        cwd=TESTS_DIR.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_nats_server_fails_when_brokers_are_required() -> None:
    probe = "test_nats_cluster_fixture_probe"
    unset: dict[str, str | None] = {
        "ANSIM_FIXTURE_PROBE": "1",
        "ANSIM_REQUIRE_MOSQUITTO": None,
        "ANSIM_REQUIRE_BROKERS": None,
        "ANSIM_NATS_SERVER": "/nonexistent/nats-server",
    }
    for switch in ("ANSIM_REQUIRE_MOSQUITTO", "ANSIM_REQUIRE_BROKERS"):
        required = _run_pytest({**unset, switch: "1"}, probe)
        assert required.returncode == 1, required.stdout + required.stderr
        assert "no nats-server binary was found" in required.stdout
        assert "1 error" in required.stdout

    optional = _run_pytest(unset, probe)
    assert optional.returncode == 0, optional.stdout + optional.stderr
    assert "1 skipped" in optional.stdout
    assert "nats-server binary not found" in optional.stdout


# --------------------------------------------------------------------------- amqtt


def test_amqtt_is_the_simulator_broker_and_restarts_on_the_same_port(
    amqtt_broker: AmqttBroker,
) -> None:
    broker = amqtt_broker
    port = broker.port
    assert "simulator.broker" in " ".join(broker._command())
    broker.kill()
    assert not broker.running
    with pytest.raises(OSError):
        Subscriber.for_broker(broker, [])
    broker.restart()
    assert broker.port == port
    with Subscriber.for_broker(broker, "a/b") as sub:
        sub.publish("a/b", b"1")
        sub.wait_for("a/b")


# --------------------------------------------------------------------------- TCP proxy


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    yield server
    server.close()


def _through(
    proxy_factory: ProxyFactory, upstream: socket.socket
) -> tuple[TcpProxy, socket.socket, socket.socket]:
    proxy = proxy_factory("127.0.0.1", upstream.getsockname()[1])
    client = socket.create_connection((proxy.host, proxy.port), timeout=10)
    server_side, _ = upstream.accept()
    server_side.settimeout(10)
    proxy.wait_connections(1)
    return proxy, client, server_side


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


def _nothing_to_read(sock: socket.socket) -> bool:
    """True when the socket is open and has no data (no EOF either), without waiting."""
    try:
        sock.setblocking(False)
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(10)
    return False


def test_proxy_forwards_both_ways(tcp_proxy: ProxyFactory, upstream: socket.socket) -> None:
    proxy, client, server = _through(tcp_proxy, upstream)
    client.sendall(b"ping" * 50_000)
    assert _recv_exactly(server, 200_000) == b"ping" * 50_000
    server.sendall(b"pong")
    assert _recv_exactly(client, 4) == b"pong"
    assert proxy.accepted == 1 and proxy.connections == 1


def test_proxy_freeze_holds_bytes_and_keeps_the_connection_open(
    tcp_proxy: ProxyFactory, upstream: socket.socket
) -> None:
    proxy, client, server = _through(tcp_proxy, upstream)
    proxy.freeze()
    assert proxy.frozen
    client.sendall(b"to-server")
    server.sendall(b"to-client")
    # Both messages reached the proxy's sockets and sit there unread: nothing is forwarded.
    wait_until(lambda: proxy.pending_bytes() == 18, message="bytes held by the frozen proxy")
    assert _nothing_to_read(server) and _nothing_to_read(client)  # open, silent, no EOF
    assert proxy.connections == 1

    proxy.unfreeze()
    assert not proxy.frozen
    assert _recv_exactly(server, 9) == b"to-server"
    assert _recv_exactly(client, 9) == b"to-client"


def test_proxy_freeze_leaves_new_connections_waiting_until_unfreeze(
    tcp_proxy: ProxyFactory, upstream: socket.socket
) -> None:
    proxy, _client, _server = _through(tcp_proxy, upstream)
    proxy.freeze()
    late = socket.create_connection((proxy.host, proxy.port), timeout=10)  # TCP connect works
    late.sendall(b"hello")
    upstream.setblocking(False)
    with pytest.raises(BlockingIOError):
        upstream.accept()  # the proxy never accepted it, so it never connected upstream
    upstream.settimeout(10)
    assert proxy.accepted == 1

    proxy.unfreeze()
    server_side, _ = upstream.accept()
    server_side.settimeout(10)
    assert _recv_exactly(server_side, 5) == b"hello"
    assert proxy.accepted == 2


def test_proxy_freeze_can_let_new_connections_through(
    tcp_proxy: ProxyFactory, upstream: socket.socket
) -> None:
    proxy, client, _server = _through(tcp_proxy, upstream)
    proxy.freeze(new_connections=False)  # a stalled NAT mapping: a new connection works
    fresh = socket.create_connection((proxy.host, proxy.port), timeout=10)
    fresh_server, _ = upstream.accept()
    fresh_server.settimeout(10)
    fresh.sendall(b"new")
    assert _recv_exactly(fresh_server, 3) == b"new"
    client.sendall(b"old")
    wait_until(lambda: proxy.pending_bytes() == 3, message="old connection held")


def test_proxy_cut_closes_both_sides(tcp_proxy: ProxyFactory, upstream: socket.socket) -> None:
    proxy, client, server = _through(tcp_proxy, upstream)
    proxy.freeze()
    assert proxy.cut() == 1
    assert client.recv(1) == b"" and server.recv(1) == b""
    assert proxy.connections == 0
    proxy.unfreeze()

    client2 = socket.create_connection((proxy.host, proxy.port), timeout=10)
    server2, _ = upstream.accept()
    server2.settimeout(10)
    proxy.wait_connections(1)
    assert proxy.cut(reset=True) == 1
    with pytest.raises(ConnectionResetError):
        client2.recv(1)


def test_proxy_passes_half_close_and_closes_when_both_sides_are_done(
    tcp_proxy: ProxyFactory, upstream: socket.socket
) -> None:
    proxy, client, server = _through(tcp_proxy, upstream)
    client.sendall(b"last words")
    client.shutdown(socket.SHUT_WR)
    assert _recv_exactly(server, 10) == b"last words"
    assert server.recv(1) == b""  # the FIN came through after the data
    server.sendall(b"reply")
    assert _recv_exactly(client, 5) == b"reply"
    server.close()
    assert client.recv(1) == b""
    proxy.wait_connections(0)


def test_proxy_to_a_dead_upstream_closes_the_client(tcp_proxy: ProxyFactory) -> None:
    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]
    proxy = tcp_proxy("127.0.0.1", port)
    client = socket.create_connection((proxy.host, proxy.port), timeout=10)
    try:
        assert client.recv(1) == b""
    except ConnectionResetError:
        pass
    wait_until(lambda: proxy.accepted == 1)
    assert proxy.connections == 0


def test_frozen_mqtt_link_delivers_nothing_then_everything(
    mosquitto: Mosquitto, tcp_proxy: ProxyFactory
) -> None:
    proxy = tcp_proxy(mosquitto.host, mosquitto.port)
    topic = _topic("events/frozen")
    far = Subscriber.for_broker(proxy, topic, keepalive=60)
    publisher = Subscriber.for_broker(mosquitto, [])

    proxy.freeze()
    publisher.publish(topic, b"while frozen")  # the broker acks it and sends it towards `far`
    wait_until(lambda: proxy.pending_bytes() > 0, message="the PUBLISH held by the proxy")
    assert far.messages() == [] and far.connected  # paho sees silence, not a closed socket

    proxy.unfreeze()
    assert far.wait_for(topic).payload == b"while frozen"
    assert far.connect_count == 1
