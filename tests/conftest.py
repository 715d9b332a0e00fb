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

Without a mosquitto binary the broker fixtures skip, unless ``ANSIM_REQUIRE_MOSQUITTO`` is set
(CI and ``scripts/test.sh`` set it), in which case they fail.
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

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from hypothesis import settings as hypothesis_settings  # noqa: E402
from mqtt_helpers import (  # noqa: E402  (needs the sys.path entry above)
    Mosquitto,
    Subscriber,
    SubscriberFactory,
    close_all,
    find_mosquitto,
    kill_all_brokers,
    live_subscribers,
)

# Property tests are reproducible by default: the "ci" profile derives every example from
# the test itself (derandomize), so a run that passed passes again. HYPOTHESIS_PROFILE=explore
# searches with a fresh random seed (printed in the header and on failure) to find new cases.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
hypothesis_settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed", None)
    how = "derandomized" if HYPOTHESIS_PROFILE == "ci" else f"seed {seed or 'random'}"
    return f"hypothesis profile: {HYPOTHESIS_PROFILE} ({how})"


REQUIRE_ENV = "ANSIM_REQUIRE_MOSQUITTO"
BROKER_FIXTURES = ("mosquitto", "mosquitto_tls", "mosquitto_factory")


def _mosquitto_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in {"", "0", "false", "no"}


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
    kill_all_brokers()
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
    kill_all_brokers()


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
    kill_all_brokers()


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
