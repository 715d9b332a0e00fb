"""Topics every broker accepts: no topic level the site uses has a '.', a space, '+', '#'
or is empty (NATS closes the connection on a '.' or a space; issue 9). Event types and
command names keep their dots in payloads; in topics each dot is a level."""

from __future__ import annotations

import re

import paho.mqtt.client as mqtt
import pytest

from edge.config import parse_config
from edge.core.errors import ConfigError
from edge.core.topics import LEVEL_RE, Topics
from edge.devices.common import NAME_RE
from edge.devices.registry import COMMAND_ARGS, EVENT_DATA

LEVEL = re.compile(rf"^{LEVEL_RE}$")
T = Topics("ansim/v1", "shelter-gangnam-0001")


def levels_ok(topic: str) -> bool:
    return all(LEVEL.match(level) for level in topic.split("/"))


def test_every_event_and_command_topic_has_only_plain_levels() -> None:
    assert EVENT_DATA and COMMAND_ARGS
    for type_ in EVENT_DATA:
        topic = T.event(type_)
        assert levels_ok(topic), topic
        assert topic == "ansim/v1/shelter-gangnam-0001/events/" + type_.replace(".", "/")
    for name in COMMAND_ARGS:
        topic = T.command(name)
        assert levels_ok(topic), topic
        assert mqtt.topic_matches_sub(T.commands_filter, topic)
    for topic in (T.status, T.results, T.state("locker-7"), T.state("panic-counter")):
        assert levels_ok(topic), topic


def test_documented_examples() -> None:
    assert T.event("alarm.raised") == "ansim/v1/shelter-gangnam-0001/events/alarm/raised"
    assert T.command("alarm.ack") == "ansim/v1/shelter-gangnam-0001/commands/alarm/ack"
    assert T.commands_filter == "ansim/v1/shelter-gangnam-0001/commands/#"
    # a centre's one subscription for every alarm event of every site
    every_alarm = "ansim/v1/+/events/alarm/#"
    for type_ in EVENT_DATA:
        assert mqtt.topic_matches_sub(every_alarm, T.event(type_)) is type_.startswith("alarm.")


def test_command_levels_are_what_follows_commands() -> None:
    assert T.command_levels(T.command("locker.set_service")) == "locker/set_service"
    assert T.command_levels("ansim/v1/shelter-gangnam-0001/commands/alarm.ack") == "alarm.ack"
    # '#' also matches the parent level itself
    assert T.command_levels("ansim/v1/shelter-gangnam-0001/commands") == ""
    assert T.command_levels("ansim/v1/shelter-gangnam-0001/commandsx/alarm/ack") is None
    assert T.command_levels("ansim/v1/other-site/commands/alarm/ack") is None


@pytest.mark.parametrize("name", ["panic.1", "panic 1", "panic+", "panic#", "a/b", ""])
def test_a_device_name_is_never_more_than_one_plain_level(name: str) -> None:
    # device names (state/{device}) come from the config's NAME_RE
    assert re.fullmatch(NAME_RE, name) is None
    assert re.fullmatch(NAME_RE, "panic-counter_2") and LEVEL.match("panic-counter_2")


BAD_LEVELS = ["ansim.v1", "ansim v1", "ansim/+", "ansim/#", "ansim//v1", "/ansim", "ansim/", ""]


@pytest.mark.parametrize("root", BAD_LEVELS)
def test_topic_root_with_a_bad_level_is_refused(root: str) -> None:
    with pytest.raises(ConfigError, match="topic_root"):
        parse_config({"site": {"id": "s-1"}, "topic_root": root})
    with pytest.raises(ValueError, match="topic_root"):
        Topics(root, "s-1")


@pytest.mark.parametrize("site", ["s.1", "s 1", "s+1", "s#1", "s/1", "", "S-1"])
def test_site_id_with_a_bad_level_is_refused(site: str) -> None:
    with pytest.raises(ConfigError, match=r"site\.id"):
        parse_config({"site": {"id": site}})
    if site != "S-1":  # the config asks for lowercase; a topic level may have capitals
        with pytest.raises(ValueError, match="site id"):
            Topics("ansim/v1", site)
