"""`ansim-edge run` guards: no silent fake hardware, no start without keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.site import make_keys, site_dict


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GPIOZERO_PIN_FACTORY": "mock"},
    )


def test_run_without_gpio_says_so_in_one_line(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "k")
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(site_dict("nogpio", "mqtt://127.0.0.1:1", tmp_path / "d", keys)))
    # Even with GPIOZERO_PIN_FACTORY=mock in the environment, run refuses fake pins.
    p = _run(["run", "--config", str(cfg)], tmp_path)
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert "no GPIO" in lines[0] and "ansim-edge sim" in lines[0]


def test_run_refuses_without_keys(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "k")
    d = site_dict("nokeys", "mqtt://127.0.0.1:1", tmp_path / "d", keys)
    d["keys"] = []
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(d))
    p = _run(["run", "--config", str(cfg)], tmp_path)
    assert p.returncode == 1
    assert "keys" in p.stderr and "keygen" in p.stderr


def test_invalid_config_fails_fast_with_field_paths_and_no_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("site: {id: 'Bad Id'}\nbroker: {url: 'http://x', keepalive_s: 1}\n")
    p = _run(["run", "--config", str(cfg)], tmp_path)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    for path in ("site.id", "broker.url", "broker.keepalive_s"):
        assert path in p.stderr
