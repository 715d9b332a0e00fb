"""The console's API on a real `sim` (SimRunner) against a real mosquitto: the page and its
files, the event stream (GET /events), the control centre (POST /centre/commands: the dev
key, a key file, a key without the right refused by the site), the link cut (POST /link)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.core.signing import load_public_key, verify_command
from simulator.console import STATIC
from tests.support.console import Sim, SseReader, locker_cfg, running_sim, shelter_cfg
from tests.support.mqtt import Mosquitto, SubscriberFactory
from tests.support.site import Keys, make_keys
from tests.support.wait import wait_until


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def alarm(sim: Sim) -> dict[str, Any]:
    return dict(sim.state()["site"]["states"]["alarm"])


def press(sim: Sim) -> str:
    """Press the panic button until the site raised the alarm; returns its alarm_id."""
    sim.post("/inputs/panic-counter", {"active": True})
    a = wait_until(lambda: (a := alarm(sim))["state"] == "active" and a, timeout=10)
    sim.post("/inputs/panic-counter", {"active": False})
    return str(a["alarm_id"])


def test_the_page_and_its_files_are_served_with_their_types(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        page = sim.get("/")
        assert page.status == 200 and page.content_type == "text/html; charset=utf-8"
        assert b'<script type="module" src="/console/app.js">' in page.raw
        types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
        files = sorted(p.name for p in STATIC.iterdir())
        assert "app.js" in files and "console.css" in files
        for name in files:
            got = sim.get(f"/console/{name}")
            assert got.status == 200, name
            assert got.content_type.startswith(types[Path(name).suffix]), name
            assert got.raw == (STATIC / name).read_bytes()
        for bad in ("/console/nope.js", "/console/..%2Frunner.py", "/console/../control.py"):
            assert sim.get(bad).status == 404, bad
        assert sim.post("/events", {}).status == 405
        site = sim.get("/site").body
        assert site["site"] == "shelter-console-01"
        assert site["dev_key"] == {
            "key_id": "dev",
            "path": str(tmp_path / "d" / "dev-keys" / "dev.key"),
        }
        assert [b["name"] for b in site["panic_buttons"]] == ["panic-counter"]
        assert site["commands"] == [
            "alarm.ack",
            "alarm.clear",
            "outbox.dead_letters",
            "outbox.resend",
            "site.test_mode",
        ]
        assert site["broker"] == mosquitto.url and site["link"] is True


def test_the_stream_shows_the_press_the_lamp_the_mqtt_events_and_masks_codes(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        wait_until(lambda: sim.state()["site"]["online"], timeout=10)
        reader = SseReader(sim.host, sim.port)
        try:
            wait_until(lambda: reader.of("state"), timeout=10, message="greeting")
            hello = reader.of("hello")[0]
            assert hello["site"] == "shelter-console-01" and hello["stream"]["instance"]
            first = reader.of("state")[0]
            assert first["site"]["online"] is True and first["link"]["cut"] is False
            alarm_id = press(sim)

            def lamp_on() -> bool:
                states = reader.of("state")
                return any(s.get("outputs", {}).get("sent_led", {}).get("on") for s in states)

            wait_until(lamp_on, timeout=5, message="sent_led on in a state event")
            raised = wait_until(
                lambda: [m for m in reader.of("mqtt") if m["name"] == "alarm.raised"],
                timeout=5,
                message="alarm.raised seen by the centre",
            )[0]
            assert raised["kind"] == "event" and raised["device"] == "panic-counter"
            assert raised["topic"] == "ansim/v1/shelter-console-01/events/alarm/raised"
            assert raised["payload"]["data"]["alarm_id"] == alarm_id
            actions = wait_until(lambda: reader.of("action"), timeout=5)
            assert actions[0]["path"] == "/inputs/panic-counter"
            assert actions[0]["body"] == {"active": True} and actions[0]["status"] == 200
            # A code typed on a reader never shows in the stream (here: no reader, 404).
            sim.post("/code-reader", {"code": "482913"})
            wait_until(
                lambda: any(a["path"] == "/code-reader" for a in reader.of("action")), timeout=5
            )
            [typed] = [a for a in reader.of("action") if a["path"] == "/code-reader"]
            assert typed["body"] == {"code": "******"} and typed["status"] == 404
            assert "482913" not in reader.text()
        finally:
            reader.close()
        wait_until(lambda: sim.runner.console.hub.clients == 0, timeout=5)


def test_the_centre_signs_with_the_dev_key_and_shows_the_result(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        alarm_id = press(sim)
        sent = sim.post(
            "/centre/commands",
            {"name": "alarm.ack", "args": {"alarm_id": alarm_id, "by": "관제센터"}, "key": "dev"},
        )
        assert sent.status == 200, sent.body
        result, command = sent.body["result"], sent.body["command"]
        assert result["ok"] is True and result["command_id"] == command["command_id"]
        assert result["data"] == {"alarm_id": alarm_id, "state": "acknowledged"}
        assert command["key_id"] == "dev" and command["site"] == "shelter-console-01"
        assert sent.body["topic"] == "ansim/v1/shelter-console-01/commands/alarm/ack"
        pub = load_public_key(tmp_path / "d" / "dev-keys" / "dev.pub")
        assert verify_command(command, pub)
        assert alarm(sim)["state"] == "acknowledged"
        # The handler's refusal comes back the same way.
        again = sim.post("/centre/commands", {"name": "alarm.clear", "args": {}, "key": "dev"})
        assert again.body["result"]["ok"] is True
        idle = sim.post("/centre/commands", {"name": "alarm.clear", "args": {}, "key": "dev"})
        assert idle.body["result"]["error"]["code"] == "wrong_state"


def test_a_key_without_the_right_is_refused_by_the_site(
    mosquitto: Mosquitto, tmp_path: Path, keys: Keys
) -> None:
    cfg = shelter_cfg(mosquitto.url, tmp_path / "d", keys.trusted())
    with running_sim(cfg) as sim:
        assert sim.get("/site").body["dev_key"] is None
        no_dev = sim.post("/centre/commands", {"name": "alarm.clear", "args": {}, "key": "dev"})
        assert no_dev.status == 409 and "no development key" in no_dev.body["error"]
        alarm_id = press(sim)

        def send(key: str, key_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
            pem = (keys.dir / f"{key}.key").read_text()
            sent = sim.post(
                "/centre/commands", {"name": name, "args": args, "key_pem": pem, "key_id": key_id}
            )
            assert sent.status == 200, sent.body
            assert "key_pem" not in json.dumps(sent.body)
            return dict(sent.body["result"])

        refused = send("tech", "tech", "alarm.clear", {"alarm_id": alarm_id})
        assert refused["error"]["code"] == "not_allowed"
        assert alarm(sim)["state"] == "active"
        assert send("stranger", "stranger", "alarm.clear", {})["error"]["code"] == "unknown_key"
        assert send("stranger", "tech", "alarm.clear", {})["error"]["code"] == "bad_signature"
        walk = send("tech", "tech", "site.test_mode", {"on": False})
        assert walk["ok"] is True
        assert send("centre", "centre", "alarm.clear", {"alarm_id": alarm_id})["ok"] is True


def test_bad_centre_requests_are_refused_with_a_clear_error(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        cases: list[tuple[Any, int, str]] = [
            ([], 400, "body must be"),
            ({"name": "Alarm Ack", "key": "dev"}, 400, "name must be a command name"),
            ({"name": "alarm.ack", "args": [], "key": "dev"}, 400, "args must be an object"),
            ({"name": "alarm.ack", "args": {}}, 400, 'give "key": "dev"'),
            ({"name": "alarm.ack", "key_pem": "nope", "key_id": "x"}, 400, "key_pem: not an"),
            ({"name": "alarm.ack", "key_pem": "x", "key_id": "a b"}, 400, "key_id must be"),
            ({"name": "alarm.ack", "key": "dev", "wait_s": 99}, 400, "wait_s must be"),
            ({"name": "alarm.ack", "key": "dev", "ttl_s": True}, 400, "ttl_s must be"),
        ]
        for body, status, text in cases:
            got = sim.post("/centre/commands", body)
            assert (got.status, text in got.body["error"]) == (status, True), (body, got.body)
        # A command the site does not know still gets its result: unknown_command.
        sent = sim.post("/centre/commands", {"name": "locker.open", "args": {}, "key": "dev"})
        assert sent.body["result"]["error"]["code"] == "unknown_command"


def test_pickup_codes_are_masked_in_what_the_centre_passes_on(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(locker_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        reader = SseReader(sim.host, sim.port)
        try:
            wait_until(lambda: reader.of("state"), timeout=10)
            args = {"locker": 5, "parcel_id": "CJ-1", "pickup_code": "482913"}
            sent = sim.post(
                "/centre/commands", {"name": "locker.assign", "args": args, "key": "dev"}
            )
            assert sent.body["result"]["ok"] is True, sent.body
            assert sent.body["command"]["args"]["pickup_code"] == "******"
            result = wait_until(
                lambda: [m for m in reader.of("mqtt") if m["kind"] == "result"], timeout=5
            )[0]
            assert result["command"] == {"name": "locker.assign", "locker": 5}
            assert result["device"] == "locker-5"
            command = next(m for m in reader.of("mqtt") if m["kind"] == "command")
            assert command["payload"]["args"]["pickup_code"] == "******"
            assert "482913" not in reader.text()
        finally:
            reader.close()


def test_cutting_the_link_takes_the_site_offline_then_the_outbox_drains(
    mosquitto: Mosquitto, tmp_path: Path, subscriber_factory: SubscriberFactory
) -> None:
    sub = subscriber_factory("ansim/v1/shelter-console-01/events/#")
    sub.wait_subscribed()
    with running_sim(shelter_cfg(mosquitto.url, tmp_path / "d", [])) as sim:
        wait_until(lambda: sim.state()["site"]["online"], timeout=10)
        for bad in ({}, {"seconds": -1}, {"seconds": "5"}, {"seconds": True}, {"seconds": 1e9}):
            assert sim.post("/link", bad).status == 400, bad
        cut = sim.post("/link", {"seconds": 2})
        assert cut.status == 200 and cut.body["cut"] is True and cut.body["available"] is True
        wait_until(lambda: not sim.state()["site"]["online"], timeout=5, message="offline")
        alarm_id = press(sim)  # raised while the link is down: stored, not sent
        pending = sim.state()["site"]["outbox_pending"]
        assert pending >= 1
        assert not sub.messages("ansim/v1/shelter-console-01/events/alarm/raised")
        wait_until(lambda: not sim.get("/link").body["cut"], timeout=10, message="cut ended")
        wait_until(
            lambda: (s := sim.state()["site"])["online"] and s["outbox_pending"] == 0,
            timeout=15,
            message="online and the outbox drained",
        )
        raised = sub.wait_for("ansim/v1/shelter-console-01/events/alarm/raised", timeout=5)
        assert json.loads(raised.payload)["data"]["alarm_id"] == alarm_id
        link = sim.get("/link").body
        assert link["cuts"] == 1 and link["refused"] >= 1 and link["connections"] == 1
        # A cut can be ended early.
        sim.post("/link", {"seconds": 600})
        wait_until(lambda: not sim.state()["site"]["online"], timeout=5)
        assert sim.post("/link", {"seconds": 0}).body["cut"] is False
        wait_until(lambda: sim.state()["site"]["online"], timeout=15)


def test_a_tls_broker_has_no_link_to_cut(tmp_path: Path) -> None:
    from edge.config import BrokerConfig
    from simulator.runner import link_for

    assert link_for(BrokerConfig(url="mqtts://broker.example:8883")) is None
    relay = link_for(BrokerConfig(url="mqtt://127.0.0.1:1883"))
    assert relay is not None
    try:
        assert relay.target == ("127.0.0.1", 1883)
    finally:
        relay.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_under_mqtt5_the_consoles_centre_is_not_sent_an_oversized_command_either(
    mosquitto: Mosquitto, subscriber_factory: SubscriberFactory, tmp_path: Path, protocol: str
) -> None:
    """The console's centre (in the sim's process) asks the broker for the site's Maximum
    Packet Size too: under MQTT 5 an oversized command reaches neither of them (3.1.1 has no
    such limit: there the console sees it, as before)."""
    cfg = shelter_cfg(mosquitto.url, tmp_path / "d", [])
    cfg["broker"]["protocol"] = protocol
    cfg["commands"] = {"max_payload_bytes": 4096}
    with running_sim(cfg) as sim:
        pub = subscriber_factory(["ansim/v1/none/#"], protocol=protocol)
        base = "ansim/v1/shelter-console-01/commands"
        pub.publish(f"{base}/alarm/clear", b"x" * 65536)
        pub.publish(f"{base}/alarm/clear", b"{}")  # after the big one, on the same topic

        reader = SseReader(sim.host, sim.port)
        try:

            def commands() -> list[Any]:
                return [m["payload"] for m in reader.of("mqtt") if m["kind"] == "command"]

            wait_until(lambda: {} in commands(), timeout=10, message="the small command")
            big_seen = any(isinstance(p, str) and len(p) == 65536 for p in commands())
            assert big_seen is (protocol == "3.1.1"), [str(p)[:20] for p in commands()]
        finally:
            reader.close()
