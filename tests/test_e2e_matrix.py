"""Issue 9.2: the end-to-end suite on every broker of the matrix (tests/conftest.py
``broker_matrix``): mosquitto with MQTT 3.1.1 and with MQTT 5, a 3-node NATS JetStream
cluster with MQTT on every node (the site on node 1, the centre on node 2; node 1 is killed
and restarted in the outage test) and the embedded amqtt broker of ``ansim-edge sim``.

Each test runs the real site (``ThreadedSite``: the core loop on a thread, the real uplink;
``SimProcess``: ``ansim-edge sim`` as a child process) and a centre that is a plain MQTT
client on the centre's address:

- a press reaches the centre; a signed ``alarm.ack`` gets its result and lights the lamp;
- the broker (for NATS: the site's node) goes down and comes back: what happened meanwhile
  arrives afterwards, ``seq`` gapless;
- SIGKILL of the site: the broker publishes its ``offline`` last will;
- a command sent while the site was stopped waits in its persistent session and is answered
  when it comes back (not on amqtt: it drops what was queued for an offline session,
  docs/brokers.md; the test is a strict xfail there).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.brokers import BrokerHandle, TcpProxy
from tests.support.mqtt import Subscriber
from tests.support.site import Keys, SimProcess, ThreadedSite, command, make_keys, site_dict
from tests.support.wait import wait_until

ROOT = "ansim/v1"
# NATS carries QoS 1 through JetStream: a PUBACK or a delivery may wait for a stream or
# consumer leader, and a restarted node needs seconds before it takes MQTT again.
SLOW_S = 60.0


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def config(b: BrokerHandle, site: str, url: str, data: Path, keys: Keys) -> dict[str, Any]:
    return site_dict(site, url, data, keys, protocol=b.protocol, debounce_ms=0)


def centre(b: BrokerHandle, site: str) -> Subscriber:
    """The centre: every topic of the site, a persistent session (it resumes where it was
    when its broker comes back with its sessions), on the centre's address."""
    return b.subscriber(
        [f"{ROOT}/{site}/#"],
        client_id=f"centre-{uuid.uuid4().hex[:8]}",
        clean_session=False if b.protocol == "3.1.1" else None,
        timeout=SLOW_S,
    )


def online(sub: Subscriber, site: str, after: int = 0) -> None:
    sub.wait_for(
        lambda m: (
            m.topic == f"{ROOT}/{site}/status"
            and m.json["state"] == "online"
            and sub.messages().index(m) >= after
        ),
        timeout=SLOW_S,
    )


def events(sub: Subscriber, site: str) -> dict[int, dict[str, Any]]:
    """Every event received, by seq (a re-send must be the same event)."""
    by_seq: dict[int, dict[str, Any]] = {}
    for m in sub.messages(f"{ROOT}/{site}/events/#"):
        e = m.json
        assert by_seq.setdefault(e["seq"], e)["event_id"] == e["event_id"], e
    return by_seq


def result(sub: Subscriber, site: str, cid: str, timeout: float = SLOW_S) -> dict[str, Any]:
    msg = sub.wait_for(
        lambda m: m.topic == f"{ROOT}/{site}/results" and m.json["command_id"] == cid,
        timeout=timeout,
    )
    return dict(msg.json)


def send(sub: Subscriber, site: str, cmd: dict[str, Any]) -> None:
    sub.publish(f"{ROOT}/{site}/commands/{cmd['name'].replace('.', '/')}", cmd, timeout=SLOW_S)


