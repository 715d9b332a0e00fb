"""broker.urls: several broker addresses, tried in turn (issue 9, point 3)."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from edge.config import BrokerConfig, parse_config, with_overrides
from edge.core.errors import ConfigError
from edge.core.uplink import Uplink
from tests.support.mqtt import Mosquitto, Subscriber, free_port
from tests.support.site import ThreadedSite, command, make_keys, site_dict
from tests.support.wait import wait_until

ROOT = "ansim/v1"


def _config(broker: dict[str, Any]) -> Any:
    return parse_config({"site": {"id": "s1"}, "broker": broker})


# --------------------------------------------------------------------------- config


def test_urls_and_the_url_shorthand() -> None:
    cfg = _config({"urls": ["mqtt://a.example", "mqtt://b.example:1884"]})
    assert cfg.broker.addresses == ["mqtt://a.example", "mqtt://b.example:1884"]
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.uses_tls) == ("a.example", 1883, False)
    assert _config({"url": "mqtts://c.example"}).broker.addresses == ["mqtts://c.example"]
    assert _config({}).broker.addresses == ["mqtt://127.0.0.1:1883"]
    assert _config({"urls": None}).broker.addresses == ["mqtt://127.0.0.1:1883"]
    tls = _config({"urls": ["mqtts://a.example", "mqtts://b.example"]}).broker
    assert tls.uses_tls and tls.port == 8883


@pytest.mark.parametrize(
    ("broker", "where", "message"),
    [
        ({"url": "mqtt://a", "urls": ["mqtt://b"]}, "broker", "url (one address) or urls"),
        ({"urls": []}, "broker.urls", "at least 1 item"),
        ({"urls": ["mqtt://a", "mqtt://b", "ftp://c"]}, "broker.urls.2", "mqtt:// or mqtts://"),
        ({"urls": ["mqtt://a", "mqtt://a:1883"]}, "broker.urls", "are the same address"),
        ({"urls": ["mqtt://a", "mqtts://b"]}, "broker.urls", "mixes mqtt:// and mqtts://"),
        ({"urls": "mqtt://a"}, "broker.urls", "valid list"),
        ({"urls": [f"mqtt://h{i}" for i in range(17)]}, "broker.urls", "at most 16"),
    ],
)
def test_bad_urls_are_refused_with_their_path(
    broker: dict[str, Any], where: str, message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        _config(broker)
    assert f"  {where}: " in str(exc.value) and message in str(exc.value)


def test_command_line_broker_replaces_the_list_and_other_overrides_keep_it(
    tmp_path: Path,
) -> None:
    cfg = _config({"urls": ["mqtt://a", "mqtt://b"]})
    kept = with_overrides(cfg, data_dir=tmp_path)
    assert kept.broker.addresses == ["mqtt://a", "mqtt://b"]
    replaced = with_overrides(cfg, broker_url="mqtt://c:1")
    assert replaced.broker.addresses == ["mqtt://c:1"] and replaced.broker.urls is None
    assert with_overrides(_config({"url": "mqtt://a"}), data_dir=tmp_path).broker.url == "mqtt://a"


# --------------------------------------------------------------------------- uplink


class _Recorder:
    def __init__(self) -> None:
        self.failed: list[str | None] = []

    def uplink_connected(self) -> None: ...

    def uplink_disconnected(self, reason: str, dead_link: bool = False) -> None: ...

    def uplink_failed(self, reason: str, broker: str | None = None) -> None:
        self.failed.append(broker)

    def uplink_acked(self, mid: int, ok: bool, reason: str | None = None) -> None: ...

    def uplink_message(self, topic: str, payload: bytes) -> None: ...


class _CapRng(random.Random):
    """Records the full-jitter window of every wait and waits 0 s."""

    def __init__(self) -> None:
        super().__init__(0)
        self.caps: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        self.caps.append(b)
        return 0.0


def test_each_retry_goes_to_the_next_address_with_the_same_backoff() -> None:
    # Three addresses where nothing listens: every attempt is refused at once.
    urls = [f"mqtt://127.0.0.1:{free_port()}" for _ in range(3)]
    cfg = BrokerConfig(urls=urls, reconnect={"min_s": 0.5, "max_s": 4.0})  # type: ignore[arg-type]
    jobs: list[Any] = []
    lock = threading.Lock()

    def post(job: Any) -> None:
        with lock:
            jobs.append(job)

    listener, rng = _Recorder(), _CapRng()
    up = Uplink(
        cfg,
        client_id="t",
        post=post,
        listener=listener,
        subscriptions=[],
        will=lambda: ("s", b"offline"),
        rng=rng,
    )
    assert up.address == urls[0]
    up.start()
    try:
        wait_until(lambda: len(jobs) >= 7, message="7 refused attempts")
    finally:
        up.stop()
    with lock:
        for job in jobs[:7]:
            job()
    assert listener.failed == [urls[0], urls[1], urls[2], urls[0], urls[1], urls[2], urls[0]]
    # One backoff across the addresses: the window keeps doubling up to max_s.
    assert rng.caps[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


# --------------------------------------------------------------------------- end to end


def test_site_moves_to_the_next_broker_and_names_it_in_its_status(
    mosquitto_factory: Any, tmp_path: Path
) -> None:
    first: Mosquitto = mosquitto_factory()
    second: Mosquitto = mosquitto_factory()
    keys = make_keys(tmp_path / "keys")
    site = "urls-e2e"
    on_first = Subscriber.for_broker(first, [f"{ROOT}/{site}/#"])
    on_second = Subscriber.for_broker(second, [f"{ROOT}/{site}/#"])
    cfg = site_dict(site, first.url, tmp_path / "data", keys)
    del cfg["broker"]["url"]
    cfg["broker"]["urls"] = [first.url, second.url]

    def online(m: Any) -> bool:
        return bool(m.topic.endswith("/status") and m.json["state"] == "online")

    with ThreadedSite(cfg) as rs:
        assert on_first.wait_for(online).json["broker"] == first.url
        rs.press()
        raised = on_first.wait_for(f"{ROOT}/{site}/events/alarm/raised").json
        wait_until(lambda: rs.output("sent_led"), message="alarm acked by the first broker")

        first.kill()
        status = on_second.wait_for(online, timeout=20)
        assert status.retain is False  # live, not a leftover
        assert status.json["broker"] == second.url
        assert rs.site.uplink.address == second.url
        assert rs.site.status_document()["link"]["broker"] == second.url  # type: ignore[index]

        # Commands come in and events go out through the second broker.
        alarm_id = raised["data"]["alarm_id"]
        cmd = command(
            "alarm.ack", {"alarm_id": alarm_id, "by": "officer-7"}, keys.centre, site=site
        )
        on_second.publish(f"{ROOT}/{site}/commands/alarm/ack", cmd)
        result = on_second.wait_for(lambda m: m.topic.endswith("/results")).json
        assert result["command_id"] == cmd["command_id"] and result["ok"] is True
        acked = on_second.wait_for(f"{ROOT}/{site}/events/alarm/acknowledged").json
        assert acked["data"]["alarm_id"] == alarm_id

    seqs = {
        m.json["seq"]
        for sub in (on_first, on_second)
        for m in sub.messages(f"{ROOT}/{site}/events/#")
    }
    assert seqs == set(range(1, max(seqs) + 1))  # nothing lost in the move
    assert acked["seq"] == raised["seq"] + 1


def test_site_moves_to_the_next_node_of_a_nats_cluster(nats_cluster: Any, tmp_path: Path) -> None:
    """The use the setting is for: every node of a clustered broker in broker.urls. Node 1
    dies; the site goes on through another node with the same session (kept in JetStream).
    Which one depends on timing: a node may refuse the first CONNECT while the session is
    taken over from the dead node, and the site then moves on to the next."""
    keys = make_keys(tmp_path / "keys")
    site = "urls-nats"
    n1, n2, n3 = nats_cluster.nodes
    centre = Subscriber.for_broker(n2, [f"{ROOT}/{site}/#"], timeout=20)
    cfg = site_dict(site, n1.url, tmp_path / "data", keys)
    del cfg["broker"]["url"]
    cfg["broker"]["urls"] = [n1.url, n2.url, n3.url]

    def online(m: Any) -> bool:
        return bool(m.topic.endswith("/status") and m.json["state"] == "online")

    with ThreadedSite(cfg) as rs:
        assert centre.wait_for(online, timeout=20).json["broker"] == n1.url
        rs.press()
        raised = centre.wait_for(f"{ROOT}/{site}/events/alarm/raised", timeout=20).json

        n1.kill()
        moved = centre.wait_for(lambda m: online(m) and m.json["broker"] != n1.url, timeout=40)
        assert moved.json["broker"] in {n2.url, n3.url}
        cmd = command(
            "alarm.ack", {"alarm_id": raised["data"]["alarm_id"], "by": "c"}, keys.centre, site=site
        )
        centre.publish(f"{ROOT}/{site}/commands/alarm/ack", cmd, timeout=20)
        result = centre.wait_for(lambda m: m.topic.endswith("/results"), timeout=20).json
        assert result["command_id"] == cmd["command_id"] and result["ok"] is True
        centre.wait_for(f"{ROOT}/{site}/events/alarm/acknowledged", timeout=20)

    seqs = {m.json["seq"] for m in centre.messages(f"{ROOT}/{site}/events/#")}
    assert seqs == set(range(1, max(seqs) + 1))
