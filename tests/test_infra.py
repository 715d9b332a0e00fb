"""Tests of the test infrastructure itself (real mosquitto, real paho clients)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support.mqtt import Mosquitto, Subscriber, SubscriberFactory, free_port, port_accepts
from tests.support.wait import wait_until


def test_pubsub_roundtrip(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory, mqtt_protocol: str
) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    sub = subscriber_factory(["ansim/test/+/event", "ansim/other"])
    publisher = subscriber_factory([])
    assert sub.protocol == publisher.protocol

    before = time.monotonic()
    publisher.publish("ansim/test/store-1/event", {"kind": "panic", "seq": 1})
    publisher.publish("ansim/test/store-2/event", b"\xff\x00 not json")
    publisher.publish("ansim/not-subscribed", "ignored")
    publisher.publish("ansim/other", "[1, 2]")

    first = sub.wait_for("ansim/test/store-1/event")
    assert first.payload == b'{"kind":"panic","seq":1}'
    assert first.is_json and first.json == {"kind": "panic", "seq": 1}
    assert first.retain is False and first.qos == 1
    assert first.received_at >= before

    binary = sub.wait_for(lambda m: m.topic.endswith("store-2/event"))
    assert binary.payload == b"\xff\x00 not json"
    assert not binary.is_json and binary.json is None

    other = sub.wait_for("ansim/other")
    assert other.json == [1, 2]

    assert len(sub.wait_count("ansim/test/#", 2)) == 2
    assert [m.topic for m in sub.messages()] == [
        "ansim/test/store-1/event",
        "ansim/test/store-2/event",
        "ansim/other",
    ]
    assert sub.messages("ansim/#") == sub.messages()
    assert sub.messages("ansim/not-subscribed") == []

    sub.clear()
    assert sub.messages() == []


def test_retained_message_reaches_late_subscriber(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory, mqtt_protocol: str
) -> None:
    publisher = subscriber_factory([])
    publisher.publish("ansim/state/locker-7", {"online": True}, retain=True)

    late = subscriber_factory("ansim/state/#")
    msg = late.wait_for("ansim/state/locker-7")
    assert msg.retain is True
    assert msg.json == {"online": True}


def test_wait_helpers_time_out_with_a_summary(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory
) -> None:
    sub = subscriber_factory("ansim/#")
    sub.publish("ansim/seen", "hello")
    sub.wait_for("ansim/seen")

    with pytest.raises(AssertionError) as excinfo:
        sub.wait_for("ansim/never", timeout=0.2)
    text = str(excinfo.value)
    assert "ansim/never" in text and "ansim/seen" in text and "hello" in text

    with pytest.raises(AssertionError, match="expected >= 2"):
        sub.wait_count("ansim/seen", 2, timeout=0.2)

    with pytest.raises(AssertionError, match="never true"):
        wait_until(lambda: False, timeout=0.05, message="never true")
    calls = iter([0, 0, 5])
    assert wait_until(lambda: next(calls), timeout=5) == 5


def test_wait_for_is_woken_by_a_message_from_another_thread(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory
) -> None:
    sub = subscriber_factory("late/#")
    publisher = subscriber_factory([])
    go = threading.Event()

    def publish_later() -> None:
        go.wait(5)
        publisher.publish("late/one", "1")

    thread = threading.Thread(target=publish_later)
    thread.start()
    go.set()
    try:
        assert sub.wait_for("late/one", timeout=5).payload == b"1"
    finally:
        thread.join(5)


def test_kill_refuses_connections_then_restart_on_same_port(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory
) -> None:
    port = mosquitto.port
    sub = subscriber_factory("ansim/#")
    sub.publish("ansim/before", "1")
    sub.wait_for("ansim/before")
    first_pid = mosquitto.pid

    mosquitto.kill()
    assert not mosquitto.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((mosquitto.host, port), timeout=2).close()
    with pytest.raises(ConnectionRefusedError):
        Subscriber.for_broker(mosquitto, "x")
    wait_until(lambda: not sub.connected, timeout=5, message="subscriber to notice the kill")

    connects = sub.connect_count
    mosquitto.restart()
    assert mosquitto.running and mosquitto.pid != first_pid
    assert mosquitto.port == port and mosquitto.url == f"mqtt://127.0.0.1:{port}"

    # Outside ansim/#: the original subscriber may already be back (its reconnect races
    # this client's connect on a loaded machine) and must not see it either way.
    fresh = subscriber_factory("restart/#")
    fresh.publish("restart/after", "2")
    assert fresh.wait_for("restart/after").payload == b"2"

    # The original subscriber reconnects by itself and re-subscribes.
    sub.wait_subscribed(timeout=10, connect_count=connects + 1)
    fresh.publish("ansim/after-reconnect", "3")
    assert sub.wait_for("ansim/after-reconnect").payload == b"3"
    assert [m.topic for m in sub.messages()] == ["ansim/before", "ansim/after-reconnect"]


def test_stop_is_graceful(mosquitto: Mosquitto) -> None:
    assert port_accepts(mosquitto.host, mosquitto.port)
    assert mosquitto.stop() == 0
    assert not port_accepts(mosquitto.host, mosquitto.port)


def test_explicit_port_is_used(mosquitto: Mosquitto) -> None:
    port = free_port()
    with Mosquitto(mosquitto.workdir / "second", port=port) as second:
        assert second.port == port and second.port != mosquitto.port
        assert port_accepts("127.0.0.1", port)
    assert not second.running
    assert not port_accepts("127.0.0.1", port)


def test_tls_with_client_certificate(
    mosquitto_tls: Mosquitto, subscriber_factory: SubscriberFactory, mqtt_protocol: str
) -> None:
    broker = mosquitto_tls
    assert broker.url == f"mqtts://127.0.0.1:{broker.port}"
    for path in (broker.ca_path, broker.client_cert_path, broker.client_key_path):
        assert path.read_bytes().startswith(b"-----BEGIN ")

    sub = subscriber_factory("secure/#", broker=broker)
    sub.publish("secure/ping", {"ok": True})
    assert sub.wait_for("secure/ping").json == {"ok": True}
    # use_identity_as_username: the broker took the certificate CN as the username.
    wait_until(
        lambda: "u'ansim-test-client'" in broker.log_text(),
        timeout=5,
        message="broker log to show the certificate CN as username",
    )


def test_tls_without_client_certificate_is_rejected(
    mosquitto_tls: Mosquitto, subscriber_factory: SubscriberFactory
) -> None:
    # CA configured (server is trusted) but no client cert. Under TLS 1.2 the handshake
    # fails (ssl.SSLError); under TLS 1.3 the broker's alert arrives right after it and the
    # Subscriber raises ConnectionError. Both are OSError.
    with pytest.raises(OSError):
        subscriber_factory("secure/#", broker=mosquitto_tls, client_cert=False)
    # Plain MQTT against the TLS listener never gets a CONNACK.
    with pytest.raises(ConnectionError):
        Subscriber(mosquitto_tls.host, mosquitto_tls.port, "secure/#", timeout=5).close()
    # ... and the broker never accepted an MQTT session without a certificate.
    assert "New client connected" not in mosquitto_tls.log_text()