def answered(b: BrokerHandle, sub: Subscriber, site: str, cmd: dict[str, Any]) -> dict[str, Any]:
    """Send ``cmd`` and return its result. On the NATS cluster the centre does what
    docs/mqtt-api.md ("Replay and command_id") tells a centre to do about a lost result:
    re-send the same command, here up to twice, 20 s apart. NATS 2.9's MQTT layer once (in
    about twenty full CI runs) never delivered a QoS 1 command to the site at all: the site
    logged nothing and the same command reached the centre's own subscription. The other
    brokers get exactly one send."""
    send(sub, site, cmd)
    tries = 3 if b.kind == "nats" else 1
    for attempt in range(1, tries + 1):
        try:
            return result(sub, site, cmd["command_id"], SLOW_S if attempt == tries else 20.0)
        except AssertionError:
            if attempt == tries:
                raise
            send(sub, site, cmd)
    raise AssertionError("unreachable")


def alarm_and_clear(rs: ThreadedSite) -> None:
    """Press and release the panic button, turn the reset key: alarm.raised, .cleared."""
    rs.press()
    wait_until(lambda: rs.alarm()["state"] == "active", message="alarm raised")
    rs.press(False)
    rs.set_input("reset_key", True)
    rs.set_input("reset_key", False)
    wait_until(lambda: rs.alarm()["state"] == "idle", message="alarm cleared")


def delivered(rs: ThreadedSite, sub: Subscriber, site: str) -> dict[int, dict[str, Any]]:
    """Wait until the site's outbox is empty and the centre has every seq it handed out;
    return the events by seq (exactly 1..last: gapless, nothing unknown)."""
    wait_until(lambda: rs.call(lambda: len(rs.site.store)) == 0, SLOW_S, message="outbox empty")
    last = rs.call(rs.site.store.last_seq)
    wait_until(
        lambda: set(events(sub, site)) >= set(range(1, last + 1)),
        timeout=SLOW_S,
        message=f"every seq up to {last} at the centre",
    )
    got = events(sub, site)
    assert sorted(got) == list(range(1, last + 1)), sorted(got)
    return got


def test_alarm_reaches_the_centre_and_a_signed_ack_gets_its_result(
    broker_matrix: BrokerHandle, keys: Keys, tmp_path: Path
) -> None:
    b = broker_matrix
    site = f"mx-ack-{b.name}"
    sub = centre(b, site)
    with ThreadedSite(config(b, site, b.url_for_site, tmp_path / "d", keys)) as rs:
        online(sub, site)
        rs.press()
        raised = sub.wait_for(f"{ROOT}/{site}/events/alarm/raised", timeout=SLOW_S).json
        assert raised["site"] == site and raised["data"]["button"] == "panic-1"
        wait_until(lambda: rs.output("sent_led"), timeout=SLOW_S, message="sent lamp")
        args = {"alarm_id": raised["data"]["alarm_id"], "by": "관제센터"}
        ack = command("alarm.ack", args, keys.centre, site=site)
        res = answered(b, sub, site, ack)
        assert res["ok"] is True and res["data"]["state"] == "acknowledged", res
        acked = sub.wait_for(f"{ROOT}/{site}/events/alarm/acknowledged", timeout=SLOW_S).json
        assert acked["data"] == {"alarm_id": raised["data"]["alarm_id"], "by": "관제센터"}
        wait_until(lambda: rs.output("ack_led"), timeout=SLOW_S, message="ack lamp")
        # A command for the wrong site is refused with a result too (one per command).
        other = command("alarm.ack", args, keys.centre, site="elsewhere")
        assert answered(b, sub, site, other)["error"]["code"] == "wrong_site"


