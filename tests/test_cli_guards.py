"""`run` and `sim` as real processes: a config problem is a clear message and exit 1, never
a traceback; the published example key is refused by both; a data dir last used by the
other command is refused unless --force."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import structlog
from gpiozero.pins.mock import MockFactory

from edge.cli import main as cli_main
from edge.datadir import MODE_FILE
from tests.support.mqtt import Mosquitto, free_port
from tests.support.site import make_keys, site_dict
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[1]


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )


def doc_example_public_key() -> str:
    text = (REPO / "docs" / "mqtt-api.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- signing: public-key -->\n```text\n(.*?)```", text, re.S)
    assert m, "docs/mqtt-api.md has no <!-- signing: public-key --> block"
    return m.group(1)


def base_config(tmp_path: Path) -> dict[str, Any]:
    keys = make_keys(tmp_path / "keys")
    return site_dict("guard-1", "mqtt://127.0.0.1:1", tmp_path / "data", keys)


def broken(tmp_path: Path, case: str) -> tuple[dict[str, Any], str, str]:
    """A config with one problem: (config, field path, message fragment)."""
    d = base_config(tmp_path)
    if case == "password_file":
        d["broker"].update(username="guard-1", password_file=str(tmp_path / "no-such-pw"))
        return d, "broker.password_file", "cannot read"
    if case == "key_file":
        d["keys"][1]["public_key"] = str(tmp_path / "keys" / "gone.pub")
        return d, "keys.1.public_key", "cannot read the public key"
    if case == "example_key":
        (tmp_path / "example.pub").write_text(doc_example_public_key())
        d["keys"][0]["public_key"] = str(tmp_path / "example.pub")
        return d, "keys.0.public_key", "example key"
    if case == "tls_ca":
        d["broker"]["tls"] = {"ca": str(tmp_path / "no-ca.pem")}
        return d, "broker.tls.ca", "cannot read"
    raise AssertionError(case)


CASES = ["password_file", "key_file", "example_key", "tls_ca"]


def assert_clean_refusal(p: subprocess.CompletedProcess[str], where: str, fragment: str) -> None:
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stderr.splitlines()
    assert lines[0].startswith("ansim-edge: ") and lines[0].endswith(
        "1 error(s) in the configuration:"
    ), p.stderr
    assert len(lines) == 2, p.stderr
    assert lines[1].startswith(f"  {where}: ") and fragment in lines[1], p.stderr


@pytest.mark.parametrize("case", CASES)
def test_run_refuses_a_broken_config_in_one_message_without_a_traceback(
    tmp_path: Path, case: str
) -> None:
    d, where, fragment = broken(tmp_path, case)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(d))
    p = cli(["run", "--config", str(cfg)], tmp_path)
    assert_clean_refusal(p, where, fragment)  # before the GPIO check: "no GPIO" is not it


@pytest.mark.parametrize("case", CASES)
def test_sim_refuses_a_broken_config_in_one_message_without_a_traceback(
    tmp_path: Path, case: str
) -> None:
    d, where, fragment = broken(tmp_path, case)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(d))
    # --broker: the config's broker settings (TLS too) are used, as by run
    args = ["sim", "--config", str(cfg), "--broker", "mqtts://127.0.0.1:1"]
    p = cli([*args, "--control", f"127.0.0.1:{free_port()}"], tmp_path)
    assert_clean_refusal(p, where, fragment)


def test_sim_with_its_embedded_broker_does_not_need_the_configs_tls_files(
    tmp_path: Path,
) -> None:
    # Without --broker, sim ignores broker.tls: a missing CA must not stop it. A second
    # problem that does count (the example key) shows the check ran and TLS was skipped.
    d, _, _ = broken(tmp_path, "tls_ca")
    (tmp_path / "example.pub").write_text(doc_example_public_key())
    d["keys"][0]["public_key"] = str(tmp_path / "example.pub")
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(d))
    p = cli(["sim", "--config", str(cfg), "--control", f"127.0.0.1:{free_port()}"], tmp_path)
    assert_clean_refusal(p, "keys.0.public_key", "example key")


# --------------------------------------------------------------------------- run vs sim


class _NoSite:
    def __init__(self, cfg: Any, hardware: Any, **kw: Any) -> None:
        self.cfg = cfg


def run_in_process(cfg: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    """`ansim-edge run` as far as building the site, on mock pins (this is no Pi)."""
    import drivers.gpio
    import edge.cli
    import edge.site

    monkeypatch.setattr(drivers.gpio, "real_pin_factory", MockFactory)
    monkeypatch.setattr(edge.site, "Site", _NoSite)
    monkeypatch.setattr(edge.cli, "_serve", lambda target, hardware, log: hardware.close() or 0)
    saved = structlog.get_config()
    try:
        return cli_main(["run", "--config", str(cfg), *extra])
    finally:
        structlog.configure(**saved)


def start_sim(cfg: Path, broker: Mosquitto, tmp_path: Path, *extra: str) -> str:
    """Start `sim`, wait for its control API, stop it with SIGTERM: exit 0; its log."""
    port = free_port()
    log = tmp_path / f"sim-{port}.log"
    with log.open("wb") as out:
        argv = ["sim", "--config", str(cfg), "--broker", broker.url]
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", *argv, "--control", f"127.0.0.1:{port}", *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:

            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"sim exited {proc.returncode}: {log.read_text()}")
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5).close()
                except OSError:
                    return False
                return True

            wait_until(up, timeout=30, message="sim control API")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()  # never leave a hung sim behind
                proc.wait(10)
                raise
            assert code == 0, log.read_text()
    return log.read_text()


def test_sim_refuses_a_data_dir_last_used_by_run_and_the_reverse_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mosquitto: Mosquitto
) -> None:
    d = base_config(tmp_path)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(d))
    data = tmp_path / "data"

    assert run_in_process(cfg, monkeypatch) == 0
    assert (data / MODE_FILE).read_text() == "run\n"

    args = ["sim", "--config", str(cfg), "--broker", mosquitto.url]
    p = cli([*args, "--control", f"127.0.0.1:{free_port()}"], tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.splitlines() == [
        f"ansim-edge: data_dir {data} was last used by `ansim-edge run`: `sim` would send its "
        "simulated events as that site and take over the site's unsent events and remembered "
        "commands; use another --data-dir, or pass --force to use this one anyway"
    ]
    assert (data / MODE_FILE).read_text() == "run\n"  # the refusal changed nothing

    start_sim(cfg, mosquitto, tmp_path, "--force")
    assert (data / MODE_FILE).read_text() == "sim\n"
    start_sim(cfg, mosquitto, tmp_path)  # sim after sim: no --force needed

    p = cli(["run", "--config", str(cfg)], tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    [line] = p.stderr.splitlines()
    assert line.startswith(f"ansim-edge: data_dir {data} was last used by `ansim-edge sim`: ")
    assert "--force" in line
    # forced, run goes on to the next check (this machine has no GPIO)
    p = cli(["run", "--config", str(cfg), "--force"], tmp_path)
    assert p.returncode == 1 and "no GPIO" in p.stderr
    assert (data / MODE_FILE).read_text() == "sim\n"  # run never got the hardware: not used

    assert run_in_process(cfg, monkeypatch, "--force") == 0
    assert (data / MODE_FILE).read_text() == "run\n"
    assert run_in_process(cfg, monkeypatch) == 0  # run after run: fine


def test_sim_with_an_unusable_data_dir_starts_degraded_and_says_so(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # Not a config error for run/sim: the site starts in degraded mode (check-config
    # reports it); the run/sim marker cannot be written and that is logged, not raised.
    d = base_config(tmp_path)
    (tmp_path / "a-file").write_text("x")
    d["data_dir"] = str(tmp_path / "a-file")
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(d))
    log = start_sim(cfg, mosquitto, tmp_path)
    assert "Traceback" not in log
    assert "data_dir_mode_not_recorded" in log
    assert "store_degraded" in log, log


def test_a_run_that_cannot_get_gpio_does_not_claim_the_data_dir(tmp_path: Path) -> None:
    # A developer trying `run` on a laptop must not lock their sim data dir.
    d = base_config(tmp_path)
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(d))
    p = cli(["run", "--config", str(cfg)], tmp_path)
    assert p.returncode == 1 and "no GPIO" in p.stderr
    assert not (tmp_path / "data" / MODE_FILE).exists()
