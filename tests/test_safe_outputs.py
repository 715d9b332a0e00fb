"""`ansim-edge safe-outputs` on gpiozero mock pins: after a simulated crash (the daemon's
coils and lamps left driven on, never closed) every configured output ends at its off
level, respecting active_high."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import serial
import structlog
from gpiozero.pins.mock import MockFactory

from drivers.gpio import GpioHardware
from drivers.modbus_protocol import coil_request, encode
from edge import cli
from edge.config import parse_config
from edge.safe_outputs import BoardResult, OutputPin, configured_outputs, drive_off, modbus_off
from simulator.modbus_device import SimulatedModbusBus

REPO = Path(__file__).resolve().parent.parent

CONFIG: dict[str, Any] = {
    "site": {"id": "safe-outputs"},
    "broker": {"url": "mqtt://127.0.0.1:1"},
    "devices": {
        "panic_buttons": [{"name": "panic-1", "pin": 17}],
        "sent_led": {"pin": 22},
        "ack_led": {"pin": 23, "active_high": False},
        "buzzer": {"pin": 24},
        "lockers": {
            "max_on_ms": 5000,
            "gpio": [
                {"locker": 33, "solenoid_pin": 9, "door_pin": 5},
                {"locker": 34, "solenoid_pin": 10, "active_high": False, "door_pin": 6},
                {"locker": 35, "solenoid_pin": 11, "door_pin": 13},
            ],
        },
    },
}

EXPECTED = [
    OutputPin("sent_led", 22, True),
    OutputPin("ack_led", 23, False),
    OutputPin("buzzer", 24, True),
    OutputPin("coil-33", 9, True),
    OutputPin("coil-34", 10, False),
    OutputPin("coil-35", 11, True),
]


def cli_main(argv: list[str]) -> int:
    """edge.cli.main, then structlog's configuration put back (main() points it at this
    test's captured stderr, closed after the test)."""
    saved = structlog.get_config()
    try:
        return cli.main(argv)
    finally:
        structlog.configure(**saved)


def crash_with_everything_on(factory: MockFactory) -> None:
    """The daemon's own drivers energise every output, then the process 'dies': nothing is
    closed, so every pin stays at its on level (as on a Pi after SIGKILL)."""
    hw = GpioHardware(factory)
    d = parse_config(CONFIG).devices
    for name in ("sent_led", "ack_led", "buzzer"):
        ocfg = getattr(d, name)
        hw.output(name, ocfg.pin, active_high=ocfg.active_high).on()
    assert d.lockers is not None
    for g in d.lockers.gpio:
        # Mid-pulse: the pulse's off-timer is a thread of the dead process, so it never
        # fires; what remains is the pin driven at its on level.
        hw.output(f"coil-{g.locker}", g.solenoid_pin, active_high=g.active_high).on()
    for out in EXPECTED:
        assert factory.pin(out.pin).state == out.active_high, f"{out.name} should be on"


def test_every_configured_output_is_listed_with_its_polarity() -> None:
    assert configured_outputs(parse_config(CONFIG)) == EXPECTED


def test_after_a_crash_every_output_pin_ends_at_its_off_level() -> None:
    factory = MockFactory()
    try:
        crash_with_everything_on(factory)
        results = drive_off(configured_outputs(parse_config(CONFIG)), factory)
        assert [r.error for r in results] == [None] * len(EXPECTED)
        for out in EXPECTED:
            pin = factory.pin(out.pin)
            assert pin.function == "output", out.name
            assert pin.state == (not out.active_high), f"{out.name} is not at its off level"
        # Inputs are left alone.
        assert factory.pin(17).function == "input"
    finally:
        factory.close()


class _BusyFactory:
    """A pin factory where one line is still held by another process ('GPIO busy')."""

    def __init__(self, inner: MockFactory, busy: int) -> None:
        self.inner, self.busy = inner, busy

    def pin(self, n: int) -> Any:
        if n == self.busy:
            raise OSError(16, "GPIO busy")
        return self.inner.pin(n)


def test_one_pin_that_cannot_be_claimed_does_not_stop_the_others() -> None:
    factory = MockFactory()
    try:
        crash_with_everything_on(factory)
        results = drive_off(EXPECTED, _BusyFactory(factory, busy=22))
        assert results[0].error is not None and "GPIO busy" in results[0].error
        for r in results[1:]:
            assert r.error is None
            assert factory.pin(r.output.pin).state == r.output.off_level
    finally:
        factory.close()


