"""Shared fixtures: real mosquitto brokers, recording MQTT subscribers, protocol matrix.

Fixtures
--------
``mosquitto``          a fresh plain broker per test (``mqtt://127.0.0.1:PORT``), killed after.
``mosquitto_tls``      same with mutual TLS (``mqtts://``; ``.ca_path``, ``.client_cert_path``,
                       ``.client_key_path``).
``mosquitto_factory``  ``factory(**Mosquitto kwargs) -> Mosquitto``: a started broker with its own
                       settings (e.g. ``password_file=``, ``acl_file=``), killed after.
``subscriber_factory`` ``factory(topics="#", *, broker=None, protocol=None, client_cert=True,
                       **Subscriber kwargs) -> Subscriber``; ``broker`` defaults to ``mosquitto``,
                       ``protocol`` to ``mqtt_protocol`` when the test uses it, else "3.1.1".
``mqtt_protocol``      parametrised ``"3.1.1"`` / ``"5"``.
``nats_cluster``       a 3-node NATS JetStream cluster with MQTT on every node (``.nodes[i]``:
                       ``.url``, ``.kill()``, ``.restart()``), ready to carry MQTT QoS 1 traffic.
``amqtt_broker``       the embedded amqtt broker of ``ansim-edge sim`` in a subprocess.
``tcp_proxy``          ``factory(upstream_host, upstream_port) -> TcpProxy`` (``freeze()``,
                       ``unfreeze()``, ``cut()``); all closed at teardown.
``broker_matrix``      parametrised over mosquitto MQTT 3.1.1, mosquitto MQTT 5, the NATS cluster
                       (site on node 1, centre on node 2) and amqtt: a ``BrokerHandle`` with
                       ``.url_for_site``, ``.url_for_centre``, ``.urls``, ``.protocol``,
                       ``.kill(role)``, ``.restart(role)``, ``.subscriber(topics)``.

Without a mosquitto (or nats-server) binary the broker fixtures skip, unless
``ANSIM_REQUIRE_MOSQUITTO`` or ``ANSIM_REQUIRE_BROKERS`` is set (CI and ``scripts/test.sh`` set
them), in which case they fail. See tests/support/brokers.py and docs/brokers.md.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from tests.support.brokers import (
    AmqttBroker,
    BrokerHandle,
    NatsCluster,
    TcpProxy,
    find_nats_server,
)
from tests.support.mqtt import (
    Mosquitto,
    Subscriber,
    SubscriberFactory,
    close_all,
    find_mosquitto,
    live_subscribers,
)
from tests.support.process import kill_all

# Property tests are reproducible by default: the "ci" profile derives every example from
# the test itself (derandomize), so a run that passed passes again. HYPOTHESIS_PROFILE=explore
# searches with a fresh random seed (printed in the header and on failure) to find new cases.
# No per-example deadline in "ci": on a loaded machine an example took 341 ms (deadline
# 200 ms) and failed the gate as "flaky"; how long an example takes is not what they test.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
hypothesis_settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed", None)
    how = "derandomized" if HYPOTHESIS_PROFILE == "ci" else f"seed {seed or 'random'}"
    return f"hypothesis profile: {HYPOTHESIS_PROFILE} ({how})"


REQUIRE_ENV = "ANSIM_REQUIRE_MOSQUITTO"
REQUIRE_BROKERS_ENV = "ANSIM_REQUIRE_BROKERS"
BROKER_FIXTURES = (
    "mosquitto",
    "mosquitto_tls",
    "mosquitto_factory",
    "nats_cluster",
    "amqtt_broker",
    "broker_matrix",
    "nats_server_binary",
    "mosquitto_binary",
)


def _env_set(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in {"", "0", "false", "no"}


def _mosquitto_required() -> bool:
    return _env_set(REQUIRE_ENV) or _env_set(REQUIRE_BROKERS_ENV)


def _require_nats_binary() -> str:
    binary = find_nats_server()
    if binary is not None:
        return binary
    if _mosquitto_required():
        pytest.fail(
            f"{REQUIRE_ENV} or {REQUIRE_BROKERS_ENV} is set but no nats-server binary was found "
            "on PATH or in /usr/sbin (apt-get install nats-server, or run scripts/test.sh "
            "which installs it)",
            pytrace=False,
        )
    pytest.skip(
        "nats-server binary not found on PATH or in /usr/sbin (install it, or run "
        f"scripts/test.sh; set {REQUIRE_BROKERS_ENV}=1 to make this an error)"
    )


def _require_mosquitto_binary() -> str:
    binary = find_mosquitto()
    if binary is not None:
        return binary
    if _mosquitto_required():
        pytest.fail(
            f"{REQUIRE_ENV} is set but no mosquitto binary was found on PATH or in /usr/sbin "
            "(apt-get install mosquitto, or run scripts/test.sh which installs it)",
            pytrace=False,
        )
    pytest.skip(
        "mosquitto binary not found on PATH or in /usr/sbin "
        f"(install it, or run scripts/test.sh; set {REQUIRE_ENV}=1 to make this an error)"
    )


# --------------------------------------------------------------------------- cleanup safety nets

_previous_sigterm: Any = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    kill_all()
    signal.signal(signal.SIGTERM, _previous_sigterm or signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def pytest_configure(config: pytest.Config) -> None:
    global _previous_sigterm
    # A SIGTERM'd pytest skips finalizers and atexit: kill our brokers first anyway.
    if threading.current_thread() is threading.main_thread():
        current = signal.getsignal(signal.SIGTERM)
        if current in (signal.SIG_DFL, None):
            _previous_sigterm = current
            signal.signal(signal.SIGTERM, _on_sigterm)


def pytest_unconfigure(config: pytest.Config) -> None:
    kill_all()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Anything that needs a real broker gets the `mqtt` marker (select with -m "not mqtt").
    for item in items:
        names = getattr(item, "fixturenames", ())
        if any(name in names for name in (*BROKER_FIXTURES, "subscriber_factory")):
            item.add_marker(pytest.mark.mqtt)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"_ansim_rep_{report.when}", report)
    return report


@pytest.fixture(scope="session", autouse=True)
def _kill_leftover_brokers() -> Iterator[None]:
    yield
    kill_all()


@pytest.fixture(autouse=True)
def _close_leftover_subscribers() -> Iterator[None]:
    # Subscribers made directly (not via subscriber_factory) and never closed would keep a
    # paho thread reconnecting to a dead port; close whatever this test left open.
    before = set(map(id, live_subscribers()))
    yield
    close_all(s for s in live_subscribers() if id(s) not in before)


# --------------------------------------------------------------------------- broker fixtures


def _broker(request: pytest.FixtureRequest, tmp_path: Path, *, tls: bool) -> Iterator[Mosquitto]:
    binary = _require_mosquitto_binary()
    broker = Mosquitto(tmp_path / ("mosquitto-tls" if tls else "mosquitto"), tls=tls, binary=binary)
    request.addfinalizer(broker.close)  # registered before start(): a failed start is cleaned up
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
        call_report = getattr(request.node, "_ansim_rep_call", None)
        if call_report is not None and call_report.failed:
            tail = "\n".join(broker.log_text().splitlines()[-40:])
            sys.stderr.write(f"\n--- {broker!r} log (last 40 lines) ---\n{tail}\n")


@pytest.fixture
def mosquitto(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mosquitto]:
    """A real mosquitto on a free 127.0.0.1 port; SIGKILLed at teardown."""
    yield from _broker(request, tmp_path, tls=False)


@pytest.fixture
def mosquitto_tls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mosquitto]:
    """A real mosquitto with mutual TLS (client certificate required, TLS >= 1.2)."""
    yield from _broker(request, tmp_path, tls=True)


@pytest.fixture
def mosquitto_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Mosquitto]:
    """Start a real mosquitto with the given :class:`Mosquitto` settings; killed at teardown."""
    binary = _require_mosquitto_binary()
    count = 0

    def factory(**kwargs: Any) -> Mosquitto:
        nonlocal count
        count += 1
        broker = Mosquitto(tmp_path / f"mosquitto-{count}", binary=binary, **kwargs)
        request.addfinalizer(broker.close)
        return broker.start()

    return factory


@pytest.fixture(params=["3.1.1", "5"], ids=["mqtt311", "mqtt5"])
def mqtt_protocol(request: pytest.FixtureRequest) -> str:
    """MQTT protocol version under test: ``"3.1.1"`` or ``"5"``."""
    value: str = request.param
    return value


@pytest.fixture
def subscriber_factory(request: pytest.FixtureRequest) -> Iterator[SubscriberFactory]:
    """Create recording :class:`Subscriber` clients; all are closed at teardown."""
    created: list[Subscriber] = []

    def factory(
        topics: str | Sequence[str] = "#",
        *,
        broker: Mosquitto | None = None,
        protocol: str | None = None,
        client_cert: bool = True,
        **kwargs: Any,
    ) -> Subscriber:
        if broker is None:
            broker = request.getfixturevalue("mosquitto")
        if protocol is None:
            protocol = (
                request.getfixturevalue("mqtt_protocol")
                if "mqtt_protocol" in request.fixturenames
                else "3.1.1"
            )
        sub = Subscriber.for_broker(
            broker, topics, protocol=protocol, client_cert=client_cert, **kwargs
        )
        created.append(sub)
        return sub

    try:
        yield factory
    finally:
        close_all(reversed(created))


# --------------------------------------------------------------------------- other brokers


def _dump_log_on_failure(request: pytest.FixtureRequest, what: str, tail: str) -> None:
    call_report = getattr(request.node, "_ansim_rep_call", None)
    if call_report is not None and call_report.failed:
        sys.stderr.write(f"\n--- {what} ---\n{tail}\n")


@pytest.fixture
def mosquitto_binary() -> str:
    """Path of mosquitto, for tests that start their own (the benchmarks' smoke tests):
    skips without one, fails when brokers are required."""
    return _require_mosquitto_binary()


@pytest.fixture
def nats_server_binary() -> str:
    """Path of nats-server (skips without one, fails when brokers are required)."""
    return _require_nats_binary()


@pytest.fixture
def nats_cluster(
    request: pytest.FixtureRequest, tmp_path: Path, nats_server_binary: str
) -> Iterator[NatsCluster]:
    """A 3-node NATS JetStream cluster with MQTT on every node, each with its own store in
    ``tmp_path``; yielded once every node carries MQTT QoS 1 traffic; SIGKILLed at teardown."""
    cluster = NatsCluster(tmp_path / "nats", binary=nats_server_binary)
    request.addfinalizer(cluster.close)  # registered before start(): a failed start is cleaned up
    cluster.start()
    try:
        yield cluster
    finally:
        tail = cluster.log_tail()
        cluster.kill()
        _dump_log_on_failure(request, f"{cluster!r} logs", tail)


@pytest.fixture
def amqtt_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AmqttBroker]:
    """The embedded amqtt broker (simulator/broker.py) on a free port, in a subprocess."""
    broker = AmqttBroker(tmp_path / "amqtt")
    request.addfinalizer(broker.close)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
        _dump_log_on_failure(request, f"{broker!r} log", broker.log_tail())


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], TcpProxy]]:
    """``factory(upstream_host, upstream_port) -> TcpProxy`` (started); all closed at teardown."""
    created: list[TcpProxy] = []

    def factory(upstream_host: str, upstream_port: int) -> TcpProxy:
        proxy = TcpProxy(upstream_host, upstream_port).start()
        created.append(proxy)
        return proxy

    try:
        yield factory
    finally:
        for proxy in reversed(created):
            proxy.close()


#: The broker matrix: (test id, kind, MQTT protocol).
BROKER_MATRIX = (
    ("mosquitto311", "mosquitto", "3.1.1"),
    ("mosquitto5", "mosquitto", "5"),
    ("nats", "nats", "3.1.1"),
    ("amqtt", "amqtt", "3.1.1"),
)


@pytest.fixture(params=BROKER_MATRIX, ids=[row[0] for row in BROKER_MATRIX])
def broker_matrix(request: pytest.FixtureRequest) -> BrokerHandle:
    """Each broker set-up the site must work with, as a :class:`BrokerHandle`.

    mosquitto (MQTT 3.1.1 and 5), a 3-node NATS JetStream cluster with MQTT on every node
    (MQTT 3.1.1 only; site on node 1, centre on node 2, node 3 spare) and the embedded amqtt
    broker (3.1.1). ``handle.kill(role)`` / ``handle.restart(role)`` act on the broker (the
    NATS node) that role is connected to.
    """
    name, kind, protocol = request.param
    target_fixture = {"mosquitto": "mosquitto", "nats": "nats_cluster", "amqtt": "amqtt_broker"}
    target = request.getfixturevalue(target_fixture[kind])
    return BrokerHandle(name=name, kind=kind, protocol=protocol, _target=target)
