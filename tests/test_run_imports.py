"""`ansim-edge run` imports only what its config uses: no rich (structlog would pull it in
when installed), no simulator, amqtt or selenium, no cryptography (PyNaCl verifies), no
asyncio or subprocess (imported by structlog and gpiozero, never used: deferred), pymodbus
only for Modbus relay boards, a kind's controller only when the config has its devices, the
Home Assistant discovery only when enabled. The real `run` code path in a child process,
with gpiozero's MockFactory for the Pi's pins (bench/mock_gpio_run.py); it writes its
imported modules once the site has started. Memory itself is measured by
bench/bench_spine.py, never asserted here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.mqtt import free_port
from tests.support.site import REPO, make_keys, site_dict
from tests.support.wait import wait_until

NEVER = ("rich", "better_exceptions", "amqtt", "selenium", "simulator", "jinja2", "typer")
# Never in `run`, whatever the config: the private key side of signing, modules nothing in
# the daemon uses (edge.runtime.DEFERRED), the schema and docs generators.
NEVER_IN_RUN = (*NEVER, "cryptography", "asyncio", "subprocess", "edge.schemas", "edge.tools")
# Only when the config has lockers (and Home Assistant discovery enabled).
LOCKERS = ("edge.devices.lockers.controller", "edge.machines.locker", "drivers.modbus")
HOMEASSISTANT = "edge.homeassistant"


# What systemd/ansim-edge.service sets (docstrings and asserts compiled out); the bytecode
# cache is the test's own.
AS_THE_UNIT = {"PYTHONOPTIMIZE": "2"}


def run_modules(
    tmp_path: Path, cfg: dict[str, Any], env_extra: dict[str, str] | None = None
) -> set[str]:
    cfg_path = tmp_path / "site.yaml"
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    out = tmp_path / "modules.txt"
    env = {**os.environ, "ANSIM_MODULES_FILE": str(out), **(env_extra or {})}
    if env_extra:
        env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.mock_gpio_run", "run", "--config", str(cfg_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: out.exists() or proc.poll() is not None, timeout=30)
        assert out.exists(), proc.communicate(timeout=10)[1].decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return set(out.read_text(encoding="utf-8").split())


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages count with their submodules) are among ``modules``."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


@pytest.fixture
def base(tmp_path: Path) -> dict[str, Any]:
    keys = make_keys(tmp_path / "keys")
    # No broker listens there: the site starts, retries in the background, imports nothing more.
    return site_dict("imports-1", f"mqtt://127.0.0.1:{free_port()}", tmp_path / "data", keys)


@pytest.mark.parametrize("env", [None, AS_THE_UNIT], ids=["plain", "as-the-unit"])
def test_shelter_run_imports_no_rich_simulator_or_modbus(
    tmp_path: Path, base: dict[str, Any], env: dict[str, str] | None
) -> None:
    base["devices"]["modem"] = {"url": str(tmp_path / "no-modem")}
    mods = run_modules(tmp_path, base, env)
    if env is not None:  # it ran with -OO: its bytecode went to the test's cache
        assert [
            p for p in (tmp_path / "pycache").rglob("site.*.opt-2.pyc") if p.parent.name == "edge"
        ]
    assert "edge.site" in mods and "structlog" in mods and "gpiozero" in mods
    assert "nacl" in mods and "edge.devices.panic.controller" in mods  # the check can see
    assert not _top(mods) & {*NEVER, "pymodbus"}, sorted(_top(mods) & {*NEVER, "pymodbus"})
    assert not _loaded(mods, (*NEVER_IN_RUN, *LOCKERS, "drivers.cu16", HOMEASSISTANT))


def test_modbus_lockers_import_pymodbus_and_still_no_rich(
    tmp_path: Path, base: dict[str, Any]
) -> None:
    base["devices"] = {
        "lockers": {
            "pulse_ms": 500,
            "modbus_buses": [
                {
                    "name": "mb0",
                    "url": str(tmp_path / "no-adapter"),
                    "boards": [{"slave_id": 1, "first_locker": 1}],
                }
            ],
        }
    }
    base["homeassistant"] = {"enabled": True}
    mods = run_modules(tmp_path, base)
    assert "pymodbus" in _top(mods)  # the check above can see it when it is there
    assert not _top(mods) & set(NEVER), sorted(_top(mods) & set(NEVER))
    assert _loaded(mods, (*LOCKERS, HOMEASSISTANT)) == sorted((*LOCKERS, HOMEASSISTANT))
    assert "edge.devices.panic.controller" not in mods  # no panic buttons
    assert "drivers.cu16" not in mods  # no CU16 boards: their driver stays out too
    assert not _loaded(mods, NEVER_IN_RUN)


def _maps_cryptography(pid: int) -> bool:
    """Is cryptography's extension (its Rust module, with OpenSSL in it) mapped in ``pid``?"""
    return "/cryptography/" in Path(f"/proc/{pid}/maps").read_text(encoding="utf-8")


@pytest.mark.mqtt
def test_an_idle_sim_with_its_development_key_leaves_cryptography_out_until_it_signs(
    tmp_path: Path, mosquitto: Any
) -> None:
    # No keys in the config: `sim` makes its development key (libsodium) at start. OpenSSL
    # (~7.5 MB) is loaded only when the console signs a command with it.
    from tests.support.site import SimProcess

    cfg = site_dict("imports-sim", mosquitto.url, tmp_path / "data", make_keys(tmp_path / "k"))
    del cfg["keys"]
    sim = SimProcess(cfg, tmp_path, mosquitto.url)
    try:
        wait_until(lambda: sim.get("/state")["site"]["online"], timeout=20, message="online")
        assert (tmp_path / "data" / "dev-keys" / "dev.key").exists()
        assert not _maps_cryptography(sim.proc.pid)
        answer = sim.post("/centre/commands", {"name": "alarm.clear", "key": "dev", "wait_s": 10})
        assert answer["command"]["key_id"] == "dev" and answer["result"] is not None
        assert _maps_cryptography(sim.proc.pid)  # the check sees it once it is there
    finally:
        sim.kill()
