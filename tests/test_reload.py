"""SIGHUP re-reads the config of a running `ansim-edge run` (real code path, MockFactory pins:
bench/mock_gpio_run.py; the modem simulated here on a pty): a valid config is applied (a new
escalation number gets the next SMS), an invalid one is refused with `config.rejected` and the
old config goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.modem_device import SimulatedModem
from tests.support.mqtt import Mosquitto
from tests.support.site import REPO, make_keys, site_dict
from tests.support.wait import wait_until

A, B = "+821000000001", "+821000000002"


@pytest.fixture
def modem() -> Iterator[SimulatedModem]:
    sim = SimulatedModem()
    try:
        yield sim
    finally:
        sim.close()


def sms_to(modem: SimulatedModem) -> list[str]:
    return [s["number"] for s in modem.snapshot()["sms"]]


@pytest.mark.mqtt
def test_sighup_applies_a_valid_config_and_refuses_an_invalid_one(
    mosquitto: Mosquitto, subscriber_factory: Any, modem: SimulatedModem, tmp_path: Path
) -> None:
    keys = make_keys(tmp_path / "keys")
    cfg = site_dict("reload-1", mosquitto.url, tmp_path / "data", keys)
    # Mock pins read high: the nc button's loop reads open at start, so an alarm is active
    # and escalates at once (no broker yet, or 0 s without an ack).
    cfg["devices"]["modem"] = {"url": modem.port, "check_interval_s": 1}
    cfg["escalation"] = {"escalate_after_s": 0, "sms_numbers": [A]}
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    events = subscriber_factory("ansim/v1/reload-1/#")
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.mock_gpio_run", "run", "--config", str(path)],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def alive() -> None:
            assert proc.poll() is None, log_path.read_text()

        def sent(number: str) -> bool:
            alive()
            return any(
                m.json["data"]["outcome"] == "sent" and m.json["data"]["number"] == number
                for m in events.messages("ansim/v1/reload-1/events/alarm/escalated")
            )

        # The site knows the SMS went out (else the restarted site rightly sends it again).
        wait_until(lambda: sent(A), timeout=30, message="SMS to A sent")
        assert sms_to(modem) == [A]

        def started() -> int:
            return len(events.messages("ansim/v1/reload-1/events/site/started"))

        assert started() == 1

        # A valid config: a second number. The restored alarm's escalation texts it, and
        # does not text A again.
        cfg["escalation"]["sms_numbers"] = [A, B]
        path.write_text(json.dumps(cfg), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: sent(B), timeout=30, message="SMS to B sent")
        assert sms_to(modem) == [A, B]
        wait_until(lambda: started() == 2, message="the site restarted with the new config")
        assert "config_reloaded" in log_path.read_text()

        # An invalid config: refused, reported, the site goes on (no restart, still online).
        events.clear()
        cfg["escalation"]["call_attempts"] = 0
        path.write_text(json.dumps(cfg), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        msg = events.wait_for("ansim/v1/reload-1/events/config/rejected", timeout=20)
        data = msg.json["data"]
        assert data["config"] == str(path)
        assert "escalation.call_attempts" in data["error"]
        alive()
        assert started() == 0
        assert not [
            m for m in events.messages("ansim/v1/reload-1/status") if m.json["state"] == "offline"
        ]
        # The old config still runs: the site answers as before (its status is online).
        late = subscriber_factory("ansim/v1/reload-1/status")
        status = late.wait_for("ansim/v1/reload-1/status")
        assert status.json["state"] == "online"
        assert sms_to(modem) == [A, B]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()


@pytest.mark.mqtt
def test_devices_missing_at_start_are_reported_faults_not_a_boot_loop(
    mosquitto: Mosquitto, subscriber_factory: Any, tmp_path: Path
) -> None:
    """A CU16 bus adapter and a modem that are not plugged in: `run` starts, reports each
    board and the modem as faulted, stays online, and stops cleanly."""
    keys = make_keys(tmp_path / "keys")
    cfg = site_dict("missing-1", mosquitto.url, tmp_path / "data", keys)
    cfg["devices"]["panic_buttons"][0]["pull_up"] = False  # mock pins: loop reads closed
    cfg["devices"]["modem"] = {"url": str(tmp_path / "ttyUSB2"), "check_interval_s": 1}
    cfg["devices"]["lockers"] = {
        "buses": [
            {
                "name": "rs485-0",
                "url": str(tmp_path / "ttyUSB0"),
                "boards": [{"id": 0, "first_locker": 1}, {"id": 1, "first_locker": 17}],
            }
        ]
    }
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    events = subscriber_factory("ansim/v1/missing-1/#")
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.mock_gpio_run", "run", "--config", str(path)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def faults() -> set[str]:
            assert proc.poll() is None, log_path.read_text()
            return {
                m.json["device"]
                for m in events.messages(
                    lambda m: m.topic.endswith(("/board/fault", "/modem/fault"))
                )
            }

        wait_until(
            lambda: faults() == {"board-rs485-0-0", "board-rs485-0-1", "modem"},
            timeout=30,
            message="board and modem faults",
        )
        status = events.wait_for("ansim/v1/missing-1/status")
        assert status.json["state"] == "online"
        assert len(events.messages("ansim/v1/missing-1/events/site/started")) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()
