"""A site that cannot connect says why, on a real mosquitto: every failed connection attempt
is counted, its reason kept in Site.snapshot() (the simulator's /state) and logged, the
log rate-limited (the first failure of a run at once, then one line a minute)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from simulator.control import ControlApi
from simulator.routes import add_site_routes
from tests.support.mqtt import Mosquitto, generate_tls_files
from tests.support.site import Keys, ThreadedSite, make_keys, site_dict
from tests.support.wait import wait_until

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def uplink(rs: ThreadedSite) -> dict[str, Any]:
    snap: Any = rs.site.call(rs.site.snapshot)
    return dict(snap["uplink"], online=snap["online"])


def failing(rs: ThreadedSite, at_least: int = 3) -> dict[str, Any]:
    """The snapshot once ``at_least`` attempts have failed (the reconnect delay is short)."""
    return wait_until(
        lambda: (u := uplink(rs))["connect_failures"] >= at_least and u,
        timeout=20,
        message=f"{at_least} failed connection attempts",
    )


def sim_state(rs: ThreadedSite) -> Any:
    """GET /state from the simulator's control API, served for this site."""
    api = ControlApi("127.0.0.1", 0)
    add_site_routes(api, rs.site, rs.hw)
    api.start()
    try:
        host, port = api.address
        with urllib.request.urlopen(f"http://{host}:{port}/state", timeout=5) as r:
            return json.loads(r.read())
    finally:
        api.close()


def lines(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event]


def assert_reported(
    logs: list[dict[str, Any]], up: dict[str, Any], broker: str, *, same_reason: bool = True
) -> str:
    """One log line for the whole run of failures (all within a minute), with the reason;
    the count and the last reason in the snapshot. Returns the logged reason.
    ``same_reason=False``: the first attempt's reason may differ from the last one's."""
    assert up["online"] is False
    assert up["failures_in_a_row"] == up["connect_failures"] >= 3
    assert up["last_failure"] and TS_RE.match(up["last_failure_at"])
    [line] = lines(logs, "uplink_connect_failed")
    assert line["log_level"] == "warning"
    assert (line["failures"], line["suppressed"], line["broker"]) == (1, 0, broker)
    assert line["reason"] and isinstance(line["reason"], str)
    if same_reason:
        assert line["reason"] == up["last_failure"]
    return str(line["reason"])


def test_a_client_certificate_from_another_ca_is_reported(
    mosquitto_tls: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    # The broker's CA is trusted, the server is fine; only the site's own certificate is
    # signed by a CA the broker does not know. Under TLS 1.3 the client's handshake
    # completes and the broker's alert arrives on the first read: paho then returns "the
    # connection was lost" and tells the cause only in its log.
    # When the site's CONNECT reaches the broker before the broker has checked the
    # certificate (a loaded machine), the broker closes with that CONNECT unread: its TCP
    # reset makes the client lose the alert, and that attempt can only report the reset.
    # Failures repeat on every reconnect: wait for one that names the alert.
    other = generate_tls_files(tmp_path / "other-ca")
    tls = {
        "ca": str(mosquitto_tls.ca_path),
        "cert": str(other.client_cert_path),
        "key": str(other.client_key_path),
    }
    cfg = site_dict("tls-other-ca", mosquitto_tls.url, tmp_path / "d", keys, tls=tls)
    with capture_logs() as logs, ThreadedSite(cfg) as rs:
        up = wait_until(
            lambda: (u := failing(rs)) and "unknown ca" in u["last_failure"].lower() and u,
            timeout=60,
            interval=0.05,
            message="a failure reported with the TLS alert",
        )
        state = wait_until(
            lambda: (
                (s := sim_state(rs))
                and "unknown ca" in s["site"]["uplink"]["last_failure"].lower()
                and s
            ),
            timeout=60,
            interval=0.05,
            message="/state showing a failure with the TLS alert",
        )
    assert_reported(logs, up, f"127.0.0.1:{mosquitto_tls.port}", same_reason=False)
    assert "unknown ca" in up["last_failure"].lower(), up
    shown = state["site"]["uplink"]
    assert shown["connect_failures"] >= up["connect_failures"]
    assert "unknown ca" in shown["last_failure"].lower() and state["site"]["online"] is False


def _password_file(path: Path, user: str, password: str) -> Path:
    """A mosquitto 2 password file line ($7$: PBKDF2-SHA512, 101 iterations)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    b64 = base64.b64encode
    path.write_text(f"{user}:$7$101${b64(salt).decode()}${b64(digest).decode()}\n")
    return path


def test_a_wrong_password_is_reported(mosquitto: Mosquitto, keys: Keys, tmp_path: Path) -> None:
    passwd = _password_file(tmp_path / "passwd", "site", "right")
    mosquitto.extra_config = f"password_file {passwd}\nallow_anonymous false"
    mosquitto.restart()
    (tmp_path / "site.pw").write_text("wrong\n")
    cfg = site_dict(
        "bad-password",
        mosquitto.url,
        tmp_path / "d",
        keys,
        username="site",
        password_file=str(tmp_path / "site.pw"),
    )
    with capture_logs() as logs, ThreadedSite(cfg) as rs:
        up = failing(rs)
    broker = f"127.0.0.1:{mosquitto.port}"
    assert assert_reported(logs, up, broker) == "CONNACK refused: Not authorized"
    assert "wrong" not in repr(logs)  # the password is never logged


def test_a_closed_port_is_reported_and_a_success_ends_the_run(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    mosquitto.kill()  # nothing listens on its port now
    cfg = site_dict("closed-port", mosquitto.url, tmp_path / "d", keys)
    with capture_logs() as logs, ThreadedSite(cfg) as rs:
        up = failing(rs)
        reason = assert_reported(logs, up, f"127.0.0.1:{mosquitto.port}")
        assert reason.startswith("ConnectionRefusedError"), reason
        mosquitto.restart()
        wait_until(lambda: uplink(rs)["online"], timeout=20, message="connected")
        after = uplink(rs)
    [connected] = lines(logs, "uplink_connected")
    assert connected["failed_attempts"] == after["connect_failures"] >= up["connect_failures"]
    # Counted since the start, the last reason kept; the run of failures is over.
    assert after["failures_in_a_row"] == 0
    assert after["last_failure"].startswith("ConnectionRefusedError")
    assert TS_RE.match(after["last_failure_at"])