def test_a_broker_outage_loses_nothing_and_seq_stays_gapless(
    broker_matrix: BrokerHandle,
    tcp_proxy: Callable[[str, int], TcpProxy],
    keys: Keys,
    tmp_path: Path,
) -> None:
    b = broker_matrix
    site = f"mx-outage-{b.name}"
    sub = centre(b, site)
    endpoint = b.endpoint("site")
    # The site reaches its broker through a proxy, so that after the restart it can be held
    # back until the centre has subscribed again: mosquitto (without persistence, as in
    # these tests) and amqtt forget the centre's session when they restart, and what the
    # site sent before that would be dropped by the broker, not by the site.
    proxy = tcp_proxy(endpoint.host, endpoint.port)
    with ThreadedSite(config(b, site, proxy.url, tmp_path / "d", keys)) as rs:
        online(sub, site)
        alarm_and_clear(rs)
        sub.wait_for(f"{ROOT}/{site}/events/alarm/cleared", timeout=SLOW_S)
        delivered(rs, sub, site)  # everything so far is at the centre, nothing waits
        before = sub.connect_count

        b.kill("site")  # NATS: node 1 of 3; the others keep the centre's session
        wait_until(lambda: not rs.call(lambda: rs.site.outbox.online), message="site offline")
        alarm_and_clear(rs)  # while the broker is down
        stored = rs.call(lambda: len(rs.site.store))
        assert stored >= 2  # alarm.raised and alarm.cleared wait in the outbox

        proxy.freeze()  # hold the site's reconnection back until the centre is ready
        b.restart("site")
        if b.kind != "nats":  # one broker: the centre was cut off too
            sub.wait_subscribed(timeout=SLOW_S, connect_count=before + 1)
        proxy.unfreeze()
        got = delivered(rs, sub, site)
        types = [got[s]["type"] for s in sorted(got)]
        assert types.count("alarm.raised") == 2 and types.count("alarm.cleared") == 2, types


def test_the_last_will_says_offline_after_sigkill(
    broker_matrix: BrokerHandle, keys: Keys, tmp_path: Path
) -> None:
    b = broker_matrix
    site = f"mx-will-{b.name}"
    sub = centre(b, site)
    proc = SimProcess(
        config(b, site, b.url_for_site, tmp_path / "d", keys), tmp_path, b.url_for_site
    )
    try:
        online(sub, site)
        n = len(sub.messages())
        proc.kill()
        # keepalive_s 5: the broker gives up after 1.5 x 5 s and publishes the will.
        will = sub.wait_for(
            lambda m: (
                m.topic == f"{ROOT}/{site}/status"
                and m.json["state"] == "offline"
                and sub.messages().index(m) >= n
            ),
            timeout=SLOW_S,
        ).json
        assert will["site"] == site
    finally:
        proc.close()
    late = b.subscriber(f"{ROOT}/{site}/status", timeout=SLOW_S)
    msg = late.wait_for(f"{ROOT}/{site}/status", timeout=SLOW_S)
    assert msg.retain and msg.json["state"] == "offline"


def test_a_command_sent_while_the_site_was_down_is_answered_when_it_is_back(
    broker_matrix: BrokerHandle, keys: Keys, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    b = broker_matrix
    wait_s = SLOW_S
    if b.kind == "amqtt":
        wait_s = 15.0  # it does not come: do not wait a minute for that
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="amqtt 0.12 drops QoS 1 messages queued for an offline persistent "
                "session (docs/brokers.md)",
            )
        )
    site = f"mx-queued-{b.name}"
    sub = centre(b, site)
    cfg = config(b, site, b.url_for_site, tmp_path / "d", keys)
    with ThreadedSite(cfg) as rs:
        online(sub, site)  # subscribed: the broker keeps the session from now on
        rs.call(lambda: None)
    offline = sub.wait_for(
        lambda m: m.topic == f"{ROOT}/{site}/status" and m.json["state"] == "offline",
        timeout=SLOW_S,
    )
    assert offline.json["site"] == site
    n = len(sub.messages())
    cmd = command("site.test_mode", {"on": True, "minutes": 1}, keys.centre, site=site)
    send(sub, site, cmd)  # the site is stopped: the broker queues it in its session
    with ThreadedSite(cfg):
        res = result(sub, site, cmd["command_id"], wait_s)
        assert res["ok"] is True, res
        on = sub.wait_for(
            lambda m: (
                m.topic == f"{ROOT}/{site}/events/site/test_mode" and sub.messages().index(m) >= n
            ),
            timeout=SLOW_S,
        ).json
        assert on["data"]["on"] is True
    assert len([m for m in sub.messages(f"{ROOT}/{site}/results")]) == 1
