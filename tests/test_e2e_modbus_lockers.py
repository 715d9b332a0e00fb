"""End to end on a real mosquitto: a locker bank on Modbus RTU relay boards (simulated on a
pty, driven by the real ModbusBus), opened with signed locker.open commands. The locker
rules and the coil scheduler are the ones every bank uses; only the boards differ."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from edge.site import Site
from simulator.hardware import SimHardware
from simulator.modbus_device import SimulatedModbusBus
from tests.support.mqtt import Mosquitto, Subscriber
from tests.support.site import Keys, command, make_keys
from tests.support.wait import wait_until

ROOT = "ansim/v1"
PULSE_MS = 200  # a multiple of 100: board-timed pulses count 100 ms


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def modbus_dict(site: str, url: str, data: Path, keys: Keys) -> dict[str, Any]:
    return {
        "site": {"id": site},
        "broker": {"url": url, "keepalive_s": 5, "reconnect": {"min_s": 0.05, "max_s": 0.5}},
        "data_dir": str(data),
        "keys": keys.trusted(),
        "devices": {
            "lockers": {
                "pulse_ms": PULSE_MS,
                "cooldown_ms": 200,
                "open_timeout_s": 0.5,
                "left_open_s": 30,
                "modbus_buses": [
                    {
                        "name": "mb0",
                        "url": "/dev/null",  # the simulator puts the boards on a pty
                        "poll_hz": 20,
                        "boards": [
                            {"slave_id": 1, "first_locker": 1, "locks": 8},
                            {"slave_id": 2, "first_locker": 9, "locks": 4, "pulse": "driver"},
                        ],
                    }
                ],
            }
        },
    }


class Bank:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.hw = SimHardware()
        self.site = Site(parse_config(cfg), self.hw)
        self.site.start_thread()
        wait_until(lambda: "mb0" in self.hw.buses)
        bus = self.hw.buses["mb0"]
        assert isinstance(bus, SimulatedModbusBus)
        self.bus = bus
        wait_until(self.all_known, message="first reading of every door")

    def all_known(self) -> bool:
        bank = self.site.devices.get("lockers")
        assert bank is not None
        states = self.site.call(lambda: dict(bank.machine.lockers))
        return all(lk.door_open is not None for lk in states.values())

    def state(self, locker: int) -> dict[str, Any]:
        bank = self.site.devices.get("lockers")
        assert bank is not None
        return dict(self.site.call(lambda: bank.machine.public_state(locker)))

    def close(self) -> None:
        self.site.stop_soon()
        self.site.join(10)
        self.hw.close()


@contextmanager
def bank(cfg: dict[str, Any]) -> Iterator[Bank]:
    b = Bank(cfg)
    try:
        yield b
    finally:
        b.close()


def send(sub: Subscriber, site: str, name: str, args: dict[str, Any], keys: Keys) -> dict[str, Any]:
    sub.wait_for(lambda m: m.topic == f"{ROOT}/{site}/status" and m.json["state"] == "online")
    cmd = command(name, args, keys.centre, site=site)
    sub.publish(f"{ROOT}/{site}/commands/{name.replace('.', '/')}", cmd)
    return sub.wait_for(
        lambda m: m.topic.endswith("/results") and m.json["command_id"] == cmd["command_id"]
    ).json


def ev(sub: Subscriber, type_: str, **match: Any) -> dict[str, Any]:
    return sub.wait_for(
        lambda m: (
            m.topic.endswith(f"/events/{type_.replace('.', '/')}")
            and all(m.json["data"].get(k) == v for k, v in match.items())
        )
    ).json


def test_locker_open_pulses_the_right_relay_and_reports_the_door(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    site = "mb-open"
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with bank(modbus_dict(site, mosquitto.url, tmp_path / "d", keys)) as b:
        # Board-timed: one flash of pulse_ms on slave 1 relay 3.
        res = send(sub, site, "locker.open", {"locker": 3, "reason": "service"}, keys)
        assert res["ok"] is True, res
        opened = ev(sub, "door.opened", locker=3)
        assert opened["data"]["reason"] == "service" and opened["data"]["via"] == "centre"
        (flash,) = b.bus.pulses()
        assert (flash["board"], flash["lock"], flash["via"]) == (1, 3, "flash")
        assert flash["end"] - flash["start"] == pytest.approx(PULSE_MS / 1000)
        b.bus.close_door(1, 3)
        ev(sub, "door.closed", locker=3)
        wait_until(lambda: b.state(3)["state"] == "free")
        # Driver-timed: relay on, off after pulse_ms, on slave 2 relay 2 (locker 10).
        assert send(sub, site, "locker.open", {"locker": 10, "reason": "service"}, keys)["ok"]
        ev(sub, "door.opened", locker=10)
        wait_until(lambda: len(b.bus.pulses()) == 2 and b.bus.pulses()[1]["end"] is not None)
        coil = b.bus.pulses()[1]
        assert (coil["board"], coil["lock"], coil["via"]) == (2, 2, "coil")
        assert coil["end"] - coil["start"] == pytest.approx(PULSE_MS / 1000, abs=0.03)
        assert not b.bus.relay_on(2, 2)
        # The simulated boards' pulses are in GET /coils too.
        names = [c["name"] for c in b.hw.coil_intervals()]
        assert names == ["mb0/1/3", "mb0/2/2"]
    sub.close()


def test_open_all_never_energises_two_coils(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    site = "mb-all"
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with bank(modbus_dict(site, mosquitto.url, tmp_path / "d", keys)) as b:
        for n in range(1, 13):
            res = send(sub, site, "locker.open", {"locker": n, "reason": "service"}, keys)
            assert res["ok"] is True, res
        sub.wait_count(f"{ROOT}/{site}/events/door/opened", 12, timeout=30)
        wait_until(lambda: all(p["end"] is not None for p in b.bus.pulses()))
        pulses = b.hw.coil_intervals()
        assert len(pulses) == 12
        for a, nxt in itertools.pairwise(pulses):
            assert nxt["start"] >= a["end"], (a, nxt)
        assert b.bus.snapshot()["overlapping_pulses"] == 0
    sub.close()


def test_a_silent_board_faults_once_and_recovers_once(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path
) -> None:
    site = "mb-fault"
    sub = Subscriber.for_broker(mosquitto, [f"{ROOT}/{site}/#"])
    with bank(modbus_dict(site, mosquitto.url, tmp_path / "d", keys)) as b:
        b.bus.set_silent(2)
        fault = ev(sub, "board.fault", board=2)
        assert fault["data"] == {
            "bus": "mb0",
            "board": 2,
            "reason": "no reply to 3 consecutive requests",
        }
        wait_until(lambda: b.state(11)["door"] == "unknown")
        refused = send(sub, site, "locker.open", {"locker": 11, "reason": "service"}, keys)
        assert refused["error"]["code"] == "fault"
        assert send(sub, site, "locker.open", {"locker": 1, "reason": "service"}, keys)["ok"]
        ev(sub, "door.opened", locker=1)
        b.bus.open_door(2, 4)  # locker 12 is forced while nobody can see it
        b.bus.set_silent(2, False)
        ev(sub, "board.recovered", board=2)
        ev(sub, "door.forced", locker=12)  # reported once the board answers again
        wait_until(lambda: b.state(11)["door"] == "closed")
        assert len(sub.messages(f"{ROOT}/{site}/events/board/fault")) == 1
        assert len(sub.messages(f"{ROOT}/{site}/events/board/recovered")) == 1
    sub.close()
