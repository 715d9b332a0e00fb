"""Issue 9.5 end to end: a link that goes silent (a stalled NAT, a cable cut beyond the
switch: the TCP connection stays open, nothing arrives) is noticed within 1.5 x keepalive,
the site reconnects, and an alarm raised meanwhile escalates over the modem as for a lost
link. The silence is made by a TCP proxy between the site and a real mosquitto that stops
forwarding without closing anything."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.brokers import TcpProxy
from tests.support.mqtt import Mosquitto, Subscriber
from tests.support.site import Keys, ThreadedSite, make_keys, site_dict
from tests.support.wait import wait_until

ROOT = "ansim/v1"
KEEPALIVE_S = 5
SMS_TO = "+821033334444"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def shelter(site: str, url: str, data: Path, keys: Keys, modem: bool) -> dict[str, Any]:
    d = site_dict(site, url, data, keys, debounce_ms=0)
    d["broker"]["keepalive_s"] = KEEPALIVE_S
    if not modem:  # nothing at all happens at the site (the modem reports every second)
        return d
    d["devices"]["modem"] = {"url": "/dev/null", "check_interval_s": 1}
    # Only a lost link escalates within this test.
    d["escalation"] = {"escalate_after_s": 600, "sms_numbers": [SMS_TO], "talk_s": 0.2}
    return d


class Times:
    """Monotonic times of the site's uplink events (recorded on its core thread)."""

    def __init__(self) -> None:
        self.disconnected: list[float] = []
        self.connected: list[float] = []


def record(site: Any, times: Times) -> None:
    """Wrap the site's listener methods (the uplink looks them up at every event)."""
    down: Callable[..., None] = site.uplink_disconnected
    up: Callable[[], None] = site.uplink_connected

    def disconnected(*args: Any) -> None:
        times.disconnected.append(time.monotonic())
        down(*args)

    def connected() -> None:
        times.connected.append(time.monotonic())
        up()

    site.uplink_disconnected = disconnected
    site.uplink_connected = connected


@pytest.mark.parametrize("busy", [True, False], ids=["alarm-in-flight", "idle"])
def test_a_silent_link_is_left_within_1_5_keepalive_and_the_alarm_escalates(
    mosquitto: Mosquitto,
    tcp_proxy: Callable[[str, int], TcpProxy],
    keys: Keys,
    tmp_path: Path,
    busy: bool,
) -> None:
    """busy: the alarm is raised as the link stalls (its PUBACK never comes); idle: nothing
    happens at the site (the heartbeat finds the dead link)."""
    site = f"dead-link-{'busy' if busy else 'idle'}"
    proxy = tcp_proxy(mosquitto.host, mosquitto.port)
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    times = Times()
    with ThreadedSite(shelter(site, proxy.url, tmp_path / "d", keys, modem=busy)) as rs:
        record(rs.site, times)
        sub.wait_for(lambda m: m.topic.endswith("/status") and m.json["state"] == "online")
        if busy:
            wait_until(
                lambda: (rs.state("modem") or {}).get("registered"),
                message="modem registered",
            )
        else:  # a quiet moment: everything the start sent is acknowledged
            wait_until(lambda: rs.site.call(lambda: rs.site.outbox.inflight == 0))
        proxy.wait_connections(1)
        connected_before = len(times.connected)

        # A stalled NAT: this connection goes silent; new connections still pass.
        proxy.freeze(new_connections=False)
        stalled = time.monotonic()
        if busy:
            rs.press()  # the alarm goes into the silent link: no PUBACK comes back
        wait_until(lambda: times.disconnected, timeout=30, message="the dead link left")
        detected = times.disconnected[0] - stalled
        wait_until(
            lambda: len(times.connected) > connected_before, timeout=30, message="online again"
        )
        online = times.connected[connected_before] - stalled
        print(f"\ndead link ({site}): stall -> left {detected:.2f} s, online {online:.2f} s")

        assert detected <= 1.5 * KEEPALIVE_S, f"left {detected:.2f} s after the stall"
        if not busy:
            return
        # The alarm raised while the link was silent escalated as for a lost link...
        modem = rs.modem
        assert modem is not None
        sms = wait_until(lambda: modem.snapshot()["sms"], message="SMS for the alarm")
        assert sms[0]["number"] == SMS_TO
        # ...and reached the centre once the site was back.
        raised = sub.wait_for(f"{ROOT}/{site}/events/alarm/raised", timeout=20).json
        escalated = sub.wait_for(f"{ROOT}/{site}/events/alarm/escalated", timeout=20).json
        assert escalated["data"]["alarm_id"] == raised["data"]["alarm_id"]
        wait_until(lambda: rs.output("sent_led"), message="sent lamp once delivered")