def test_the_command_prints_each_output_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    factory = MockFactory()
    monkeypatch.setattr("drivers.gpio.real_pin_factory", lambda: factory)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps({**CONFIG, "data_dir": str(tmp_path / "d")}))
    try:
        crash_with_everything_on(factory)
        assert cli_main(["safe-outputs", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "sent_led (GPIO22, active_high): off (low)"
        assert out[1] == "ack_led (GPIO23, active_low): off (high)"
        assert len(out) == len(EXPECTED)
        assert all(factory.pin(o.pin).state == o.off_level for o in EXPECTED)
        assert not (tmp_path / "d").exists()  # no daemon: no store, no data dir
    finally:
        factory.close()


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "GPIOZERO_PIN_FACTORY": "mock"},
    )


def test_without_gpio_it_says_so_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(CONFIG))
    p = _run(["safe-outputs", "--config", str(cfg)], tmp_path)
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no GPIO" in lines[0], p.stderr


def test_a_site_without_gpio_outputs_needs_no_gpio(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cu16_only = {
        "site": {"id": "cu16-only"},
        "broker": {"url": "mqtt://127.0.0.1:1"},
        "devices": {
            "lockers": {
                "buses": [
                    {
                        "name": "rs485-0",
                        "url": "/dev/ttyUSB0",
                        "boards": [{"id": 0, "first_locker": 1, "locks": 16}],
                    }
                ]
            }
        },
    }
    cfg.write_text(json.dumps(cu16_only))
    p = _run(["safe-outputs", "--config", str(cfg)], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "no GPIO outputs or Modbus relay boards configured" in p.stdout


def test_the_example_in_docs_cli_md(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/cli.md shows safe-outputs on the shelter example: the same lines come out."""
    doc = (REPO / "docs" / "cli.md").read_text()
    block = doc.split("$ sudo ansim-edge safe-outputs --config /etc/ansim-edge/site.yaml\n")[1]
    expected = block.split("```")[0].splitlines()
    factory = MockFactory()
    monkeypatch.setattr("drivers.gpio.real_pin_factory", lambda: factory)
    try:
        example = str(REPO / "config" / "examples" / "shelter.yaml")
        assert cli_main(["safe-outputs", "--config", example]) == 0
    finally:
        factory.close()
    assert capsys.readouterr().out.splitlines() == expected


# ----------------------------------------------------------------- Modbus relay boards


def modbus_site(port: str) -> dict[str, Any]:
    return {
        "site": {"id": "safe-modbus"},
        "broker": {"url": "mqtt://127.0.0.1:1"},
        "devices": {
            "lockers": {
                "modbus_buses": [
                    {
                        "name": "relays-0",
                        "url": port,
                        "poll_hz": 20,
                        "boards": [
                            {"slave_id": 1, "first_locker": 1, "locks": 8, "pulse": "driver"},
                            {"slave_id": 2, "first_locker": 9, "locks": 8, "pulse": "board"},
                        ],
                    }
                ]
            }
        },
    }


def leave_relay_on(port: str, slave: int, relay: int) -> None:
    """What a daemon killed mid-pulse leaves: the relay switched on, never off."""
    line = serial.serial_for_url(port, baudrate=9600, timeout=1)
    try:
        line.write(encode(coil_request(slave, relay, True)))
        assert len(line.read(8)) == 8
    finally:
        line.close()


@pytest.fixture
def relays() -> Any:
    dev = SimulatedModbusBus([1, 2], flash=True)
    try:
        yield dev
    finally:
        dev.close()


def test_modbus_relays_left_on_are_switched_off(relays: SimulatedModbusBus) -> None:
    leave_relay_on(relays.port, 1, 6)
    leave_relay_on(relays.port, 2, 3)
    assert relays.relay_on(1, 6) and relays.relay_on(2, 3)
    results = modbus_off(parse_config(modbus_site(relays.port)), reply_timeout=0.1)
    assert results == [BoardResult("relays-0", 1, None), BoardResult("relays-0", 2, None)]
    assert not relays.relay_on(1, 6)
    assert not relays.relay_on(2, 3)
    assert all(p["end"] is not None for p in relays.pulses())


def test_a_silent_modbus_board_is_reported_and_the_other_still_switched_off(
    relays: SimulatedModbusBus,
) -> None:
    leave_relay_on(relays.port, 1, 2)
    relays.set_silent(2)
    results = modbus_off(parse_config(modbus_site(relays.port)), reply_timeout=0.05)
    assert results[0] == BoardResult("relays-0", 1, None)
    assert results[1].slave_id == 2 and results[1].error is not None
    assert not relays.relay_on(1, 2)


def test_the_command_switches_modbus_relays_off_without_gpio(
    tmp_path: Path, relays: SimulatedModbusBus
) -> None:
    leave_relay_on(relays.port, 1, 4)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(modbus_site(relays.port)))
    p = _run(["safe-outputs", "--config", str(cfg)], tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "modbus relays-0 slave 1: relays off",
        "modbus relays-0 slave 2: relays off",
    ]
    assert not relays.relay_on(1, 4)
