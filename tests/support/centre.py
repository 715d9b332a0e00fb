"""The centre's side of an end-to-end test on a real broker: a signed command sent and its
result awaited, an event awaited (a :class:`~tests.support.mqtt.Subscriber` on the site's
topics does both)."""

from __future__ import annotations

from typing import Any

from tests.support.mqtt import Subscriber
from tests.support.site import Keys, command

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
