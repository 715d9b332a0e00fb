"""`ansim-edge run` refuses secret files open to group/others and trusted keys they could
replace: one line naming the field path and the chmod fix (before it looks for GPIO)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from edge.core.errors import ConfigError
from edge.filemodes import check_file_modes
from tests.support.site import make_keys, site_dict

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "GPIOZERO_PIN_FACTORY": "mock"},
    )


def _site(tmp_path: Path, **broker: Any) -> dict[str, Any]:
    keys = make_keys(tmp_path / "k")
    for pub in (tmp_path / "k").glob("*.pub"):
        pub.chmod(0o644)
    return site_dict("modes", "mqtt://127.0.0.1:1", tmp_path / "d", keys, **broker)


def _secret(path: Path, mode: int) -> Path:
    path.write_text("s3cret\n")
    path.chmod(mode)
    return path


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(json.dumps(data))
    return cfg


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_run_refuses_a_password_file_open_to_others(tmp_path: Path, mode: int) -> None:
    pw = _secret(tmp_path / "mqtt.password", mode)
    cfg = _write(tmp_path, _site(tmp_path, username="edge", password_file=str(pw)))
    p = _run(["run", "--config", str(cfg)], tmp_path)
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [
        f"ansim-edge: {cfg}: broker.password_file: {pw} is readable or writable by group or "
        f"others (mode {mode:04o}); fix: chmod 600 {pw}"
    ]


def test_run_accepts_a_private_password_file_and_goes_on_to_gpio(tmp_path: Path) -> None:
    pw = _secret(tmp_path / "mqtt.password", 0o600)
    cfg = _write(tmp_path, _site(tmp_path, username="edge", password_file=str(pw)))
    p = _run(["run", "--config", str(cfg)], tmp_path)
    assert p.returncode == 1
    assert "no GPIO" in p.stderr and "password_file" not in p.stderr


def test_a_tls_client_key_must_be_private(tmp_path: Path) -> None:
    key = _secret(tmp_path / "client.key", 0o644)
    ca = _secret(tmp_path / "ca.pem", 0o644)
    cert = _secret(tmp_path / "client.pem", 0o644)
    data = _site(tmp_path, tls={"ca": str(ca), "cert": str(cert), "key": str(key)})
    data["broker"]["url"] = "mqtts://127.0.0.1:1"
    cfg = parse_config(data)
    with pytest.raises(ConfigError, match=r"broker\.tls\.key: .* fix: chmod 600 "):
        check_file_modes(cfg, Path("site.yaml"))
    key.chmod(0o400)
    check_file_modes(cfg, Path("site.yaml"))  # the CA and certificate may be world-readable


def test_trusted_keys_may_be_world_readable_but_not_writable(tmp_path: Path) -> None:
    cfg = parse_config(_site(tmp_path))
    check_file_modes(cfg, Path("site.yaml"))  # 0644 public keys: fine
    pub = cfg.keys[1].public_key
    pub.chmod(0o664)
    with pytest.raises(ConfigError) as err:
        check_file_modes(cfg, Path("site.yaml"))
    assert str(err.value) == (
        f"site.yaml: keys.1.public_key: {pub} is writable by group or others (mode 0664); "
        f"fix: chmod go-w {pub}"
    )
