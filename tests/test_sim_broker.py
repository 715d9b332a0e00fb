"""The embedded broker of `ansim-edge sim` keeps its port across a quick restart
(issue 10.6: the port probe bound without SO_REUSEADDR, so the connections of the broker
stopped a moment ago, lingering in TIME_WAIT, made 1883 look taken)."""

from __future__ import annotations

import socket

import pytest

from simulator.broker import EmbeddedBroker, choose_port, port_free
from tests.support.mqtt import Subscriber, free_port

pytest.importorskip("amqtt")


def test_a_restarted_embedded_broker_gets_its_port_again() -> None:
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", choose_port("127.0.0.1", port))
    broker.start()
    assert broker.port == port
    # A client connected while the broker stops: the broker closes the connection first,
    # so its side of it stays in TIME_WAIT on the port.
    sub = Subscriber("127.0.0.1", port, "x/#")
    sub.publish("x/1", "hello")
    sub.wait_for(lambda m: m.topic == "x/1")
    broker.stop()
    sub.close()
    assert port_free("127.0.0.1", port)
    again = EmbeddedBroker("127.0.0.1", choose_port("127.0.0.1", port))
    again.start()
    try:
        assert again.port == port
        check = Subscriber("127.0.0.1", port, "y/#")  # and it serves
        check.close()
    finally:
        again.stop()


def test_a_port_really_in_use_is_not_chosen() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        assert choose_port("127.0.0.1", port) == 0
