"""The shipped per-site broker ACL (config/mosquitto/acl) loaded into a real mosquitto with
a password file: a site publishes only under its own prefix and reads only its own
commands; the centre reads everything and sends commands to every site; and a real site
works under it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.mqtt import Mosquitto, Subscriber, find_mosquitto_passwd, write_password_file
from tests.support.site import ThreadedSite, command, make_keys, site_dict
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[1]
ACL = REPO / "config" / "mosquitto" / "acl"
ROOT = "ansim/v1"
CENTRE = "ansim_centre"  # the centre's username in the shipped ACL
PASSWORDS = {"site-a": "pw-a", "site-b": "pw-b", CENTRE: "pw-centre"}


@pytest.fixture
def acl_broker(mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> Mosquitto:
    """mosquitto as docs/security.md sets it up: passwords, and the shipped ACL as is."""
    if find_mosquitto_passwd() is None:
        pytest.fail("mosquitto_passwd not found (it comes with the mosquitto package)")
    pw = write_password_file(tmp_path / "passwd", PASSWORDS)
    return mosquitto_factory(password_file=pw, acl_file=ACL)


def client(broker: Mosquitto, user: str, topics: list[str]) -> Subscriber:
    return Subscriber.for_broker(
        broker, topics, username=user, password=PASSWORDS[user], client_id=f"{user}-{uuid.uuid4()}"
    )


def barrier(sender: Subscriber, receiver: Subscriber, topic: str) -> None:
    """Publish a marker on ``topic`` and wait until ``receiver`` has it: whatever the broker
    routed to ``receiver`` before has arrived by then (one connection, in order)."""
    marker = uuid.uuid4().hex.encode()
    sender.publish(topic, marker)
    receiver.wait_for(lambda m: m.payload == marker)


def test_a_site_publishes_only_under_its_own_prefix(acl_broker: Mosquitto) -> None:
    centre = client(acl_broker, CENTRE, [f"{ROOT}/#"])
    a = client(acl_broker, "site-a", [])
    a.publish(f"{ROOT}/site-b/events/alarm/raised", b"forged by a")
    a.publish(f"{ROOT}/site-b/status", b"forged by a", retain=True)
    a.publish(f"{ROOT}/site-b/state/alarm", b"forged by a", retain=True)
    a.publish(f"{ROOT}/site-b/results", b"forged by a")
    a.publish("elsewhere/topic", b"forged by a")
    a.publish(f"{ROOT}/site-a/events/alarm/raised", b"own event")
    a.publish(f"{ROOT}/site-a/events/door/left_open", b"own event, another type")
    centre.wait_for(lambda m: m.payload == b"own event, another type")
    got = [(m.topic, m.payload) for m in centre.messages()]
    assert got == [
        (f"{ROOT}/site-a/events/alarm/raised", b"own event"),
        (f"{ROOT}/site-a/events/door/left_open", b"own event, another type"),
    ]
    # nothing forged was kept as retained either
    late = client(acl_broker, CENTRE, [f"{ROOT}/site-b/#"])
    barrier(centre, late, f"{ROOT}/site-b/commands/marker")
    assert [m.topic for m in late.messages()] == [f"{ROOT}/site-b/commands/marker"]


def test_a_site_reads_only_its_own_commands(acl_broker: Mosquitto) -> None:
    centre = client(acl_broker, CENTRE, [f"{ROOT}/#"])
    # site A tries everything: B's commands by name, and every topic
    a = client(acl_broker, "site-a", [f"{ROOT}/site-b/commands/#", "#"])
    b = client(acl_broker, "site-b", [f"{ROOT}/site-b/commands/#"])
    centre.publish(f"{ROOT}/site-b/commands/alarm/clear", b"for b")
    b.wait_for(lambda m: m.payload == b"for b")
    b.publish(f"{ROOT}/site-b/events/alarm/raised", b"b's event")
    centre.wait_for(lambda m: m.payload == b"b's event")  # the broker has routed it
    barrier(centre, a, f"{ROOT}/site-a/commands/alarm/ack")
    assert [m.topic for m in a.messages()] == [f"{ROOT}/site-a/commands/alarm/ack"]
    # and B never sees A's commands
    barrier(centre, b, f"{ROOT}/site-b/commands/marker")
    assert all(m.topic.startswith(f"{ROOT}/site-b/commands/") for m in b.messages())


def test_a_site_cannot_publish_commands_to_another_site(acl_broker: Mosquitto) -> None:
    b = client(acl_broker, "site-b", [f"{ROOT}/site-b/commands/#"])
    a = client(acl_broker, "site-a", [])
    centre = client(acl_broker, CENTRE, [])
    a.publish(f"{ROOT}/site-b/commands/alarm/clear", b"replayed by a")
    barrier(centre, b, f"{ROOT}/site-b/commands/alarm/ack")
    assert all(m.payload != b"replayed by a" for m in b.messages())
    assert len(b.messages()) == 1


def test_unknown_users_and_wrong_passwords_are_refused(acl_broker: Mosquitto) -> None:
    with pytest.raises(ConnectionError):
        Subscriber.for_broker(acl_broker, ["#"], timeout=5)  # anonymous
    with pytest.raises(ConnectionError):
        Subscriber.for_broker(acl_broker, ["#"], username="site-a", password="wrong", timeout=5)


def test_a_real_site_works_under_the_acl(acl_broker: Mosquitto, tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    pw = tmp_path / "site-a.pw"
    pw.write_text(PASSWORDS["site-a"] + "\n")
    cfg = site_dict(
        "site-a",
        acl_broker.url,
        tmp_path / "data",
        keys,
        username="site-a",
        password_file=str(pw),
    )
    centre = client(acl_broker, CENTRE, [f"{ROOT}/#"])
    with ThreadedSite(cfg) as rs:
        centre.wait_for(
            lambda m: m.topic == f"{ROOT}/site-a/status" and m.json["state"] == "online"
        )
        rs.press()
        raised = centre.wait_for(f"{ROOT}/site-a/events/alarm/raised").json
        wait_until(lambda: rs.output("sent_led"), message="sent lamp after PUBACK")
        args = {"alarm_id": raised["data"]["alarm_id"], "by": "centre"}
        ack = command("alarm.ack", args, keys.centre, site="site-a")
        centre.publish(f"{ROOT}/site-a/commands/alarm/ack", ack)
        result = centre.wait_for(
            lambda m: (
                m.topic == f"{ROOT}/site-a/results" and m.json["command_id"] == ack["command_id"]
            )
        ).json
        assert result["ok"] is True, result
        wait_until(lambda: rs.output("ack_led"), message="ack lamp")
