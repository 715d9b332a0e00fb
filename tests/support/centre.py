"""The centre's side of an end-to-end test on a real broker: a signed command sent and its
result awaited, an event awaited (a :class:`~tests.support.mqtt.Subscriber` on the site's
topics does both), a locker bank with the centre listening."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.mqtt import Mosquitto, Subscriber
from tests.support.site import Keys, ThreadedSite, command, locker_bank

ROOT = "ansim/v1"


def send(
    sub: Subscriber, site: str, name: str, args: dict[str, Any], keys: Keys, root: str = ROOT
) -> dict[str, Any]:
    """Sign ``name(args)`` with the centre's key, publish it once the site is online, return
    its result."""
    # The site's "online" status follows its SUBSCRIBE on the same connection: once we see
    # it, the broker routes commands to the site.
    sub.wait_for(lambda m: m.topic == f"{root}/{site}/status" and m.json["state"] == "online")
    cmd = command(name, args, keys.centre, site=site)
    sub.publish(f"{root}/{site}/commands/{name.replace('.', '/')}", cmd)
    return sub.wait_for(
        lambda m: m.topic.endswith("/results") and m.json["command_id"] == cmd["command_id"]
    ).json


def ev(sub: Subscriber, type_: str, **match: Any) -> dict[str, Any]:
    """The first event of ``type_`` whose data has the ``match`` fields."""
    return sub.wait_for(
        lambda m: (
            m.topic.endswith(f"/events/{type_.replace('.', '/')}")
            and all(m.json["data"].get(k) == v for k, v in match.items())
        )
    ).json


@contextmanager
def bank_and_centre(
    broker: Mosquitto, cfg: dict[str, Any], root: str = ROOT
) -> Iterator[tuple[ThreadedSite, Subscriber]]:
    """The centre subscribed to everything of ``cfg``'s site, then the site's locker bank
    (:func:`~tests.support.site.locker_bank`) ready."""
    sub = Subscriber.for_broker(broker, [f"{root}/{cfg['site']['id']}/#"])
    try:
        with locker_bank(cfg) as b:
            yield b, sub
    finally:
        sub.close()
